"""Measurement sampling: from a scene and its traced radio maps to a Zarr corpus (``twin sample``).

A *sequence* is what a UE reports over ``n_reports`` periodic measurement reports,
``report_interval_s`` apart. At each report the UE measures every cell at its
position: the maps' features are read by bilinear interpolation, then made
realistic by :func:`twin.metrics.apply_reporting` (measurement noise, quantization,
reporting ranges, the sensitivity floor). The *detected* cells are those whose
reported RSRP is finite (apply_reporting blanks cells below the floor); the report
lists up to ``max_cells`` of them, strongest reported RSRP first. Each listed cell is
one *event* ``(cell id, beam id, time, features)``; events of successive reports
are packed, in time order, into ``max_events`` slots, the rest being padding
(``mask`` False).

Modes:

* ``random``: a stationary UE uniformly drawn over the outdoor area (cells of the
  building mask excluded); the reports repeat with independent noise.
* ``drive``: a vehicle on the road graph (:class:`twin.routes.RoadNetwork`) at a
  constant speed drawn from ``speed_mps``; it starts uniformly along the roads and
  turns at random at crossings, never onto a street of another split.

The truth ``position_xy_m`` is the UE's position at the last real event.
Splits: ``spatial`` assigns whole streets (``group_id``) to train/val/test by
length; ``random`` assigns samples independently. Both follow ``seed``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from twin._atomic import check_output, is_local
from twin.config import to_dict
from twin.corpus import Corpus, CorpusWriter
from twin.errors import InputError
from twin.geo import Grid
from twin.metrics import ReportingConfig, apply_reporting
from twin.routes import RoadNetwork

__all__ = ["SampleConfig", "MapsData", "Sampler", "sample", "read_maps", "feature_unit",
           "RADIO_CHANNELS", "SEMANTIC_CHANNELS", "SPLIT_SCHEMES"]

SPLIT_SCHEMES = ("spatial", "random")

#: Scene-level radio channels ``(name, unit, fill)``: a fixed list, whatever the number of cells.
#: ``fill`` replaces NaN (no cell received) so that the maps are finite network inputs.
RADIO_CHANNELS: tuple[tuple[str, str, float], ...] = (
    ("path_gain_max_db", "dB", -160.0),     # strongest cell's path gain
    ("rsrp_max_dbm", "dBm", -140.0),        # strongest cell's RSRP (the serving cell's)
    ("sinr_serving_db", "dB", -20.0),       # SINR of the strongest-RSRP cell
    ("rssi_dbm", "dBm", -120.0),            # total received power over the carrier
    ("throughput_bps", "bit/s", 0.0),       # serving-cell throughput (sionna.sys)
    ("bler", "1", 1.0),                     # serving-cell block error rate
    ("cells_received", "1", 0.0),           # number of cells with a finite RSRP
)
#: Scene-level semantic channels ``(name, unit)`` from the scene's GIS layers.
SEMANTIC_CHANNELS: tuple[tuple[str, str], ...] = (
    ("building_mask", "1"), ("building_height_m", "m"), ("road_mask", "1"),
)
_NOT_FEATURES = {"serving_cell"}


@dataclass(frozen=True)
class SampleConfig:
    """How sequences are drawn. Defaults: a 20-event LTE-like sequence of 5 reports of 4 cells.

    Parameters
    ----------
    n : int
        Number of sequences (samples).
    mode : "random" or "drive"
        Stationary outdoor UEs, or vehicles along the road graph.
    max_events : int
        ``T``, events per sequence (padded).
    features : tuple of str
        Per-event features, names of maps.zarr arrays (``rsrp_dbm``, ``rsrq_db``, ``rssi_dbm``,
        ``sinr_db``, ``snr_db``, ``path_gain_db``; UE-level ``(H, W)`` ones are the same for every cell).
    max_cells : int
        Cells listed per measurement report, strongest first (LTE reports up to 8 neighbours).
    n_reports : int
        Reports per sequence; 0 means ``ceil(max_events / max_cells)``.
    report_interval_s : float
        Period of the measurement reports [s].
    speed_mps : (float, float)
        Range of the constant vehicle speed in drive mode [m/s]; 5-15 m/s is city driving.
    min_events : int
        Sequences with fewer real events are redrawn (at least one, for a truth position).
    event_drop_prob : float
        Probability that a listed event is lost (unreported); it becomes padding.
    split_fractions : (float, float, float)
        Road-length shares of train/val/test streets in the ``spatial`` scheme.
    random_split_fractions : (float, float, float)
        Sample shares of train/val/test in the ``random`` scheme.
    street_key : str or None
        Road column whose equal values make one street (OSM ``name``); None: each way alone.
    seed : int
        Seeds everything: splits, positions, routes, noise.
    chunk_samples : int
        Samples per corpus chunk (and per generation batch).
    reporting : ReportingConfig
        Measurement realism, delegated to :func:`twin.metrics.apply_reporting`.
    """

    n: int = 10_000
    mode: Literal["random", "drive"] = "random"
    max_events: int = 20
    features: tuple[str, ...] = ("rsrp_dbm", "rsrq_db", "rssi_dbm", "sinr_db")
    max_cells: int = 4
    n_reports: int = 0
    report_interval_s: float = 1.0
    speed_mps: tuple[float, float] = (5.0, 15.0)
    min_events: int = 1
    event_drop_prob: float = 0.0
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    random_split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    street_key: str | None = "name"
    seed: int = 0
    chunk_samples: int = 4096
    reporting: ReportingConfig = field(default_factory=ReportingConfig)

    def __post_init__(self) -> None:
        problems = []
        if self.n < 0:
            problems.append(f"n: {self.n} is negative")
        if self.mode not in ("random", "drive"):
            problems.append(f"mode: {self.mode!r} is not 'random' or 'drive'")
        for name in ("max_events", "max_cells", "min_events", "chunk_samples"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: {getattr(self, name)} must be at least 1")
        if self.n_reports < 0:
            problems.append(f"n_reports: {self.n_reports} is negative")
        if not self.features:
            problems.append("features: empty; give at least one feature name")
        if len(set(self.features)) != len(self.features):
            problems.append(f"features: {list(self.features)} has duplicates")
        if not self.report_interval_s > 0:
            problems.append(f"report_interval_s: {self.report_interval_s} must be positive")
        lo, hi = self.speed_mps
        if not 0 < lo <= hi:
            problems.append(f"speed_mps: {self.speed_mps} must satisfy 0 < min <= max")
        if not 0 <= self.event_drop_prob < 1:
            problems.append(f"event_drop_prob: {self.event_drop_prob} is outside [0, 1)")
        for name in ("split_fractions", "random_split_fractions"):
            fr = getattr(self, name)
            if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6:
                problems.append(f"{name}: {fr} must be three non-negative shares summing to 1")
        if self.min_events > self.max_events:
            problems.append(f"min_events: {self.min_events} exceeds max_events {self.max_events}")
        if problems:
            raise InputError("sample config: " + "; ".join(problems))

    @property
    def reports(self) -> int:
        """Reports per sequence (``n_reports`` resolved)."""
        return self.n_reports or math.ceil(self.max_events / self.max_cells)


def feature_unit(name: str) -> str:
    """The unit of a feature from its name's suffix (``_dbm`` dBm, ``_db`` dB, ``_bps`` bit/s, else 1)."""
    for suffix, unit in (("_dbm", "dBm"), ("_db", "dB"), ("_bps", "bit/s"), ("_m", "m"), ("_s", "s")):
        if name.endswith(suffix):
            return unit
    return "1"


