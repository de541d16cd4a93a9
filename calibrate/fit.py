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

import math
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from calibrate.drive_test import DriveTest, read_drive_test
from calibrate.objective import (
    OBJECTIVES,
    CellPoints,
    Evaluation,
    PosePrior,
    SiteObjective,
    effective_points,
    received_offset,
)
from calibrate.space import PROFILE_STEP, SearchSpace, make_estimator
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
    objective : {"spearman", "rmse", "huber", "combined"}
        What is minimized (:mod:`calibrate.objective`); ρ is reported whatever it is.
    huber_delta_db : float
        Huber's threshold [dB] of the ``huber`` objective.
    height_prior_m : float or None
        Bound each site's height to the BS file's ± this [m] (within ``bounds``); None:
        the bounds alone.
    refine_calls : int
        Of ``calls``, evaluations of a second GP-EI stage in a box around the incumbent
        (``refine_box`` of each range, azimuth an arc of the same share), seeded with the
        global stage's evaluations inside it. 0: one global stage.
    refine_box : float
        Share of each parameter's range the refinement box spans.
    recheck_top : int
        Of ``calls``, the best distinct candidates re-evaluated with ``recheck_factor``
        times the rays (multi-fidelity); the best of them by that score is the result.
    recheck_factor : int
        Ray multiplier of the re-evaluations.
    profile_steps : int
        Profile evaluations per side and parameter around the result (uncertainty, in
        addition to ``calls``); 0: none.
    diffraction : bool
        Trace the evaluations with diffraction and edge diffraction on (the twin's default
        has them off; a world whose receivers sit in building shadows is lit by them).
        About 5 times the cost per evaluation on a CPU.
    prior_xy_m, prior_h_m, prior_azimuth_deg : float or None
        A Gaussian pose prior centred on the BS file (MAP calibration): the stated
        tolerance (standard deviation) of the file's position per axis [m], height [m]
        and azimuth [deg]; None: no prior on that parameter. With any set, the minimized
        loss is ``sqrt(L² + prior_sigma_db² · χ² / n_eff)`` (:class:`calibrate.objective.PosePrior`),
        ``L`` the objective [dB], ``χ²`` the squared deviations in units of the tolerances.
        Only with the dB objectives ``rmse`` and ``huber``.
    prior_sigma_db : float
        The residual spread [dB] the prior is weighed against (model error plus shadowing).
    prior_corr_m : float
        Residuals are spatially correlated: a site's effective number of independent points
        ``n_eff`` is the number of ``prior_corr_m``-sided squares its drive-test points fall in
        (200 m: the twin's missing physics is correlated beyond the shadowing's 50 m;
        docs/benchmarks.md, "Calibration on the proxy reality").
    write_offset : bool
        Write each fitted site's power correction into the calibrated file, added to its
        cells' ``power_dbm``: the mean of measured − simulated RSRP over the site's received
        points at the fitted pose (:func:`calibrate.objective.received_offset`; a cell's RSRP
        moves with its own power one for one, whereas an RSSI offset also holds the other
        cells' and the noise's share, and the objectives' offsets count unreceived points).
        Sites without RSRP rows keep their power. False: powers stay the file's.
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
    objective: Literal["spearman", "rmse", "huber", "combined"] = "huber"
    huber_delta_db: float = 6.0
    height_prior_m: float | None = None
    refine_calls: int = 0
    refine_box: float = 0.25
    recheck_top: int = 0
    recheck_factor: int = 3
    profile_steps: int = 2
    diffraction: bool = False
    prior_xy_m: float | None = None
    prior_h_m: float | None = None
    prior_azimuth_deg: float | None = None
    prior_sigma_db: float = 8.0
    prior_corr_m: float = 200.0
    write_offset: bool = False

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
        if self.objective not in OBJECTIVES:
            problems.append(f"objective: {self.objective!r} must be one of {', '.join(OBJECTIVES)}")
        if not self.huber_delta_db > 0:
            problems.append(f"huber_delta_db: {self.huber_delta_db} must be > 0")
        if self.height_prior_m is not None and not self.height_prior_m > 0:
            problems.append(f"height_prior_m: {self.height_prior_m} must be > 0 (or absent)")
        if self.refine_calls < 0 or self.recheck_top < 0 or self.profile_steps < 0:
            problems.append("refine_calls, recheck_top and profile_steps must be >= 0")
        if self.calls - self.refine_calls - self.recheck_top < self.initial_points + 1:
            problems.append(f"calls: {self.calls} minus refine_calls ({self.refine_calls}) and recheck_top "
                            f"({self.recheck_top}) must exceed initial_points ({self.initial_points})")
        if not 0 < self.refine_box < 1:
            problems.append(f"refine_box: {self.refine_box} must be in (0, 1)")
        if self.recheck_factor < 1:
            problems.append(f"recheck_factor: {self.recheck_factor} must be >= 1")
        for name in ("prior_xy_m", "prior_h_m", "prior_azimuth_deg"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                problems.append(f"{name}: {v} must be > 0 (or absent)")
        if not self.prior_sigma_db > 0 or not self.prior_corr_m > 0:
            problems.append(f"prior_sigma_db ({self.prior_sigma_db}) and prior_corr_m ({self.prior_corr_m}) must be > 0")
        if self.has_prior() and self.objective not in ("rmse", "huber"):
            problems.append(f"a pose prior (prior_xy_m, prior_h_m, prior_azimuth_deg) needs a dB objective "
                            f"(rmse or huber), not {self.objective!r}")
        if problems:
            raise InputError("calibration config: " + "; ".join(problems))
        self.space()  # bad params/bounds fail here, before any tracing

    def space(self) -> SearchSpace:
        return SearchSpace.from_options(self.params, self.bounds or None)

    def has_prior(self) -> bool:
        """Whether any pose prior is set."""
        return any(v is not None for v in (self.prior_xy_m, self.prior_h_m, self.prior_azimuth_deg))

    def prior_sigmas(self) -> dict[str, float]:
        """Parameter -> the prior's standard deviation in its unit (only the set ones)."""
        out = {"x": self.prior_xy_m, "y": self.prior_xy_m, "h": self.prior_h_m, "azimuth": self.prior_azimuth_deg}
        return {k: float(v) for k, v in out.items() if v is not None}

    def trace_config(self, base: Any = None) -> Any:
        from twin.radio.tracer import TraceConfig

        cfg = replace(base or TraceConfig(), samples_per_tx=self.samples_per_tx,
                      cell_size_m=self.cell_size_m, max_depth=self.max_depth)
        if self.diffraction:  # on when asked; off leaves the base's choice
            cfg = replace(cfg, diffraction=True, edge_diffraction=True)
        return cfg


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
    objective: str = "huber"
    loss_before: float = float("nan")
    loss_after: float = float("nan")
    rmse_before_db: float = float("nan")
    rmse_after_db: float = float("nan")
    offset_after_db: float = float("nan")
    power_offset_db: float = float("nan")  # written into power_dbm (write_offset), RSRP's offset at the result
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)  # the site's (height prior)
    # parameter -> [(step from the result, loss, ρ)], and what the profile says
    profile: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    pinned: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    profile_s: float = 0.0  # tracing seconds of the profile's evaluations (not in ``evaluations``)

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
                "trace_s": round(self.trace_s, 2), "objective": self.objective,
                "loss_before": _num(self.loss_before), "loss_after": _num(self.loss_after),
                "rmse_before_db": _num(self.rmse_before_db), "rmse_after_db": _num(self.rmse_after_db),
                "offset_after_db": _num(self.offset_after_db), "power_offset_db": _num(self.power_offset_db),
                "bounds": {k: list(v) for k, v in self.bounds.items()},
                "profile": {k: [[round(d, 3), _num(v), _num(r)] for d, v, r in rows]
                            for k, rows in self.profile.items()},
                "pinned": self.pinned, "warnings": self.warnings, "profile_s": round(self.profile_s, 2)}


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


