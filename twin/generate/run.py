"""``twin generate PLAN.yaml``: a plan's shards on Dask distributed, resumable and reproducible.

:func:`generate` checks the plan (before any shard starts), reads the region's OSM data
once, lays out the patches, preallocates the corpus, starts or joins a Dask cluster and
submits one task per shard (:func:`twin.generate.shards.run_shard`), skipping those the manifest
already records when resuming. A shard that raises is retried; one whose worker dies is
rescheduled by Dask; either way its region is rewritten with identical data. When every
shard is done the statistics are computed and the corpus is moved into place.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from twin.errors import EngineError, InputError
from twin.generate.cluster import has_bokeh, jobqueue, start_cluster
from twin.generate.plan import (
    GeneratePlan,
    Shard,
    check_plan,
    frame_only,
    layout_shards,
    load_plan,
    region_extent,
)
from twin.generate.shards import PartialStore, run_shard, shard_region
from twin.io import is_local, output_lock

__all__ = ["generate", "GenerateSummary"]


@dataclass
class GenerateSummary:
    """What a :func:`generate` run did.

    Attributes
    ----------
    output : str
        The corpus URL.
    complete : bool
        Every shard is done and the corpus is finalized at ``output``.
    shards_total, shards_run, shards_skipped : int
        Shards of the plan; computed by this run; already done (``--resume``).
    samples_total, samples_run : int
        Samples of the corpus; written by this run.
    failures : list of (shard index, message)
        Shards that failed after their retries.
    wall_s : float
        Seconds of the whole run (checks, cluster start, shards, finalization).
    shards_s : float
        Seconds from the first submission to the last shard's completion.
    workers : int
        Dask workers when the shards were submitted.
    dashboard : str or None
        The Dask dashboard address (None when not served).
    counts : dict
        Samples per split scheme and part, once complete.
    records : list of dict
        The manifest records of the shards computed by this run (per-stage seconds ...).
    """

    output: str
    complete: bool = False
    shards_total: int = 0
    shards_run: int = 0
    shards_skipped: int = 0
    samples_total: int = 0
    samples_run: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)
    wall_s: float = 0.0
    shards_s: float = 0.0
    workers: int = 0
    dashboard: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def shards_per_hour(self) -> float:
        return 3600.0 * self.shards_run / self.shards_s if self.shards_s > 0 else 0.0

    @property
    def samples_per_s(self) -> float:
        return self.samples_run / self.shards_s if self.shards_s > 0 else 0.0

    def lines(self) -> list[str]:
        """The end-of-run summary, one line per item."""
        state = "complete" if self.complete else "INCOMPLETE (rerun with --resume)"
        out = [f"corpus {self.output}: {state}",
               f"  shards: {self.shards_run} computed, {self.shards_skipped} already done, "
               f"{len(self.failures)} failed, of {self.shards_total}",
               f"  samples: {self.samples_run} written by this run, {self.samples_total} in the corpus",
               f"  wall time: {self.wall_s:.1f} s ({self.shards_s:.1f} s of shards on {self.workers} worker(s)); "
               f"throughput {self.shards_per_hour:.1f} shards/h, {self.samples_per_s:.1f} samples/s"]
        for scheme, parts in self.counts.items():
            out.append(f"  split {scheme}: " + ", ".join(f"{k} {v}" for k, v in parts.items()))
        for index, message in self.failures:
            out.append(f"  failed shard {index}: {message}")
        return out


def _patch_osm(osm: Any, frame: Any, extent_m: tuple[float, float, float, float], margin_m: float) -> Any:
    """The region's OSM features that touch a patch (plus ``margin_m``), in their file order."""
    import numpy as np
    from shapely.geometry import box

    from twin.scene.osm import OsmData

    x0, y0, x1, y1 = extent_m
    lon, lat = frame.to_lonlat(np.array([x0 - margin_m, x1 + margin_m, x1 + margin_m, x0 - margin_m]),
                               np.array([y0 - margin_m, y0 - margin_m, y1 + margin_m, y1 + margin_m]))
    area = box(float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))

    def within(gdf: Any) -> Any:
        if len(gdf) == 0:
            return gdf
        return gdf.iloc[np.sort(gdf.sindex.query(area, predicate="intersects"))]

    return OsmData(buildings=within(osm.buildings), roads=within(osm.roads), bbox=area.bounds, source=osm.source)


def _diff_keys(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff_keys(a.get(k), b.get(k), f"{where}.{k}".lstrip("."))]
    return [] if a == b else [where or "plan"]


