"""Cost of diffuse scattering: time per cell of the radio maps with diffuse reflection on and off.

    .venv/bin/python -m bench.bench_diffuse [--scene DIR] [--bs-file FILE] [--cells 10] [--samples 1000000]

Without ``--scene`` it uses the box city of ``tests/scenes.py`` (1 km x 1 km, 100
blocks); without ``--bs-file`` it deploys ``--cells`` random tr38901 cells at 40 m.
Both tracers share the scene, the rays and the seed; each is timed on a second call
(the first compiles Dr.Jit kernels). Prints seconds per cell, the on/off ratio and
the share of outdoor pixels that caught a ray in each case.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene")
    ap.add_argument("--bs-file")
    ap.add_argument("--cells", type=int, default=10)
    ap.add_argument("--samples", type=int, default=10**6)
    ap.add_argument("--max-depth", type=int, default=3)
    args = ap.parse_args()

    import twin  # noqa: F401 - configures libLLVM
    from tests.scenes import city_boxes, make_box_scene
    from twin.radio.deployment import deploy
    from twin.radio.tracer import TraceConfig, Tracer
    from twin.scene.build import load_twin_scene

    work = Path(tempfile.mkdtemp(prefix="bench-diffuse-"))
    scene_dir = Path(args.scene) if args.scene else make_box_scene(
        work / "city", half_size_m=500.0, cell_size_m=4.0, boxes=city_boxes(500.0), name="city")
    scene = load_twin_scene(scene_dir)
    sites = args.bs_file or deploy(scene, "random", count=args.cells, sectors=1, pattern="tr38901",
                                   azimuth_deg=None, min_spacing_m=60, seed=0)
    outdoor = scene.layers["building_mask"] == 0
    result: dict[str, object] = {"scene": str(scene_dir), "samples_per_tx": args.samples,
                                 "max_depth": args.max_depth, "load_average": round(os.getloadavg()[0], 1)}
    times = {}
    for diffuse in (True, False):
        tracer = Tracer(scene, TraceConfig(samples_per_tx=args.samples, max_depth=args.max_depth,
                                           diffuse_reflection=diffuse))
        table = tracer.sites(sites)
        tracer.radio_maps(table.iloc[:1])  # compile
        t0 = time.perf_counter()
        pg = tracer.radio_maps(table)
        times[diffuse] = (time.perf_counter() - t0) / len(table)
        key = "on" if diffuse else "off"
        result[f"s_per_cell_diffuse_{key}"] = round(times[diffuse], 3)
        result[f"outdoor_pixels_heard_diffuse_{key}"] = round(float(np.isfinite(pg[:, outdoor]).mean()), 4)
    result["cells"] = len(table)
    result["ratio_on_to_off"] = round(times[True] / times[False], 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
