"""Benchmark: seed 004's study end to end (`learn study`) over the bundled Helsinki extract.

Run: .venv/bin/python -m bench.bench_study [--plan scenes/study_plan.yaml] [--out out/bench-study]
     [--scene-dir DIR]   (a built scene instead of building the plan's)

Runs :func:`study.run.run_study` (resumable: rerun the same command to continue), then
prints the Markdown of Table 1 with the machine, its core count and load average, for
docs/benchmarks.md. The figures are those of ``OUT/table/table.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default=str(Path(__file__).parents[1] / "scenes" / "study_plan.yaml"))
    parser.add_argument("--out", default="out/bench-study")
    parser.add_argument("--scene-dir", default=None, help="a built scene directory (skips building the plan's)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    from study.plan import load_plan
    from study.run import run_study

    overrides = {"scene": {"scene_dir": str(Path(args.scene_dir).resolve())}} if args.scene_dir else {}
    plan = load_plan(args.plan, **overrides)
    start = time.perf_counter()
    load_before = os.getloadavg()
    result = run_study(plan, args.out, progress=not args.quiet)
    wall = time.perf_counter() - start
    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average "
          f"{load_before[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; this call {wall:.0f} s wall")
    print(Path(result["paths"]["md"]).read_text())


if __name__ == "__main__":
    main()
