"""Typed access to the members and attributes of our Zarr v3 stores.

zarr types ``group[name]`` as ``Array | Group`` and attribute values as JSON unions; these
helpers narrow a member once, raising :class:`InputError` naming the store and the member
when a store lacks it (a store from another tool, or one damaged by hand).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from twin.errors import InputError

__all__ = ["array", "group", "read", "attrs"]


def _member(parent: zarr.Group, name: str, where: str | None) -> object:
    try:
        return parent[name]
    except KeyError:
        raise InputError(f"{where or parent.store_path}: no '{name}' in '{parent.path or '/'}'") from None


def array(parent: zarr.Group, name: str, where: str | None = None) -> zarr.Array:
    """The array ``name`` of ``parent``; ``where`` (the store's URL) names the store in errors."""
    node = _member(parent, name, where)
    if not isinstance(node, zarr.Array):
        raise InputError(f"{where or parent.store_path}: '{name}' in '{parent.path or '/'}' is not an array")
    return node


def group(parent: zarr.Group, name: str, where: str | None = None) -> zarr.Group:
    """The sub-group ``name`` of ``parent``; ``where`` (the store's URL) names the store in errors."""
    node = _member(parent, name, where)
    if not isinstance(node, zarr.Group):
        raise InputError(f"{where or parent.store_path}: '{name}' in '{parent.path or '/'}' is not a group")
    return node


def read(parent: zarr.Group, name: str, where: str | None = None) -> np.ndarray:
    """The whole array ``name`` of ``parent`` in memory (zarr types reads as scalar-or-array)."""
    return np.asarray(array(parent, name, where)[...])


def attrs(node: zarr.Group | zarr.Array) -> dict[str, Any]:
    """A copy of ``node``'s attributes; values are JSON, checked by the readers that use them."""
    return dict(node.attrs)
