"""Datasets over Zarr corpora: batches of measurement sequences, map crops and cell maps.

One module per concept: :mod:`~learn.data.dataset` (``CorpusDataset``, ``DataConfig`` and
the batch contract), :mod:`~learn.data.crops` (where a crop lies), :mod:`~learn.data.resample` (its pixels
from the scene grid), :mod:`~learn.data.stats` (normalization), :mod:`~learn.data.vocab` (cell
vocabulary, feature names), :mod:`~learn.data.scenes` (a corpus's scene groups) and
:mod:`~learn.data.loader` (collate, DataLoader, the datasets of a run). The names below
are imported on first use (``learn.data.crops`` does not import torch).
"""

from importlib import import_module
from typing import Any

_LAZY = {
    **dict.fromkeys(["CorpusDataset", "DataConfig", "BATCH_KEYS", "as_data_config"], "learn.data.dataset"),
    **dict.fromkeys(["eval_crop_origins", "random_crop_origins"], "learn.data.crops"),
    **dict.fromkeys(["crop_grid", "crop_to_grid", "resample_crop", "resample_crops"], "learn.data.resample"),
    **dict.fromkeys(["Normalization", "compute_normalization"], "learn.data.stats"),
    **dict.fromkeys(["CellVocab", "FEATURE_ALIASES", "align_features"], "learn.data.vocab"),
    **dict.fromkeys(["collate", "make_loader", "build_training_data", "eval_dataset"], "learn.data.loader"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
