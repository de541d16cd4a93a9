"""Benchmark: `twin generate` with 1 and 2 LocalCluster workers, and a Dataset-C cost model.

Run: PYTHONPATH=$PWD .venv/bin/python -m bench.bench_generate   (prints Markdown for docs/benchmarks.md)

The plan has seed 004's per-patch settings of Dataset C (10 single-sector sites at 40 m,
5,000 UEs, 10^6 rays per transmitter, 3 reflections) on 400 m patches, 4 x 2 of them over
the bundled central-Helsinki extract. Each worker is one process with one thread
(Dr.Jit and torch included). Two 800 m patches on one worker (the second one warm) then
give the cost's growth with the patch area; both feed the extrapolation to Dataset C
(100 patches of 2.5 x 3.3 km).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

DATASET_C = {"patches": 100, "cells": 10, "ues": 5000, "area_km2": 2.5 * 3.3}
ROWS, COLS = 4, 2  # 8 patches of 400 m over the 1.06 x 1.63 km Helsinki extract


def bench_plan(out: str, size_m: float, rows: int, cols: int, samples_per_tx: int = 10**6,
               max_depth: int = 3, osm_file: str | None = None) -> dict[str, Any]:
    return {
        "name": "bench", "output": out, "seed": 0, "ue_per_patch": DATASET_C["ues"],
        "region": {"osm_file": osm_file},
        "patches": {"size_m": size_m, "rows": rows, "cols": cols},
        "deploy": {"strategy": "random", "count": DATASET_C["cells"], "sectors": 1, "min_spacing_m": 40.0,
                   "height_m": 40.0},
        "trace": {"samples_per_tx": samples_per_tx, "max_depth": max_depth},
        "sample": {"mode": "random"},
    }


def run(plan_dict: dict[str, Any], workers: int | None = None, scheduler: str | None = None) -> Any:
    from twin.generate.plan import plan_from_dict
    from twin.generate.run import generate

    return generate(plan_from_dict(plan_dict, "bench"), workers=workers, scheduler=scheduler, overwrite=True,
                    progress=False)


def steady(records: list[dict[str, Any]], key: str) -> float:
    """Median over shards of a stage's seconds, leaving out each worker's first shard (imports, JIT)."""
    seen, values = set(), []
    for r in sorted(records, key=lambda r: r["started_unix"]):
        if r["worker"] in seen:
            values.append(r["seconds"][key])
        seen.add(r["worker"])
    return statistics.median(values or [r["seconds"][key] for r in records])


def warm_rate(records: list[dict[str, Any]]) -> float:
    """Shards per second once every worker is warm: from the last first-shard end to the last end."""
    first_end: dict[str, float] = {}
    for r in records:
        first_end[r["worker"]] = min(first_end.get(r["worker"], r["finished_unix"]), r["finished_unix"])
    t0 = max(first_end.values())
    later = [r for r in records if r["finished_unix"] > t0]
    t1 = max(r["finished_unix"] for r in records)
    return len(later) / (t1 - t0) if later and t1 > t0 else float("nan")


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    results: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    for workers in (1, 2):
        load0 = os.getloadavg()[0]
        s = run(bench_plan(str(tmp / f"w{workers}.zarr"), 400.0, ROWS, COLS), workers)
        assert s.complete, s.lines()
        results[f"w{workers}"] = {
            "wall_s": s.wall_s, "shards_s": s.shards_s, "shards_per_h": s.shards_per_hour,
            "samples_per_s": s.samples_per_s, "warm_shards_per_s": warm_rate(s.records),
            "load_avg": [load0, os.getloadavg()[0]], "records": s.records,
        }
        print(f"{workers} worker(s): " + "; ".join(s.lines()[3:4]), flush=True)
    # the area dependence, on one warm worker: an 800 m Helsinki patch, a 2.19 km patch of test.osm.pbf
    from distributed import Client, LocalCluster

    from scenes import test_osm_file

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as lc, Client(lc):
        run(bench_plan(str(tmp / "warm.zarr"), 400.0, 1, 1), scheduler=lc.scheduler_address)
        s = run(bench_plan(str(tmp / "mid.zarr"), 800.0, 1, 1), scheduler=lc.scheduler_address)
        results["mid"] = {**s.records[0]["seconds"], "area_km2": 0.64, "buildings": s.records[0]["n_buildings"]}
        s = run(bench_plan(str(tmp / "big.zarr"), 2190.0, 1, 1, osm_file=str(test_osm_file())),
                scheduler=lc.scheduler_address)
        results["big"] = {**s.records[0]["seconds"], "area_km2": 2.19**2, "buildings": s.records[0]["n_buildings"]}
    (tmp / "results.json").write_text(json.dumps(results, indent=2))
    report(results, tmp)


def report(results: dict[str, Any], tmp: Path) -> None:
    import numpy as np

    mid, big = results["mid"], results["big"]
    n = ROWS * COLS
    recs = results["w1"]["records"] + results["w2"]["records"]
    keys = ("scene_s", "deploy_s", "trace_s", "sample_s", "write_s", "total_s", "cpu_s")
    per_shard = {k: steady(recs, k) for k in keys}
    ratio = results["w1"]["shards_s"] / results["w2"]["shards_s"]
    warm = results["w2"]["warm_shards_per_s"] / results["w1"]["warm_shards_per_s"]
    print(f"\nMachine: {results['machine']}, Python {sys.version.split()[0]}; raw results in {tmp}/results.json\n")
    print("| workers | shards | wall [s] | shards [s] | shards/h | UE samples/s | warm shards/h | load avg |")
    print("|---|---|---|---|---|---|---|---|")
    for w in (1, 2):
        r = results[f"w{w}"]
        print(f"| {w} | {n} | {r['wall_s']:.0f} | {r['shards_s']:.0f} | {r['shards_per_h']:.0f} | "
              f"{r['samples_per_s']:.0f} | {3600 * r['warm_shards_per_s']:.0f} | "
              f"{r['load_avg'][0]:.1f}-{r['load_avg'][1]:.1f} |")
    print(f"\nScaling 1 -> 2 workers: {ratio:.2f}x over the shards' time, {warm:.2f}x once warm\n")
    print("Per-shard seconds on a warm worker (wall; cpu = the worker's CPU time), by patch area:\n")
    print(f"| stage | 0.16 km² (median of {n}) | 0.64 km² ({mid['buildings']} bldg) | "
          f"{big['area_km2']:.2f} km² ({big['buildings']} bldg) |")
    print("|---|---|---|---|")
    for k in keys:
        print(f"| {k.removesuffix('_s')} | {per_shard[k]:.1f} | {mid[k]:.1f} | {big[k]:.1f} |")
    area = np.array([0.16, 0.64, big["area_km2"]])
    cpu = np.array([per_shard["cpu_s"], mid["cpu_s"], big["cpu_s"]])
    slope, base = np.polyfit(area, cpu, 1)
    c_shard = base + slope * DATASET_C["area_km2"]
    print(f"\nCPU seconds per shard, least squares in the area: {base:.1f} s + {slope:.2f} s/km²; "
          f"a Dataset C patch ({DATASET_C['area_km2']:.2f} km²): {c_shard:.0f} s on one CPU thread")
    for workers in (1, 2, 8, 32):
        hours = DATASET_C["patches"] * c_shard / workers / 3600
        print(f"- {workers} CPU worker(s), ideal scaling: {hours:.2f} h")


if __name__ == "__main__":
    main()
