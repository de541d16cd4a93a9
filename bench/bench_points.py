"""Point evaluation: bilinear samples of the radio maps against ``PathSolver`` at the same points.

    PYTHONPATH=. python bench/bench_points.py [--scene DIR] [--points 300] [--cells 3]

Without ``--scene`` it uses the fixture city of ``tests/scenes.py``. Points are drawn
outdoors at least 50 m from every site. Prints the per-point differences (map minus
paths, dB): median, p90 of the absolute difference, the median signed bias, and
the times of both methods.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene")
    ap.add_argument("--points", type=int, default=300)
    ap.add_argument("--cells", type=int, default=3)
    ap.add_argument("--samples", type=int, default=10**6)
    ap.add_argument("--cell-size", type=float, default=4.0)
    ap.add_argument("--max-depth", type=int, default=3)
    args = ap.parse_args()

    import twin  # noqa: F401
    from tests.scenes import city_boxes, make_box_scene
    from twin.radio.deployment import deploy
    from twin.radio.tracer import TraceConfig, Tracer
    from twin.scene.build import load_twin_scene

    work = Path(tempfile.mkdtemp(prefix="bench-points-"))
    scene_dir = Path(args.scene) if args.scene else make_box_scene(
        work / "city", half_size_m=500.0, cell_size_m=args.cell_size, boxes=city_boxes(500.0), name="city")
    scene = load_twin_scene(scene_dir)
    sites = deploy(scene, "random", count=args.cells, sectors=1, pattern="tr38901", azimuth_deg=None,
                   min_spacing_m=100, seed=0)
    rng = np.random.default_rng(1)
    x0, y0, x1, y1 = scene.grid.extent_m
    cand = rng.uniform([x0 + 20, y0 + 20], [x1 - 20, y1 - 20], size=(20 * args.points, 2))
    far = np.min(np.hypot(*(cand[:, None] - sites[["x_m", "y_m"]].to_numpy()[None]).transpose(2, 0, 1)), axis=1) > 50
    xy = cand[scene.is_outdoor(cand) & far][: args.points]

    tracer = Tracer(scene, TraceConfig(samples_per_tx=args.samples, max_depth=args.max_depth,
                                       cell_size_m=args.cell_size))
    t0 = time.perf_counter()
    maps = tracer.radio_maps(sites)  # [C, H, W]
    t_map = time.perf_counter() - t0
    by_map = tracer.grid.sample(maps, xy)  # [C, N]
    t0 = time.perf_counter()
    by_paths = tracer.path_gain_at_points(sites, xy)  # [C, N]
    t_paths = time.perf_counter() - t0
    both = np.isfinite(by_map) & np.isfinite(by_paths)
    diff = (by_map - by_paths)[both]
    print(json.dumps({
        "scene": str(scene_dir), "points": int(len(xy)), "cells": args.cells, "samples": args.samples,
        "cell_size_m": args.cell_size, "max_depth": args.max_depth,
        "map_nan_fraction": round(float(np.isnan(maps).mean()), 3),
        "pairs_compared": int(both.sum()), "map_only": int((np.isfinite(by_map) & ~np.isfinite(by_paths)).sum()),
        "paths_only": int((~np.isfinite(by_map) & np.isfinite(by_paths)).sum()),
        "median_abs_db": round(float(np.median(np.abs(diff))), 2),
        "p90_abs_db": round(float(np.percentile(np.abs(diff), 90)), 2),
        "median_signed_db": round(float(np.median(diff)), 2),
        "map_s": round(t_map, 2), "paths_s": round(t_paths, 2),
    }, indent=1))


if __name__ == "__main__":
    main()
