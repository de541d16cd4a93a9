"""The BS file (round trips, validation) and the deployment strategies."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli.twin import main
from tests.scenes import make_box_scene
from twin.errors import InputError, OutputExistsError
from twin.radio.deployment import deploy
from twin.radio.sites import read_bs_file, write_bs_file
from twin.scene.build import load_twin_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return load_twin_scene(make_box_scene(tmp_path_factory.mktemp("s") / "scene"))


def _csv(tmp_path, text, name="bs.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_xy_round_trip_keeps_unknown_columns(scene, tmp_path):
    src = _csv(tmp_path, "bs_id,cell_id,x,y,operator\nA,11,10.5,-20,op1\nA,12,10.5,-20,op1\nB,13,-200,200,op2\n")
    t = read_bs_file(src, scene)
    assert list(t["cell_id"]) == [11, 12, 13]
    assert t["height_m"].tolist() == [40.0] * 3 and t["pattern"].tolist() == ["tr38901"] * 3
    assert t["operator"].tolist() == ["op1", "op1", "op2"]
    lon, lat = scene.frame.to_lonlat(10.5, -20.0)
    assert t["lon"][0] == pytest.approx(lon) and t["lat"][0] == pytest.approx(lat)
    for name in ("out.csv", "out.geojson"):
        write_bs_file(t, tmp_path / name, scene)
        back = read_bs_file(tmp_path / name, scene)
        assert back["operator"].tolist() == ["op1", "op1", "op2"]
        np.testing.assert_allclose(back[["x_m", "y_m"]].to_numpy(), t[["x_m", "y_m"]].to_numpy(), atol=1e-6)
        pd.testing.assert_frame_equal(back.drop(columns=["lon", "lat", "x_m", "y_m", "operator"]),
                                      t.drop(columns=["lon", "lat", "x_m", "y_m", "operator"]))
    feat = json.loads((tmp_path / "out.geojson").read_text())["features"][2]
    assert feat["geometry"]["coordinates"] == pytest.approx([float(v) for v in scene.frame.to_lonlat(-200.0, 200.0)])


def test_lonlat_file_lands_where_the_frame_says(scene, tmp_path):
    lon, lat = scene.frame.to_lonlat(np.array([100.0]), np.array([-50.0]))
    src = _csv(tmp_path, f"bs_id,cell_id,lon,lat,azimuth_deg\nS,1,{float(lon[0])!r},{float(lat[0])!r},-90\n")
    t = read_bs_file(src, scene)
    assert t["x_m"][0] == pytest.approx(100.0, abs=1e-6) and t["y_m"][0] == pytest.approx(-50.0, abs=1e-6)
    assert t["azimuth_deg"][0] == 270.0


def test_validation_names_every_row_and_column(scene, tmp_path):
    src = _csv(tmp_path, "bs_id,cell_id,x_m,y_m,height_m,tilt_deg,pattern,power_dbm\n"
                         "A,1,0,0,nan,0,tr38901,43\n"
                         "A,1,0,0,30,95,iso,43\n"
                         ",x,0,inf,30,0,dipole,abc\n")
    with pytest.raises(InputError) as err:
        read_bs_file(src, scene)
    msg = str(err.value)
    for part in ("row 1, column 'height_m': nan is not finite",
                 "row 2, column 'cell_id': 1 repeats row 1",
                 "row 2, column 'tilt_deg': 95 is outside [-90, 90]",
                 "row 3, column 'bs_id': empty",
                 "row 3, column 'cell_id': 'x' is not an integer",
                 "row 3, column 'y_m': inf is not finite",
                 "row 3, column 'pattern': unknown antenna pattern 'dipole'",
                 "row 3, column 'power_dbm': 'abc' is not a number"):
        assert part in msg, part
    assert str(src) in msg


def test_missing_columns_and_disagreeing_positions(scene, tmp_path):
    with pytest.raises(InputError, match="missing required column 'cell_id'.*\n.*missing position columns"):
        read_bs_file(_csv(tmp_path, "bs_id,height_m\nA,30\n"), scene)
    lon, lat = scene.frame.to_lonlat(0.0, 0.0)
    with pytest.raises(InputError, match="row 1, columns 'lon, lat' and 'x_m, y_m': they disagree by 50.0 m"):
        read_bs_file(_csv(tmp_path, f"bs_id,cell_id,lon,lat,x_m,y_m\nA,1,{float(lon)!r},{float(lat)!r},50,0\n", "b.csv"), scene)


def test_site_inside_a_building_is_lifted_or_rejected(scene, tmp_path):
    # (-80, 80) lies in the 25 m box of tests.scenes.DEFAULT_BOXES
    src = _csv(tmp_path, "bs_id,cell_id,x_m,y_m,height_m\nA,1,-80,80,10\nB,2,200,200,10\n")
    with pytest.warns(UserWarning, match=r"row 1 \(10 m in a 25 m building\)"):
        t = read_bs_file(src, scene)
    assert t["height_m"].tolist() == [28.0, 10.0]
    with pytest.raises(InputError, match="row 1: the antenna .* inside a building of 25 m"):
        read_bs_file(src, scene, on_building="reject")
    with pytest.raises(InputError, match=r"row 1: site \(900.0, 0.0\) m lies outside the scene"):
        read_bs_file(_csv(tmp_path, "bs_id,cell_id,x_m,y_m\nA,1,900,0\n", "o.csv"), scene)


def test_write_refuses_existing_and_leaves_nothing_on_error(scene, tmp_path):
    t = deploy(scene, "grid", count=2, sectors=1)
    out = tmp_path / "bs.csv"
    write_bs_file(t, out, scene)
    with pytest.raises(OutputExistsError):
        write_bs_file(t, out, scene)
    with pytest.raises(InputError, match="GeoJSON needs lon/lat"):
        write_bs_file(t.drop(columns=["lon", "lat"]), tmp_path / "x.geojson")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bs.csv"]


def _site_xy(t):
    return t.drop_duplicates("bs_id")[["x_m", "y_m"]].to_numpy()


def _min_gap(xy):
    d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    return d[~np.eye(len(xy), dtype=bool)].min()


def test_grid_and_random_counts_spacing_sectors(scene):
    g = deploy(scene, "grid", count=9, min_spacing_m=100)
    assert g["bs_id"].nunique() == 9 and len(g) == 27 and g["cell_id"].is_unique
    assert g.groupby("bs_id")["azimuth_deg"].apply(sorted).iloc[0] == [0.0, 120.0, 240.0]
    assert _min_gap(_site_xy(g)) >= 100
    r1 = deploy(scene, "random", count=8, min_spacing_m=80, seed=3, sectors=1)
    r2 = deploy(scene, "random", count=8, min_spacing_m=80, seed=3, sectors=1)
    r3 = deploy(scene, "random", count=8, min_spacing_m=80, seed=4, sectors=1)
    pd.testing.assert_frame_equal(r1, r2)
    assert not np.allclose(_site_xy(r1), _site_xy(r3))
    assert len(r1) == 8 and set(r1["pattern"]) == {"iso"} and _min_gap(_site_xy(r1)) >= 80
    assert scene.grid.contains(_site_xy(r1)).all()
    with pytest.raises(InputError, match="could place only .* of 40 sites"):
        deploy(scene, "random", count=40, min_spacing_m=150)


def test_dense_sees_three_sites_in_every_600m_crop(scene):
    t = deploy(scene, "dense", seed=2, count=48, crop_m=300, min_visible=3, min_spacing_m=20, cluster_radius_m=40)
    xy = _site_xy(t)
    checks = np.random.default_rng(0).uniform(-250, 250, size=(400, 2))
    inside = (np.abs(xy[None, :, 0] - checks[:, None, 0]) <= 150) & (np.abs(xy[None, :, 1] - checks[:, None, 1]) <= 150)
    assert inside.sum(axis=1).min() >= 3
    # the default 600 m crop on this 500 m scene: 4 tiles of 300 m, 3 sites each; never more than count
    assert deploy(scene, "dense", seed=1, count=12)["bs_id"].nunique() == 12
    assert deploy(scene, "dense", seed=1, count=14)["bs_id"].nunique() == 14
    with pytest.raises(InputError, match=r"count: 10 sites cannot give min_visible=3 .* 4 tiles.*--count 12"):
        deploy(scene, "dense", seed=1)


def test_rooftop_sites_stand_on_roofs(scene):
    t = deploy(scene, "random", count=4, height="rooftop", mast_m=5, min_spacing_m=30, seed=1)
    i, j, _ = scene.grid.index_of(_site_xy(t))
    assert (scene.layers["building_mask"][i, j] == 1).all()
    np.testing.assert_allclose(t.drop_duplicates("bs_id")["height_m"], scene.layers["building_height_m"][i, j] + 5)


@pytest.mark.slow
def test_cli_deploy_trace_show_map(scene, tmp_path):
    run = CliRunner().invoke
    res = run(main, ["deploy", "--scene", str(scene.path), "--strategy", "grid", "--count", "2",
                     "--sectors", "1", "--out", str(tmp_path / "bs.csv")])
    assert res.exit_code == 0, res.output
    assert "2 sites, 2 cells" in res.output
    res = run(main, ["trace", "--scene", str(scene.path), "--bs-file", str(tmp_path / "bs.csv"), "--out",
                     str(tmp_path / "maps.zarr"), "--samples-per-tx", "20000", "--max-depth", "1",
                     "--cell-size", "10", "--path-gain-only"])
    assert res.exit_code == 0, res.output
    assert "2 cells on a 50 x 50 grid of 10 m" in res.output
    res = run(main, ["show-map", str(tmp_path / "maps.zarr"), "--out", str(tmp_path / "png")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "path_gain_db-cell1.png", "path_gain_db-cell2.png", "path_gain_db-max.png"]
    res = run(main, ["trace", "--scene", str(scene.path), "--bs-file", str(tmp_path / "bs.csv"),
                     "--out", str(tmp_path / "maps.zarr"), "--path-gain-only"])
    assert res.exit_code == 2 and "exists; pass --overwrite" in res.output


def test_cli_errors_are_clean_and_leave_nothing(scene, tmp_path):
    run = CliRunner().invoke
    bad = _csv(tmp_path, "bs_id,cell_id,x_m,y_m,pattern\nA,1,0,0,yagi\n", "bad.csv")
    res = run(main, ["trace", "--scene", str(scene.path), "--bs-file", str(bad), "--out",
                     str(tmp_path / "m2.zarr"), "--path-gain-only"])
    assert res.exit_code == 2 and "row 1, column 'pattern'" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "m2.zarr").exists()
    res = run(main, ["deploy", "--scene", str(scene.path), "--strategy", "file", "--out", str(tmp_path / "o.csv")])
    assert res.exit_code == 2 and "give the BS file" in res.output
    for cmd in ("deploy", "trace", "show-map"):
        assert "Example:" in run(main, [cmd, "--help"]).output
