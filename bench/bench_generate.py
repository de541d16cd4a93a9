"""Benchmark: `twin generate` with 1 and 2 LocalCluster workers, and a Dataset-C cost model.

Run: PYTHONPATH=$PWD .venv/bin/python -m bench.bench_generate   (prints Markdown for docs/benchmarks.md)

The plan has seed 004's per-patch settings of Dataset C (10 single-sector sites at 40 m,
5,000 UEs, 10^6 rays per transmitter, 3 reflections) on 500 m patches, 2 x 2 of them over
the bundled central-Helsinki extract. Each worker is one process with one thread
(Dr.Jit and torch included). Then one 1 km patch alone gives the cost's growth with the
patch area, and both feed the extrapolation to Dataset C (100 patches of 2.5 x 3.3 km).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATASET_C = {"patches": 100, "cells": 10, "ues": 5000, "area_km2": 2.5 * 3.3}


def bench_plan(out: str, size_m: float, rows: int, cols: int, samples_per_tx: int = 10**6,
               max_depth: int = 3) -> dict[str, Any]:
    return {
        "name": "bench", "output": out, "seed": 0, "ue_per_patch": DATASET_C["ues"],
        "patches": {"size_m": size_m, "rows": rows, "cols": cols},
        "deploy": {"strategy": "random", "count": DATASET_C["cells"], "sectors": 1, "min_spacing_m": 40.0,
                   "height_m": 40.0},
        "trace": {"samples_per_tx": samples_per_tx, "max_depth": max_depth},
        "sample": {"mode": "random"},
    }


def run(plan_dict: dict[str, Any], workers: int) -> Any:
    from twin.generate import generate
    from twin.plan import plan_from_dict

    return generate(plan_from_dict(plan_dict, "bench"), workers=workers, overwrite=True, progress=False)


def steady(records: list[dict[str, Any]], key: str) -> float:
    """Median over shards of a stage's seconds, leaving out each worker's first shard (imports, JIT)."""
    seen, values = set(), []
    for r in sorted(records, key=lambda r: r["shard"]):
        if r["worker"] in seen:
            values.append(r["seconds"][key])
        seen.add(r["worker"])
    values = values or [r["seconds"][key] for r in records]
    return statistics.median(values)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    results: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    for workers in (1, 2):
        s = run(bench_plan(str(tmp / f"w{workers}.zarr"), 500.0, 2, 2), workers)
        assert s.complete, s.lines()
        results[f"w{workers}"] = {
            "wall_s": s.wall_s, "shards_s": s.shards_s, "shards_per_h": s.shards_per_hour,
            "samples_per_s": s.samples_per_s, "records": s.records,
        }
        print(f"{workers} worker(s): " + "; ".join(s.lines()[3:4]), flush=True)
    # the area dependence: one shard of 1 km^2 after a warm-up shard in the same worker
    s = run(bench_plan(str(tmp / "big.zarr"), 1000.0, 1, 1), 1)
    big = s.records[0]["seconds"]
    results["big"] = big
    (tmp / "results.json").write_text(json.dumps(results, indent=2))

    recs = results["w1"]["records"] + results["w2"]["records"]
    per_shard = {k: steady(recs, k) for k in ("scene_s", "deploy_s", "trace_s", "sample_s", "write_s", "total_s")}
    ratio = results["w1"]["shards_s"] / results["w2"]["shards_s"]
    print(f"\nMachine: {results['machine']}, Python {sys.version.split()[0]}; results in {tmp}/results.json\n")
    print("| workers | shards | wall [s] | shards [s] | shards/h | UE samples/s |")
    print("|---|---|---|---|---|---|")
    for w in (1, 2):
        r = results[f"w{w}"]
        print(f"| {w} | 4 | {r['wall_s']:.0f} | {r['shards_s']:.0f} | {r['shards_per_h']:.0f} | {r['samples_per_s']:.1f} |")
    print(f"\nScaling 1 -> 2 workers: {ratio:.2f}x (time of the shards, cluster start excluded)\n")
    print("Per-shard seconds (median, each worker's first shard left out), 0.25 km² patch vs one 1 km² patch:\n")
    print("| stage | 0.25 km² | 1 km² |")
    print("|---|---|---|")
    for k, v in per_shard.items():
        print(f"| {k.removesuffix('_s')} | {v:.1f} | {big[k]:.1f} |")
    # linear in the area through the two measured sizes
    slope = (big["total_s"] - per_shard["total_s"]) / (1.0 - 0.25)
    base = per_shard["total_s"] - 0.25 * slope
    c_shard = base + slope * DATASET_C["area_km2"]
    print(f"\nDataset C patch ({DATASET_C['area_km2']:.2f} km²), extrapolated linearly in the area: "
          f"{c_shard:.0f} s per shard on one CPU thread")
    eff = ratio / 2
    for n in (1, 2, 8, 32):
        hours = DATASET_C["patches"] * c_shard / (n * (eff if n > 1 else 1.0)) / 3600
        print(f"- {n} CPU worker(s): {hours:.1f} h")


if __name__ == "__main__":
    main()
