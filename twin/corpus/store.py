"""The Zarr v3 corpus: radio and semantic maps per scene, measurement sequences per sample.

Layout (``schema_version`` 1, documented in ``docs/corpus.md``)::

    corpus.zarr/                 attrs: schema_version, kind="twin-corpus", complete,
                                        feature_names, feature_units, max_events,
                                        split_schemes, split_names, stats, counts, config
      scenes/<k>/                attrs: name, grid, frame (crs, origin), radio_channels,
                                        semantic_channels
        radio_maps      (C_r, H, W) float32   dims (radio_channel, y, x)
        semantic_maps   (C_o, H, W) float32   dims (semantic_channel, y, x)
        cell_id         (n_cells,)  int64     the BS file's cell ids
        cell_maps       (n_cells, F, H, W) float32  each cell's map of each event feature
                                              (the physics term's r(y)), NaN where not received
        cell_xy_m       (n_cells, 2) float32  the cells' site positions in scene metres
      samples/
        position_xy_m   (N, 2)      float32   the UE's true position at the last event [m]
        event_xy_m      (N, T, 2)   float32   the UE's true position at each event [m]
        cell_id         (N, T)      int64     -1 where masked
        beam_id         (N, T)      int32     -1 where there are no beams
        time_s          (N, T)      float32   seconds from the sequence start
        features        (N, T, F)   float32   NaN where not reported
        mask            (N, T)      bool      True where the event is real
        scene_index     (N,)        int32     index into scenes/
        group_id        (N,)        int64     street segment (or block) the sample lies on
        split_<scheme>  (N,)        uint8     index into split_names (train, val, test)

Sample arrays are chunked along the sample axis and written in whole chunks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import zarr

from twin import io
from twin.errors import InputError
from twin.geo import Grid, SceneFrame
from twin.io import atomic_store

__all__ = [
    "SCHEMA_VERSION", "SPLIT_NAMES", "CorpusWriter", "Corpus", "open_corpus",
    "sample_array_specs", "moment_sums", "mean_std", "add_split_scheme",
]

SCHEMA_VERSION = 1
SPLIT_NAMES = ("train", "val", "test")
_NO_PART = 255  # split fill value: a sample in no part (a chunk never written reads as no part, not as train)


def sample_array_specs(max_events: int, n_features: int) -> dict[str, tuple[tuple[int, ...], str, tuple[str, ...], Any]]:
    """Per-sample arrays: name -> (trailing shape, dtype, dimension names, fill value).

    Fill values are what an unwritten chunk reads as: NaN or -1 where a value can be missing.
    """
    t, f = max_events, n_features
    return {
        "position_xy_m": ((2,), "float32", ("sample", "xy"), np.nan),
        "event_xy_m": ((t, 2), "float32", ("sample", "event", "xy"), np.nan),
        "cell_id": ((t,), "int64", ("sample", "event"), -1),
        "beam_id": ((t,), "int32", ("sample", "event"), -1),
        "time_s": ((t,), "float32", ("sample", "event"), np.nan),
        "features": ((t, f), "float32", ("sample", "event", "feature"), np.nan),
        "mask": ((t,), "bool", ("sample", "event"), False),
        "scene_index": ((), "int32", ("sample",), -1),
        "group_id": ((), "int64", ("sample",), -1),
    }


def _check_samples(samples: dict[str, np.ndarray], specs: dict, split_schemes: Sequence[str]) -> int:
    required = set(specs) | {f"split_{s}" for s in split_schemes}
    missing = sorted(required - set(samples))
    if missing:
        raise InputError(f"corpus samples lack array(s) {', '.join(missing)}")
    unknown = sorted(set(samples) - required)
    if unknown:
        raise InputError(f"corpus samples have unknown array(s) {', '.join(unknown)}")
    n = len(samples["position_xy_m"])
    for name, array in samples.items():
        trailing = specs[name][0] if name in specs else ()
        if np.shape(array) != (n, *trailing):
            raise InputError(f"corpus samples: '{name}' has shape {np.shape(array)}, expected {(n, *trailing)}")
    return n


class CorpusWriter:
    """Write a corpus: scenes first, then samples in whole chunks, then :meth:`close`.

    Parameters
    ----------
    url : str or path
        Local path or any fsspec URL of the ``.zarr`` store to create.
    feature_names, feature_units : sequence of str
        Names and units of the per-event feature vector, e.g. ``("rsrp_dbm", ...)``, ``("dBm", ...)``.
    max_events : int
        ``T``, the padded sequence length.
    split_schemes : sequence of str
        Split arrays written per sample, e.g. ``("random", "spatial")``.
    config : dict, optional
        The resolved generating config, stored in the attributes.
    chunk_samples : int
        Samples per chunk along the sample axis.
    n_samples : int, optional
        Preallocate this many samples; regions are then written with :meth:`write_at`
        (used by shard-parallel generation so that no two tasks write the same chunk).
    in_place : bool
        Write at ``url`` directly instead of a temporary sibling renamed by :meth:`close`:
        for a store that outlives one process (resumable generation, which keeps it in its
        own ``.partial`` folder and reopens it with :meth:`reopen`).
    """

    def __init__(self, url: str | os.PathLike, feature_names: Sequence[str], feature_units: Sequence[str],
                 max_events: int, split_schemes: Sequence[str] = ("random", "spatial"),
                 config: dict[str, Any] | None = None, chunk_samples: int = 4096,
                 n_samples: int | None = None, overwrite: bool = False, in_place: bool = False):
        if len(feature_names) != len(feature_units):
            raise InputError("corpus: feature_names and feature_units differ in length")
        self.url = os.fspath(url)
        self.feature_names = list(feature_names)
        self.feature_units = list(feature_units)
        self.max_events = int(max_events)
        self.split_schemes = list(split_schemes)
        self.chunk_samples = int(chunk_samples)
        self._specs = sample_array_specs(self.max_events, len(self.feature_names))
        self._ctx = contextlib.nullcontext(self.url) if in_place else atomic_store(self.url, overwrite=overwrite, kind="corpus")
        self._build_url = self._ctx.__enter__()
        self._closed = False
        self.root = zarr.open_group(self._build_url, mode="w")
        self.root.attrs.update({
            "schema_version": SCHEMA_VERSION, "kind": "twin-corpus", "complete": False,
            "feature_names": self.feature_names, "feature_units": self.feature_units,
            "max_events": self.max_events, "split_schemes": self.split_schemes,
            "split_names": list(SPLIT_NAMES), "config": config or {},
        })
        self.root.create_group("scenes")
        samples = self.root.create_group("samples")
        n0 = int(n_samples or 0)
        self._arrays: dict[str, Any] = {}
        all_specs = dict(self._specs)
        for scheme in self.split_schemes:
            all_specs[f"split_{scheme}"] = ((), "uint8", ("sample",), _NO_PART)
        for name, (trailing, dtype, dims, fill) in all_specs.items():
            self._arrays[name] = samples.create_array(
                name, shape=(n0, *trailing), chunks=(self.chunk_samples, *trailing), dtype=dtype,
                dimension_names=dims, fill_value=fill, compressors=io.compressors(),
            )
        self._n_written = 0 if n_samples is None else n0
        self._buffer: list[dict[str, np.ndarray]] = []
        self._buffered = 0
        self.n_scenes = 0

    @classmethod
    def reopen(cls, url: str | os.PathLike) -> CorpusWriter:
        """Open a preallocated store made with ``in_place=True`` to write scenes and regions into it.

        Each shard of a parallel generation reopens the store and writes only its own scene
        group (:meth:`add_scene` with ``index``) and sample region (:meth:`write_at`).
        """
        self = cls.__new__(cls)
        self.url = os.fspath(url)
        self.root = io.open_group(self.url, mode="r+")
        attrs = io.attrs(self.root)
        if attrs.get("kind") != "twin-corpus":
            raise InputError(f"{self.url}: not a twin corpus (attribute kind={attrs.get('kind')!r})")
        self.feature_names = list(attrs["feature_names"])
        self.feature_units = list(attrs["feature_units"])
        self.max_events = int(attrs["max_events"])
        self.split_schemes = list(attrs["split_schemes"])
        self._specs = sample_array_specs(self.max_events, len(self.feature_names))
        samples = io.group(self.root, "samples", self.url)
        self._arrays = {name: io.array(samples, name, self.url) for name in (*self._specs, *(f"split_{s}" for s in self.split_schemes))}
        self.chunk_samples = int(self._arrays["position_xy_m"].chunks[0])
        self._ctx = contextlib.nullcontext(self.url)
        self._build_url = self.url
        self._closed = False
        self._n_written = int(self._arrays["position_xy_m"].shape[0])
        self._buffer = []
        self._buffered = 0
        self.n_scenes = len(list(io.group(self.root, "scenes", self.url).group_keys()))
        return self

    def add_scene(self, name: str, grid: Grid, frame: SceneFrame | None = None,
                  radio_maps: np.ndarray | None = None, radio_channels: Sequence[str] = (),
                  semantic_maps: np.ndarray | None = None, semantic_channels: Sequence[str] = (),
                  cell_id: np.ndarray | None = None, cell_xy_m: np.ndarray | None = None,
                  cell_maps: np.ndarray | None = None, index: int | None = None) -> int:
        """Add a scene's maps ``(C, H, W)`` on ``grid`` and its cells; return the scene index.

        ``cell_maps`` ``(n_cells, F, H, W)`` holds each cell's map of each event feature
        (in ``feature_names`` order) when the scene was traced; omit it for real data.
        ``index`` writes scene ``index`` (replacing it if present: a retried shard) instead
        of the next one.
        """
        key = str(self.n_scenes if index is None else int(index))
        group = io.group(self.root, "scenes", self.url).create_group(key, overwrite=True)
        group.attrs.update({
            "name": name, "grid": grid.to_dict(), "frame": frame.to_dict() if frame else None,
            "radio_channels": list(radio_channels), "semantic_channels": list(semantic_channels),
        })
        for key, maps, channels, dim in (("radio_maps", radio_maps, radio_channels, "radio_channel"),
                                         ("semantic_maps", semantic_maps, semantic_channels, "semantic_channel")):
            data = np.zeros((0, *grid.shape), np.float32) if maps is None else np.asarray(maps, np.float32)
            if data.shape[1:] != grid.shape or data.shape[0] != len(channels):
                raise InputError(f"scene '{name}': {key} has shape {data.shape}, expected "
                                 f"({len(channels)}, {grid.height}, {grid.width})")
            group.create_array(key, data=data, chunks=(1, *grid.shape), dimension_names=(dim, "y", "x"),
                               compressors=io.compressors(), fill_value=np.nan)
        ids = np.asarray(cell_id if cell_id is not None else [], np.int64)
        xy = np.asarray(cell_xy_m if cell_xy_m is not None else np.zeros((0, 2)), np.float32).reshape(-1, 2)
        if len(ids) != len(xy):
            raise InputError(f"scene '{name}': {len(ids)} cell ids but {len(xy)} cell positions")
        group.create_array("cell_id", data=ids, dimension_names=("cell",), compressors=io.compressors(),
                           fill_value=-1)
        f = len(self.feature_names)
        per_cell = (np.zeros((len(ids), f, 0, 0), np.float32) if cell_maps is None
                    else np.asarray(cell_maps, np.float32))
        if cell_maps is not None and per_cell.shape != (len(ids), f, *grid.shape):
            raise InputError(f"scene '{name}': cell_maps has shape {per_cell.shape}, expected "
                             f"({len(ids)}, {f}, {grid.height}, {grid.width})")
        chunks: tuple[int, ...] | Literal["auto"] = (1, max(f, 1), *grid.shape) if per_cell.size else "auto"
        # Distinct channel names per array and, for the empty placeholder, distinct spatial
        # names, so that xarray.open_zarr opens the scene group without size conflicts.
        dims = ("cell", "feature", "y", "x") if per_cell.size else ("cell", "feature", "no_y", "no_x")
        group.create_array("cell_maps", data=per_cell, chunks=chunks, dimension_names=dims,
                           compressors=io.compressors(), fill_value=np.nan)
        group.create_array("cell_xy_m", data=xy, dimension_names=("cell", "xy"), compressors=io.compressors(),
                           fill_value=np.nan)
        if index is None:
            self.n_scenes += 1
            return self.n_scenes - 1
        self.n_scenes = max(self.n_scenes, int(index) + 1)
        return int(index)

    def append(self, samples: dict[str, np.ndarray]) -> None:
        """Append samples (arrays of :func:`sample_array_specs` plus ``split_<scheme>``)."""
        n = _check_samples(samples, self._specs, self.split_schemes)
        if n == 0:
            return
        self._buffer.append({k: np.asarray(v) for k, v in samples.items()})
        self._buffered += n
        if self._buffered >= self.chunk_samples:
            self._flush(whole_chunks_only=True)

    def write_at(self, start: int, samples: dict[str, np.ndarray]) -> None:
        """Write samples at ``[start, start + n)`` of a preallocated corpus."""
        n = _check_samples(samples, self._specs, self.split_schemes)
        for name, array in self._arrays.items():
            if start + n > array.shape[0]:
                raise InputError(f"corpus: region [{start}, {start + n}) exceeds {array.shape[0]} samples")
            array[start:start + n] = samples[name]

    def _flush(self, whole_chunks_only: bool) -> None:
        if not self._buffer:
            return
        merged = {k: np.concatenate([b[k] for b in self._buffer]) for k in self._buffer[0]}
        n = len(merged["position_xy_m"])
        take = (n // self.chunk_samples) * self.chunk_samples if whole_chunks_only else n
        if take == 0:
            return
        start = self._n_written
        for name, array in self._arrays.items():
            array.resize((start + take, *array.shape[1:]))
            array[start:start + take] = merged[name][:take]
        self._n_written += take
        rest = {k: v[take:] for k, v in merged.items()}
        self._buffer = [rest] if n > take else []
        self._buffered = n - take

    def close(self, extra_attrs: dict[str, Any] | None = None) -> Corpus:
        """Flush, write statistics and counts, mark complete and move the store into place."""
        if self._closed:
            raise RuntimeError("corpus writer already closed")
        try:
            self._flush(whole_chunks_only=False)
            self.root.attrs.update({**compute_statistics(self.root, self.feature_names, self.split_schemes),
                                    **(extra_attrs or {})})
            io.seal(self.root)
            self.root.attrs["complete"] = True
            # Consolidated metadata saves one request per array on object storage.
            io.consolidate(self._build_url)
        except BaseException as err:
            self._ctx.__exit__(type(err), err, err.__traceback__)
            self._closed = True
            raise
        self._ctx.__exit__(None, None, None)
        self._closed = True
        return open_corpus(self.url)

    def abort(self) -> None:
        """Discard everything written (the output path is left as it was)."""
        if not self._closed:
            err = RuntimeError("corpus writer aborted")
            with contextlib.suppress(RuntimeError):
                self._ctx.__exit__(RuntimeError, err, None)
            self._closed = True

    def __enter__(self) -> CorpusWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()


def moment_sums(values: np.ndarray, valid: np.ndarray, axis: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray]:
    """Count, sum and sum of squares of ``values`` where ``valid`` (and finite), reduced over ``axis`` (float64)."""
    ok = valid & np.isfinite(values)
    v = np.where(ok, values.astype(np.float64), 0.0)
    return ok.sum(axis=axis).astype(np.float64), v.sum(axis=axis), (v**2).sum(axis=axis)


def mean_std(count: np.ndarray, total: np.ndarray, total_sq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one statistics rule of feature and map normalization: mean and standard deviation from moment sums.

    Divides by ``n`` (the population variance, not ``n - 1``): the statistics describe the
    data a model is normalized with, and sums of several corpora pool exactly (counts,
    sums and sums of squares add up). Where ``n == 0`` the mean is 0; where ``n < 2`` or
    the deviation is below ``1e-6 * max(1, |mean|)`` (a constant feature) it is 1, so
    ``(value - mean) / std`` stays finite.
    """
    count, total, total_sq = (np.asarray(a, np.float64) for a in (count, total, total_sq))
    n = np.maximum(count, 1.0)
    mean = np.where(count > 0, total / n, 0.0)
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 0.0))
    std = np.where((count > 1) & (std > 1e-6 * np.maximum(1.0, np.abs(mean))), std, 1.0)
    return mean, std


