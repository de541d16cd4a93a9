"""Seed 004's other methods on one corpus: `python -m bench.bench_methods_seed004 [CORPUS] [OUT] [EPOCHS] [NETS] [--reuse]`.

Trains the MLP+UNet (``learn fit-baseline mlp-unet``, small preset) and, with NETS
``mlp-unet,heatmap`` (the default), the heatmap ViT (small preset) for EPOCHS epochs each
(default 1: the preset's warmup-stable-decay schedule compressed into one epoch; a short
run, not a converged model) on the split's train part (default corpus: the demo's, spatial
split), one torch thread. Then judges them under the truth-free default prior (``auto``) and the
seeds' ``truth`` crops beside WkNN (ours and seed 004's settings), k-NN in the square
(both settings), map matching and the prior alone, on the same test part. Prints a Markdown
table for docs/benchmarks.md (known / unknown streets apart), the training times and the
load average. ``--reuse`` judges the runs already in OUT instead of training them again.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from learn.evaluate import EvalResult, evaluate
from learn.heatmap_train import fit_baseline
from learn.priors import resolve_prior
from learn.registry import load_method, make_baseline
from learn.train import set_threads
from twin.corpus.store import open_corpus


def _part(r: EvalResult, name: str) -> str:
    m = r.parts[name]
    return "-" if m["n"] == 0 else f"{m['mean_m']:.1f} / {m['rmse_m']:.1f}"


def main(corpus_path: str = "out/demo/corpus.zarr", out: str = "out/bench_seed004", epochs: int = 1,
         nets: str = "mlp-unet,heatmap", split: str = "spatial", reuse: bool = False) -> None:
    """``reuse``: judge the runs already in ``out`` (``OUT/<name>/best.pt``) instead of training them again."""
    set_threads(1)
    corpus = open_corpus(corpus_path)
    out_dir = Path(out)
    trained: list[tuple[str, str, float]] = []
    for name in [n.strip() for n in nets.split(",") if n.strip()]:
        if reuse and (out_dir / name / "best.pt").is_file():
            from learn.checkpoint import load_checkpoint

            step = load_checkpoint(out_dir / name / "best.pt", kind=None)["step"]
            trained.append((f"{name} (small, {step} steps)", str(out_dir / name / "best.pt"), float("nan")))
            continue
        t0 = time.perf_counter()
        summary = fit_baseline(name, corpus.url, split, out_dir / name, "small", epochs=epochs, overwrite=True)
        seconds = time.perf_counter() - t0
        print(f"{summary}; load average {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
        trained.append((f"{name} (small, {summary.steps} steps)", summary.path, seconds))
    print(f"{corpus_path}, split {split}, {len(corpus.split_indices(split, 'test'))} test samples\n")
    print("| prior | method | mean m | median m | p90 m | RMSE m | known mean / RMSE m | unknown mean / RMSE m "
          "| eval s |")
    print("|---|---|---|---|---|---|---|---|---|")
    methods = [("wknn", lambda: make_baseline("wknn")), ("wknn-seed004", lambda: make_baseline("wknn-seed004")),
               ("knn-square", lambda: make_baseline("knn-square")),
               ("knn-square-seed004", lambda: make_baseline("knn-square-seed004")),
               ("mapmatch", lambda: make_baseline("mapmatch")), ("prior-only", lambda: make_baseline("prior-only")),
               *[(label, lambda p=path: load_method(p)) for label, path, _ in trained]]
    for prior in (resolve_prior("auto"), resolve_prior("truth")):  # one object per prior: its crops computed once
        for label, make in methods:
            if prior.name == "truth" and label.startswith("wknn"):
                continue  # WkNN searches the whole area whatever the prior: one row is enough
            t0 = time.perf_counter()
            r = evaluate(corpus, make(), split, prior=prior)
            a = r.parts["all"]
            print(f"| {r.prior_label or r.prior} | {label} | {a['mean_m']:.1f} | {a['median_m']:.1f} | "
                  f"{a['p90_m']:.1f} | {a['rmse_m']:.1f} | {_part(r, 'known')} | {_part(r, 'unknown')} | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)
    for label, _, seconds in trained:
        print(f"\n{label}: trained in {seconds:.0f} s")
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "out/demo/corpus.zarr", args[1] if len(args) > 1 else "out/bench_seed004",
         int(args[2]) if len(args) > 2 else 1, args[3] if len(args) > 3 else "mlp-unet,heatmap",
         reuse="--reuse" in args[4:])
