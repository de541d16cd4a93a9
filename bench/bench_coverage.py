"""Holes in the radio maps: road pixels near a site that no cell hears, and the cost of the rays.

    .venv/bin/python -m bench.bench_coverage --scene out/demo/scene --bs-file out/demo/bs.csv \
        [--rays-per-pixel 2 | --samples N] [--fill-radius 12] [--radius 500]

Traces every cell of the BS file at the given settings (default: ``TraceConfig``'s),
then reports, over the outdoor road pixels (``road_mask``) within ``--radius`` of a
site: the share unheard by every cell from the rays alone and after the fill, the
mean share of cells a road pixel hears, the rays per cell, the trace time per cell
and per km² of map (all cells), and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", required=True)
    ap.add_argument("--bs-file", required=True)
    ap.add_argument("--rays-per-pixel", type=float)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--fill-radius", type=float)
    ap.add_argument("--radius", type=float, default=500.0)
    args = ap.parse_args()

    import twin  # noqa: F401 - configures libLLVM
    from twin.radio.coverage import RECEIVED, unheard_fraction
    from twin.radio.tracer import TraceConfig, Tracer
    from twin.scene.build import load_twin_scene

    scene = load_twin_scene(args.scene)
    over = {k: v for k, v in {"rays_per_pixel": args.rays_per_pixel, "samples_per_tx": args.samples,
                              "fill_radius_m": args.fill_radius}.items() if v is not None}
    tracer = Tracer(scene, TraceConfig(**over))
    table = tracer.sites(args.bs_file)
    tracer.radio_maps(table.iloc[:1])  # compile the kernels first
    t0 = time.perf_counter()
    pg, cov, samples = tracer.radio_maps_with_coverage(table)
    wall = time.perf_counter() - t0
    layers = scene.layers
    road = (layers["road_mask"] == 1) & (layers["building_mask"] == 0)
    centers = tracer.grid.centers_m()
    xy = table[["x_m", "y_m"]].to_numpy()
    raw = np.where(cov == RECEIVED, pg, np.nan)
    area_km2 = tracer.grid.width * tracer.grid.height * tracer.grid.cell_size_m**2 / 1e6
    print(json.dumps({
        "scene": args.scene, "cells": len(table), "config": over or "defaults",
        "grid": f"{tracer.grid.height}x{tracer.grid.width} @ {tracer.grid.cell_size_m:g} m ({area_km2:.2f} km2)",
        "samples_per_tx": sorted({int(n) for n in samples}),
        "road_pixels_unheard_by_all_rays_only": round(unheard_fraction(raw, road, centers, xy, args.radius), 4),
        "road_pixels_unheard_by_all_after_fill": round(unheard_fraction(pg, road, centers, xy, args.radius), 4),
        "mean_share_of_cells_heard_per_road_pixel_rays_only": round(float(np.isfinite(raw[:, road]).mean()), 3),
        "mean_share_of_cells_heard_per_road_pixel_after_fill": round(float(np.isfinite(pg[:, road]).mean()), 3),
        "trace_s": round(wall, 1), "s_per_cell": round(wall / len(table), 2),
        "s_per_km2_all_cells": round(wall / area_km2, 1),
        "load_average": round(os.getloadavg()[0], 1),
    }, indent=1))


if __name__ == "__main__":
    main()
