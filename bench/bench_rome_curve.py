"""The Rome crop's learning curve: the posterior from scratch against the baselines, on one test part.

``python -m bench.bench_rome_curve [--minutes 20] [--curve-minutes 2,5,10] [--set SECTION.KEY=VALUE ...] --out DIR``

* **Data**: the Rome crop (``--data``, seed 004's Dataset A: the real drive test,
  ``learn import rome-crop``), split ``spatial`` (200 m blocks); "unknown / known streets"
  are test blocks without / with training samples.
* **Posterior**: the ``localize`` preset (or ``--config``) from scratch, configured as
  :mod:`bench.bench_localize` configures its real-data runs (``without_cell_maps``: the
  crop has no per-cell maps, so no likelihood keys), one run of ``--minutes`` training
  minutes (``train.total_minutes``, warmup-stable-decay) judged at its snapshots
  (``train.snapshot_minutes``: not annealed), at its end (``last.pt``, decayed) and at
  ``best.pt`` (lowest validation loss). ``--set`` adds config overrides (one run per
  distinct set, named by them; e.g. ``--set model.dropout=0.2``).
* **Baselines** on the same test part and priors: the prior alone, k-NN in the square, WkNN
  (whole area) and the heatmap baseline (small preset, ``--heatmap-minutes``). Map matching
  needs per-cell maps: not applicable here.
* **Diagnostics** per judged checkpoint (prior ``auto``): the coarse head's entropy [nats]
  beside the uniform grid's, the posterior-mean point's errors beside the MAP component's
  (the default point), and the share of test samples the model places closer than the prior.

Writes ``DIR/results.json``, ``DIR/results.md`` and ``DIR/rome_curve.png``; stages are cached
under ``DIR`` (resumable; the heatmap and the baselines are shared by every ``--set``).

Example::

    PYTHONPATH=$PWD .venv/bin/python -m bench.bench_rome_curve --minutes 2 --curve-minutes 1 --out out/rome_curve
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.bench_localize import (
    DEFAULT_DATA,
    PART_NAMES,
    _cached,
    _fresh,
    _load,
    _log,
    _priors,
    baseline_rows,
    loader_workers,
    model_rows,
    plot_error_curve,
    posterior_run,
    prior_label,
    without_cell_maps,
)

DATA = "Rome crop"
SPLIT = "spatial"
PARTS = ("all", "unknown", "known")


def parse_sets(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``SECTION.KEY=VALUE`` strings (VALUE read as YAML, ``1e-3`` as a number) as config overrides per section."""
    over: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not section or not name:
            raise SystemExit(f"--set {item!r}: expected SECTION.KEY=VALUE (e.g. model.dropout=0.2)")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads 1e-3 as a string
            with contextlib.suppress(ValueError):
                parsed = float(parsed)
        over.setdefault(section, {})[name] = parsed
    return over


def diagnostics(url: str, ckpt: str, prior: Any) -> dict[str, Any]:
    """Coarse-head entropy, posterior-mean vs MAP point, share closer than the prior (test part, ``prior``).

    Returns ``coarse_entropy_nats`` (mean over samples), ``uniform_entropy_nats`` (``ln G²``),
    ``map`` and ``mean`` (:func:`learn.metrics.error_summary` per test piece of each point
    estimate) and ``closer_than_prior`` (share of samples whose MAP point beats the crop centre).
    """
    import torch

    from learn.checkpoint import load_checkpoint
    from learn.metrics import error_summary, position_errors_m
    from learn.predict import _corpus_loader, load_posterior
    from learn.splits import known_street_mask
    from twin import io
    from twin.corpus.store import open_corpus

    corpus = open_corpus(url)
    p = prior.for_corpus(corpus)
    test = corpus.split_indices(SPLIT, "test")
    ck = load_checkpoint(ckpt)
    model, ck = load_posterior(ck, "cpu", ckpt)
    loader = _corpus_loader(corpus, test, ck, 64, 0, p)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("index", "ent", "map", "mean", "centre", "truth")}
    with torch.no_grad():
        for batch in loader:
            out, _ = model(batch)
            logp = torch.log_softmax(out.logits.float(), dim=1)
            origin, size = batch["crop_origin_m"].double(), batch["crop_size_m"].double()

            def to_m(xy: torch.Tensor, origin: torch.Tensor = origin, size: torch.Tensor = size) -> np.ndarray:
                return (origin + xy.double() * size[:, None]).numpy()

            cols["index"].append(batch["index"].numpy())
            cols["ent"].append(-(logp.exp() * logp).sum(1).numpy())
            cols["map"].append(to_m(out.mixture.map_component()))
            cols["mean"].append(to_m(out.mixture.mean()))
            cols["centre"].append((origin + size[:, None] / 2).numpy())
            cols["truth"].append(to_m(batch["target_xy"].double()))
    res = {k: np.concatenate(v) for k, v in cols.items()}
    order = np.argsort(res["index"])
    res = {k: v[order] for k, v in res.items()}
    if not np.array_equal(res["index"], np.sort(test)):
        raise RuntimeError(f"{ckpt}: the loader's indices differ from the test part's")
    labels = io.read(corpus.samples, f"split_{SPLIT}", corpus.url)
    groups = io.read(corpus.samples, "group_id", corpus.url)
    known = known_street_mask(groups, labels, res["index"])
    err = {k: position_errors_m(res[k], res["truth"]) for k in ("map", "mean", "centre")}
    pieces = {"all": np.ones(len(known), bool), "unknown": ~known, "known": known}
    grid = int(ck["configs"]["model"]["grid_size"])
    return {"coarse_entropy_nats": float(res["ent"].mean()), "uniform_entropy_nats": math.log(grid * grid),
            **{pt: {name: error_summary(err[pt][sel]) for name, sel in pieces.items()} for pt in ("map", "mean")},
            "closer_than_prior": {name: float(np.mean(err["map"][sel] < err["centre"][sel]))
                                  for name, sel in pieces.items()}}


