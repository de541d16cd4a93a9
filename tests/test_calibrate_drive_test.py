"""Drive-test ingest: formats, unit and range checks, duplicates, outliers, projection, cell matching."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from calibrate.drive_test import read_drive_test, write_drive_test
from tests.scenes import make_box_scene
from twin.errors import InputError
from twin.scene.build import load_twin_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return load_twin_scene(make_box_scene(tmp_path_factory.mktemp("dt") / "scene", half_size_m=250.0))


BS = pd.DataFrame({"bs_id": ["a", "a", "b"], "cell_id": [1, 2, 3]})


def _rows(scene, n=40, cell=1, seed=0):
    """A clean drive test along the x axis: RSSI falling 0.2 dB per metre from the origin."""
    x = np.linspace(-200, 200, n)
    lon, lat = scene.frame.to_lonlat(x, np.zeros(n))
    rssi = -50.0 - 0.2 * np.abs(x) + np.random.default_rng(seed).normal(0, 0.5, n)
    return pd.DataFrame({"time": np.arange(n, dtype=float), "lon": lon, "lat": lat, "cell_id": cell,
                         "rssi_dbm": np.round(rssi), "rsrp_dbm": np.round(rssi) - 30.0})


def test_clean_file_is_projected_into_the_scene_frame(scene, tmp_path):
    df = _rows(scene)
    df.to_csv(tmp_path / "dt.csv", index=False)
    dt = read_drive_test(tmp_path / "dt.csv", scene, BS)
    assert len(dt.rows) == len(df) and len(dt.dropped) == 0
    np.testing.assert_allclose(dt.rows["x_m"], np.linspace(-200, 200, 40), atol=1e-6)
    np.testing.assert_allclose(dt.rows["y_m"], 0.0, atol=1e-6)
    assert dt.metrics == ("rssi_dbm", "rsrp_dbm")
    assert dt.summary()["rows_per_cell"] == {1: 40}


def test_geojson_parquet_and_csv_agree(scene, tmp_path):
    df = _rows(scene)
    for name in ("dt.csv", "dt.geojson", "dt.parquet"):
        write_drive_test(df, tmp_path / name)
    read = [read_drive_test(tmp_path / n, scene, BS).rows for n in ("dt.csv", "dt.geojson", "dt.parquet")]
    for other in read[1:]:
        np.testing.assert_allclose(other[["x_m", "y_m", "rssi_dbm"]], read[0][["x_m", "y_m", "rssi_dbm"]], atol=1e-6)
    assert json.loads((tmp_path / "dt.geojson").read_text())["features"][0]["geometry"]["type"] == "Point"


def test_aliases_and_milliwatt_columns(scene, tmp_path):
    df = _rows(scene).rename(columns={"lon": "Longitude", "lat": "Latitude", "rsrp_dbm": "RSRP"})
    df["rssi_mw"] = 10 ** (df.pop("rssi_dbm") / 10)
    df.to_csv(tmp_path / "dt.csv", index=False)
    dt = read_drive_test(tmp_path / "dt.csv", scene, BS)
    np.testing.assert_allclose(dt.rows["rssi_dbm"], _rows(scene)["rssi_dbm"], atol=1e-9)
    assert any("rssi_mw converted" in n for n in dt.notes)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.assign(rssi_dbm=10 ** (d["rssi_dbm"] / 10)), "look like milliwatts"),
    (lambda d: d.assign(rssi_dbm=d["rsrp_dbm"], rsrp_dbm=d["rssi_dbm"]), "swapped"),
    (lambda d: d.assign(lon=d["lat"], lat=d["lon"]), "'lon' and 'lat' exchanged"),
    (lambda d: d.drop(columns=["cell_id"]), "missing column 'cell_id'"),
    (lambda d: d.drop(columns=["lon", "lat"]), "missing position columns"),
    (lambda d: d.drop(columns=["rssi_dbm", "rsrp_dbm"]), "no measurement column"),
])
def test_file_level_problems_are_clear_errors(scene, tmp_path, change, message):
    change(_rows(scene)).to_csv(tmp_path / "dt.csv", index=False)
    with pytest.raises(InputError, match="dt.csv") as err:
        read_drive_test(tmp_path / "dt.csv", scene, BS)
    assert message in str(err.value)


def test_missing_metric_for_the_fit(scene, tmp_path):
    _rows(scene).drop(columns=["rsrp_dbm"]).to_csv(tmp_path / "dt.csv", index=False)
    with pytest.raises(InputError, match="no 'rsrp_dbm' column for --metric rsrp"):
        read_drive_test(tmp_path / "dt.csv", scene, BS, metric="rsrp")


def test_bad_rows_are_dropped_with_reasons(scene, tmp_path):
    df = _rows(scene).astype({"rssi_dbm": object})
    df.loc[3, "rssi_dbm"] = -250.0            # out of range (a sentinel)
    df.loc[5, "rssi_dbm"] = "weak"            # not a number
    df.loc[7, "cell_id"] = 9                  # not in the BS file
    df.loc[9, "rsrp_dbm"] = -60.0             # RSRP above RSSI (about -71 dBm there)
    df.loc[11, "rssi_dbm"] = -10.5            # within range but 40+ dB off its neighbours: outlier
    df.loc[13, ["lon", "lat"]] = scene.frame.to_lonlat(900.0, 0.0)  # outside the scene
    df = pd.concat([df, df.iloc[[20]], df.iloc[[21]].assign(rssi_dbm=df.loc[21, "rssi_dbm"] + 1)], ignore_index=True)
    df.to_csv(tmp_path / "dt.csv", index=False)
    dt = read_drive_test(tmp_path / "dt.csv", scene, BS)
    why = dict(zip(dt.dropped["row"], dt.dropped["reason"], strict=True))
    assert why[4].startswith("out of range: rssi_dbm -250")
    assert why[6].startswith("bad value: rssi_dbm 'weak'")
    assert why[8] == "cell not in the BS file: cell_id 9"
    assert why[10].startswith("rsrp above rssi")
    assert why[12].startswith("outlier: rssi_dbm -10.5")
    assert why[14].startswith("outside the scene")
    assert why[41] == "duplicate: same as row 21"
    assert why[42].startswith("duplicate: same time, position and cell as row 22")
    assert len(why) == 8 and len(dt.rows) == 42 - 8
    counts = dt.summary()["dropped_by_reason"]
    assert counts["duplicate"] == 2 and counts["outlier"] == 1


def test_all_rows_bad_is_an_error(scene, tmp_path):
    _rows(scene, cell=7).to_csv(tmp_path / "dt.csv", index=False)
    with pytest.raises(InputError, match=r"no usable rows; dropped 40 \(cell not in the BS file\)"):
        read_drive_test(tmp_path / "dt.csv", scene, BS)


def test_scene_coordinates_accepted(scene, tmp_path):
    df = _rows(scene).drop(columns=["lon", "lat"]).assign(x_m=np.linspace(-200, 200, 40), y_m=10.0)
    df.to_csv(tmp_path / "dt.csv", index=False)
    dt = read_drive_test(tmp_path / "dt.csv", scene, BS)
    lon, lat = scene.frame.to_lonlat(0.0, 10.0)
    assert np.isfinite(dt.rows["lon"]).all()
    assert abs(dt.rows["lat"].mean() - float(lat)) < 1e-6
