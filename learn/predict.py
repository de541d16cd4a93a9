"""Using a trained posterior: predictions, refinement, calibration flags and posterior heatmaps.

Importing this module registers the checkpoint kind ``"posterior"`` with
:mod:`learn.registry`, so ``learn eval --ckpt FILE`` judges the model in the shared
harness. :func:`predict` writes one row per sample (``learn predict``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sized
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learn.checkpoint import KIND, load_checkpoint, load_model_state
from learn.data.crops import CropFrame
from learn.model import ModelConfig, PosteriorModel
from learn.refine import RefineConfig, refine
from twin.config import from_dict

__all__ = ["PosteriorMethod", "load_posterior", "predict_batches", "predict", "plot_posteriors", "sample_context",
           "checkpoint_temperature", "needs_physics_maps"]


def load_posterior(ckpt: dict[str, Any] | str | os.PathLike, device: str | torch.device = "cpu",
                   path: str | os.PathLike | None = None) -> tuple[PosteriorModel, dict[str, Any]]:
    """The model of a posterior checkpoint (dict or path), in eval mode, and the checkpoint dict.

    ``path``: the file a dict was read from, named in errors (a config/weights mismatch).
    """
    source = os.fspath(path) if path is not None else "checkpoint" if isinstance(ckpt, dict) else os.fspath(ckpt)
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    cfg = from_dict(ModelConfig, ckpt["configs"]["model"], f"{source} model config")
    model = PosteriorModel(cfg)
    load_model_state(model, ckpt["model"], source)
    return model.to(device).eval(), ckpt


@torch.no_grad()
def predict_batches(model: PosteriorModel, batches: Iterable[dict[str, torch.Tensor]],
                    refine_cfg: RefineConfig | None = None, point: str = "map", hdr_draws: int = 2048,
                    device: str | torch.device = "cpu", keep_mixtures: int = 0, background_channel: int | None = None,
                    progress: bool = False, temperature: float = 1.0) -> dict[str, Any]:
    """Run the model over contract batches; all outputs in scene metres.

    Returns arrays ``(N, ...)``: ``index``, ``xy_m`` (the ``point`` estimate: ``"map"``
    component or posterior ``"mean"``), ``mean_xy_m``, ``map_xy_m``, ``refined_xy_m`` (when
    ``refine_cfg``), ``truth_xy_m``, ``nll`` [nats, density per m²], ``hdr_level`` (mass of
    the smallest HDR holding the truth), ``max_weight``, ``refined`` (bool), ``std_m``
    (square root of the trace of Eq. 16 / 2), and ``mixtures`` (the first ``keep_mixtures``
    posteriors, in metres, with their crops and, with ``background_channel``, that channel
    of ``maps`` as the picture's background, for plots). ``progress`` shows a tqdm bar.
    ``temperature``: every output comes from the posterior tempered by it
    (:meth:`learn.heads.Mixture.tempered`; a checkpoint's fitted value: :func:`checkpoint_temperature`).
    """
    gen = torch.Generator(device=device).manual_seed(0)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("index", "xy_m", "mean_xy_m", "map_xy_m", "refined_xy_m",
                                                         "truth_xy_m", "nll", "hdr_level", "max_weight",
                                                         "refined", "std_m")}
    kept: list[dict[str, Any]] = []
    from tqdm.auto import tqdm

    total = len(batches) if isinstance(batches, Sized) else None
    for batch in tqdm(batches, total=total, desc="predict", unit="batch", disable=not progress):
        batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
        out, _ = model(batch)
        mix = out.mixture.tempered(temperature)
        origin, size = batch["crop_origin_m"].double(), batch["crop_size_m"].double()

        def to_m(xy: torch.Tensor, origin: torch.Tensor = origin, size: torch.Tensor = size) -> np.ndarray:
            return (origin + xy.double() * size[:, None]).cpu().numpy()

        mean, map_ = mix.mean(), mix.map_component()
        cols["index"].append(batch["index"].cpu().numpy())
        cols["mean_xy_m"].append(to_m(mean))
        cols["map_xy_m"].append(to_m(map_))
        cols["xy_m"].append(to_m(map_ if point == "map" else mean))
        cols["max_weight"].append(mix.weights.max(1).values.cpu().numpy())
        within, between = mix.covariance()
        cols["std_m"].append((torch.sqrt((within + between).diagonal(dim1=1, dim2=2).sum(1) / 2) * size)
                             .cpu().numpy())
        if "target_xy" in batch:  # scoring only; NaN where the truth is unknown
            target = batch["target_xy"].float()
            known = torch.isfinite(target).all(1)
            safe = torch.where(known[:, None], target, 0.5)
            nll = -mix.log_prob(safe).double() + 2 * torch.log(size)  # per unit crop area -> per m²
            cols["nll"].append(torch.where(known, nll, torch.nan).cpu().numpy())
            level = mix.hdr_level(safe, hdr_draws, gen).double()
            cols["hdr_level"].append(torch.where(known, level, torch.nan).cpu().numpy())
            cols["truth_xy_m"].append(to_m(target))
        if refine_cfg is not None:
            res = refine(mix, batch, refine_cfg)
            cols["refined_xy_m"].append(to_m(res.xy))
            cols["refined"].append(res.applied.cpu().numpy())
        if len(kept) < keep_mixtures:
            m_mix = mix.to_metres(origin.float(), size.float())
            for i in range(min(keep_mixtures - len(kept), len(mean))):
                kept.append({"weights": m_mix.weights[i].cpu().numpy(), "means": m_mix.means[i].cpu().numpy(),
                             "sigmas": m_mix.sigmas[i].cpu().numpy(), "origin_m": origin[i].cpu().numpy(),
                             "size_m": float(size[i]), "index": int(batch["index"][i]),
                             "truth_m": cols["truth_xy_m"][-1][i] if "target_xy" in batch else None,
                             "refined_m": cols["refined_xy_m"][-1][i] if refine_cfg is not None else None,
                             "background": (None if background_channel is None or not bool(batch["map_valid"][i].any())
                                            else batch["maps"][i, background_channel].float().cpu().numpy())})
    result: dict[str, Any] = {k: (np.concatenate(v) if v else None) for k, v in cols.items()}
    result["mixtures"] = kept
    return result


def _mixture_density(mix: dict[str, Any], xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    dens = np.zeros_like(xx)
    for w, m, s in zip(mix["weights"], mix["means"], mix["sigmas"], strict=True):
        dens += w * np.exp(-0.5 * (((xx - m[0]) / s[0]) ** 2 + ((yy - m[1]) / s[1]) ** 2)) / (2 * math.pi * s[0] * s[1])
    return dens


def plot_posteriors(mixtures: list[dict[str, Any]], out_dir: str | os.PathLike, n_px: int = 200) -> list[Path]:
    """Posterior heatmaps (seed 000 Fig. 4): density over the crop, truth (red star), MAP (cyan)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for mix in mixtures:
        x0, y0 = mix["origin_m"]
        size = mix["size_m"]
        xs, ys = CropFrame((x0, y0), size, n_px).centres_m()
        xx, yy = np.meshgrid(xs, ys)
        dens = _mixture_density(mix, xx, yy)
        fig, ax = plt.subplots(figsize=(5.2, 4.6))
        extent = (x0, x0 + size, y0, y0 + size)
        if mix.get("background") is not None:  # e.g. the buildings of the crop, under the density
            ax.imshow(mix["background"], origin="lower", extent=extent, cmap="gray_r", alpha=0.35, zorder=2)
        im = ax.imshow(np.ma.masked_less(dens, dens.max() * 1e-3), origin="lower", extent=extent, cmap="viridis",
                       alpha=0.85, zorder=1)
        fig.colorbar(im, ax=ax, label="posterior density [1/m²]")
        k = int(np.argmax(mix["weights"]))
        ax.plot(*mix["means"][k], marker="o", color="cyan", ms=8, mfc="none", mew=2, ls="", label="MAP", zorder=3)
        if mix["truth_m"] is not None:
            ax.plot(*mix["truth_m"], marker="*", color="red", ms=14, ls="", label="truth", zorder=3)
        if mix["refined_m"] is not None:
            ax.plot(*mix["refined_m"], marker="x", color="white", ms=9, mew=2, ls="", label="refined", zorder=3)
        ax.set_xlabel("x [m] (east)")
        ax.set_ylabel("y [m] (north)")
        ax.set_title(f"sample {mix['index']}: top-{len(mix['weights'])} mixture, max pi {mix['weights'].max():.2f}")
        ax.legend(loc="upper right", fontsize=8)
        path = out / f"posterior_{mix['index']:06d}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _corpus_loader(corpus: Any, indices: np.ndarray, ckpt: dict[str, Any], batch_size: int, num_workers: int,
                   prior: Any = None, physics_maps: bool = False):
    """Evaluation batches of ``corpus`` at ``indices`` with the checkpoint's vocabulary, crops placed by ``prior``.

    ``physics_maps``: the batches carry ``phys_maps`` / ``phys_valid``, for refinement with a
    physics term (:func:`needs_physics_maps`); the forward pass does not read them.
    """
    from torch.utils.data import DataLoader

    from learn.data.dataset import as_data_config
    from learn.data.loader import eval_dataset
    from learn.priors import crop_origins_m

    size = as_data_config(ckpt["configs"]["data"]).crop_size_m
    origins = crop_origins_m(prior, corpus, np.asarray(indices, np.int64), size, "the posterior model")

    # The checkpoint's normalization (and feature order, map channels): inputs as in training,
    # also when judging the model zero-shot on another corpus.
    ds = eval_dataset(corpus, indices, ckpt["configs"]["data"], cell_vocab=ckpt.get("cell_vocab"),
                      data_info=ckpt.get("data_info") or None, crop_origins_m=origins, physics_maps=physics_maps)
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def needs_physics_maps(refine_cfg: RefineConfig | None) -> bool:
    """Whether predicting with ``refine_cfg`` (``None``: no refinement) needs the batches' physics maps."""
    return refine_cfg is not None and refine_cfg.reads_physics_maps


def checkpoint_temperature(ckpt: dict[str, Any]) -> float:
    """The posterior temperature stored in a checkpoint (:func:`learn.temperature.calibrate_temperature`), else 1."""
    return float((ckpt.get("temperature") or {}).get("value", 1.0))


def _background_channel(ckpt: dict[str, Any]) -> int | None:
    """Index of the building mask among the checkpoint's map channels (heatmap background), if any."""
    names = list(((ckpt.get("data_info") or {}).get("normalization") or {}).get("map_channels", []))
    return names.index("building_mask") if "building_mask" in names else None


class PosteriorMethod:
    """The model as a method of the shared harness (``predict(corpus, indices) -> Predictions``)."""

    def __init__(self, ckpt: dict[str, Any], path: str = "checkpoint", refine_cfg: RefineConfig | None = None,
                 point: str = "map", batch_size: int = 64, num_workers: int = 0, device: str | None = None,
                 n_plots: int = 8):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cpu":
            from learn.train import set_threads

            set_threads(int(ckpt["configs"].get("train", {}).get("threads", 1)))
        self.model, self.ckpt = load_posterior(ckpt, self.device, path)
        if refine_cfg is None and "refine" in ckpt["configs"]:
            refine_cfg = from_dict(RefineConfig, ckpt["configs"]["refine"], f"{path} refine config")
        self.refine_cfg = refine_cfg
        self.point = point
        self.temperature = checkpoint_temperature(ckpt)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.name = f"posterior:{Path(path).name}"
        self.last: dict[str, Any] | None = None
        self.n_plots = n_plots

    def plot_extra(self, out_dir: str | os.PathLike) -> list[Path]:
        """Posterior heatmaps of the first ``n_plots`` samples of the last :meth:`predict`."""
        return plot_posteriors(self.last["mixtures"], out_dir) if self.last else []

    def predict(self, corpus: Any, indices: np.ndarray, prior: Any = None):
        """Posterior over the crop ``prior`` placed (default truth-free, :mod:`learn.priors`)."""
        from learn.methods import Predictions

        loader = _corpus_loader(corpus, np.asarray(indices), self.ckpt, self.batch_size, self.num_workers, prior,
                                needs_physics_maps(self.refine_cfg))
        res = predict_batches(self.model, loader, self.refine_cfg, self.point, device=self.device,
                              keep_mixtures=self.n_plots, background_channel=_background_channel(self.ckpt),
                              progress=True, temperature=self.temperature)
        pos = {int(i): k for k, i in enumerate(res["index"])}
        order = np.asarray([pos[int(i)] for i in np.asarray(indices)], np.int64)  # rows in `indices` order
        res = {k: (v[order] if isinstance(v, np.ndarray) else v) for k, v in res.items()}
        self.last = res
        level = res["hdr_level"]
        return Predictions(xy_m=res["xy_m"], nll=res["nll"], in_hdr50=None if level is None else level < 0.5,
                           in_hdr90=None if level is None else level < 0.9, refined_xy_m=res["refined_xy_m"])


def _load_method(ckpt: dict[str, Any], path: str) -> PosteriorMethod:
    if ckpt.get("kind") != KIND:
        ckpt = load_checkpoint(path)  # raises the clear kind error
    return PosteriorMethod(ckpt, path)


SOURCES_GROUP = "sources"  # optional corpus group: per-sample source rows and times of an import


def sample_context(corpus: Any, indices: np.ndarray, xy_m: np.ndarray) -> dict[str, np.ndarray]:
    """Columns that tie predictions to their input: lon/lat of ``xy_m`` ``(N, 2)`` (scene frame) and, for an
    imported drive test, each sample's first and last time [s] and source rows (``first_row``, ``last_row``,
    ``rows``: the 0-based data rows of the file, ``;``-separated)."""
    from twin import io

    indices = np.asarray(indices, np.int64)
    scenes = corpus.batch(indices, ["scene_index"])["scene_index"].astype(np.int64)
    lon = np.full(len(indices), np.nan)
    lat = np.full(len(indices), np.nan)
    for sc in np.unique(scenes):
        frame = corpus.scene(int(sc)).frame
        sel = scenes == sc
        if frame is not None:
            lon[sel], lat[sel] = frame.to_lonlat(xy_m[sel, 0], xy_m[sel, 1])
    cols: dict[str, np.ndarray] = {"lon": lon, "lat": lat}
    if SOURCES_GROUP in set(corpus.root.group_keys()):
        g = io.group(corpus.root, SOURCES_GROUP, corpus.url)
        for name in ("first_time_s", "last_time_s", "first_row", "last_row"):
            cols[name] = io.read(g, name, corpus.url)[indices]
        offsets, rows = io.read(g, "row_offsets", corpus.url), io.read(g, "rows", corpus.url)
        cols["rows"] = np.array([";".join(str(int(r)) for r in rows[offsets[i]:offsets[i + 1]]) for i in indices],
                                dtype=object)
    return cols


def predict(ckpt: str | os.PathLike | None, data: str | os.PathLike, out: str | os.PathLike, split: str | None = None,
            part: str = "test", plot_dir: str | os.PathLike | None = None, n_plots: int = 8,
            refine_cfg: RefineConfig | None = None, overwrite: bool = False, prior: Any = None,
            baseline: str | None = None, baseline_options: dict[str, Any] | None = None
            ) -> tuple[Path, dict[str, Any]]:
    """Localize every sample of ``data`` (or one split ``part``) and write ``out`` (.parquet or .csv).

    The method is the checkpoint ``ckpt`` — a posterior, or any other kind of
    :mod:`learn.registry` (``heatmap``, ``mlp-unet``: point estimates, ``std_m`` NaN) — or
    ``baseline`` (``mapmatch`` or ``prior-only``: they need no training data); crops are placed by ``prior``
    (:mod:`learn.priors`, default truth-free). Rows: ``index, x_m, y_m, lon, lat, std_m``
    (the posterior's spread [m]), ``prior`` and, for imported drive tests, the times and
    source rows of each sample (:func:`sample_context`). Where the corpus knows the truth it
    is read after prediction, only to add ``true_x_m, true_y_m, error_m``. Returns the path
    and a summary (``n``, ``prior``, ``median_m`` when the truth is known).
    """
    import pandas as pd

    from learn.priors import resolve_prior
    from twin.corpus.store import open_corpus
    from twin.errors import InputError
    from twin.io import atomic_file

    out = Path(out)
    if out.suffix not in (".parquet", ".csv"):
        raise InputError(f"{out}: predictions are written as .parquet or .csv")
    if (ckpt is None) == (baseline is None):
        raise InputError("give exactly one of a checkpoint (--ckpt) or a baseline (--baseline mapmatch)")
    ckpt_dict = load_checkpoint(ckpt, kind=None) if ckpt is not None else None  # a broken checkpoint fails first
    corpus = open_corpus(data)
    crop_prior = resolve_prior(prior).for_corpus(corpus)
    indices = np.arange(len(corpus)) if split is None else corpus.split_indices(split, part)
    table: dict[str, Any]
    posterior = ckpt_dict is not None and ckpt_dict["kind"] == KIND
    if ckpt is not None and ckpt_dict is not None and posterior:
        method = PosteriorMethod(ckpt_dict, os.fspath(ckpt), refine_cfg)
        loader = _corpus_loader(corpus, indices, method.ckpt, method.batch_size, method.num_workers, crop_prior,
                                needs_physics_maps(method.refine_cfg))
        res = predict_batches(method.model, loader, method.refine_cfg, method.point, device=method.device,
                              keep_mixtures=n_plots if plot_dir else 0,
                              background_channel=_background_channel(method.ckpt), progress=True,
                              temperature=method.temperature)
        xy = res["xy_m"]
        table = {"index": res["index"], "x_m": xy[:, 0], "y_m": xy[:, 1]}
        table |= sample_context(corpus, res["index"], xy)
        table |= {"mean_x_m": res["mean_xy_m"][:, 0], "mean_y_m": res["mean_xy_m"][:, 1], "std_m": res["std_m"],
                  "max_weight": res["max_weight"]}
        if res["refined_xy_m"] is not None:
            table |= {"refined_x_m": res["refined_xy_m"][:, 0], "refined_y_m": res["refined_xy_m"][:, 1],
                      "refined": res["refined"]}
        truth = res["truth_xy_m"]
        scores = {"nll": res["nll"], "hdr_level": res["hdr_level"]}
    else:
        from learn.registry import load_method, make_baseline

        if ckpt is not None:  # another kind of checkpoint (heatmap, mlp-unet): its registered method
            bm = load_method(ckpt)
        elif baseline not in ("mapmatch", "prior-only"):
            raise InputError(f"learn predict: baseline '{baseline}' needs training data; use mapmatch or prior-only "
                             "(or `learn eval` for the k-NN baselines)")
        else:
            bm = make_baseline(baseline, **(baseline_options or {}),
                               **({"n_plots": n_plots} if baseline == "mapmatch" else {}))
        pred = bm.predict(corpus, indices, prior=crop_prior)
        xy = np.asarray(pred.xy_m, np.float64)
        table = {"index": indices, "x_m": xy[:, 0], "y_m": xy[:, 1], **sample_context(corpus, indices, xy)}
        table["std_m"] = getattr(bm, "std_m_", np.full(len(indices), np.nan))
        truth, scores = None, {}
        if plot_dir and baseline == "mapmatch":
            bm.plot_extra(plot_dir)
    table["prior"] = np.full(len(xy), crop_prior.name, dtype=object)
    summary: dict[str, Any] = {"n": len(xy), "prior": crop_prior.name, "prior_label": crop_prior.label}
    # Scoring, after prediction: the truth where the corpus has it.
    if truth is None:
        truth = corpus.batch(indices, ["position_xy_m"])["position_xy_m"].astype(np.float64)
    known = np.isfinite(truth).all(1)
    if known.any():
        err = np.where(known, np.linalg.norm(xy - np.where(known[:, None], truth, 0.0), axis=1), np.nan)
        table |= {"true_x_m": truth[:, 0], "true_y_m": truth[:, 1], "error_m": err, **scores}
        summary["median_m"] = float(np.median(err[known]))
    frame = pd.DataFrame(table)
    with atomic_file(out, overwrite=overwrite) as tmp:
        frame.to_parquet(tmp, index=False) if out.suffix == ".parquet" else frame.to_csv(tmp, index=False)
    if plot_dir and posterior:
        plot_posteriors(res["mixtures"], plot_dir)
    return out, summary


def _register() -> None:
    from learn.registry import register_checkpoint_kind

    register_checkpoint_kind(KIND, _load_method)


_register()