@dataclass(frozen=True)
class MapsData:
    """A maps.zarr store opened for sampling (arrays read lazily)."""

    url: str
    grid: Grid
    cell_id: np.ndarray        # (n_cells,) int64
    cell_xy_m: np.ndarray      # (n_cells, 2) float32, NaN where the maps carry no position
    group: Any                 # the zarr group

    @property
    def n_cells(self) -> int:
        return len(self.cell_id)

    def feature_names(self) -> list[str]:
        """Arrays usable as event features: per-cell ``(n_cells, H, W)`` or UE-level ``(H, W)``."""
        out = []
        for name, arr in self.group.arrays():
            if name in _NOT_FEATURES or name.startswith("cell_"):
                continue
            if arr.shape in ((self.n_cells, *self.grid.shape), self.grid.shape):
                out.append(name)
        return sorted(out)

    def per_cell(self, name: str) -> np.ndarray:
        """Feature ``name`` as ``(n_cells, H, W)`` float32; UE-level maps are repeated for every cell.

        ``rssi_dbm`` reads ``cell_rssi_dbm`` (each cell's carrier) when the maps have it.
        """
        if name == "rssi_dbm" and "cell_rssi_dbm" in self.group:
            name = "cell_rssi_dbm"
        if name not in self.group:
            raise InputError(f"{self.url}: maps have no array '{name}'")
        data = np.asarray(self.group[name][:], np.float32)
        if data.shape == self.grid.shape:
            data = np.broadcast_to(data, (self.n_cells, *self.grid.shape))
        return data

    def unit(self, name: str) -> str:
        """A feature's unit: the array's ``units`` attribute, else from its name (:func:`feature_unit`)."""
        arr = self.group.get(name)
        units = dict(arr.attrs).get("units") if arr is not None else None
        return str(units) if units else feature_unit(name)

    def array(self, name: str) -> np.ndarray:
        """A maps.zarr array by name; :class:`InputError` naming the store when absent."""
        if name not in self.group:
            raise InputError(f"{self.url}: maps have no array '{name}' (see DESIGN.md, radio maps)")
        return np.asarray(self.group[name][:])


