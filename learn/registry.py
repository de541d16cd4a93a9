"""Methods by name: baselines, and checkpoints by their ``kind`` (registered as timm registers models).

A baseline class registers itself with ``@register_baseline("name")``; :func:`make_baseline`
builds one by name (its module is imported on first need, see ``_BASELINE_PROVIDERS``).

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
from typing import Any, TypeVar

from twin.errors import CheckpointError, InputError

__all__ = ["register_checkpoint_kind", "load_method", "checkpoint_kinds", "register_baseline", "make_baseline",
           "baseline_names"]

T = TypeVar("T")

_LOADERS: dict[str, Callable[[dict[str, Any], str], Any]] = {}
# kind -> module that registers it when imported.
_PROVIDERS = {"heatmap": "learn.heatmap", "mlp-unet": "learn.unet", "posterior": "learn.predict"}


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


_BASELINES: dict[str, Callable[..., Any]] = {}
# baseline name -> module that registers it when imported.
_BASELINE_PROVIDERS = {"wknn": "learn.baselines", "knn-square": "learn.baselines", "mapmatch": "learn.baselines",
                       "prior-only": "learn.priors", "wknn-seed004": "learn.baselines",
                       "knn-square-seed004": "learn.baselines"}


def register_baseline(name: str) -> Callable[[T], T]:
    """Class decorator: register a baseline (``predict(corpus, indices, prior=None) -> Predictions``,
    optionally ``fit(corpus, train_indices)``) under ``name``."""
    def register(cls: T) -> T:
        _BASELINES[name] = cls  # type: ignore[assignment]
        return cls
    return register


def baseline_names() -> list[str]:
    """Every baseline name, in the order of ``_BASELINE_PROVIDERS`` then registration."""
    return list(dict.fromkeys([*_BASELINE_PROVIDERS, *_BASELINES]))


def make_baseline(name: str, **options: Any) -> Any:
    """A baseline by name (``wknn``, ``knn-square``, ``wknn-seed004``, ``knn-square-seed004``, ``mapmatch``,
    ``prior-only``) with keyword options
    (``None`` ones ignored)."""
    if name not in _BASELINES and name in _BASELINE_PROVIDERS:
        importlib.import_module(_BASELINE_PROVIDERS[name])
    if name not in _BASELINES:
        raise InputError(f"unknown baseline '{name}'; choose one of {', '.join(baseline_names())}")
    return _BASELINES[name](**{k: v for k, v in options.items() if v is not None})
