"""Training the heatmap baseline: ``learn fit-baseline heatmap`` (seed 004 §6.3, scaled to a CPU).

:func:`fit_heatmap` trains :class:`learn.heatmap.HeatmapNet` on a split's ``train`` part
with AdamW and seed 004's warmup-stable-decay schedule (linear warm-up over the first
10 % of the steps, constant, linear decay to 0 over the last 20 %), random crop offsets
per epoch, and after each epoch measures the mean localization error on the ``val`` part
(evaluation crops). The checkpoint keeps the epoch with the lowest validation error
(the last epoch when there is no val part): the test part is never looked at. Feature
statistics come from the training part of the chosen split, not the corpus's default.
Writes the checkpoint atomically and a training curve PNG beside it
(``<out stem>_curve.png``).
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learn.data.dataset import CorpusDataset
from learn.data.loader import make_loader
from learn.data.stats import Normalization
from learn.heatmap import (
    CONFIGS,
    SCHEMA_VERSION,
    HeatmapConfig,
    HeatmapNet,
    decode_argmax,
    heatmap_loss,
    load_init_weights,
)
from twin.corpus.store import open_corpus
from twin.errors import InputError
from twin.io import atomic_file, check_output

__all__ = ["FitSummary", "fit_heatmap", "wsd_factor", "train_feature_statistics"]


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


def wsd_factor(step: int, total: int, warmup_frac: float = 0.1, decay_frac: float = 0.2) -> float:
    """Warmup-stable-decay learning-rate factor in [0, 1] at ``step`` of ``total``."""
    warm = max(1, round(warmup_frac * total))
    decay_start = total - max(1, round(decay_frac * total))
    if step < warm:
        return (step + 1) / warm
    if step >= decay_start:
        return max(0.0, (total - step) / max(1, total - decay_start))
    return 1.0


def train_feature_statistics(corpus: Any, indices: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of each feature over the real events of ``indices``."""
    b = corpus.batch(indices, ["features", "mask"])
    f = b["features"].astype(np.float64)
    ok = b["mask"][..., None] & np.isfinite(f)
    n = ok.sum(axis=(0, 1))
    mean = np.where(n > 0, np.where(ok, f, 0).sum(axis=(0, 1)) / np.maximum(n, 1), 0.0)
    var = np.where(ok, (f - mean) ** 2, 0).sum(axis=(0, 1)) / np.maximum(n - 1, 1)
    std = np.sqrt(var)
    return mean.tolist(), np.where(std > 1e-6, std, 1.0).tolist()


def _val_errors(model: HeatmapNet, loader: Any) -> np.ndarray:
    model.eval()
    errors = []
    with torch.no_grad():
        for b in loader:
            xy = decode_argmax(model(b), b["crop_origin_m"], b["crop_size_m"])
            errors.append(torch.linalg.norm(xy - b["position_xy_m"].double(), dim=1).numpy())
    model.train()
    return np.concatenate(errors) if errors else np.zeros(0)


