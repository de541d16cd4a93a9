"""Where a sample's map crop lies (the truth inside, but never always at the centre) and its pixel frame.

:class:`CropFrame` is the one pixel-centre rule of every crop image and grid over a
crop (dataset crops, the coarse head's grid, the heatmap's pixels, posterior pictures):
pixel (or cell) ``[r, c]`` of an ``S``-pixel crop is centred at crop coordinates
``(pixel_centre(c, S), pixel_centre(r, S)) = ((c + 0.5) / S, (r + 0.5) / S)``, row index
growing north, i.e. at ``origin_m + ((c + 0.5) / S, (r + 0.5) / S) * size_m`` in metres.

Centring the crop on the truth would hand the answer to any method that predicts the
crop centre; so the crop is shifted by up to ``max_offset_frac`` of its side, at random
in training and deterministically per sample index in evaluation (the same crop for
every method judged on that sample, k-NN in the square included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

__all__ = ["eval_crop_origins", "random_crop_origins", "CropFrame", "pixel_centre"]

_A = TypeVar("_A")


def pixel_centre(index: _A, px: int) -> _A:
    """Centre of pixel ``index`` (a column along x or a row along y; int, NumPy or torch) of ``px``, in crop units."""
    return (index + 0.5) / px  # type: ignore[operator, return-value]


@dataclass(frozen=True)
class CropFrame:
    """A square crop of ``px`` pixels per side: south-west corner ``origin_m`` (2,) [scene m], side ``size_m`` [m]."""

    origin_m: tuple[float, float]
    size_m: float
    px: int

    def centres_m(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre x by column and y by row (north) ``(S,)``, ``(S,)`` [scene m]."""
        u = pixel_centre(np.arange(self.px), self.px)
        return self.origin_m[0] + u * self.size_m, self.origin_m[1] + u * self.size_m

    def to_m(self, xy: np.ndarray) -> np.ndarray:
        """Crop coordinates ``(..., 2)`` to scene metres."""
        return np.asarray(self.origin_m) + np.asarray(xy) * self.size_m

    def to_crop(self, xy_m: np.ndarray) -> np.ndarray:
        """Scene metres ``(..., 2)`` to crop coordinates (``(0, 0)`` south-west, ``(1, 1)`` north-east)."""
        return (np.asarray(xy_m) - np.asarray(self.origin_m)) / self.size_m


def _offsets(u: np.ndarray, crop_size_m: float, max_offset_frac: float) -> np.ndarray:
    return (u * 2.0 - 1.0) * max_offset_frac * crop_size_m


def eval_crop_origins(indices: np.ndarray, xy_m: np.ndarray, crop_size_m: float,
                      max_offset_frac: float = 0.35, seed: int = 0) -> np.ndarray:
    """South-west corners ``(N, 2)`` [m] of the evaluation crops of samples ``indices``.

    The offset of each crop depends only on ``(seed, index)``, so a sample gets the same
    crop in every batch, run and method.
    """
    idx = np.asarray(indices, np.int64).reshape(-1)
    u = np.array([np.random.default_rng([seed, int(i)]).random(2) for i in idx]).reshape(-1, 2)
    centre = np.asarray(xy_m, np.float64).reshape(-1, 2) + _offsets(u, crop_size_m, max_offset_frac)
    return centre - crop_size_m / 2


def random_crop_origins(xy_m: np.ndarray, crop_size_m: float, rng: np.random.Generator,
                        max_offset_frac: float = 0.35) -> np.ndarray:
    """Training crops: a fresh random offset each call."""
    xy = np.asarray(xy_m, np.float64).reshape(-1, 2)
    return xy + _offsets(rng.random(xy.shape), crop_size_m, max_offset_frac) - crop_size_m / 2
