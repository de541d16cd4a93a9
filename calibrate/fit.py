"""``calibrate fit``: Gaussian-process Bayesian optimization of each base station's pose.

Seed 004 §5.2: per base station, lateral offset ``(x, y) ∈ [−50, 50]² m``, height
``h ∈ [20, 100] m`` and azimuth ``φ ∈ [0, 360)°`` are fitted to maximize the Spearman
correlation between simulated and measured RSSI, with a GP surrogate and expected
improvement over 90 evaluations. Here a *base station* is a site (``bs_id``): its sector
cells move together and turn together (:mod:`calibrate.space`), the other sites stay
at their file poses. Each evaluation re-traces only the site's cells over the smallest
window covering its drive-test points (:mod:`calibrate.objective`).

The optimizer is scikit-optimize's ``gp_minimize`` with ``acq_func="EI"``, its GP
surrogate given a kernel in which azimuth wraps around (:class:`CircularMatern`).
Two departures from its defaults, both for speed on a CPU: the acquisition is
maximized over ``acq_points`` random candidates (no L-BFGS, which would need kernel
gradients in the inputs), and each GP fit starts from the previous fit's
hyperparameters (a callback), so one restart of the marginal-likelihood optimizer
suffices. The first evaluation is the file's pose, so the fitted ρ is never below
the file's (when the file's pose is inside the bounds).

Sites are independent: they are fitted in parallel on Dask (a LocalCluster of
single-threaded worker processes, or a given scheduler), each worker loading the
Sionna scene once (:func:`_worker_tracer`).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from calibrate.drive_test import DriveTest, read_drive_test
from calibrate.objective import CellPoints, Evaluation, SiteObjective
from calibrate.space import SearchSpace, make_estimator
from twin.errors import InputError

__all__ = ["CalibrationConfig", "SiteFit", "CalibrationResult", "fit_site", "plan_sites", "calibrate"]


@dataclass(frozen=True)
class CalibrationConfig:
    """How to calibrate. Load from YAML with ``twin.config.load_yaml(CalibrationConfig, path, section="calibrate")``.

    Parameters
    ----------
    calls : int
        Objective evaluations per site, the file's pose included (seed 004: 90).
    initial_points : int
        Latin-hypercube evaluations before the GP steers (skopt's default 10).
    metric : {"rssi", "rsrp"}
        What is compared (seed 004: RSSI).
    params : str
        Comma-separated parameters fitted (``x,y,h,azimuth``; also ``tilt``, ``power``).
    bounds : str
        Overrides of the default bounds, ``"x=-30:30,h=25:60"`` (see :mod:`calibrate.space`).
    seed : int
        Seeds the optimizer (per site: ``seed`` plus the site's index).
    samples_per_tx : int
        Rays per evaluation (seed 004: 10^6). Rays per map cell set the Monte-Carlo
        noise in ρ, which flattens the landscape in position (docs/calibrate.md); the
        GP's noise term absorbs what is left. 10^6 over 8 m cells costs about 0.3 s per
        evaluation on one core for a 500 m window.
    cell_size_m : float or None
        Radio-map cell of the evaluations [m]; None: the scene grid's. 8 m cells gather
        four times the rays of the scene's 4 m ones.
    max_depth : int
        Interactions per path (seed 004: 3).
    min_points : int
        Cells with fewer drive-test points are skipped (reason in the report).
    margin_m : float
        Extra border of each site's window around its points [m].
    acq_points : int
        Random candidates the expected improvement is maximized over.
    outlier_db : float
        Drive-test outlier threshold (:func:`calibrate.drive_test.read_drive_test`).
    """

    calls: int = 90
    initial_points: int = 10
    metric: Literal["rssi", "rsrp"] = "rssi"
    params: str = "x,y,h,azimuth"
    bounds: str = ""
    seed: int = 0
    samples_per_tx: int = 1_000_000
    cell_size_m: float | None = 8.0
    max_depth: int = 3
    min_points: int = 10
    margin_m: float = 0.0
    acq_points: int = 10_000
    outlier_db: float = 20.0

    def __post_init__(self) -> None:
        problems = []
        if self.initial_points < 1:
            problems.append(f"initial_points: {self.initial_points} must be >= 1")
        if self.calls < self.initial_points + 1:
            problems.append(f"calls: {self.calls} must exceed initial_points ({self.initial_points}): the "
                            "file's pose and the initial design come before the GP's own choices")
        if self.metric not in ("rssi", "rsrp"):
            problems.append(f"metric: {self.metric!r} must be 'rssi' or 'rsrp'")
        if self.samples_per_tx < 1000:
            problems.append(f"samples_per_tx: {self.samples_per_tx} is below 1000")
        if self.min_points < 3:
            problems.append(f"min_points: {self.min_points} must be >= 3 (a rank correlation needs points)")
        if self.acq_points < 10:
            problems.append(f"acq_points: {self.acq_points} must be >= 10")
        if problems:
            raise InputError("calibration config: " + "; ".join(problems))
        self.space()  # bad params/bounds fail here, before any tracing

    def space(self) -> SearchSpace:
        return SearchSpace.from_options(self.params, self.bounds or None)

    def trace_config(self, base: Any = None) -> Any:
        from twin.radio.tracer import TraceConfig

        return replace(base or TraceConfig(), samples_per_tx=self.samples_per_tx,
                       cell_size_m=self.cell_size_m, max_depth=self.max_depth)


@dataclass
class SiteFit:
    """The outcome for one site (``bs_id``)."""

    bs_id: str
    cell_ids: list[int]
    status: Literal["fitted", "skipped"]
    reason: str = ""
    skipped_cells: dict[int, str] = field(default_factory=dict)
    n_points: int = 0
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    rho_before: float = float("nan")
    rho_after: float = float("nan")
    rho_cells_before: dict[int, float] = field(default_factory=dict)
    rho_cells_after: dict[int, float] = field(default_factory=dict)
    evaluations: list[Evaluation] = field(default_factory=list)
    wall_s: float = 0.0
    trace_s: float = 0.0
    rows_after: pd.DataFrame | None = None
    # cell -> (measured, simulated before, simulated after) at the cell's points
    scatter: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"bs_id": self.bs_id, "cells": self.cell_ids, "status": self.status, "reason": self.reason,
                "skipped_cells": {str(k): v for k, v in self.skipped_cells.items()},
                "points": self.n_points, "rho_before": _num(self.rho_before), "rho_after": _num(self.rho_after),
                "rho_gain": _num(self.rho_after - self.rho_before),
                "rho_cells_before": {str(k): _num(v) for k, v in self.rho_cells_before.items()},
                "rho_cells_after": {str(k): _num(v) for k, v in self.rho_cells_after.items()},
                "params_before": {k: round(v, 3) for k, v in self.before.items()},
                "params_after": {k: round(v, 3) for k, v in self.after.items()},
                "evaluations": len(self.evaluations), "wall_s": round(self.wall_s, 2),
                "trace_s": round(self.trace_s, 2)}


def _num(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 4)


@dataclass
class CalibrationResult:
    """What :func:`calibrate` produced."""

    table: pd.DataFrame              # the calibrated BS table (with ``calibrated``)
    sites: list[SiteFit]
    drive_test: DriveTest
    config: CalibrationConfig
    space: SearchSpace
    wall_s: float
    out: Path | None = None
    report_dir: Path | None = None
    workers: int = 1

    def summary(self) -> dict[str, Any]:
        fitted = [s for s in self.sites if s.status == "fitted"]
        gains = [s.rho_after - s.rho_before for s in fitted]
        return {"sites": len(self.sites), "fitted": len(fitted), "skipped": len(self.sites) - len(fitted),
                "mean_rho_before": _num(float(np.mean([s.rho_before for s in fitted]))) if fitted else None,
                "mean_rho_after": _num(float(np.mean([s.rho_after for s in fitted]))) if fitted else None,
                "mean_rho_gain": _num(float(np.mean(gains))) if fitted else None,
                "wall_s": round(self.wall_s, 2), "workers": self.workers}


def _warm_start(estimator: Any) -> Any:
    """A gp_minimize callback: the next GP fit starts from this fit's hyperparameters.

    skopt clones ``estimator`` (the very object it was given) before every fit, so
    setting its kernel carries the fitted length scales, amplitude and noise over.
    """
    from skopt.learning.gaussian_process.kernels import WhiteKernel

    def callback(res: Any) -> None:
        if not res.models:
            return
        model = res.models[-1]
        signal = model.kernel_.k1  # Sum(constant * CircularMatern, WhiteKernel zeroed by skopt)
        noise = float(np.clip(model.noise_ or 1e-5, 1e-5, 1e5))
        estimator.set_params(kernel=signal + WhiteKernel(noise_level=noise, noise_level_bounds=(1e-5, 1e5)))

    return callback


def fit_site(tracer: Any, cells: pd.DataFrame, points: list[CellPoints], config: CalibrationConfig,
             others: pd.DataFrame | None = None, seed: int = 0, progress: bool = False,
             metric_config: Any = None) -> SiteFit:
    """Fit one site's pose by GP-EI over ``config.calls`` evaluations.

    Parameters
    ----------
    tracer : twin.radio.tracer.Tracer
    cells : DataFrame
        The site's rows of the BS table.
    points : list of CellPoints
        Drive-test points of the cells to fit (at least one).
    others : DataFrame, optional
        The other cells of the BS table (held fixed; they matter for RSSI).
    """
    from skopt import gp_minimize
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    space = config.space()
    obj = SiteObjective(tracer, cells, points, space, config.metric, others, metric_config, config.margin_m)
    file_values = space.site_values(cells, obj.origin)
    first = obj.evaluate(file_values)
    sim_before = obj.simulate(obj.rows(file_values))
    u0 = space.to_unit(file_values)
    inside = space.contains(file_values)
    estimator = make_estimator(space, seed)
    estimator.set_params(n_restarts_optimizer=1)
    bar = tqdm(total=config.calls, desc=f"site {cells['bs_id'].iloc[0]}", unit="eval", disable=not progress)
    bar.update(1)

    def tick(res: Any) -> None:  # returns None: a truthy callback return stops gp_minimize
        bar.update(1)

    callbacks = [_warm_start(estimator), tick]
    with threadpool_limits(limits=1), warnings.catch_warnings():
        # numpy BLAS threads on a shared CPU slow the many small GP fits tenfold
        warnings.simplefilter("ignore")
        # the file's pose is the first point; outside the bounds its clipped image is evaluated instead
        res = gp_minimize(obj, space.dimensions(), base_estimator=estimator, acq_func="EI",
                          acq_optimizer="sampling", n_calls=config.calls - 1,
                          n_initial_points=config.initial_points, initial_point_generator="lhs",
                          x0=[u0], y0=[-first.rho] if inside else None, random_state=seed,
                          n_points=config.acq_points, callback=callbacks)
    bar.close()
    after = file_values if inside and np.allclose(res.x, u0) else space.to_values(res.x)
    rows_after = obj.rows(after)
    sim_after = obj.simulate(rows_after)
    rho_after, rho_cells_after = obj.score(sim_after)
    fit = SiteFit(
        bs_id=str(cells["bs_id"].iloc[0]), cell_ids=[int(c) for c in cells["cell_id"]], status="fitted",
        n_points=obj.n_points, before=file_values, after=after, rho_before=first.rho, rho_after=rho_after,
        rho_cells_before=first.rho_cells, rho_cells_after=rho_cells_after, evaluations=obj.evaluations,
        trace_s=float(sum(e.seconds for e in obj.evaluations)), rows_after=rows_after,
        scatter={p.cell_id: (p.measured, sim_before[p.cell_id], sim_after[p.cell_id]) for p in points})
    fit.wall_s = time.perf_counter() - t0
    return fit


def plan_sites(table: pd.DataFrame, drive: DriveTest, metric: str, min_points: int
               ) -> tuple[dict[str, list[CellPoints]], dict[str, dict[int, str]]]:
    """Each site's drive-test points per fittable cell, and each site's skipped cells with reasons.

    A cell is skipped when it has no drive-test rows, fewer than ``min_points``, or
    constant measurements (no ranking to correlate with). A site with no cell left is
    absent from the first mapping.
    """
    col = "rsrp_dbm" if metric == "rsrp" else "rssi_dbm"
    rows = drive.rows[drive.rows[col].notna()] if col in drive.rows.columns else drive.rows.iloc[:0]
    by_cell = {int(c): g for c, g in rows.groupby("cell_id")}
    todo: dict[str, list[CellPoints]] = {}
    skipped: dict[str, dict[int, str]] = {}
    for bs_id, site in table.groupby(table["bs_id"].astype(str), sort=False):
        pts, why = [], {}
        for cid in site["cell_id"].astype(int):
            g = by_cell.get(cid)
            if g is None:
                why[cid] = f"no drive-test rows with {col}"
            elif len(g) < min_points:
                why[cid] = f"{len(g)} drive-test points, fewer than min_points={min_points}"
            elif np.ptp(g[col].to_numpy()) == 0:
                why[cid] = f"constant measurements ({col} = {g[col].iloc[0]:g} at all {len(g)} points): no ranking"
            else:
                pts.append(CellPoints(cid, g[["x_m", "y_m"]].to_numpy(np.float64), g[col].to_numpy(np.float64)))
        if pts:
            todo[str(bs_id)] = pts
        skipped[str(bs_id)] = why
    return todo, skipped


# --- parallel execution ---------------------------------------------------------------

_TRACERS: dict[tuple[str, Any], Any] = {}


def _worker_tracer(scene_dir: str, trace_config: Any, engine_threads: int | None = None) -> Any:
    """The process's Tracer for a scene and config: Sionna scenes cannot cross processes.

    ``engine_threads`` caps Dr.Jit's threads in this process, so that N worker processes
    on one machine do not each spread over every core.
    """
    from twin.radio.tracer import Tracer

    key = (scene_dir, trace_config)
    if key not in _TRACERS:
        if engine_threads:
            import drjit as dr

            from twin.engine import sionna_rt

            sionna_rt()
            dr.set_thread_count(engine_threads)
        _TRACERS[key] = Tracer(scene_dir, trace_config)
    return _TRACERS[key]


def _fit_task(scene_dir: str, trace_config: Any, cells: pd.DataFrame, points: list[CellPoints],
              config: CalibrationConfig, others: pd.DataFrame, seed: int, progress: bool = False,
              engine_threads: int | None = None) -> SiteFit:
    tracer = _worker_tracer(scene_dir, trace_config, engine_threads)
    return fit_site(tracer, cells, points, config, others, seed, progress)


def _run(tasks: list[dict[str, Any]], scene_dir: str, trace_config: Any, config: CalibrationConfig,
         workers: int, scheduler: str | None, progress: bool) -> list[SiteFit]:
    from tqdm.auto import tqdm

    if scheduler is None and workers <= 1:
        return [_fit_task(scene_dir, trace_config, config=config, progress=progress, **t) for t in tasks]
    from dask.distributed import as_completed

    from twin.generate.cluster import start_cluster

    # The engine of `twin generate`; a given scheduler's workers are set up by whoever started them.
    threads = None if scheduler else max(1, (os.cpu_count() or 1) // min(workers, len(tasks)))
    client, cluster = start_cluster(workers=workers, scheduler=scheduler, n_tasks=len(tasks))
    try:
        with client:
            futures = {client.submit(_fit_task, scene_dir, trace_config, config=config, engine_threads=threads,
                                     pure=False, **t): k
                       for k, t in enumerate(tasks)}
            out: list[SiteFit | None] = [None] * len(tasks)
            for fut in tqdm(as_completed(futures), total=len(futures), desc="sites", disable=not progress):
                out[futures[fut]] = fut.result()
            return [f for f in out if f is not None]
    finally:
        if cluster is not None:
            cluster.close()


def calibrate(scene: Any, bs_file: str | os.PathLike | pd.DataFrame, drive_test: str | os.PathLike | DriveTest,
              out: str | os.PathLike | None = None, report_dir: str | os.PathLike | None = None,
              config: CalibrationConfig | None = None, *, trace_config: Any = None, workers: int = 1,
              scheduler: str | None = None, sites: list[str] | None = None, overwrite: bool = False,
              progress: bool = False) -> CalibrationResult:
    """Calibrate every site of a BS file against a drive test; write the calibrated file and a report.

    Parameters
    ----------
    scene : TwinScene or path
        The scene directory (workers load it by path).
    bs_file : path or DataFrame
        The BS file (CSV/GeoJSON) or a table as :func:`twin.radio.sites.read_bs_file` returns.
    drive_test : path or DriveTest
        The measurements (:func:`calibrate.drive_test.read_drive_test`).
    out : path, optional
        The calibrated BS file (same schema, a ``calibrated`` column added).
    report_dir : path, optional
        JSON + Markdown report, dropped rows, PNG convergence and scatter plots.
    config : CalibrationConfig, optional
    trace_config : twin.radio.tracer.TraceConfig, optional
        Base tracing settings (materials, interaction switches); the config's
        ``samples_per_tx``, ``cell_size_m`` and ``max_depth`` override it.
    workers : int
        Dask worker processes; 1 without ``scheduler`` fits in this process.
    scheduler : str, optional
        Address of a running Dask scheduler.
    sites : list of str, optional
        Only these ``bs_id`` (the others are kept as they are, uncalibrated).

    Returns
    -------
    CalibrationResult
    """
    from twin.io import check_output
    from twin.radio.sites import read_bs_file, sites_from_records, write_bs_file
    from twin.scene.build import TwinScene, load_twin_scene

    t0 = time.perf_counter()
    config = config or CalibrationConfig()
    space = config.space()
    for path in (out, report_dir):
        if path is not None:
            check_output(path, overwrite)  # fail before the long part
    scene = scene if isinstance(scene, TwinScene) else load_twin_scene(scene)
    if isinstance(bs_file, pd.DataFrame):
        table = sites_from_records(bs_file.to_dict(orient="records"), scene)
    else:
        table = read_bs_file(bs_file, scene, on_building=None)
    if isinstance(drive_test, DriveTest):
        drive = drive_test
    else:
        drive = read_drive_test(drive_test, scene, table, config.metric, config.outlier_db)
    missing = sorted(set(drive.cell_ids()) - set(table["cell_id"].astype(int)))
    if missing:  # only when a DriveTest was passed in without the BS table
        raise InputError(f"{drive.source}: cells {missing[:10]} are not in the BS file")
    if sites is not None:
        unknown = sorted(set(sites) - set(table["bs_id"].astype(str)))
        if unknown:
            raise InputError(f"sites: {unknown} are not bs_id values of the BS file")
    todo, skipped = plan_sites(table, drive, config.metric, config.min_points)
    not_selected = {b for b in todo if sites is not None and b not in sites}
    if not set(todo) - not_selected:
        reasons = "; ".join(f"{b}: " + ", ".join(f"cell {c}: {r}" for c, r in why.items())
                            for b, why in skipped.items() if b not in todo)
        raise InputError("no site can be calibrated" + (f" ({reasons})" if reasons else " (none selected)"))

    trace_cfg = config.trace_config(trace_config)
    order = list(table["bs_id"].astype(str).drop_duplicates())
    tasks = []
    for k, bs_id in enumerate(order):
        if bs_id not in todo or bs_id in not_selected:
            continue
        mine = (table["bs_id"].astype(str) == bs_id).to_numpy()
        tasks.append({"cells": table[mine].reset_index(drop=True), "points": todo[bs_id],
                      "others": table[~mine].reset_index(drop=True), "seed": config.seed + k})
    fits = _run(tasks, str(scene.path), trace_cfg, config, workers, scheduler, progress)
    by_id = {f.bs_id: f for f in fits}
    results = []
    for bs_id in order:
        if bs_id in by_id:
            f = by_id[bs_id]
            f.skipped_cells = skipped[bs_id]
        else:
            reason = ("not selected (--sites)" if bs_id in not_selected else
                      "no cell to fit: " + "; ".join(f"cell {c}: {r}" for c, r in skipped[bs_id].items()))
            f = SiteFit(bs_id, table.loc[table["bs_id"].astype(str) == bs_id, "cell_id"].astype(int).tolist(),
                        "skipped", reason=reason, skipped_cells=skipped[bs_id])
        results.append(f)

    calibrated = table.copy()
    flag = np.zeros(len(calibrated), bool)
    for f in results:
        if f.status == "fitted" and f.rows_after is not None:
            idx = np.flatnonzero((calibrated["bs_id"].astype(str) == f.bs_id).to_numpy())
            for col in ("x_m", "y_m", "height_m", "azimuth_deg", "tilt_deg", "power_dbm"):
                calibrated.loc[calibrated.index[idx], col] = f.rows_after[col].to_numpy()
            flag[idx] = True
    calibrated = calibrated.drop(columns=[c for c in ("lon", "lat") if c in calibrated.columns])
    calibrated = sites_from_records(calibrated.to_dict(orient="records"), scene)  # lon/lat from x_m, y_m
    calibrated["calibrated"] = flag
    result = CalibrationResult(calibrated, results, drive, config, space, time.perf_counter() - t0,
                               workers=workers)
    if out is not None:
        result.out = write_bs_file(calibrated, out, scene, overwrite=overwrite)
    if report_dir is not None:
        from calibrate.report import write_report

        result.report_dir = write_report(result, report_dir, overwrite=overwrite)
    return result
