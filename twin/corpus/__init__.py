"""Measurement corpora (``twin sample``): UE positions and routes, measurement sequences, the Zarr corpus.

The data flow, one module each: :mod:`~twin.corpus.routes` (the road graph, street
splits) → :mod:`~twin.corpus.sampler` (``sample``: sequences of measurement reports read
off the radio maps) → :mod:`~twin.corpus.store` (``CorpusWriter`` / ``open_corpus``: the
Zarr corpus). The names below are imported on first use.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    **dict.fromkeys(["RoadNetwork"], "twin.corpus.routes"),
    **dict.fromkeys(["sample", "Sampler", "SampleConfig", "add_corpus_scene", "scene_channels", "SPLIT_SCHEMES"],
                    "twin.corpus.sampler"),
    **dict.fromkeys(["Corpus", "CorpusWriter", "open_corpus", "SPLIT_NAMES", "SCHEMA_VERSION"], "twin.corpus.store"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