# A profile is flat (the parameter not identifiable) when no step raises the loss by this much.
FLAT_TOL = {"spearman": 0.01, "rmse": 0.1, "huber": 0.1, "combined": 0.02}


def site_space(space: SearchSpace, cells: pd.DataFrame, height_prior_m: float | None) -> SearchSpace:
    """The site's search space: ``h`` bounded to the BS file's height ± ``height_prior_m`` (within the bounds)."""
    if height_prior_m is None or "h" not in space.params:
        return space
    h0 = float(cells["height_m"].iloc[0])
    bounds = list(space.bounds)
    k = space.params.index("h")
    lo, hi = bounds[k]
    new = (max(lo, h0 - height_prior_m), min(hi, h0 + height_prior_m))
    if new[1] - new[0] < 1.0:  # the file's height outside the bounds: keep the bounds
        new = (lo, hi)
    bounds[k] = new
    return SearchSpace(space.params, tuple(bounds))


def refine_space(space: SearchSpace, centre: dict[str, float], share: float) -> SearchSpace:
    """A box around ``centre``: ``share`` of each linear range (shifted to stay inside), azimuth an arc of ``share`` of its own."""
    bounds = []
    for p, (lo, hi) in zip(space.params, space.bounds, strict=True):
        w = share * (hi - lo)
        if p == "azimuth":
            c = float(centre[p])
            if math.isclose(hi - lo, 360.0):
                bounds.append((c - w / 2, c + w / 2))
                continue
            c = lo + (c - lo) % 360.0  # on the arc
            a = min(max(c - w / 2, lo), hi - w)
            bounds.append((a, a + w))
            continue
        a = min(max(float(centre[p]) - w / 2, lo), hi - w)
        bounds.append((a, a + w))
    return SearchSpace(space.params, tuple(bounds))


