"""Writing and reading the toolkit's files: atomic writes and typed Zarr access.

**Atomic writes**: build into a temporary sibling, then rename into place. Every writer
of the toolkit goes through :func:`atomic_dir`, :func:`atomic_file` or
:func:`atomic_store`, so that a failure never leaves a half-written output behind.

**One writer per output**: those writers hold :func:`output_lock` on the target (an
exclusive ``flock`` on ``.<name>.lock`` beside it, released by the kernel when the writer
dies) from start to final rename. A second writer of the same output fails at once with
:class:`~twin.errors.OutputExistsError` naming the path; and the final rename refuses a
target that appeared meanwhile unless ``overwrite``. Once it holds the lock, a writer
removes the ``.<name>.partial-*`` and ``.<name>.old-*`` siblings that killed writers of
the same target left (their writer is dead: it would hold the lock otherwise).

**Zarr access**: zarr types ``group[name]`` as ``Array | Group`` and attribute values as
JSON unions; :func:`array`, :func:`group`, :func:`read` and :func:`attrs` narrow a member
once, raising :class:`~twin.errors.InputError` naming the store and the member when a
store lacks it (a store from another tool, or one damaged by hand).

**Zarr integrity**: every array is written with :func:`compressors` (zstd, then a CRC32C
checksum of each chunk) and, in floating point, a NaN fill value. Writers call
:func:`seal` last, which records how many chunk files every array has in the root
attribute ``chunks_written``; readers call :func:`open_group` and :func:`verify`, which
refuse a store whose array lost a chunk file, naming the array and the chunk. Reads
through :func:`array` raise :class:`~twin.errors.InputError` naming the chunk file
when a chunk fails its checksum or does not decode (a bit flip, a truncated copy), and
:func:`open_group` names the ``zarr.json`` that is not valid JSON.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from twin.errors import InputError, OutputExistsError, StoreNotFoundError

if TYPE_CHECKING:  # zarr is imported on first use: writers of plain files do not need it
    import zarr

__all__ = ["atomic_dir", "atomic_file", "atomic_store", "check_output", "check_ours", "OutputKind", "check_writable",
           "is_local", "output_lock",
           "array", "group", "read", "attrs", "CHUNKS_ATTR", "compressors", "fill_value",
           "open_group", "seal", "verify", "consolidate", "CheckedArray"]


LOCK_SUFFIX = ".lock"


def _lock_path(final: Path) -> Path:
    return final.with_name(f".{final.name}{LOCK_SUFFIX}")


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on the output ``path`` (local paths) for the block.

    The lock is a non-blocking ``flock`` on ``.<name>.lock`` in the target's folder: the
    kernel releases it when its process exits, so a killed writer never leaves a stale
    lock. A second holder raises :class:`OutputExistsError` naming ``path``. Leftover
    temporary siblings of killed writers of ``path`` are removed once the lock is held.
    """
    import fcntl

    final = Path(path)
    _mkdir(final.parent, final)
    lock = _lock_path(final)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as err:
            raise InputError(f"{final}: cannot write here: {err.strerror or err} ({lock})") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputExistsError(final, reason=f"{final} is being written by another process "
                                                  f"(it holds {lock}); wait for it to finish") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the previous holder removed the file between our open and flock: retry
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {os.uname().nodename}\n".encode())
        _remove_leftovers(final)
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def _remove_leftovers(final: Path) -> None:
    for pattern in (f".{final.name}.partial-*", f".{final.name}.old-*"):
        for left in final.parent.glob(pattern):
            if left.is_dir() and not left.is_symlink():
                shutil.rmtree(left, ignore_errors=True)
            else:
                left.unlink(missing_ok=True)


OutputKind = Literal["file", "scene", "maps", "corpus", "run", "report", "pictures", "any"]
"""What a writer writes, for :func:`check_ours`: ``--overwrite`` replaces only that."""

_ZARR_KINDS = {"maps": "twin-maps", "corpus": "twin-corpus"}
_REPORT_FILES = ("report.json", "check.json")
_WHAT = {"scene": "a scene folder (scene.json of kind 'twin-scene')",
         "maps": "a maps store (zarr.json of kind 'twin-maps')",
         "corpus": "a corpus store (zarr.json of kind 'twin-corpus')",
         "run": "a training run folder (last.pt or best.pt, or config.yaml with metrics.csv)",
         "report": f"a report folder ({' or '.join(_REPORT_FILES)})",
         "pictures": "a folder of PNG pictures (nothing else in it)",
         "any": "an output of this toolkit"}


