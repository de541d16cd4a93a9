"""Measurement sampling: from a scene and its traced radio maps to a Zarr corpus (``twin sample``).

A *sequence* is what a UE reports over ``n_reports`` periodic measurement reports,
``report_interval_s`` apart. At each report the UE measures every cell at its
position: the maps' features are read by NaN-aware bilinear interpolation
(:func:`twin.geo.blend_corners`), then made realistic by
:func:`twin.radio.metrics.apply_reporting` (measurement noise, quantization,
reporting ranges, the sensitivity floor). The *detected* cells are those whose
reported RSRP is finite (apply_reporting blanks cells below the floor); the report
lists up to ``max_cells`` of them, strongest reported RSRP first. Each listed cell is
one *event* ``(cell id, beam id, time, features)``; events of successive reports
are packed, in time order, into ``max_events`` slots, the rest being padding
(``mask`` False).

Modes:

* ``random``: a stationary UE uniformly drawn over the outdoor area (cells of the
  building mask excluded); the reports repeat with independent noise.
* ``drive``: a vehicle on the road graph (:class:`twin.corpus.routes.RoadNetwork`) at a
  constant speed drawn from ``speed_mps``; it starts uniformly along the roads and
  turns at random at crossings, never onto a street of another split.

Beams: with maps traced with SSB beams (``twin trace --beams N``) every listed cell's
beams are measured too (beam maps, interpolated, with the RSRP noise); the strongest is
the event's ``beam_id`` and its L1-RSRP the optional feature ``beam_rsrp_dbm``. Without
beam maps ``beam_id`` is -1.

The truth ``position_xy_m`` is the UE's position at the last real event.
Splits: ``spatial`` assigns whole streets (``group_id``) to train/val/test by
length (their val and test samples are seed 004's *unknown streets*), then moves
``known_test_frac`` of the training streets' samples to test, drawn per chunk (the
*known streets*: other sequences on streets that training has seen, as the importers'
spatial split has); ``random`` assigns samples independently. All follow ``seed``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from twin.config import to_dict
from twin.corpus.routes import RoadNetwork, hold_out_known
from twin.corpus.store import Corpus, CorpusWriter
from twin.errors import InputError
from twin.geo import blend_corners
from twin.io import check_output, is_local
from twin.radio.maps import RadioMaps, check_maps_scene, open_maps
from twin.radio.metrics import ReportingConfig, apply_reporting

__all__ = ["SampleConfig", "Sampler", "sample", "scene_channels", "add_corpus_scene",
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
        ``sinr_db``, ``snr_db``, ``path_gain_db``; UE-level ``(H, W)`` ones are the same for every cell;
        ``beam_rsrp_dbm``, maps with beams only: the L1-RSRP of the event's serving beam).
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
    known_test_frac : float
        Share of the training streets' samples moved to test in the ``spatial`` scheme
        (the known-streets test part; 0 keeps only unknown streets in test).
    random_split_fractions : (float, float, float)
        Sample shares of train/val/test in the ``random`` scheme.
    street_key : str or None
        Road column whose equal values make one street (OSM ``name``); None: each way alone.
    seed : int
        Seeds everything: splits, positions, routes, noise.
    chunk_samples : int
        Samples per corpus chunk (and per generation batch).
    reporting : ReportingConfig
        Measurement realism, delegated to :func:`twin.radio.metrics.apply_reporting`.
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
    known_test_frac: float = 0.1
    random_split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    street_key: str | None = "name"
    seed: int = 0
    chunk_samples: int = 4096
    reporting: ReportingConfig = field(default_factory=ReportingConfig)

    def __post_init__(self) -> None:
        problems = []
        if self.n < 1:
            problems.append(f"n: {self.n} must be at least 1 (an empty corpus is refused)")
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
        if not 0 <= self.known_test_frac < 1:
            problems.append(f"known_test_frac: {self.known_test_frac} is outside [0, 1)")
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


class Sampler:
    """Draws sequences from one scene's maps; built once, then :meth:`draw` per batch.

    Parameters
    ----------
    scene : TwinScene
        The scene (grid, layers, roads).
    maps : RadioMaps or str or path
        Its radio maps on the scene grid.
    config : SampleConfig
    """

    def __init__(self, scene: Any, maps: RadioMaps | str | os.PathLike, config: SampleConfig):
        self.scene = scene
        self.maps = maps if isinstance(maps, RadioMaps) else open_maps(maps)
        self.config = config
        self.grid = scene.grid
        check_maps_scene(self.maps, scene)
        available = self.maps.feature_names()
        unknown = [f for f in config.features if f not in available]
        if unknown:
            raise InputError(f"sample config: features: unknown feature(s) {', '.join(unknown)}; "
                             f"the maps {self.maps.url} have {', '.join(available)}")
        # RSRP decides detection and order, for every cell; the other features are looked up
        # for the listed cells only. Pixel-major layouts make each lookup one contiguous read.
        self.rsrp = np.ascontiguousarray(self.maps.per_cell("rsrp_dbm").transpose(1, 2, 0))   # [H, W, nc]
        self.others = [f for f in config.features if f not in ("rsrp_dbm", "beam_rsrp_dbm")]
        # SSB beams (maps traced with --beams): each listed cell's serving beam and its L1-RSRP
        self.n_beams = self.maps.n_beams if "beam_rsrp_dbm" in self.maps.arrays else 0
        self.beam_rsrp = (np.ascontiguousarray(np.asarray(self.maps.beams("beam_rsrp_dbm"), np.float32)
                                               .transpose(2, 3, 0, 1)) if self.n_beams else None)  # [H, W, nc, B]
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
        assert self._nearest_group is not None  # built in random mode, the only caller's
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
        """``n`` sequences as corpus sample arrays (see :func:`twin.corpus.store.sample_array_specs`)."""
        parts: list[dict[str, np.ndarray]] = []
        have = 0
        while have < n:
            need = n - have
            batch = self._draw_once(need + need // 8 + 8, rng)
            keep = np.flatnonzero(batch["mask"].sum(1) >= self.config.min_events)[:need]
            if have == 0 and keep.size == 0 and len(parts) > 3:
                raise InputError(f"{self.maps.url}: no position has {self.config.min_events} detected "
                                 "cell(s); lower min_events or check the maps and the sensitivity floor")
            parts.append({k: v[keep] for k, v in batch.items()})
            have += keep.size
        out = {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}
        out["split_spatial"] = hold_out_known(out["split_spatial"], self.config.known_test_frac, rng)
        return out

    def _draw_once(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        cfg = self.config
        r, k_max, t_max, nc = cfg.reports, cfg.max_cells, cfg.max_events, self.n_cells
        if cfg.mode == "random":
            xy, group = self._random_positions(n, rng)                          # [n, R, 2], [n, R]
            points = xy[:, 0]                                                   # [n, 2]: one UE position
        else:
            xy, group = self._drive_positions(n, rng)
            points = xy.reshape(-1, 2)                                          # [n*R, 2]
        rows, cols, weights = self.grid.corners(points)                        # [4, M] each
        true_rsrp = blend_corners([self.rsrp[i, j] for i, j in zip(rows, cols, strict=True)],
                                  weights)                                     # [M, nc]
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
            true = blend_corners([flat[((i * width + j) * nc)[:, None] + listed]
                                  for i, j in zip(rows, cols, strict=True)], weights)
            true = true.reshape(n, r, k, len(self.others))                     # [n, R, K, F-]
            no_floor = dataclasses.replace(cfg.reporting, rsrp_floor_dbm=None)  # listed cells passed it
            reported = apply_reporting({f: true[..., q] for q, f in enumerate(self.others)}, no_floor, rng)
            values.update({f: np.asarray(reported[f], np.float32) for f in self.others})
        if self.beam_rsrp is not None:
            values["beam_rsrp_dbm"] = np.full(order.shape, np.nan, np.float32)  # set after the split draw
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
        beam_id = np.full((n, t_max), -1, np.int32)
        if self.beam_rsrp is not None:  # drawn last: corpora of maps without beams stay as they were
            beam, beam_rsrp = self._serving_beams(order.reshape(len(points), -1), rows, cols, weights, rng)
            beam_id = np.where(mask, np.take_along_axis(beam.reshape(n, r * k), slot, 1), -1).astype(np.int32)
            if "beam_rsrp_dbm" in cfg.features:
                col = cfg.features.index("beam_rsrp_dbm")
                features[..., col] = np.where(mask, np.take_along_axis(beam_rsrp.reshape(n, r * k), slot, 1),
                                              np.nan)
        return {
            "position_xy_m": position, "event_xy_m": event_xy, "cell_id": cell_id.astype(np.int64),
            "beam_id": beam_id, "time_s": time_s,
            "features": features.astype(np.float32), "mask": mask, "scene_index": np.zeros(n, np.int32),
            "group_id": group_id.astype(np.int64),
            "split_spatial": self.group_split[group_id].astype(np.uint8),
            "split_random": np.where(u < c0, 0, np.where(u < c1, 1, 2)).astype(np.uint8),
        }

    def _serving_beams(self, listed: np.ndarray, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Serving SSB beam and its reported L1-RSRP [dBm] of the listed cells ``(M, S)`` at the points.

        The UE measures every SSB beam of a listed cell (the beam maps, bilinearly
        interpolated, with the reporting noise), reports the strongest beam's index and
        its L1-RSRP (quantized and clipped as RSRP; the cell already passed the floor).
        Returns ``(M, S)`` int (-1 where no beam is received) and float32 (NaN there).
        """
        assert self.beam_rsrp is not None  # the caller's condition
        nb, nc, width = self.n_beams, self.n_cells, self.grid.width
        flat = self.beam_rsrp.reshape(-1, nb)                                 # [H*W*nc, B]
        true = blend_corners([flat[((i * width + j) * nc)[:, None] + listed]
                              for i, j in zip(rows, cols, strict=True)], weights)  # [M, S, B]
        no_floor = dataclasses.replace(self.config.reporting, rsrp_floor_dbm=None)
        # the choice is made on the UE's raw measurement; only the reported value is quantized
        measured = apply_reporting({"rsrp_dbm": true}, dataclasses.replace(
            no_floor, rsrp_step_db=0.0, rsrp_range_dbm=None), rng)["rsrp_dbm"]
        key = np.where(np.isfinite(measured), measured, -np.inf)
        beam = np.argmax(key, axis=-1)
        heard = np.isfinite(key).any(axis=-1)
        best = np.take_along_axis(np.asarray(measured, np.float64), beam[..., None], -1)[..., 0]
        reported = apply_reporting({"rsrp_dbm": np.where(heard, best, np.nan)},
                                   dataclasses.replace(no_floor, rsrp_sigma_db=0.0), rng)["rsrp_dbm"]
        return np.where(heard, beam, -1), np.where(heard, reported, np.nan).astype(np.float32)

    # -- scene-level maps --------------------------------------------------------------------------


