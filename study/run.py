"""The resumable study runner: :func:`run_study` (``learn study PLAN.yaml --out DIR``).

One folder per stage under ``out``; a stage whose ``stage.json`` exists is complete and
skipped, so a killed run continues where it stopped. Data stages are built in a
temporary folder and moved into place whole (:func:`twin.io.atomic_dir`); training
stages run in place and resume from their ``last.pt`` (:func:`learn.train.train`), their
``stage.json`` written last. Every ``stage.json`` records the stage's wall and CPU
seconds (this process and its reaped children: ``os.times``) and the stages it
depends on, so that each Table 1 row can state what it cost (seed 004 Fig. 9).

Stages, in order::

    scene/            the twin's scene (built, unless the plan names one)
    reality/          the proxy reality (study.reality) -- or the user's drive test and BS file
    twin_b/           the twin's maps of the operator's BS file
    A/                Dataset A (imported drive test), its held-out region (split rule)
    B/, calibrate/, Bp/, C/     the synthetic datasets (study.datasets)
    fidelity/         reality - twin per cell [dB], before and after calibration
    train/<model>/<chain>/      one run per model and training chain (prefixes shared); models
                      posterior, heatmap, mlp-unet
    train/posterior/<chain>-dann/   the domain-adversarial fine-tuning of plan.dann's chains
    eval/             every model and baseline on A's test part, per prior
    table/            Table 1 (Markdown, JSON) and the known-vs-unknown figure
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from study.plan import StudyPlan, load_plan
from twin.config import dump_yaml, to_dict
from twin.errors import InputError, OutputExistsError

__all__ = ["run_study", "StudyResult", "chain_name", "dann_stage", "STAGE_FILE"]

STAGE_FILE = "stage.json"


def chain_name(chain: tuple[str, ...]) -> str:
    """A folder name of a chain: ``("C", "B'", "A")`` -> ``C-Bp-A``."""
    return "-".join(s.replace("'", "p") for s in chain)


class _Stages:
    """Runs stages once, records their cost, skips complete ones."""

    def __init__(self, out: Path, log: Callable[[str], None]):
        self.out = out
        self.log = log
        self.info: dict[str, dict[str, Any]] = {}

    def done(self, name: str) -> dict[str, Any] | None:
        f = self.out / name / STAGE_FILE
        if f.is_file():
            info = json.loads(f.read_text())
            self.info[name] = info
            return info
        return None

    def _finish(self, name: str, folder: Path, t0: float, c0: float, deps: list[str], result: dict[str, Any]
                ) -> dict[str, Any]:
        info = {"stage": name, "wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(_cpu_s() - c0, 3),
                "deps": deps, "result": result, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        tmp = folder / (STAGE_FILE + ".partial")
        tmp.write_text(json.dumps(info, indent=2, default=_json_default))
        os.replace(tmp, folder / STAGE_FILE)
        self.info[name] = info
        return info

    def atomic(self, name: str, deps: list[str], build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """A data stage: ``build(tmp_folder) -> result`` inside :func:`twin.io.atomic_dir`."""
        from twin.io import atomic_dir

        if (info := self.done(name)) is not None:
            self.log(f"[skip] {name} (complete)")
            return info
        self.log(f"[run ] {name}")
        final = self.out / name
        if final.exists():  # a folder without stage.json: a stage that failed mid-way, not ours to keep
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        t0, c0 = time.perf_counter(), _cpu_s()
        with atomic_dir(final) as tmp:
            result = build(tmp)
            self._finish(name, tmp, t0, c0, deps, result)
        return self.info[name]

    def in_place(self, name: str, deps: list[str], build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """A training stage: ``build(folder)`` resumes its own work; ``stage.json`` marks it complete."""
        if (info := self.done(name)) is not None:
            self.log(f"[skip] {name} (complete)")
            return info
        self.log(f"[run ] {name}")
        folder = self.out / name
        folder.mkdir(parents=True, exist_ok=True)
        t0, c0 = time.perf_counter(), _cpu_s()
        result = build(folder)
        return self._finish(name, folder, t0, c0, deps, result)

    def closure(self, names: list[str], exclude: tuple[str, ...] = ("scene", "reality")) -> list[str]:
        """Stages ``names`` and everything they depend on, minus ``exclude`` (the world and the campaign)."""
        seen: list[str] = []
        todo = list(names)
        while todo:
            n = todo.pop()
            if n in seen or n in exclude or n not in self.info:
                continue
            seen.append(n)
            todo.extend(self.info[n].get("deps", []))
        return sorted(seen)

    def cost(self, names: list[str]) -> dict[str, Any]:
        stages = self.closure(names)
        return {"wall_s": round(sum(self.info[s]["wall_s"] for s in stages), 2),
                "cpu_s": round(sum(self.info[s]["cpu_s"] for s in stages), 2), "stages": stages}


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


class StudyResult(dict):
    """What :func:`run_study` returns: the table's JSON content (``rows``, ``fidelity``, ``readout`` ...) and paths."""


