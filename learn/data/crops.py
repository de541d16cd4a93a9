"""Where a sample's map crop lies: the truth inside, but never always at the centre.

Centring the crop on the truth would hand the answer to any method that predicts the
crop centre; so the crop is shifted by up to ``max_offset_frac`` of its side, at random
in training and deterministically per sample index in evaluation (the same crop for
every method judged on that sample, k-NN in the square included).
"""

from __future__ import annotations

import numpy as np

__all__ = ["eval_crop_origins", "random_crop_origins"]


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
