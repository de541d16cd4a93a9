"""``calibrate check``: seed 004's fidelity checks of a BS file against a drive test.

Seed 004 §5.1 judged simulation settings by (i) the Spearman correlation between
simulated and real values per base station and (ii) k-NN fingerprint localization
over the four train/test combinations of real [R] and simulated [S] fingerprints:
[R→R], [S→S], [R→S], [S→R]. [R→R] is the real data's own floor; [S→R] (train on the
twin, locate real measurements) is what synthetic pretraining relies on, and its gap
to [R→R] measures the sim-to-real gap.

Fingerprints: one per measured location (unique position), one entry per cell of the
BS file. The simulated fingerprint of a location is the twin's value of each cell
the real one reported there (the same reporting pattern, so the four combinations
differ in values only); unreported cells take a floor 10 dB below the weakest value.
A test location is placed at the mean position of its ``k`` nearest train fingerprints
(Euclidean in dB). Two splits of the locations into train and test, both seeded:

- **random**: a random ``test_fraction`` of the locations. Neighbouring points of one
  drive along one street land on both sides, so a test point nearly always has a
  train point a few metres away with a near-identical fingerprint: it flatters the
  real fingerprints most ([R→R]), which share the test point's own shadowing;
- **street**: whole streets held out (:func:`street_split`): every location takes the
  street of its nearest road segment (``roads.parquet``'s ``name``, unnamed ways one
  street each), streets are shuffled and held out until ``test_fraction`` of the
  locations are: a test location is on a street no training fingerprint comes from.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calibrate.drive_test import DriveTest, read_drive_test
from calibrate.objective import spearman
from twin.errors import InputError

__all__ = ["CheckResult", "simulate_at_rows", "knn_errors", "street_of", "street_split", "check",
           "write_check_report"]

COMBINATIONS = ("R→R", "S→S", "R→S", "S→R")


@dataclass
class CheckResult:
    """Fidelity of a BS file against a drive test."""

    metric: str
    rho_cells: dict[int, float]
    rho_sites: dict[str, float]
    knn_m: dict[str, dict[str, float]]   # combination -> mean/median/p90 error [m] (random split)
    n_locations: int
    n_train: int
    k: int
    rows: pd.DataFrame = field(repr=False)  # drive-test rows with a ``simulated`` column
    knn_street_m: dict[str, dict[str, float]] = field(default_factory=dict)  # the street split's
    street_split: dict[str, int] = field(default_factory=dict)  # streets/locations on each side

    def summary(self) -> dict[str, Any]:
        return {"metric": self.metric, "locations": self.n_locations, "train": self.n_train,
                "test": self.n_locations - self.n_train, "k": self.k,
                "mean_rho": round(float(np.mean(list(self.rho_cells.values()))), 4) if self.rho_cells else None,
                "rho_cells": {str(c): round(v, 4) for c, v in self.rho_cells.items()},
                "rho_sites": {s: round(v, 4) for s, v in self.rho_sites.items()},
                "knn_m": self.knn_m, "knn_street_m": self.knn_street_m, "street_split": self.street_split}


def simulate_at_rows(tracer: Any, table: pd.DataFrame, rows: pd.DataFrame, metric: str,
                     metric_config: Any = None) -> np.ndarray:
    """The twin's value of each drive-test row's cell at the row's position: ``(n_rows,)``, NaN if unreceived."""
    from twin.radio.metrics import compute_metrics

    xy = rows[["x_m", "y_m"]].to_numpy(np.float64)
    grid = tracer.window_covering(xy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gain = tracer.radio_maps(table, grid)  # [C, H, W]
    pg = grid.sample(gain, xy)  # [C, n_rows]
    m = compute_metrics(pg[:, :, None], table["power_dbm"].to_numpy(np.float64),
                        table["frequency_hz"].to_numpy(np.float64), metric_config)
    values = m["rsrp_dbm" if metric == "rsrp" else "cell_rssi_dbm"][..., 0]  # [C, n_rows]
    index = {int(c): k for k, c in enumerate(table["cell_id"])}
    ci = np.array([index[int(c)] for c in rows["cell_id"]])
    return values[ci, np.arange(len(rows))].astype(np.float64)


def _fingerprints(rows: pd.DataFrame, column: str, cells: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(L, 2)`` location positions and ``(L, C)`` values (NaN where unreported)."""
    key = np.round(rows[["x_m", "y_m"]].to_numpy(), 2)
    locs, inv = np.unique(key, axis=0, return_inverse=True)
    col = {c: k for k, c in enumerate(cells)}
    fp = np.full((len(locs), len(cells)), np.nan)
    fp[inv.ravel(), [col[int(c)] for c in rows["cell_id"]]] = rows[column].to_numpy()
    return locs, fp


def knn_errors(train_fp: np.ndarray, train_xy: np.ndarray, test_fp: np.ndarray, test_xy: np.ndarray,
               k: int = 5) -> np.ndarray:
    """Localization errors [m] ``(n_test,)`` of k-NN (mean of the k nearest train positions)."""
    from scipy.spatial import cKDTree

    k = min(k, len(train_fp))
    _, nn = cKDTree(train_fp).query(test_fp, k=k)
    nn = nn.reshape(len(test_fp), k)
    est = train_xy[nn].mean(axis=1)
    return np.hypot(*(est - test_xy).T)


def street_of(scene: Any, xy_m: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The street of each location ``(L, 2)`` [m]: index ``(L,)`` into the returned street names.

    Streets are :class:`twin.corpus.routes.RoadNetwork`'s groups of the scene's roads
    (by ``name``; an unnamed way is a street of its own); a location takes the street
    of its nearest segment.
    """
    import shapely

    from twin.corpus.routes import RoadNetwork

    net = RoadNetwork.from_roads(scene.roads(), scene.grid)
    lines = shapely.linestrings(np.stack([net.seg_a_m, net.seg_b_m], axis=1))
    tree = shapely.STRtree(lines)
    idx = tree.query_nearest(shapely.points(np.asarray(xy_m, np.float64)), all_matches=False,
                             return_distance=False)
    out = np.empty(len(xy_m), np.int64)
    out[idx[0]] = net.seg_group[idx[1]]
    return out, net.group_names


def street_split(street: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Test mask ``(L,)``: whole streets, shuffled by ``seed``, until ``test_fraction`` of the locations.

    At least one street stays on each side (when there are two or more).
    """
    streets, counts = np.unique(street, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(streets))
    held, target = 0, test_fraction * len(street)
    test_streets = []
    for k in order[:-1]:
        if held >= target:
            break
        test_streets.append(streets[k])
        held += counts[k]
    return np.isin(street, test_streets)


def check(scene: Any, bs_file: Any, drive_test: Any, *, metric: str = "rssi", k: int = 5,
          test_fraction: float = 0.25, seed: int = 0, trace_config: Any = None, tracer: Any = None,
          metric_config: Any = None, report_dir: str | os.PathLike | None = None,
          overwrite: bool = False) -> CheckResult:
    """Spearman ρ per cell and site, and k-NN localization over [R→R], [S→S], [R→S], [S→R].

    Parameters
    ----------
    scene : TwinScene or path
    bs_file : path or DataFrame
    drive_test : path or DriveTest
    metric : {"rssi", "rsrp"}
    k : int
        Neighbours of the k-NN.
    test_fraction : float
        Share of the locations held out for testing.
    trace_config : twin.radio.tracer.TraceConfig, optional
        Tracing of the twin's values (default: calibration's, 10^6 rays... see
        :class:`calibrate.fit.CalibrationConfig`).
    report_dir : path, optional
        JSON, Markdown and PNG of the result.
    """
    from calibrate.fit import CalibrationConfig
    from twin.io import check_output
    from twin.radio.sites import read_bs_file, sites_from_records
    from twin.radio.tracer import Tracer
    from twin.scene.build import TwinScene, load_twin_scene

    if metric not in ("rssi", "rsrp"):
        raise InputError(f"metric: {metric!r} must be 'rssi' or 'rsrp'")
    if not 0 < test_fraction < 1:
        raise InputError(f"test_fraction: {test_fraction} must be in (0, 1)")
    if k < 1:
        raise InputError(f"k: {k} must be >= 1")
    if report_dir is not None:
        check_output(report_dir, overwrite, "report")
    scene = scene if isinstance(scene, TwinScene) else load_twin_scene(scene)
    table = (sites_from_records(bs_file.to_dict(orient="records"), scene) if isinstance(bs_file, pd.DataFrame)
             else read_bs_file(bs_file, scene, on_building=None))
    drive = drive_test if isinstance(drive_test, DriveTest) else read_drive_test(drive_test, scene, table, metric)
    col = "rsrp_dbm" if metric == "rsrp" else "rssi_dbm"
    rows = drive.rows[drive.rows[col].notna()].reset_index(drop=True)
    tracer = tracer or Tracer(scene, trace_config or CalibrationConfig().trace_config())
    rows["simulated"] = simulate_at_rows(tracer, table, rows, metric, metric_config)

    rho_cells = {}
    for cid, g in rows.groupby("cell_id"):
        if len(g) >= 3 and np.ptp(g[col].to_numpy()) > 0:
            rho_cells[int(cid)] = spearman(g["simulated"].to_numpy(), g[col].to_numpy())
    site_of = dict(zip(table["cell_id"].astype(int), table["bs_id"].astype(str), strict=True))
    rho_sites = {}
    for site in dict.fromkeys(site_of[c] for c in rho_cells):
        cs = [c for c in rho_cells if site_of[c] == site]
        n = np.array([(rows["cell_id"] == c).sum() for c in cs], np.float64)
        rho_sites[site] = float(np.dot(n, [rho_cells[c] for c in cs]) / n.sum())

    cells = sorted(int(c) for c in rows["cell_id"].unique())
    xy, real = _fingerprints(rows, col, cells)
    _, sim = _fingerprints(rows, "simulated", cells)
    sim = np.where(np.isfinite(real), sim, np.nan)  # the real reporting pattern
    floor = np.nanmin(np.concatenate([real.ravel(), sim.ravel()])) - 10.0
    real, sim = np.nan_to_num(real, nan=floor), np.nan_to_num(sim, nan=floor)
    if len(xy) < 4:
        raise InputError(f"{drive.source}: {len(xy)} measured locations; k-NN needs at least 4")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(xy))
    n_test = max(1, int(round(test_fraction * len(xy))))
    test, train = order[:n_test], order[n_test:]
    fps = {"R": real, "S": sim}

    def knn_table(train: np.ndarray, test: np.ndarray) -> dict[str, dict[str, float]]:
        out = {}
        for combo in COMBINATIONS:
            a, b = combo.split("→")
            err = knn_errors(fps[a][train], xy[train], fps[b][test], xy[test], k)
            out[combo] = {"mean": round(float(err.mean()), 2), "median": round(float(np.median(err)), 2),
                          "p90": round(float(np.percentile(err, 90)), 2)}
        return out

    knn = knn_table(train, test)
    street, _ = street_of(scene, xy)
    held = street_split(street, test_fraction, seed)
    knn_street: dict[str, dict[str, float]] = {}
    if held.any() and (~held).any():
        knn_street = knn_table(np.flatnonzero(~held), np.flatnonzero(held))
    split_info = {"streets_train": int(len(np.unique(street[~held]))), "streets_test": int(len(np.unique(street[held]))),
                  "locations_train": int((~held).sum()), "locations_test": int(held.sum())}
    result = CheckResult(metric, rho_cells, rho_sites, knn, len(xy), len(train), min(k, len(train)), rows,
                         knn_street, split_info)
    if report_dir is not None:
        write_check_report(result, report_dir, overwrite)
    return result


def write_check_report(result: CheckResult, report_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """``check.json``, ``check.md`` and ``check.png`` (scatter of simulated against measured; k-NN bars)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twin.io import atomic_dir
    from twin.plot import save_figure

    s = result.summary()
    md = ["# Fidelity check", "", f"Metric **{result.metric}**; {s['locations']} locations "
          f"({s['train']} train, {s['test']} test), k = {result.k}.", "",
          f"Mean Spearman ρ over cells: {s['mean_rho']}.", "", "| site | ρ |", "|---|---|"]
    md += [f"| {site} | {rho:.3f} |" for site, rho in result.rho_sites.items()]
    ss = result.street_split
    md += ["", f"k-NN errors [m] (mean / median / p90). Random split: {s['train']} train, {s['test']} test "
           f"locations. Street split: {ss.get('locations_train', 0)} train locations on "
           f"{ss.get('streets_train', 0)} streets, {ss.get('locations_test', 0)} test locations on "
           f"{ss.get('streets_test', 0)} other streets.", "",
           "| k-NN | random split | street split |", "|---|---|---|"]

    def cell(v: dict[str, float] | None) -> str:
        return "–" if not v else f"{v['mean']:.1f} / {v['median']:.1f} / {v['p90']:.1f}"

    md += [f"| [{c}] | {cell(v)} | {cell(result.knn_street_m.get(c))} |" for c, v in result.knn_m.items()]
    col = "rsrp_dbm" if result.metric == "rsrp" else "rssi_dbm"
    with atomic_dir(report_dir, overwrite=overwrite, kind="report") as tmp:
        (tmp / "check.json").write_text(json.dumps(s, indent=1))
        (tmp / "check.md").write_text("\n".join(md) + "\n")
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
        for k, (cid, g) in enumerate(result.rows.groupby("cell_id")):
            ax0.scatter(g[col], g["simulated"], s=5, alpha=0.5, color=f"C{k % 10}",
                        label=f"cell {cid}: ρ={result.rho_cells.get(int(cid), float('nan')):.2f}")
        ax0.set_xlabel(f"measured {result.metric} [dBm]")
        ax0.set_ylabel(f"simulated {result.metric} [dBm]")
        ax0.legend(fontsize=7)
        ax0.grid(alpha=0.3)
        names = list(result.knn_m)
        pos = np.arange(len(names))
        ax1.bar(pos - 0.2, [result.knn_m[n]["mean"] for n in names], width=0.4, color="C0", label="random split")
        if result.knn_street_m:
            ax1.bar(pos + 0.2, [result.knn_street_m[n]["mean"] for n in names], width=0.4, color="C1",
                    label="street split")
        ax1.set_xticks(pos, [f"[{n}]" for n in names])
        ax1.set_ylabel("k-NN mean error [m]")
        ax1.set_title("train → test fingerprints")
        ax1.legend(fontsize=8)
        save_figure(fig, tmp / "check.png")
    return Path(report_dir)
