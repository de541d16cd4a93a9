"""Cost of NR SSB beams: seconds per cell of the cell maps alone and of the beam maps (``--beams N``).

    .venv/bin/python -m bench.bench_beams [--scene DIR] [--bs-file FILE] [--beams 4 8] [--samples N] [--repeat 2]

Without ``--scene`` it builds the embedded central-Helsinki scene (4 m cells); without
``--bs-file`` it deploys 4 three-sector tr38901 sites at 40 m (12 cells, the demo's
layout). One tracer; each kind of map is compiled on one cell first (Dr.Jit kernels), then
timed ``--repeat`` times, interleaved, the fastest run counting. ``--samples`` fixes the rays per cell, else the default density target
chooses them. Prints seconds per cell for the cell maps and for the beam maps of each
``N``, the ratios, and the median array gain of the best beam over the cell's map.
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
    ap.add_argument("--beams", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=2, help="interleaved timed repeats; the fastest counts")
    args = ap.parse_args()

    import twin  # noqa: F401 - configures libLLVM
    from twin.radio.deployment import deploy
    from twin.radio.tracer import TraceConfig, Tracer
    from twin.scene.build import SceneConfig, build_scene, load_twin_scene

    work = Path(tempfile.mkdtemp(prefix="bench-beams-"))
    scene_dir = Path(args.scene) if args.scene else build_scene(work / "helsinki",
                                                                config=SceneConfig(cell_size_m=4.0)).path
    scene = load_twin_scene(scene_dir)
    sites = args.bs_file or deploy(scene, "random", count=4, sectors=3, pattern="tr38901", azimuth_deg=None,
                                   min_spacing_m=200, seed=0)
    tracer = Tracer(scene, TraceConfig(samples_per_tx=args.samples))
    table = tracer.sites(sites)
    samples = tracer.samples_for(table)
    result: dict[str, object] = {"scene": str(scene_dir), "cells": len(table),
                                 "samples_per_tx": [int(samples.min()), int(samples.max())],
                                 "load_average_start": round(os.getloadavg()[0], 1)}
    tracer.radio_maps(table.iloc[:1])  # compile
    for n in args.beams:
        tracer.beam_maps_with_coverage(table.iloc[:1], n)
    # interleaved repeats, the fastest of each kind: robust to the load of a shared machine
    times: dict[int, list[float]] = {0: [], **{n: [] for n in args.beams}}
    gains: dict[int, np.ndarray] = {}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        cell = tracer.radio_maps(table)
        times[0].append((time.perf_counter() - t0) / len(table))
        for n in args.beams:
            t0 = time.perf_counter()
            beams, _ = tracer.beam_maps_with_coverage(table, n)
            times[n].append((time.perf_counter() - t0) / len(table))
            ok = np.isfinite(cell)
            with np.errstate(all="ignore"):
                gains[n] = (np.nanmax(beams, axis=1) - cell)[ok]
    base = min(times[0])
    result["s_per_cell_cell_maps"] = [round(t, 3) for t in times[0]]
    for n in args.beams:
        result[f"s_per_cell_{n}_beams"] = [round(t, 3) for t in times[n]]
        result[f"ratio_{n}_beams_to_cell_maps (fastest)"] = round(min(times[n]) / base, 2)
        result[f"median_best_beam_gain_db_{n}_beams"] = round(float(np.median(gains[n])), 2)
        result[f"min_best_beam_gain_db_{n}_beams"] = round(float(gains[n].min()), 3)
    result["load_average_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