def run_label(over: dict[str, dict[str, Any]]) -> str:
    """A run's name suffix from its ``--set`` overrides (``""`` without)."""
    return "".join(f"_{s}.{k}={v}" for s, kv in sorted(over.items()) for k, v in sorted(kv.items()))


def judge_points(out: Path, url: str, name: str, label: str, run: dict[str, Any],
                 points: Sequence[tuple[str, str, int | None, float | None, str]], priors: dict[str, Any],
                 diagnose: bool) -> dict[str, Any]:
    """Checkpoints ``(at, path, step, training minutes, phase)`` of one run judged under ``auto``
    (``end`` and ``best``: under every prior), with :func:`diagnostics` when ``diagnose``.
    Returns ``{"run", "rows", "curve", "label"}``."""
    curve, rows = [], []
    cs = [(url, ())]
    for at, ckpt, step, mins, phase in points:
        use = priors if at in ("end", "best") else {"auto": priors["auto"]}
        got = _cached(out / "stages" / f"{name}_{at}_eval.json", partial(
            model_rows, DATA, cs, SPLIT, f"{label} ({at})", ckpt, use, run))
        diag = (_cached(out / "stages" / f"{name}_{at}_diag.json", partial(diagnostics, url, ckpt, priors["auto"]))
                if diagnose else None)
        rows += got
        auto = next(r for r in got if r["prior"] == "auto")
        curve.append({"at": at, "train_minutes": mins, "steps": step, "phase": phase, "diag": diag,
                      **{p: auto["parts"][p] for p in PARTS}})
    return {"run": run, "rows": rows, "curve": curve, "label": label}


def _points(snapshots: Sequence[dict[str, Any]], directory: Path, warmup_minutes: float, decay_start_minutes: float,
            last: str, steps: int, step_minutes: float, best: str
            ) -> list[tuple[str, str, int | None, float | None, str]]:
    """A run's judged checkpoints: its snapshots (with their schedule phase), ``last.pt`` and ``best.pt``."""
    pts: list[tuple[str, str, int | None, float | None, str]] = []
    for snap in snapshots:
        m = snap["train_s"] / 60
        phase = ("warm-up" if m < warmup_minutes else "stable (not decayed)" if m < decay_start_minutes
                 else "decaying")
        pts.append((snap["at"], str(directory / snap["file"]), snap["step"], m, phase))
    pts.append(("end", last, steps, step_minutes, "end (decayed)"))
    pts.append(("best", best, None, None, "best val"))
    return pts


def curve_stage(out: Path, url: str, spec: str, minutes: float, curve_minutes: Sequence[float],
                sets: dict[str, dict[str, Any]], priors: dict[str, Any]) -> dict[str, Any]:
    """One posterior run from scratch (configured as bench_localize's real runs, plus ``sets``), judged at
    every snapshot, its end and ``best.pt`` (:func:`judge_points`, with diagnostics)."""
    over, note = without_cell_maps(spec)
    for section, kv in sets.items():
        over = {**over, section: {**over.get(section, {}), **kv}}
    suffix = run_label(sets)
    name = f"rome_crop_{Path(spec).stem}_scratch_{minutes:g}min{suffix}"
    run = posterior_run(out, name, spec, [url], SPLIT, minutes, over=over,
                        snapshot_minutes=[m for m in curve_minutes if m < minutes])
    shown = ", ".join(f"{sec}.{k}={v}" for sec, kv in sorted(sets.items()) for k, v in sorted(kv.items()))
    label = f"posterior {Path(spec).stem}{note}" + (f" [{shown}]" if shown else "")
    points = _points(run["snapshots"], Path(run["last"]).parent, run["warmup_minutes"], run["decay_start_minutes"],
                     run["last"], run["steps"], run["step_minutes"], run["ckpt"])
    return judge_points(out, url, name, label, run, points, priors, diagnose=True)


