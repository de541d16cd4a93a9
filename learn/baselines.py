"""Fingerprinting baselines, fitted on a split's training part inside ``learn eval``.

* :class:`WknnBaseline` — weighted k-NN over multicell fingerprints (De Nardis et al.,
  Sensors 23(9):4266, 2023; seed 004 §7.1). A fingerprint holds, for every cell of the
  training vocabulary, the chosen RF features of the sample's last measurement instant;
  cells not heard take the ``fill`` value. The distance between a query ``q`` and a
  reference ``r`` runs over the cells heard by either (``U``), features scaled by the
  corpus's standard deviations, normalized by the count of such cells (seed 004's
  "normalized by non-zero BS count"), plus a coverage term for the cells heard by only
  one of them (the "count of cells in common" of the multicell strategies)::

      d(q, r) = sqrt( sum_{c in U, f} ((q_cf - r_cf) / s_f)^2 / (|U| F) )
                + coverage_weight * (|U| - |common|) / |U|

  The estimate is the mean of the ``k`` nearest references' positions weighted by
  ``1 / (d + eps)``. Options change the fingerprint and the distance: ``features``,
  ``fill``, ``scale`` (``"std"``: features divided by the corpus deviations ``s_f``;
  ``"none"``: raw units), ``distance_norm`` (``"rms"``: as above; ``"count"``: the
  Euclidean distance divided by ``|U|``, ``sqrt(sum (q - r)^2) / |U|``; ``"none"``: the
  plain Euclidean distance) and ``coverage_weight``.
* :class:`WknnSeed004Baseline` (``wknn-seed004``) — the same class with seed 004 §7.1's
  settings (the k-NN of Kousias et al. 2024 / Savelli et al. 2024 as the seed reimplemented
  it): RSSI fingerprints (``rssi_dbm`` only), cells not heard filled at -25 dB, raw dB, the
  Euclidean distance divided by the count of cells heard by either fingerprint (our reading
  of "normalized by non-zero BS count": after filling, the difference vector is non-zero on
  exactly those cells), no coverage term. ``knn-square-seed004`` is k-NN in the square with
  the same settings.
* :class:`KnnSquareBaseline` — the same, with the search restricted to the references
  inside the sample's crop (seed 004's "k-NN in the square"), placed by the run's prior
  (:mod:`learn.priors`; the seeds placed it around the truth, ``--prior truth``), falling
  back to the crop centre when the crop holds none.
* :class:`MapMatchBaseline` — physics map matching (:mod:`learn.mapmatch`), no training data;
  ``prior-only`` (:class:`learn.priors.PriorOnly`) — the crop centre alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from learn.mapmatch import corpus_events, feature_sigmas, plot_match, scene_matcher
from learn.methods import Predictions
from learn.priors import resolve_prior
from learn.registry import register_baseline
from twin.corpus.store import Corpus
from twin.errors import InputError, collect

__all__ = ["WknnBaseline", "KnnSquareBaseline", "WknnSeed004Baseline", "KnnSquareSeed004Baseline",
           "MapMatchBaseline", "fingerprints", "SEED004_FEATURES", "SEED004_FILL_DB"]

#: Seed 004 §7.1's k-NN: RSSI fingerprints, missing cells infilled at -25 dB.
SEED004_FEATURES = ("rssi_dbm",)
SEED004_FILL_DB = -25.0
DISTANCE_NORMS = ("rms", "count", "none")
SCALES = ("std", "none")


def fingerprints(corpus: Corpus, indices: np.ndarray, feature_idx: Sequence[int]
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per sample: the cell keys and features ``(n_cells, F')`` of its last measurement instant.

    A cell's key is ``scene_index * 2**32 + cell_id``: cell ids are the BS file's of each
    scene, and the patches of a generated corpus reuse them (cell 1 of one patch is not cell 1
    of the next); in scene 0 (every import) the key is the cell id. Returns two lists of
    length ``len(indices)``. Repeated cells keep their mean.
    """
    b = corpus.batch(indices, ["cell_id", "features", "mask", "time_s", "scene_index"])
    cells_out, feats_out = [], []
    for cell, feat, mask, t, scene in zip(b["cell_id"], b["features"], b["mask"], b["time_s"], b["scene_index"],
                                          strict=True):
        last = mask & (t == t[mask].max()) if mask.any() else mask
        c = cell[last].astype(np.int64) + (int(scene) << 32)
        f = feat[last][:, list(feature_idx)].astype(np.float64)
        if len(np.unique(c)) < len(c):
            uc, inv = np.unique(c, return_inverse=True)
            with np.errstate(invalid="ignore"):
                f = np.stack([np.nanmean(f[inv == k], axis=0) for k in range(len(uc))])
            c = uc
        cells_out.append(c)
        feats_out.append(f)
    return cells_out, feats_out


