"""Seed 004's datasets A, B, B' and C, and its split rule (Sec. 4.3).

* **A** — the drive test (the proxy reality's or a user's), imported with the operator's
  BS file, the scene and the twin's maps of that BS file
  (:func:`learn.importers.drive_test.import_drive_test`): train / val / test by whole
  blocks of ``block_m`` (:func:`learn.splits.spatial_split`; the val and held-out test
  blocks are seed 004's *unknown streets*, the known-streets test samples lie in
  training blocks).
* **B** — the twin traced with the operator's BS file (:func:`twin.radio.trace`),
  sampled along the roads (:func:`twin.corpus.sample`).
* **B'** — the twin after :func:`calibrate.fit.calibrate` on A's *training* rows only
  (:func:`training_rows`), traced and sampled as B.
* **C** — random sites over many patches (seed 004 Sec. 4.3: ``random``, or the dense
  variant ``dense`` of :func:`twin.radio.deploy`), one scene per patch, cell ids disjoint
  between patches (``first_cell_id``).

**The split rule.** B, B' and C follow A's split: A's held-out region is the union of
its val blocks and its unknown-test blocks (blocks holding no training sample), each
grown by ``buffer_m`` (:class:`HeldOut`). A synthetic sample any of whose event positions
(or its truth) lies in that region is dropped (:func:`restrict_corpus`): no synthetic
sample lies on A's validation or test streets, nor within ``buffer_m`` of them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twin.errors import InputError

__all__ = ["HeldOut", "held_out_region", "restrict_corpus", "training_rows", "fidelity_gap",
           "calibration_pose_errors", "BLOCK_ID_BASE"]

BLOCK_ID_BASE = 1 << 20  # learn.splits.block_ids numbers blocks by * 2**20 + bx


@dataclass(frozen=True)
class HeldOut:
    """A's held-out blocks (val and unknown test) on its block lattice, grown by ``buffer_m``.

    Attributes
    ----------
    blocks : (K,) int64
        Block ids (:func:`learn.splits.block_ids` on ``origin_m``).
    block_m : float
        Side of a block [m].
    origin_m : (float, float)
        South-west corner of the lattice (A's grid corner) [scene m].
    buffer_m : float
        Points within this distance of a held-out block count as inside [m].
    """

    blocks: np.ndarray
    block_m: float
    origin_m: tuple[float, float]
    buffer_m: float

    def rects_m(self) -> np.ndarray:
        """``(K, 4)`` ``x0, y0, x1, y1`` of the held-out blocks [scene m]."""
        by = np.floor_divide(self.blocks, BLOCK_ID_BASE)
        bx = self.blocks - by * BLOCK_ID_BASE
        x0 = self.origin_m[0] + bx * self.block_m
        y0 = self.origin_m[1] + by * self.block_m
        return np.stack([x0, y0, x0 + self.block_m, y0 + self.block_m], axis=1).astype(np.float64)

    def distance_m(self, xy_m: np.ndarray) -> np.ndarray:
        """``(N,)`` distance [m] of each point ``(N, 2)`` to the nearest held-out block (0 inside; inf if none)."""
        xy = np.asarray(xy_m, np.float64).reshape(-1, 2)
        out = np.full(len(xy), np.inf)
        rects = self.rects_m()
        if not len(rects):
            return out
        for start in range(0, len(xy), 20_000):
            p = xy[start:start + 20_000]
            dx = np.maximum.reduce([rects[None, :, 0] - p[:, None, 0], np.zeros((len(p), len(rects))),
                                    p[:, None, 0] - rects[None, :, 2]])
            dy = np.maximum.reduce([rects[None, :, 1] - p[:, None, 1], np.zeros((len(p), len(rects))),
                                    p[:, None, 1] - rects[None, :, 3]])
            out[start:start + 20_000] = np.hypot(dx, dy).min(axis=1)
        return out

    def contains(self, xy_m: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: the point lies in a held-out block or within ``buffer_m`` of one (NaN points: False)."""
        xy = np.asarray(xy_m, np.float64).reshape(-1, 2)
        finite = np.isfinite(xy).all(axis=1)
        out = np.zeros(len(xy), bool)
        out[finite] = self.distance_m(xy[finite]) <= self.buffer_m
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"blocks": [int(b) for b in self.blocks], "block_m": float(self.block_m),
                "origin_m": [float(v) for v in self.origin_m], "buffer_m": float(self.buffer_m)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeldOut:
        x0, y0 = (float(v) for v in d["origin_m"])
        return cls(np.asarray(d["blocks"], np.int64), float(d["block_m"]), (x0, y0), float(d["buffer_m"]))


def held_out_region(corpus_a: Any, buffer_m: float = 15.0, split: str = "spatial") -> HeldOut:
    """A's held-out region: its val blocks and its test blocks without training samples.

    ``corpus_a`` is an imported corpus (``group_id`` holds the block of each sample,
    the attribute ``spatial_block_m`` the block side, the scene grid's corner the lattice
    origin, as :func:`learn.importers._build.write_measurements` writes them).
    """
    from twin import io
    from twin.corpus.store import Corpus, open_corpus

    corpus = corpus_a if isinstance(corpus_a, Corpus) else open_corpus(corpus_a)
    if not buffer_m >= 0:
        raise InputError(f"split rule: buffer_m {buffer_m} must be >= 0")
    block_m = corpus.attrs.get("spatial_block_m")
    if block_m is None:
        raise InputError(f"{corpus.url}: no 'spatial_block_m' attribute; A must be an imported drive test "
                         "(learn import drive-test) with its spatial split by blocks")
    labels = io.read(corpus.samples, f"split_{split}", corpus.url)
    groups = io.read(corpus.samples, "group_id", corpus.url)
    train = np.unique(groups[labels == 0])
    held = np.setdiff1d(np.unique(groups[(labels == 1) | (labels == 2)]), train)
    held = held[held >= 0]
    grid = corpus.scene(0).grid
    return HeldOut(held.astype(np.int64), float(block_m), (float(grid.x0_m), float(grid.y0_m)), float(buffer_m))


def _sample_inside(batch: dict[str, np.ndarray], region: HeldOut) -> np.ndarray:
    """``(n,)`` bool: any real event position or the truth of the sample lies in ``region``."""
    ev = batch["event_xy_m"].astype(np.float64)                        # [n, T, 2]
    mask = batch["mask"].astype(bool)
    n, t = mask.shape
    hit = np.zeros((n, t), bool)
    pts = ev[mask]
    hit[mask] = region.contains(pts)
    return hit.any(axis=1) | region.contains(batch["position_xy_m"])


def restrict_corpus(sources: Sequence[str | os.PathLike], out: str | os.PathLike, region: HeldOut,
                    overwrite: bool = False, attrs: dict[str, Any] | None = None, block: int = 8192
                    ) -> tuple[Any, dict[str, int]]:
    """Copy the corpora ``sources`` into one corpus at ``out`` without the samples in ``region``.

    Scenes are copied (maps, cells, attributes) and renumbered in order; samples keep
    their split labels and arrays. All sources must share features and ``max_events``.
    Returns the written corpus and the counts ``{"read", "dropped", "kept"}``.
    """
    from twin.corpus.store import CorpusWriter, open_corpus

    opened = [open_corpus(s) for s in sources]
    if not opened:
        raise InputError("restrict_corpus: no source corpus")
    first = opened[0]
    for c in opened[1:]:
        if c.feature_names != first.feature_names or c.max_events != first.max_events:
            raise InputError(f"{c.url}: features {c.feature_names} / max_events {c.max_events} differ from "
                             f"{first.url}'s {first.feature_names} / {first.max_events}")
    schemes = first.split_schemes
    counts = {"read": 0, "dropped": 0, "kept": 0}
    writer = CorpusWriter(out, first.feature_names, first.feature_units, first.max_events, split_schemes=schemes,
                          config={"restricted_from": [c.url for c in opened], "held_out": region.to_dict(),
                                  "source_config": first.attrs.get("config", {})},
                          chunk_samples=block, overwrite=overwrite)
    try:
        offset = 0
        for corpus in opened:
            for i in range(corpus.n_scenes):
                sc = corpus.scene(i)
                new = writer.add_scene(sc.name, sc.grid, sc.frame, radio_maps=sc.radio_maps,
                                       radio_channels=sc.radio_channels, semantic_maps=sc.semantic_maps,
                                       semantic_channels=sc.semantic_channels, cell_id=sc.cell_id,
                                       cell_xy_m=sc.cell_xy_m, cell_maps=sc.cell_maps)
                own = {k: v for k, v in dict(corpus.root[f"scenes/{i}"].attrs).items()
                       if k not in ("name", "grid", "frame", "radio_channels", "semantic_channels")}
                writer.root[f"scenes/{new}"].attrs.update(own)
            for start in range(0, len(corpus), block):
                b = corpus.batch(slice(start, min(start + block, len(corpus))))
                drop = _sample_inside(b, region)
                keep = ~drop
                counts["read"] += len(drop)
                counts["dropped"] += int(drop.sum())
                counts["kept"] += int(keep.sum())
                if keep.any():
                    part = {k: v[keep] for k, v in b.items()}
                    part["scene_index"] = (part["scene_index"] + offset).astype(np.int32)
                    writer.append(part)
            offset += corpus.n_scenes
        if counts["kept"] == 0:
            raise InputError(f"{out}: every synthetic sample lies in A's held-out region; "
                             "nothing left to train on (smaller val/test shares or buffer_m)")
        corpus_out = writer.close({"split_rule": {**region.to_dict(), **counts}, **(attrs or {})})
    except BaseException:
        writer.abort()
        raise
    return corpus_out, counts


def training_rows(corpus_a: Any, split: str = "spatial") -> np.ndarray:
    """0-based data rows of A's drive test that feed only A's ``train`` samples.

    Read from the corpus's ``sources`` group (per sample its 1-based source rows); a row
    shared with any val or test sample (a window overlapping a held-out point) is left out.
    """
    from twin import io
    from twin.corpus.store import Corpus, open_corpus

    corpus = corpus_a if isinstance(corpus_a, Corpus) else open_corpus(corpus_a)
    if "sources" not in corpus.root:
        raise InputError(f"{corpus.url}: no 'sources' group; A must be imported from a drive-test file")
    group = io.group(corpus.root, "sources", corpus.url)
    rows = io.read(group, "rows", corpus.url)
    offsets = io.read(group, "row_offsets", corpus.url)
    labels = io.read(corpus.samples, f"split_{split}", corpus.url)
    per_sample = np.repeat(labels, np.diff(offsets))
    train = np.unique(rows[per_sample == 0])
    other = np.unique(rows[per_sample != 0])
    return np.setdiff1d(train, other) - 1


def fidelity_gap(drive_test: str | os.PathLike, maps: str | os.PathLike, scene_dir: str | os.PathLike,
                 rows: np.ndarray | None = None, feature: str = "rsrp_dbm") -> list[dict[str, Any]]:
    """Per cell: measured minus twin ``feature`` [dB] at the drive test's points (mean, std, RMSE, n).

    The twin's value is the maps' per-cell map, bilinearly sampled (:meth:`twin.geo.Grid.sample`)
    at each row's position; ``rows`` (0-based) restricts the drive test (e.g. held-out rows).
    """
    import pandas as pd

    from twin.radio.maps import open_maps
    from twin.scene.build import load_twin_scene
    from twin.tables import read_drive_test_table

    table, _ = read_drive_test_table(Path(drive_test), positions="required")
    if rows is not None:
        table = table.iloc[np.asarray(rows, np.int64)]
    if feature not in table.columns:
        raise InputError(f"{drive_test}: no column {feature!r} to compare with the twin")
    frame = load_twin_scene(scene_dir).frame
    x, y = frame.to_scene(pd.to_numeric(table["lon"]).to_numpy(np.float64),
                          pd.to_numeric(table["lat"]).to_numpy(np.float64))
    radio = open_maps(maps)
    values = radio.per_cell(feature)
    where = {int(c): k for k, c in enumerate(radio.cell_ids)}
    cells = pd.to_numeric(table["cell_id"]).to_numpy(np.int64)
    measured = pd.to_numeric(table[feature]).to_numpy(np.float64)
    out = []
    for cid in sorted(set(cells.tolist())):
        sel = cells == cid
        if cid not in where:
            continue
        twin_v = radio.grid.sample(values[where[cid]][None], np.stack([x[sel], y[sel]], 1))[0]
        d = measured[sel] - twin_v
        d = d[np.isfinite(d)]
        if not len(d):
            continue
        out.append({"cell_id": int(cid), "n": int(len(d)), "mean_db": round(float(d.mean()), 2),
                    "std_db": round(float(d.std()), 2), "rmse_db": round(float(np.sqrt((d ** 2).mean())), 2)})
    return out


def calibration_pose_errors(truth: Any, operator: Any, calibrated: Any,
                            report_sites: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Per site: the operator's and the calibrated record against the hidden truth, beside ρ.

    ``truth``, ``operator``, ``calibrated``: BS tables in scene metres (``bs_id, x_m, y_m,
    height_m, azimuth_deg``, optionally ``tilt_deg``; one row per cell, a site's first row
    is its pose). ``report_sites``: the calibration report's ``sites``
    (:meth:`calibrate.fit.SiteFit.summary`), whose ``rho_before`` / ``rho_after`` (Spearman
    ρ on the calibration rows) and ``status`` are copied per site. Returns per site
    ``{"bs_id", "operator": {...}, "calibrated": {...}, "rho_before", "rho_after", "status"}``
    with each pose's ``position_m`` (horizontal distance [m]), ``height_m`` and
    ``azimuth_deg`` (signed, wrapped to [-180, 180)) errors (and ``tilt_deg`` where given).
    """
    from study.reality import site_errors

    fits = {str(s["bs_id"]): s for s in report_sites}
    before = {e["bs_id"]: e for e in site_errors(truth, operator)}
    after = {e["bs_id"]: e for e in site_errors(truth, calibrated)}
    out = []
    for bs in sorted(before):
        fit = fits.get(bs, {})
        out.append({"bs_id": bs, "operator": {k: v for k, v in before[bs].items() if k != "bs_id"},
                    "calibrated": {k: v for k, v in after[bs].items() if k != "bs_id"},
                    "rho_before": fit.get("rho_before"), "rho_after": fit.get("rho_after"),
                    "status": fit.get("status")})
    return out
