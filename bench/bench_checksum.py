"""Read cost of the per-chunk CRC32C checksum (:func:`twin.io.compressors`), maps and corpus.

One command: ``python -m bench.bench_checksum`` (``--quick`` for a smaller corpus). It
writes, in a temporary directory, the tiny-city fixture at 1 km x 1 km with 2 m cells
(500 x 500), radio maps of 12 cells (:func:`twin.radio.maps.write_maps`) and a drive-mode
corpus (:func:`twin.corpus.sample`), both as the toolkit writes them: Blosc zstd then
CRC32C per chunk. It copies each store array by array with the same chunks, fill values
and attributes but Blosc zstd alone, then times on one pinned core, through the
toolkit's own readers, alternating the two copies in ABBA order (best of ``--repeats``, warm
page cache):

* maps: :func:`~twin.radio.maps.open_maps` and every array read in full;
* corpus, sequential: :func:`~twin.corpus.store.open_corpus` and
  :meth:`~twin.corpus.store.Corpus.batch` of every sample array in full;
* corpus, training-like: 50 batches of 64 random samples (every sample array).

It prints one Markdown table: seconds with and without the checksum, and the ratio; and,
as a figure that load on a shared machine does not blur, the time of the checksums alone
(``google_crc32c`` over every chunk file the full read decodes: the whole maps store, the
corpus's ``samples/``) as a share of the full read without checksums.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def _dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def copy_without_checksum(src: Path, dst: Path) -> None:
    """Copy the Zarr store ``src`` to ``dst`` with every array's CRC32C codec dropped (zstd kept)."""
    import zarr
    from zarr.codecs import BloscCodec

    from twin import io

    source = zarr.open_group(str(src), mode="r")
    target = zarr.open_group(str(dst), mode="w", zarr_format=3)
    target.attrs.update(dict(source.attrs))
    blosc = next(c for c in io.compressors() if isinstance(c, BloscCodec))
    for path, node in source.members(max_depth=None):
        if isinstance(node, zarr.Group):
            target.require_group(path).attrs.update(dict(node.attrs))
            continue
        assert isinstance(node, zarr.Array)
        out = target.create_array(path, shape=node.shape, chunks=node.chunks, dtype=node.dtype,
                                  fill_value=node.fill_value, compressors=(blosc,),
                                  dimension_names=node.metadata.dimension_names, attributes=dict(node.attrs))
        out[...] = node[...]
    io.consolidate(str(dst))


def _best(func: Callable[[], object], repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t0)
    return float(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 20,000-sequence corpus instead of 100,000")
    parser.add_argument("--repeats", type=int, default=15,
                        help="timed passes per store of the full reads (best kept); a fifth of it (at least 3) "
                             "for the random batches")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one core

    import zarr

    from tests.data.tiny_city.make import make_maps, make_scene
    from twin.corpus.sampler import SampleConfig, sample
    from twin.corpus.store import open_corpus
    from twin.radio.maps import open_maps
    from twin.scene.build import load_twin_scene

    n = 20_000 if args.quick else 100_000
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, pinned to one; "
          f"zarr {zarr.__version__}; load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scene_dir = make_scene(tmp / "scene", width_m=1000.0, height_m=1000.0, block_m=100.0, cell_size_m=2.0)
        sites = np.random.default_rng(0).uniform(50, 950, (12, 2))
        maps = make_maps(scene_dir, tmp / "maps.zarr", sites_xy_m=sites)
        corpus = tmp / "corpus.zarr"
        sample(load_twin_scene(scene_dir), maps, SampleConfig(n=n, mode="drive", chunk_samples=4096), corpus)
        stores = {"maps": maps, "corpus": corpus}
        plain = {name: tmp / f"{name}-plain.zarr" for name in stores}
        for name, url in stores.items():
            copy_without_checksum(url, plain[name])

        def read_maps(url: Path) -> None:
            rm = open_maps(url)
            for key in rm.arrays:
                rm[key]

        def read_corpus(url: Path) -> None:
            open_corpus(url).batch(slice(None))

        batches = [np.sort(np.random.default_rng(k).choice(n, 64, replace=False)) for k in range(50)]

        def read_batches(url: Path) -> None:
            c = open_corpus(url)
            for idx in batches:
                c.batch(idx)

        few = max(3, args.repeats // 5)
        reads = [("maps: open + every array in full", "maps", read_maps, args.repeats),
                 (f"corpus ({n:,} sequences): every sample array in full", "corpus", read_corpus, args.repeats),
                 ("corpus: 50 batches of 64 random samples", "corpus", read_batches, few)]
        print()
        print(f"stores on disk: maps {_dir_mb(maps):.1f} MB (plain copy {_dir_mb(plain['maps']):.1f} MB), "
              f"corpus {_dir_mb(corpus):.1f} MB (plain copy {_dir_mb(plain['corpus']):.1f} MB)")
        print()
        print("| read | zstd + CRC32C [s] | zstd alone [s] | checksum cost |")
        print("|---|---:|---:|---:|")
        bare_s = {}
        for label, store, func, repeats in reads:
            func(stores[store])  # warm the page cache and imports
            func(plain[store])
            crc, bare = np.inf, np.inf
            for k in range(repeats):  # alternate (ABBA), so that load changes and order hit both alike
                first, second = (stores, plain) if k % 2 == 0 else (plain, stores)
                t_first = _best(lambda s=store, f=func, d=first: f(d[s]), 1)
                t_second = _best(lambda s=store, f=func, d=second: f(d[s]), 1)
                t_crc, t_bare = (t_first, t_second) if k % 2 == 0 else (t_second, t_first)
                crc, bare = min(crc, t_crc), min(bare, t_bare)
            bare_s[label] = bare
            print(f"| {label} | {crc:.3f} | {bare:.3f} | {100 * (crc / bare - 1):+.1f} % |")
        import google_crc32c

        print()
        print(f"| checksums alone (google_crc32c, {google_crc32c.implementation} implementation) | MB of chunks | "
              "CRC32C [s] | share of the full read |")
        print("|---|---:|---:|---:|")
        for label, store, _, _ in reads[:2]:
            read_part = stores[store] / "samples" if store == "corpus" else stores[store]  # what the read reads
            chunks = [f.read_bytes() for f in read_part.rglob("c/**/*") if f.is_file()]
            crc_s = _best(lambda c=chunks: [google_crc32c.value(b[:-4]) for b in c], args.repeats)
            full = bare_s[label]
            print(f"| {label.split(':')[0]} ({len(chunks)} chunk files) | {sum(map(len, chunks)) / 1e6:.1f} | "
                  f"{crc_s:.4f} | {100 * crc_s / full:.1f} % of {full:.3f} s (zstd alone) |")
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end (the machine is shared)")


if __name__ == "__main__":
    main()