def heatmap_stage(out: Path, url: str, minutes: float, curve_minutes: Sequence[float], priors: dict[str, Any]
                  ) -> dict[str, Any]:
    """The heatmap baseline (small preset, as bench_localize trains it) for ``minutes``, judged as the posterior."""
    from learn.checkpoint import load_checkpoint
    from learn.heatmap_train import fit_heatmap, load_heatmap_config

    name = f"rome_crop_heatmap_{minutes:g}min"
    snaps = [float(m) for m in curve_minutes if m < minutes]
    cfg = load_heatmap_config("small", train={"total_minutes": minutes, "split_scheme": SPLIT,
                                              "num_workers": loader_workers(), "snapshot_minutes": snaps})

    def make() -> dict[str, Any]:
        load0, t0 = _load(), time.perf_counter()
        s = fit_heatmap(url, SPLIT, _fresh(out / "runs" / name), cfg, progress=False)
        last = out / "runs" / name / "last.pt"
        ck = load_checkpoint(last, kind=None)
        return {"name": name, "config": "heatmap small", "ckpt": s.path, "last": str(last), "steps": s.steps,
                "epochs": s.epochs, "best_epoch": s.best_epoch, "planned_minutes": minutes,
                "train_minutes": (time.perf_counter() - t0) / 60, "step_minutes": float(ck["train_s"]) / 60,
                "samples_per_s": s.steps * cfg.train.batch_size / max(float(ck["train_s"]), 1e-9),
                "warmup_minutes": minutes * cfg.train.warmup_frac,
                "decay_start_minutes": minutes * (1 - cfg.train.decay_frac),
                "snapshots": list(ck.get("snapshots", [])), "load": [load0, _load()]}

    run = _cached(out / "runs" / f"{name}.json", make)
    points = _points(run["snapshots"], Path(run["last"]).parent, run["warmup_minutes"], run["decay_start_minutes"],
                     run["last"], run["steps"], run["step_minutes"], run["ckpt"])
    return judge_points(out, url, name, f"heatmap small ({minutes:g} min)", run, points, priors, diagnose=False)