def scene_channels(scene: Any, maps: RadioMaps | None, features: list[str] | tuple[str, ...],
                   cell_ids: np.ndarray | None = None) -> dict[str, Any]:
    """A scene's corpus content: fixed radio channels, semantic channels and per-cell feature maps.

    Every corpus, synthetic (``twin sample``, ``twin generate``) or imported (``learn
    import drive-test --maps``), gets its scene maps here, so that models see the same
    channels everywhere.

    Parameters
    ----------
    scene : TwinScene
    maps : RadioMaps or None
        Radio maps on the scene grid; None gives the semantic channels only.
    features : sequence of str
        The corpus's event features; ``cell_maps`` holds each cell's map of each.
    cell_ids : (n_cells,) int, optional
        The corpus's cells (default: the maps' cells); cells without maps get NaN maps.

    Returns
    -------
    dict
        Keyword arguments of :meth:`twin.corpus.store.CorpusWriter.add_scene` plus ``attrs``
        (channel units and fills) for the scene group.
    """
    semantic = np.stack([np.asarray(scene.layers[name], np.float32) for name, _ in SEMANTIC_CHANNELS])
    out: dict[str, Any] = {
        "semantic_maps": semantic, "semantic_channels": [c for c, _ in SEMANTIC_CHANNELS],
        "attrs": {"semantic_units": [u for _, u in SEMANTIC_CHANNELS]},
    }
    if maps is None:
        return out
    check_maps_scene(maps, scene)
    rsrp = maps.per_cell("rsrp_dbm")                                            # [n, H, W]
    received = np.isfinite(rsrp)
    serving = np.argmax(np.where(received, rsrp, -np.inf), axis=0)             # [H, W]
    sinr = np.take_along_axis(maps.per_cell("sinr_db"), serving[None], 0)[0]
    with np.errstate(all="ignore"):
        channels = [
            np.max(np.where(received, maps["path_gain_db"], -np.inf), axis=0),
            np.max(np.where(received, rsrp, -np.inf), axis=0),
            np.where(received.any(0), sinr, np.nan),
            maps["rssi_dbm"], maps["throughput_bps"], maps["bler"],
            received.sum(0),
        ]
    radio = np.stack([np.asarray(c, np.float32) for c in channels])
    for q, (_, _, fill) in enumerate(RADIO_CHANNELS):
        radio[q][~np.isfinite(radio[q])] = fill
    ids = maps.cell_id if cell_ids is None else np.asarray(cell_ids, np.int64)
    cell_maps = np.full((len(ids), len(features), *scene.grid.shape), np.nan, np.float32)
    cell_xy = np.full((len(ids), 2), np.nan, np.float32)
    where = {int(c): k for k, c in enumerate(maps.cell_ids)}
    rows = [(k, where[int(c)]) for k, c in enumerate(ids) if int(c) in where]
    for f, name in enumerate(features):
        per_cell = maps.per_cell(name)
        for k, m in rows:
            cell_maps[k, f] = per_cell[m]
    for k, m in rows:
        cell_xy[k] = maps.cell_xy_m[m]
    out.update({
        "radio_maps": radio, "radio_channels": [c for c, _, _ in RADIO_CHANNELS],
        "cell_id": ids, "cell_xy_m": cell_xy, "cell_maps": cell_maps,
    })
    out["attrs"].update({"radio_units": [u for _, u, _ in RADIO_CHANNELS],
                         "radio_fill": [f for _, _, f in RADIO_CHANNELS], "maps_url": maps.url})
    return out


