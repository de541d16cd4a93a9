"""A crop's pixels, resampled from the scene grid: ``grid_sample`` at the pixel centres.

Pixel ``[r, c]`` of an ``S``-pixel crop is the value at ``crop_origin_m + ((c + 0.5) / S,
(r + 0.5) / S) * crop_size_m`` (row index grows north, as :class:`twin.geo.Grid`), sampled
bilinearly with cell values at cell centres, exactly as :meth:`twin.geo.Grid.sample`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as nnf

from learn.data.crops import CropFrame
from twin.errors import InputError
from twin.geo import Grid

__all__ = ["crop_grid", "crop_to_grid", "resample_crop", "resample_crops"]


def crop_grid(origin_m: np.ndarray, size_m: float, px: int, grid: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    """``grid_sample`` coordinates of a crop's pixel centres on ``grid``, and which lie inside it.

    Returns ``g`` ``(1, S, S, 2)`` (row index north) normalized for ``align_corners=False``
    over the whole ``grid``, and ``inside`` ``(S, S)`` bool.
    """
    xs, ys = CropFrame((float(origin_m[0]), float(origin_m[1])), size_m, px).centres_m()  # [S] by column, by row
    w_m, h_m = grid.size_m
    gx = 2.0 * (xs - grid.x0_m) / w_m - 1.0
    gy = 2.0 * (ys - grid.y0_m) / h_m - 1.0
    g = np.stack(np.broadcast_arrays(gx[None, :], gy[:, None]), axis=-1)  # [S, S, 2]
    inside = (np.abs(gy)[:, None] <= 1.0) & (np.abs(gx)[None, :] <= 1.0)
    return torch.from_numpy(g[None].astype(np.float32)), torch.from_numpy(inside)


def crop_to_grid(xy: torch.Tensor) -> torch.Tensor:
    """Crop coordinates ``(..., 2)`` in [0, 1] to ``grid_sample`` coordinates (``align_corners=False``)."""
    return 2.0 * xy - 1.0


def _window(grid: Grid, origin_m: np.ndarray, size_m: float) -> tuple[Grid, tuple[slice, slice]] | None:
    """The sub-grid holding every cell a crop's bilinear samples touch (None if it misses the grid)."""
    pad = grid.cell_size_m
    try:
        return grid.window(origin_m[0] - pad, origin_m[1] - pad, origin_m[0] + size_m + pad,
                           origin_m[1] + size_m + pad)
    except InputError:
        return None


def resample_crops(parts: Sequence[tuple[np.ndarray, Sequence[int] | None]], grid: Grid, origin_m: np.ndarray,
                   size_m: float, px: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Bilinear crops of several arrays on one grid by one ``grid_sample``, and inside ``(S, S)``.

    ``parts``: per array ``(values, select)``, ``values`` ``(N, C, H, W)`` on ``grid`` and
    ``select`` its rows (``None``: all); returns per part ``(N', C, S, S)`` float32. Every
    channel is sampled at the same pixel centres, so one call equals one per part.
    """
    shapes = [((len(v) if sel is None else len(sel)), v.shape[1]) for v, sel in parts]
    win = _window(grid, origin_m, size_m)
    if win is None:
        return [torch.zeros(n, c, px, px) for n, c in shapes], torch.zeros(px, px, dtype=torch.bool)
    sub, (rows, cols) = win
    _, inside = crop_grid(origin_m, size_m, px, grid)
    total = sum(n * c for n, c in shapes)
    if total == 0:
        return [torch.zeros(n, c, px, px) for n, c in shapes], inside
    # Sampling only the window gives Grid.sample's values: every neighbour of an inside
    # pixel lies in it, and the window's edges are the grid's wherever clamping applies.
    h, w = sub.height, sub.width
    planes = np.empty((total, h, w), np.float32)  # the windows of every part, copied once
    at = 0
    for (values, sel), (n, c) in zip(parts, shapes, strict=True):
        view = values[:, :, rows, cols]  # a view: only the window is copied
        planes[at:at + n * c] = (view if sel is None else view[list(sel)]).reshape(n * c, h, w)
        at += n * c
    g, _ = crop_grid(origin_m, size_m, px, sub)
    out = nnf.grid_sample(torch.from_numpy(planes)[None], g, mode="bilinear", padding_mode="border",
                          align_corners=False)[0]  # [sum N*C, S, S]
    crops, at = [], 0
    for n, c in shapes:
        crops.append(out[at:at + n * c].reshape(n, c, px, px))
        at += n * c
    return crops, inside


def resample_crop(values: np.ndarray, grid: Grid, origin_m: np.ndarray, size_m: float, px: int,
                  select: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear crop of ``values[select]`` (``values`` ``(N, C, H, W)`` on ``grid``): ``(N', C, S, S)``, inside ``(S, S)``."""
    crops, inside = resample_crops([(values, select)], grid, origin_m, size_m, px)
    return crops[0], inside
