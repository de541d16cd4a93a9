"""Physics-likelihood channels: map matching's residual energy (seed 000 Eq. 22) on every crop pixel.

Per sequence, the events of its last measurement instant (:func:`learn.mapmatch.last_report`,
as map matching scores them) are matched against the crop's per-cell maps by the one
implementation of the energy, :func:`learn.mapmatch.residual_energy` (that of
:meth:`learn.mapmatch.MapMatcher.energy`), on the crop's pixels::

    E(y) = sum_{events e} sum_{f valid} ((m_ef - r_{c_e f}(y)) / sigma_f)^2      (dimensionless)

The cell maps are those map matching uses (:func:`matchable_maps`: holes filled once by
:func:`learn.mapmatch.fill_holes`, the remaining NaN set to the miss value of
:func:`learn.mapmatch.miss_values`), so at a crop pixel centre that is a scene pixel
centre ``E`` equals the map-matching energy there; between centres the maps are
bilinear, as every crop channel. The map encoder receives two channels
(:data:`LIKELIHOOD_CHANNELS`, :func:`energy_channels`), both 0 outside the scene and for
a sequence with no heard cell that has a map:

* ``lik_energy`` = ``log1p(E / n)``, ``n`` the number of ``(event, feature)`` terms: about
  ``log 2`` where the maps explain the report within the noise, ~5 where they miss by 15 sigma;
* ``lik_relative`` = ``exp(-(E - min_crop E) / (2 n))`` in (0, 1]: the per-term tempered
  likelihood relative to the crop's best pixel (1 there), i.e. where map matching would answer.

For the model's likelihood prior (``model.coarse_prior: likelihood``) the batch also
carries the untempered log-likelihood itself, ``lik_loglik = -E / 2`` [nats] per crop
pixel, and ``lik_allowed``, the pixels map matching searches (inside the scene and in
its pixel prior, :func:`learn.mapmatch.pixel_mask_of`: roads by default; a crop pixel is
in it when one of the scene pixels its centre is interpolated from is, since crop pixels
are coarser than the scene's and a bilinear ``> 0.5`` dropped 44 % of the demo corpus's
truths off the road), from :func:`loglik_pixels`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from learn.mapmatch import energy_planes, fill_holes, miss_values, residual_energy
from twin.geo import Grid

__all__ = ["LIKELIHOOD_CHANNELS", "matchable_maps", "heard_rows", "crop_energy", "energy_channels", "loglik_pixels",
           "pixel_prior_of", "PIXEL_PRIOR"]

LIKELIHOOD_CHANNELS = ("lik_energy", "lik_relative")
PIXEL_PRIOR = "road"  # the pixels the likelihood prior searches: map matching's default (MapMatchBaseline)


def matchable_maps(cell_maps: np.ndarray, fill_passes: int = 1, miss_margin: float = 10.0) -> np.ndarray:
    """The cell maps ``(n, F, H, W)`` as map matching scores them: holes filled, other NaN = the miss value.

    :class:`learn.mapmatch.MapMatcher` gives the same energy on these as on the filled maps
    with NaN (it replaces NaN by the same miss value); without NaN, a bilinear crop never
    turns a finite pixel into NaN next to a hole.
    """
    filled = fill_holes(cell_maps, fill_passes)
    miss = miss_values(filled, miss_margin).astype(np.float32)
    return np.where(np.isfinite(filled), filled, miss[None, :, None, None]).astype(np.float32)


def heard_rows(cell_id: np.ndarray, events: tuple[np.ndarray, np.ndarray]) -> list[int]:
    """Rows of ``cell_id`` (the scene's cell table) of the cells heard in ``events``, sorted: the maps
    :func:`crop_energy` needs."""
    lookup = {int(c): i for i, c in enumerate(np.asarray(cell_id))}
    return sorted({lookup[int(c)] for c in events[0] if int(c) in lookup})


def crop_energy(crop_maps: np.ndarray, crop_cell_id: np.ndarray, sigma: np.ndarray,
                events: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, float]:
    """Energy of Eq. 22 ``(S, S)`` at the crop's pixel centres and its number of terms.

    ``crop_maps`` ``(k, F, S, S)``: the heard cells' maps from :func:`matchable_maps`
    resampled onto the crop (rows :func:`heard_rows`; :func:`learn.data.resample.resample_crops`),
    ``crop_cell_id`` ``(k,)`` their ids; ``sigma`` ``(F,)`` [feature units]; ``events``
    ``(cell ids (E,), features (E, F))`` in the maps' feature order. The energy is map
    matching's, :func:`learn.mapmatch.residual_energy`, on the crop's pixels; no term
    (nothing heard has a map): zeros and ``0``.
    """
    px = crop_maps.shape[-1]
    if not len(crop_cell_id):
        return np.zeros((px, px), np.float32), 0.0
    lookup = {int(c): i for i, c in enumerate(np.asarray(crop_cell_id))}
    energy, n_terms = residual_energy(energy_planes(crop_maps, sigma), lookup, sigma, [events])
    return np.maximum(energy[0].reshape(px, px), 0.0), float(n_terms[0])


def energy_channels(energy: np.ndarray, n_terms: float, inside: np.ndarray) -> torch.Tensor:
    """The two channels ``(2, S, S)`` of :data:`LIKELIHOOD_CHANNELS` from :func:`crop_energy`'s outputs."""
    out = torch.zeros(len(LIKELIHOOD_CHANNELS), *energy.shape)
    inside = np.asarray(inside, bool)
    if n_terms <= 0 or not inside.any():
        return out
    e = np.where(inside, energy, np.inf)
    rel = np.exp(-(e - e.min()) / (2.0 * n_terms))
    out[0] = torch.from_numpy(np.where(inside, np.log1p(energy / n_terms), 0.0).astype(np.float32))
    out[1] = torch.from_numpy(np.where(inside, rel, 0.0).astype(np.float32))
    return out



def pixel_prior_of(group: Any, grid: Grid, where: str) -> np.ndarray | None:
    """Map matching's pixel prior (:data:`PIXEL_PRIOR`) of a corpus scene group, ``(H, W)`` float32 (1 = searched).

    The one rule, :func:`learn.mapmatch.pixel_mask_of` (road, else outdoor, else none:
    ``None``), on the group's semantic layers.
    """
    from types import SimpleNamespace

    from learn.data.scenes import scene_channels
    from learn.mapmatch import pixel_mask_of
    from twin import io

    semantic = scene_channels(group)[1]
    layers = io.read(group, "semantic_maps", where) if semantic else np.zeros((0, *grid.shape), np.float32)
    mask = pixel_mask_of(SimpleNamespace(semantic_channels=semantic, semantic_maps=layers), PIXEL_PRIOR)
    return None if mask is None else mask.astype(np.float32)


def loglik_pixels(energy: np.ndarray, n_terms: float, inside: np.ndarray, prior: np.ndarray | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Map matching's log-likelihood ``-E / 2`` [nats] ``(S, S)`` and its searched pixels ``(S, S)`` bool.

    ``energy``, ``n_terms``, ``inside`` from :func:`crop_energy`; ``prior`` ``(S, S)`` bool, the
    pixel prior map matching searches (:func:`learn.mapmatch.pixel_mask_of` cropped), ``None``
    = every pixel. Outside the scene the log-likelihood is the crop's lowest inside value
    (the energy there means nothing) and the pixel is not allowed; with no term (nothing
    heard has a map) it is 0 everywhere, so only the pixel prior speaks.
    """
    inside = np.asarray(inside, bool)
    allowed = inside if prior is None else inside & np.asarray(prior, bool)
    ll = np.zeros(energy.shape, np.float32)
    if n_terms > 0 and inside.any():
        e = np.asarray(energy, np.float64)
        ll = np.where(inside, -0.5 * e, -0.5 * e[inside].max()).astype(np.float32)
    return torch.from_numpy(ll), torch.from_numpy(allowed)