def add_corpus_scene(writer: CorpusWriter, scene: Any, maps: RadioMaps | None, features: list[str] | tuple[str, ...],
                     cell_ids: np.ndarray | None = None, attrs: dict[str, Any] | None = None, **kwargs: Any) -> int:
    """Add ``scene`` with the channels of :func:`scene_channels` to ``writer``; return its index.

    ``kwargs`` go to :meth:`~twin.corpus.store.CorpusWriter.add_scene` (e.g. ``index``, ``cell_xy_m``).
    """
    content = scene_channels(scene, maps, features, cell_ids)
    extra = content.pop("attrs")
    index = writer.add_scene(scene.name, scene.grid, scene.frame, **{**content, **kwargs})
    writer.root[f"scenes/{index}"].attrs.update({**extra, **(attrs or {})})
    return index


def sample(scene: Any, maps: RadioMaps | str | os.PathLike, config: SampleConfig, out_url: str | os.PathLike,
           overwrite: bool = False, progress: bool | Callable[[int], None] = False) -> Corpus:
    """Sample ``config.n`` sequences from a scene and its maps into a new corpus at ``out_url``.

    Parameters
    ----------
    scene : TwinScene or str or path
        The scene (``twin build-scene`` output) or its directory.
    maps : RadioMaps or str or path
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
    from twin.scene.build import TwinScene, load_twin_scene

    if is_local(out_url):
        check_output(os.fspath(out_url).removeprefix("file://"), overwrite, "corpus")
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
        index = add_corpus_scene(writer, scene, sampler.maps, names)
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
            "street_split": roads.group_split.astype(int).tolist(), "known_test_frac": config.known_test_frac,
            "street_length_m": [round(float(v), 2) for v in roads.group_length_m()],
            "n_beams": sampler.n_beams,
        }})
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    return corpus
