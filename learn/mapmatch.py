"""Physics map matching: the measurement likelihood of seed 000 Eqs. 21-22 on every pixel.

A report lists, for each heard cell ``c``, features ``m_cf`` (RSRP, RSRQ, SINR ... in the
corpus's feature order). The twin's per-cell maps ``r_cf(y)`` (corpus ``cell_maps``,
``(n_cells, F, H, W)`` on the scene grid) predict them at every pixel ``y``; with
Gaussian measurement noise of standard deviation ``sigma_f`` per feature (Eq. 21) the
log-likelihood of a pixel is (Eq. 22)::

    log p(m | y) = -1/2 * sum_{events e} sum_{f valid} ((m_ef - r_{c_e f}(y)) / sigma_f)^2 + const

The sum runs over the **heard** cells only: a report lists only the strongest few cells,
so a cell absent from it says little (penalizing it was measured to hurt). A heard cell
whose map is NaN at a pixel (the twin says it is not received there) contributes
``(miss_value_f - m_ef)^2 / sigma_f^2`` with ``miss_value_f`` the map's lowest value
minus ``miss_margin`` (a cell heard where the twin predicts none is unlikely, not
impossible).

Expanding the square turns the sum over pixels into two matrix products over the
``(cell, feature)`` pairs, so a batch of sequences costs one GEMM with the precomputed
``z = r / sigma`` and ``z^2`` planes::

    -2 log p = sum_ef z_m^2 - 2 (sum_e z_m)_cf . z_cf(y) + n_cf . z_cf(y)^2

A moving UE: ``reports="last"`` (default) uses the events of the sequence's last
measurement instant (the position scored is the last one); ``"all"`` sums every event's
term, tempered by the number of reports (the UE moved between them, so they are not
independent looks at one pixel). The demo corpus measured ``last`` better (docs/benchmarks.md).

The maps' NaN holes next to buildings and coverage edges are filled once by a NaN-aware
3x3 box (:func:`fill_holes`). An optional prior restricts the search to outdoor or road
pixels (semantic layers). The
posterior over the region is the softmax of the log-likelihood plus log prior; the point
estimate is its mode (MAP pixel centre) and the spread the square root of half the trace
of its covariance [m].
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twin.corpus.store import Corpus
from twin.errors import InputError
from twin.geo import Grid

__all__ = ["MapMatcher", "MatchResult", "energy_planes", "feature_sigmas", "last_report", "miss_values",
           "residual_energy", "PIXEL_PRIORS", "plot_match"]

PIXEL_PRIORS = ("road", "outdoor", "none")

# Noise of a report feature [feature units] when the corpus names no reporting config:
# twin.radio.metrics.ReportingConfig's defaults (2 dB for powers and SINR, 1 dB for RSRQ).
_DEFAULT_SIGMA = {"rsrp": 2.0, "rssi": 2.0, "rsrq": 1.0, "sinr": 2.0, "snr": 2.0}


def feature_sigmas(feature_names: Sequence[str], config: dict[str, Any] | None = None,
                   feature_std: Sequence[float] | None = None, floor: float = 0.5) -> np.ndarray:
    """Noise standard deviation ``(F,)`` per feature [feature units] for Eq. 21.

    From the corpus's reporting config (``config["reporting"]``: ``<kind>_sigma_db`` and
    the quantization step, ``sqrt(sigma^2 + step^2 / 12)``), else the reporting defaults by
    feature kind (``rsrp``, ``rsrq``, ``sinr`` ...), else a quarter of the corpus's
    standard deviation of the feature; never below ``floor``.
    """
    rep = (config or {}).get("reporting") or {}
    out = []
    for k, name in enumerate(feature_names):
        kind = name.split("_")[0].lower().lstrip("n")  # nrsrp (NB-IoT) -> rsrp
        kind = {"srp": "rsrp", "srq": "rsrq", "inr": "sinr"}.get(kind, kind)
        if f"{kind}_sigma_db" in rep:
            sigma = math.hypot(float(rep[f"{kind}_sigma_db"]), float(rep.get(f"{kind}_step_db", 0.0)) / math.sqrt(12))
        elif kind in _DEFAULT_SIGMA:
            sigma = _DEFAULT_SIGMA[kind]
        elif feature_std is not None and np.isfinite(feature_std[k]) and feature_std[k] > 0:
            sigma = float(feature_std[k]) / 4
        else:
            sigma = 1.0
        out.append(max(sigma, floor))
    return np.asarray(out, np.float64)


def last_report(cell_id: np.ndarray, features: np.ndarray, mask: np.ndarray, time_s: np.ndarray,
                reports: str = "last") -> tuple[np.ndarray, np.ndarray]:
    """The events one sequence contributes: cell ids ``(E,)`` and features ``(E, F)``.

    ``reports="last"``: the events at the last measurement instant; ``"all"``: every real event.
    """
    mask = np.asarray(mask, bool)
    if reports == "last" and mask.any():
        mask = mask & (time_s == time_s[mask].max())
    elif reports not in ("last", "all"):
        raise InputError(f"map matching: reports '{reports}' is not 'last' or 'all'")
    return np.asarray(cell_id)[mask], np.asarray(features, np.float64)[mask]


def miss_values(cell_maps: np.ndarray, miss_margin: float = 10.0) -> np.ndarray:
    """``miss_value_f`` ``(F,)``: the lowest finite value of each feature over ``cell_maps`` ``(n, F, H, W)``
    minus ``miss_margin`` [feature units] (0 - margin for an all-NaN feature): a heard cell's term where its map is NaN."""
    maps = np.asarray(cell_maps, np.float32)
    n, f = maps.shape[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN feature: no lowest value
        lowest = np.nanmin(maps.reshape(n, f, -1).transpose(1, 0, 2).reshape(f, -1), axis=1)
    return np.nan_to_num(lowest, nan=0.0) - miss_margin


def energy_planes(maps: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The planes ``[z^2; z]`` ``(2 n F, P)`` float32 of Eq. 22's expanded square, ``z = r / sigma``.

    ``maps`` ``(n_cells, F, ...)`` hold the cells' predicted features at ``P`` pixels (the
    trailing axes, flattened), without NaN (a miss already replaced by its value,
    :func:`miss_values`); ``sigma`` ``(F,)`` [feature units]. Rows are ``cell * F + feature``.
    """
    maps = np.asarray(maps, np.float32)
    n, f = maps.shape[:2]
    z = (maps.reshape(n, f, -1) / np.asarray(sigma, np.float64).reshape(f)[None, :, None].astype(np.float32))
    z = z.reshape(n * f, -1)
    return np.ascontiguousarray(np.concatenate([z * z, z]))


def _design(lookup: dict[int, int], sigma: np.ndarray, events: Sequence[tuple[np.ndarray, np.ndarray]],
            temper: Sequence[float] | np.ndarray, nf: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sequence: sum of z over events ``(N, nF)``, counts ``(N, nF)``, sum of z^2 ``(N,)``."""
    f = len(sigma)
    s1 = np.zeros((len(events), nf))
    cnt = np.zeros((len(events), nf))
    s2 = np.zeros(len(events))
    for i, ((cells, feats), t) in enumerate(zip(events, temper, strict=True)):
        for c, fv in zip(cells, feats, strict=True):
            row = lookup.get(int(c))
            if row is None:
                continue
            ok = np.isfinite(fv)
            zm = np.where(ok, fv / sigma, 0.0)
            cols = row * f + np.arange(f)
            s1[i, cols] += t * zm
            cnt[i, cols] += t * ok
            s2[i] += t * float((zm * zm).sum())
    return s1, cnt, s2


def residual_energy(zz: np.ndarray, lookup: dict[int, int], sigma: np.ndarray,
                    events: Sequence[tuple[np.ndarray, np.ndarray]], temper: Sequence[float] | np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Residual energy of Eq. 22, ``sum_ef ((m_ef - r_cf(y)) / sigma_f)^2`` ``(N, P)``, the one implementation.

    ``zz`` ``(2 n F, P)`` from :func:`energy_planes` of the cells ``lookup`` maps (cell id ->
    row); ``sigma`` ``(F,)`` [feature units]; ``events`` per sequence ``(cell_id (E,), features
    (E, F))``, NaN features and cells without a row skipped; ``temper`` per sequence weight
    (default 1). Returns the energy (``= -2 log p``, dimensionless, >= 0 up to float32
    rounding) and the number of ``(event, feature)`` terms with a map in it ``(N,)`` (both
    weighted by ``temper``).
    """
    temper = [1.0] * len(events) if temper is None else temper
    s1, cnt, s2 = _design(lookup, np.asarray(sigma, np.float64), events, temper, zz.shape[0] // 2)
    # -2 log p = s2 - 2 s1 . z + cnt . z^2: one float32 GEMM over the pixels.
    w = np.concatenate([cnt, -2.0 * s1], axis=1).astype(np.float32)
    e = w @ zz
    e += s2[:, None].astype(np.float32)
    return e, cnt.sum(1)


@dataclass
class MatchResult:
    """Map matching of ``N`` sequences: MAP pixel centres, spread, and (optionally) posteriors."""

    xy_m: np.ndarray                 # (N, 2) MAP pixel centre [scene m]; NaN when nothing to match
    std_m: np.ndarray                # (N,) sqrt(trace(cov) / 2) of the posterior [m]
    log_lik_max: np.ndarray          # (N,) log-likelihood at the MAP pixel [nats]
    posteriors: list[np.ndarray] = field(default_factory=list)  # first n kept: (H, W) probabilities


class MapMatcher:
    """Dense map matching on one scene grid.

    Parameters
    ----------
    cell_maps : array ``(n_cells, F, H, W)``
        Per-cell feature maps on ``grid`` (NaN where the cell is not received).
    cell_id : array ``(n_cells,)``
        The cells' ids.
    grid : Grid
    sigma : array ``(F,)``
        Noise standard deviation per feature [feature units].
    pixel_mask : bool array ``(H, W)``, optional
        Pixels allowed by the prior (e.g. roads); default all. Only these are searched:
        :attr:`x_m`, :attr:`y_m` ``(P',)`` are their centres [m].
    miss_margin : float
        ``miss_value_f`` = the lowest finite value of feature ``f`` over the maps minus this.
    """

    def __init__(self, cell_maps: np.ndarray, cell_id: np.ndarray, grid: Grid, sigma: np.ndarray,
                 pixel_mask: np.ndarray | None = None, miss_margin: float = 10.0):
        maps = np.asarray(cell_maps, np.float32)
        if maps.ndim != 4 or maps.shape[2:] != grid.shape:
            raise InputError(f"map matching: cell maps of shape {maps.shape}, expected (n_cells, F, {grid.height}, "
                             f"{grid.width}) on the scene grid")
        n, f, h, w = maps.shape
        self.grid, self.n_features = grid, f
        self.cell_id = np.asarray(cell_id, np.int64)
        self.lookup = {int(c): i for i, c in enumerate(self.cell_id)}
        self.sigma = np.asarray(sigma, np.float64).reshape(f)
        self.miss_value = miss_values(maps, miss_margin)                                       # (F,)
        filled = np.where(np.isfinite(maps), maps, self.miss_value[None, :, None, None].astype(np.float32))
        self.pixel_mask = (np.ones(h * w, bool) if pixel_mask is None
                           else np.asarray(pixel_mask, bool).reshape(h * w))
        # Only the prior's pixels are searched: P' columns (P' = P without a prior).
        self.pixels = np.flatnonzero(self.pixel_mask)                                         # (P',)
        self.zz = energy_planes(filled.reshape(n, f, h * w)[:, :, self.pixels], self.sigma)   # (2 n F, P')
        cx, cy = grid.center_m
        self.x_m = np.tile(grid.x_centers_m(), h)[self.pixels]                                # (P',) [m]
        self.y_m = np.repeat(grid.y_centers_m(), w)[self.pixels]
        self._dx, self._dy = (self.x_m - cx).astype(np.float32), (self.y_m - cy).astype(np.float32)
        self._centre = (cx, cy)

    def energy(self, events: Sequence[tuple[np.ndarray, np.ndarray]], temper: Sequence[float] | np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Residual energy of Eq. 22 ``(N, P')`` at the searched pixels and its number of terms ``(N,)``
        (:func:`residual_energy` on this scene's planes)."""
        return residual_energy(self.zz, self.lookup, self.sigma, events, temper)

    def log_likelihood(self, events: Sequence[tuple[np.ndarray, np.ndarray]], temper: Sequence[float] | np.ndarray | None = None,
                       region: np.ndarray | None = None) -> np.ndarray:
        """Log-likelihood ``(N, P')`` of the searched pixels (:attr:`x_m`, :attr:`y_m`; ``-inf`` outside ``region``).

        ``events``: per sequence ``(cell_id (E,), features (E, F))``; ``temper``: per
        sequence weight of its events (default 1); ``region``: bool ``(N, P')`` of allowed pixels.
        It is ``-energy / 2`` (:meth:`energy`).
        """
        ll, n_terms = self.energy(events, temper)
        ll *= -0.5
        if region is not None:
            ll[~region] = -np.inf
        ll[n_terms == 0] = -np.inf  # nothing heard that has a map: no estimate
        return ll

    def match(self, events: Sequence[tuple[np.ndarray, np.ndarray]], temper: Sequence[float] | np.ndarray | None = None,
              region: np.ndarray | None = None, keep: int = 0, chunk: int = 128) -> MatchResult:
        """MAP pixel, posterior spread and the first ``keep`` posteriors of each sequence (chunked)."""
        n = len(events)
        xy = np.full((n, 2), np.nan)
        std = np.full(n, np.nan)
        best = np.full(n, -np.inf)
        kept: list[np.ndarray] = []
        temper = [1.0] * n if temper is None else list(temper)
        for s in range(0, n, chunk):
            sl = slice(s, min(n, s + chunk))
            ll = self.log_likelihood(events[sl], temper[sl], None if region is None else region[sl])
            k = np.argmax(ll, axis=1)
            top = ll[np.arange(len(k)), k]
            ok = np.isfinite(top)
            ll -= np.where(ok, top, 0.0)[:, None]
            ll[~ok] = -np.inf
            p = np.exp(ll, out=ll)
            p /= np.maximum(p.sum(1, keepdims=True), 1e-30)
            mx, my = p @ self._dx, p @ self._dy
            var = p @ (self._dx * self._dx) - mx**2 + p @ (self._dy * self._dy) - my**2
            xy[sl] = np.where(ok[:, None], np.stack([self.x_m[k], self.y_m[k]], 1), np.nan)
            std[sl] = np.where(ok, np.sqrt(np.maximum(var, 0.0) / 2), np.nan)
            best[sl] = top
            for j in range(min(keep - len(kept), len(k))):
                full = np.zeros(self.grid.height * self.grid.width)
                full[self.pixels] = p[j]
                kept.append(full.reshape(self.grid.shape))
        return MatchResult(xy, std, best, kept)


def _coarsen(maps: np.ndarray, factor: int) -> np.ndarray:
    """NaN-aware block mean of the last two axes by ``factor`` (edges padded with NaN)."""
    h, w = maps.shape[-2:]
    hh, ww = -(-h // factor) * factor, -(-w // factor) * factor
    pad = np.full(maps.shape[:-2] + (hh, ww), np.nan, np.float32)
    pad[..., :h, :w] = maps
    blocks = pad.reshape(maps.shape[:-2] + (hh // factor, factor, ww // factor, factor))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN
        return np.nanmean(blocks, axis=(-3, -1))


def fill_holes(maps: np.ndarray, passes: int = 1) -> np.ndarray:
    """Fill NaN pixels of the last two axes with the mean of their finite 3x3 neighbours, ``passes`` times.

    Pixels next to a building or a coverage edge are often NaN in a twin's map while the
    UE there still hears the cell; one pass of this NaN-aware box keeps them (measured on
    the demo corpus: 71.8 -> 49.4 m mean under the same crops; more passes do not help).
    """
    from scipy.ndimage import uniform_filter

    out = np.asarray(maps, np.float32)
    size = (1,) * (out.ndim - 2) + (3, 3)
    for _ in range(passes):
        fin = np.isfinite(out)
        num = uniform_filter(np.where(fin, out, 0.0).astype(np.float64), size=size, mode="constant")
        den = uniform_filter(fin.astype(np.float64), size=size, mode="constant")
        out = np.where(fin, out, np.where(den > 0, num / np.maximum(den, 1e-12), np.nan)).astype(np.float32)
    return out


def pixel_mask_of(scene: Any, prior: str) -> np.ndarray | None:
    """Allowed pixels ``(H, W)`` of a corpus scene under ``prior`` (road, outdoor, none).

    A scene without the layer a prior needs falls back to the next weaker one (road ->
    outdoor -> none); ``None`` means every pixel.
    """
    if prior == "none":
        return None
    if prior not in PIXEL_PRIORS:
        raise InputError(f"map matching: pixel prior '{prior}' is not one of {', '.join(PIXEL_PRIORS)}")
    names = list(scene.semantic_channels)
    need = "road_mask" if prior == "road" else "building_mask"
    if need not in names:  # a scene without that layer: the next weaker prior (road -> outdoor -> none)
        return pixel_mask_of(scene, "outdoor") if prior == "road" else None
    layer = np.asarray(scene.semantic_maps[names.index(need)])
    mask = layer > 0.5 if prior == "road" else layer < 0.5
    return mask if mask.any() else None


def scene_matcher(corpus: Corpus, scene_index: int, sigma: np.ndarray, pixel_prior: str = "road",
                  coarse_factor: int = 1, fill_passes: int = 1) -> MapMatcher:
    """A :class:`MapMatcher` of one corpus scene (holes filled by :func:`fill_holes`; optionally on a
    grid ``coarse_factor`` times coarser)."""
    scene = corpus.scene(scene_index)
    if scene.cell_maps is None:
        raise InputError(f"{corpus.url}: scene {scene.name} has no per-cell maps (cell_maps); map matching and "
                         "the coarse prior need them (import with --maps, or use --prior serving-cell)")
    mask = pixel_mask_of(scene, pixel_prior)
    maps, grid = fill_holes(scene.cell_maps, fill_passes), scene.grid
    if coarse_factor > 1:
        maps = _coarsen(maps, coarse_factor)
        if mask is not None:
            mask = _coarsen(mask[None].astype(np.float32), coarse_factor)[0] > 0
        grid = Grid(grid.x0_m, grid.y0_m, grid.cell_size_m * coarse_factor, maps.shape[-1], maps.shape[-2])
    return MapMatcher(maps, scene.cell_id, grid, sigma, mask)


def corpus_events(corpus: Corpus, indices: np.ndarray, reports: str = "last"
                  ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """Per sample its events (:func:`last_report`), its temper (1 / reports used) and scene index."""
    b = corpus.batch(indices, ["cell_id", "features", "mask", "time_s", "scene_index"])
    events, temper = [], []
    for cell, feat, mask, t in zip(b["cell_id"], b["features"], b["mask"], b["time_s"], strict=True):
        events.append(last_report(cell, feat, mask, t, reports))
        n_reports = len(np.unique(t[mask])) if mask.any() else 1
        temper.append(1.0 if reports == "last" else 1.0 / max(n_reports, 1))
    return events, np.asarray(temper), b["scene_index"].astype(np.int64)


def plot_match(item: dict[str, Any], out_dir: str | os.PathLike, truth_m: np.ndarray | None = None) -> Path:
    """One posterior heatmap PNG (``mapmatch_<index>.png``): density, MAP (cyan), truth if given (red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid: Grid = item["grid"]
    post = item["posterior"]
    x0, y0, x1, y1 = grid.extent_m
    fig, ax = plt.subplots(figsize=(5.4, 4.6))
    im = ax.imshow(np.ma.masked_less_equal(post, post.max() * 1e-4), origin="lower", extent=(x0, x1, y0, y1),
                   cmap="viridis")
    fig.colorbar(im, ax=ax, label="posterior probability per pixel")
    ax.plot(*item["xy_m"], marker="o", color="cyan", ms=9, mfc="none", mew=2, ls="", label="MAP")
    if truth_m is not None and np.isfinite(truth_m).all():
        ax.plot(*truth_m, marker="*", color="red", ms=14, ls="", label="truth")
    ax.set_xlabel("x [m] (east)")
    ax.set_ylabel("y [m] (north)")
    ax.set_title(f"map matching, sample {item['index']}")
    ax.legend(loc="upper right", fontsize=8)
    path = out / f"mapmatch_{item['index']:06d}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