def _gp_stage(obj: SiteObjective, space: SearchSpace, n_calls: int, n_initial: int, x0: list[list[float]],
              y0: list[float], seed: int, config: CalibrationConfig, callbacks: list[Any]) -> None:
    """GP-EI over ``space`` for ``n_calls`` new evaluations of ``obj`` (recorded in ``obj.evaluations``)."""
    from skopt import gp_minimize

    estimator = make_estimator(space, seed)
    estimator.set_params(n_restarts_optimizer=1)

    def f(unit: list[float]) -> float:
        return obj.evaluate(space.to_values(unit)).loss

    gp_minimize(f, space.dimensions(), base_estimator=estimator, acq_func="EI", acq_optimizer="sampling",
                n_calls=n_calls, n_initial_points=n_initial, initial_point_generator="lhs",
                x0=x0 or None, y0=y0 or None, random_state=seed, n_points=config.acq_points,
                callback=[_warm_start(estimator), *callbacks])


def _with_rays(tracer: Any, samples_per_tx: int) -> Any:
    """``tracer`` with another ray count (returns the previous config to restore)."""
    previous = tracer.config
    tracer.config = replace(previous, samples_per_tx=samples_per_tx)
    return previous


def profile_site(obj: SiteObjective, space: SearchSpace, centre: dict[str, float], steps: int, tol: float,
                 centre_score: tuple[float, float] | None = None
                 ) -> tuple[dict[str, list[tuple[float, float, float]]], dict[str, dict[str, Any]]]:
    """The objective along each parameter around ``centre``: ``±1..steps`` × :data:`PROFILE_STEP` (within the bounds).

    Returns the profile (parameter -> ``[(step, loss, ρ)]``, the centre at step 0) and,
    per parameter, ``{"flat": bool, "within": w}``: ``w`` the largest step (in the
    parameter's unit) over which the loss stays within ``tol`` of the centre's on both
    sides (None when the whole profile does: not identifiable at this resolution).
    ``centre_score`` ``(loss, ρ)`` at the centre, if known (else it is evaluated).
    """
    obj.stage = "profile"
    if centre_score is None:
        ev0 = obj.evaluate(centre)
        centre_score = (ev0.loss, ev0.rho)
    base_loss, base_rho = centre_score
    prof: dict[str, list[tuple[float, float, float]]] = {}
    pinned: dict[str, dict[str, Any]] = {}
    for p, (lo, hi) in zip(space.params, space.bounds, strict=True):
        rows = [(0.0, base_loss, base_rho)]
        for k in [*range(-steps, 0), *range(1, steps + 1)]:
            d = k * PROFILE_STEP[p]
            v = dict(centre)
            v[p] = float(centre[p]) + d
            if p == "azimuth":
                v[p] %= 360.0
                if not space.contains(v):
                    continue
            elif not lo <= v[p] <= hi:
                continue
            ev = obj.evaluate(v)
            rows.append((d, ev.loss, ev.rho))
        rows.sort()
        prof[p] = rows
        rise = {d: loss - base_loss for d, loss, _ in rows}
        flat = all(r < tol for r in rise.values())
        within = None
        if not flat:
            within = 0.0
            for k in range(1, steps + 1):
                d = k * PROFILE_STEP[p]
                if all(rise.get(s, 0.0) < tol for s in (d, -d)):
                    within = d
                else:
                    break
        pinned[p] = {"flat": flat, "within": within}
    return prof, pinned


