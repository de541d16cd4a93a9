"""Training the heatmap baselines: ``learn fit-baseline heatmap | mlp-unet`` (seed 004 §6.3, scaled to a CPU).

:func:`fit_baseline` trains one of :data:`BASELINES` — the MapRadioFormer-style ViT
(:class:`learn.heatmap.HeatmapNet`, ``heatmap``) or the MLP+UNet (:class:`learn.unet.MlpUNet`,
``mlp-unet``) — through the one training loop (:func:`learn.train.fit`: AdamW, the
warmup-stable-decay schedule of :mod:`learn.schedule`, checkpoints of :mod:`learn.checkpoint`,
``metrics.csv``, TensorBoard, resume) on a split's ``train`` part, with random crop offsets
per epoch, and after each epoch measures the mean localization error on the ``val`` part
(evaluation crops). ``best.pt`` keeps the epoch with the lowest validation error (the last
epoch when there is no val part): the test part is never looked at. Feature statistics
come from the training part of the chosen split (:func:`learn.data.stats.feature_statistics`),
not the corpus's default. The run directory holds ``best.pt`` (kind ``"heatmap"`` or
``"mlp-unet"``), ``last.pt``, ``config.yaml``, ``metrics.csv``, ``tb/`` and the training
curve ``curve.png``. :func:`fit_heatmap` is :func:`fit_baseline` of ``heatmap``.

A run is configured by its run config (:class:`HeatmapRunConfig`, :class:`learn.unet.UNetRunConfig`:
``model``, ``train``, ``data``): the presets ``small`` and ``full``
(``learn/presets/heatmap_*.yaml``, ``unet_*.yaml``) or a YAML file, then keyword overrides
(:func:`twin.config.resolve_config`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, cast

import numpy as np

from learn.data.dataset import CorpusDataset, DataConfig
from learn.data.stats import Normalization, feature_statistics
from learn.heatmap import KIND, HeatmapConfig, HeatmapNet, load_init_weights
from learn.train import TrainConfig, fit, prepare_run
from learn.unet import KIND as UNET_KIND
from learn.unet import MlpUNet, UNetRunConfig
from twin.config import from_dict, resolve_config
from twin.corpus.store import open_corpus
from twin.errors import InputError

__all__ = ["FitSummary", "HeatmapRunConfig", "PRESETS", "BASELINES", "load_heatmap_config", "load_baseline_config",
           "fit_heatmap", "fit_baseline"]

PRESETS = ("small", "full")


@dataclass(frozen=True)
class HeatmapRunConfig:
    """A heatmap run: the architecture, the training (:class:`learn.train.TrainConfig`) and the crops."""

    model: HeatmapConfig = field(default_factory=HeatmapConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(crop_px=64, max_cells=0))

    def __post_init__(self) -> None:
        if self.data.crop_px % self.model.patch_px:
            raise InputError(f"data.crop_px: {self.data.crop_px} is not a multiple of model.patch_px "
                             f"{self.model.patch_px} (the patches tile the crop)")


@dataclass(frozen=True)
class _Baseline:
    """A trainable heatmap baseline: its run config, network, checkpoint kind and preset files."""

    run_config: type
    net: Callable[[Any], Any]
    kind: str
    preset_prefix: str  # learn/presets/<prefix><preset>.yaml


#: The baselines of ``learn fit-baseline NAME`` (NAME is also their checkpoint kind).
BASELINES = {KIND: _Baseline(HeatmapRunConfig, HeatmapNet, KIND, "heatmap_"),
             UNET_KIND: _Baseline(UNetRunConfig, MlpUNet, UNET_KIND, "unet_")}


def _baseline(name: str) -> _Baseline:
    if name not in BASELINES:
        raise InputError(f"unknown trainable baseline '{name}'; choose one of {', '.join(BASELINES)}")
    return BASELINES[name]


def load_baseline_config(name: str, spec: Any = "small", **overrides: Any) -> Any:
    """Baseline ``name``'s run config: a preset (``small``, ``full``), a YAML file or a config, then
    ``overrides`` per section (``train={...}``)."""
    b = _baseline(name)
    if isinstance(spec, b.run_config):
        return resolve_config(b.run_config, spec, None, **overrides)
    text = os.fspath(spec)
    if text in PRESETS:
        with resources.as_file(resources.files("learn.presets").joinpath(f"{b.preset_prefix}{text}.yaml")) as p:
            return resolve_config(b.run_config, p, None, **overrides)
    return resolve_config(b.run_config, Path(text), None, **overrides)


def load_heatmap_config(spec: str | os.PathLike | HeatmapRunConfig = "small", **overrides: Any) -> HeatmapRunConfig:
    """A preset (``small``, ``full``), a YAML file or a config, then ``overrides`` per section (``train={...}``)."""
    return cast(HeatmapRunConfig, load_baseline_config(KIND, spec, **overrides))


@dataclass
class FitSummary:
    """What :func:`fit_heatmap` did."""

    path: str
    curve_png: str
    epochs: int
    steps: int
    n_train: int
    n_val: int
    best_epoch: int
    best_val_mean_m: float | None
    seconds: float
    init_loaded: tuple[int, int] | None = None

    def __str__(self) -> str:
        val = "no val part" if self.best_val_mean_m is None else \
            f"best val mean error {self.best_val_mean_m:.1f} m at epoch {self.best_epoch}"
        init = "" if self.init_loaded is None else f", {self.init_loaded[0]}/{self.init_loaded[1]} tensors from init weights"
        return (f"wrote {self.path} ({self.epochs} epochs, {self.steps} steps on {self.n_train} samples, "
                f"{val}{init}, {self.seconds:.0f} s); curve {self.curve_png}")


def fit_heatmap(data: str | os.PathLike, split: str, out_dir: str | os.PathLike,
                config: str | os.PathLike | HeatmapRunConfig = "small", **kw: Any) -> FitSummary:
    """Train the heatmap ViT: :func:`fit_baseline` of ``"heatmap"``."""
    return fit_baseline(KIND, data, split, out_dir, config, **kw)


def fit_baseline(name: str, data: str | os.PathLike, split: str, out_dir: str | os.PathLike, config: Any = "small", *,
                 epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
                 seed: int | None = None, num_workers: int | None = None, max_steps: int | None = None,
                 crop_size_m: float | None = None, init_weights: str | os.PathLike | None = None,
                 max_train: int | None = None, resume: bool = False, overwrite: bool = False,
                 progress: bool = True) -> FitSummary:
    """Train baseline ``name`` (``heatmap``, ``mlp-unet``) on ``data``'s ``split`` train part into ``out_dir``.

    Parameters
    ----------
    config : "small", "full", a YAML file or the baseline's run config
        The run (the model's data-dependent sizes are set from the data: ``with_data``);
        the keyword arguments given override its ``train`` / ``data`` keys.
    init_weights : path, optional
        A local state dict (or checkpoint) to start from (tensors matching by name and shape).
    max_train : int, optional
        Use only the first ``max_train`` training samples (tests, quick runs).
    resume : bool
        Continue ``out_dir/last.pt`` with its own config.
    """
    spec = _baseline(name)
    out = Path(out_dir)
    cfg = load_baseline_config(name, config, train={"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                                             "num_workers": num_workers, "max_steps": max_steps,
                                             "split_scheme": split},
                              data={"crop_size_m": crop_size_m})
    if resume and (out / "last.pt").is_file():
        from learn.checkpoint import load_checkpoint

        cfg = from_dict(spec.run_config, load_checkpoint(out / "last.pt", kind=spec.kind)["configs"],
                        f"{out / 'last.pt'} configs")
    tc = cfg.train
    if tc.domain_adversarial_lambda:
        raise InputError(f"train.domain_adversarial_lambda: {tc.domain_adversarial_lambda}: domain-adversarial "
                         f"training is for the posterior model (learn finetune / pretrain), not {name}")
    rank, world, device, ckpt_resume = prepare_run(out, tc, resume, overwrite, spec.kind)
    corpus = open_corpus(data)
    if tc.split_scheme not in corpus.split_schemes:
        raise InputError(f"{corpus.url}: no split '{tc.split_scheme}'; has {', '.join(corpus.split_schemes)}")
    train_idx = corpus.split_indices(tc.split_scheme, "train")
    val_idx = corpus.split_indices(tc.split_scheme, "val")
    if max_train is not None:
        train_idx = train_idx[:max_train]
    if len(train_idx) == 0:
        raise InputError(f"{corpus.url}: split '{tc.split_scheme}' has no training samples")
    start = time.perf_counter()
    if ckpt_resume is not None:
        norm = Normalization.from_dict(ckpt_resume["data_info"]["normalization"])
        vocab: Any = ckpt_resume["cell_vocab"]
    else:
        probe = CorpusDataset([corpus.url], [train_idx[:1]], cfg.data,
                              physics_maps=False)  # map statistics and the cell vocabulary
        mean, std = feature_statistics(corpus, train_idx)
        norm = Normalization(probe.feature_names, mean, std, probe.normalization.map_channels,
                             probe.normalization.map_mean, probe.normalization.map_std)
        vocab = probe.cell_vocab
    # the heatmap models read no physics maps (phys_maps)
    train_ds = CorpusDataset([corpus.url], [train_idx], cfg.data, training=True, seed=tc.seed, normalization=norm,
                             cell_vocab=vocab, physics_maps=False)
    val_ds = CorpusDataset([corpus.url], [val_idx], cfg.data, training=False, normalization=norm,
                           cell_vocab=train_ds.cell_vocab, physics_maps=False)
    cfg = dataclasses.replace(cfg, model=cfg.model.with_data(list(norm.feature_names), len(norm.map_channels),
                                                             cfg.data.crop_px))
    model = spec.net(cfg.model)
    init_loaded = load_init_weights(model, init_weights) if init_weights and ckpt_resume is None else None
    info = {"cell_vocab": train_ds.cell_vocab.to_list(),
            "data_info": {**train_ds.state(), "feature_names": list(train_ds.feature_names), "corpus": corpus.url,
                          "n_train": len(train_idx),
                          "init_weights": os.fspath(init_weights) if init_weights else ""}}
    res = fit(model, train_ds, val_ds, cfg, out, kind=spec.kind, info=info, resume_ckpt=ckpt_resume,
              progress=progress, device=device, desc=spec.kind, overwrite=overwrite)
    has_val = len(val_idx) > 0 and tc.val_batches != 0
    best = float(res.best_val) if has_val and np.isfinite(res.best_val) else None
    if best is not None and tc.select_on != "val_mean_m":  # report the error of the kept epoch either way
        kept = [k for k, e in enumerate(res.history["epoch"]) if e == res.best_epoch]
        best = float(res.history["val_mean_m"][kept[-1]]) if kept else None
    return FitSummary(str(res.checkpoint), str(out / "curve.png"), res.epochs, res.steps, len(train_idx), len(val_idx),
                      res.best_epoch, best, time.perf_counter() - start, init_loaded)
