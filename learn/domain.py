"""Domain-adversarial training of the posterior model (seed 004 appendix D; Ganin et al., JMLR 17, 2016).

A domain classifier ``G_d`` (an MLP) reads the radio encoder's [CLS] embedding ``z_r``
(``PosteriorOutput.radio_cls``) through a gradient reversal layer and learns whether a
sample comes from a *source* corpus (synthetic, label 0) or a *target* corpus (real,
label 1). The layer is the identity forward and multiplies the gradient by ``-lambda``
backward, so one loss ::

    L = L_y + CE(G_d(R_lambda(z_r)), d)          (L_y: the model's own loss, Eq. 24)

trains the classifier to minimize the domain cross-entropy and the encoder to maximize it,
``lambda`` times: seed 004's ``min_{theta_f, theta_y} max_{theta_d} L_y - lambda L_d``.
The per-sample domain term is ``output.parts["domain"]`` (a ``metrics.csv`` column); it
is only added in training (validation losses stay the model's own).

Switch: ``train.domain_adversarial_lambda`` (0 = off, the default: no classifier, training
as before). The source corpora come beside the target ones (``learn finetune --data
real.zarr --source-data synth.zarr``; :func:`learn.train.train` ``source_data``):
:func:`domain_training_data` builds one dataset per domain with the same normalization
(features matched by name, NB-IoT aliases included), one cell vocabulary over both and
the same cell-map slots, and concatenates them (:class:`DomainDataset`, which adds the
batch key ``domain``); validation uses the target corpora's ``val`` parts only. Both
domains are labelled, so ``L_y`` runs over every sample of the mixed batches, whose
shares follow the corpora's sizes.

The classifier's weights are saved with the model's (``domain_classifier.*``, so a run
resumes exactly); evaluation, prediction and fine-tuning of the saved posterior ignore
them (:data:`learn.checkpoint.TRAINING_ONLY_PREFIXES`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from learn.checkpoint import TRAINING_ONLY_PREFIXES
from learn.data.dataset import as_data_config
from learn.data.loader import build_training_data
from learn.data.vocab import CellVocab
from twin.corpus.store import open_corpus
from twin.errors import InputError

__all__ = ["SOURCE", "TARGET", "grad_reverse", "DomainClassifier", "DomainAdversarial", "DomainDataset",
           "domain_adversarial", "domain_training_data"]

SOURCE, TARGET = 0, 1  # domain labels: synthetic (source) corpora 0, real (target) corpora 1
_PREFIX = TRAINING_ONLY_PREFIXES[0]  # "domain_classifier."


class _GradReverse(torch.autograd.Function):
    """Identity forward; ``-lambda`` times the gradient backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = float(lam)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * -ctx.lam, None


def grad_reverse(x: torch.Tensor, lam: float) -> torch.Tensor:
    """The gradient reversal layer ``R_lambda``: ``x`` forward, ``-lam * dL/dx`` backward."""
    return _GradReverse.apply(x, lam)


class DomainClassifier(nn.Module):
    """``G_d``: an MLP ``(B, d) -> (B, n_domains)`` logits (two hidden ReLU layers, as Ganin et al.'s)."""

    def __init__(self, d_in: int, hidden: int = 256, n_domains: int = 2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_domains))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class DomainAdversarial(nn.Module):
    """A model with a domain classifier on its output's ``radio_cls`` through the gradient reversal layer.

    ``forward(batch, targets)`` returns the model's output with ``parts["domain"]`` (per-sample
    cross-entropy against ``batch["domain"]``) and the loss ``L_y + mean CE`` in training; in
    evaluation mode, or without targets, the model's own output and loss. The state dict is
    the model's own keys plus ``domain_classifier.*`` (so its checkpoints are the model's).
    """

    def __init__(self, model: nn.Module, lam: float, d_in: int, hidden: int = 256):
        super().__init__()
        if not lam >= 0:
            raise InputError(f"domain_adversarial_lambda: {lam} must be >= 0")
        self.model = model
        self.domain_classifier = DomainClassifier(d_in, hidden)
        self.lam = float(lam)
        self.LOSS_PARTS = (*getattr(model, "LOSS_PARTS", ()), "domain")

    def forward(self, batch: dict[str, torch.Tensor], targets: torch.Tensor | None = None) -> tuple[Any, Any]:
        out, loss = self.model(batch, targets)
        if targets is None or not self.training:
            return out, loss
        if "domain" not in batch:
            raise InputError("domain-adversarial training: the batches carry no 'domain' labels (train with source "
                             "corpora: --source-data, learn.domain.domain_training_data)")
        z = getattr(out, "radio_cls", None)
        if z is None:
            raise InputError(f"domain-adversarial training: {type(self.model).__name__}'s output has no radio_cls")
        logits = self.domain_classifier(grad_reverse(z.float(), self.lam))
        ce = F.cross_entropy(logits, batch["domain"].long(), reduction="none")  # [B]
        out.parts["domain"] = ce
        return out, loss + ce.mean()

    # The checkpoints hold the model's keys unprefixed (readers build the bare model).
    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        out = OrderedDict() if destination is None else destination
        self.model.state_dict(destination=out, prefix=prefix, keep_vars=keep_vars)
        self.domain_classifier.state_dict(destination=out, prefix=prefix + _PREFIX, keep_vars=keep_vars)
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        own = {k: v for k, v in state_dict.items() if not k.startswith(_PREFIX)}
        head = {k[len(_PREFIX):]: v for k, v in state_dict.items() if k.startswith(_PREFIX)}
        a = self.model.load_state_dict(own, strict=strict, assign=assign)
        b = self.domain_classifier.load_state_dict(head, strict=strict, assign=assign)
        return type(a)([*a.missing_keys, *(_PREFIX + k for k in b.missing_keys)],
                       [*a.unexpected_keys, *(_PREFIX + k for k in b.unexpected_keys)])