def _cell_positions(attrs: dict[str, Any], cell_ids: np.ndarray) -> np.ndarray:
    """Site positions per cell from the BS table records in the attributes (NaN where absent)."""
    xy = np.full((len(cell_ids), 2), np.nan, np.float32)
    for key in ("sites", "cells", "bs"):
        records = attrs.get(key)
        if isinstance(records, dict) and "cell_id" in records:  # columnar
            records = [dict(zip(records, vals, strict=True)) for vals in zip(*records.values(), strict=True)]
        if not isinstance(records, list):
            continue
        where = {int(c): k for k, c in enumerate(cell_ids)}
        for rec in records:
            if isinstance(rec, dict) and "cell_id" in rec and int(rec["cell_id"]) in where:
                x, y = rec.get("x_m", rec.get("x")), rec.get("y_m", rec.get("y"))
                if x is not None and y is not None:
                    xy[where[int(rec["cell_id"])]] = (float(x), float(y))
        break
    return xy


def read_maps(url: str | os.PathLike) -> MapsData:
    """Open a maps.zarr store (``twin trace`` output) and check its attributes.

    Raises :class:`InputError` naming the store and the attribute at fault.
    """
    import zarr

    url = os.fspath(url)
    try:
        group = zarr.open_group(url, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
        raise InputError(f"{url}: no radio maps here (not a Zarr group); run `twin trace` first") from err
    attrs = dict(group.attrs)
    if attrs.get("kind") != "twin-maps":
        raise InputError(f"{url}: not twin radio maps (attribute kind={attrs.get('kind')!r})")
    if attrs.get("schema_version") != 1:
        raise InputError(f"{url}: maps schema_version {attrs.get('schema_version')}, this toolkit reads 1")
    if attrs.get("complete") is False:
        raise InputError(f"{url}: radio maps are incomplete (their writer did not finish); trace again")
    for key in ("grid", "cell_ids"):
        if key not in attrs:
            raise InputError(f"{url}: maps lack the attribute '{key}'")
    grid = Grid.from_dict(attrs["grid"])
    cell_id = np.asarray(attrs["cell_ids"], np.int64).reshape(-1)
    if len(np.unique(cell_id)) != len(cell_id):
        raise InputError(f"{url}: attribute 'cell_ids' has duplicates")
    if "rsrp_dbm" not in group or group["rsrp_dbm"].shape != (len(cell_id), *grid.shape):
        shape = group["rsrp_dbm"].shape if "rsrp_dbm" in group else None
        raise InputError(f"{url}: array 'rsrp_dbm' has shape {shape}, expected "
                         f"({len(cell_id)}, {grid.height}, {grid.width}) from 'cell_ids' and 'grid'")
    return MapsData(url, grid, cell_id, _cell_positions(attrs, cell_id), group)


def _corners(grid: Grid, xy_m: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The four bilinear neighbours of points ``(M, 2)``: ``(row, col, weight)`` each ``(M,)``."""
    fx = np.clip((xy_m[:, 0] - grid.x0_m) / grid.cell_size_m - 0.5, 0.0, grid.width - 1.0)
    fy = np.clip((xy_m[:, 1] - grid.y0_m) / grid.cell_size_m - 0.5, 0.0, grid.height - 1.0)
    j0 = np.minimum(fx.astype(np.int64), max(grid.width - 2, 0))
    i0 = np.minimum(fy.astype(np.int64), max(grid.height - 2, 0))
    j1 = np.minimum(j0 + 1, grid.width - 1)
    i1 = np.minimum(i0 + 1, grid.height - 1)
    wx = (fx - j0).astype(np.float32)
    wy = (fy - i0).astype(np.float32)
    return [(i0, j0, (1 - wx) * (1 - wy)), (i0, j1, wx * (1 - wy)), (i1, j0, (1 - wx) * wy), (i1, j1, wx * wy)]


def _blend(values: list[np.ndarray], weights: list[np.ndarray]) -> np.ndarray:
    """NaN-aware bilinear blend of the four corner values ``(M, ...)`` with weights ``(M,)``.

    Equals plain bilinear interpolation (:meth:`Grid.sample`) where the four corners are
    finite; a NaN corner (e.g. a building cell beside the street) drops out and the other
    weights are renormalized, so that points along walls keep their measurements.
    """
    num = np.zeros(values[0].shape, np.float32)
    den = np.zeros(values[0].shape, np.float32)
    for v, w in zip(values, weights, strict=True):
        w = w.reshape(-1, *([1] * (v.ndim - 1)))
        ok = ~np.isnan(v)
        num += np.where(ok, v, 0.0) * w
        den += ok * w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-6, num / den, np.nan).astype(np.float32)


class Sampler:
    """Draws sequences from one scene's maps; built once, then :meth:`draw` per batch.

    Parameters
    ----------
    scene : TwinScene
        The scene (grid, layers, roads).
    maps : MapsData or str or path
        Its radio maps on the scene grid.
    config : SampleConfig
    """

    def __init__(self, scene: Any, maps: MapsData | str | os.PathLike, config: SampleConfig):
        self.scene = scene
        self.maps = maps if isinstance(maps, MapsData) else read_maps(maps)
        self.config = config
        self.grid = scene.grid
        if self.maps.grid != self.grid:
            raise InputError(f"{self.maps.url}: attribute 'grid' {self.maps.grid.to_dict()} does not match "
                             f"the scene grid {self.grid.to_dict()} (scene.json 'grid'); "
                             "trace the maps on this scene")
        available = self.maps.feature_names()
        unknown = [f for f in config.features if f not in available]
        if unknown:
            raise InputError(f"sample config: features: unknown feature(s) {', '.join(unknown)}; "
                             f"the maps {self.maps.url} have {', '.join(available)}")
        # RSRP decides detection and order, for every cell; the other features are looked up
        # for the listed cells only. Pixel-major layouts make each lookup one contiguous read.
        self.rsrp = np.ascontiguousarray(self.maps.per_cell("rsrp_dbm").transpose(1, 2, 0))   # [H, W, nc]
        self.others = [f for f in config.features if f != "rsrp_dbm"]
        self.stack = (np.ascontiguousarray(np.stack([self.maps.per_cell(f) for f in self.others], axis=-1)
                                           .transpose(1, 2, 0, 3)) if self.others else None)  # [H, W, nc, F-]
        self.roads = RoadNetwork.from_roads(scene.roads(), self.grid, config.street_key)
        self.roads.assign_splits(config.split_fractions, np.random.default_rng([config.seed, 2**31 - 1]))
        self.group_split = self.roads.group_split
        outdoor = scene.layers["building_mask"] == 0
        self.outdoor_cells = np.flatnonzero(outdoor.reshape(-1))
        if config.mode == "random" and self.outdoor_cells.size == 0:
            raise InputError(f"{scene.path}: no outdoor cell in the building mask; random mode needs one")
        self._nearest_group = self.roads.nearest_group_raster(self.grid) if config.mode == "random" else None

    @property
    def n_cells(self) -> int:
        return self.maps.n_cells

    # -- positions ---------------------------------------------------------------------------------

    def _random_positions(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Stationary outdoor UEs: positions ``(n, R, 2)`` and street ``(n, R)``."""
        r = self.config.reports
        cell = self.outdoor_cells[rng.integers(0, self.outdoor_cells.size, n)]
        i, j = np.divmod(cell, self.grid.width)
        u = rng.random((n, 2))
        xy = np.stack([self.grid.x0_m + (j + u[:, 0]) * self.grid.cell_size_m,
                       self.grid.y0_m + (i + u[:, 1]) * self.grid.cell_size_m], axis=-1)
        group = self._nearest_group[i, j]
        return np.repeat(xy[:, None], r, axis=1), np.repeat(group[:, None], r, axis=1)

    def _drive_positions(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Vehicles along the roads: positions ``(n, R, 2)`` and street ``(n, R)`` per report."""
        r = self.config.reports
        lo, hi = self.config.speed_mps
        step_m = rng.uniform(lo, hi, n) * self.config.report_interval_s
        edge, offset = self.roads.random_starts(n, rng)
        xy = np.empty((n, r, 2))
        group = np.empty((n, r), np.int64)
        for k in range(r):
            if k:
                edge, offset = self.roads.advance(edge, offset, step_m, rng)
            xy[:, k] = self.roads.position_m(edge, offset)
            group[:, k] = self.roads.edge_group(edge)
        return xy, group

    # -- events ------------------------------------------------------------------------------------

    def draw(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``n`` sequences as corpus sample arrays (see :func:`twin.corpus.sample_array_specs`)."""
        parts, have = [], 0
        while have < n:
            need = n - have
            batch = self._draw_once(need + need // 8 + 8, rng)
            keep = np.flatnonzero(batch["mask"].sum(1) >= self.config.min_events)[:need]
            if have == 0 and keep.size == 0 and len(parts) > 3:
                raise InputError(f"{self.maps.url}: no position has {self.config.min_events} detected "
                                 "cell(s); lower min_events or check the maps and the sensitivity floor")
            parts.append({k: v[keep] for k, v in batch.items()})
            have += keep.size
        return {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}

    def _draw_once(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        cfg = self.config
        r, k_max, t_max, nc = cfg.reports, cfg.max_cells, cfg.max_events, self.n_cells
        if cfg.mode == "random":
            xy, group = self._random_positions(n, rng)                          # [n, R, 2], [n, R]
            points = xy[:, 0]                                                   # [n, 2]: one UE position
        else:
            xy, group = self._drive_positions(n, rng)
            points = xy.reshape(-1, 2)                                          # [n*R, 2]
        corners = _corners(self.grid, points)
        weights = [w for _, _, w in corners]
        true_rsrp = _blend([self.rsrp[i, j] for i, j, _ in corners], weights)  # [M, nc]
        true_rsrp = np.broadcast_to(true_rsrp.reshape(n, -1, nc), (n, r, nc))  # [n, R, nc]
        # apply_reporting draws noise per key independently, so reporting RSRP for all cells
        # first and the other features for the listed cells after is the same model.
        rsrp = np.asarray(apply_reporting({"rsrp_dbm": true_rsrp}, cfg.reporting, rng)["rsrp_dbm"],
                          np.float32)                                           # [n, R, nc]
        detected = np.isfinite(rsrp)
        key = np.where(detected, rsrp, -np.inf)
        k = min(k_max, nc)
        order = np.argsort(-key, axis=-1, kind="stable")[..., :k]             # [n, R, K]
        valid = np.take_along_axis(detected, order, -1)
        if cfg.event_drop_prob > 0:
            valid &= rng.random(valid.shape) >= cfg.event_drop_prob
        values = {"rsrp_dbm": np.take_along_axis(rsrp, order, -1)}            # [n, R, K]
        if self.stack is not None:
            listed = order.reshape(len(points), -1)                            # [M, S]
            flat = self.stack.reshape(-1, len(self.others))                    # [H*W*nc, F-]
            width = self.grid.width
            true = _blend([flat[((i * width + j) * nc)[:, None] + listed] for i, j, _ in corners], weights)
            true = true.reshape(n, r, k, len(self.others))                     # [n, R, K, F-]
            no_floor = dataclasses.replace(cfg.reporting, rsrp_floor_dbm=None)  # listed cells passed it
            reported = apply_reporting({f: true[..., q] for q, f in enumerate(self.others)}, no_floor, rng)
            values.update({f: np.asarray(reported[f], np.float32) for f in self.others})
        feats = np.stack([values[f] for f in cfg.features], axis=-1)            # [n, R, K, F]
        # Pack the real events of all reports to the front, in time order, into T slots.
        valid = valid.reshape(n, r * k)
        pad = max(t_max - r * k, 0)
        slot = np.argsort(~valid, axis=1, kind="stable")[:, :t_max]            # [n, T']
        if pad:
            slot = np.concatenate([slot, np.zeros((n, pad), np.int64)], axis=1)
        mask = np.take_along_axis(valid, slot, 1)
        if pad:
            mask[:, -pad:] = False
        report_of = slot // k                                                  # [n, T]
        cell_index = np.take_along_axis(order.reshape(n, r * k), slot, 1)
        cell_id = np.where(mask, self.maps.cell_id[cell_index], -1)
        features = np.take_along_axis(feats.reshape(n, r * k, -1), slot[..., None], 1)
        features[~mask] = np.nan
        time_s = np.where(mask, report_of * cfg.report_interval_s, 0.0).astype(np.float32)
        event_xy = np.take_along_axis(xy, report_of[..., None], 1).astype(np.float32)
        event_xy[~mask] = np.nan
        last = np.maximum(mask.sum(1) - 1, 0)                                  # masks are packed
        last_report = np.take_along_axis(report_of, last[:, None], 1)[:, 0]
        position = xy[np.arange(n), last_report].astype(np.float32)
        group_id = group[np.arange(n), last_report]
        u = rng.random(n)
        c0, c1 = cfg.random_split_fractions[0], sum(cfg.random_split_fractions[:2])
        return {
            "position_xy_m": position, "event_xy_m": event_xy, "cell_id": cell_id.astype(np.int64),
            "beam_id": np.full((n, t_max), -1, np.int32), "time_s": time_s,
            "features": features.astype(np.float32), "mask": mask, "scene_index": np.zeros(n, np.int32),
            "group_id": group_id.astype(np.int64),
            "split_spatial": self.group_split[group_id].astype(np.uint8),
            "split_random": np.where(u < c0, 0, np.where(u < c1, 1, 2)).astype(np.uint8),
        }

    # -- scene-level maps --------------------------------------------------------------------------

    def radio_maps(self) -> np.ndarray:
        """The :data:`RADIO_CHANNELS` ``(C_r, H, W)`` float32, NaN replaced by each channel's fill."""
        m = self.maps
        rsrp = m.array("rsrp_dbm").astype(np.float32)                          # [n, H, W]
        received = np.isfinite(rsrp)
        serving = np.argmax(np.where(received, rsrp, -np.inf), axis=0)        # [H, W]
        sinr = np.take_along_axis(m.array("sinr_db").astype(np.float32), serving[None], 0)[0]
        with np.errstate(all="ignore"):
            channels = [
                np.max(np.where(received, m.array("path_gain_db"), -np.inf), axis=0),
                np.max(np.where(received, rsrp, -np.inf), axis=0),
                np.where(received.any(0), sinr, np.nan),
                m.array("rssi_dbm"), m.array("throughput_bps"), m.array("bler"),
                received.sum(0),
            ]
        out = np.stack([np.asarray(c, np.float32) for c in channels])
        for q, (_, _, fill) in enumerate(RADIO_CHANNELS):
            out[q][~np.isfinite(out[q])] = fill
        return out

    def semantic_maps(self) -> np.ndarray:
        """The :data:`SEMANTIC_CHANNELS` ``(C_o, H, W)`` float32 from the scene's layers."""
        return np.stack([np.asarray(self.scene.layers[name], np.float32) for name, _ in SEMANTIC_CHANNELS])

    def cell_maps(self) -> np.ndarray:
        """Each cell's map of each event feature ``(n_cells, F, H, W)`` float32, NaN where not received."""
        return np.stack([self.maps.per_cell(f) for f in self.config.features], axis=1)


def sample(scene: Any, maps: MapsData | str | os.PathLike, config: SampleConfig, out_url: str | os.PathLike,
           overwrite: bool = False, progress: bool | Callable[[int], None] = False) -> Corpus:
    """Sample ``config.n`` sequences from a scene and its maps into a new corpus at ``out_url``.

    Parameters
    ----------
    scene : TwinScene or str or path
        The scene (``twin build-scene`` output) or its directory.
    maps : MapsData or str or path
        The scene's radio maps (``twin trace`` output).
    config : SampleConfig
    out_url : str or path
        The corpus store to create (local path or fsspec URL).
    overwrite : bool
        Replace an existing store.
    progress : bool or callable
        Show a tqdm bar, or call ``progress(n_done)`` after each chunk.

    Returns
    -------
    Corpus
        The written corpus, opened for reading.
    """
    from twin.scene import TwinScene, load_twin_scene

    if is_local(out_url):
        check_output(os.fspath(out_url).removeprefix("file://"), overwrite)
    if not isinstance(scene, TwinScene):
        scene = load_twin_scene(scene)
    sampler = Sampler(scene, maps, config)
    names = list(config.features)
    writer = CorpusWriter(out_url, names, [sampler.maps.unit(f) for f in names], config.max_events,
                          split_schemes=SPLIT_SCHEMES, config=to_dict(config),
                          chunk_samples=config.chunk_samples, overwrite=overwrite)
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=config.n, unit="seq", desc="sampling")
    try:
        index = writer.add_scene(
            scene.name, sampler.grid, scene.frame,
            radio_maps=sampler.radio_maps(), radio_channels=[c for c, _, _ in RADIO_CHANNELS],
            semantic_maps=sampler.semantic_maps(), semantic_channels=[c for c, _ in SEMANTIC_CHANNELS],
            cell_id=sampler.maps.cell_id, cell_xy_m=sampler.maps.cell_xy_m, cell_maps=sampler.cell_maps())
        writer.root[f"scenes/{index}"].attrs.update({
            "radio_units": [u for _, u, _ in RADIO_CHANNELS], "radio_fill": [f for _, _, f in RADIO_CHANNELS],
            "semantic_units": [u for _, u in SEMANTIC_CHANNELS], "maps_url": sampler.maps.url,
        })
        done = 0
        for chunk in range(math.ceil(config.n / config.chunk_samples)):
            count = min(config.chunk_samples, config.n - done)
            # One generator per chunk: a chunk's content depends on (seed, chunk) only.
            batch = sampler.draw(count, np.random.default_rng([config.seed, chunk]))
            batch["scene_index"][:] = index
            writer.append(batch)
            done += count
            if bar is not None:
                bar.update(count)
            elif callable(progress):
                progress(done)
        roads = sampler.roads
        corpus = writer.close({"sampling": {
            "mode": config.mode, "n_reports": config.reports,
            "street_names": roads.group_names,
            "street_split": roads.group_split.astype(int).tolist(),
            "street_length_m": [round(float(v), 2) for v in roads.group_length_m()],
        }})
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    return corpus
