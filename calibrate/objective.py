"""The calibration objective of one site: absolute levels after a fitted offset, or Spearman ρ.

One evaluation moves/turns the site's cells to a candidate pose, re-traces only those
cells over the smallest radio-map window that covers the site's drive-test points
(``Tracer.window_covering``'s window, fixed for the whole fit), samples the maps at
the points and compares them with the measurements. On the CPU a radio map is far
cheaper than per-receiver path solving (DESIGN.md: 1,000 receivers by ``PathSolver``
at 10^5 samples took 43 s; a window map takes a fraction of a second).

Simulated values are what the drive test reports, through :func:`twin.radio.metrics.compute_metrics`:

- ``rsrp``: the cell's RSRP, a function of its own path gain only;
- ``rssi``: the RSSI of the cell's carrier, i.e. the cell's power plus that of every
  *other* cell of the BS file on the same carrier (held fixed at their file poses and
  traced once over the window) plus noise, as a UE measures it.

Objectives (``objective``, minimized; :data:`OBJECTIVES`):

- ``spearman`` (seed 004): ``−ρ``, ρ the cells' Spearman correlations weighted by their
  point counts. Blind to any monotone change of the simulated values, so a higher
  antenna farther away can rank the points as well as the true one.
- ``rmse``: the RMS difference [dB] between measured and simulated values after one
  offset per site, fitted in closed form (the mean residual): the unknown transmit
  power, cable loss and antenna gain of the site. Absolute levels pin distance and
  height: path loss falls with distance at a slope the offset cannot fake.
- ``huber``: the same with Huber's loss (``delta_db``) and its offset by iteratively
  reweighted least squares, robust to shadowed outliers; reported as
  ``sqrt(2 · mean Huber loss)`` [dB], which equals the RMSE when no residual exceeds
  ``delta_db``.
- ``combined``: ``rmse / σ + (1 − ρ)``, σ the spread [dB] of the site's measured
  values (the RMSE of a constant prediction), so both terms are dimensionless and 0
  at a perfect fit.

Whatever the objective, every evaluation records ρ, the RMSE, the Huber loss and the
offset. A point where the candidate's rays do not arrive has no simulated value: for
ρ it ranks below every received point; for the level objectives it takes a value
``dark_db`` (10 dB) below the weakest received value of the site, so that a pose that
leaves measured points dark is penalized, never rewarded by a smaller sample (the
substitute moves with the simulated values, so the offset invariance holds). A cell
whose simulated values are all equal scores ρ = 0.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from calibrate.space import SearchSpace
from twin.errors import InputError

__all__ = ["OBJECTIVES", "CellPoints", "Evaluation", "Score", "SiteObjective", "PosePrior", "spearman",
           "offset_rmse", "offset_huber", "score_site", "effective_points", "received_offset"]

OBJECTIVES = ("spearman", "rmse", "huber", "combined")
Objective = Literal["spearman", "rmse", "huber", "combined"]
DARK_DB = 10.0  # an unreceived point counts this far below the weakest received value [dB]


@dataclass(frozen=True)
class CellPoints:
    """A cell's drive-test points.

    Attributes
    ----------
    cell_id : int
    xy_m : ndarray (N, 2)
        Scene metres.
    measured : ndarray (N,)
        Reported values [dBm].
    """

    cell_id: int
    xy_m: np.ndarray
    measured: np.ndarray


@dataclass(frozen=True)
class Score:
    """How well a site's simulated values match its drive test.

    Attributes
    ----------
    loss : float
        The objective's value (minimized).
    rho : float
        The cells' Spearman ρ weighted by their point counts.
    rho_cells : dict
        Per cell ρ.
    rmse_db : float
        RMS residual after the site's least-squares offset [dB].
    huber_db : float
        ``sqrt(2 · mean Huber loss)`` after the site's Huber offset [dB].
    offset_db : float
        The offset of the objective (measured − simulated) [dB]: the least-squares one
        for ``spearman``, ``rmse`` and ``combined``, the Huber one for ``huber``.
    """

    loss: float
    rho: float
    rho_cells: dict[int, float]
    rmse_db: float
    huber_db: float
    offset_db: float


@dataclass
class Evaluation:
    """One objective evaluation: the candidate, its score and its cost."""

    values: dict[str, float]
    rho: float                      # the site's weighted ρ
    rho_cells: dict[int, float]     # per cell
    seconds: float
    loss: float = float("nan")      # the objective's value
    rmse_db: float = float("nan")
    huber_db: float = float("nan")
    offset_db: float = float("nan")
    samples_per_tx: int = 0         # rays of this evaluation
    stage: str = "global"           # global, refine, recheck (more rays) or profile
    prior_chi2: float = 0.0         # the pose prior's χ² (0 without a prior); ``loss`` includes it


def spearman(simulated: np.ndarray, measured: np.ndarray) -> float:
    """Spearman ρ with unreceived (NaN) simulated points ranked last; 0 if ``simulated`` is constant."""
    sim = np.asarray(simulated, np.float64)
    meas = np.asarray(measured, np.float64)
    finite = np.isfinite(sim)
    if finite.sum() < 2:
        return 0.0
    sim = np.where(finite, sim, sim[finite].min() - 100.0)
    if np.ptp(sim) == 0.0 or np.ptp(meas) == 0.0:
        return 0.0
    return float(spearmanr(sim, meas).statistic)


def _fill_dark(simulated: np.ndarray, dark_db: float = DARK_DB) -> np.ndarray:
    """Unreceived (NaN) values -> ``dark_db`` below the weakest received one (0 dB if none is)."""
    sim = np.asarray(simulated, np.float64)
    finite = np.isfinite(sim)
    floor = sim[finite].min() - dark_db if finite.any() else 0.0
    return np.where(finite, sim, floor)


def offset_rmse(simulated: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """RMS residual [dB] after the least-squares offset, and the offset ``mean(measured − simulated)`` [dB].

    ``simulated`` and ``measured`` are ``(N,)`` [dB]; NaN simulated values are filled by
    :func:`_fill_dark`. Adding a constant to ``simulated`` changes the offset only.
    """
    resid = np.asarray(measured, np.float64) - _fill_dark(simulated)
    b = float(resid.mean())
    return float(np.sqrt(np.mean((resid - b) ** 2))), b


def offset_huber(simulated: np.ndarray, measured: np.ndarray, delta_db: float = 6.0,
                 iterations: int = 50) -> tuple[float, float]:
    """Huber residual ``sqrt(2 · mean ρ_δ(r − b))`` [dB] at the Huber offset ``b`` [dB], found by IRLS.

    ``ρ_δ(r) = r²/2`` for ``|r| ≤ δ`` and ``δ(|r| − δ/2)`` beyond. The offset starts at the
    median residual and is reweighted (``w = min(1, δ/|r − b|)``) until it moves by less
    than 10⁻⁶ dB; the loss is convex in ``b``, so this is its minimum.
    """
    if not delta_db > 0:
        raise InputError(f"huber delta_db: {delta_db} must be > 0")
    resid = np.asarray(measured, np.float64) - _fill_dark(simulated)
    b = float(np.median(resid))
    for _ in range(iterations):
        a = np.abs(resid - b)
        w = np.minimum(1.0, delta_db / np.maximum(a, 1e-12))
        nb = float(np.dot(w, resid) / w.sum())
        if abs(nb - b) < 1e-6:
            b = nb
            break
        b = nb
    a = np.abs(resid - b)
    loss = np.where(a <= delta_db, 0.5 * a ** 2, delta_db * (a - 0.5 * delta_db))
    return float(np.sqrt(2.0 * loss.mean())), b


def score_site(simulated: Mapping[int, np.ndarray], points: Sequence[CellPoints], objective: str = "rmse",
               delta_db: float = 6.0) -> Score:
    """Score a site: ρ per cell and weighted, and the level fits over all its points together.

    ``simulated`` maps each cell of ``points`` to its ``(N,)`` simulated values [dB]. One
    offset serves the whole site (its cells share the transmitter chain); the dark-point
    substitute is taken over the site's values.
    """
    if objective not in OBJECTIVES:
        raise InputError(f"objective: {objective!r}; choose from {', '.join(OBJECTIVES)}")
    rho_cells = {p.cell_id: spearman(simulated[p.cell_id], p.measured) for p in points}
    n = np.array([len(p.measured) for p in points], np.float64)
    rho = float(np.dot(n, [rho_cells[p.cell_id] for p in points]) / n.sum())
    sim = np.concatenate([np.asarray(simulated[p.cell_id], np.float64) for p in points])
    meas = np.concatenate([p.measured for p in points]).astype(np.float64)
    rmse, b_ls = offset_rmse(sim, meas)
    hub, b_h = offset_huber(sim, meas, delta_db)
    spread = float(np.std(meas)) or 1.0
    loss = {"spearman": -rho, "rmse": rmse, "huber": hub, "combined": rmse / spread + (1.0 - rho)}[objective]
    return Score(float(loss), rho, rho_cells, rmse, hub, b_h if objective == "huber" else b_ls)


def received_offset(simulated: Mapping[int, np.ndarray], points: Sequence[CellPoints]) -> float:
    """Mean ``measured − simulated`` [dB] over the points the simulation reaches (NaN if none).

    The power correction of ``write_offset``: the least-squares offset of the received
    points only, as a map's per-cell bias is measured (an unreceived point has no
    simulated value to correct; the objectives' dark-point substitute would pull it up).
    """
    r = np.concatenate([np.asarray(p.measured, np.float64) - np.asarray(simulated[p.cell_id], np.float64)
                        for p in points])
    r = r[np.isfinite(r)]
    return float(r.mean()) if len(r) else float("nan")


def effective_points(xy_m: np.ndarray, corr_m: float) -> int:
    """Independent points of a drive test whose residuals are correlated over ``corr_m`` [m].

    The number of ``corr_m``-sided squares (on a lattice at the scene origin) holding at
    least one of the points ``(N, 2)`` [m]: points closer than the correlation distance
    count about once.
    """
    if not corr_m > 0:
        raise InputError(f"prior_corr_m: {corr_m} must be > 0")
    xy = np.asarray(xy_m, np.float64).reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(axis=1)]
    return max(1, len(np.unique(np.floor(xy / corr_m).astype(np.int64), axis=0)))


@dataclass(frozen=True)
class PosePrior:
    """A Gaussian prior on a site's pose around its BS-file values (MAP calibration).

    With ``n_eff`` independent residuals of spread ``sigma_db``, the negative log
    posterior is ``n_eff · L² / (2 σ²) + χ² / 2`` (``L`` the RMS-type objective [dB],
    ``χ² = Σ ((v − centre) / sigma)²``, azimuth deviations wrapped to ±180°);
    :meth:`penalize` returns the monotone equivalent ``sqrt(L² + σ² χ² / n_eff)`` [dB],
    equal to ``L`` at the file's pose.

    Attributes
    ----------
    centre : dict
        Parameter -> the file's value (search-space units: x, y offsets [m], h [m], azimuth [deg]).
    sigma : dict
        Parameter -> standard deviation, same unit; parameters absent are free.
    sigma_db : float
        Residual spread [dB].
    n_eff : float
        Effective number of independent drive-test points (:func:`effective_points`).
    """

    centre: dict[str, float]
    sigma: dict[str, float]
    sigma_db: float
    n_eff: float

    def chi2(self, values: Mapping[str, float]) -> float:
        total = 0.0
        for p, s in self.sigma.items():
            d = float(values[p]) - float(self.centre[p])
            if p == "azimuth":
                d = (d + 180.0) % 360.0 - 180.0
            total += (d / s) ** 2
        return total

    def penalize(self, loss: float, values: Mapping[str, float]) -> tuple[float, float]:
        """``(penalized loss [dB], χ²)`` of an objective value ``loss`` [dB] at ``values``."""
        c2 = self.chi2(values)
        return float(np.sqrt(loss ** 2 + self.sigma_db ** 2 * c2 / self.n_eff)), c2


@dataclass
class SiteObjective:
    """``f(unit point) -> loss`` for one site, with its evaluations recorded.

    Parameters
    ----------
    tracer : twin.radio.tracer.Tracer
        A loaded scene; only this site's cells are traced per evaluation.
    cells : DataFrame
        The site's rows of the BS table (validated, with ``x_m, y_m``), at their file pose.
    points : sequence of CellPoints
        Drive-test points of the site's cells that are fitted (skipped cells left out).
    space : SearchSpace
    metric : "rssi" or "rsrp"
    others : DataFrame, optional
        The BS table's other cells; for ``rssi`` those on a fitted cell's carrier add
        their (fixed) power.
    metric_config : twin.radio.metrics.MetricConfig, optional
    margin_m : float
        Extra border of the window around the points [m].
    objective : one of :data:`OBJECTIVES`
    delta_db : float
        Huber's threshold [dB].
    stage : str
        Recorded with each evaluation (the fit sets it per stage).
    prior : PosePrior, optional
        Added to each evaluation's loss (:meth:`PosePrior.penalize`); the fit sets it.
    """

    tracer: Any
    cells: pd.DataFrame
    points: Sequence[CellPoints]
    space: SearchSpace
    metric: Literal["rssi", "rsrp"] = "rssi"
    others: pd.DataFrame | None = None
    metric_config: Any = None
    margin_m: float = 0.0
    objective: Objective = "huber"
    delta_db: float = 6.0
    stage: str = "global"
    evaluations: list[Evaluation] = field(default_factory=list)
    prior: PosePrior | None = None

    def __post_init__(self) -> None:
        from twin.radio.metrics import MetricConfig

        self.metric_config = self.metric_config or MetricConfig()
        first = self.cells.iloc[0]
        self.origin = {"x_m": float(first["x_m"]), "y_m": float(first["y_m"]),
                       "power_dbm": float(first["power_dbm"])}
        self.cell_ids = [int(c) for c in self.cells["cell_id"]]
        fitted = {p.cell_id for p in self.points}
        self._index = {cid: k for k, cid in enumerate(self.cell_ids) if cid in fitted}
        all_xy = np.concatenate([p.xy_m for p in self.points])
        self.grid = self.tracer.window_covering(all_xy, self.margin_m)
        self._other_gain: dict[int, np.ndarray] = {}  # cell -> (n_other, N) fixed path gain [dB]
        self._other_rows: pd.DataFrame = self.cells.iloc[:0]
        if self.metric == "rssi" and self.others is not None and len(self.others):
            freqs = set(self.cells["frequency_hz"].astype(float))
            tol = self.metric_config.carrier_tolerance_hz
            near = self.others["frequency_hz"].astype(float).map(
                lambda f: any(abs(f - g) <= tol for g in freqs))
            self._other_rows = self.others[near.to_numpy()]
            if len(self._other_rows):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # rooftop lifts: reported by the caller
                    maps = self.tracer.radio_maps(self._other_rows, self.grid)  # [n_other, H, W]
                for p in self.points:
                    self._other_gain[p.cell_id] = self.grid.sample(maps, p.xy_m)

    @property
    def n_points(self) -> int:
        return int(sum(len(p.measured) for p in self.points))

    def rows(self, values: Mapping[str, float]) -> pd.DataFrame:
        """The site's cells at the pose ``values``."""
        return self.space.apply(self.cells, values, self.origin)

    def simulate(self, rows: pd.DataFrame) -> dict[int, np.ndarray]:
        """Simulated values at each fitted cell's points for the site at ``rows``: cell -> (N,)."""
        from twin.radio.metrics import compute_metrics

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            gain = self.tracer.radio_maps(rows, self.grid)  # [n_cells, H, W] dB
        key = "rsrp_dbm" if self.metric == "rsrp" else "cell_rssi_dbm"
        out = {}
        for p in self.points:
            k = self._index[p.cell_id]
            pg = self.grid.sample(gain, p.xy_m)  # [n_cells, N]
            power = rows["power_dbm"].to_numpy(np.float64)
            freq = rows["frequency_hz"].to_numpy(np.float64)
            if p.cell_id in self._other_gain:
                pg = np.concatenate([pg, self._other_gain[p.cell_id]])
                power = np.concatenate([power, self._other_rows["power_dbm"].to_numpy(np.float64)])
                freq = np.concatenate([freq, self._other_rows["frequency_hz"].to_numpy(np.float64)])
            # the points as a (N, 1) "map": compute_metrics takes any (C, H, W)
            metrics = compute_metrics(pg[:, :, None], power, freq, self.metric_config)
            out[p.cell_id] = metrics[key][k, :, 0].astype(np.float64)
        return out

    def score(self, simulated: Mapping[int, np.ndarray]) -> Score:
        """The site's :class:`Score` for simulated values (cell -> (N,))."""
        return score_site(simulated, self.points, self.objective, self.delta_db)

    def evaluate(self, values: Mapping[str, float]) -> Evaluation:
        """Trace, sample and score the site at ``values``; the evaluation is recorded."""
        t0 = time.perf_counter()
        sc = self.score(self.simulate(self.rows(values)))
        loss, chi2 = self.prior.penalize(sc.loss, values) if self.prior is not None else (sc.loss, 0.0)
        ev = Evaluation(dict(values), sc.rho, sc.rho_cells, time.perf_counter() - t0, loss, sc.rmse_db,
                        sc.huber_db, sc.offset_db, int(self.tracer.config.samples_per_tx), self.stage, chi2)
        self.evaluations.append(ev)
        return ev

    def __call__(self, unit: Sequence[float]) -> float:
        return self.evaluate(self.space.to_values(unit)).loss