def compute_statistics(root: Any, feature_names: Sequence[str], split_schemes: Sequence[str],
                       block: int = 65536) -> dict[str, Any]:
    """Feature means / standard deviations over real events of the training part, and counts.

    The normalization statistics use the ``train`` part of the first split scheme (all samples
    when there is none), streaming over ``block`` samples at a time.
    """
    samples = root["samples"]
    n = samples["position_xy_m"].shape[0]
    f = len(feature_names)
    total = np.zeros(f)
    total_sq = np.zeros(f)
    count = np.zeros(f)
    counts: dict[str, dict[str, int]] = {s: dict.fromkeys(SPLIT_NAMES, 0) for s in split_schemes}
    for start in range(0, n, block):
        stop = min(n, start + block)
        feats = samples["features"][start:stop].astype(np.float64)
        mask = samples["mask"][start:stop]
        use = np.ones(stop - start, bool)
        for k, scheme in enumerate(split_schemes):
            split = samples[f"split_{scheme}"][start:stop]
            for code, name in enumerate(SPLIT_NAMES):
                counts[scheme][name] += int((split == code).sum())
            if k == 0:
                use = split == 0
        n_b, s_b, sq_b = moment_sums(feats[use], mask[use][..., None], axis=(0, 1))
        count += n_b
        total += s_b
        total_sq += sq_b
    mean, std = mean_std(count, total, total_sq)
    return {
        "stats": {"feature_mean": mean.tolist(), "feature_std": std.tolist(),
                  "feature_count": count.astype(int).tolist()},
        "counts": {"samples": int(n), "scenes": len(list(root["scenes"].group_keys())), "splits": counts},
    }


