"""Every method under every prior: `python -m bench.bench_priors [CORPUS] [CKPT] [SPLIT] [PRIORS]`.

Default: the demo's corpus and posterior model (``make demo``: out/demo/corpus.zarr,
out/demo/model/best.pt), spatial split. For each prior (the truth-free default ``auto``,
``serving-cell``, ``coarse``, ``whole`` and the seeds' ``truth``) it judges the prior alone
(``prior-only``), k-NN in the square, map matching and the checkpoint (crop-based: not
under ``whole``), with WkNN (whole area) as the reference, and times each run (fits
included: throughput in test samples per second). Prints a Markdown table (docs/benchmarks.md)
with seed 004's parts beside the whole test part: *known* streets (test samples whose street
or block holds training samples) and *unknown* streets (held out whole), "-" for an empty part.
PRIORS (comma-separated, default all five) runs only those.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from learn.evaluate import EvalResult, evaluate
from learn.priors import CropPrior
from learn.registry import make_baseline
from learn.splits import known_street_mask
from twin import io
from twin.corpus.store import open_corpus

ALL_PRIORS = ("auto", "serving-cell", "coarse", "whole", "truth")


def _part(r: EvalResult, name: str) -> str:
    m = r.parts[name]
    return "-" if m["n"] == 0 else f"{m['mean_m']:.1f} / {m['median_m']:.1f}"


def _row(label: str, inside: str, method: str, r: EvalResult, seconds: float) -> str:
    a = r.parts["all"]
    return (f"| {label} | {inside} | {method} | {a['mean_m']:.1f} | {a['median_m']:.1f} | {a['p90_m']:.1f} | "
            f"{_part(r, 'known')} | {_part(r, 'unknown')} | {len(r.indices) / seconds:.0f} |")


def main(corpus_path: str = "out/demo/corpus.zarr", ckpt: str | None = "out/demo/model/best.pt",
         split: str = "spatial", priors: str = ",".join(ALL_PRIORS)) -> None:
    """Print the table for one corpus (``ckpt`` "-" or missing: no model rows) under ``priors`` (comma-separated)."""
    chosen = [p.strip() for p in priors.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in ALL_PRIORS]
    if unknown:
        raise SystemExit(f"unknown prior(s) {', '.join(unknown)}; choose from {', '.join(ALL_PRIORS)}")
    corpus = open_corpus(corpus_path)
    test = corpus.split_indices(split, "test")
    truth = corpus.batch(test, ["position_xy_m"])["position_xy_m"].astype(np.float64)
    labels = io.read(corpus.samples, f"split_{split}", corpus.url)
    known = known_street_mask(io.read(corpus.samples, "group_id", corpus.url), labels, test)
    print(f"{corpus_path}, split {split}, {len(test)} test samples ({int(known.sum())} on known streets, "
          f"{int((~known).sum())} on unknown streets); crops 600 m (the model: its own size)\n")
    print("| prior | truth in crop | method | mean m | median m | p90 m | known mean / median m "
          "| unknown mean / median m | samples/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    methods: list[tuple[str, object]] = [("prior-only", lambda: make_baseline("prior-only")),
                                         ("knn-square", lambda: make_baseline("knn-square")),
                                         ("mapmatch", lambda: make_baseline("mapmatch", n_plots=0))]
    if ckpt and Path(ckpt).exists():
        from learn.registry import load_method

        methods.append((f"posterior ({Path(ckpt).name})", lambda: load_method(ckpt)))
    from learn.data.scenes import has_cell_maps

    with_maps = has_cell_maps(corpus)
    if not with_maps:  # no per-cell maps: neither map matching nor the coarse prior
        methods = [m for m in methods if m[0] != "mapmatch"]
    for name in chosen:
        if name == "coarse" and not with_maps:
            continue
        prior = CropPrior(name).for_corpus(corpus)
        label = name if prior.name == name else f"{name} (= {prior.name})"
        centres = prior.centres_m(corpus, test, 600.0)
        inside = "-" if centres is None else f"{(np.abs(truth - centres) <= 300).all(1).mean():.0%}"
        for mname, make in methods:
            if centres is None and mname.startswith("posterior"):
                continue  # crop-based: refuses whole
            t0 = time.perf_counter()
            r = evaluate(corpus, make(), split, prior=prior)  # type: ignore[operator]
            print(_row(label, inside, mname, r, time.perf_counter() - t0), flush=True)
    t0 = time.perf_counter()
    r = evaluate(corpus, make_baseline("wknn"), split)
    print(_row("whole (WkNN's own)", "-", "wknn", r, time.perf_counter() - t0), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*args)
