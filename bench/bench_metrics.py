"""Time twin.radio.metrics.compute_metrics on 10 cells x 250 x 420 (and 400 x 400), print a Markdown table.

Run: ``PYTHONPATH=$PWD python bench/bench_metrics.py`` (about 30 s on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from twin.radio.metrics import (
    MetricConfig,
    _sionna_link,
    apply_reporting,
    compute_metrics,
    link_performance,
)


def synthetic_cells(n_cells: int, height: int, width: int, seed: int = 0):
    """Log-distance path gain from random sites, 20 % of pixels not received, two carriers."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] * 5.0  # 5 m cells
    sites = rng.uniform(0, [height * 5.0, width * 5.0], (n_cells, 2))
    d = np.hypot(yy[None] - sites[:, 0, None, None], xx[None] - sites[:, 1, None, None]) + 10.0
    pg = -40.0 - 35.0 * np.log10(d) + rng.normal(0, 6, (n_cells, height, width))
    pg[rng.random(pg.shape) < 0.2] = np.nan
    return pg, np.full(n_cells, 46.0), np.where(np.arange(n_cells) % 2 == 0, 2.1e9, 1.8e9)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cfg = MetricConfig()
    t0 = time.perf_counter()
    compute_metrics(*synthetic_cells(1, 4, 4), cfg)  # imports sionna, loads the BLER table
    warm_s = time.perf_counter() - t0
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU")
    print(f"first call (imports torch + sionna.sys, interpolates the BLER table): {warm_s:.2f} s\n")
    print("| cells x H x W | compute_metrics | apply_reporting | pixels/s |")
    print("|---|---|---|---|")
    for n, h, w in ((10, 250, 420), (10, 400, 400), (30, 250, 420)):
        pg, power, freq = synthetic_cells(n, h, w)
        t_metrics = best_of(lambda pg=pg, power=power, freq=freq: compute_metrics(pg, power, freq, cfg), args.repeats)
        out = compute_metrics(pg, power, freq, cfg)
        t_report = best_of(lambda out=out: apply_reporting(out, rng=0), args.repeats)
        print(f"| {n} x {h} x {w} | {t_metrics:.3f} s | {t_report:.3f} s | {n * h * w / t_metrics:.3g} |")
    print("\nlink_performance on 250 x 420 serving SINRs: one sionna call per 0.1 dB grid point vs per pixel")
    import torch

    sinr_db = np.random.default_rng(1).uniform(-10, 35, 250 * 420)
    phy, illa = _sionna_link(cfg.link_channel, cfg.mcs_table_index, cfg.bler_target)

    def direct() -> None:
        sinr = torch.pow(10.0, torch.as_tensor(sinr_db, dtype=torch.float32) / 10)
        num_re = torch.full(sinr.shape, cfg.data_re_per_slot, dtype=torch.int32)
        mcs = illa(sinr_eff=sinr, num_allocated_re=num_re, mcs_table_index=1, mcs_category=1)
        phy(mcs, sinr_eff=sinr, num_allocated_re=num_re, mcs_table_index=1, mcs_category=1)

    t_grid = best_of(lambda: link_performance(sinr_db, cfg), args.repeats)
    t_direct = best_of(direct, 1)
    print(f"| grid (twin.radio.metrics) | {t_grid:.3f} s |\n| per pixel (ILLA + PHYAbstraction) | {t_direct:.2f} s |")


if __name__ == "__main__":
    main()
