"""The whole pipeline through the two command lines on the tiny city, checked at every step.

The tiny city (tests/data/tiny_city) as OSM GeoJSON → ``twin build-scene`` → ``twin deploy``
→ ``twin trace`` (Sionna RT on CPU) → ``twin sample`` → ``learn pretrain`` (a few steps)
→ ``learn eval`` → ``learn predict``, each through click's runner as a user types it; the
assertions read the files each step wrote.
"""

from __future__ import annotations

import csv
import json
import math
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli.learn import main as learn_cli
from cli.twin import main as twin_cli
from tests.data.tiny_city.make import buildings, write_osm_geojson
from tests.test_learn_e2e import CONFIG  # the tiny model of the learning tests
from twin.corpus.store import open_corpus
from twin.radio.maps import open_maps
from twin.scene.build import load_twin_scene

C_M_S = 299_792_458.0


def _run(cli, *args: str) -> str:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.stdout  # progress bars go to stderr


@pytest.mark.slow
def test_build_deploy_trace_sample_pretrain_eval_predict(tmp_path):
    osm, bbox = write_osm_geojson(tmp_path / "city.geojson")
    scene_dir, bs_file, maps_url, corpus_url = (tmp_path / "scene", tmp_path / "bs.csv", tmp_path / "maps.zarr",
                                                tmp_path / "corpus.zarr")

    # build-scene: every building of the city, with its height tag
    out = _run(twin_cli, "build-scene", "--osm-file", osm, "--bbox", ",".join(f"{v:.8f}" for v in bbox),
               "--out", scene_dir, "--cell-size", "4")
    truth = buildings(240.0, 200.0, 100.0)
    assert f"buildings: {len(truth)} built of {len(truth)} read" in out
    scene = load_twin_scene(scene_dir)
    assert scene.meta["height_sources"]["height_tag"] == len(truth)
    built = gpd.read_parquet(scene_dir / "buildings.parquet")
    np.testing.assert_allclose(sorted(built["height_m"]), sorted(round(b[4], 1) for b in truth), atol=1e-6)
    footprint_m2 = sum(abs((b[2] - b[0]) * (b[3] - b[1])) for b in truth)
    indoor_m2 = scene.layers["building_mask"].sum() * scene.grid.cell_size_m ** 2
    assert indoor_m2 == pytest.approx(footprint_m2, rel=0.15)  # the raster by cell centres

    # deploy: three single-sector sites on a grid
    out = _run(twin_cli, "deploy", "--scene", scene_dir, "--strategy", "grid", "--count", "3", "--sectors", "1",
               "--pattern", "iso", "--out", bs_file)
    bs = pd.read_csv(bs_file)
    assert len(bs) == 3 and f"{bs_file}: 3 sites, 3 cells (grid)" in out
    assert bs["cell_id"].is_unique and (bs["height_m"] == 40.0).all()  # the default mast height
    assert scene.grid.contains(bs[["x_m", "y_m"]].to_numpy()).all()

    # trace: the maps hold the cells of the BS file on the scene grid; the peak is free space
    _run(twin_cli, "trace", "--scene", scene_dir, "--bs-file", bs_file, "--out", maps_url,
         "--samples-per-tx", "100000", "--max-depth", "2")
    maps = open_maps(maps_url)
    assert maps.cell_ids == bs["cell_id"].tolist() and maps.grid == scene.grid
    np.testing.assert_allclose(maps.cell_xy_m, bs[["x_m", "y_m"]].to_numpy(), atol=1e-3)
    pg = maps["path_gain_db"]
    centres = scene.grid.centers_m()
    for k, site in bs.iterrows():
        i, j = np.unravel_index(np.nanargmax(pg[k]), pg[k].shape)
        dxy = centres[i, j] - (site["x_m"], site["y_m"])
        assert np.hypot(*dxy) < 20.0, f"cell {site['cell_id']}: peak {np.hypot(*dxy):.0f} m from the site"
        d_m = math.sqrt(dxy @ dxy + (site["height_m"] - 1.5) ** 2)
        friis_db = 20 * math.log10(C_M_S / site["frequency_hz"] / (4 * math.pi * d_m))
        assert abs(pg[k][i, j] - friis_db) < 3.0  # line of sight plus a ground reflection
    outdoor = scene.layers["building_mask"] == 0
    assert np.isfinite(maps["rsrp_dbm"][:, outdoor]).mean() > 0.4

    # sample: drive-mode sequences of these cells, every sample in one part of each split
    out = _run(twin_cli, "sample", "--scene", scene_dir, "--maps", maps_url, "--out", corpus_url,
               "--n", "240", "--mode", "drive", "--seed", "1")
    corpus = open_corpus(corpus_url)
    assert corpus.attrs["counts"]["samples"] == 240 and "Wrote 240 sequences" in out
    for parts in corpus.attrs["counts"]["splits"].values():
        assert sum(parts.values()) == 240
    n_test = len(corpus.split_indices("spatial", "test"))
    assert n_test > 0

    # pretrain a few steps, then eval and predict with the best checkpoint
    (tmp_path / "tiny.yaml").write_text(CONFIG)
    out = _run(learn_cli, "pretrain", "--data", corpus_url, "--config", tmp_path / "tiny.yaml", "--out",
               tmp_path / "run", "--max-steps", "4", "--num-workers", "0", "--split", "spatial")
    steps = re.search(r"trained (\d+) steps", out)
    assert steps and int(steps.group(1)) == 4, out
    assert (tmp_path / "run" / "best.pt").is_file()

    res = json.loads(_run(learn_cli, "eval", "--data", corpus_url, "--split", "spatial", "--ckpt",
                          tmp_path / "run" / "best.pt", "--json").strip().splitlines()[-1])
    assert res["n"] == n_test
    diagonal_m = math.hypot(*scene.grid.size_m)
    for key in ("mean_m", "median_m", "p90_m", "nll"):
        assert math.isfinite(res[key]), key
    assert 0 < res["median_m"] <= res["p90_m"] < diagonal_m
    assert 0 <= res["coverage50"] <= res["coverage90"] <= 1

    out = _run(learn_cli, "predict", "--ckpt", tmp_path / "run" / "best.pt", "--data", corpus_url,
               "--split", "spatial", "--out", tmp_path / "pred.csv")
    rows = list(csv.DictReader((tmp_path / "pred.csv").read_text().splitlines()))
    assert len(rows) == n_test and f"{n_test} predictions" in out
    for r in rows:  # the error is the distance of the point estimate to the sample's truth
        err = math.hypot(float(r["x_m"]) - float(r["true_x_m"]), float(r["y_m"]) - float(r["true_y_m"]))
        assert float(r["error_m"]) == pytest.approx(err, rel=1e-5, abs=1e-3)
    truth_xy = np.array([[float(r["true_x_m"]), float(r["true_y_m"])] for r in rows])
    assert scene.grid.contains(truth_xy).all() and scene.is_outdoor(truth_xy).mean() > 0.9  # on the streets
    assert np.median([float(r["error_m"]) for r in rows]) == pytest.approx(res["median_m"], rel=1e-4)
