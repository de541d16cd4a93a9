"""The one evaluation harness every method goes through (baselines and learned models).

A method (:class:`learn.methods.Method`) has ``predict(corpus, indices) -> Predictions`` and, when it is fitted inside
the evaluation (the k-NN baselines), ``fit(corpus, train_indices)``. :func:`evaluate`
fits on the split's ``train`` part, predicts its ``test`` part and reports the errors
overall and per part:

* ``known`` — test samples in a block (the corpus ``group_id``: a street block for real
  imports, a street segment for synthetic corpora) that also holds training samples;
* ``unknown`` — test samples in blocks without any training sample (seed 004's unknown
  streets; under the ``spatial`` split these are the held-out blocks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from learn.methods import Method, Predictions
from learn.metrics import error_summary, position_errors_m
from learn.priors import PRIORS, CropPrior, resolve_prior
from learn.splits import known_street_mask
from twin import io
from twin.corpus.store import SPLIT_NAMES, Corpus, open_corpus
from twin.errors import InputError

__all__ = ["EvalResult", "evaluate", "evaluate_named", "PARTS"]

PARTS = ("all", "known", "unknown")


@dataclass
class EvalResult:
    """Errors of one method on one split's test part."""

    method: str
    data: str
    split: str
    indices: np.ndarray
    truth_xy_m: np.ndarray
    predictions: Predictions
    errors_m: np.ndarray
    known: np.ndarray
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    method_obj: Any = None  # the method itself: learn.plot asks it for its own pictures (plot_extra)
    prior: str = "auto"   # the crop prior the method ran under (learn.priors)
    prior_label: str = ""

    def to_json(self) -> dict[str, Any]:
        """The overall metrics at top level (``mean_m, median_m, p90_m, rmse_m, n`` ...) plus parts."""
        return {**self.parts["all"], "method": self.method, "data": self.data, "split": self.split,
                "prior": self.prior, "prior_label": self.prior_label,
                "parts": {k: v for k, v in self.parts.items() if k != "all"}}

    def table(self) -> str:
        """A plain-text table: one row per part."""
        head = f"{'part':<8}{'n':>7}{'mean_m':>10}{'median_m':>10}{'p90_m':>10}{'rmse_m':>10}"
        rows = [f"{self.method} on {self.data} (split {self.split}, test part; prior {self.prior_label or self.prior})",
                head]
        for name, m in self.parts.items():
            if m["n"] == 0:
                rows.append(f"{name:<8}{0:>7}{'-':>10}{'-':>10}{'-':>10}{'-':>10}")
                continue
            rows.append(f"{name:<8}{m['n']:>7}{m['mean_m']:>10.1f}{m['median_m']:>10.1f}"
                        f"{m['p90_m']:>10.1f}{m['rmse_m']:>10.1f}")
            extra = [f"{k}={m[k]:.3f}" for k in ("nll", "coverage50", "coverage90", "refinement_gain_m") if k in m]
            if extra:
                rows.append(" " * 8 + "  ".join(extra))
        return "\n".join(rows)


def _summary(p: Predictions, errors: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    refined = None if p.refined_xy_m is None else position_errors_m(p.refined_xy_m, truth)
    return error_summary(errors, p.nll, p.in_hdr50, p.in_hdr90, refined)


def evaluate(data: str | os.PathLike | Corpus, method: Method, split: str = "random", part: str = "test",
             fit: bool = True, prior: CropPrior | str | None = None, max_samples: int | None = None) -> EvalResult:
    """Fit ``method`` on the split's train part (when it has ``fit``), judge it on ``part``.

    ``max_samples``: judge at most this many samples of ``part``, evenly spaced over it (the
    same ones for every method: a fixed, cheaper test set for slow methods; None: all).

    ``prior`` (:mod:`learn.priors`; default truth-free ``auto``) places the crops of
    crop-based methods; the truth is read only to score, after prediction, and a truth
    outside the crop counts with its full error. Raises :class:`InputError` naming the
    corpus when the split is unknown or a part is empty.
    """
    corpus = data if isinstance(data, Corpus) else open_corpus(data)
    crop_prior = resolve_prior(prior).for_corpus(corpus)
    if split not in corpus.split_schemes:
        raise InputError(f"{corpus.url}: no split '{split}'; has {', '.join(corpus.split_schemes)}")
    labels = io.read(corpus.samples, f"split_{split}", corpus.url)
    train = np.flatnonzero(labels == SPLIT_NAMES.index("train"))
    test = corpus.split_indices(split, part)
    if len(test) == 0:
        raise InputError(f"{corpus.url}: split '{split}' has no '{part}' samples")
    if max_samples is not None:
        if max_samples < 1:
            raise InputError(f"max_samples: {max_samples} must be >= 1 (or None: the whole part)")
        if max_samples < len(test):
            test = test[np.unique(np.linspace(0, len(test) - 1, max_samples).round().astype(np.int64))]
    if fit and hasattr(method, "fit"):
        method.fit(corpus, train)
    pred = method.predict(corpus, test, prior=crop_prior)
    truth = corpus.batch(test, ["position_xy_m"])["position_xy_m"].astype(np.float64)
    if not np.isfinite(truth).all():
        raise InputError(f"{corpus.url}: {int((~np.isfinite(truth).all(1)).sum())} test samples have no true "
                         "position to score against; use `learn predict` to localize unlabeled data")
    if np.shape(pred.xy_m) != truth.shape:
        raise InputError(f"method {method.name}: predicted shape {np.shape(pred.xy_m)}, expected {truth.shape}")
    errors = position_errors_m(pred.xy_m, truth)
    groups = io.read(corpus.samples, "group_id", corpus.url)
    known = known_street_mask(groups, labels, test)
    used = PRIORS[2] if getattr(method, "searches_whole", False) else crop_prior.name
    result = EvalResult(getattr(method, "name", type(method).__name__), corpus.url, split, test, truth, pred,
                        errors, known, method_obj=method, prior=used, prior_label=resolve_prior(used).label)
    for name, sel in (("all", np.ones(len(test), bool)), ("known", known), ("unknown", ~known)):
        result.parts[name] = _summary(pred.take(sel), errors[sel], truth[sel])
    return result


def evaluate_named(data: str | os.PathLike, split: str = "random", baseline: str | None = None,
                   ckpt: str | os.PathLike | None = None, prior: CropPrior | str | None = None,
                   **options: Any) -> EvalResult:
    """:func:`evaluate` a baseline by name (fitted here) or a checkpoint (exactly one of them) under ``prior``."""
    if baseline is not None and ckpt is None:
        from learn.registry import make_baseline

        return evaluate(data, make_baseline(baseline, **options), split, prior=prior)
    if ckpt is not None and baseline is None:
        from learn.registry import load_method

        return evaluate(data, load_method(ckpt), split, fit=False, prior=prior)
    raise InputError("give exactly one of a baseline name (--baseline) or a checkpoint (--ckpt)")
