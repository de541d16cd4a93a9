"""Pictures of an evaluation (error CDFs per part, a map of the errors) and of a training run (PNG, Agg)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from learn.evaluate import EvalResult

__all__ = ["plot_evaluation", "plot_training_curve"]


def plot_training_curve(history: dict[str, list[float]], path: str | os.PathLike, title: str) -> Path:
    """A run's curve (``learn.train.fit``'s history): train and val loss per epoch, val errors [m] on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twin.io import atomic_file

    epochs = history.get("epoch", [])
    fig, ax = plt.subplots(figsize=(6, 4))
    lines = ax.plot(epochs, history.get("train_loss", []), "b-", marker=".", label="train loss")
    val_loss = history.get("val_loss", [])
    if np.isfinite(val_loss).any():
        lines += ax.plot(epochs, val_loss, "b--", marker=".", label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="b")
    if np.isfinite(history.get("val_mean_m", [])).any():
        ax2 = ax.twinx()
        lines += ax2.plot(epochs, history["val_mean_m"], "r-", marker=".", label="val mean error")
        lines += ax2.plot(epochs, history["val_median_m"], "r--", marker=".", label="val median error")
        ax2.set_ylabel("val error [m]", color="r")
    ax.legend(lines, [str(ln.get_label()) for ln in lines], loc="upper right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_file(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def plot_evaluation(result: EvalResult, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``error_cdf.png`` and ``error_map.png`` into ``out_dir``; return their paths.

    A method with ``plot_extra(out_dir) -> list[Path]`` adds its own pictures (the posterior
    model writes ``posterior_<index>.png`` heatmaps of the first test samples).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, sel in (("all", np.ones(len(result.errors_m), bool)), ("known", result.known),
                      ("unknown", ~result.known)):
        e = np.sort(result.errors_m[sel])
        if len(e):
            ax.plot(e, np.arange(1, len(e) + 1) / len(e), label=f"{name} (n={len(e)}, median {np.median(e):.0f} m)")
    ax.set_xscale("log")
    ax.set_xlabel("error [m]")
    ax.set_ylabel("CDF")
    ax.set_title(f"{result.method}, split {result.split}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    paths = [out / "error_cdf.png"]
    fig.tight_layout()
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 5))
    xy = result.truth_xy_m
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=result.errors_m, s=8, cmap="viridis",
                    vmax=np.percentile(result.errors_m, 95))
    ax.scatter(xy[~result.known, 0], xy[~result.known, 1], s=14, facecolors="none", edgecolors="red",
               linewidths=0.4, label="unknown streets")
    fig.colorbar(sc, ax=ax, label="error [m]")
    ax.set_aspect("equal")
    ax.set_xlabel("x [m] (east)")
    ax.set_ylabel("y [m] (north)")
    ax.set_title(f"errors of {result.method} at the true positions")
    ax.legend(loc="upper right", fontsize=7)
    paths.append(out / "error_map.png")
    fig.tight_layout()
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)
    extra = getattr(result.method_obj, "plot_extra", None)
    if extra is not None:  # e.g. the posterior model's heatmaps (seed 000 Fig. 4)
        paths += extra(out)
    return paths
