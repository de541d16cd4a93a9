"""Benchmark the fixed cost of ``twin trace``: the whole CLI process against a bare Sionna RT script.

    .venv/bin/python -m bench.bench_trace_overhead [--scene DIR --bs-file CSV] [--repeats 3]

Without ``--scene`` it builds the embedded central-Helsinki scene and deploys the 12
cells of the demo (4 three-sector sites). Both commands run as fresh processes,
alternately, ``--repeats`` times each: ``twin trace --path-gain-only`` (imports, checks,
tracing, the maps store) and a bare script that imports Sionna RT and pandas, reads the
BS file, traces the same cells with the same solver settings in one call and saves the
path gain with ``numpy.save``. ``--metrics`` compares ``twin trace`` with metrics against
the bare script plus ``sionna.sys``'s import and a PHY-abstraction call. The ratio of the
medians is the figure (target <= 1.1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BARE = r"""
import sys, json
import numpy as np
import pandas as pd
import sionna.rt as rt
scene_dir, bs_file, out, samples, metrics = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
meta = json.load(open(scene_dir + "/scene.json"))
g = meta["grid"]
t = pd.read_csv(bs_file)
sc = rt.load_scene(scene_dir + "/scene.xml")
sc.frequency = float(t.frequency_hz[0]); sc.bandwidth = float(t.bandwidth_hz[0])
sc.tx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern=t.pattern[0], polarization="V")
sc.rx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern="iso", polarization="V")
for k, r in t.iterrows():
    az, tilt = float(np.radians(90.0 - r.azimuth_deg)), float(np.radians(r.tilt_deg))
    sc.add(rt.Transmitter(f"tx{k}", position=[float(r.x_m), float(r.y_m), float(r.height_m)], orientation=[az, tilt, 0.0]))
cs = g["cell_size_m"]
x0, y0 = g["x0_m"], g["y0_m"]
w, h = g["width"], g["height"]
rm = rt.RadioMapSolver()(sc, center=[x0 + w * cs / 2, y0 + h * cs / 2, 1.5], orientation=[0, 0, 0],
                         size=[(w - 0.5) * cs, (h - 0.5) * cs], cell_size=[cs, cs],
                         samples_per_tx=samples, max_depth=3, diffuse_reflection=True, refraction=True, seed=42)
pg = rm.path_gain.numpy()
if metrics:  # sionna.sys's minimum: one BLER table, link adaptation on its 0.1 dB SINR grid
    import os, torch
    import sionna.sys
    from sionna.sys import InnerLoopLinkAdaptation, PHYAbstraction
    path = os.path.join(os.path.dirname(sionna.sys.__file__), "bler_tables", "PDSCH_table1.json")
    phy = PHYAbstraction(load_bler_tables_from=[path], device="cpu")
    illa = InnerLoopLinkAdaptation(phy, bler_target=0.1, device="cpu")
    sinr = torch.pow(10.0, torch.arange(-5.0, 30.05, 0.1) / 10.0)
    illa(sinr_eff=sinr, num_allocated_re=torch.full_like(sinr, 1008, dtype=torch.int32))
np.save(out, pg)
"""


def _grid_keys(scene_dir: Path) -> None:
    meta = json.loads((scene_dir / "scene.json").read_text())
    missing = {"cell_size_m", "x0_m", "y0_m", "width", "height"} - set(meta["grid"])
    if missing:
        raise SystemExit(f"{scene_dir}/scene.json: grid lacks {sorted(missing)}")


def _run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode:
        raise SystemExit(f"{cmd[0]} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", type=Path, help="scene directory (default: central Helsinki, built here)")
    ap.add_argument("--bs-file", type=Path, help="BS file (default: the demo's 12 cells)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=10**6)
    ap.add_argument("--metrics", action="store_true", help="twin trace with metrics against bare Sionna + sionna.sys")
    args = ap.parse_args()

    import twin  # noqa: F401 - sets DRJIT_LIBLLVM_PATH, inherited by both children

    work = Path(tempfile.mkdtemp(prefix="bench-trace-overhead-"))
    bin_dir = Path(sys.executable).parent
    scene, bs = args.scene, args.bs_file
    if scene is None:
        scene, bs = work / "scene", work / "bs.csv"
        subprocess.run([bin_dir / "twin", "build-scene", "--out", scene, "--name", "helsinki"], check=True,
                       capture_output=True)
        subprocess.run([bin_dir / "twin", "deploy", "--scene", scene, "--strategy", "grid", "--count", "4",
                        "--out", bs], check=True, capture_output=True)
    assert bs is not None
    _grid_keys(scene)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "")}
    ours_cmd = [str(bin_dir / "twin"), "trace", "--scene", str(scene), "--bs-file", str(bs),
                "--out", str(work / "maps.zarr"), "--samples-per-tx", str(args.samples), "--overwrite"]
    if not args.metrics:
        ours_cmd.append("--path-gain-only")
    bare_cmd = [sys.executable, "-c", BARE, str(scene), str(bs), str(work / "pg.npy"), str(args.samples),
                "1" if args.metrics else "0"]
    _run(bare_cmd, env)  # warm the file cache and Dr.Jit's kernel cache for both
    ours, bare = [], []
    for _ in range(args.repeats):
        bare.append(_run(bare_cmd, env))
        ours.append(_run(ours_cmd, env))
    result = {"ours_s": ours, "bare_s": bare, "ours_median_s": statistics.median(ours),
              "bare_median_s": statistics.median(bare),
              "ratio": statistics.median(ours) / statistics.median(bare), "metrics": args.metrics,
              "cells": len(bs.read_text().splitlines()) - 1, "samples_per_tx": args.samples}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
