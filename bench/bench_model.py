"""Posterior model speed: training samples/s, inference latency per sequence, refinement cost.

Run: ``python bench/bench_model.py [--device cpu|cuda] [--configs small,paper]``. Uses
synthetic contract batches (T = 20 events, 4 features, 8 cells with physics maps).

With ``--ckpt run/best.pt --data corpus.zarr`` it times a trained checkpoint on real test
batches instead (crops placed by the truth-free ``auto`` prior, as ``learn eval``): input
preparation (the dataset's crop, maps and likelihood channels; without the physics maps, as
prediction without refinement builds it, and with them, as refinement needs; the first pass
over the sequences includes the loader's one-off scene load, the second is steady state) and
the forward pass per sequence, alone and in batches of 32, and refinement (Algorithm 1) at
the checkpoint's settings and cheaper ones, each as a multiple of the forward pass with its
mean error gain.
Example: ``python -m bench.bench_model --ckpt out/demo/model/best.pt --data out/demo/corpus.zarr``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

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


REFINE_VARIANTS: dict[str, dict[str, Any]] = {"checkpoint": {}, "steps 20": {"steps": 20}, "steps 10": {"steps": 10},
                   "single start": {"multi_start": False}, "single start, steps 20": {"multi_start": False, "steps": 20}}


def bench_checkpoint(ckpt_path: str, data: str, split: str = "spatial", n: int = 256,
                     batch_size: int = 32) -> dict[str, Any]:
    """Times of a trained checkpoint on ``n`` test sequences of ``data`` (evenly spaced over the test part).

    Returns ``prep_ms`` (batches per sequence, without the physics maps; first pass, with
    the loader's scene load), ``prep_ms_warm`` (the same, second pass), ``prep_phys_ms`` and
    ``prep_phys_ms_warm`` (with the physics maps), ``forward_ms_b1`` (batch of one, per
    sequence), ``forward_ms_b32`` (per sequence in batches of ``batch_size``) and ``refine``:
    per variant of :data:`REFINE_VARIANTS`, its time over the batch's forward pass, the share
    of sequences refined and the mean error gain [m] of the refined over the MAP estimate.
    """
    import numpy as np

    from learn.predict import _corpus_loader, load_posterior
    from learn.priors import resolve_prior
    from twin.corpus.store import open_corpus

    model, ckpt = load_posterior(ckpt_path, "cpu")
    corpus = open_corpus(data)
    test = corpus.split_indices(split, "test")
    idx = test[np.linspace(0, len(test) - 1, min(n, len(test))).astype(np.int64)]
    prior = resolve_prior(None).for_corpus(corpus)
    prep: dict[str, float] = {}
    batches: list[dict[str, torch.Tensor]] = []
    for name, physics_maps in (("prep_ms", False), ("prep_phys_ms", True)):
        loader = _corpus_loader(corpus, idx, ckpt, batch_size, 0, prior, physics_maps)
        for suffix in ("", "_warm"):  # the first pass loads the scene (cell maps filled once per loader)
            batches = []  # the last pass's batches freed first: each pass allocates alike
            t = time.perf_counter()
            batches = list(loader)
            prep[name + suffix] = (time.perf_counter() - t) / len(idx) * 1e3
    base = from_dict_refine(ckpt)
    with torch.no_grad():
        model(batches[0])  # warm-up
        one = [{k: (v[i:i + 1] if torch.is_tensor(v) and v.dim() else v) for k, v in batches[0].items()}
               for i in range(len(batches[0]["index"]))]
        t = time.perf_counter()
        for b in one:
            model(b)
        fwd1 = (time.perf_counter() - t) / len(one) * 1e3
        outs, fwd = [], 0.0
        for b in batches:
            t = time.perf_counter()
            out, _ = model(b)
            fwd += time.perf_counter() - t
            outs.append(out.mixture)
    refine(outs[0], batches[0], base)  # warm-up
    refine_rows = {}
    for name, change in REFINE_VARIANTS.items():
        cfg = dataclasses.replace(base, **change)
        spent, gains, applied = 0.0, [], []
        for mix, b in zip(outs, batches, strict=True):
            t = time.perf_counter()
            res = refine(mix, b, cfg)
            spent += time.perf_counter() - t
            size = b["crop_size_m"].double()[:, None]
            err0 = ((mix.map_component().double() - b["target_xy"].double()) * size).norm(dim=1)
            err1 = ((res.xy.double() - b["target_xy"].double()) * size).norm(dim=1)
            gains.append((err0 - err1).numpy())
            applied.append(res.applied.numpy())
        refine_rows[name] = {"over_forward": spent / fwd, "ms_per_sequence": spent / len(idx) * 1e3,
                             "refined_share": float(np.concatenate(applied).mean()),
                             "gain_m": float(np.concatenate(gains).mean()), "steps": cfg.steps,
                             "multi_start": cfg.multi_start}
    return {"n": len(idx), **prep, "forward_ms_b1": fwd1, "forward_ms_b32": fwd / len(idx) * 1e3,
            "refine": refine_rows}


def from_dict_refine(ckpt: dict[str, Any]) -> RefineConfig:
    """The checkpoint's refinement settings (the defaults when it has none)."""
    from twin.config import from_dict

    raw = ckpt["configs"].get("refine")
    return from_dict(RefineConfig, raw, "checkpoint refine config") if raw is not None else RefineConfig()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", default="small,paper")
    ap.add_argument("--e2", action="store_true", help="Also time the p4m-equivariant map encoder.")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (learn.train.set_threads; 0: all)")
    ap.add_argument("--ckpt", help="time this trained checkpoint on real test batches instead (needs --data)")
    ap.add_argument("--data", help="corpus of --ckpt's test sequences")
    ap.add_argument("--split", default="spatial")
    ap.add_argument("--n", type=int, default=256, help="test sequences timed with --ckpt")
    args = ap.parse_args()
    set_threads(args.threads)
    if args.ckpt:
        if not args.data:
            ap.error("--ckpt needs --data")
        cr = bench_checkpoint(args.ckpt, args.data, args.split, args.n)
        print(f"{args.ckpt}: {cr['n']} test sequences ({args.split}, prior auto), torch threads "
              f"{torch.get_num_threads()}")
        print(f"input preparation without / with the physics maps {cr['prep_ms']:.2f} / {cr['prep_phys_ms']:.2f} "
              f"ms/sequence (first pass, with the scene load), {cr['prep_ms_warm']:.2f} / {cr['prep_phys_ms_warm']:.2f} "
              f"ms/sequence (second pass)")
        print(f"forward {cr['forward_ms_b1']:.2f} ms/sequence (batch 1), {cr['forward_ms_b32']:.2f} ms/sequence "
              "(batch 32)")
        print("| refinement | steps | multi-start | time / forward (batch 32) | ms / sequence | refined | gain [m] |")
        print("|---|---|---|---|---|---|---|")
        for name, v in cr["refine"].items():
            print(f"| {name} | {v['steps']} | {v['multi_start']} | {v['over_forward']:.1f}x | "
                  f"{v['ms_per_sequence']:.2f} | {v['refined_share']:.0%} | {v['gain_m']:+.2f} |")
        return
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
