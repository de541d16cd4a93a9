"""Posterior model speed: training samples/s, inference latency per sequence, refinement cost.

Run: ``python bench/bench_model.py [--device cpu|cuda] [--configs small,paper]``. Uses
synthetic contract batches (T = 20 events, 4 features, 8 cells with physics maps).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from learn.model import PosteriorModel
from learn.refine import RefineConfig, refine
from learn.train import load_run_config, set_threads
from tests.learn_batch import synthetic_batch


def _batch(b: int, s: int, device: str) -> dict[str, torch.Tensor]:
    batch = synthetic_batch(b=b, t=20, f=4, c=9, s=s, k=8, n_cells=100, seed=0)
    return {k: v.to(device) for k, v in batch.items()}


def bench(name: str, device: str, train_batch: int, steps: int, e2: bool = False) -> dict[str, float]:
    cfg = load_run_config(name)
    s = cfg.data.crop_px
    model_cfg = dataclasses.replace(cfg.model, n_features=4, n_cells=100, map_channels=9, crop_px=s,
                                    use_e2_equivariant=e2)
    torch.manual_seed(0)
    model = PosteriorModel(model_cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = _batch(train_batch, s, device)
    amp = device == "cuda"

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            _, loss = model(batch, batch["target_xy"])
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    train_sps = steps * train_batch / (time.perf_counter() - t)

    model.eval()
    one = _batch(1, s, device)
    with torch.no_grad():
        model(one)
        t = time.perf_counter()
        n = max(steps, 3)
        for _ in range(n):
            out, _ = model(one)
        if device == "cuda":
            torch.cuda.synchronize()
        latency = (time.perf_counter() - t) / n
        big = _batch(train_batch, s, device)
        t = time.perf_counter()
        out, _ = model(big)
        fwd = time.perf_counter() - t
    t = time.perf_counter()
    refine(out.mixture, big, RefineConfig(steps=50, threshold=1.0))
    ref = time.perf_counter() - t
    return {"params_M": model.n_params() / 1e6, "train_samples_per_s": train_sps,
            "latency_ms_per_sequence": latency * 1e3, "refine_50_steps_over_forward": ref / fwd}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", default="small,paper")
    ap.add_argument("--e2", action="store_true", help="Also time the p4m-equivariant map encoder.")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (learn.train.set_threads; 0: all)")
    args = ap.parse_args()
    set_threads(args.threads)
    rows = []
    for name in args.configs.split(","):
        small = name == "small"
        batch, steps = (32, 10) if small else ((8, 2) if args.device == "cpu" else (32, 10))
        rows.append((name, "vit", bench(name, args.device, batch, steps)))
        if args.e2:
            rows.append((name, "e2", bench(name, args.device, batch, max(steps // 2, 1), e2=True)))
    print(f"device {args.device}, torch threads {torch.get_num_threads()}")
    print("| config | map encoder | params [M] | train samples/s | latency / sequence [ms] | refine (50 steps) / forward |")
    print("|---|---|---|---|---|---|")
    for name, enc, r in rows:
        print(f"| {name} | {enc} | {r['params_M']:.2f} | {r['train_samples_per_s']:.1f} | "
              f"{r['latency_ms_per_sequence']:.1f} | {r['refine_50_steps_over_forward']:.1f}x |")


if __name__ == "__main__":
    main()
