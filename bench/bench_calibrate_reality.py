"""Benchmark: `calibrate fit` on a finished study's proxy reality, scored against its hidden truth.

Run: .venv/bin/python -m bench.bench_calibrate_reality --study out/study-s --out out/cal-reality
     [--fit NAME:key=value,key=value ...] [--losses]
Example (the chosen block of bench/study_plan_s.yaml against the plain fit):
     .venv/bin/python -m bench.bench_calibrate_reality --study out/study-s --out out/cal-reality \\
         --fit plain: --fit prior:prior_xy_m=25,prior_h_m=6,prior_azimuth_deg=20,write_offset=true

Reuses the study folder's inputs (no study stage is rerun): the twin's scene
(``scene/scene``), A's training rows (``calibrate/drive_test_train.csv``), the operator's
file and, for scoring only, the truth (``reality/``). Each ``--fit`` is the study plan's
``calibrate`` block with the given keys overridden; per fit it prints the mean |error|
over the sites of position [m], height [m] and azimuth [deg] before (operator's file) and
after, ρ before and after, and the **fidelity gap** (per-cell RSRP RMSE, reality − twin, on
A's rows outside its training samples, the twin traced from the calibrated file with the
study's twin settings, as B′ is; :func:`study.datasets.fidelity_gap`), mean over cells.
``--losses``: the objective at the operator's and the true poses per site under the
plan's settings and with diffraction on (is the truth the optimum?). A summary per fit
is written to ``OUT/NAME/summary.json``; machine load is printed beside the times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml


def _overrides(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def losses_at_poses(study: Path, config: Any) -> list[dict[str, Any]]:
    """Per twin setting and site: the objective [dB] and ρ at the operator's and the true poses."""
    from calibrate.drive_test import read_drive_test
    from calibrate.fit import plan_sites
    from calibrate.objective import SiteObjective
    from twin.radio.sites import read_bs_file
    from twin.radio.tracer import Tracer
    from twin.scene.build import load_twin_scene

    scene = load_twin_scene(study / "scene" / "scene")
    op = read_bs_file(study / "reality" / "operator_bs.csv", scene, on_building=None)
    truth = read_bs_file(study / "reality" / "truth_bs.csv", scene, on_building=None)
    drive = read_drive_test(study / "calibrate" / "drive_test_train.csv", scene, op, config.metric,
                            config.outlier_db)
    todo, _ = plan_sites(op, drive, config.metric, config.min_points)
    rows = []
    for label, cfg in (("plan", config), ("diffraction", replace(config, diffraction=True))):
        tracer = Tracer(scene, cfg.trace_config())
        for bs, pts in todo.items():
            mine = (op["bs_id"] == bs).to_numpy()
            obj = SiteObjective(tracer, op[mine].reset_index(drop=True), pts, cfg.space(), cfg.metric,
                                op[~mine].reset_index(drop=True), None, cfg.margin_m, cfg.objective,
                                cfg.huber_delta_db)
            row: dict[str, Any] = {"setting": label, "bs_id": bs}
            for name, table in (("file", op), ("truth", truth)):
                cells = table[(table["bs_id"] == bs).to_numpy()].reset_index(drop=True)
                e = obj.evaluate(cfg.space().site_values(cells, obj.origin))
                row[name] = {"loss": round(e.loss, 2), "rho": round(e.rho, 3), "seconds": round(e.seconds, 2)}
            rows.append(row)
            print(f"{label:12s} {bs}: file {row['file']['loss']:.2f} (ρ {row['file']['rho']:.3f}), "
                  f"truth {row['truth']['loss']:.2f} (ρ {row['truth']['rho']:.3f})", flush=True)
    return rows


