"""Baselines on the real sets: `python -m bench.bench_learn_baselines [DATA_DIR] [OUT_DIR]`.

Imports every real set (Rome NB-IoT per operator and combined, Rome crop with 80/20
and 90/10 random splits, POWDER), evaluates WkNN and k-NN in the square on each split
and prints a Markdown table (the one in docs/benchmarks.md).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from learn.evaluate import evaluate
from learn.importers import SplitConfig, import_powder, import_rome_crop, import_rome_nbiot
from learn.registry import make_baseline

_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main(data: Path | None = None, out: Path | None = None) -> None:
    data, out = data or _DEFAULT_DATA, out or Path("out/bench_learn")
    out.mkdir(parents=True, exist_ok=True)
    mat = data / "rome_nbiot" / "Campaign_data_NBIoT_1_2_3_4_5_6.mat"
    crop = data / "rome_crop" / "rome_crop_knn_ready.csv"
    sets = []
    for ops, tag in (([1], "MNC 1"), ([10], "MNC 10"), ([88], "MNC 88"), (None, "all operators")):
        c, _ = import_rome_nbiot(mat, out / f"nbiot_{tag.replace(' ', '_')}.zarr", ops, overwrite=True)
        sets.append((f"Rome NB-IoT, {tag}", c, ("random", "spatial"), None))
    c, _ = import_rome_crop(crop, out / "crop.zarr", overwrite=True)
    sets.append(("Rome crop", c, ("random", "spatial"), None))
    c, _ = import_rome_crop(crop, out / "crop90.zarr", SplitConfig(test_frac=0.1, val_frac=0.0), overwrite=True)
    sets.append(("Rome crop 90/10, RSSI only", c, ("random",), ["rssi_dbm"]))
    c, _ = import_powder(data / "powder", out / "powder.zarr", overwrite=True)
    sets.append(("POWDER", c, ("random", "spatial", "published_random", "published_grid"), None))
    print("| data | split | method | n test | mean m | median m | p90 m | RMSE m | known mean / RMSE m | unknown mean / RMSE m |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, corpus, splits, feats in sets:
        for split in splits:
            for method in ("wknn", "knn-square"):
                t0 = time.perf_counter()
                r = evaluate(corpus, make_baseline(method, features=feats), split)
                a, k, u = r.parts["all"], r.parts["known"], r.parts["unknown"]

                def pair(m):
                    return f"{m['mean_m']:.0f} / {m['rmse_m']:.0f} (n={m['n']})" if m["n"] else "-"

                print(f"| {name} | {split} | {method} | {a['n']} | {a['mean_m']:.1f} | {a['median_m']:.1f} | "
                      f"{a['p90_m']:.1f} | {a['rmse_m']:.1f} | {pair(k)} | {pair(u)} |", flush=True)
                print(f"<!-- {time.perf_counter() - t0:.1f} s -->", file=sys.stderr)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0]) if args else None, Path(args[1]) if len(args) > 1 else None)
