"""Benchmark: `calibrate fit` wall time per site on the CPU, and its scaling with drive-test points.

Run: .venv/bin/python -m bench.bench_calibrate [--calls 90] [--points 250,500,1000,2000]
     [--scaling-calls 20] [--objective huber]   (prints a Markdown table for docs/benchmarks.md)
     .venv/bin/python -m bench.bench_calibrate --truth [--objectives spearman,rmse,huber,combined]
     [--seeds 3,4,5] [--calls 90] [--log truth.jsonl]   (the known-truth error table)

One site over the bundled Helsinki scene, a simulated drive test along drivable roads
(σ = 4 dB, 1 dB steps) subsampled to the wanted number of points, the site perturbed by
30 m / 15 m / 45°. The first row is the issue's target case (90 evaluations, about 1,000
points); the scaling rows use fewer evaluations and report the cost per evaluation
(tracing, sampling and ranking) and per GP step (fit and expected improvement)
separately. Scene loading and imports are excluded (a worker pays them once). "CPU per
site" is the process's CPU time during the fit (every engine thread summed): the cost on
one core, which the load of a shared machine inflates far less than the wall time.

``--truth``: the known-truth table per objective (:mod:`calibrate.known_truth`): per
seed, three sites over Helsinki with a drive test traced by other rays (seed 7, 4 m
cells) and 4 dB noise, the BS file perturbed by 20–40 m, 8–15 m and 30–60°; each
objective fits the perturbed file (``--calls`` evaluations per site) and the result is
scored by its pose errors and by ρ under an independent re-trace (seed 1234, 4 m
cells) against the true sites' ρ under the same re-trace. Each (seed, variant) row is
appended to ``--log`` as JSON as soon as it is done.
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


def run(calls: int, points: list[int], scaling_calls: int, objective: str = "huber") -> None:
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
            cfg = CalibrationConfig(calls=n_calls, objective=objective, profile_steps=0)  # type: ignore[arg-type]
            t0, c0 = time.perf_counter(), time.process_time()
            fit = fit_site(tracer, table, todo["A"], cfg, table.iloc[:0], seed=0)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            per_eval = fit.trace_s / len(fit.evaluations)
            per_gp = (wall - fit.trace_s) / max(1, len(fit.evaluations) - cfg.initial_points - 1)
            results.append((len(sub), n_calls, wall, cpu, per_eval, per_gp, fit.rho_before, fit.rho_after))
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}; defaults: {CalibrationConfig().samples_per_tx:,} rays per "
          f"evaluation on {CalibrationConfig().cell_size_m:g} m cells; objective {objective}.\n")
    print("| points | evaluations | wall per site [s] | CPU per site [s] | per evaluation [s] | per GP step [s] "
          "| ρ before → after |")
    print("|---|---|---|---|---|---|---|")
    for n, c, wall, cpu, pe, pg, r0, r1 in results:
        print(f"| {n} | {c} | {wall:.1f} | {cpu:.1f} | {pe:.3f} | {pg:.3f} | {r0:.3f} → {r1:.3f} |")


VARIANTS = {  # name -> CalibrationConfig overrides (besides the objective)
    "plain": {},
    "refine": {"refine_calls": 30},
    "refine+recheck": {"refine_calls": 25, "recheck_top": 5},
    "prior15": {"height_prior_m": 15.0},
}


def run_truth(objectives: list[str], seeds: list[int], calls: int, variants: list[str], log: Path | None) -> None:
    """The known-truth error table: per objective (and search variant), mean errors over seeds and sites."""
    import json

    from calibrate.fit import CalibrationConfig, calibrate
    from calibrate.known_truth import RETRACE_SEED, make_case, pose_errors, retrace_rho
    from twin.radio.tracer import TraceConfig, Tracer
    from twin.scene.build import build_scene

    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scene = build_scene(Path(tmp) / "helsinki")
        drive_tracer = Tracer(scene, TraceConfig(samples_per_tx=1_000_000, cell_size_m=4.0, seed=7))
        retracer = Tracer(scene, TraceConfig(samples_per_tx=1_000_000, cell_size_m=4.0, seed=RETRACE_SEED))
        fit_tracer_cfg = CalibrationConfig().trace_config()
        for seed in seeds:
            case = make_case(scene, seed, tracer=drive_tracer)
            rho_true = retrace_rho(scene, case.truth, case.drive, tracer=retracer)
            rho_file = retrace_rho(scene, case.perturbed, case.drive, tracer=retracer)
            err0 = pose_errors(case.perturbed, case.truth)
            case.drive.to_csv(Path(tmp) / f"dt{seed}.csv", index=False)
            case.perturbed.to_csv(Path(tmp) / f"bs{seed}.csv", index=False)
            for variant in variants:
                for objective in objectives:
                    cfg = CalibrationConfig(calls=calls, objective=objective, profile_steps=0,  # type: ignore[arg-type]
                                            **VARIANTS[variant])
                    t0 = time.perf_counter()
                    res = calibrate(scene, Path(tmp) / f"bs{seed}.csv", Path(tmp) / f"dt{seed}.csv", config=cfg,
                                    trace_config=fit_tracer_cfg)
                    wall = time.perf_counter() - t0
                    err = pose_errors(res.table, case.truth)
                    rho = retrace_rho(scene, res.table, case.drive, tracer=retracer)
                    row = {"seed": seed, "variant": variant, "objective": objective, "calls": calls,
                           "wall_per_site_s": wall / len(case.truth),
                           "lateral_m": err["lateral_m"].round(1).tolist(),
                           "height_m": err["height_m"].round(1).tolist(),
                           "azimuth_deg": err["azimuth_deg"].round(1).tolist(),
                           "lateral0_m": err0["lateral_m"].round(1).tolist(),
                           "height0_m": err0["height_m"].round(1).tolist(),
                           "azimuth0_deg": err0["azimuth_deg"].round(1).tolist(),
                           "rho_retrace": [round(rho[b], 4) for b in case.truth["bs_id"]],
                           "rho_retrace_true": [round(rho_true[b], 4) for b in case.truth["bs_id"]],
                           "rho_retrace_file": [round(rho_file[b], 4) for b in case.truth["bs_id"]],
                           "heights_true_m": case.truth["height_m"].tolist(),
                           "heights_fit_m": res.table["height_m"].round(1).tolist()}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if log is not None:
                        with open(log, "a") as fh:
                            fh.write(json.dumps(row) + "\n")
    print(truth_table(rows))


def truth_table(rows: list[dict]) -> str:
    """Markdown: per (variant, objective), mean errors over every seed and site, ρ ratio to the truth's."""
    out = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
           f"{os.getloadavg()[0]:.1f}.\n",
           "| search | objective | seeds | lateral [m] | height [m] | azimuth [°] | ρ re-trace (fit / true) "
           "| ratio | s per site |", "|---|---|---|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r["variant"], r["objective"]) for r in rows))
    for variant, objective in keys:
        rs = [r for r in rows if (r["variant"], r["objective"]) == (variant, objective)]

        def mean(name: str, rs: list[dict] = rs) -> float:
            return float(np.mean([v for r in rs for v in r[name]]))

        ratio = mean("rho_retrace") / mean("rho_retrace_true")
        out.append(f"| {variant} | {objective} | {','.join(str(r['seed']) for r in rs)} | "
                   f"{mean('lateral0_m'):.1f} → **{mean('lateral_m'):.1f}** | "
                   f"{mean('height0_m'):.1f} → **{mean('height_m'):.1f}** | "
                   f"{mean('azimuth0_deg'):.1f} → **{mean('azimuth_deg'):.1f}** | "
                   f"{mean('rho_retrace'):.3f} / {mean('rho_retrace_true'):.3f} | {ratio:.3f} | "
                   f"{np.mean([r['wall_per_site_s'] for r in rs]):.1f} |")
    return "\n".join(out)


