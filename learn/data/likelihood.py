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
"""

from __future__ import annotations

import numpy as np
import torch

from learn.data.resample import resample_crop
from learn.mapmatch import MapMatcher, fill_holes, miss_values
from twin.geo import Grid

__all__ = ["LIKELIHOOD_CHANNELS", "matchable_maps", "crop_energy", "energy_channels"]

LIKELIHOOD_CHANNELS = ("lik_energy", "lik_relative")


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