def domain_adversarial(model: nn.Module, lam: float) -> nn.Module:
    """``model`` itself when ``lam`` is 0 (the switch is off), else :class:`DomainAdversarial` on its radio [CLS]."""
    if lam == 0:
        return model
    d_in = int(getattr(getattr(model, "cfg", None), "d_radio", 0))
    if d_in < 1:
        raise InputError(f"domain-adversarial training needs the posterior model (a radio [CLS] embedding); "
                         f"got {type(model).__name__}")
    return DomainAdversarial(model, lam, d_in, hidden=max(64, d_in))


class DomainDataset(torch.utils.data.Dataset):
    """The concatenation of per-domain datasets; each item gains ``domain`` (a long scalar: its part's label)."""

    def __init__(self, parts: Sequence[torch.utils.data.Dataset], domains: Sequence[int]):
        if len(parts) != len(domains):
            raise InputError(f"domain dataset: {len(parts)} parts for {len(domains)} domain labels")
        self.parts, self.domains = list(parts), [int(d) for d in domains]
        self.offsets = np.cumsum([0, *(len(p) for p in self.parts)])  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        for p in self.parts:
            if hasattr(p, "set_epoch"):
                p.set_epoch(epoch)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, positions: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        pos = np.asarray(positions, np.int64)
        which = np.searchsorted(self.offsets, pos, side="right") - 1
        out: list[dict[str, torch.Tensor] | None] = [None] * len(pos)
        for k in np.unique(which):
            sel = np.flatnonzero(which == k)
            part = self.parts[int(k)]
            local = [int(p) for p in pos[sel] - self.offsets[k]]
            items = part.__getitems__(local) if hasattr(part, "__getitems__") else [part[j] for j in local]
            for j, item in zip(sel, items, strict=True):
                out[j] = {**item, "domain": torch.tensor(self.domains[int(k)], dtype=torch.long)}
        return out  # type: ignore[return-value]


def domain_training_data(target: Sequence[str | os.PathLike], source: Sequence[str | os.PathLike], data_config: Any,
                         split_scheme: str = "spatial", seed: int = 0, normalization: Any = None,
                         physics_maps: bool = True) -> tuple[DomainDataset, Any, dict[str, Any]]:
    """``(train, val, info)`` of :func:`learn.data.build_training_data` over target and source corpora.

    The training set is the target corpora's ``train`` parts (domain :data:`TARGET`) then the
    source corpora's (:data:`SOURCE`), both normalized as ``normalization`` says (the
    fine-tuned checkpoint's) or, without it, with the target corpora's statistics; features
    are matched by name (so a synthetic ``rsrp/rsrq/rssi/sinr`` source feeds a model of the
    Rome crop's ``rssi/nsinr/nrsrp/nrsrq``). The cell vocabulary holds the cells of both, and
    both yield the same number of cell-map slots. ``val`` is the target corpora's ``val``
    parts; ``info["data_info"]["source_corpora"]`` names the source corpora. ``physics_maps``:
    the datasets build ``phys_maps`` (:func:`learn.data.build_training_data`).
    """
    target_urls, source_urls = [os.fspath(u) for u in target], [os.fspath(u) for u in source]
    if not target_urls or not source_urls:
        raise InputError("domain-adversarial training needs target corpora (--data) and source corpora "
                         "(--source-data)")
    vocab = CellVocab.from_corpora([open_corpus(u) for u in (*target_urls, *source_urls)])
    cfg = as_data_config(data_config)
    t_train, t_val, info = build_training_data(target_urls, cfg, split_scheme, seed, normalization, vocab,
                                               physics_maps)
    s_train, _, s_info = build_training_data(source_urls, cfg, split_scheme, seed + 1, t_train.normalization, vocab,
                                             physics_maps)
    slots = max(t_train.n_slots, s_train.n_slots)
    for ds in (t_train, t_val, s_train):
        ds.n_slots = slots  # a corpus without cell maps yields empty slots (phys_valid False), as a mixed dataset
    info = {**info, "max_cells": slots,
            "data_info": {**info["data_info"], "source_corpora": source_urls, "target_corpora": target_urls}}
    return DomainDataset([t_train, s_train], [TARGET, SOURCE]), t_val, info
