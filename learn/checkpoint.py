"""The one checkpoint writer and reader of every trained model, loaded safely (``weights_only=True``).

Layout (``schema_version`` 2; ``kind`` names the model: ``"posterior"``, ``"heatmap"``)::

    {"kind": str, "schema_version": 2,
     "model": state_dict, "optimizer": state_dict | None,
     "configs": {"model": {...}, "train": {...}, "data": {...}, ...},   # the run config
     "step": int, "epoch": int, "best_val": float,
     "history": {"epoch": [...], "train_loss": [...], "val_loss": [...], "val_mean_m": [...],
                 "val_median_m": [...]},                       # one entry per finished epoch
     "cell_vocab": [...], "data_info": {...},   # what the model was trained on
     "rng": {"torch": ByteTensor}}

Only tensors, numbers, strings, lists and dicts are stored, so ``torch.load(...,
weights_only=True)`` reads it without unpickling arbitrary objects. Every read path
(:func:`load_checkpoint`, hence :func:`learn.registry.load_method`, ``learn eval --ckpt``,
``learn predict``, fine-tuning and resuming) checks the required keys and
``schema_version``. Version 1 (before the heatmap model trained through
:func:`learn.train.fit`) is refused with a clear error: retrain.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from twin.errors import CheckpointError
from twin.io import atomic_file

__all__ = ["KIND", "SCHEMA_VERSION", "TRAINING_ONLY_PREFIXES", "save_checkpoint", "load_checkpoint",
           "check_checkpoint", "read_torch_file", "load_model_state"]

KIND = "posterior"
SCHEMA_VERSION = 2
_REQUIRED = ("kind", "schema_version", "model", "configs", "step")
#: Weights of heads used only in training (the domain classifier of :mod:`learn.domain`), saved so that a
#: run resumes exactly; a model without such a head (evaluation, prediction, fine-tuning) ignores them.
TRAINING_ONLY_PREFIXES = ("domain_classifier.",)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], kind: str = KIND) -> Path:
    """Write ``state`` (with ``kind`` and ``schema_version`` added) atomically to ``path``."""
    payload = {"kind": kind, "schema_version": SCHEMA_VERSION, **state}
    with atomic_file(path, overwrite=True) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_torch_file(path: str | os.PathLike, what: str = "checkpoint",
                    map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; every failure is a :class:`CheckpointError` naming the file.

    ``weights_only`` refuses pickled objects other than tensors and plain data, so a
    foreign or malicious file is rejected rather than executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {what} file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" not in str(err).lower():  # garbage bytes, not a foreign object
            raise CheckpointError(f"{path}: corrupted or not a torch {what} (UnpicklingError: "
                                  f"{str(err).splitlines()[0]})") from err
        raise CheckpointError(f"{path}: refused to load: it holds objects other than tensors and plain "
                              f"data ({str(err).splitlines()[0]}); only files written by this toolkit "
                              f"or plain state dicts are accepted") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupted or not a torch {what} ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from err


def load_checkpoint(path: str | os.PathLike, kind: str | None = KIND,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint dict; every failure is a :class:`CheckpointError` naming the file.

    ``kind=None`` accepts any kind (the registry dispatches on it); the required keys and
    ``schema_version`` are checked for every kind.
    """
    return check_checkpoint(read_torch_file(path, "checkpoint", map_location), path, kind)


def check_checkpoint(ckpt: Any, path: str | os.PathLike, kind: str | None = KIND) -> dict[str, Any]:
    """``ckpt`` itself when it is a checkpoint dict of ``kind`` (any: None) and this schema; else :class:`CheckpointError`."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint dict (found {type(ckpt).__name__})")
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a learn checkpoint (missing {', '.join(missing)})")
    if kind is not None and ckpt["kind"] != kind:
        raise CheckpointError(f"{path}: a {ckpt['kind']!r} checkpoint, expected {kind!r}")
    if ckpt["schema_version"] != SCHEMA_VERSION:
        raise CheckpointError(f"{path}: checkpoint schema_version {ckpt['schema_version']}, this toolkit "
                              f"reads {SCHEMA_VERSION}; retrain or convert it")
    return ckpt


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike,
                     skip: tuple[str, ...] = ()) -> None:
    """``model.load_state_dict(state)`` with a clear :class:`CheckpointError` on any mismatch.

    Keys starting with a prefix in ``skip`` are left at the model's values (used by
    fine-tuning for the cell embedding, which is remapped separately). Keys of training-only
    heads (:data:`TRAINING_ONLY_PREFIXES`) are dropped when the model has no such head.
    """
    own = model.state_dict()
    state = {k: v for k, v in state.items()
             if not k.startswith(skip) and (k in own or not k.startswith(TRAINING_ONLY_PREFIXES))}
    missing = [k for k in own if k not in state and not k.startswith(skip)]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
              if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} e.g. {', '.join(unexpected[:3])}")
        if shapes:
            parts.append(f"shape mismatch (checkpoint vs model) {'; '.join(shapes[:3])}")
        raise CheckpointError(f"{source}: weights do not match the model config: {'; '.join(parts)}")
    model.load_state_dict(state, strict=False)