@dataclass(frozen=True)
class SceneMaps:
    """One scene of a corpus: maps ``(C, H, W)`` on ``grid`` and its cells."""

    name: str
    grid: Grid
    frame: SceneFrame | None
    radio_maps: np.ndarray
    radio_channels: list[str]
    semantic_maps: np.ndarray
    semantic_channels: list[str]
    cell_id: np.ndarray
    cell_xy_m: np.ndarray
    cell_maps: np.ndarray | None


class Corpus:
    """Read access to a complete corpus without loading it: batches come as numpy or torch."""

    def __init__(self, url: str | os.PathLike):
        self.url = os.fspath(url)
        self.root = io.open_group(self.url, missing=f"{self.url}: no corpus here (not a Zarr group)")
        attrs = io.attrs(self.root)
        if attrs.get("kind") != "twin-corpus":
            raise InputError(f"{self.url}: not a twin corpus (attribute kind={attrs.get('kind')!r})")
        version = attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(f"{self.url}: corpus schema_version {version}, this toolkit reads {SCHEMA_VERSION}")
        if not attrs.get("complete", False):
            raise InputError(f"{self.url}: corpus is incomplete (its writer did not finish)")
        io.verify(self.root, self.url)
        self.attrs = attrs
        self.samples = io.group(self.root, "samples", self.url)

    @property
    def feature_names(self) -> list[str]:
        return list(self.attrs["feature_names"])

    @property
    def feature_units(self) -> list[str]:
        return list(self.attrs["feature_units"])

    @property
    def max_events(self) -> int:
        return int(self.attrs["max_events"])

    @property
    def split_schemes(self) -> list[str]:
        return list(self.attrs["split_schemes"])

    @property
    def stats(self) -> dict[str, list[float]]:
        return dict(self.attrs["stats"])

    @property
    def n_scenes(self) -> int:
        return len(list(io.group(self.root, "scenes", self.url).group_keys()))

    def _array(self, name: str) -> io.CheckedArray:
        return io.array(self.samples, name, self.url)

    def __len__(self) -> int:
        return int(self._array("position_xy_m").shape[0])

    def split_indices(self, scheme: str, part: str) -> np.ndarray:
        """Sample indices of split ``part`` (train/val/test) under ``scheme``."""
        if scheme not in self.split_schemes:
            raise InputError(f"{self.url}: no split scheme '{scheme}'; has {', '.join(self.split_schemes)}")
        if part not in SPLIT_NAMES:
            raise InputError(f"split part '{part}' is not one of {', '.join(SPLIT_NAMES)}")
        return np.flatnonzero(np.asarray(self._array(f"split_{scheme}")[:]) == SPLIT_NAMES.index(part))

    def batch(self, indices: Iterable[int] | slice, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Sample arrays at ``indices`` (sorted reads, returned in the order asked)."""
        names = list(names) if names is not None else list(self.samples.array_keys())
        if isinstance(indices, slice):
            return {k: np.asarray(self._array(k)[indices]) for k in names}
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64)
        if idx.size == 0:
            return {k: np.asarray(self._array(k)[0:0]) for k in names}
        order = np.argsort(idx)
        sorted_idx = idx[order]
        lo, hi = int(sorted_idx[0]), int(sorted_idx[-1]) + 1
        out: dict[str, np.ndarray] = {}
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        for k in names:
            # One contiguous read when the indices are dense, else coordinate selection.
            if hi - lo <= 4 * len(idx):
                block = np.asarray(self._array(k)[lo:hi])
                out[k] = block[sorted_idx - lo][inverse]
            else:
                out[k] = np.asarray(self._array(k).get_orthogonal_selection((sorted_idx,)))[inverse]
        return out

    def torch_batch(self, indices: Iterable[int] | slice) -> dict[str, Any]:
        """:meth:`batch` as torch tensors."""
        import torch

        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.batch(indices).items()}

    def scene(self, index: int) -> SceneMaps:
        """Maps and cells of scene ``index``."""
        group = io.group(self.root, f"scenes/{index}", self.url)
        a = io.attrs(group)
        cell_maps = io.array(group, "cell_maps", self.url)
        return SceneMaps(
            name=a["name"], grid=Grid.from_dict(a["grid"]),
            frame=SceneFrame.from_dict(a["frame"]) if a.get("frame") else None,
            radio_maps=io.read(group, "radio_maps", self.url), radio_channels=list(a["radio_channels"]),
            semantic_maps=io.read(group, "semantic_maps", self.url),
            semantic_channels=list(a["semantic_channels"]),
            cell_id=io.read(group, "cell_id", self.url), cell_xy_m=io.read(group, "cell_xy_m", self.url),
            cell_maps=np.asarray(cell_maps[...]) if cell_maps.size else None,
        )


def add_split_scheme(url: str | os.PathLike, name: str, labels: np.ndarray, overwrite: bool = False) -> Corpus:
    """Add the split scheme ``name`` (labels ``(N,)``: 0 train, 1 val, 2 test) to a complete corpus.

    Writes ``samples/split_<name>`` (chunked as the other sample arrays), records its chunks
    (:func:`twin.io.seal`), then lists the scheme and its counts, and consolidates. The
    normalization statistics stay those of the first scheme. An existing scheme is replaced
    only with ``overwrite``; a call interrupted before the record leaves a corpus that
    refuses to open, naming the array: run it again with ``overwrite=True``. Raises
    :class:`InputError` naming the corpus for a bad name, length or label.
    """
    text = os.fspath(url)
    corpus = open_corpus(text) if not overwrite else None  # a complete, verified corpus
    io.open_group(text)  # a missing store: StoreNotFoundError naming it
    root = zarr.open_group(text, mode="r+", use_consolidated=False)  # the members as they are, new ones included
    attrs = io.attrs(root)
    if attrs.get("kind") != "twin-corpus" or not attrs.get("complete", False):
        raise InputError(f"{text}: not a complete twin corpus; a split scheme is added to a finished one")
    if not name or not name.replace("_", "").isalnum():
        raise InputError(f"{text}: split scheme name {name!r} must be letters, digits and underscores")
    schemes = list(attrs["split_schemes"])
    if name in schemes and not overwrite:
        raise InputError(f"{text}: split scheme '{name}' exists; pass overwrite=True to replace it")
    samples = io.group(root, "samples", text)
    position = samples["position_xy_m"]
    assert isinstance(position, zarr.Array)
    n = int(position.shape[0])
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise InputError(f"{text}: split scheme '{name}' has {lab.shape} labels, the corpus {n} samples")
    bad = ~np.isin(lab, np.arange(len(SPLIT_NAMES)))
    if bad.any():
        raise InputError(f"{text}: split scheme '{name}': label {lab[bad][0]!r} of sample {int(np.flatnonzero(bad)[0])} "
                         f"is not one of 0, 1, 2 ({', '.join(SPLIT_NAMES)})")
    del corpus
    chunk = int(position.chunks[0])
    samples.create_array(f"split_{name}", shape=(n,), chunks=(chunk,), dtype="uint8", dimension_names=("sample",),
                         fill_value=_NO_PART, compressors=io.compressors(), overwrite=True)[:] = lab.astype(np.uint8)
    counts = dict(attrs.get("counts", {}))
    counts["splits"] = {**counts.get("splits", {}), name: {p: int((lab == k).sum()) for k, p in enumerate(SPLIT_NAMES)}}
    io.seal(root)  # the array is on record (the corpus opens) before the scheme is listed
    root.attrs.update({"split_schemes": schemes if name in schemes else [*schemes, name], "counts": counts})
    io.consolidate(text)
    return open_corpus(text)


def open_corpus(url: str | os.PathLike) -> Corpus:
    """Open a complete corpus for reading; raises :class:`InputError` naming the store otherwise."""
    return Corpus(url)
