"""A corpus's scene groups as the dataset reads them: maps by channel name, cell maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zarr

from twin import io
from twin.corpus.store import Corpus
from twin.geo import Grid

__all__ = ["scene_group", "has_cell_maps", "scene_channels", "scene_maps"]


def scene_group(corpus: Corpus, s: int) -> zarr.Group:
    """Scene ``s``'s group of ``corpus`` (:class:`InputError` naming the corpus when it lacks it)."""
    return io.group(corpus.root, f"scenes/{s}", corpus.url)


def has_cell_maps(corpus: Corpus) -> bool:
    return any(io.array(scene_group(corpus, s), "cell_maps", corpus.url).size for s in range(corpus.n_scenes))


def scene_channels(group: zarr.Group) -> tuple[list[str], list[str]]:
    attrs = io.attrs(group)
    return list(attrs.get("radio_channels", [])), list(attrs.get("semantic_channels", []))


def scene_maps(group: zarr.Group, channels: Sequence[str], grid: Grid, where: str) -> tuple[np.ndarray, bool]:
    """The scene's maps ``(C, H, W)`` in ``channels`` order (absent channels zero) and whether any is present."""
    radio, semantic = scene_channels(group)
    out = np.zeros((len(channels), *grid.shape), np.float32)
    present = False
    for q, name in enumerate(channels):
        if name in radio:
            out[q] = io.array(group, "radio_maps", where)[radio.index(name)]
            present = True
        elif name in semantic:
            out[q] = io.array(group, "semantic_maps", where)[semantic.index(name)]
            present = True
    return out, present
