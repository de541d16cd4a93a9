"""Posterior model with vs without the physics-likelihood channels, beside the baselines.

``python -m bench.bench_likelihood CORPUS SPLIT LABEL=CKPT [LABEL=CKPT ...]``, e.g. after
``learn pretrain --data out/demo/corpus.zarr --split spatial --config ...`` with and without
``data: likelihood: true``::

    python -m bench.bench_likelihood out/demo/corpus.zarr spatial lik=runs/lik/best.pt plain=runs/plain/best.pt

Under the truth-free default prior (``auto``) and the seeds' ``truth`` crops, it judges the
prior alone, k-NN in the square, map matching and each checkpoint on the split's test
part; each checkpoint row gives the mean coarse-head entropy [nats] over the test part
(a diagnostic: ``log G^2`` is a uniform head). Prints a Markdown table (docs/benchmarks.md).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from learn.evaluate import evaluate
from learn.priors import CropPrior
from learn.registry import load_method, make_baseline
from twin.corpus.store import open_corpus


def coarse_entropy(ckpt: str, corpus, test: np.ndarray, prior) -> float:
    """Mean entropy [nats] of the coarse head's softmax over the test part under ``prior``'s crops."""
    from learn.predict import _corpus_loader, load_posterior

    model, ck = load_posterior(ckpt, "cpu")
    ents = []
    with torch.no_grad():
        for batch in _corpus_loader(corpus, test, ck, 128, 0, prior):
            out, _ = model(batch)
            logp = torch.log_softmax(out.logits.float(), dim=1)
            ents.append(-(logp.exp() * logp).sum(1))
    return float(torch.cat(ents).mean())


def main(corpus_path: str, split: str, *ckpts: str) -> None:
    corpus = open_corpus(corpus_path)
    test = corpus.split_indices(split, "test")
    truth = corpus.batch(test, ["position_xy_m"])["position_xy_m"].astype(np.float64)
    named = [c.split("=", 1) for c in ckpts]
    print(f"{corpus_path}, split {split}, {len(test)} test samples\n")
    print("| prior | truth in crop | method | mean m | median m | p90 m | coarse entropy [nats] | samples/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("auto", "truth"):
        prior = CropPrior(name).for_corpus(corpus)
        label = name if prior.name == name else f"{name} (= {prior.name})"
        centres = prior.centres_m(corpus, test, 600.0)
        inside = "-" if centres is None else f"{(np.abs(truth - centres) <= 300).all(1).mean():.0%}"
        methods = [("prior-only", lambda: make_baseline("prior-only"), None),
                   ("knn-square", lambda: make_baseline("knn-square"), None),
                   ("mapmatch", lambda: make_baseline("mapmatch", n_plots=0), None)]
        methods += [(f"posterior {lab}", (lambda p=path: load_method(p)), path) for lab, path in named]
        for mname, make, path in methods:
            t0 = time.perf_counter()
            r = evaluate(corpus, make(), split, prior=prior)
            dt = time.perf_counter() - t0
            a = r.parts["all"]
            ent = f"{coarse_entropy(path, corpus, test, prior):.2f}" if path else "-"
            print(f"| {label} | {inside} | {mname} | {a['mean_m']:.1f} | {a['median_m']:.1f} | {a['p90_m']:.1f} | "
                  f"{ent} | {len(test) / dt:.0f} |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
