"""Benchmark: `calibrate fit` wall time per site on the CPU, and its scaling with drive-test points.

Run: .venv/bin/python -m bench.bench_calibrate [--calls 90] [--points 250,500,1000,2000]
     [--scaling-calls 20]   (prints a Markdown table for docs/benchmarks.md)

One site over the bundled Helsinki scene, a simulated drive test along drivable roads
(σ = 4 dB, 1 dB steps) subsampled to the wanted number of points, the site perturbed by
30 m / 15 m / 45°. The first row is the issue's target case (90 evaluations, about 1,000
points); the scaling rows use fewer evaluations and report the cost per evaluation
(tracing, sampling and ranking) and per GP step (fit and expected improvement)
separately. Scene loading and imports are excluded (a worker pays them once).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def run(calls: int, points: list[int], scaling_calls: int) -> None:
    from calibrate.fit import CalibrationConfig, fit_site, plan_sites
    from calibrate.simulate import simulate_drive_test
    from twin.radio.tracer import TraceConfig, Tracer
    from twin.scene.build import build_scene

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        scene = build_scene(Path(tmp) / "helsinki")
        truth = pd.DataFrame({"bs_id": ["A"], "cell_id": [1], "x_m": [0.0], "y_m": [0.0], "height_m": [40.0],
                              "azimuth_deg": [90.0]})
        sim = Tracer(scene, TraceConfig(samples_per_tx=1_000_000, cell_size_m=4.0, seed=7))
        rows = simulate_drive_test(scene, truth, tracer=sim, spacing_m=2.5, radius_m=400.0, sigma_db=4.0, seed=0)
        wrong = truth.assign(x_m=30.0, height_m=55.0, azimuth_deg=135.0)
        cfg0 = CalibrationConfig()
        tracer = Tracer(scene, cfg0.trace_config())
        table = tracer.sites(wrong)
        dt = read_drive_test_df(rows, scene, table)
        rng = np.random.default_rng(0)
        results = []
        for n, n_calls in [(1000, calls)] + [(n, scaling_calls) for n in points]:
            sub = dt.rows.iloc[np.sort(rng.choice(len(dt.rows), min(n, len(dt.rows)), replace=False))]
            dtn = type(dt)(sub.reset_index(drop=True), dt.dropped, dt.source)
            todo, _ = plan_sites(table, dtn, "rssi", 10)
            cfg = CalibrationConfig(calls=n_calls)
            t0 = time.perf_counter()
            fit = fit_site(tracer, table, todo["A"], cfg, table.iloc[:0], seed=0)
            wall = time.perf_counter() - t0
            per_eval = fit.trace_s / len(fit.evaluations)
            per_gp = (wall - fit.trace_s) / max(1, len(fit.evaluations) - cfg.initial_points - 1)
            results.append((len(sub), n_calls, wall, per_eval, per_gp, fit.rho_before, fit.rho_after))
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; defaults: {CalibrationConfig().samples_per_tx:,} rays per "
          f"evaluation on {CalibrationConfig().cell_size_m:g} m cells.\n")
    print("| points | evaluations | wall per site [s] | per evaluation [s] | per GP step [s] | ρ before → after |")
    print("|---|---|---|---|---|---|")
    for n, c, wall, pe, pg, r0, r1 in results:
        print(f"| {n} | {c} | {wall:.1f} | {pe:.3f} | {pg:.3f} | {r0:.3f} → {r1:.3f} |")


def read_drive_test_df(rows: pd.DataFrame, scene, table):
    from calibrate.drive_test import clean_drive_test

    return clean_drive_test(rows, scene, table, "rssi")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=90)
    p.add_argument("--points", default="250,500,1000,2000")
    p.add_argument("--scaling-calls", type=int, default=20)
    a = p.parse_args(argv or [])
    run(a.calls, [int(v) for v in a.points.split(",")], a.scaling_calls)


if __name__ == "__main__":
    import sys

    start = time.perf_counter()
    main(sys.argv[1:])
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
