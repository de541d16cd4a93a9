"""Benchmark: Dataset C of seed 004 measured, on a synthetic city as large as it needs.

Run: ``.venv/bin/python -m bench.bench_dataset_c --patches 20 [--out out/dataset_c]``

The region is a synthetic city (:mod:`bench.synthetic_city`) of 10 x 10 square patches of
2,872 m (8.25 km² each, the area of seed 004's 2.5 x 3.3 km patches; plans know square
patches only) plus a 100 m rim, 470 buildings per km² on average (central Helsinki's
density) with a dense centre and sub-centres. The plan has Dataset C's per-patch settings,
those of ``bench.bench_generate`` (10 single-sector random sites at 40 m, 5,000 UEs,
10^6 rays per transmitter, 3 reflections, 4 m cells). ``--patches N`` below 100 runs
``N`` patches spread over the layout (``patches.select``: shard ``round(i * 99 / (N - 1))``
in row-major order), so that the centre and the suburbs are both in the sample.

``twin generate``'s library function runs it on a LocalCluster of ``--workers`` (2)
single-threaded worker processes. Measured: wall time, shards/h and UE samples/s (from
the run's summary), per-stage seconds and CPU seconds per shard (the manifest records),
peak resident memory per worker (each shard record's ``max_rss_mb``, and psutil samples
of this process's children every second), the driver's peak memory, the corpus's size on
disk, and the load average every 5 s (the machine may be shared). Writes
``OUT/dataset_c_<N>.json`` and prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.bench_generate import DATASET_C, bench_plan, steady
from bench.synthetic_city import CitySpec, plot_city, write_city

PATCH_M = round(1000 * DATASET_C["area_km2"] ** 0.5)  # 2,872 m: a square of 8.25 km²
GRID = 10                                              # 10 x 10 patches = 100
RIM_M = 100.0                                          # city beyond the patch layout [m]
STAGES = ("scene_s", "deploy_s", "trace_s", "sample_s", "write_s", "total_s", "cpu_s")


def spread(n: int, total: int = GRID * GRID) -> list[tuple[int, int]]:
    """``n`` (row, col) patches spread over the row-major layout (all of them for ``n >= total``)."""
    if n >= total:
        return [(k // GRID, k % GRID) for k in range(total)]
    ks = sorted({int(round(i * (total - 1) / max(n - 1, 1))) for i in range(n)})
    return [(k // GRID, k % GRID) for k in ks]


def city_file(out: Path, spec: CitySpec) -> tuple[Path, tuple[float, float, float, float], float]:
    """The synthetic city's GeoJSON under ``out`` (made once per spec), its bbox and the seconds it took."""
    tag = f"city-{spec.width_m:.0f}m-{spec.buildings_per_km2:.0f}pkm2-seed{spec.seed}"
    path, meta = out / f"{tag}.geojson", out / f"{tag}.json"
    if path.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        return path, tuple(info["bbox"]), float(info["seconds"])
    t = time.perf_counter()
    path, city = write_city(path, spec)
    seconds = time.perf_counter() - t
    plot_city(city, out / f"{tag}.png", patch_m=PATCH_M)
    meta.write_text(json.dumps({"bbox": city.bbox, "seconds": seconds, "buildings": len(city.buildings),
                                "ways": len(city.roads), "bytes": path.stat().st_size}))
    return path, city.bbox, seconds


