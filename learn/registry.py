"""Methods by name: baselines, and checkpoints by their ``kind``.

A checkpoint is a dict saved with ``torch.save`` (``{kind, model, optimizer, configs,
step, schema_version, cell_vocab, ...}``). :func:`load_method` reads its ``kind`` and
hands it to the loader registered for that kind. Modules that define a kind register
it at import; the providers below are imported on first need, so that
``learn eval --ckpt`` works without importing every model up front.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from twin.errors import CheckpointError

__all__ = ["register_checkpoint_kind", "load_method", "checkpoint_kinds"]

_LOADERS: dict[str, Callable[[dict[str, Any], str], Any]] = {}
# kind -> module that registers it when imported.
_PROVIDERS = {"heatmap": "learn.heatmap", "posterior": "learn.predict"}


def register_checkpoint_kind(kind: str, loader: Callable[[dict[str, Any], str], Any]) -> None:
    """Register ``loader(checkpoint_dict, path) -> method`` for checkpoints of ``kind``."""
    _LOADERS[kind] = loader


def checkpoint_kinds() -> list[str]:
    return sorted(set(_LOADERS) | set(_PROVIDERS))


def load_method(path: str | os.PathLike) -> Any:
    """A method (``predict(corpus, indices) -> Predictions``) from a checkpoint file.

    The file is read by :func:`learn.checkpoint.load_checkpoint` (any kind; keys and
    ``schema_version`` checked), then handed to its kind's loader.
    """
    from learn.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, kind=None)
    kind = str(ckpt["kind"])
    if kind not in _LOADERS and kind in _PROVIDERS:
        try:
            importlib.import_module(_PROVIDERS[kind])
        except ImportError as err:
            raise CheckpointError(f"{path}: checkpoint kind '{kind}' needs {_PROVIDERS[kind]}, "
                                  f"which is not importable ({err})") from err
    if kind not in _LOADERS:
        raise CheckpointError(f"{path}: unknown checkpoint kind '{kind}'; known: {', '.join(checkpoint_kinds())}")
    return _LOADERS[kind](ckpt, os.fspath(path))
