"""Batches for training and evaluation: the collate function, the DataLoader and the datasets a run needs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from learn.data.dataset import CorpusDataset, as_data_config
from learn.data.stats import Normalization
from learn.data.vocab import CellVocab
from twin.corpus.store import Corpus, open_corpus
from twin.errors import InputError

__all__ = ["collate", "make_loader", "build_training_data", "eval_dataset"]


def collate(samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack per-sample dicts into the batch dict (every key gains the leading ``B`` axis)."""
    if not samples:
        raise InputError("collate: empty batch")
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def _worker_init(_: int) -> None:
    # Workers share 2 cores with the main process: one thread each avoids oversubscription.
    torch.set_num_threads(1)


def make_loader(dataset: CorpusDataset, batch_size: int = 64, shuffle: bool = False, num_workers: int = 0,
                seed: int = 0, drop_last: bool = False, **kwargs: Any) -> torch.utils.data.DataLoader:
    """A DataLoader over ``dataset`` with :func:`collate`; Zarr stores open lazily inside each worker.

    The shuffling order is drawn from ``seed``; a training dataset's crops depend on
    ``dataset.set_epoch`` and the sample, not on the worker, so the same batches come
    out for any ``num_workers``.
    """
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, collate_fn=collate,
        drop_last=drop_last, generator=generator, worker_init_fn=_worker_init if num_workers else None,
        persistent_workers=False, **kwargs)


def build_training_data(urls: Sequence[str | os.PathLike], data_config: Any, split_scheme: str = "spatial",
                        seed: int = 0, normalization: Normalization | dict | None = None,
                        cell_vocab: CellVocab | Sequence[str] | None = None, physics_maps: bool = True,
                        val_crops: str = "truth") -> tuple[CorpusDataset, CorpusDataset, dict[str, Any]]:
    """Training and validation datasets over the ``train`` / ``val`` parts of every corpus, and sizes.

    The training dataset draws random crops per ``(seed, epoch, corpus, index)`` (or the crops
    of the prior ``data_config.train_crops`` names, where they hold the truth): call
    ``train.set_epoch(epoch)`` before each epoch's DataLoader, or every epoch sees the same
    crops. Returns ``(train, val, info)`` with ``info``: ``n_features`` (F), ``n_cells``
    (``len(cell_vocab) + 1``: index 0 is padding/unknown), ``map_channels`` (C, an int),
    ``map_channel_names``, ``max_cells`` (K of the batches, 0 without cell maps),
    ``cell_vocab`` (list of keys; key ``k`` has index ``k + 1``) and ``data_info``
    (:meth:`CorpusDataset.state` plus ``feature_names``: keep it in checkpoints and give it
    back to :func:`eval_dataset`). ``physics_maps``: both datasets build ``phys_maps`` /
    ``phys_valid`` (:class:`CorpusDataset`; the physics loss reads them). ``val_crops``
    (``train.val_crops``): ``"truth"``, the seeds' truth-centred val crops, or
    ``"train_crops"``, where ``data_config.train_crops``' prior places them (a truth outside
    its crop stays there, as at inference; with ``train_crops`` random the same as truth).
    """
    paths = [os.fspath(u) for u in ([urls] if isinstance(urls, (str, os.PathLike)) else urls)]
    cfg = as_data_config(data_config)
    corpora = [open_corpus(u) for u in paths]
    for c in corpora:
        if split_scheme not in c.split_schemes:
            raise InputError(f"{c.url}: no split scheme '{split_scheme}'; has {', '.join(c.split_schemes)}")
    train_idx = [c.split_indices(split_scheme, "train") for c in corpora]
    val_idx = [c.split_indices(split_scheme, "val") for c in corpora]
    if not sum(len(i) for i in train_idx):
        raise InputError(f"{', '.join(paths)}: split '{split_scheme}' has no training samples")
    if val_crops not in ("truth", "train_crops"):
        raise InputError(f"val_crops: {val_crops!r} must be 'truth' or 'train_crops'")
    placed = val_placed = None
    if cfg.train_crops != "random":  # crops where a truth-free prior puts them (DataConfig.train_crops)
        from learn.priors import crop_origins_m

        def prior_origins(parts: list[np.ndarray], what: str) -> np.ndarray:
            return np.concatenate([crop_origins_m(cfg.train_crops, c, i, cfg.crop_size_m, what) if len(i)
                                   else np.empty((0, 2)) for c, i in zip(corpora, parts, strict=True)])

        placed = prior_origins(train_idx, "training crops")
        if val_crops == "train_crops":
            val_placed = prior_origins(val_idx, "validation crops")
    train = CorpusDataset(paths, train_idx, cfg, training=True, seed=seed, normalization=normalization,
                          cell_vocab=cell_vocab, crop_origins_m=placed, physics_maps=physics_maps)
    val = CorpusDataset(paths, val_idx, cfg, training=False, normalization=train.normalization,
                        cell_vocab=train.cell_vocab, crop_origins_m=val_placed, physics_maps=physics_maps)
    info = {"n_features": len(train.feature_names), "n_cells": len(train.cell_vocab),
            "map_channels": len(train.map_channels), "map_channel_names": train.map_channels,
            "max_cells": train.n_slots, "cell_vocab": train.cell_vocab.to_list(),
            "data_info": {**train.state(), "feature_names": list(train.feature_names)}}
    return train, val, info


def eval_dataset(corpus: Corpus | str | os.PathLike, indices: np.ndarray, data_config: Any,
                 cell_vocab: CellVocab | Sequence[str] | None = None, normalization: Normalization | dict | None = None,
                 data_info: dict[str, Any] | None = None, crop_origins_m: np.ndarray | None = None,
                 physics_maps: bool = True) -> CorpusDataset:
    """An evaluation dataset (deterministic crops) of ``corpus`` at ``indices`` for a trained model.

    Pass the checkpoint's ``cell_vocab`` and its ``data_info`` (or ``normalization``) so that the
    inputs are normalized as in training; without them the corpus's own statistics are used.
    ``crop_origins_m`` ``(N, 2)``: the crops a prior placed (:func:`learn.priors.crop_origins_m`).
    ``physics_maps``: build ``phys_maps`` / ``phys_valid`` (refinement with a physics term reads them).
    """
    url = corpus.url if isinstance(corpus, Corpus) else os.fspath(corpus)
    if normalization is None and data_info and data_info.get("normalization"):
        normalization = data_info["normalization"]
    if cell_vocab is None and data_info and data_info.get("cell_vocab") is not None:
        cell_vocab = data_info["cell_vocab"]
    return CorpusDataset([url], [np.asarray(indices, np.int64)], as_data_config(data_config), training=False,
                         normalization=normalization, cell_vocab=cell_vocab, crop_origins_m=crop_origins_m,
                         physics_maps=physics_maps)
