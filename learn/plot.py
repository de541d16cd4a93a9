"""Pictures of an evaluation (error CDFs per part, a map of the errors) and of a training run (PNG, Agg)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from learn.evaluate import EvalResult

__all__ = ["plot_evaluation", "plot_training_curve", "plot_predictions_vs_truth"]


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


def plot_predictions_vs_truth(predictions: str | os.PathLike, truth: str | os.PathLike, data: str | os.PathLike,
                              out: str | os.PathLike, overwrite: bool = False) -> tuple[Path, dict[str, float]]:
    """A PNG of ``learn predict``'s positions beside the true ones (read here only, after prediction).

    ``predictions``: the predict table (``x_m, y_m, last_time_s``); ``truth``: a CSV with
    ``time, x_m, y_m`` (e.g. :func:`learn.importers.export_drive_test`'s), joined on the
    sample's last time; ``data``: the corpus, whose scene's roads and buildings are drawn.
    Returns the path and ``{"n", "median_m", "mean_m"}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from twin.corpus.store import open_corpus
    from twin.errors import InputError
    from twin.io import atomic_file

    pred = pd.read_parquet(predictions) if str(predictions).endswith(".parquet") else pd.read_csv(predictions)
    true = pd.read_csv(truth)
    for what, table, need in ((predictions, pred, ("x_m", "y_m", "last_time_s")), (truth, true, ("time", "x_m", "y_m"))):
        missing = [c for c in need if c not in table.columns]
        if missing:
            raise InputError(f"{what}: missing column(s) {', '.join(missing)}")
    joined = pred.merge(true.rename(columns={"time": "last_time_s", "x_m": "true_x", "y_m": "true_y"})
                        [["last_time_s", "true_x", "true_y"]], on="last_time_s", how="left")
    err = np.hypot(joined["x_m"] - joined["true_x"], joined["y_m"] - joined["true_y"]).to_numpy()
    ok = np.isfinite(err)
    if not ok.any():
        raise InputError(f"{truth}: no time matches a prediction's last_time_s in {predictions}")
    scene = open_corpus(data).scene(0)
    x0, y0, x1, y1 = scene.grid.extent_m
    fig, ax = plt.subplots(figsize=(7.0, 7.0 * (y1 - y0) / max(x1 - x0, 1e-9) + 0.6))
    names = list(scene.semantic_channels)
    for layer, cmap, alpha in (("building_mask", "Greys", 0.45), ("road_mask", "Blues", 0.25)):
        if layer in names:
            img = np.asarray(scene.semantic_maps[names.index(layer)])
            ax.imshow(np.ma.masked_less(img, 0.5), origin="lower", extent=(x0, x1, y0, y1), cmap=cmap,
                      alpha=alpha, vmin=0, vmax=1.5)
    j = joined[ok]
    ax.plot(np.stack([j["true_x"], j["x_m"]]), np.stack([j["true_y"], j["y_m"]]), color="0.4", lw=0.6, alpha=0.6)
    ax.scatter(j["true_x"], j["true_y"], s=12, color="red", label="truth (never seen by predict)", zorder=3)
    ax.scatter(j["x_m"], j["y_m"], s=12, color="tab:cyan", edgecolor="k", linewidth=0.3, label="predicted", zorder=4)
    prior = str(pred["prior"].iloc[0]) if "prior" in pred.columns and len(pred) else "?"
    stats = {"n": float(ok.sum()), "median_m": float(np.median(err[ok])), "mean_m": float(np.mean(err[ok]))}
    ax.set_title(f"{int(stats['n'])} localized reports (prior {prior}): median {stats['median_m']:.0f} m, "
                 f"mean {stats['mean_m']:.0f} m")
    ax.set_xlabel("x [m] (east)")
    ax.set_ylabel("y [m] (north)")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    with atomic_file(out, overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out, stats
