"""Benchmark ``twin trace``: time per cell, and its wall time over the bare solver calls.

    .venv/bin/python -m bench.bench_trace [--scene DIR | --fixture-city] [--cells 10] [--samples 1000000]

Without ``--scene`` it builds the embedded central-Helsinki scene (4 m cells);
``--fixture-city`` uses the box city of ``tests/scenes.py`` (1 km x 1 km, 100 blocks). The bare time is measured twice: by the tracer itself (the
seconds spent inside ``RadioMapSolver`` calls and their read-back) and by a separate
minimal Sionna script making the same call in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE = r"""
import sys, time, json
import pandas as pd
import twin
from twin.engine import sionna_rt
from twin.geo import Grid
from twin.radio.tracer import sionna_orientation
rt = sionna_rt()
scene_dir, bs_file, samples = sys.argv[1], sys.argv[2], int(sys.argv[3])
meta = json.load(open(scene_dir + "/scene.json"))
g = Grid.from_dict(meta["grid"])
t = pd.read_csv(bs_file)
sc = rt.load_scene(scene_dir + "/scene.xml")
sc.frequency = float(t.frequency_hz[0]); sc.bandwidth = float(t.bandwidth_hz[0])
sc.tx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern=t.pattern[0], polarization="V")
sc.rx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern="iso", polarization="V")
for k, r in t.iterrows():
    sc.add(rt.Transmitter(f"tx{k}", position=[r.x_m, r.y_m, r.height_m],
                          orientation=list(sionna_orientation(r.azimuth_deg, r.tilt_deg))))
cs = g.cell_size_m; cx, cy = g.center_m
t0 = time.perf_counter()
rm = rt.RadioMapSolver()(sc, center=[cx, cy, 1.5], orientation=[0, 0, 0],
                         size=[(g.width - 0.5) * cs, (g.height - 0.5) * cs], cell_size=[cs, cs],
                         samples_per_tx=samples, max_depth=3, diffuse_reflection=True)
pg = rm.path_gain.numpy()
print(json.dumps({"bare_solver_s": time.perf_counter() - t0, "shape": list(pg.shape)}))
"""


def _bare(scene_dir: Path, bs_file: Path, samples: int) -> float:
    """Seconds of the bare RadioMapSolver call (and read-back) in a fresh process."""
    out = subprocess.run([sys.executable, "-c", BARE, str(scene_dir), str(bs_file), str(samples)], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    return float(json.loads(out.stdout.strip().splitlines()[-1])["bare_solver_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", help="scene directory (default: central Helsinki, built here)")
    ap.add_argument("--fixture-city", action="store_true", help="the box city of tests/scenes.py")
    ap.add_argument("--cells", type=int, default=10)
    ap.add_argument("--samples", type=int, default=10**6)
    ap.add_argument("--cell-size", type=float, default=4.0)
    args = ap.parse_args()

    import twin  # noqa: F401 - configures libLLVM
    from tests.scenes import city_boxes, make_box_scene
    from twin.radio.deployment import deploy
    from twin.radio.sites import write_bs_file
    from twin.radio.tracer import TraceConfig, Tracer, trace
    from twin.scene.build import build_scene, load_twin_scene

    work = Path(tempfile.mkdtemp(prefix="bench-trace-"))
    if args.scene:
        scene_dir = Path(args.scene)
    elif args.fixture_city:
        scene_dir = make_box_scene(work / "city", half_size_m=500.0, cell_size_m=args.cell_size,
                                   boxes=city_boxes(500.0), name="city")
    else:
        from twin.scene.build import SceneConfig

        scene_dir = build_scene(work / "helsinki", config=SceneConfig(cell_size_m=args.cell_size)).path
    scene = load_twin_scene(scene_dir)
    sites = deploy(scene, "random", count=args.cells, sectors=1, pattern="tr38901", azimuth_deg=None,
                   min_spacing_m=60, seed=0)
    write_bs_file(sites, work / "bs.csv", scene)

    from twin.engine import sionna_rt

    sionna_rt()  # the import (about 2 s) is paid by any Sionna program, the bare one too
    cfg = TraceConfig(samples_per_tx=args.samples, cell_size_m=args.cell_size)
    bare_before = _bare(scene_dir, work / "bs.csv", args.samples)
    t0 = time.perf_counter()
    tracer = Tracer(scene, cfg)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trace(scene, sites, work / "maps.zarr", metrics=False, tracer=tracer)
    wall = time.perf_counter() - t0
    solver_s = tracer.solver_s

    t0 = time.perf_counter()
    trace(scene, sites, work / "maps-metrics.zarr", metrics=True, tracer=tracer)
    wall_metrics = time.perf_counter() - t0
    bare_after = _bare(scene_dir, work / "bs.csv", args.samples)
    bare = {"bare_solver_s": (bare_before + bare_after) / 2}
    grid = tracer.grid
    result = {
        "scene": str(scene_dir), "grid": f"{grid.height}x{grid.width} @ {grid.cell_size_m:g} m",
        "cells": args.cells, "samples_per_tx": args.samples,
        "scene_load_s (once per process)": round(load_s, 2),
        "trace_wall_s (scene loaded)": round(wall, 2), "solver_s_inside_trace": round(solver_s, 2),
        "bare_solver_s_fresh_process": [round(bare_before, 2), round(bare_after, 2)],
        "s_per_cell": round(wall / args.cells, 2),
        "ratio_wall_to_own_solver": round(wall / solver_s, 3),
        "ratio_wall_plus_load_to_own_solver": round((wall + load_s) / solver_s, 3),
        "ratio_wall_to_bare_script": round(wall / bare["bare_solver_s"], 3),
        "trace_with_metrics_wall_s (scene reused, sionna.sys warm-up included)": round(wall_metrics, 2),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