def _json_kind(file: Path, attributes: bool) -> str | None:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    if attributes:
        data = data.get("attributes") if isinstance(data, dict) else None
    kind = data.get("kind") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def _is_ours(path: Path, kind: OutputKind) -> bool:
    if kind == "any":
        return any(_is_ours(path, k) for k in ("scene", "maps", "corpus", "run", "report", "pictures"))
    if kind == "scene":
        return _json_kind(path / "scene.json", attributes=False) == "twin-scene"
    if kind in _ZARR_KINDS:
        return _json_kind(path / "zarr.json", attributes=True) == _ZARR_KINDS[kind]
    if kind == "run":  # a checkpoint, or a run killed before its first one (config.yaml with metrics.csv)
        return any((path / name).is_file() for name in ("last.pt", "best.pt")) or \
            all((path / name).is_file() for name in ("config.yaml", "metrics.csv"))
    if kind == "report":
        return any((path / name).is_file() for name in _REPORT_FILES)
    if kind == "pictures":
        return all(p.is_file() and p.suffix.lower() == ".png" for p in path.iterdir())
    raise ValueError(f"unknown output kind {kind!r}")


def check_ours(path: str | os.PathLike, kind: OutputKind = "any") -> None:
    """Raise :class:`OutputExistsError` naming ``path`` unless replacing it loses nothing but our output.

    ``--overwrite`` deletes the existing target, so it must be what the writer writes:
    a ``"file"`` writer never replaces a folder; a folder writer replaces an empty folder
    or one of its ``kind``: ``"scene"`` has a ``scene.json`` of kind ``twin-scene``;
    ``"maps"`` / ``"corpus"`` a root ``zarr.json`` whose attribute ``kind`` is
    ``twin-maps`` / ``twin-corpus``; ``"run"`` a ``last.pt`` or ``best.pt`` (or, killed
    before its first checkpoint, ``config.yaml`` with ``metrics.csv``); ``"report"`` a
    ``report.json`` or ``check.json``; ``"pictures"`` only ``.png`` files; ``"any"`` any
    of those. A missing ``path`` passes. These files decide: what a user added inside
    such an output is replaced with it.
    """
    path = Path(path)
    if kind == "file":
        if path.is_dir() and not path.is_symlink():
            raise OutputExistsError(path, reason=f"{path} is a folder; this output is a file: refusing to "
                                                 "replace the folder (remove it yourself or choose another path)")
        return
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise OutputExistsError(path, reason=f"{path} is a file; this output is {_WHAT[kind]}: refusing to "
                                             "replace it (remove it yourself or choose another path)")
    if not any(path.iterdir()) or _is_ours(path, kind):
        return
    raise OutputExistsError(path, reason=f"{path} does not look like {_WHAT[kind]} written by this toolkit: "
                                         "refusing to --overwrite it (remove it yourself or choose another path)")