def _plot_curve(path: Path, history: dict[str, list[float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    lines = ax.plot(history["epoch"], history["train_loss"], "b-", label="train BCE")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train BCE", color="b")
    ax.set_yscale("log")
    if any(np.isfinite(history["val_mean_m"])):
        ax2 = ax.twinx()
        lines += ax2.plot(history["epoch"], history["val_mean_m"], "r-", label="val mean error")
        lines += ax2.plot(history["epoch"], history["val_median_m"], "r--", label="val median error")
        ax2.set_ylabel("val error [m]", color="r")
    ax.legend(lines, [str(ln.get_label()) for ln in lines], loc="upper right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fit_heatmap(data: str | os.PathLike, split: str, out: str | os.PathLike, config: str | HeatmapConfig = "small",
                epochs: int = 30, batch_size: int = 32, lr: float = 3e-4, weight_decay: float = 0.05,
                init_weights: str | os.PathLike | None = None, seed: int = 0, num_workers: int = 0,
                crop_size_m: float | None = None, max_train: int | None = None, overwrite: bool = False,
                progress: bool = True) -> FitSummary:
    """Train the heatmap model on ``data``'s ``split`` train part and write a ``"heatmap"`` checkpoint.

    Parameters
    ----------
    config : "small", "full" or HeatmapConfig
        Architecture (``n_features``/``n_map_channels`` are set from the data).
    init_weights : path, optional
        A local state dict to start from (tensors matching by name and shape).
    max_train : int, optional
        Use only the first ``max_train`` training samples (tests, quick runs).
    """
    from tqdm.auto import tqdm

    out = Path(out)
    check_output(out, overwrite)
    curve = out.with_name(out.stem + "_curve.png")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise InputError(f"fit-baseline heatmap: epochs ({epochs}), batch size ({batch_size}) and lr ({lr}) "
                         "must be positive")
    if isinstance(config, str):
        if config not in CONFIGS:
            raise InputError(f"unknown heatmap config '{config}'; choose one of {', '.join(CONFIGS)}")
        config = CONFIGS[config]
    corpus = open_corpus(data)
    if split not in corpus.split_schemes:
        raise InputError(f"{corpus.url}: no split '{split}'; has {', '.join(corpus.split_schemes)}")
    train_idx = corpus.split_indices(split, "train")
    val_idx = corpus.split_indices(split, "val")
    if max_train is not None:
        train_idx = train_idx[:max_train]
    if len(train_idx) == 0:
        raise InputError(f"{corpus.url}: split '{split}' has no training samples")
    torch.manual_seed(seed)
    probe = CorpusDataset([corpus.url], [train_idx[:1]], config.data_config())
    mean, std = train_feature_statistics(corpus, train_idx)
    norm = Normalization(probe.feature_names, mean, std, probe.normalization.map_channels,
                         probe.normalization.map_mean, probe.normalization.map_std)
    config = replace(config, n_features=len(probe.feature_names), n_map_channels=len(norm.map_channels),
                     crop_size_m=float(crop_size_m or config.crop_size_m))
    dcfg = config.data_config()
    train_ds = CorpusDataset([corpus.url], [train_idx], dcfg, training=True, seed=seed, normalization=norm,
                             cell_vocab=probe.cell_vocab)
    val_ds = CorpusDataset([corpus.url], [val_idx], dcfg, training=False, normalization=norm,
                           cell_vocab=probe.cell_vocab)
    model = HeatmapNet(config)
    init_loaded = load_init_weights(model, init_weights) if init_weights else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = len(train_ds) // batch_size if len(train_ds) >= batch_size else 1
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: wsd_factor(s, total))
    history: dict[str, list[float]] = {"epoch": [], "train_loss": [], "val_mean_m": [], "val_median_m": []}
    best: tuple[float, int, dict[str, Any] | None] = (np.inf, 0, None)  # score, epoch, model state
    step = 0
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc="heatmap", unit="epoch", disable=not progress)
    model.train()
    for epoch in bar:
        train_ds.set_epoch(epoch)
        loader = make_loader(train_ds, batch_size=min(batch_size, len(train_ds)), shuffle=True,
                             num_workers=num_workers, seed=seed + epoch, drop_last=True)
        losses = []
        for b in loader:
            loss = heatmap_loss(model(b), b["target_xy"], config.target_sigma_px)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
        val = _val_errors(model, make_loader(val_ds, batch_size=64)) if len(val_ds) else np.zeros(0)
        vmean = float(val.mean()) if len(val) else float("nan")
        history["epoch"].append(float(epoch + 1))
        history["train_loss"].append(float(np.mean(losses)))
        history["val_mean_m"].append(vmean)
        history["val_median_m"].append(float(np.median(val)) if len(val) else float("nan"))
        score = vmean if len(val) else -epoch
        if score <= best[0]:
            best = (score, epoch + 1, copy.deepcopy(model.state_dict()))
        bar.set_postfix(loss=f"{history['train_loss'][-1]:.4f}", val_mean_m=f"{vmean:.1f}")
    seconds = time.perf_counter() - start
    ckpt = {
        "kind": "heatmap", "schema_version": SCHEMA_VERSION, "model": best[2],
        "optimizer": optimizer.state_dict(), "step": step, "best_epoch": best[1],
        "configs": {"model": config.to_dict(), "data": dcfg.to_dict(),
                    "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                              "seed": seed, "split": split, "data": corpus.url, "n_train": len(train_idx),
                              "init_weights": os.fspath(init_weights) if init_weights else ""}},
        "normalization": norm.to_dict(), "cell_vocab": probe.cell_vocab.to_list(), "history": history,
    }
    with atomic_file(out, overwrite=overwrite) as tmp:
        torch.save(ckpt, tmp)
    _plot_curve(curve, history, f"heatmap ({config.image_px} px, {config.depth} blocks) on "
                f"{Path(corpus.url).name}, split {split}")
    has_val = len(val_idx) > 0
    return FitSummary(str(out), str(curve), epochs, step, len(train_idx), len(val_idx), best[1],
                      float(best[0]) if has_val else None, seconds, init_loaded)