def markdown(results: dict[str, Any]) -> str:
    """Tables of ``results.json``: every method per prior (mean / median / RMSE per test piece), then the curves."""
    rows = results["rows"]
    ns = {p: max(r["parts"][p]["n"] for r in rows) for p in PARTS}
    lines = [f"Machine: {results['machine']}; load average {results['load_range'][0]:.1f}-"
             f"{results['load_range'][1]:.1f}; wall {results['wall_minutes']:.0f} min.", "",
             f"**{DATA}**, split `{SPLIT}`; mean / median / RMSE [m] per test piece "
             f"(n: {', '.join(f'{PART_NAMES[p]} {ns[p]}' for p in PARTS)})", "",
             "| prior | method | " + " | ".join(PART_NAMES[p] for p in PARTS) + " | NLL [nats/m²] | cov. 50 / 90 % |",
             "|---|---|" + "---|" * len(PARTS) + "---|---|"]

    def cell(m: dict[str, Any]) -> str:
        return "-" if not m.get("n") else f"{m['mean_m']:.1f} / {m['median_m']:.1f} / {m['rmse_m']:.1f}"

    for pname in ("auto", "truth", "whole"):
        for r in (r for r in rows if r["prior"] == pname):
            a = r["parts"]["all"]
            cov = "-" if "coverage50" not in a else f"{a['coverage50']:.2f} / {a['coverage90']:.2f}"
            nll = "-" if a.get("nll") is None else f"{a['nll']:.2f}"
            lines.append(f"| {prior_label(pname, a.get('prior', pname))} | {r['method']} | "
                         + " | ".join(cell(r["parts"][p]) for p in PARTS) + f" | {nll} | {cov} |")
    lines.append("- map matching: not applicable (the Rome crop has no per-cell radio maps)")
    for c in [*results["curves"], results["heatmap"]]:
        run = c["run"]
        d0 = c["curve"][0]["diag"]
        lines += ["", f"Learning curve of `{c['label']}` (prior auto; {run['steps']} steps, {run['epochs']} epochs, "
                  f"{run['samples_per_s']:.0f} samples/s, best.pt = epoch {run['best_epoch']}); unknown / known "
                  "streets mean / median / RMSE [m] of the point estimate"
                  + ("" if d0 is None else " (the MAP component, the default), RMSE of the posterior mean, coarse "
                     f"entropy [nats] (uniform: {d0['uniform_entropy_nats']:.2f}), share of unknown-street samples "
                     "closer than the prior") + ":", "",
                  "| point | training min | steps | schedule | unknown streets | known streets | "
                  "RMSE of the mean, unknown / known | coarse entropy | closer than prior |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for p in c["curve"]:
            d = p["diag"]
            mins = "-" if p["train_minutes"] is None else f"{p['train_minutes']:.1f}"
            extra = ("- | - | -" if d is None else f"{d['mean']['unknown']['rmse_m']:.1f} / "
                     f"{d['mean']['known']['rmse_m']:.1f} | {d['coarse_entropy_nats']:.2f} | "
                     f"{d['closer_than_prior']['unknown']:.2f}")
            lines.append(f"| {p['at']} | {mins} | {p['steps'] if p['steps'] is not None else '-'} | {p['phase']} | "
                         f"{cell(p['unknown'])} | {cell(p['known'])} | {extra} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """RMSE on unknown streets (prior auto) against training minutes; the baselines as horizontal lines."""
    series = []
    for c in [*results["curves"], results["heatmap"]]:
        pts = [p for p in c["curve"] if p["train_minutes"] is not None]
        series.append((c["label"], [p["train_minutes"] for p in pts], [p["unknown"]["rmse_m"] for p in pts]))
    lines = [(f"{r['method']} ({r['prior']})", r["parts"]["unknown"]["rmse_m"]) for r in results["rows"]
             if r["method"] in ("prior-only", "knn-square", "wknn") and r["prior"] in ("auto", "whole")]
    plot_error_curve(series, lines, path, "RMSE on unknown streets [m]",
                     f"{DATA}, split {SPLIT}, prior auto: error against training time")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_rome_curve", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA / "rome_crop" / "rome_crop_knn_ready.csv"),
                    help="the Rome crop's drive-test CSV")
    ap.add_argument("--out", default="out/rome_curve", help="output folder (stages found there are skipped)")
    ap.add_argument("--config", default="localize", help="posterior preset or YAML")
    ap.add_argument("--minutes", type=float, default=20.0, help="the run's training minutes")
    ap.add_argument("--curve-minutes", default="2,5,10", help="snapshots [training minutes], comma-separated")
    ap.add_argument("--heatmap-minutes", type=float, help="the heatmap baseline's training minutes (default: --minutes)")
    ap.add_argument("--set", action="append", default=[], help="config override SECTION.KEY=VALUE (repeatable)")
    args = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    from learn.importers import import_rome_crop
    from learn.train import set_threads

    set_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0, load0 = time.perf_counter(), _load()
    url = out / "rome_crop.zarr"
    if not url.exists():
        import_rome_crop(Path(args.data), url, overwrite=True)
    priors = _priors()
    cs = [(str(url), ())]
    rows = list(_cached(out / "stages" / "baselines.json", partial(baseline_rows, DATA, cs, SPLIT, False, priors)))
    curve_minutes = [float(m) for m in args.curve_minutes.split(",") if m.strip()]
    c = curve_stage(out, str(url), args.config, args.minutes, curve_minutes, parse_sets(args.set), priors)
    hm = heatmap_stage(out, str(url), args.heatmap_minutes or args.minutes, curve_minutes, priors)
    path = out / "results.json"
    old: dict[str, Any] = (json.loads(path.read_text()) if path.is_file() else
                           {"curves": [], "load_range": [load0[0], load0[0]], "wall_minutes": 0.0})
    curves = [x for x in old["curves"] if x["run"]["name"] != c["run"]["name"]] + [c]
    loads = [load0[0], _load()[0], *old["load_range"]]
    results = {"machine": f"{platform.node()} ({platform.processor() or platform.machine()}), one torch thread",
               "rows": [*rows, *hm["rows"], *(r for x in curves for r in x["rows"])], "curves": curves,
               "heatmap": hm,
               "load_range": [min(loads), max(loads)],
               "wall_minutes": old["wall_minutes"] + (time.perf_counter() - t0) / 60}
    path.write_text(json.dumps(results, indent=1, default=float))
    (out / "results.md").write_text(markdown(results))
    plot(results, out / "rome_curve.png")
    print(markdown(results))
    _log(f"results: {path}, {out / 'results.md'}, {out / 'rome_curve.png'}")


if __name__ == "__main__":
    main()