class Monitor:
    """Samples the load average (every 5 s) and this process's and its children's memory (every 1 s)."""

    def __init__(self) -> None:
        import psutil

        self.me = psutil.Process()
        self.peak_rss_mb: dict[int, float] = {}
        self.cmd: dict[int, str] = {}
        self.load: list[tuple[float, float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        tick = 0
        while not self._stop.is_set():
            if tick % 5 == 0:
                self.load.append((time.time(), *os.getloadavg()))
            for proc in [self.me, *self.me.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss / 2**20
                    if proc.pid not in self.cmd:
                        self.cmd[proc.pid] = " ".join(proc.cmdline())[:120]
                except psutil.Error:
                    continue
                self.peak_rss_mb[proc.pid] = max(self.peak_rss_mb.get(proc.pid, 0.0), rss)
            tick += 1
            self._stop.wait(1.0)


def du_bytes(path: Path) -> tuple[int, int, int]:
    """(bytes of file contents, bytes allocated on disk, files) under ``path``."""
    size = alloc = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            st = os.stat(os.path.join(root, name))
            size, alloc, files = size + st.st_size, alloc + st.st_blocks * 512, files + 1
    return size, alloc, files


def run(n_patches: int, out: Path, workers: int = 2, density: float = 470.0, seed: int = 0) -> dict[str, Any]:
    """Make the city if needed, run the plan's ``n_patches`` shards, and return the measurements."""
    from twin.generate.plan import plan_from_dict
    from twin.generate.run import generate
    from twin.scene.osm import read_osm

    out.mkdir(parents=True, exist_ok=True)
    side = GRID * PATCH_M + 2 * RIM_M
    spec = CitySpec(width_m=side, height_m=side, buildings_per_km2=density, seed=seed)
    city, bbox, city_s = city_file(out, spec)
    t = time.perf_counter()
    osm = read_osm(city, bbox)
    read_s = time.perf_counter() - t
    n_buildings, n_ways = len(osm.buildings), len(osm.roads)
    del osm
    select = spread(n_patches)
    corpus = out / f"dataset_c_{len(select)}.zarr"
    plan = bench_plan(str(corpus), float(PATCH_M), GRID, GRID, osm_file=str(city))
    plan["name"] = "dataset-c"
    plan["region"] |= {"bbox": list(bbox)}
    plan["patches"] |= {"select": None if len(select) == GRID * GRID else [list(p) for p in select]}
    load0 = os.getloadavg()
    with Monitor() as mon:
        summary = generate(plan_from_dict(plan, "bench_dataset_c"), workers=workers, overwrite=True, progress=True)
    load1 = os.getloadavg()
    if not summary.complete:
        raise SystemExit("\n".join(summary.lines()))
    size, alloc, files = du_bytes(corpus)
    recs = summary.records
    worker_rss: dict[str, float] = {}
    for r in recs:
        worker_rss[r["worker"]] = max(worker_rss.get(r["worker"], 0.0), r.get("max_rss_mb") or 0.0)
    me = os.getpid()
    children = {pid: rss for pid, rss in mon.peak_rss_mb.items() if pid != me}
    loads = [row[1] for row in mon.load]
    return {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - summary.wall_s)),
        "city": {"file": str(city), "bytes": city.stat().st_size, "side_m": side, "buildings_per_km2": density,
                 "seed": seed, "buildings": n_buildings, "ways": n_ways, "make_s": city_s,
                 "driver_read_s": read_s},
        "plan": plan, "patches": len(select), "patch_m": PATCH_M, "workers": summary.workers,
        "wall_s": summary.wall_s, "shards_s": summary.shards_s, "shards_per_h": summary.shards_per_hour,
        "samples_per_s": summary.samples_per_s, "samples": summary.samples_run,
        "per_shard": {
            "median": {k: statistics.median(r["seconds"][k] for r in recs) for k in STAGES},
            "mean": {k: statistics.fmean(r["seconds"][k] for r in recs) for k in STAGES},
            "steady_median": {k: steady(recs, k) for k in STAGES},
            "max": {k: max(r["seconds"][k] for r in recs) for k in STAGES},
        },
        "cpu_over_wall": statistics.fmean(r["seconds"]["cpu_s"] / r["seconds"]["total_s"] for r in recs),
        "buildings_per_patch": {"median": statistics.median(r["n_buildings"] for r in recs),
                                "min": min(r["n_buildings"] for r in recs), "max": max(r["n_buildings"] for r in recs)},
        "peak_rss_mb": {"per_worker_getrusage": worker_rss,
                        "children_psutil": {f"{pid} {mon.cmd.get(pid, '')}": v for pid, v in children.items()},
                        "driver_psutil": mon.peak_rss_mb.get(me)},
        "disk": {"bytes": size, "allocated_bytes": alloc, "files": files},
        "load_avg": {"start": load0, "end": load1, "min_1min": min(loads, default=float("nan")),
                     "max_1min": max(loads, default=float("nan")),
                     "mean_1min": statistics.fmean(loads) if loads else float("nan")},
        "summary": summary.lines(),
        "records": recs,
    }


def report(res: dict[str, Any]) -> None:
    """Print the Markdown tables of docs/benchmarks.md."""
    ps = res["per_shard"]
    la = res["load_avg"]
    rss = res["peak_rss_mb"]["per_worker_getrusage"]
    print(f"\nMachine: {res['machine']}; started {res['started_utc']} UTC; load average (1 min) "
          f"{la['min_1min']:.1f}-{la['max_1min']:.1f}, mean {la['mean_1min']:.1f}\n")
    print(f"City: {res['city']['buildings']:,} buildings, {res['city']['ways']:,} ways over "
          f"{res['city']['side_m'] / 1e3:.2f} km square ({res['city']['bytes'] / 1e6:.0f} MB GeoJSON, "
          f"made in {res['city']['make_s']:.0f} s, read by the driver in {res['city']['driver_read_s']:.0f} s); "
          f"buildings per patch {res['buildings_per_patch']['min']}-{res['buildings_per_patch']['max']} "
          f"(median {res['buildings_per_patch']['median']:.0f})\n")
    print("| patches | workers | wall [s] | shards [s] | shards/h | UE samples/s | CPU s per shard (median) | "
          "peak RSS per worker [MB] | corpus on disk [MB] |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {res['patches']} | {res['workers']} | {res['wall_s']:.0f} | {res['shards_s']:.0f} | "
          f"{res['shards_per_h']:.1f} | {res['samples_per_s']:.0f} | {ps['median']['cpu_s']:.1f} | "
          f"{', '.join(f'{v:.0f}' for v in sorted(rss.values()))} | {res['disk']['allocated_bytes'] / 1e6:.0f} |")
    print("\n| stage [s per shard] | median | mean | max |\n|---|---|---|---|")
    for k in STAGES:
        print(f"| {k.removesuffix('_s')} | {ps['median'][k]:.1f} | {ps['mean'][k]:.1f} | {ps['max'][k]:.1f} |")
    hours = res["patches"] and 100 * res["shards_s"] / res["patches"] / 3600
    cpu_h = 100 * ps["mean"]["cpu_s"] / 3600
    print(f"\n100 patches at this run's rate: {hours:.2f} h on {res['workers']} workers; "
          f"{cpu_h:.2f} CPU-hours (ideal on 2 free cores: {cpu_h / 2:.2f} h)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Dataset C measured: twin generate on a synthetic city.",
                                epilog="example: python -m bench.bench_dataset_c --patches 20 --out out/dataset_c")
    p.add_argument("--patches", type=int, default=20, help="patches to run, spread over the 10 x 10 layout (default 20)")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes, one thread each (default 2)")
    p.add_argument("--density", type=float, default=470.0, help="buildings per km² of the city (default 470)")
    p.add_argument("--seed", type=int, default=0, help="the city's seed (default 0)")
    p.add_argument("--out", default=None, help="folder for the city, the corpus and the JSON (default: a temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the corpus (default: removed after measuring)")
    a = p.parse_args(argv)
    if not 1 <= a.patches <= GRID * GRID:
        p.error(f"--patches: {a.patches} must be in [1, {GRID * GRID}]")
    import tempfile

    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="bench-dataset-c-"))
    res = run(a.patches, out, a.workers, a.density, a.seed)
    json_path = out / f"dataset_c_{res['patches']}.json"
    json_path.write_text(json.dumps(res, indent=2, default=float))
    if not a.keep:
        shutil.rmtree(out / f"dataset_c_{res['patches']}.zarr", ignore_errors=True)
    report(res)
    print(f"\nraw results: {json_path}")


if __name__ == "__main__":
    main()
