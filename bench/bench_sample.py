"""Sampling and corpus-write throughput (``twin sample``), on a synthetic 1 km² city.

One command: ``python -m bench.bench_sample`` (``--quick`` for a smaller run). It builds the
tiny-city fixture at 1 km x 1 km with 2 m cells (500 x 500) in a temporary directory,
with 4, 12 and 32 cells, and measures on one thread:

* sequences per second of :meth:`twin.corpus.sampler.Sampler.draw` once the maps are loaded
  (random and drive mode, T = 20, four features, NR reporting realism);
* the one-off cost of :class:`~twin.corpus.sampler.Sampler` (maps into memory, road graph);
* corpus write throughput of :func:`twin.corpus.sample` end to end, and of the writer alone,
  in MB/s of uncompressed sample arrays, with the compressed size on disk.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sequences, one cell count")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one core

    from tests.data.tiny_city.make import make_maps, make_scene
    from twin.corpus.sampler import SPLIT_SCHEMES, SampleConfig, Sampler, feature_unit, sample
    from twin.corpus.store import CorpusWriter
    from twin.scene.build import load_twin_scene

    n_draw = 20_000 if args.quick else 40_000
    cell_counts = (12,) if args.quick else (4, 12, 32)
    rng_sites = np.random.default_rng(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, pinned to one; "
          f"numpy {np.__version__}; load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        scene_dir = make_scene(tmp / "scene", width_m=1000.0, height_m=1000.0, block_m=100.0, cell_size_m=2.0)
        scene = load_twin_scene(scene_dir)
        print(f"scene: 1000 m x 1000 m, grid {scene.grid.width} x {scene.grid.height}, "
              f"{len(scene.roads())} road ways (built in {time.perf_counter() - t0:.1f} s)")
        print()
        print("| cells | mode | Sampler init [s] | sequences/s (draw) | real events/seq |")
        print("|---:|---|---:|---:|---:|")
        samplers = {}
        for n_cells in cell_counts:
            sites = rng_sites.uniform(50, 950, (n_cells, 2))
            maps = make_maps(scene_dir, tmp / f"maps{n_cells}.zarr", sites_xy_m=sites)
            for mode in ("random", "drive"):
                t0 = time.perf_counter()
                sampler = Sampler(scene, maps, SampleConfig(mode=mode))
                init_s = time.perf_counter() - t0
                sampler.draw(1000, np.random.default_rng(1))  # warm-up
                # Batches of the corpus chunk size, as sample() draws them; best of three
                # passes, since the 2-core machine is shared.
                rates = []
                for rep in range(3):
                    t0 = time.perf_counter()
                    for k in range(n_draw // 4096):
                        batch = sampler.draw(4096, np.random.default_rng([rep, k]))
                    rates.append((n_draw // 4096) * 4096 / (time.perf_counter() - t0))
                rate = max(rates)
                print(f"| {n_cells} | {mode} | {init_s:.2f} | {rate:,.0f} | {batch['mask'].sum(1).mean():.1f} |")
                samplers[(n_cells, mode)] = sampler

        n_write = 50_000 if args.quick else 200_000
        cfg = SampleConfig(n=n_write, mode="drive", chunk_samples=4096)
        print()
        print("| what | sequences | seconds | sequences/s | MB/s (uncompressed samples) | samples MB on disk |")
        print("|---|---:|---:|---:|---:|---:|")
        t0 = time.perf_counter()
        sample(scene, tmp / "maps12.zarr", cfg, tmp / "corpus.zarr")
        dt = time.perf_counter() - t0
        raw_mb = n_write * (2 * 4 + 20 * (2 * 4 + 8 + 4 + 4 + 4 * 4 + 1) + 4 + 8 + 2) / 1e6
        print(f"| `sample()` end to end, 12 cells, drive | {n_write:,} | {dt:.2f} | {n_write / dt:,.0f} | "
              f"{raw_mb / dt:.0f} | {_dir_mb(tmp / 'corpus.zarr' / 'samples'):.1f} |")
        scenes_mb = _dir_mb(tmp / "corpus.zarr" / "scenes")
        batch = samplers[(12, "drive")].draw(cfg.chunk_samples, np.random.default_rng(3))
        names = list(cfg.features)
        writer = CorpusWriter(tmp / "w.zarr", names, [feature_unit(f) for f in names], cfg.max_events,
                              SPLIT_SCHEMES, chunk_samples=cfg.chunk_samples)
        writer.add_scene("s", scene.grid)
        chunks = n_write // cfg.chunk_samples
        t0 = time.perf_counter()
        for _ in range(chunks):
            writer.append(batch)
        writer.close()
        dt = time.perf_counter() - t0
        n = chunks * cfg.chunk_samples
        raw = sum(v.nbytes for v in batch.values()) * chunks / 1e6
        print(f"| `CorpusWriter.append` + `close` alone | {n:,} | {dt:.2f} | {n / dt:,.0f} | {raw / dt:.0f} | "
              f"{_dir_mb(tmp / 'w.zarr' / 'samples'):.1f} |")
        print(f"\nscene maps of the end-to-end corpus (7 radio, 3 semantic, 12 x 4 cell maps of 500 x 500): "
              f"{scenes_mb:.1f} MB on disk")
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end (the machine is shared)")


if __name__ == "__main__":
    main()