def fit_site(tracer: Any, cells: pd.DataFrame, points: list[CellPoints], config: CalibrationConfig,
             others: pd.DataFrame | None = None, seed: int = 0, progress: bool = False,
             metric_config: Any = None, power_points: list[CellPoints] | None = None) -> SiteFit:
    """Fit one site's pose by GP-EI over ``config.calls`` evaluations.

    Stages, all within ``config.calls``: the file's pose; a global GP-EI stage
    (``initial_points`` Latin-hypercube points, then EI); optionally a GP-EI refinement
    in a shrunk box around the incumbent (``refine_calls``); optionally the best
    ``recheck_top`` candidates re-evaluated with more rays, the best of them taken.
    Then ``profile_steps`` per side and parameter probe how well the result is pinned
    down (extra evaluations, at the fit's rays).

    Parameters
    ----------
    tracer : twin.radio.tracer.Tracer
    cells : DataFrame
        The site's rows of the BS table.
    points : list of CellPoints
        Drive-test points of the cells to fit (at least one).
    others : DataFrame, optional
        The other cells of the BS table (held fixed; they matter for RSSI).
    power_points : list of CellPoints, optional
        The cells' RSRP points (``write_offset``): the power correction is their offset at
        the result (one more evaluation; the fit's own when ``metric`` is ``rsrp``).
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    space = site_space(config.space(), cells, config.height_prior_m)
    obj = SiteObjective(tracer, cells, points, space, config.metric, others, metric_config, config.margin_m,
                        config.objective, config.huber_delta_db)
    bs_id = str(cells["bs_id"].iloc[0])
    file_values = space.site_values(cells, obj.origin)
    if config.has_prior():
        sig = {p: v for p, v in config.prior_sigmas().items() if p in space.params}
        xy = np.concatenate([p.xy_m for p in points])
        obj.prior = PosePrior(dict(file_values), sig, config.prior_sigma_db,
                              effective_points(xy, config.prior_corr_m))
    first = obj.evaluate(file_values)
    sim_before = obj.simulate(obj.rows(file_values))
    inside = space.contains(file_values)
    n_global = config.calls - config.refine_calls - config.recheck_top
    bar = tqdm(total=config.calls, desc=f"site {bs_id}", unit="eval", disable=not progress)
    bar.update(1)

    def tick(res: Any) -> None:  # returns None: a truthy callback return stops gp_minimize
        bar.update(1)

    with threadpool_limits(limits=1), warnings.catch_warnings():
        # numpy BLAS threads on a shared CPU slow the many small GP fits tenfold
        warnings.simplefilter("ignore")
        # the file's pose is the first point; outside the bounds its clipped image is evaluated instead
        _gp_stage(obj, space, n_global - 1, config.initial_points,
                  [space.to_unit(file_values)], [first.loss] if inside else [], seed, config, [tick])
        if config.refine_calls:
            best = min(obj.evaluations, key=lambda e: e.loss)
            box = refine_space(space, best.values, config.refine_box)
            prior = [e for e in obj.evaluations if box.contains(e.values)]
            obj.stage = "refine"
            _gp_stage(obj, box, config.refine_calls, 0 if len(prior) >= 3 else 3,
                      [box.to_unit(e.values) for e in prior], [e.loss for e in prior], seed + 7919, config, [tick])
    chosen = min(obj.evaluations, key=lambda e: e.loss).values
    if config.recheck_top:
        ranked: list[Evaluation] = []
        for e in sorted(obj.evaluations, key=lambda e: e.loss):
            if all(_distinct(e.values, r.values) for r in ranked):
                ranked.append(e)
            if len(ranked) == config.recheck_top:
                break
        obj.stage = "recheck"
        previous = _with_rays(tracer, config.samples_per_tx * config.recheck_factor)
        try:
            checked = [obj.evaluate(e.values) for e in ranked]
        finally:
            tracer.config = previous
        bar.update(len(checked))
        chosen = min(checked, key=lambda e: e.loss).values
    bar.close()
    after = file_values if inside and chosen == file_values else dict(chosen)
    rows_after = obj.rows(after)
    sim_after = obj.simulate(rows_after)
    score_after = obj.score(sim_after)
    profile: dict[str, list[tuple[float, float, float]]] = {}
    pinned: dict[str, dict[str, Any]] = {}
    notes = []
    if config.profile_steps:
        profile, pinned = profile_site(obj, space, after, config.profile_steps, FLAT_TOL[config.objective],
                                       (score_after.loss, score_after.rho))
        units = space.units()
        for p, info in pinned.items():
            if info["flat"]:
                notes.append(f"site {bs_id}: {p} is not identifiable from this drive test (the "
                             f"{config.objective} objective changes by less than {FLAT_TOL[config.objective]:g} "
                             f"within ±{config.profile_steps * PROFILE_STEP[p]:g} {units[p]} of the result)")
        for n in notes:
            warnings.warn(n, stacklevel=2)
    power_offset = float("nan")
    if config.write_offset:
        if config.metric == "rsrp":
            power_offset = received_offset(sim_after, points)
        elif power_points:
            rsrp = SiteObjective(tracer, cells, power_points, space, "rsrp", None, metric_config, config.margin_m,
                                 config.objective, config.huber_delta_db)
            power_offset = received_offset(rsrp.simulate(rsrp.rows(after)), power_points)
    fit = SiteFit(
        bs_id=bs_id, cell_ids=[int(c) for c in cells["cell_id"]], status="fitted",
        n_points=obj.n_points, before=file_values, after=after, rho_before=first.rho, rho_after=score_after.rho,
        rho_cells_before=first.rho_cells, rho_cells_after=score_after.rho_cells,
        evaluations=[e for e in obj.evaluations if e.stage != "profile"],
        trace_s=float(sum(e.seconds for e in obj.evaluations if e.stage != "profile")), rows_after=rows_after,
        scatter={p.cell_id: (p.measured, sim_before[p.cell_id], sim_after[p.cell_id]) for p in points},
        objective=config.objective, loss_before=first.loss, loss_after=score_after.loss,
        rmse_before_db=first.rmse_db, rmse_after_db=score_after.rmse_db, offset_after_db=score_after.offset_db,
        power_offset_db=power_offset,
        bounds=dict(zip(space.params, space.bounds, strict=True)), profile=profile, pinned=pinned,
        warnings=notes, profile_s=float(sum(e.seconds for e in obj.evaluations if e.stage == "profile")))
    fit.wall_s = time.perf_counter() - t0
    return fit


def _distinct(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two poses differ by more than 2 m / 2° in some parameter."""
    for p in a:
        gap = abs(float(a[p]) - float(b[p]))
        if p == "azimuth":
            gap = min(gap, 360.0 - gap)
        if gap > 2.0:
            return True
    return False


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
              engine_threads: int | None = None, power_points: list[CellPoints] | None = None) -> SiteFit:
    tracer = _worker_tracer(scene_dir, trace_config, engine_threads)
    return fit_site(tracer, cells, points, config, others, seed, progress, power_points=power_points)