@register_baseline("wknn")
@dataclass
class WknnBaseline:
    """Weighted k-NN multicell fingerprinting.

    Parameters
    ----------
    k : int
        Neighbours averaged.
    features : sequence of str, optional
        Feature names used (default all of the corpus).
    fill : float or "min"
        Value of cells not heard, in feature units; "min" uses each feature's training
        minimum minus ``fill_margin``.
    coverage_weight : float
        Weight of the share of cells heard by only one of the two fingerprints.
    scale : "std" or "none"
        Divide each feature by the corpus's standard deviation, or keep its units.
    distance_norm : "rms", "count" or "none"
        ``sqrt(sum / (|U| F))``, ``sqrt(sum) / |U|`` or ``sqrt(sum)`` of the squared
        feature differences over the cells heard by either (``U``; see the module docstring).

    A cell counts as heard when at least one of the chosen features was reported for it.
    """

    k: int = 3
    features: Sequence[str] | None = None
    fill: float | str = "min"
    fill_margin: float = 10.0
    coverage_weight: float = 10.0
    eps: float = 1e-6
    scale: str = "std"
    distance_norm: str = "rms"
    name: str = "wknn"
    searches_whole = True  # the prior it runs under is always "whole"

    def __post_init__(self) -> None:
        problems = []
        if self.scale not in SCALES:
            problems.append(f"scale: {self.scale!r} is not one of {', '.join(SCALES)}")
        if self.distance_norm not in DISTANCE_NORMS:
            problems.append(f"distance_norm: {self.distance_norm!r} is not one of {', '.join(DISTANCE_NORMS)}")
        if isinstance(self.fill, str) and self.fill != "min":
            problems.append(f"fill: {self.fill!r} must be a number (feature units) or 'min'")
        if self.k < 1:
            problems.append(f"k: {self.k} must be >= 1")
        collect(problems, f"{self.name} options")

    def _dense(self, cells: list[np.ndarray], feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        n, c, f = len(cells), len(self.vocab_), len(self.feature_idx_)
        values = np.tile(self.fill_, (n, c, 1))  # [N, C, F]
        heard = np.zeros((n, c), bool)
        for i, (ci, fi) in enumerate(zip(cells, feats, strict=True)):
            pos = np.searchsorted(self.vocab_, ci)
            ok = (pos < c) & (self.vocab_[np.minimum(pos, c - 1)] == ci)
            vals = np.where(np.isfinite(fi[ok]), fi[ok], self.fill_)
            values[i, pos[ok]] = vals
            heard[i, pos[ok]] = np.isfinite(fi[ok]).any(axis=1)
        return (values / self.scale_).reshape(n, c * f), heard

    def fit(self, corpus: Corpus, train_indices: np.ndarray) -> WknnBaseline:
        names = corpus.feature_names
        wanted = list(self.features) if self.features else names
        unknown = [f for f in wanted if f not in names]
        if unknown:
            raise InputError(f"{corpus.url}: no feature(s) {', '.join(unknown)}; has {', '.join(names)}")
        self.feature_idx_ = [names.index(f) for f in wanted]
        train_indices = np.asarray(train_indices, np.int64)
        if len(train_indices) == 0:
            raise InputError(f"{corpus.url}: the split's training part is empty")
        cells, feats = fingerprints(corpus, train_indices, self.feature_idx_)
        self.vocab_ = np.unique(np.concatenate(cells)) if cells else np.zeros(0, np.int64)
        allf = np.concatenate(feats) if feats else np.zeros((0, len(wanted)))
        if self.fill == "min":
            with np.errstate(invalid="ignore"):
                self.fill_ = np.nan_to_num(np.nanmin(allf, axis=0), nan=0.0) - self.fill_margin
        else:
            self.fill_ = np.full(len(wanted), float(self.fill))
        std = np.asarray(corpus.stats["feature_std"], np.float64)[self.feature_idx_]
        self.scale_ = np.where(std > 0, std, 1.0) if self.scale == "std" else np.ones(len(wanted))
        self.ref_values_, self.ref_heard_ = self._dense(cells, feats)
        self.ref_xy_ = corpus.batch(train_indices, ["position_xy_m"])["position_xy_m"].astype(np.float64)
        self.ref_sq_ = (self.ref_values_**2).sum(axis=1)
        return self

    def distances(self, corpus: Corpus, indices: np.ndarray) -> np.ndarray:
        """Distances ``(N, M)`` of the queries to every training reference."""
        cells, feats = fingerprints(corpus, indices, self.feature_idx_)
        q, heard = self._dense(cells, feats)
        out = np.empty((len(q), len(self.ref_values_)))
        nf = len(self.feature_idx_)
        for s in range(0, len(q), 512):
            qs, hs = q[s:s + 512], heard[s:s + 512].astype(np.float64)
            sq = (qs**2).sum(1)[:, None] + self.ref_sq_[None] - 2.0 * qs @ self.ref_values_.T
            common = hs @ self.ref_heard_.T.astype(np.float64)
            union = hs.sum(1)[:, None] + self.ref_heard_.sum(1)[None] - common
            union_safe = np.maximum(union, 1.0)
            sq = np.maximum(sq, 0.0)
            if self.distance_norm == "rms":
                d = np.sqrt(sq / (union_safe * nf))
            elif self.distance_norm == "count":
                d = np.sqrt(sq) / union_safe
            else:
                d = np.sqrt(sq)
            if self.coverage_weight:
                d += self.coverage_weight * (union - common) / union_safe
            out[s:s + 512] = d
        return out

    def _weighted(self, d: np.ndarray, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None:
            d = np.where(allowed, d, np.inf)
        k = min(self.k, d.shape[1])
        nearest = np.argpartition(d, k - 1, axis=1)[:, :k]
        dn = np.take_along_axis(d, nearest, axis=1)
        w = np.where(np.isfinite(dn), 1.0 / (dn + self.eps), 0.0)
        total = w.sum(1, keepdims=True)
        found = total[:, 0] > 0
        xy = (w[..., None] * self.ref_xy_[nearest]).sum(1) / np.maximum(total, 1e-300)
        return xy, found

    def predict(self, corpus: Corpus, indices: np.ndarray, prior: Any = None) -> Predictions:
        """WkNN searches the whole area whatever ``prior`` says (its prior is ``whole``)."""
        xy, _ = self._weighted(self.distances(corpus, indices))
        return Predictions(xy_m=xy)


@register_baseline("knn-square")
@dataclass
class KnnSquareBaseline(WknnBaseline):
    """k-NN restricted to the sample's crop (placed by the prior); the crop centre when it holds no reference."""

    crop_size_m: float = 600.0
    name: str = "knn-square"
    searches_whole = False

    def predict(self, corpus: Corpus, indices: np.ndarray, prior: Any = None) -> Predictions:
        indices = np.asarray(indices, np.int64)
        centres = resolve_prior(prior).centres_m(corpus, indices, self.crop_size_m)
        d = self.distances(corpus, indices)
        if centres is None:  # whole: the whole area, i.e. WkNN
            return Predictions(xy_m=self._weighted(d)[0])
        origin = centres - self.crop_size_m / 2
        rel = self.ref_xy_[None] - origin[:, None]  # [N, M, 2]
        inside = np.asarray(((rel >= 0) & (rel <= self.crop_size_m)).all(-1))
        xy, found = self._weighted(d, inside)
        return Predictions(xy_m=np.where(found[:, None], xy, centres))


@dataclass
class Seed004Fingerprints:
    """Seed 004 §7.1's fingerprint settings, mixed in before a k-NN class: RSSI only, -25 dB fill,
    raw dB, distance / heard-cell count, no coverage term."""

    features: Sequence[str] | None = SEED004_FEATURES
    fill: float | str = SEED004_FILL_DB
    coverage_weight: float = 0.0
    scale: str = "none"
    distance_norm: str = "count"


@register_baseline("wknn-seed004")
@dataclass
class WknnSeed004Baseline(Seed004Fingerprints, WknnBaseline):
    """WkNN with seed 004 §7.1's settings (:class:`Seed004Fingerprints`)."""

    name: str = "wknn-seed004"


@register_baseline("knn-square-seed004")
@dataclass
class KnnSquareSeed004Baseline(Seed004Fingerprints, KnnSquareBaseline):
    """k-NN in the square with seed 004 §7.1's settings (:class:`Seed004Fingerprints`)."""

    name: str = "knn-square-seed004"


@register_baseline("mapmatch")
@dataclass
class MapMatchBaseline:
    """Map matching (:mod:`learn.mapmatch`) as a method of the shared harness (needs no training data).

    Parameters
    ----------
    reports : "last" or "all"
        Events used (see the module docstring).
    pixel_prior : "road", "outdoor" or "none"
        Pixels searched (semantic layers of the corpus scene).
    crop_size_m : float
        Side of the search square a crop prior centres (``--prior``); ``whole`` searches the scene.
    fill_passes : int
        Passes of :func:`learn.mapmatch.fill_holes` over the cell maps.
    n_plots : int
        Posteriors kept for :meth:`plot_extra`.
    """

    reports: str = "last"
    pixel_prior: str = "road"
    crop_size_m: float = 600.0
    fill_passes: int = 1
    n_plots: int = 8
    name: str = "mapmatch"

    def sigma_of(self, corpus: Corpus) -> np.ndarray:
        return feature_sigmas(corpus.feature_names, corpus.attrs.get("config"), corpus.stats.get("feature_std"))

    def predict(self, corpus: Corpus, indices: np.ndarray, prior: Any = None) -> Predictions:
        indices = np.asarray(indices, np.int64)
        prior = resolve_prior(prior)
        centres = prior.centres_m(corpus, indices, self.crop_size_m)
        events, temper, scenes = corpus_events(corpus, indices, self.reports)
        sigma = self.sigma_of(corpus)
        xy = np.full((len(indices), 2), np.nan)
        std = np.full(len(indices), np.nan)
        self.last_: list[dict[str, Any]] = []
        for s in np.unique(scenes):
            sel = np.flatnonzero(scenes == s)
            m = scene_matcher(corpus, int(s), sigma, self.pixel_prior, fill_passes=self.fill_passes)
            region = None
            if centres is not None:
                c = centres[sel]
                half = self.crop_size_m / 2
                region = ((np.abs(m.x_m[None] - c[:, :1]) <= half) & (np.abs(m.y_m[None] - c[:, 1:]) <= half))
            res = m.match([events[i] for i in sel], temper[sel], region, keep=max(0, self.n_plots - len(self.last_)))
            xy[sel], std[sel] = res.xy_m, res.std_m
            for j, post in enumerate(res.posteriors):
                self.last_.append({"index": int(indices[sel[j]]), "posterior": post, "grid": m.grid,
                                   "xy_m": res.xy_m[j], "centre_m": None if centres is None else centres[sel[j]]})
        # No heard cell with a map (or no allowed pixel): the prior's centre, else the scene centre.
        missing = ~np.isfinite(xy).all(1)
        if missing.any():
            mid = {int(s): corpus.scene(int(s)).grid.center_m for s in np.unique(scenes[missing])}
            fallback = centres if centres is not None else np.array(
                [mid.get(int(s), (np.nan, np.nan)) for s in scenes], np.float64)
            xy[missing] = fallback[missing]
        self.std_m_ = std
        return Predictions(xy_m=xy)

    def plot_extra(self, out_dir: str | os.PathLike) -> list[Path]:
        """Posterior heatmaps of the first ``n_plots`` samples of the last :meth:`predict`."""
        return [plot_match(m, out_dir) for m in getattr(self, "last_", [])]