def check_output(path: str | os.PathLike, overwrite: bool, kind: OutputKind = "any") -> Path:
    """Return ``path`` as a Path; raise :class:`OutputExistsError` if it exists and not ``overwrite``
    or, with ``overwrite``, when it is not an output of ``kind`` (:func:`check_ours`);
    :class:`InputError` if it cannot be written (under a regular file, in a read-only folder).

    Writers call it before any long work, so a bad ``--out`` fails first.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(path)
    check_ours(path, kind)
    check_writable(path)
    return path


def check_writable(path: str | os.PathLike) -> None:
    """Raise :class:`InputError` naming ``path`` when it cannot be created: its nearest existing
    ancestor is not a folder, or is a folder this process may not write into."""
    path = Path(path)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{path}: cannot write here: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write here: the folder {parent} is not writable")


def _mkdir(folder: Path, target: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{target}: cannot write here: {err.strerror or err} ({err.filename or folder})") from err


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace(tmp: Path, final: Path, overwrite: bool = True) -> None:
    if not overwrite and (final.exists() or final.is_symlink()):
        raise OutputExistsError(final, reason=f"{final} appeared while this output was being written; "
                                              "pass --overwrite (overwrite=True) to replace it")
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
def atomic_dir(path: str | os.PathLike, overwrite: bool = False, kind: OutputKind = "any") -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` when the block succeeds.

    On an exception the temporary directory is removed and ``path`` is untouched. The
    target is locked for the block (:func:`output_lock`). ``overwrite`` replaces only an
    output of ``kind`` (:func:`check_ours`).
    """
    final = check_output(path, overwrite, kind)
    with output_lock(final):
        check_output(final, overwrite, kind)  # it may have been written while we waited for the lock
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the output should not be
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            _replace(tmp, final, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary file path that replaces ``path`` when the block succeeds (target locked).

    A folder at ``path`` is never replaced, even with ``overwrite`` (:func:`check_ours`).
    """
    final = check_output(path, overwrite, "file")
    with output_lock(final):
        check_output(final, overwrite, "file")
        fd, name = tempfile.mkstemp(prefix=f".{final.name}.partial-", suffix=final.suffix, dir=final.parent)
        os.close(fd)
        tmp = Path(name)
        tmp.chmod(0o666 & ~_umask())
        try:
            yield tmp
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:
            _replace(tmp, final, overwrite)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def is_local(url: str | os.PathLike) -> bool:
    """Whether ``url`` is a plain local path (not ``s3://``, ``gs://``, ``memory://`` ...)."""
    text = os.fspath(url)
    return "://" not in text or text.startswith("file://")


@contextlib.contextmanager
def atomic_store(url: str | os.PathLike, overwrite: bool = False,
                 kind: Literal["maps", "corpus", "any"] = "any") -> Iterator[str]:
    """Yield where to build a Zarr store that appears at ``url`` only when the block succeeds.

    Local paths are built in a temporary sibling and renamed. For remote fsspec URLs,
    where no rename is atomic, the store is written in place and readers rely on the
    ``complete`` attribute that writers set last. ``overwrite`` replaces only a store of
    ``kind`` (:func:`check_ours`), remote ones included.
    """
    if is_local(url):
        text = os.fspath(url)
        with atomic_dir(text.removeprefix("file://"), overwrite=overwrite, kind=kind) as tmp:
            yield str(tmp)
    else:
        import fsspec

        fs, path = fsspec.core.url_to_fs(os.fspath(url))
        if fs.exists(path):
            if not overwrite:
                raise OutputExistsError(url)
            _check_remote_store(fs, path, os.fspath(url), kind)
            fs.rm(path, recursive=True)
        yield os.fspath(url)


def _check_remote_store(fs: Any, path: str, url: str, kind: Literal["maps", "corpus", "any"]) -> None:
    if not fs.ls(path):
        return
    want = set(_ZARR_KINDS.values()) if kind == "any" else {_ZARR_KINDS[kind]}
    found = None
    try:
        meta = json.loads(fs.cat_file(f"{path.rstrip('/')}/zarr.json"))
        found = (meta.get("attributes") or {}).get("kind") if isinstance(meta, dict) else None
    except (OSError, ValueError, AttributeError):
        pass
    if found not in want:
        raise OutputExistsError(url, reason=f"{url} does not look like {_WHAT[kind]} written by this toolkit: "
                                            "refusing to --overwrite it (remove it yourself or choose another URL)")


CHUNKS_ATTR = "chunks_written"
"""Root attribute written by :func:`seal`: array path -> number of chunk files."""


def compressors() -> tuple[Any, ...]:
    """The codecs every array is compressed with: Blosc zstd, then a CRC32C checksum per chunk.

    The checksum costs about 1-2 % of a full read (measured alone: 0.8 % of a corpus's
    sample arrays, 1.6 % of radio maps; ``bench/bench_checksum.py``, docs/benchmarks.md,
    "Checksum cost") and turns a flipped bit into an error naming the chunk file instead
    of a wrong value.
    """
    from zarr.codecs import BloscCodec, Crc32cCodec

    return (BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"), Crc32cCodec())


def fill_value(dtype: Any) -> Any:
    """The fill value of an array of ``dtype``: NaN for floats (a missing chunk never reads as 0 dB),
    -1 for signed integers, 0 otherwise. :func:`verify` refuses missing chunks anyway."""
    kind = np.dtype(dtype).kind
    if kind == "f":
        return np.nan
    if kind == "i":
        return -1
    return 0


def _json_error(url: str, path: str, err: Exception) -> InputError:
    where = "/".join(p for p in (url.rstrip("/"), path.strip("/"), "zarr.json") if p)
    return InputError(f"{where}: corrupt Zarr metadata ({type(err).__name__}: {err}); "
                      "the store is damaged, write it again")


def open_group(url: str | os.PathLike, mode: Literal["r", "r+"] = "r", missing: str | None = None) -> zarr.Group:
    """Open the Zarr group at ``url``; a missing one raises :class:`StoreNotFoundError` (``missing``
    is its message), a ``zarr.json`` that is not JSON an :class:`InputError` naming the file."""
    import zarr

    text = os.fspath(url)
    try:
        return zarr.open_group(text, mode=mode)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
        raise StoreNotFoundError(missing or f"{text}: no Zarr store here") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _json_error(text, "", err) from err


def _arrays(root: zarr.Group) -> Iterator[tuple[str, zarr.Array]]:
    import zarr

    for path, node in root.members(max_depth=None):
        if isinstance(node, zarr.Array):
            yield path, node


def seal(root: zarr.Group) -> dict[str, int]:
    """Record every array's number of chunk files in the root attribute ``chunks_written``.

    Call it last, just before setting ``complete``: :func:`verify` compares the record
    with the store at every open. Chunks that hold only the fill value are not written
    by zarr; they are not counted and read back correctly.
    """
    counts = {path: int(node.nchunks_initialized) for path, node in _arrays(root)}
    root.attrs[CHUNKS_ATTR] = counts
    return counts


def _missing_chunks(node: zarr.Array, limit: int = 5) -> list[str]:
    store = node.store_path
    keys = []
    for coords in itertools.product(*(range(n) for n in node.cdata_shape)):
        key = node.metadata.encode_chunk_key(coords)
        if not _sync(store.store.exists(f"{node.path}/{key}")):
            keys.append(key)
            if len(keys) >= limit:
                break
    return keys


def _sync(coro: Any) -> Any:
    from zarr.core.sync import sync

    return sync(coro)


def verify(root: zarr.Group, url: str | os.PathLike) -> None:
    """Refuse a store whose arrays lack chunk files that :func:`seal` recorded, naming the array.

    Stores written before the record existed (no ``chunks_written``) are not checked.
    """
    record = root.attrs.get(CHUNKS_ATTR)
    if not isinstance(record, dict):
        return
    text = os.fspath(url)
    for path, node in _arrays(root):
        want = record.get(path)
        if want is None:
            raise InputError(f"{text}: array '{path}' is not in the store's record of written chunks "
                             f"('{CHUNKS_ATTR}'); the store was changed after it was written")
        have = int(node.nchunks_initialized)
        if have < int(want):
            gone = _missing_chunks(node)
            raise InputError(f"{text}: array '{path}' is incomplete: {have} of its {want} chunk files are there "
                             f"(missing {', '.join(f'{path}/{k}' for k in gone)}); the store is damaged, write it again")
    for path in record:
        if path not in dict(_arrays(root)):
            raise InputError(f"{text}: array '{path}' is missing (the store records it); write the store again")


def consolidate(url: str) -> None:
    """Write consolidated metadata at ``url`` (one read opens the whole store; xarray opens it
    without a warning). A zarr-python extension to Zarr v3, written knowingly."""
    import warnings

    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(url)


class CheckedArray:
    """A read-mostly view of a :class:`zarr.Array` whose reads name the chunk file at fault.

    Indexing, :meth:`get_orthogonal_selection` and everything else behave as the array's;
    a chunk that fails its CRC32C checksum or does not decode raises :class:`InputError`
    ``<store>/<array>/c/...: chunk is corrupt`` instead of a codec's bare error.
    """

    def __init__(self, node: zarr.Array, where: str):
        self._node = node
        self._where = where

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)

    def __setitem__(self, selection: Any, value: Any) -> None:
        self._node[selection] = value

    def __getitem__(self, selection: Any) -> Any:
        return self._read(lambda: self._node[selection])

    def get_orthogonal_selection(self, selection: Any) -> Any:
        return self._read(lambda: self._node.get_orthogonal_selection(selection))

    @property
    def zarr(self) -> zarr.Array:
        """The wrapped array."""
        return self._node

    def _read(self, func: Any) -> Any:
        try:
            return func()
        except (ValueError, RuntimeError, TypeError) as err:
            if isinstance(err, InputError):
                raise
            raise self._corrupt(err) from err

    def _corrupt(self, err: Exception) -> InputError:
        bad = None
        for coords in itertools.product(*(range(n) for n in self._node.cdata_shape)):
            try:
                self._node.get_block_selection(coords)
            except (ValueError, RuntimeError, TypeError):
                bad = self._node.metadata.encode_chunk_key(coords)
                break
        if bad is None:
            raise err
        path = "/".join(p for p in (self._where.rstrip("/"), self._node.path, bad) if p)
        return InputError(f"{path}: chunk is corrupt ({type(err).__name__}: {err}); the store is damaged, "
                          "write it again")


def _member(parent: zarr.Group, name: str, where: str | None) -> object:
    try:
        return parent[name]
    except KeyError:
        raise InputError(f"{where or parent.store_path}: no '{name}' in '{parent.path or '/'}'") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        path = "/".join(p for p in (parent.path, name) if p)
        raise _json_error(where or str(parent.store_path), path, err) from err


def array(parent: zarr.Group, name: str, where: str | None = None) -> CheckedArray:
    """The array ``name`` of ``parent``; ``where`` (the store's URL) names the store in errors.

    Returned as a :class:`CheckedArray`: a corrupt chunk raises an error naming its file.
    """
    import zarr

    node = _member(parent, name, where)
    if not isinstance(node, zarr.Array):
        raise InputError(f"{where or parent.store_path}: '{name}' in '{parent.path or '/'}' is not an array")
    return CheckedArray(node, where or str(parent.store_path))
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