def _prepare(plan: GeneratePlan) -> tuple[Any, Any, list[Shard], Any]:
    """Read the region once: its OSM data, frame, shards and (``file`` strategy) BS table."""
    from scenes import default_osm_file
    from twin.geo import validate_bbox
    from twin.scene.osm import read_osm

    # no file means the bundled extract (cropped to the bbox), never Overpass: shards must be offline
    osm = read_osm(plan.region.osm_file or default_osm_file(), plan.region.bbox)
    if len(osm.buildings) == 0 and len(osm.roads) == 0:
        raise InputError(f"{plan.source}: region: no buildings or roads in {osm.bbox} of {osm.source}")
    bbox = validate_bbox(osm.bbox, max_area_km2=plan.region.max_area_km2)
    frame, extent = region_extent(plan, bbox)
    shards = layout_shards(plan, extent)
    bs_table = None
    if plan.deploy.strategy == "file":
        from twin.radio.sites import read_bs_file

        assert plan.deploy.bs_file is not None  # check_plan refuses the 'file' strategy without one
        bs_table = read_bs_file(plan.deploy.bs_file, frame_only(frame), on_building=None)
    return osm, frame, shards, bs_table


def _open_partial(plan: GeneratePlan, partial: PartialStore, n_samples: int, resume: bool,
                  overwrite: bool, echo: Callable[[str], None]) -> None:
    """Continue the interrupted run's store (``resume``) or create a fresh preallocated one."""
    from twin.corpus.sampler import SPLIT_SCHEMES
    from twin.corpus.store import CorpusWriter
    from twin.radio.maps import UNITS

    wanted = plan.to_dict()
    if partial.exists():
        if resume:
            # the engine does not change the output: another cluster may resume the run
            before = {k: v for k, v in partial.read_plan().items() if k != "cluster"}
            differ = _diff_keys(before, {k: v for k, v in wanted.items() if k != "cluster"})
            if differ:
                raise InputError(f"{plan.source}: the plan changed since the interrupted run in {partial.root} "
                                 f"({', '.join(differ[:8])}); restore it, or pass --overwrite to start over")
            return
        if not overwrite:
            raise InputError(f"{partial.root}: an interrupted run of this output is there; pass --resume to "
                             "continue it or --overwrite to start over")
        partial.remove()
    elif resume:
        echo(f"nothing to resume at {partial.root}: starting a fresh run")
    features = list(plan.sample.features)
    CorpusWriter(partial.store, features, [UNITS.get(f, "1") for f in features], plan.sample.max_events,
                 split_schemes=SPLIT_SCHEMES, config=wanted, chunk_samples=plan.sample.chunk_samples,
                 n_samples=n_samples, overwrite=True, in_place=True)
    partial.write_plan(wanted)  # last: a partial folder without it is not resumable and is rebuilt


def generate(plan: GeneratePlan | str | os.PathLike, workers: int | None = None, scheduler: str | None = None,
             cluster: Literal["local", "slurm", "pbs"] | None = None, resume: bool = False, overwrite: bool = False,
             progress: bool = True, echo: Callable[[str], None] | None = None) -> GenerateSummary:
    """Run a generation plan's shards on Dask and finalize the corpus.

    Parameters
    ----------
    plan : GeneratePlan or path
        The plan (a YAML path is read with :func:`twin.generate.plan.load_plan`).
    workers : int, optional
        Worker processes of a LocalCluster (default: one per core), or jobs of SLURM/PBS.
    scheduler : str, optional
        Address of a running Dask scheduler to join (``tcp://host:8786``).
    cluster : {"local", "slurm", "pbs"}, optional
        Overrides the plan's ``cluster.kind``.
    resume : bool
        Continue an interrupted run: shards the manifest records are skipped.
    overwrite : bool
        Replace an existing output (and any interrupted run of it).
    progress : bool
        Show a progress bar over shards (and samples).
    echo : callable, optional
        Where to print the dashboard address and notes (default: nowhere).

    Returns
    -------
    GenerateSummary
        Check ``complete``; failed shards are listed and a rerun with ``resume`` computes them.
    """
    t0 = time.perf_counter()
    echo = echo or (lambda _: None)
    plan = plan if isinstance(plan, GeneratePlan) else load_plan(plan)
    if cluster is not None:
        plan = replace(plan, cluster=replace(plan.cluster, kind=cluster))
    check_plan(plan, overwrite=overwrite, resume=resume)
    if scheduler is None and plan.cluster.kind != "local":
        jobqueue(plan.cluster.kind)  # before anything is written
    lock = output_lock(plan.output.removeprefix("file://")) if is_local(plan.output) else contextlib.nullcontext()
    with lock:  # one run per output: a second one fails at once naming the output
        return _generate(plan, workers, scheduler, resume, overwrite, progress, echo, t0)


def _generate(plan: GeneratePlan, workers: int | None, scheduler: str | None, resume: bool, overwrite: bool,
              progress: bool, echo: Callable[[str], None], t0: float) -> GenerateSummary:
    # Join a running scheduler first: an unreachable one fails before anything is deleted.
    joined = start_cluster(plan.cluster, workers, scheduler) if scheduler else None
    try:
        return _generate_joined(plan, workers, scheduler, resume, overwrite, progress, echo, t0, joined)
    finally:
        if joined is not None:
            with contextlib.suppress(Exception):
                joined[0].close()


