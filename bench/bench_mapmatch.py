"""Map matching cost per sequence: `python -m bench.bench_mapmatch`.

A 1 km x 1 km scene at 4 m cells (250 x 250 = 62,500 pixels), 12 cells with 3 feature
maps each, sequences hearing 4 cells: the time of :meth:`learn.mapmatch.MapMatcher.match`
per sequence on one core (BLAS limited to one thread), for the last report and for 5
reports, road prior on a quarter of the pixels. Prints a Markdown table (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from learn.mapmatch import MapMatcher  # noqa: E402
from twin.geo import Grid  # noqa: E402


def main(n_sequences: int = 512) -> None:
    try:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(1)
    except ImportError:  # the environment variables above already apply
        limit = None
    grid = Grid(-500.0, -500.0, 4.0, 250, 250)
    rng = np.random.default_rng(0)
    sites = rng.uniform(-600, 600, (12, 2))
    xx, yy = np.meshgrid(grid.x_centers_m(), grid.y_centers_m())
    d = np.hypot(xx[None] - sites[:, 0, None, None], yy[None] - sites[:, 1, None, None]) + 1.0
    rsrp = -20 - 37 * np.log10(d)
    maps = np.stack([rsrp, rsrp - rsrp.max(0, keepdims=True), rsrp + 90], 1).astype(np.float32)
    road = rng.random(grid.shape) < 0.25
    print("| case | sequences | ms per sequence (1 core) |")
    print("|---|---|---|")
    for reports, mask, what in ((1, road, "road prior (25 % of pixels)"), (5, road, "road prior (25 % of pixels)"),
                                (1, None, "every pixel")):
        m = MapMatcher(maps, np.arange(12), grid, np.array([2.0, 1.0, 2.0]), mask)
        events = []
        for _ in range(n_sequences):
            cells = np.tile(rng.choice(12, 4, replace=False), reports)
            i, j = rng.integers(0, 250, 2)
            events.append((cells, maps[cells, :, i, j].astype(np.float64) + rng.normal(0, 2, (len(cells), 3))))
        m.match(events[:8])  # warm up
        t0 = time.perf_counter()
        m.match(events)
        ms = (time.perf_counter() - t0) / n_sequences * 1e3
        print(f"| 1 km² at 4 m, 12 cells x 3 features, {reports} report(s) of 4 cells, {what} | {n_sequences} | "
              f"{ms:.2f} |",
              flush=True)
    del limit


if __name__ == "__main__":
    main()