def _run(tasks: list[dict[str, Any]], scene_dir: str, trace_config: Any, config: CalibrationConfig,
         workers: int, scheduler: str | None, progress: bool, cluster_spec: Any = None) -> list[SiteFit]:
    from tqdm.auto import tqdm

    batch = cluster_spec is not None and cluster_spec.kind != "local"
    if scheduler is None and workers <= 1 and not batch:
        return [_fit_task(scene_dir, trace_config, config=config, progress=progress, **t) for t in tasks]
    from dask.distributed import as_completed

    from twin.generate.cluster import start_cluster

    # The engine of `twin generate`. Workers of a given scheduler are set up by whoever started
    # them; a batch job's worker has its job's cores (cluster.threads_per_worker).
    if scheduler:
        threads = None
    elif batch:
        threads = cluster_spec.threads_per_worker
    else:
        threads = max(1, (os.cpu_count() or 1) // min(workers, len(tasks)))
    client, cluster = start_cluster(cluster_spec, workers=workers if workers > 1 or not batch else None,
                                    scheduler=scheduler, n_tasks=len(tasks))
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
              scheduler: str | None = None, cluster: Any = None, sites: list[str] | None = None,
              overwrite: bool = False, progress: bool = False) -> CalibrationResult:
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
    cluster : twin.generate.cluster.ClusterSpec, optional
        The engine of ``twin generate``: with ``kind`` slurm or pbs the sites run in
        ``workers`` batch jobs (default ``cluster.workers``, else 1) started through
        dask-jobqueue, each worker with ``threads_per_worker`` engine threads.
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
    if out is not None:
        check_output(out, overwrite, "file")  # fail before the long part
    if report_dir is not None:
        check_output(report_dir, overwrite, "report")
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
    rsrp_points: dict[str, list[CellPoints]] = {}
    if config.write_offset and config.metric != "rsrp":
        rsrp_points, _ = plan_sites(table, drive, "rsrp", config.min_points)
    order = list(table["bs_id"].astype(str).drop_duplicates())
    tasks = []
    for k, bs_id in enumerate(order):
        if bs_id not in todo or bs_id in not_selected:
            continue
        mine = (table["bs_id"].astype(str) == bs_id).to_numpy()
        tasks.append({"cells": table[mine].reset_index(drop=True), "points": todo[bs_id],
                      "others": table[~mine].reset_index(drop=True), "seed": config.seed + k,
                      "power_points": rsrp_points.get(bs_id)})
    fits = _run(tasks, str(scene.path), trace_cfg, config, workers, scheduler, progress, cluster)
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
            if config.write_offset and np.isfinite(f.power_offset_db):
                calibrated.loc[calibrated.index[idx], "power_dbm"] = (
                    f.rows_after["power_dbm"].to_numpy(np.float64) + f.power_offset_db)
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
