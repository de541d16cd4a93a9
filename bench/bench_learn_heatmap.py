"""Heatmap baseline on the Rome crop set: `python -m bench.bench_learn_heatmap [DATA_DIR] [OUT_DIR] [EPOCHS]`.

Imports the Rome crop CSV (seed 004's Dataset A; default splits), trains the small
heatmap model from scratch on each split's train part (`learn fit-baseline heatmap`
defaults: 64 px over 600 m, 30 epochs, batch 32, peak LR 3e-4), evaluates it on the
test part with `learn.evaluate` next to k-NN in the square (the same crops), and prints
Markdown rows for docs/benchmarks.md with the training time.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from learn.evaluate import evaluate
from learn.heatmap_train import fit_heatmap
from learn.importers import import_rome_crop
from learn.registry import load_method, make_baseline


def _pair(m: dict) -> str:
    return f"{m['mean_m']:.0f} / {m['rmse_m']:.0f} (n={m['n']})" if m["n"] else "-"


_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main(data: Path | None = None, out: Path | None = None, epochs: int = 30) -> None:
    data, out = data or _DEFAULT_DATA, out or Path("out/bench_heatmap")
    out.mkdir(parents=True, exist_ok=True)
    corpus, _ = import_rome_crop(data / "rome_crop" / "rome_crop_knn_ready.csv", out / "crop.zarr", overwrite=True)
    rows = []
    for split in ("spatial", "random"):
        t0 = time.perf_counter()
        summary = fit_heatmap(corpus.url, split, out / f"heatmap_{split}", epochs=epochs, overwrite=True)
        fit_s = time.perf_counter() - t0
        print(summary, file=sys.stderr)
        for name, method in (("heatmap (small)", load_method(summary.path)), ("knn-square", make_baseline("knn-square"))):
            t0 = time.perf_counter()
            r = evaluate(corpus, method, split)
            a, k, u = r.parts["all"], r.parts["known"], r.parts["unknown"]
            note = f"train {fit_s:.0f} s, eval {time.perf_counter() - t0:.1f} s" if name.startswith("heatmap") else ""
            rows.append(f"| Rome crop | {split} | {name} | {a['n']} | {a['mean_m']:.1f} | {a['median_m']:.1f} | "
                        f"{a['p90_m']:.1f} | {a['rmse_m']:.1f} | {_pair(k)} | {_pair(u)} | {note} |")
            print(rows[-1], flush=True)
    print(f"<!-- torch threads {torch.get_num_threads()} -->")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0]) if args else None, Path(args[1]) if len(args) > 1 else None,
         int(args[2]) if len(args) > 2 else 30)
