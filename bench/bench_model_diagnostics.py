"""Why the posterior model loses: diagnostics on one corpus (docs/model.md § Diagnostics).

``python -m bench.bench_model_diagnostics [CORPUS] [SPLIT] [MLP_SECONDS]`` (default the demo
corpus, spatial split, 120 s):

1. **What the likelihood channels hold**: answer the crop pixel where ``lik_relative``
   (:mod:`learn.data.likelihood`) is 1, i.e. map matching over every pixel of the crop at
   the crop's resolution, under the truth-free prior (``auto``) and ``truth`` crops. A model
   fed these channels could reach this error by reading one pixel.
2. **A plain MLP on the same inputs**: the last report's features of every cell of the
   training vocabulary (normalized, unheard cells 0 with a heard flag), two hidden layers of
   256, trained with Adam on the train part for ``MLP_SECONDS`` to regress the scene
   position [m]; judged on the test part. Beside WkNN (the same fingerprints, no training).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from learn.baselines import fingerprints
from learn.data import DataConfig, collate
from learn.data.loader import eval_dataset
from learn.evaluate import evaluate
from learn.priors import CropPrior, crop_origins_m
from learn.registry import make_baseline
from twin.corpus.store import open_corpus


def channel_argmax(corpus, test: np.ndarray, prior_name: str, px: int = 64, size_m: float = 600.0) -> np.ndarray:
    """Error [m] ``(N,)`` of answering the centre of the crop pixel with the highest relative likelihood."""
    prior = CropPrior(prior_name).for_corpus(corpus)
    origins = crop_origins_m(prior, corpus, test, size_m, "likelihood argmax")
    ds = eval_dataset(corpus, test, DataConfig(crop_size_m=size_m, crop_px=px, likelihood=True),
                      crop_origins_m=origins)
    errs = []
    for s in range(0, len(ds), 128):
        b = collate([ds[i] for i in range(s, min(s + 128, len(ds)))])
        rel = b["lik_maps"][:, 1].flatten(1)
        k = rel.argmax(1)
        xy = torch.stack([(k % px + 0.5) / px, (k // px + 0.5) / px], 1)
        heard = rel.amax(1) > 0  # a sequence with no heard cell that has a map: the crop centre
        xy = torch.where(heard[:, None], xy, torch.full_like(xy, 0.5))
        errs.append(((xy - b["target_xy"]).norm(dim=1) * size_m).numpy())
    return np.concatenate(errs)


def dense_fingerprints(corpus, idx: np.ndarray, vocab: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    cells, feats = fingerprints(corpus, idx, range(len(corpus.feature_names)))
    f = len(mean)
    out = np.zeros((len(idx), len(vocab), f + 1), np.float32)
    for i, (c, v) in enumerate(zip(cells, feats, strict=True)):
        pos = np.searchsorted(vocab, c)
        ok = (pos < len(vocab)) & (vocab[np.minimum(pos, len(vocab) - 1)] == c)
        out[i, pos[ok], :f] = np.nan_to_num((v[ok] - mean) / std)
        out[i, pos[ok], f] = 1.0
    return out.reshape(len(idx), -1)


def plain_mlp(corpus, split: str, seconds: float) -> tuple[np.ndarray, int]:
    """Test errors [m] of the MLP on fingerprints and the number of Adam steps it made."""
    torch.manual_seed(0)
    tr, te = corpus.split_indices(split, "train"), corpus.split_indices(split, "test")
    mean = np.asarray(corpus.stats["feature_mean"], np.float64)
    std = np.where(np.asarray(corpus.stats["feature_std"]) > 0, corpus.stats["feature_std"], 1.0)
    vocab = np.unique(np.concatenate(fingerprints(corpus, tr, [0])[0]))
    x_tr = torch.from_numpy(dense_fingerprints(corpus, tr, vocab, mean, std))
    x_te = torch.from_numpy(dense_fingerprints(corpus, te, vocab, mean, std))
    y_tr = corpus.batch(tr, ["position_xy_m"])["position_xy_m"].astype(np.float64)
    y_te = corpus.batch(te, ["position_xy_m"])["position_xy_m"].astype(np.float64)
    mu, sd = y_tr.mean(0), y_tr.std(0)
    yt = torch.from_numpy(((y_tr - mu) / sd).astype(np.float32))
    net = torch.nn.Sequential(torch.nn.Linear(x_tr.shape[1], 256), torch.nn.GELU(), torch.nn.Linear(256, 256),
                              torch.nn.GELU(), torch.nn.Linear(256, 2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t0, steps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        k = torch.randint(0, len(x_tr), (128,))
        loss = (net(x_tr[k]) - yt[k]).abs().sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    with torch.no_grad():
        pred = net(x_te).double().numpy() * sd + mu
    return np.linalg.norm(pred - y_te, axis=1), steps


def _row(name: str, e: np.ndarray) -> str:
    return f"| {name} | {e.mean():.1f} | {np.median(e):.1f} | {np.percentile(e, 90):.1f} |"


def main(corpus_path: str = "out/demo/corpus.zarr", split: str = "spatial", mlp_seconds: str = "120") -> None:
    torch.set_num_threads(1)
    corpus = open_corpus(corpus_path)
    test = corpus.split_indices(split, "test")
    print(f"{corpus_path}, split {split}, {len(test)} test samples\n")
    print("| diagnostic | mean m | median m | p90 m |")
    print("|---|---|---|---|")
    for prior in ("auto", "truth"):
        print(_row(f"likelihood channel argmax, 64 px over 600 m, prior {prior}", channel_argmax(corpus, test, prior)),
              flush=True)
    err, steps = plain_mlp(corpus, split, float(mlp_seconds))
    print(_row(f"plain MLP on last-report fingerprints, {float(mlp_seconds):.0f} s ({steps} steps), whole area", err),
          flush=True)
    r = evaluate(corpus, make_baseline("wknn"), split).parts["all"]
    print(f"| wknn (same fingerprints, whole area) | {r['mean_m']:.1f} | {r['median_m']:.1f} | {r['p90_m']:.1f} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
