"""One shard of ``twin generate``, and the resumable store the shards write into.

A shard is one patch of the plan: it builds the patch's scene from the region's OSM
data (in the region's frame), deploys base stations, traces every cell with Sionna RT,
samples ``ue_per_patch`` sequences and writes them, with the patch's maps as corpus
scene ``k``, into its own region ``[k * ue_per_patch, (k + 1) * ue_per_patch)`` of a
preallocated corpus. Chunks divide ``ue_per_patch``, so no two shards touch the same
chunk file. A shard's output depends only on the plan and ``k`` (seeds from
:func:`twin.generate.plan.shard_seeds`, one Dr.Jit thread per worker so that Sionna's
accumulations run in a fixed order), so a retried shard rewrites identical bytes.

The in-progress store lives in ``<output>.partial/`` (local outputs)::

    <output>.partial/
      plan.json                  the resolved plan; --resume refuses a different one
      corpus.zarr/               the preallocated corpus, written in place by the shards
      manifest/shard-00007.json  written atomically after shard 7's region is complete

and is renamed to ``<output>`` once every shard is done and the statistics are
written. For remote fsspec URLs, where no rename is atomic, the corpus is written at
``<output>`` itself (its ``complete`` attribute set last) and only the plan and the
manifest sit in ``<output>.partial/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from twin.errors import InputError
from twin.generate.plan import GeneratePlan, Shard, shard_seeds
from twin.io import _replace, atomic_file, check_ours, is_local

__all__ = ["PartialStore", "run_shard", "shard_region", "FAULT_ENV", "GROUP_STRIDE"]

#: ``group_id`` of shard ``k`` = the patch's street id + ``k * GROUP_STRIDE``: unique over the corpus.
GROUP_STRIDE = 2**32
#: Fault injection for tests and drills: ``"<shard>:<raise|exit>:<times>:<dir>"`` makes the first
#: ``times`` attempts of that shard fail after writing its region (``exit`` kills the worker process).
FAULT_ENV = "TWIN_GENERATE_FAULT"


def shard_region(plan: GeneratePlan, shard: Shard) -> tuple[int, int]:
    """Sample rows ``[start, stop)`` of ``shard`` in the corpus."""
    return shard.index * plan.ue_per_patch, (shard.index + 1) * plan.ue_per_patch


@dataclass(frozen=True)
class PartialStore:
    """Where a run keeps its in-progress corpus, plan and manifest (see the module docstring)."""

    output: str

    @property
    def local(self) -> bool:
        return is_local(self.output)

    @property
    def root(self) -> str:
        return f"{self.output.removeprefix('file://') if self.local else self.output}.partial"

    @property
    def store(self) -> str:
        return f"{self.root}/corpus.zarr" if self.local else self.output

    @property
    def manifest(self) -> str:
        return f"{self.root}/manifest"

    def _fs(self) -> tuple[Any, str]:
        import fsspec

        return fsspec.core.url_to_fs(self.root)

    def exists(self) -> bool:
        fs, path = self._fs()
        return bool(fs.exists(f"{path}/plan.json"))

    def remove(self) -> None:
        fs, path = self._fs()
        if fs.exists(path):
            fs.rm(path, recursive=True)
        if not self.local:
            fs_out, out = __import__("fsspec").core.url_to_fs(self.output)
            if fs_out.exists(out):
                fs_out.rm(out, recursive=True)

    def read_plan(self) -> dict[str, Any]:
        fs, path = self._fs()
        with fs.open(f"{path}/plan.json", "r") as f:
            return json.load(f)

    def write_plan(self, plan: dict[str, Any]) -> None:
        self._write(f"{self.root}/plan.json", json.dumps(plan, indent=2, sort_keys=True))

    def done(self) -> dict[int, dict[str, Any]]:
        """The manifest: shard index -> its record, for every shard whose region is complete."""
        fs, path = self._fs()
        out: dict[int, dict[str, Any]] = {}
        if not fs.exists(f"{path}/manifest"):
            return out
        for name in fs.ls(f"{path}/manifest", detail=False):
            base = os.path.basename(name)
            if base.startswith("shard-") and base.endswith(".json"):
                with fs.open(name, "r") as f:
                    record = json.load(f)
                out[int(record["shard"])] = record
        return out

    def mark_done(self, record: dict[str, Any]) -> None:
        """Record a completed shard (atomically: a half-written marker never exists)."""
        self._write(f"{self.manifest}/shard-{int(record['shard']):05d}.json", json.dumps(record, indent=2))

    def _write(self, url: str, text: str) -> None:
        if self.local:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(url, overwrite=True) as tmp:
                tmp.write_text(text)
        else:  # one PUT of a small object is atomic on object stores
            import fsspec

            fs, path = fsspec.core.url_to_fs(url)
            fs.pipe_file(path, text.encode())

    def publish(self, overwrite: bool) -> None:
        """Move the finished corpus to the output and drop the partial folder."""
        if self.local:
            final = Path(self.output.removeprefix("file://"))
            if final.exists() and not overwrite:
                raise InputError(f"{final} appeared while generating; pass --overwrite to replace it")
            check_ours(final, "corpus")
            _replace(Path(self.store), final)
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            fs, path = self._fs()
            fs.rm(path, recursive=True)


def _fault(shard: Shard) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    index, kind, times, folder = spec.split(":", 3)
    if int(index) != shard.index:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    attempt = len(list(Path(folder).glob("attempt-*")))
    (Path(folder) / f"attempt-{attempt}").touch()
    if attempt < int(times):
        if kind == "exit":
            os._exit(17)  # a worker process dying mid-shard, after its region was written
        raise RuntimeError(f"injected fault in shard {shard.index} (attempt {attempt + 1})")


def _engine_threads(n: int) -> None:
    """One worker = ``n`` threads for Dr.Jit and torch (and a fixed order of Sionna's sums)."""
    import drjit as dr

    import twin.engine as mit

    mit.sionna_rt()
    dr.set_thread_count(n)
    import torch

    torch.set_num_threads(n)


def _max_rss_mb() -> float | None:
    """The worker process's peak resident memory so far [MB] (None where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _sites(plan: GeneratePlan, scene: Any, shard: Shard, bs_table: Any, seed: int, deploy_config: Any = None) -> Any:
    from twin.radio.deployment import deploy
    from twin.radio.sites import place_sites

    d = plan.deploy if deploy_config is None else replace(plan.deploy, config=deploy_config)
    if d.strategy != "file":
        return deploy(scene, d.strategy, d.config, seed=seed)
    _, _, inside = scene.grid.index_of(bs_table[["x_m", "y_m"]].to_numpy(np.float64))
    if not inside.any():
        raise InputError(f"{d.bs_file}: no site lies in patch {shard.name} {tuple(round(v) for v in shard.extent_m)} m")
    return place_sites(bs_table[inside].reset_index(drop=True), scene, d.config.on_building, d.config.mast_m,
                       what=f"{d.bs_file} (patch {shard.name})")


def run_shard(plan: GeneratePlan, shard: Shard, osm: Any, frame: Any, partial: PartialStore,
              bs_table: Any = None) -> dict[str, Any]:
    """Compute shard ``shard``, write it into the preallocated corpus and record it in the manifest.

    Parameters
    ----------
    plan : GeneratePlan
    shard : Shard
    osm : OsmData
        The region's buildings and roads around this patch (WGS84).
    frame : SceneFrame
        The region's frame: every patch's positions are in these metres.
    partial : PartialStore
        The run's store: the corpus made by :func:`twin.generate.generate` (``n_shards *
        ue_per_patch`` samples) and the manifest.
    bs_table : DataFrame, optional
        The plan's BS file in region metres (``file`` strategy).

    Returns
    -------
    dict
        The manifest record: shard, patch, region, cells, per-stage seconds, worker, and the
        worker's peak resident memory so far ``max_rss_mb``.
    """
    from twin.corpus.sampler import Sampler, add_corpus_scene
    from twin.corpus.store import CorpusWriter
    from twin.generate.randomize import draw_patch, randomize_seed
    from twin.radio.tracer import trace
    from twin.scene.build import _build

    t_start, cpu_start, started = time.perf_counter(), time.process_time(), time.time()
    _engine_threads(plan.cluster.threads_per_worker)
    seeds = shard_seeds(plan.seed, shard.index)
    times: dict[str, float] = {}
    start, stop = shard_region(plan, shard)
    scene_config, deploy_config, drawn = draw_patch(plan.randomize, randomize_seed(plan.seed, shard.index),
                                                    plan.scene, plan.deploy.config)
    with tempfile.TemporaryDirectory(prefix=f"twin-shard-{shard.index:05d}-") as tmp:
        t = time.perf_counter()
        scene = _build(osm, frame, shard.extent_m, Path(tmp) / "scene", f"{plan.name}/{shard.name}",
                       scene_config, overwrite=True)
        times["scene_s"] = time.perf_counter() - t
        t = time.perf_counter()
        sites = _sites(plan, scene, shard, bs_table, seeds.deploy, deploy_config)
        times["deploy_s"] = time.perf_counter() - t
        t = time.perf_counter()
        maps_url = trace(scene, sites, Path(tmp) / "maps.zarr", replace(plan.trace, seed=seeds.trace),
                         plan.metrics, overwrite=True)
        times["trace_s"] = time.perf_counter() - t
        t = time.perf_counter()
        config = replace(plan.sample, n=plan.ue_per_patch, seed=seeds.sample)
        sampler = Sampler(scene, str(maps_url), config)
        parts = []
        for chunk, lo in enumerate(range(0, plan.ue_per_patch, config.chunk_samples)):
            count = min(config.chunk_samples, plan.ue_per_patch - lo)
            parts.append(sampler.draw(count, np.random.default_rng([seeds.sample, chunk])))
        samples = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        samples["scene_index"][:] = shard.index
        samples["group_id"] = np.where(samples["group_id"] >= 0,
                                       samples["group_id"] + shard.index * GROUP_STRIDE, -1)
        times["sample_s"] = time.perf_counter() - t
        t = time.perf_counter()
        writer = CorpusWriter.reopen(partial.store)
        add_corpus_scene(writer, scene, sampler.maps, list(config.features), index=shard.index, attrs={
            **({"randomized": drawn} if drawn else {}),
            "patch": [shard.row, shard.col],
            "extent_m": list(shard.extent_m), "sample_region": [start, stop],
            "seeds": {"deploy": seeds.deploy, "trace": seeds.trace, "sample": seeds.sample},
            "sites": json.loads(sites.to_json(orient="records")),
            # group_id - k * GROUP_STRIDE indexes these (as twin sample's root "sampling" attribute)
            "street_names": sampler.roads.group_names,
            "street_split": sampler.roads.group_split.astype(int).tolist(),
            "street_length_m": [round(float(v), 2) for v in sampler.roads.group_length_m()],
        })
        writer.write_at(start, samples)
        times["write_s"] = time.perf_counter() - t
        _fault(shard)
        record = {
            "shard": shard.index, "patch": [shard.row, shard.col], "extent_m": list(shard.extent_m),
            "region": [start, stop], "n_samples": stop - start, "n_cells": len(sites),
            "n_buildings": int(scene.meta["counts"]["buildings_built"]), "warnings": scene.meta.get("warnings", []),
            "seconds": {**{k: round(v, 3) for k, v in times.items()},
                        "total_s": round(time.perf_counter() - t_start, 3),
                        "cpu_s": round(time.process_time() - cpu_start, 3)},
            "started_unix": round(started, 3), "finished_unix": round(time.time(), 3),
            "worker": f"{socket.gethostname()}:{os.getpid()}", "max_rss_mb": _max_rss_mb(),
        }
        if drawn:
            record["randomized"] = drawn
    partial.mark_done(record)
    return record
