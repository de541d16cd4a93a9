"""From measured points and (point, cell) events to a corpus: the step every importer shares.

An importer parses its file into :class:`Measurements` (one row per UE position, one
row per position and cell), cleans it while counting what it drops in an
:class:`ImportReport`, then calls :func:`write_measurements`, which builds the
sequences, the splits and the scene, and writes the Zarr corpus atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from learn.splits import random_split, spatial_split
from twin.corpus.store import SPLIT_NAMES, Corpus, CorpusWriter
from twin.errors import InputError
from twin.geo import Grid, SceneFrame

__all__ = ["DEFAULT_SPLITS", "ImportReport", "Measurements", "SceneSpec", "SplitConfig", "write_measurements",
           "merge_duplicate_events", "clean_feature_values", "unique_points", "VALID_RANGES"]

# Physically possible ranges; values outside are unit slips or sentinels, never measurements.
VALID_RANGES: dict[str, tuple[float, float]] = {
    "rssi_dbm": (-140.0, 0.0), "rsrp_dbm": (-160.0, -20.0), "rsrq_db": (-45.0, 5.0),
    "sinr_db": (-40.0, 60.0), "nrsrp_dbm": (-160.0, -20.0), "nrsrq_db": (-45.0, 5.0),
    "nsinr_db": (-40.0, 60.0), "rss_db": (-140.0, 0.0),
}


@dataclass
class ImportReport:
    """What an importer read, kept and dropped (and why); stored in the corpus attributes."""

    source: str
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    samples: int = 0
    events: int = 0

    def drop(self, reason: str, n: int | np.integer) -> None:
        if int(n):
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rows_read": self.rows_read, "dropped": dict(self.dropped),
                "notes": list(self.notes), "samples": self.samples, "events": self.events}

    def summary(self) -> str:
        lines = [f"{self.source}: {self.rows_read} rows read -> {self.samples} samples, {self.events} events"]
        lines += [f"  dropped {n}: {reason}" for reason, n in self.dropped.items()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class Measurements:
    """Cleaned measurements in scene metres.

    Attributes
    ----------
    point_xy_m : (P, 2) float
        UE positions [m].
    point_time_s : (P,) float
        Absolute time of each point [s] (0 when the source has none).
    point_sequence : (P,) int
        The drive sequence of each point (points of one sequence may share a window).
    event_point : (E,) int
        The point of each event.
    event_cell : (E,) int64
        The cell id of each event.
    event_features : (E, F) float
        Feature values, NaN where not reported.
    """

    point_xy_m: np.ndarray
    point_time_s: np.ndarray
    point_sequence: np.ndarray
    event_point: np.ndarray
    event_cell: np.ndarray
    event_features: np.ndarray


@dataclass
class SceneSpec:
    """The scene a corpus refers to; ``grid=None`` makes one covering the data."""

    name: str
    frame: SceneFrame
    cell_id: np.ndarray
    cell_xy_m: np.ndarray
    grid: Grid | None = None
    radio_maps: np.ndarray | None = None
    radio_channels: Sequence[str] = ()
    semantic_maps: np.ndarray | None = None
    semantic_channels: Sequence[str] = ()
    cell_maps: np.ndarray | None = None
    cell_size_m: float = 10.0
    margin_m: float = 300.0


@dataclass(frozen=True)
class SplitConfig:
    """Split settings (see :mod:`learn.splits`)."""

    seed: int = 0
    test_frac: float = 0.2
    val_frac: float = 0.1
    block_m: float = 200.0
    known_test_frac: float = 0.1


DEFAULT_SPLITS = SplitConfig()


def merge_duplicate_events(point: np.ndarray, cell: np.ndarray, features: np.ndarray,
                           report: ImportReport, what: str = "duplicate (point, cell) rows merged by mean"
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average the features of events that repeat a (point, cell) pair (NaN-aware)."""
    keys = np.stack([point.astype(np.int64), cell.astype(np.int64)], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    report.drop(what, len(point) - len(unique))
    if len(unique) == len(point):
        return point, cell, features
    valid = np.isfinite(features)
    sums = np.zeros((len(unique), features.shape[1]))
    counts = np.zeros_like(sums)
    np.add.at(sums, inverse, np.where(valid, features, 0.0))
    np.add.at(counts, inverse, valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        merged = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return unique[:, 0], unique[:, 1], merged


def _windows(meas: Measurements, window_s: float) -> list[np.ndarray]:
    """For each point, the points whose events form its sample (its window, oldest first)."""
    n = len(meas.point_xy_m)
    if window_s <= 0:
        return [np.array([p]) for p in range(n)]
    order = np.lexsort((meas.point_time_s, meas.point_sequence))
    seq, t = meas.point_sequence[order], meas.point_time_s[order]
    out: list[np.ndarray] = [np.empty(0, np.int64)] * n
    start = 0
    for k in range(n):
        if k and seq[k] != seq[k - 1]:
            start = k
        lo = start + int(np.searchsorted(t[start:k + 1], t[k] - window_s, side="left"))
        out[order[k]] = order[lo:k + 1]
    return out


def _samples(meas: Measurements, window_s: float, max_events: int | None, report: ImportReport
             ) -> tuple[dict[str, np.ndarray], int]:
    n_feat = meas.event_features.shape[1]
    by_point: list[list[int]] = [[] for _ in range(len(meas.point_xy_m))]
    for e, p in enumerate(meas.event_point):
        by_point[p].append(e)
    # Strongest first inside a point, so that truncation drops the weakest cells.
    strength = np.nan_to_num(meas.event_features[:, 0], nan=-np.inf)
    by_point_arr = [np.array(sorted(es, key=lambda e: -strength[e]), np.int64) for es in by_point]
    windows = _windows(meas, window_s)
    lengths = np.array([sum(len(by_point_arr[p]) for p in w) for w in windows])
    t_max = int(lengths.max()) if max_events is None else int(max_events)
    if t_max <= 0:
        raise InputError(f"{report.source}: no events left to write")
    n = len(windows)
    arrays: dict[str, np.ndarray] = {
        "position_xy_m": meas.point_xy_m.astype(np.float32),
        "event_xy_m": np.full((n, t_max, 2), np.nan, np.float32),
        "cell_id": np.full((n, t_max), -1, np.int64),
        "beam_id": np.full((n, t_max), -1, np.int32),
        "time_s": np.zeros((n, t_max), np.float32),
        "features": np.full((n, t_max, n_feat), np.nan, np.float32),
        "mask": np.zeros((n, t_max), bool),
    }
    truncated = 0
    for i, window in enumerate(windows):
        events = np.concatenate([by_point_arr[p] for p in window])
        if len(events) > t_max:
            truncated += len(events) - t_max
            events = events[-t_max:] if window_s > 0 else events[:t_max]
        k = len(events)
        pts = meas.event_point[events]
        arrays["event_xy_m"][i, :k] = meas.point_xy_m[pts]
        arrays["cell_id"][i, :k] = meas.event_cell[events]
        arrays["time_s"][i, :k] = meas.point_time_s[pts] - meas.point_time_s[pts].min()
        arrays["features"][i, :k] = meas.event_features[events]
        arrays["mask"][i, :k] = True
    report.drop(f"events beyond max_events={t_max} (weakest or oldest first)", truncated)
    return arrays, t_max


def _grid_for(spec: SceneSpec, xy_m: np.ndarray) -> Grid:
    pts = [xy_m[np.isfinite(xy_m).all(1)]]
    if len(spec.cell_xy_m):
        finite = np.all(np.isfinite(spec.cell_xy_m), axis=1)
        pts.append(spec.cell_xy_m[finite])
    allxy = np.concatenate(pts)
    lo, hi = allxy.min(axis=0) - spec.margin_m, allxy.max(axis=0) + spec.margin_m
    return Grid.covering(lo[0], lo[1], hi[0], hi[1], spec.cell_size_m)


def write_measurements(meas: Measurements, out: str | os.PathLike, scene: SceneSpec,
                       feature_names: Sequence[str], feature_units: Sequence[str],
                       report: ImportReport, splits: SplitConfig = DEFAULT_SPLITS,
                       extra_splits: dict[str, np.ndarray] | None = None, window_s: float = 0.0,
                       max_events: int | None = None, attrs: dict[str, Any] | None = None,
                       overwrite: bool = False, point_rows: list[np.ndarray] | None = None) -> Corpus:
    """Write one sample per point (its window's events), the splits and the scene; return the corpus.

    ``extra_splits`` adds split schemes given as labels ``(P,)`` (e.g. published test sets).
    Points whose window holds no event are dropped and counted. Points without a position
    (NaN: reports to localize) are all ``test`` under the spatial split, group -1.
    ``point_rows`` (per point, its source rows) adds the ``sources`` group read by
    :func:`learn.predict.sample_context`: per sample ``first_time_s``, ``last_time_s``,
    ``first_row``, ``last_row`` and its rows (``rows`` flat, ``row_offsets`` ``(N + 1,)``).
    """
    has_event = np.zeros(len(meas.point_xy_m), bool)
    has_event[meas.event_point] = True
    if window_s <= 0 and not has_event.all():
        keep = np.flatnonzero(has_event)
        report.drop("points with no valid event", len(has_event) - len(keep))
        remap = np.full(len(has_event), -1, np.int64)
        remap[keep] = np.arange(len(keep))
        meas = Measurements(meas.point_xy_m[keep], meas.point_time_s[keep], meas.point_sequence[keep],
                            remap[meas.event_point], meas.event_cell, meas.event_features)
        extra_splits = {k: v[keep] for k, v in (extra_splits or {}).items()}
        point_rows = None if point_rows is None else [point_rows[k] for k in keep]
    if len(meas.point_xy_m) == 0:
        raise InputError(f"{report.source}: no valid measurement left after cleaning\n{report.summary()}")
    arrays, t_max = _samples(meas, window_s, max_events, report)
    grid = scene.grid or _grid_for(scene, meas.point_xy_m)
    n = len(meas.point_xy_m)
    arrays["scene_index"] = np.zeros(n, np.int32)
    arrays["split_random"] = random_split(n, splits.seed, splits.test_frac, splits.val_frac)
    located = np.isfinite(meas.point_xy_m).all(1)
    labels = np.full(n, SPLIT_NAMES.index("test"), np.uint8)
    blocks = np.full(n, -1, np.int64)
    if located.any():
        labels[located], blocks[located] = spatial_split(
            meas.point_xy_m[located], splits.block_m, splits.seed, splits.test_frac, splits.val_frac,
            splits.known_test_frac, (grid.x0_m, grid.y0_m))
    arrays["split_spatial"] = labels
    arrays["group_id"] = blocks
    schemes = ["random", "spatial", *(extra_splits or {})]
    for name, lab in (extra_splits or {}).items():
        arrays[f"split_{name}"] = np.asarray(lab, np.uint8)
    report.samples = n
    report.events = int(arrays["mask"].sum())
    config = {"splits": asdict(splits), "window_s": float(window_s), "max_events": t_max}
    writer = CorpusWriter(out, feature_names, feature_units, t_max, split_schemes=schemes,
                          config=config, overwrite=overwrite, chunk_samples=max(1024, min(n, 16384)))
    with writer:
        writer.add_scene(scene.name, grid, scene.frame, radio_maps=scene.radio_maps,
                         radio_channels=scene.radio_channels, semantic_maps=scene.semantic_maps,
                         semantic_channels=scene.semantic_channels, cell_id=scene.cell_id,
                         cell_xy_m=scene.cell_xy_m, cell_maps=scene.cell_maps)
        writer.append(arrays)
        if point_rows is not None:
            _write_sources(writer.root, meas, point_rows, window_s)
        return writer.close({"import_report": report.to_dict(), "spatial_block_m": splits.block_m,
                             **(attrs or {})})


def _write_sources(root: Any, meas: Measurements, point_rows: list[np.ndarray], window_s: float) -> None:
    """The ``sources`` group: per sample its times and source rows (see :func:`write_measurements`)."""
    windows = _windows(meas, window_s)
    rows = [np.unique(np.concatenate([point_rows[p] for p in w])) for w in windows]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    g = root.create_group("sources")
    values = {"first_time_s": np.array([meas.point_time_s[w].min() for w in windows], np.float64),
              "last_time_s": np.array([meas.point_time_s[w].max() for w in windows], np.float64),
              "first_row": np.array([r.min() for r in rows], np.int64),
              "last_row": np.array([r.max() for r in rows], np.int64),
              "row_offsets": offsets, "rows": np.concatenate(rows).astype(np.int64)}
    for name, v in values.items():
        g.create_array(name, shape=v.shape, dtype=v.dtype)[...] = v


def clean_feature_values(features: np.ndarray, names: Sequence[str], report: ImportReport,
                         sentinels: Sequence[float] = (), source: str = "") -> np.ndarray:
    """Set sentinels and values outside :data:`VALID_RANGES` to NaN, counting each.

    A column whose typical (median) value lies outside its range is a unit slip, not a
    few bad rows: that raises :class:`InputError` naming the file and column.
    """
    out = np.array(features, np.float64, copy=True)
    for k, name in enumerate(names):
        col = out[:, k]
        for value in sentinels:
            hit = np.isclose(col, value, rtol=0, atol=1e-9)
            report.drop(f"{name}: sentinel {value:g} read as missing", hit.sum())
            col[hit] = np.nan
        bad = ~np.isfinite(col) & ~np.isnan(col)
        report.drop(f"{name}: infinite value read as missing", bad.sum())
        col[bad] = np.nan
        lo, hi = VALID_RANGES.get(name, (-np.inf, np.inf))
        finite = np.isfinite(col)
        if finite.any():
            median = float(np.median(col[finite]))
            if not lo <= median <= hi:
                unit = {"dbm": "dBm", "db": "dB"}.get(name.rsplit("_", 1)[-1], "")
                raise InputError(f"{source}, column '{name}': typical value {median:g} is outside "
                                 f"[{lo:g}, {hi:g}] {unit}; wrong units? (expected {unit})")
        outside = finite & ((col < lo) | (col > hi))
        report.drop(f"{name}: value outside [{lo:g}, {hi:g}] read as missing", outside.sum())
        col[outside] = np.nan
    return out


def unique_points(lat: np.ndarray, lon: np.ndarray, decimals: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Group equal positions (to ``decimals`` degrees, ~1 cm): ``(lonlat (P, 2), inverse (N,))``."""
    keys = np.round(np.stack([np.asarray(lon, float), np.asarray(lat, float)], axis=1), decimals)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    return unique, inverse.reshape(-1)