def _twin_trace_config(plan: StudyPlan) -> Any:
    from twin.radio.tracer import TraceConfig

    n = plan.synthetic.twin_samples_per_tx
    return TraceConfig() if n is None else TraceConfig(samples_per_tx=n, min_samples_per_tx=min(n, 10**6))


def run_study(plan: StudyPlan | str | os.PathLike, out: str | os.PathLike, progress: bool = True,
              log: Callable[[str], None] | None = None) -> StudyResult:
    """Build A, B, B', C, train every chain of ``plan.experiments``, score all on A, write Table 1.

    Parameters
    ----------
    plan : StudyPlan or path of a plan YAML (:func:`study.plan.load_plan`)
    out : path
        The study folder; an existing one is resumed (complete stages are skipped). The
        plan is written to ``out/plan.yaml``; resuming with a different plan is refused.
    progress : bool
        Progress bars of the long stages (tracing, sampling, training).

    Returns
    -------
    StudyResult
        The content of ``table/table.json`` plus ``paths``.
    """
    plan = plan if isinstance(plan, StudyPlan) else load_plan(plan)
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "plan.yaml").is_file():
        raise OutputExistsError(out, f"{out}: a non-empty folder that holds no study (no plan.yaml); give a new --out")
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda s: print(s, flush=True))
    recorded = out / "plan.yaml"
    current = json.dumps(to_dict(plan), sort_keys=True, default=str)
    if recorded.is_file():
        from twin.config import from_dict, read_yaml

        before = json.dumps(to_dict(from_dict(StudyPlan, read_yaml(recorded), str(recorded))), sort_keys=True,
                            default=str)
        if before != current:
            raise InputError(f"{out}: holds a study of another plan ({recorded}); give a new --out or delete it")
    else:
        dump_yaml(plan, recorded)
    st = _Stages(out, log)

    # -- the world -----------------------------------------------------------------------------
    if plan.scene.scene_dir is not None:
        scene_dir = Path(plan.scene.scene_dir)
    else:
        def build_scene_stage(tmp: Path) -> dict[str, Any]:
            from twin.scene.build import build_scene, scene_config

            cfg = scene_config(cell_size_m=plan.scene.cell_size_m)
            sc = build_scene(tmp / "scene", plan.scene.osm_file, plan.scene.bbox, plan.scene.name, cfg)
            return {"name": sc.name, "grid": sc.grid.to_dict()}

        st.atomic("scene", [], build_scene_stage)
        scene_dir = out / "scene" / "scene"

    def reality_stage(tmp: Path) -> dict[str, Any]:
        if plan.a is not None:  # the user's own data: copied, so that the study folder is self-contained
            shutil.copy2(plan.a.drive_test, tmp / ("drive_test" + Path(plan.a.drive_test).suffix))
            shutil.copy2(plan.a.bs_file, tmp / ("operator_bs" + Path(plan.a.bs_file).suffix))
            return {"source": "user", "drive_test": plan.a.drive_test, "bs_file": plan.a.bs_file}
        from study.reality import make_reality

        files = make_reality(scene_dir, tmp, plan.reality, seed=plan.seed, progress=progress)
        return {"source": "proxy reality", **json.loads(files.info.read_text())}

    st.atomic("reality", ["scene"], reality_stage)
    reality = out / "reality"
    drive_test = next(reality.glob("drive_test.*"))
    operator_bs = next(reality.glob("operator_bs.*"))
    truth_bs = reality / "truth_bs.csv" if (reality / "truth_bs.csv").is_file() else None

    def twin_b_stage(tmp: Path) -> dict[str, Any]:
        from twin.radio.tracer import trace

        trace(scene_dir, operator_bs, tmp / "maps.zarr", _twin_trace_config(plan), progress=progress)
        return {"maps": "maps.zarr"}

    st.atomic("twin_b", ["scene", "reality"], twin_b_stage)
    maps_b = out / "twin_b" / "maps.zarr"

    # -- Dataset A and the split rule -------------------------------------------------------------
    def a_stage(tmp: Path) -> dict[str, Any]:
        from learn.importers import import_drive_test
        from study.datasets import held_out_region

        corpus, report = import_drive_test(drive_test, operator_bs, tmp / "corpus.zarr", scene_dir=scene_dir,
                                           maps=maps_b, gap_s=plan.a_gap_s, window_s=plan.a_window_s,
                                           max_events=plan.synthetic.sample.max_events, splits=plan.splits)
        region = held_out_region(corpus, plan.synthetic.buffer_m)
        (tmp / "held_out.json").write_text(json.dumps(region.to_dict(), indent=2))
        return {"import": report.to_dict(), "counts": corpus.attrs["counts"], "held_out_blocks": len(region.blocks)}

    st.atomic("A", ["twin_b", "reality"], a_stage)
    corpus_a = out / "A" / "corpus.zarr"
    from study.datasets import HeldOut

    region = HeldOut.from_dict(json.loads((out / "A" / "held_out.json").read_text()))
    need = plan.datasets()
    corpora: dict[str, Path] = {"A": corpus_a}
    stage_of = {"A": "A", "B": "B", "B'": "Bp", "C": "C"}

    def synthetic(tmp: Path, maps: Path, n: int, seed: int, name: str) -> dict[str, Any]:
        from study.datasets import restrict_corpus
        from twin.corpus.sampler import sample

        cfg = replace(plan.synthetic.sample, n=n, seed=seed)
        sample(scene_dir, maps, cfg, tmp / "raw.zarr", progress=progress)
        corpus, counts = restrict_corpus([tmp / "raw.zarr"], tmp / "corpus.zarr", region,
                                         attrs={"dataset": name})
        shutil.rmtree(tmp / "raw.zarr")
        return {"split_rule": counts, "counts": corpus.attrs["counts"]}

    if "B" in need:
        def b_stage(tmp: Path) -> dict[str, Any]:
            return synthetic(tmp, maps_b, plan.synthetic.b_samples, plan.seed + 11, "B")

        st.atomic("B", ["twin_b", "A"], b_stage)
        corpora["B"] = out / "B" / "corpus.zarr"

    if "B'" in need:
        def calibrate_stage(tmp: Path) -> dict[str, Any]:
            import pandas as pd

            from calibrate.drive_test import write_drive_test
            from calibrate.fit import calibrate
            from study.datasets import training_rows
            from twin.tables import read_drive_test_table

            rows = training_rows(corpus_a)
            table, _ = read_drive_test_table(drive_test)
            train_dt = tmp / "drive_test_train.csv"
            write_drive_test(pd.DataFrame(table.iloc[rows]).reset_index(drop=True), train_dt)
            result = calibrate(scene_dir, operator_bs, train_dt, tmp / "bs_calibrated.csv", tmp / "report",
                               plan.calibrate, progress=progress)
            return {"train_rows": len(rows), "all_rows": len(table), "summary": result.summary()}

        st.atomic("calibrate", ["A"], calibrate_stage)

        def bp_stage(tmp: Path) -> dict[str, Any]:
            from twin.radio.tracer import trace

            trace(scene_dir, out / "calibrate" / "bs_calibrated.csv", tmp / "maps.zarr", _twin_trace_config(plan),
                  progress=progress)
            return synthetic(tmp, tmp / "maps.zarr", plan.synthetic.b_samples, plan.seed + 12, "B'")

        st.atomic("Bp", ["calibrate", "A"], bp_stage)
        corpora["B'"] = out / "Bp" / "corpus.zarr"

    if "C" in need:
        def c_stage(tmp: Path) -> dict[str, Any]:
            from study.datasets import restrict_corpus
            from twin.corpus.sampler import sample
            from twin.radio.deployment import DeployConfig, deploy
            from twin.radio.sites import write_bs_file
            from twin.radio.tracer import Tracer, trace
            from twin.scene.build import load_twin_scene

            syn = plan.synthetic
            scene = load_twin_scene(scene_dir)
            tracer = Tracer(scene, _twin_trace_config(plan))
            raws = []
            for p in range(syn.c_patches):
                patch = tmp / f"patch{p:03d}"
                patch.mkdir()
                sites = deploy(scene, syn.c_strategy, DeployConfig(
                    count=syn.c_sites_per_patch, height_m=syn.c_height_m, azimuth_deg=None,
                    first_cell_id=100_000 * (p + 1)), seed=plan.seed * 1000 + p)
                sites["bs_id"] = [f"c{p:03d}-{b}" for b in sites["bs_id"]]
                write_bs_file(sites, patch / "bs.csv", scene)
                trace(scene, sites, patch / "maps.zarr", tracer=tracer, progress=progress)
                cfg = replace(syn.sample, n=syn.c_samples_per_patch, seed=plan.seed * 1000 + 100 + p)
                sample(scene, patch / "maps.zarr", cfg, patch / "raw.zarr", progress=progress)
                raws.append(patch / "raw.zarr")
            corpus, counts = restrict_corpus(raws, tmp / "corpus.zarr", region, attrs={"dataset": "C"})
            for p in range(syn.c_patches):  # the sites and maps stay (small); the raw samples go
                shutil.rmtree(tmp / f"patch{p:03d}" / "raw.zarr")
            return {"split_rule": counts, "counts": corpus.attrs["counts"], "patches": syn.c_patches}

        st.atomic("C", ["A"], c_stage)
        corpora["C"] = out / "C" / "corpus.zarr"

    # -- fidelity: reality - twin per cell, on A's held-out rows -----------------------------------
    def fidelity_stage(tmp: Path) -> dict[str, Any]:
        from study.datasets import fidelity_gap, training_rows
        from twin.tables import read_drive_test_table

        table, _ = read_drive_test_table(drive_test)
        held = np.setdiff1d(np.arange(len(table)), training_rows(corpus_a))
        res: dict[str, Any] = {"rows": "A's drive-test rows outside its training samples", "n_rows": len(held),
                               "B": fidelity_gap(drive_test, maps_b, scene_dir, held)}
        if (out / "Bp" / "maps.zarr").exists():
            res["B'"] = fidelity_gap(drive_test, out / "Bp" / "maps.zarr", scene_dir, held)
        if truth_bs is not None and (out / "calibrate" / "bs_calibrated.csv").is_file():
            res["site_errors"] = _site_errors(truth_bs, operator_bs, out / "calibrate" / "bs_calibrated.csv",
                                              scene_dir, out / "calibrate" / "report" / "report.json")
        return res

    st.atomic("fidelity", ["A"] + (["Bp"] if "B'" in need else []), fidelity_stage)

    # -- training -------------------------------------------------------------------------------------
    checkpoints: dict[tuple[str, tuple[str, ...]], Path] = {}
    for model in plan.models:
        for chain in plan.chains():
            name = f"train/{model}/{chain_name(chain)}"
            deps = [stage_of[chain[-1]]] + ([f"train/{model}/{chain_name(chain[:-1])}"] if len(chain) > 1 else [])
            init = checkpoints.get((model, chain[:-1])) if len(chain) > 1 else None
            data = corpora[chain[-1]]
            builder = _STAGE_BUILDERS[model]
            info = st.in_place(name, deps, functools.partial(_train_in, builder, plan, data, init, progress))
            checkpoints[(model, chain)] = out / name / info["result"]["checkpoint"]
    # Domain-adversarial fine-tuning (plan.dann): the plain last stage's start and data, the prefix's
    # dataset as source; its own stage beside the plain one.
    dann_stages = []
    for chain in plan.dann_chains():
        name = dann_stage(chain)
        deps = [stage_of[chain[-1]], stage_of[chain[-2]], f"train/posterior/{chain_name(chain[:-1])}"]
        info = st.in_place(name, deps, functools.partial(
            _posterior_stage, plan, corpora[chain[-1]], checkpoints[("posterior", chain[:-1])], progress=progress,
            source=corpora[chain[-2]]))
        checkpoints[("posterior+dann", chain)] = out / name / info["result"]["checkpoint"]
        dann_stages.append(name)

    # -- evaluation on A's test part ------------------------------------------------------------------
    def eval_stage(tmp: Path) -> dict[str, Any]:
        from learn.evaluate import evaluate
        from learn.registry import load_method, make_baseline

        results: list[dict[str, Any]] = []
        for prior in plan.priors:
            for baseline in plan.baselines:
                t0, c0 = time.perf_counter(), _cpu_s()
                r = evaluate(corpus_a, make_baseline(baseline), "spatial", prior=prior)
                results.append({"experiment": "A", "model": baseline, "kind": "baseline", "prior_asked": prior,
                                **r.to_json(), "eval_wall_s": round(time.perf_counter() - t0, 2),
                                "eval_cpu_s": round(_cpu_s() - c0, 2)})
            for exp in plan.experiments:
                from study.plan import parse_chain

                chain = parse_chain(exp)
                for model in plan.models:
                    t0, c0 = time.perf_counter(), _cpu_s()
                    r = evaluate(corpus_a, load_method(checkpoints[(model, chain)]), "spatial", fit=False,
                                 prior=prior)
                    results.append({"experiment": _label(chain), "model": model, "kind": "model",
                                    "chain": list(chain), "prior_asked": prior, **r.to_json(),
                                    "eval_wall_s": round(time.perf_counter() - t0, 2),
                                    "eval_cpu_s": round(_cpu_s() - c0, 2),
                                    "train_stage": f"train/{model}/{chain_name(chain)}"})
                if chain in plan.dann_chains():
                    t0, c0 = time.perf_counter(), _cpu_s()
                    r = evaluate(corpus_a, load_method(checkpoints[("posterior+dann", chain)]), "spatial",
                                 fit=False, prior=prior)
                    lam = plan.dann.domain_adversarial_lambda
                    results.append({"experiment": f"{_label(chain)} + DANN (λ = {lam:g})", "model": "posterior",
                                    "kind": "model", "chain": list(chain),
                                    "dann": {"domain_adversarial_lambda": lam, "source": chain[-2],
                                             "plain": _label(chain)},
                                    "prior_asked": prior, **r.to_json(),
                                    "eval_wall_s": round(time.perf_counter() - t0, 2),
                                    "eval_cpu_s": round(_cpu_s() - c0, 2), "train_stage": dann_stage(chain)})
        (tmp / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
        return {"n": len(results)}

    train_stages = [f"train/{m}/{chain_name(c)}" for m in plan.models for c in plan.chains()] + dann_stages
    st.atomic("eval", ["A", *train_stages], eval_stage)

    # -- Table 1 ----------------------------------------------------------------------------------------
    from study.table import write_table

    results = json.loads((out / "eval" / "results.json").read_text())
    for r in results:
        r["compute"] = st.cost([r["train_stage"]]) if r["kind"] == "model" else {"wall_s": r["eval_wall_s"],
                                                                                 "cpu_s": r["eval_cpu_s"],
                                                                                 "stages": []}
        if r["kind"] == "model":
            r["training_data"] = _training_counts(corpora, tuple(r["chain"]))
    fidelity = st.done("fidelity") or {}
    content = {"plan": plan.name, "a_source": (st.done("reality") or {}).get("result", {}).get("source"),
               "rows": results, "fidelity": fidelity.get("result", {}),
               "stages": {k: {"wall_s": v["wall_s"], "cpu_s": v["cpu_s"]} for k, v in sorted(st.info.items())},
               "datasets": {k: _training_counts(corpora, (k,)) for k in corpora},
               "calibration": (st.done("calibrate") or {}).get("result"),
               "load_average": list(os.getloadavg())}
    paths = write_table(content, out / "table")
    log(f"Table 1: {paths['md']}")
    return StudyResult({**content, "paths": {k: str(v) for k, v in paths.items()}})


def dann_stage(chain: tuple[str, ...]) -> str:
    """The stage of a chain's domain-adversarial fine-tuning: ``("B'", "A")`` -> ``train/posterior/Bp-A-dann``."""
    return f"train/posterior/{chain_name(chain)}-dann"


def _label(chain: tuple[str, ...]) -> str:
    """A row's experiment: ``A``, ``C -> B' -> A``; a chain not ending on A is scored zero-shot (``C -> B' zero-shot``)."""
    return " -> ".join(chain) + ("" if chain[-1] == "A" else " zero-shot")


def _training_counts(corpora: dict[str, Path], chain: tuple[str, ...]) -> dict[str, Any]:
    """Per dataset of the chain: training sequences (UE positions) and events (UE-cell reports)."""
    from twin import io
    from twin.corpus.store import open_corpus

    out: dict[str, Any] = {}
    for d in chain:
        c = open_corpus(corpora[d])
        labels = io.read(c.samples, "split_spatial", c.url)
        train = np.flatnonzero(labels == 0)
        events = int(c.batch(train, ["mask"])["mask"].sum()) if len(train) else 0
        out[d] = {"train_sequences": len(train), "train_events": events}
    return out


def _site_errors(truth: Path, operator: Path, calibrated: Path, scene_dir: Path, report: Path | None = None
                 ) -> list[dict[str, Any]]:
    """Per site: pose errors of the operator's and the calibrated file, beside ρ (:func:`study.datasets.calibration_pose_errors`)."""
    from study.datasets import calibration_pose_errors
    from twin.radio.sites import read_bs_file
    from twin.scene.build import load_twin_scene

    scene = load_twin_scene(scene_dir)
    t, o, c = (read_bs_file(p, scene, on_building=None) for p in (truth, operator, calibrated))
    sites = json.loads(report.read_text()).get("sites", []) if report is not None and report.is_file() else []
    return calibration_pose_errors(t, o, c, sites)


def _train_in(builder: Callable[..., dict[str, Any]], plan: StudyPlan, data: Path, init: Path | None,
              progress: bool, folder: Path) -> dict[str, Any]:
    return builder(plan, data, init, folder, progress)


def _posterior_stage(plan: StudyPlan, data: Path, init: Path | None, folder: Path, progress: bool,
                     source: Path | None = None) -> dict[str, Any]:
    """The posterior on ``data``: from scratch, or fine-tuning ``init``; with ``source``, domain-adversarially.

    ``source`` (a fine-tuning only): the synthetic corpus beside ``data`` (``learn.train.train``
    ``source_data``) with ``train.domain_adversarial_lambda`` = ``plan.dann``'s.
    """
    from learn.train import finetune, load_run_config, pretrain

    run = folder / "run"
    spec, over = ((plan.train.posterior, plan.train.posterior_overrides) if init is None
                  else (plan.train.finetune, plan.train.finetune_overrides))
    over = {k: dict(v) for k, v in over.items()}
    over.setdefault("train", {})["split_scheme"] = "spatial"
    over["train"].setdefault("seed", plan.seed)
    if source is not None:
        over["train"]["domain_adversarial_lambda"] = plan.dann.domain_adversarial_lambda
    config = load_run_config(spec, over)
    resume = (run / "last.pt").is_file()
    kw: dict[str, Any] = {"resume": resume, "overwrite": run.exists() and not resume, "progress": progress}
    if source is not None:
        kw["source_data"] = [source]
    res = pretrain([data], config, run, **kw) if init is None else finetune(init, [data], config, run, **kw)
    return {"checkpoint": str(Path(res.checkpoint).relative_to(folder)), "steps": res.steps, "epochs": res.epochs,
            "best_val": res.best_val, "samples_per_s": res.samples_per_s, "init": str(init) if init else None,
            **({"source": str(source), "domain_adversarial_lambda": config.train.domain_adversarial_lambda}
               if source is not None else {})}


def _heatmap_stage(plan: StudyPlan, data: Path, init: Path | None, folder: Path, progress: bool
                   ) -> dict[str, Any]:
    from learn.heatmap_train import fit_heatmap, load_heatmap_config

    run = folder / "run"
    t = plan.train
    over = t.heatmap_overrides if init is None else _merge(t.heatmap_overrides, t.heatmap_finetune_overrides)
    config = load_heatmap_config(t.heatmap, **over)
    resume = (run / "last.pt").is_file()
    res = fit_heatmap(data, "spatial", run, config,
                      epochs=t.heatmap_epochs if init is None else (t.heatmap_finetune_epochs or t.heatmap_epochs),
                      max_steps=t.heatmap_max_steps if init is None else (t.heatmap_finetune_max_steps
                                                                          or t.heatmap_max_steps),
                      batch_size=t.heatmap_batch_size, crop_size_m=t.heatmap_crop_size_m, seed=plan.seed,
                      init_weights=init, resume=resume, overwrite=run.exists() and not resume, progress=progress)
    return {"checkpoint": str(Path(res.path).relative_to(folder)), "steps": res.steps, "epochs": res.epochs,
            "n_train": res.n_train, "best_val_mean_m": res.best_val_mean_m, "init": str(init) if init else None}


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``{section: {key: value}}`` overrides: ``top``'s keys over ``base``'s, per section."""
    out = {k: dict(v) for k, v in base.items()}
    for k, v in top.items():
        out[k] = {**out.get(k, {}), **dict(v)}
    return out


def _unet_stage(plan: StudyPlan, data: Path, init: Path | None, folder: Path, progress: bool) -> dict[str, Any]:
    """The MLP+UNet (:mod:`learn.unet`) on ``data``: from scratch, or fine-tuning ``init``'s weights."""
    from learn.heatmap_train import fit_baseline, load_baseline_config
    from learn.unet import KIND

    run = folder / "run"
    t = plan.train
    over = t.unet_overrides if init is None else _merge(t.unet_overrides, t.unet_finetune_overrides)
    over = _merge(over, {"train": {"seed": over.get("train", {}).get("seed", plan.seed)}})
    config = load_baseline_config(KIND, t.unet, **over)
    resume = (run / "last.pt").is_file()
    res = fit_baseline(KIND, data, "spatial", run, config, init_weights=init, resume=resume,
                       overwrite=run.exists() and not resume, progress=progress)
    return {"checkpoint": str(Path(res.path).relative_to(folder)), "steps": res.steps, "epochs": res.epochs,
            "n_train": res.n_train, "best_val_mean_m": res.best_val_mean_m, "init": str(init) if init else None,
            "init_loaded": list(res.init_loaded) if res.init_loaded else None}


#: The training stage of each model of :data:`study.plan.MODELS`.
_STAGE_BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "posterior": _posterior_stage, "heatmap": _heatmap_stage, "mlp-unet": _unet_stage}