def _generate_joined(plan: GeneratePlan, workers: int | None, scheduler: str | None, resume: bool,
                     overwrite: bool, progress: bool, echo: Callable[[str], None], t0: float,
                     joined: tuple[Any, Any] | None) -> GenerateSummary:
    from distributed import as_completed
    from tqdm.auto import tqdm

    osm, frame, shards, bs_table = _prepare(plan)
    partial = PartialStore(plan.output)
    n_total = len(shards) * plan.ue_per_patch
    _open_partial(plan, partial, n_total, resume, overwrite, echo)
    done = partial.done()
    todo = [s for s in shards if s.index not in done]
    summary = GenerateSummary(output=plan.output, shards_total=len(shards), shards_skipped=len(shards) - len(todo),
                              samples_total=n_total)
    if todo:
        _run_shards(plan, todo, osm, frame, bs_table, partial, summary, workers, scheduler, progress, echo,
                    as_completed, tqdm, joined)
    if len(partial.done()) == len(shards):
        _finalize(plan, partial, shards, overwrite, summary)
    summary.wall_s = time.perf_counter() - t0
    return summary


def _run_shards(plan: GeneratePlan, todo: list[Shard], osm: Any, frame: Any, bs_table: Any,
                partial: PartialStore, summary: GenerateSummary, workers: int | None, scheduler: str | None,
                progress: bool, echo: Callable[[str], None], as_completed: Any, tqdm: Any,
                joined: tuple[Any, Any] | None = None) -> None:
    margin = plan.scene.ground_margin_m
    client, cluster = joined or start_cluster(plan.cluster, workers, scheduler, None, len(todo))
    try:
        summary.workers = len(client.scheduler_info()["workers"])
        summary.dashboard = client.dashboard_link if (has_bokeh() or cluster is None) else None
        echo(f"Dask dashboard: {summary.dashboard}" if summary.dashboard
             else "Dask dashboard: not served (pip install bokeh to get one)")
        token = uuid.uuid4().hex[:8]
        resources = {"GPU": 1} if plan.cluster.gpus_per_worker else None
        t_submit = time.perf_counter()
        futures = {}
        for shard in todo:
            fut = client.submit(run_shard, plan, shard, _patch_osm(osm, frame, shard.extent_m, margin), frame,
                                partial, bs_table, key=f"twin-shard-{shard.index:05d}-{token}",
                                retries=plan.cluster.retries, resources=resources, pure=False)
            futures[fut] = shard
        bar = tqdm(total=len(todo), unit="shard", desc="shards", disable=not progress)
        for fut in as_completed(list(futures)):
            shard = futures[fut]
            if fut.status == "finished":
                record = fut.result()
                summary.records.append(record)
                summary.shards_run += 1
                summary.samples_run += record["n_samples"]
            else:
                err = fut.exception()
                summary.failures.append((shard.index, f"{type(err).__name__}: {err}"))
            elapsed = time.perf_counter() - t_submit
            bar.set_postfix(samples=summary.samples_run, samples_per_s=f"{summary.samples_run / elapsed:.0f}",
                            failed=len(summary.failures))
            bar.update(1)
        bar.close()
        summary.shards_s = time.perf_counter() - t_submit
        summary.workers = max(summary.workers, len(client.scheduler_info()["workers"]))
    finally:
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
    summary.records.sort(key=lambda r: r["shard"])
    summary.failures.sort()


def _finalize(plan: GeneratePlan, partial: PartialStore, shards: list[Shard], overwrite: bool,
              summary: GenerateSummary) -> None:
    """Statistics and counts, ``complete``, consolidated metadata; then the corpus moves into place."""
    from twin.corpus.store import CorpusWriter, open_corpus

    records = partial.done()
    for shard in shards:  # the manifest must tile the corpus exactly: no gap, no overlap
        start, stop = shard_region(plan, shard)
        if records[shard.index]["region"] != [start, stop]:
            raise EngineError(f"{partial.root}: manifest of shard {shard.index} covers {records[shard.index]['region']}, "
                              f"expected [{start}, {stop}]")
    keep = ("shard", "patch", "extent_m", "region", "n_samples", "n_cells", "n_buildings", "warnings", "randomized")
    CorpusWriter.reopen(partial.store).close({
        "sampling": {"mode": plan.sample.mode, "n_reports": plan.sample.reports, "n_beams": plan.trace.beams,
                     "streets": "per scene: attributes street_names, street_split, street_length_m"},
        "generate": {
        "plan": plan.name, "n_shards": len(shards), "ue_per_patch": plan.ue_per_patch,
        "shards": [{k: records[s.index][k] for k in keep if k in records[s.index] or k != "randomized"}
                   for s in shards],
        }})
    partial.publish(overwrite)
    summary.complete = True
    summary.counts = dict(open_corpus(plan.output).attrs.get("counts", {}).get("splits", {}))
