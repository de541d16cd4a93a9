"""Physics-likelihood channels: map matching's residual energy (seed 000 Eq. 22) on every crop pixel.

Per sequence, the events of its last measurement instant (:func:`learn.mapmatch.last_report`,
as map matching scores them) are matched against the crop's per-cell maps by the one
implementation of the energy, :meth:`learn.mapmatch.MapMatcher.energy`, on a grid whose
pixels are the crop's::

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

from learn.data.resample import resample_crop
from learn.mapmatch import MapMatcher, fill_holes, miss_values
from twin.geo import Grid

__all__ = ["LIKELIHOOD_CHANNELS", "matchable_maps", "crop_energy", "energy_channels", "loglik_pixels",
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


def crop_energy(maps: np.ndarray, cell_id: np.ndarray, grid: Grid, sigma: np.ndarray,
                events: tuple[np.ndarray, np.ndarray], origin_m: np.ndarray, size_m: float, px: int
                ) -> tuple[np.ndarray, float, np.ndarray]:
    """Energy of Eq. 22 ``(S, S)`` at the crop's pixel centres, its number of terms, and inside ``(S, S)``.

    ``maps`` ``(n_cells, F, H, W)`` from :func:`matchable_maps` on ``grid`` (rows of
    ``cell_id``); ``sigma`` ``(F,)`` [feature units]; ``events`` ``(cell ids (E,), features
    (E, F))`` in the maps' feature order; ``origin_m`` the crop's south-west corner [scene m],
    ``size_m`` its side [m], ``px`` its pixels per side (row index north). Only the heard
    cells' maps are resampled; no term (nothing heard has a map): zeros and ``0``.
    """
    lookup = {int(c): i for i, c in enumerate(np.asarray(cell_id))}
    rows = sorted({lookup[int(c)] for c in events[0] if int(c) in lookup})
    if not rows:
        _, inside = resample_crop(maps[:0], grid, origin_m, size_m, px)
        return np.zeros((px, px), np.float32), 0.0, inside.numpy()
    vals, inside = resample_crop(maps, grid, origin_m, size_m, px, rows)  # [k, F, S, S]
    crop = Grid(float(origin_m[0]), float(origin_m[1]), float(size_m) / px, px, px)
    matcher = MapMatcher(vals.numpy(), np.asarray(cell_id)[rows], crop, sigma)
    energy, n_terms = matcher.energy([events])
    return np.maximum(energy[0].reshape(px, px), 0.0), float(n_terms[0]), inside.numpy()


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
