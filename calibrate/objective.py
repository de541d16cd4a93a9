"""The calibration objective: −Spearman ρ between simulated and measured values of one site.

One evaluation moves/turns the site's cells to a candidate pose, re-traces only those
cells over the smallest radio-map window that covers the site's drive-test points
(``Tracer.cell_map_covering``'s window, fixed for the whole fit), samples the maps at
the points and ranks them against the measurements. On the CPU a radio map is far
cheaper than per-receiver path solving (DESIGN.md: 1,000 receivers by ``PathSolver``
at 10^5 samples took 43 s; a window map takes a fraction of a second).

Simulated values are what the drive test reports, through :func:`twin.radio.metrics.compute_metrics`:

- ``rsrp``: the cell's RSRP, a function of its own path gain only;
- ``rssi``: the RSSI of the cell's carrier, i.e. the cell's power plus that of every
  *other* cell of the BS file on the same carrier (held fixed at their file poses and
  traced once over the window) plus noise, as a UE measures it.

A point where the candidate's rays do not arrive has no simulated value: it ranks
below every received point (a pose that leaves measured points dark is penalized,
never rewarded by a smaller sample). A cell whose simulated values are all equal
scores ρ = 0. The site's ρ is the mean of its cells' ρ weighted by their point counts.
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

__all__ = ["CellPoints", "Evaluation", "SiteObjective", "spearman"]


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


@dataclass
class Evaluation:
    """One objective evaluation: the candidate, its score and its cost."""

    values: dict[str, float]
    rho: float                      # the site's weighted ρ
    rho_cells: dict[int, float]     # per cell
    seconds: float


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


@dataclass
class SiteObjective:
    """``f(unit point) -> −ρ`` for one site, with its evaluations recorded.

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
    """

    tracer: Any
    cells: pd.DataFrame
    points: Sequence[CellPoints]
    space: SearchSpace
    metric: Literal["rssi", "rsrp"] = "rssi"
    others: pd.DataFrame | None = None
    metric_config: Any = None
    margin_m: float = 0.0
    evaluations: list[Evaluation] = field(default_factory=list)

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

    def score(self, simulated: Mapping[int, np.ndarray]) -> tuple[float, dict[int, float]]:
        """The site's weighted ρ and each cell's ρ."""
        rho_cells = {p.cell_id: spearman(simulated[p.cell_id], p.measured) for p in self.points}
        n = np.array([len(p.measured) for p in self.points], np.float64)
        rho = float(np.dot(n, [rho_cells[p.cell_id] for p in self.points]) / n.sum())
        return rho, rho_cells

    def evaluate(self, values: Mapping[str, float]) -> Evaluation:
        """Trace, sample and score the site at ``values``; the evaluation is recorded."""
        t0 = time.perf_counter()
        rho, rho_cells = self.score(self.simulate(self.rows(values)))
        ev = Evaluation(dict(values), rho, rho_cells, time.perf_counter() - t0)
        self.evaluations.append(ev)
        return ev

    def __call__(self, unit: Sequence[float]) -> float:
        return -self.evaluate(self.space.to_values(unit)).rho
