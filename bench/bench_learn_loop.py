"""Data loader against model consumption on a real corpus (issue 7's loader benchmark).

Run: ``PYTHONPATH=$PWD .venv/bin/python -m bench.bench_learn_loop [out/demo/corpus.zarr]``.

Measures, for the ``small`` preset (or ``--config``) on the corpus's ``spatial`` train part:

* loader throughput [samples/s] of the training dataset (random crops, map and cell-map
  resampling, normalization) with 0 and 2 DataLoader workers, batches only, no model;
* model consumption [samples/s]: optimizer steps (forward, backward, AdamW) on batches
  already in memory;
* inference latency per sequence (batch of 64, no refinement) and the cost of MAP
  refinement (Algorithm 1, 50 steps, every sample) relative to that forward pass.

The loader keeps up when its throughput exceeds the model's consumption; with ``k``
workers the training loop overlaps both.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from learn.data import build_training_data
from learn.refine import RefineConfig, refine
from learn.train import EpochSampler, _param_groups, build_model, load_run_config, set_threads


def loader_rate(ds, batch: int, workers: int, n_batches: int) -> float:
    ds.set_epoch(0)
    loader = DataLoader(ds, batch_size=batch, sampler=EpochSampler(len(ds), 0, 0), drop_last=True,
                        num_workers=workers)
    it = iter(loader)
    next(it)  # worker start-up and per-process scene loading are not throughput
    t = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return n_batches * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("corpus", nargs="?", default="out/demo/corpus.zarr", help="default: make demo's corpus")
    ap.add_argument("--config", default="small")
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    args = ap.parse_args()
    if not Path(args.corpus).exists():
        print(f"skipped: no corpus at {args.corpus} (run `make demo` first, or name one)")
        return
    threads = set_threads(args.threads)
    cfg = load_run_config(args.config)
    b = cfg.train.batch_size
    train_set, _, info = build_training_data([args.corpus], cfg.data, "spatial", seed=0)
    rates = {w: loader_rate(train_set, b, w, args.batches) for w in (0, 2)}

    torch.manual_seed(0)
    model = build_model(cfg.model, info, cfg.data)
    opt = torch.optim.AdamW(_param_groups(model, 0.01), lr=1e-4)
    batches = list(DataLoader(train_set, batch_size=b, sampler=EpochSampler(len(train_set), 1, 0),
                              drop_last=True))[:4]
    model(batches[0], batches[0]["target_xy"])[1].backward()  # warm-up
    t = time.perf_counter()
    n = 0
    for k in range(args.batches):
        batch = batches[k % len(batches)]
        _, loss = model(batch, batch["target_xy"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += b
    consume = n / (time.perf_counter() - t)

    model.eval()
    big = {k: torch.cat([x[k] for x in batches[:2]]) for k in batches[0]}  # 64 sequences
    with torch.no_grad():
        model(big)
        t = time.perf_counter()
        out, _ = model(big)
        fwd = time.perf_counter() - t
    t = time.perf_counter()
    refine(out.mixture, big, RefineConfig(steps=50, threshold=1.0))
    ref = time.perf_counter() - t
    n_big = len(big["index"])
    print(f"corpus {args.corpus}, config {args.config} (crop {cfg.data.crop_px} px, batch {b}), "
          f"torch threads {threads}, {model.n_params() / 1e6:.2f} M parameters")
    print("| loader 0 workers [samples/s] | loader 2 workers [samples/s] | model training [samples/s] | "
          "inference [ms/sequence] | refinement / forward |")
    print("|---|---|---|---|---|")
    print(f"| {rates[0]:.0f} | {rates[2]:.0f} | {consume:.0f} | {fwd / n_big * 1e3:.2f} | {ref / fwd:.1f}x |")


if __name__ == "__main__":
    main()
