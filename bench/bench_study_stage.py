"""Benchmark: one training stage of a study plan, in isolation, to size the plan's step budgets.

Run: .venv/bin/python -m bench.bench_study_stage --corpus OUT/A/corpus.zarr --model mlp-unet --steps 80
     [--plan scenes/study_plan.yaml] [--out out/bench-study-stage]

Trains ``--model`` (``posterior``, ``heatmap``, ``mlp-unet``) from scratch on ``--corpus``
(e.g. the ``A/corpus.zarr`` of a finished study) exactly as the study's first stage of a
chain does (:mod:`study.run`, the plan's ``train`` section), with the run's length set to
``--steps`` (``train.total_steps``), and prints one JSON line: steps, wall and CPU seconds
(this process: ``os.times``), per step, the best validation error [m] where the model
reports it, and the load average before and after. Start-up (statistics, probes, prior
crops) is included: time two step counts to separate it from the per-step cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", default=str(Path(__file__).parents[1] / "scenes" / "study_plan.yaml"))
    parser.add_argument("--corpus", required=True, help="a corpus with a spatial split (a study's A/corpus.zarr)")
    parser.add_argument("--model", default="mlp-unet", choices=["posterior", "heatmap", "mlp-unet"])
    parser.add_argument("--steps", type=int, default=80, help="train.total_steps of the run")
    parser.add_argument("--out", default="out/bench-study-stage")
    args = parser.parse_args()
    from study.plan import load_plan
    from study.run import _STAGE_BUILDERS

    plan = load_plan(args.plan)
    key = {"posterior": "posterior_overrides", "heatmap": "heatmap_overrides", "mlp-unet": "unet_overrides"}[args.model]
    over: dict[str, Any] = {k: dict(v) for k, v in getattr(plan.train, key).items()}
    over.setdefault("train", {}).update(total_steps=args.steps, epochs=10_000)
    changes: dict[str, Any] = {key: over}
    train = dataclasses.replace(plan.train, **changes)
    if args.model == "heatmap":  # the plan's keyword keys would override the step budget
        train = dataclasses.replace(train, heatmap_epochs=None, heatmap_max_steps=None)
    plan = dataclasses.replace(plan, train=train)
    out = Path(args.out) / args.model
    out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    t0, c0 = time.perf_counter(), sum(os.times()[:4])
    res = _STAGE_BUILDERS[args.model](plan, Path(args.corpus), None, out, True)
    wall, cpu = time.perf_counter() - t0, sum(os.times()[:4]) - c0
    steps = int(res["steps"])
    print(json.dumps({"model": args.model, "plan": args.plan, "corpus": args.corpus, "steps": steps,
                      "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "wall_per_step_s": round(wall / steps, 3),
                      "cpu_per_step_s": round(cpu / steps, 3),
                      "best_val_mean_m": res.get("best_val_mean_m"), "best_val": res.get("best_val"),
                      "load_before": [round(x, 2) for x in load0],
                      "load_after": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
