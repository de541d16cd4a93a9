"""The torch Dataset over one or more Zarr corpora: sequences, map crops and cell maps.

:class:`CorpusDataset` yields per sample the dict of LEARN_CONTRACT.md (collated by
:func:`learn.data.loader.collate` into a batch; ``B`` batch, ``T`` events, ``F`` features, ``C`` map channels,
``S`` crop pixels, ``K`` cell slots)::

    cell_index    (B, T)        long   index into the cell vocabulary (0 = padding / unknown cell)
    beam_index    (B, T)        long   0 = none / padding, else beam_id + 1
    time_s        (B, T)        float  seconds from the sequence start (raw; 0 on padding)
    features      (B, T, F)     float  (value - feature_mean) / feature_std; 0 where invalid
    feature_valid (B, T, F)     bool   real event and finite value
    mask          (B, T)        bool   True for real events
    bs_xy         (B, T, 2)     float  the event's cell site in crop coordinates
    bs_valid      (B, T)        bool   the cell and its finite site position are known
    maps          (B, C, S, S)  float  crop of the radio + semantic channels, per-channel
                                       (value - map_mean) / map_std; 0 outside the scene
    map_valid     (B, 1, S, S)  bool   pixel centre inside the scene grid (and the scene has maps)
    phys_maps     (B, K, F, S, S) float crop of the cell maps of the sequence's K first distinct
                                       cells, normalized like ``features``; 0 where invalid
                                       (only with ``physics_maps``: absent otherwise)
    phys_valid    (B, K, F, S, S) bool finite cell-map value inside the scene (only with ``physics_maps``)
    lik_maps      (B, L, S, S)  float  physics-likelihood channels (:mod:`learn.data.likelihood`):
                                       map matching's energy of the sequence's last report
                                       on every crop pixel; L = 2 with ``DataConfig.likelihood``
                                       (and cell maps), else 0
    lik_loglik    (B, S, S)     float  map matching's log-likelihood -E/2 [nats] of the last report
                                       (:func:`learn.data.likelihood.loglik_pixels`); 0 without
                                       ``DataConfig.likelihood`` or cell maps
    lik_allowed   (B, S, S)     bool   the pixels map matching searches (inside the scene, on its
                                       pixel prior: roads); False without the likelihood
    event_slot    (B, T)        long   slot in K of each event's cell; -1 for padding, cells
                                       without maps, or cells beyond the K first
    target_xy     (B, 2)        float  the truth in crop coordinates
    crop_origin_m (B, 2)        float  south-west corner of the crop [scene m]
    crop_size_m   (B,)          float  side of the (square) crop [m]
    position_xy_m (B, 2)        float  the truth [scene m]
    scene_index   (B,)          long   scene of the sample in its corpus
    index         (B,)          long   the sample's index in its corpus
    corpus_index  (B,)          long   which of the dataset's corpora (extra key; 0 for one corpus)

**Crop coordinates.** ``(0, 0)`` is the crop's south-west corner, ``(1, 1)`` its north-east
corner; ``x`` east, ``y`` north: ``xy_m = crop_origin_m + xy * crop_size_m``.

**Crop images: row index grows NORTH**, like the scene :class:`twin.geo.Grid` (row ``i``
north, column ``j`` east). Pixel ``[r, c]`` of ``maps`` / ``phys_maps`` / ``map_valid`` is
the value at the pixel centre ``crop_origin_m + ((c + 0.5) / S, (r + 0.5) / S) *
crop_size_m``: row 0 is the southern edge (a picture needs ``origin="lower"``). Hence
``torch.nn.functional.grid_sample(phys_maps[:, k], g, align_corners=False)`` with
``g[..., 0] = 2 * target_xy[:, 0] - 1`` (x, along columns) and ``g[..., 1] = 2 *
target_xy[:, 1] - 1`` (y, along rows) samples the crop at the truth; so does
:func:`learn.data.resample.crop_to_grid` for any crop-coordinate point. The crop pixels are resampled from
the scene grid bilinearly with cell values at cell centres, exactly as
:meth:`twin.geo.Grid.sample` (``grid_sample`` with ``align_corners=False`` and
``padding_mode="border"``; NaN neighbours propagate, which marks ``phys_valid`` False).

**Crop placement** (:mod:`learn.data.crops`): the truth lies inside, offset from the centre by
up to ``max_offset_frac`` of the side; in evaluation (``training=False``) the offset depends
only on ``(crop_seed, index)`` (the crops of ``knn-square``), in training on ``(seed,
epoch, corpus, index)`` (call :meth:`CorpusDataset.set_epoch`), so batches do not depend
on the number of DataLoader workers.

**Normalization** (:mod:`learn.data.stats`) **and vocabulary** (:mod:`learn.data.vocab`) travel with checkpoints: :meth:`CorpusDataset.state`
returns plain lists/dicts (``torch.load(weights_only=True)`` safe), and a dataset built
with ``normalization=`` / ``cell_vocab=`` from a checkpoint reuses them. Feature statistics
default to the corpora's ``stats`` (train part of the first split scheme), pooled over the
corpora by count; map statistics are per channel over the pixels of the corpora's scenes
(the first ``stats_scenes`` of each). Cells are keyed ``"<scene name>:<cell id>"`` (so
equal ids in different scenes stay apart and shards of one scene share them).

**Workers.** Zarr stores are opened lazily in the process that reads them (reset after a
fork), scenes (maps, cells, cell maps) are cached per process (LRU of ``cache_scenes``),
and sample arrays of a corpus are loaded whole per process when they weigh less than
``preload_mb``. :func:`learn.data.loader.make_loader` builds a DataLoader that works with ``num_workers > 0``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from learn.data.crops import eval_crop_origins, random_crop_origins
from learn.data.likelihood import (
    LIKELIHOOD_CHANNELS,
    crop_energy,
    energy_channels,
    heard_rows,
    loglik_pixels,
    matchable_maps,
    pixel_prior_of,
)
from learn.data.resample import resample_crops
from learn.data.scenes import has_cell_maps, scene_group, scene_maps
from learn.data.stats import Normalization, compute_normalization
from learn.data.vocab import CellVocab, align_features
from twin import io
from twin.corpus.store import Corpus, open_corpus
from twin.errors import InputError, collect
from twin.geo import Grid

__all__ = ["DataConfig", "CorpusDataset", "BATCH_KEYS", "as_data_config"]

BATCH_KEYS = ("cell_index", "beam_index", "time_s", "features", "feature_valid", "mask", "bs_xy", "bs_valid",
              "maps", "map_valid", "phys_maps", "phys_valid", "lik_maps", "lik_loglik", "lik_allowed", "event_slot", "target_xy", "crop_origin_m",
              "crop_size_m", "position_xy_m", "scene_index", "index", "corpus_index")


TRAIN_CROPS = ("random", "auto", "coarse", "serving-cell")

_SAMPLE_ARRAYS = ("position_xy_m", "cell_id", "beam_id", "time_s", "features", "mask", "scene_index")


@dataclass(frozen=True)
class DataConfig:
    """Crop and slot settings: the one data config of every model (``data:`` of the run configs).

    Parameters
    ----------
    crop_size_m : float
        Side of the square crop [m]. 600 m (seed 004): wide enough to hold several cells'
        sites and the errors of a coarse prior, small enough for a 4-5 m pixel at 128 px.
    crop_px : int
        ``S``, pixels per side of the resampled crop. 128: ~4.7 m pixels over 600 m, the
        scene grid's 4 m cell; the presets choose per model (64 small, 256 paper, 224 heatmap
        full), a multiple of the model's patch.
    max_cells : int
        ``K``, cell-map slots per sample (0 when no corpus has cell maps). 8: a measurement
        sequence hears 3-8 cells; the physics term reads one map per heard cell.
    max_offset_frac : float
        Largest shift of the crop centre from the truth, as a share of the side. 0.35: the
        truth stays at least 15 % of the side inside the crop (its context is seen), while
        "the crop centre" is no answer (mean error ~0.2 x side).
    crop_seed : int
        Seed of the evaluation crops (:func:`learn.data.crops.eval_crop_origins`): one fixed
        square per sample for every method judged on it.
    likelihood : bool
        Add the physics-likelihood channels ``lik_maps`` (:mod:`learn.data.likelihood`): map
        matching's residual energy of the sequence's own report on every crop pixel, for the
        map encoder (the model's ``likelihood_channels`` follow it). Off by default: measured
        on the demo corpus in docs/benchmarks.md (§ Likelihood channels).
    train_crops : str
        Where training crops lie: ``"random"`` (the truth offset uniformly by up to
        ``max_offset_frac``), or a truth-free prior (``auto``, ``coarse``, ``serving-cell``:
        :mod:`learn.priors`) placing them as evaluation will, so that the truth's offset
        from the centre has the distribution the model meets at inference (a sample whose
        truth falls outside its prior crop gets a random one).
    """

    crop_size_m: float = 600.0
    crop_px: int = 128
    max_cells: int = 8
    max_offset_frac: float = 0.35
    crop_seed: int = 0
    likelihood: bool = False
    train_crops: str = "random"

    def __post_init__(self) -> None:
        problems = []
        if self.train_crops not in TRAIN_CROPS:
            problems.append(f"train_crops: {self.train_crops!r} is not one of {', '.join(TRAIN_CROPS)}")
        if not self.crop_size_m > 0:
            problems.append(f"crop_size_m: {self.crop_size_m} must be > 0")
        if self.crop_px < 1:
            problems.append(f"crop_px: {self.crop_px} must be >= 1")
        if self.max_cells < 0:
            problems.append(f"max_cells: {self.max_cells} must be >= 0")
        if not 0 <= self.max_offset_frac < 0.5:
            problems.append(f"max_offset_frac: {self.max_offset_frac} is outside [0, 0.5) (the truth must stay "
                            "inside the crop)")
        collect(problems, "data config")

    def to_dict(self) -> dict[str, Any]:
        return {"crop_size_m": float(self.crop_size_m), "crop_px": int(self.crop_px),
                "max_cells": int(self.max_cells), "max_offset_frac": float(self.max_offset_frac),
                "crop_seed": int(self.crop_seed), "likelihood": bool(self.likelihood),
                "train_crops": str(self.train_crops)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        return cls(**data)


@dataclass
class _Scene:
    name: str
    grid: Grid
    maps: np.ndarray               # [C, H, W] in the dataset's channel order (zeros for absent channels)
    has_maps: bool
    cell_id: np.ndarray            # [n_cells]
    cell_xy_m: np.ndarray          # [n_cells, 2]
    cell_maps: np.ndarray | None   # [n_cells, F, H, W]
    lookup: dict[int, int]
    lik_maps: np.ndarray | None = None  # [n_cells, F, H, W] cell maps as map matching scores them (likelihood)
    lik_prior: np.ndarray | None = None  # [H, W] map matching's pixel prior (1 searched, 0 not); None = every pixel


class CorpusDataset(torch.utils.data.Dataset):
    """Samples of one or more corpora as batch dicts (see the module docstring).

    Parameters
    ----------
    corpora : sequence of str or path
        Corpus URLs (same ``feature_names``).
    indices : sequence of arrays, optional
        Per corpus, the sample indices used (e.g. ``corpus.split_indices("spatial", "train")``);
        default all.
    config : DataConfig
    training : bool
        Random crop offsets (per ``(seed, epoch, corpus, index)``) instead of evaluation crops.
    crop_origins_m : array ``(N, 2)``, optional
        Evaluation: the crops' south-west corners [scene m], one per dataset item, as a
        truth-free prior placed them (:func:`learn.priors.crop_origins_m`); without it the
        truth-centred crops of :func:`learn.data.crops.eval_crop_origins` (``--prior truth``).
        Training (``DataConfig.train_crops`` a prior): the prior's crops of the items; an item
        whose truth lies outside its crop gets a random one.
    normalization, cell_vocab : optional
        From a checkpoint (:meth:`state`); computed from the corpora when omitted.
    physics_maps : bool
        Build the physics maps ``phys_maps`` / ``phys_valid`` (``K x F`` crops per sample, most
        of a 128 px item's cost): only the physics loss (``model.lambda_phys > 0``) and
        refinement with a physics term read them (:attr:`learn.refine.RefineConfig.reads_physics_maps`);
        without them the batch has neither key and the forward pass is the same.
    """

    def __init__(self, corpora: Sequence[str | os.PathLike], indices: Sequence[np.ndarray] | None = None,
                 config: DataConfig | None = None, training: bool = False, seed: int = 0,
                 normalization: Normalization | dict | None = None, cell_vocab: CellVocab | Sequence[str] | None = None,
                 stats_scenes: int = 16, cache_scenes: int = 16, preload_mb: float = 512.0,
                 crop_origins_m: np.ndarray | None = None, physics_maps: bool = True):
        if isinstance(corpora, (str, os.PathLike)):
            corpora = [corpora]
        self.urls = [os.fspath(u) for u in corpora]
        if not self.urls:
            raise InputError("dataset: no corpus given")
        self.config = config or DataConfig()
        self.crop_origins_m = None if crop_origins_m is None else np.asarray(crop_origins_m, np.float64).reshape(-1, 2)
        self.training = bool(training)
        self.physics_maps = bool(physics_maps)
        self.seed = int(seed)
        self.epoch = 0
        self.cache_scenes = int(cache_scenes)
        self.preload_mb = float(preload_mb)
        opened = [open_corpus(u) for u in self.urls]
        names = opened[0].feature_names
        for c in opened[1:]:
            if c.feature_names != names:
                raise InputError(f"{c.url}: features {c.feature_names} differ from {opened[0].url}'s {names}")
        self.feature_names = list(names)
        if indices is None:
            indices = [np.arange(len(c)) for c in opened]
        if len(indices) != len(opened):
            raise InputError(f"dataset: {len(indices)} index arrays for {len(opened)} corpora")
        parts = []
        for k, (c, idx) in enumerate(zip(opened, indices, strict=True)):
            idx = np.asarray(idx, np.int64).reshape(-1)
            if idx.size and (idx.min() < 0 or idx.max() >= len(c)):
                raise InputError(f"{c.url}: sample index out of range [0, {len(c)})")
            parts.append(np.stack([np.full(len(idx), k), idx], axis=1))
        self.items = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)  # [N, 2] (corpus, index)
        self.has_cell_maps = any(has_cell_maps(c) for c in opened)
        self.n_slots = self.config.max_cells if self.has_cell_maps else 0
        self.n_likelihood = len(LIKELIHOOD_CHANNELS) if self.config.likelihood else 0
        if normalization is None:
            normalization = compute_normalization(opened, stats_scenes)
        elif isinstance(normalization, dict):
            normalization = Normalization.from_dict(normalization)
        # The corpora's features in the normalization's (the model's) order: equal names, or
        # the NB-IoT narrowband names of the same quantities (FEATURE_ALIASES).
        self.corpus_feature_names = list(self.feature_names)
        self._take = align_features(normalization.feature_names, self.feature_names, self.urls[0])
        self.feature_names = list(normalization.feature_names)
        self.normalization = normalization
        if cell_vocab is None:
            cell_vocab = CellVocab.from_corpora(opened)
        elif not isinstance(cell_vocab, CellVocab):
            cell_vocab = CellVocab(cell_vocab)
        self.cell_vocab = cell_vocab
        self._f_mean = np.asarray(normalization.feature_mean, np.float32)
        self._f_std = np.where(np.asarray(normalization.feature_std) > 0, normalization.feature_std,
                               1.0).astype(np.float32)
        self._m_mean = np.asarray(normalization.map_mean, np.float32)
        self._m_std = np.where(np.asarray(normalization.map_std) > 0, normalization.map_std, 1.0).astype(np.float32)
        if self.crop_origins_m is not None and len(self.crop_origins_m) != len(self.items):
            raise InputError(f"dataset: {len(self.crop_origins_m)} crop origins for {len(self.items)} samples")
        self._reset()

    # -- per-process state (never shared across fork) ---------------------------------
    def _reset(self) -> None:
        self._pid = os.getpid()
        self._corpora: dict[int, Corpus] = {}
        self._scenes: OrderedDict[tuple[int, int], _Scene] = OrderedDict()
        self._preloaded: dict[int, dict[str, np.ndarray] | None] = {}
        self._sigmas: dict[int, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_corpora={}, _scenes=OrderedDict(), _preloaded={}, _sigmas={}, _pid=-1)
        return state

    def _corpus(self, k: int) -> Corpus:
        if self._pid != os.getpid():
            self._reset()
        if k not in self._corpora:
            self._corpora[k] = open_corpus(self.urls[k])
        return self._corpora[k]

    def _sample_arrays(self, k: int, idx: np.ndarray) -> dict[str, np.ndarray]:
        corpus = self._corpus(k)
        if k not in self._preloaded:
            arrays = [io.array(corpus.samples, a, corpus.url) for a in _SAMPLE_ARRAYS]
            nbytes = sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in arrays)
            self._preloaded[k] = (corpus.batch(slice(None), _SAMPLE_ARRAYS)
                                  if nbytes <= self.preload_mb * 2**20 else None)
        pre = self._preloaded[k]
        if pre is not None:
            return {a: v[idx] for a, v in pre.items()}
        return corpus.batch(idx, _SAMPLE_ARRAYS)

    def _scene(self, k: int, s: int) -> _Scene:
        key = (k, s)
        corpus = self._corpus(k)
        if key in self._scenes:
            self._scenes.move_to_end(key)
            return self._scenes[key]
        group = scene_group(corpus, s)
        attrs = io.attrs(group)
        grid = Grid.from_dict(attrs["grid"])
        maps, has_maps = scene_maps(group, self.normalization.map_channels, grid, corpus.url)
        cm = io.array(group, "cell_maps", corpus.url)
        cell_id = io.read(group, "cell_id", corpus.url)
        scene = _Scene(name=str(attrs["name"]), grid=grid, maps=maps, has_maps=has_maps, cell_id=cell_id,
                       cell_xy_m=io.read(group, "cell_xy_m", corpus.url).astype(np.float64),
                       cell_maps=np.asarray(cm[...])[:, self._take] if cm.size else None,
                       lookup={int(c): i for i, c in enumerate(cell_id)})
        if self.n_likelihood and scene.cell_maps is not None:
            scene.lik_maps = matchable_maps(scene.cell_maps)
            scene.lik_prior = pixel_prior_of(group, grid, corpus.url)
        self._scenes[key] = scene
        while len(self._scenes) > self.cache_scenes:
            self._scenes.popitem(last=False)
        return scene

    def _sigma(self, k: int) -> np.ndarray:
        """Map matching's noise per feature ``(F,)`` of corpus ``k`` in the model's feature order."""
        if k not in self._sigmas:
            from learn.mapmatch import feature_sigmas

            corpus = self._corpus(k)
            std = corpus.stats.get("feature_std")
            self._sigmas[k] = feature_sigmas([self.corpus_feature_names[i] for i in self._take],
                                             corpus.attrs.get("config"),
                                             None if std is None else np.asarray(std, np.float64)[self._take])
        return self._sigmas[k]

    # -- Dataset -----------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Training crops of a new epoch (workers re-created per epoch pick it up)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def state(self) -> dict[str, Any]:
        """What a checkpoint must keep to rebuild the same inputs: config, normalization, cell vocabulary."""
        return {"data_config": self.config.to_dict(), "normalization": self.normalization.to_dict(),
                "cell_vocab": self.cell_vocab.to_list()}

    @property
    def map_channels(self) -> list[str]:
        return list(self.normalization.map_channels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, positions: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """Samples at dataset positions, reading each corpus once (DataLoader's batched fetch)."""
        pos = np.asarray(positions, np.int64)
        items = self.items[pos]
        out: list[dict[str, torch.Tensor] | None] = [None] * len(pos)
        for k in np.unique(items[:, 0]):
            sel = np.flatnonzero(items[:, 0] == k)
            idx = items[sel, 1]
            arrays = self._sample_arrays(int(k), idx)
            xy = arrays["position_xy_m"].astype(np.float64)
            cfg = self.config
            if self.training:
                origins = np.concatenate([
                    random_crop_origins(xy[j], cfg.crop_size_m,
                                        np.random.default_rng([self.seed, self.epoch, int(k), int(idx[j])]),
                                        cfg.max_offset_frac) for j in range(len(idx))])
                if self.crop_origins_m is not None:  # the prior's crops where they hold the truth
                    placed = self.crop_origins_m[pos[sel]]
                    rel = (xy - placed) / cfg.crop_size_m
                    holds = np.asarray(((rel > 0) & (rel < 1)).all(axis=1))
                    origins = np.where(holds[:, None], placed, origins)
            elif self.crop_origins_m is not None:  # placed by a prior (learn.priors)
                origins = self.crop_origins_m[pos[sel]]
            else:
                origins = eval_crop_origins(idx, xy, cfg.crop_size_m, cfg.max_offset_frac, cfg.crop_seed)
            for j, p in enumerate(sel):
                one = {a: v[j] for a, v in arrays.items()}
                out[p] = self._item(int(k), int(idx[j]), one, origins[j])
        return out  # type: ignore[return-value]

    def _item(self, k: int, index: int, a: dict[str, np.ndarray], origin: np.ndarray) -> dict[str, torch.Tensor]:
        cfg = self.config
        size, px = float(cfg.crop_size_m), int(cfg.crop_px)
        scene = self._scene(k, int(a["scene_index"]))
        mask = a["mask"].astype(bool)                                      # [T]
        cells = np.where(mask, a["cell_id"], -1)                            # [T]
        feats = a["features"][:, self._take].astype(np.float32)             # [T, F] in the model's order
        valid = mask[:, None] & np.isfinite(feats)
        norm = np.where(valid, (feats - self._f_mean) / self._f_std, 0.0).astype(np.float32)
        beams = a["beam_id"].astype(np.int64)
        row = np.array([scene.lookup.get(int(c), -1) for c in cells])       # [T] row in the scene's cell table
        known = mask & (row >= 0)
        site = np.where(known[:, None], scene.cell_xy_m[np.maximum(row, 0)] if len(scene.cell_id) else np.nan,
                        np.nan)                                             # [T, 2]
        bs_valid = known & np.isfinite(site).all(axis=1)
        bs_xy = np.where(bs_valid[:, None], (site - origin) / size, 0.0)
        xy = a["position_xy_m"].astype(np.float64)

        # Every plane of the crop in one resampling: the scene's map channels, the likelihood's
        # pixel prior, the cell maps of the physics slots and those of the heard cells.
        c, f, kk = len(self.normalization.map_channels), len(self.feature_names), self.n_slots
        with_maps = bool(c and scene.has_maps)
        with_lik = bool(self.n_likelihood and scene.lik_maps is not None)
        slot = np.full(len(cells), -1, np.int64)
        rows_with_maps: list[int] = []
        if kk and scene.cell_maps is not None:
            for t in np.flatnonzero(known):
                r = int(row[t])
                if r not in rows_with_maps:
                    if len(rows_with_maps) == kk:
                        continue
                    rows_with_maps.append(r)
                slot[t] = rows_with_maps.index(r)
        events, lik_rows = None, []
        if with_lik:
            from learn.mapmatch import last_report

            events = last_report(a["cell_id"], feats, mask, a["time_s"])
            lik_rows = heard_rows(scene.cell_id, events)
        parts: dict[str, tuple[np.ndarray, list[int] | None]] = {}
        if with_maps:
            parts["maps"] = (scene.maps[None], None)
        if with_lik and scene.lik_prior is not None:
            parts["prior"] = (scene.lik_prior[None, None], None)
        if self.physics_maps and rows_with_maps:
            assert scene.cell_maps is not None
            parts["phys"] = (scene.cell_maps, rows_with_maps)
        if with_lik:
            assert scene.lik_maps is not None
            parts["lik"] = (scene.lik_maps, lik_rows)
        inside = torch.zeros(px, px, dtype=torch.bool)
        crops: dict[str, torch.Tensor] = {}
        if parts:
            resampled, inside = resample_crops(list(parts.values()), scene.grid, origin, size, px)
            crops = dict(zip(parts, resampled, strict=True))

        if with_maps:
            crop = (crops["maps"][0] - torch.from_numpy(self._m_mean)[:, None, None]) / torch.from_numpy(self._m_std)[:, None, None]
            crop = torch.where(inside[None] & torch.isfinite(crop), crop, 0.0)  # [C, S, S]
            map_valid = inside[None]
        else:
            crop = torch.zeros(c, px, px)
            map_valid = torch.zeros(1, px, px, dtype=torch.bool)

        phys: dict[str, torch.Tensor] = {}
        if self.physics_maps:
            phys_maps = torch.zeros(kk, f, px, px)
            phys_valid = torch.zeros(kk, f, px, px, dtype=torch.bool)
            if "phys" in crops:  # normalized in place in the first k slots
                n = len(rows_with_maps)
                vals = phys_maps[:n]  # [k, F, S, S]
                torch.sub(crops["phys"], torch.from_numpy(self._f_mean)[:, None, None], out=vals)
                vals.div_(torch.from_numpy(self._f_std)[:, None, None])
                ok = torch.isfinite(vals) & inside
                vals.masked_fill_(~ok, 0.0)
                phys_valid[:n] = ok
            phys = {"phys_maps": phys_maps, "phys_valid": phys_valid}
        lik = torch.zeros(self.n_likelihood, px, px)
        loglik, allowed = torch.zeros(px, px), torch.zeros(px, px, dtype=torch.bool)
        if with_lik:
            assert events is not None
            energy, n_terms = crop_energy(crops["lik"].numpy(), scene.cell_id[lik_rows], self._sigma(k), events)
            lik_inside = inside.numpy()
            lik = energy_channels(energy, n_terms, lik_inside)
            prior = None
            if "prior" in crops:
                prior = crops["prior"][0, 0].numpy() > 1e-3  # a prior pixel of the scene neighbours the centre
            loglik, allowed = loglik_pixels(energy, n_terms, lik_inside, prior)
        return {
            "cell_index": torch.from_numpy(self.cell_vocab.index(scene.name, cells)),
            "beam_index": torch.from_numpy(np.where(mask & (beams >= 0), beams + 1, 0)),
            "time_s": torch.from_numpy(np.where(mask, a["time_s"], 0.0).astype(np.float32)),
            "features": torch.from_numpy(norm),
            "feature_valid": torch.from_numpy(valid),
            "mask": torch.from_numpy(mask),
            "bs_xy": torch.from_numpy(bs_xy.astype(np.float32)),
            "bs_valid": torch.from_numpy(bs_valid),
            "maps": crop.float(),
            "map_valid": map_valid,
            **phys,
            "lik_maps": lik,
            "lik_loglik": loglik,
            "lik_allowed": allowed,
            "event_slot": torch.from_numpy(slot),
            "target_xy": torch.from_numpy(((xy - origin) / size).astype(np.float32)),
            "crop_origin_m": torch.from_numpy(origin.astype(np.float32)),
            "crop_size_m": torch.tensor(size, dtype=torch.float32),
            "position_xy_m": torch.from_numpy(xy.astype(np.float32)),
            "scene_index": torch.tensor(int(a["scene_index"]), dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
            "corpus_index": torch.tensor(k, dtype=torch.long),
        }


def as_data_config(cfg: DataConfig | dict[str, Any] | Any) -> DataConfig:
    """A :class:`DataConfig` from itself, a dict, or any object with some of its fields as attributes
    (e.g. a model preset's data section with ``crop_size_m``, ``crop_px``, ``max_cells``); other keys are ignored."""
    if isinstance(cfg, DataConfig):
        return cfg
    names = DataConfig.__dataclass_fields__
    if isinstance(cfg, dict):
        values = {k: v for k, v in cfg.items() if k in names}
    else:
        values = {k: getattr(cfg, k) for k in names if hasattr(cfg, k)}
    return DataConfig(**values)