def read_drive_test_df(rows: pd.DataFrame, scene, table):
    from calibrate.drive_test import clean_drive_test

    return clean_drive_test(rows, scene, table, "rssi")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=90)
    p.add_argument("--points", default="250,500,1000,2000")
    p.add_argument("--scaling-calls", type=int, default=20)
    p.add_argument("--objective", default="huber")
    p.add_argument("--truth", action="store_true", help="the known-truth error table instead")
    p.add_argument("--objectives", default="spearman,rmse,huber,combined")
    p.add_argument("--variants", default="plain", help=f"search variants: {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="3,4,5")
    p.add_argument("--log", type=Path, default=None, help="append each row as JSON here")
    p.add_argument("--table", type=Path, default=None, help="only print the table of a --log file")
    a = p.parse_args(argv or [])
    if a.table is not None:
        import json

        print(truth_table([json.loads(line) for line in a.table.read_text().splitlines() if line.strip()]))
    elif a.truth:
        run_truth(a.objectives.split(","), [int(v) for v in a.seeds.split(",")], a.calls, a.variants.split(","),
                  a.log)
    else:
        run(a.calls, [int(v) for v in a.points.split(",")], a.scaling_calls, a.objective)


if __name__ == "__main__":
    import sys

    start = time.perf_counter()
    main(sys.argv[1:])
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