def run_fit(study: Path, out: Path, name: str, config: Any) -> dict[str, Any]:
    """One calibration on the study's inputs, scored against the truth and by the fidelity gap."""
    from calibrate.fit import calibrate
    from study.datasets import calibration_pose_errors, fidelity_gap, training_rows
    from study.plan import load_plan
    from study.run import _twin_trace_config
    from twin.radio.sites import read_bs_file
    from twin.radio.tracer import trace
    from twin.scene.build import load_twin_scene
    from twin.tables import read_drive_test_table

    scene_dir = study / "scene" / "scene"
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    res = calibrate(scene_dir, study / "reality" / "operator_bs.csv", study / "calibrate" / "drive_test_train.csv",
                    folder / "bs.csv", folder / "report", config)
    wall = time.perf_counter() - t0
    drive_test = study / "reality" / "drive_test.csv"
    table, _ = read_drive_test_table(drive_test)
    held = np.setdiff1d(np.arange(len(table)), training_rows(study / "A" / "corpus.zarr"))
    twin_config = _twin_trace_config(load_plan(study / "plan.yaml"))
    gaps = {}
    for label, bs in (("file", study / "reality" / "operator_bs.csv"), ("calibrated", folder / "bs.csv")):
        maps = folder / f"maps_{label}.zarr"
        if label == "file" and (study / "twin_b" / "maps.zarr").exists():
            maps = study / "twin_b" / "maps.zarr"  # the study's own twin of the operator's file
        else:
            trace(scene_dir, bs, maps, twin_config)
        g = fidelity_gap(drive_test, maps, scene_dir, held)
        gaps[label] = {"mean_cell_rmse_db": round(float(np.mean([r["rmse_db"] for r in g])), 2),
                       "mean_abs_bias_db": round(float(np.mean([abs(r["mean_db"]) for r in g])), 2), "cells": g}
    scene = load_twin_scene(scene_dir)
    t, o, c = (read_bs_file(p, scene, on_building=None)
               for p in (study / "reality" / "truth_bs.csv", study / "reality" / "operator_bs.csv", folder / "bs.csv"))
    errs = calibration_pose_errors(t, o, c, [s.summary() for s in res.sites])

    def mean(kind: str, key: str) -> float:
        return round(float(np.mean([abs(e[kind][key]) for e in errs])), 1)

    summary = {"name": name, "wall_s": round(wall, 1), "load": [round(load0, 2), round(os.getloadavg()[0], 2)],
               "calibration": res.summary(), "gap": gaps, "sites": errs,
               "mean_error": {k: {"operator": mean("operator", key), "calibrated": mean("calibrated", key)}
                              for k, key in (("position_m", "position_m"), ("height_m", "height_m"),
                                             ("azimuth_deg", "azimuth_deg"))},
               "power_offset_db": {s.bs_id: s.power_offset_db for s in res.sites}}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary


def main(argv: list[str] | None = None) -> None:
    from study.plan import load_plan

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", required=True, type=Path, help="a study folder with reality/, scene/, A/, calibrate/")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--fit", action="append", default=[],
                   help="NAME:key=value,... overrides of the plan's calibrate block (repeatable)")
    p.add_argument("--losses", action="store_true", help="the objective at the operator's and true poses")
    a = p.parse_args(argv)
    warnings.simplefilter("ignore")
    base = load_plan(a.study / "plan.yaml").calibrate
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    if a.losses:
        losses_at_poses(a.study, base)
    print("| fit | position [m] | height [m] | azimuth [°] | ρ | gap [dB] | wall s (load) |")
    print("|---|---|---|---|---|---|---|")
    for spec in a.fit:
        name, _, text = spec.partition(":")
        s = run_fit(a.study, a.out, name, replace(base, **_overrides(text)))
        m, cal = s["mean_error"], s["calibration"]
        print(f"| {name} | {m['position_m']['operator']} → {m['position_m']['calibrated']} | "
              f"{m['height_m']['operator']} → {m['height_m']['calibrated']} | "
              f"{m['azimuth_deg']['operator']} → {m['azimuth_deg']['calibrated']} | "
              f"{cal['mean_rho_before']} → {cal['mean_rho_after']} | "
              f"{s['gap']['file']['mean_cell_rmse_db']} → {s['gap']['calibrated']['mean_cell_rmse_db']} | "
              f"{s['wall_s']} ({s['load'][0]}–{s['load'][1]}) |", flush=True)


if __name__ == "__main__":
    main()
