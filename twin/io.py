"""Writing and reading the toolkit's files: atomic writes and typed Zarr access.

**Atomic writes**: build into a temporary sibling, then rename into place. Every writer
of the toolkit goes through :func:`atomic_dir`, :func:`atomic_file` or
:func:`atomic_store`, so that a failure never leaves a half-written output behind.

**Zarr access**: zarr types ``group[name]`` as ``Array | Group`` and attribute values as
JSON unions; :func:`array`, :func:`group`, :func:`read` and :func:`attrs` narrow a member
once, raising :class:`~twin.errors.InputError` naming the store and the member when a
store lacks it (a store from another tool, or one damaged by hand).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from twin.errors import InputError, OutputExistsError

if TYPE_CHECKING:  # zarr is imported on first use: writers of plain files do not need it
    import zarr

__all__ = ["atomic_dir", "atomic_file", "atomic_store", "check_output", "is_local",
           "array", "group", "read", "attrs"]


def check_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """Return ``path`` as a Path; raise :class:`OutputExistsError` if it exists and not ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace(tmp: Path, final: Path) -> None:
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(tmp, final)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.replace(tmp, final)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` when the block succeeds.

    On an exception the temporary directory is removed and ``path`` is untouched.
    """
    final = check_output(path, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the output should not be
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace(tmp, final)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary file path that replaces ``path`` when the block succeeds."""
    final = check_output(path, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.partial-", suffix=final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_umask())
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, final)


def is_local(url: str | os.PathLike) -> bool:
    """Whether ``url`` is a plain local path (not ``s3://``, ``gs://``, ``memory://`` ...)."""
    text = os.fspath(url)
    return "://" not in text or text.startswith("file://")


@contextlib.contextmanager
def atomic_store(url: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yield where to build a Zarr store that appears at ``url`` only when the block succeeds.

    Local paths are built in a temporary sibling and renamed. For remote fsspec URLs,
    where no rename is atomic, the store is written in place and readers rely on the
    ``complete`` attribute that writers set last.
    """
    if is_local(url):
        text = os.fspath(url)
        with atomic_dir(text.removeprefix("file://"), overwrite=overwrite) as tmp:
            yield str(tmp)
    else:
        import fsspec

        fs, path = fsspec.core.url_to_fs(os.fspath(url))
        if fs.exists(path):
            if not overwrite:
                raise OutputExistsError(url)
            fs.rm(path, recursive=True)
        yield os.fspath(url)


def _member(parent: zarr.Group, name: str, where: str | None) -> object:
    try:
        return parent[name]
    except KeyError:
        raise InputError(f"{where or parent.store_path}: no '{name}' in '{parent.path or '/'}'") from None


def array(parent: zarr.Group, name: str, where: str | None = None) -> zarr.Array:
    """The array ``name`` of ``parent``; ``where`` (the store's URL) names the store in errors."""
    import zarr

    node = _member(parent, name, where)
    if not isinstance(node, zarr.Array):
        raise InputError(f"{where or parent.store_path}: '{name}' in '{parent.path or '/'}' is not an array")
    return node


def group(parent: zarr.Group, name: str, where: str | None = None) -> zarr.Group:
    """The sub-group ``name`` of ``parent``; ``where`` (the store's URL) names the store in errors."""
    import zarr

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
