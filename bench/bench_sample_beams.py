"""Sampling throughput with SSB beam maps against the same maps without beams (``twin sample``).

    .venv/bin/python -m bench.bench_sample_beams [--beams 4]

Traces the 500 m box scene of ``tests/scenes.py`` (4 m cells) for 4 three-sector sites
(12 tr38901 cells, 2·10^5 rays, max depth 2) with ``--beams`` SSB beams, writes the same
maps without the beam arrays, and times :meth:`twin.corpus.sampler.Sampler.draw` of
20,000 sequences (defaults: T = 20, four features, NR reporting) on one thread, one core,
best of three, in random and drive mode.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beams", type=int, default=4)
    args = ap.parse_args()

    import twin  # noqa: F401 - configures libLLVM
    from tests.scenes import make_box_scene
    from twin.corpus.sampler import SampleConfig, Sampler
    from twin.radio.maps import open_maps, write_maps
    from twin.radio.tracer import TraceConfig, trace
    from twin.scene.build import load_twin_scene

    work = Path(tempfile.mkdtemp(prefix="bench-sample-beams-"))
    scene = load_twin_scene(make_box_scene(work / "scene", half_size_m=250.0, cell_size_m=4.0))
    corners = [(-150.0, -150.0), (150.0, 150.0), (150.0, -150.0), (-150.0, 150.0)]
    sites = [{"bs_id": f"s{s}", "cell_id": 3 * s + k + 1, "x_m": x, "y_m": y, "height_m": 35.0, "azimuth_deg": az,
              "tilt_deg": 6.0, "pattern": "tr38901", "frequency_hz": 1.8e9}
             for s, (x, y) in enumerate(corners) for k, az in enumerate((0.0, 120.0, 240.0))]
    maps = open_maps(trace(scene, sites, work / "beams.zarr",
                           TraceConfig(samples_per_tx=2 * 10**5, max_depth=2, beams=args.beams)))
    arrays = {k: np.asarray(maps.arrays[k]) for k in maps.arrays if not k.startswith("beam_")}
    plain = open_maps(write_maps(work / "plain.zarr", maps.grid, scene, maps.sites, arrays))
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one core
    print(f"load average {os.getloadavg()[0]:.1f}; {len(sites)} cells, grid {scene.grid.height} x {scene.grid.width}")
    print("| mode | maps | sequences/s |\n|---|---|---:|")
    for mode in ("random", "drive"):
        for name, m in (("no beams", plain), (f"{args.beams} beams", maps)):
            sampler = Sampler(scene, m, SampleConfig(mode=mode))
            sampler.draw(2000, np.random.default_rng(0))  # warm-up
            times = []
            for rep in range(3):
                t0 = time.perf_counter()
                sampler.draw(20000, np.random.default_rng(rep))
                times.append(time.perf_counter() - t0)
            best = min(times)
            print(f"| {mode} | {name} | {20000 / best:,.0f} |")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
