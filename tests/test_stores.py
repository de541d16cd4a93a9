"""The scene and radio-map stores: one writer each (the test fixtures use it too); readers check kind and schema."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import zarr
from shapely.geometry import LineString, box

from tests.data.tiny_city.make import buildings, default_sites, make_maps, make_scene
from tests.scenes import make_box_scene
from twin.errors import InputError, OutputExistsError
from twin.geo import Grid, SceneFrame
from twin.radio.maps import MAPS_KIND, MAPS_SCHEMA_VERSION, open_maps
from twin.scene.build import (
    LAYER_UNITS,
    LAYERS_KIND,
    SCENE_KIND,
    SCENE_SCHEMA_VERSION,
    load_twin_scene,
    write_scene_files,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    scene_dir = make_scene(root / "scene")
    return root, scene_dir, make_maps(scene_dir, root / "maps.zarr")


def test_fixture_scenes_carry_kind_and_schema_of_the_writer(tiny, tmp_path):
    _, scene_dir, _ = tiny
    for directory in (scene_dir, make_box_scene(tmp_path / "boxes", half_size_m=60.0, boxes=())):
        meta = json.loads((directory / "scene.json").read_text())
        assert (meta["kind"], meta["schema_version"]) == (SCENE_KIND, SCENE_SCHEMA_VERSION)
        layers = zarr.open_group(str(directory / "layers.zarr"), mode="r")
        assert (layers.attrs["kind"], layers.attrs["schema_version"]) == (LAYERS_KIND, SCENE_SCHEMA_VERSION)
        assert layers.attrs["units"] == LAYER_UNITS and Grid.from_dict(layers.attrs["grid"]) == Grid.from_dict(meta["grid"])
    boxes = json.loads((tmp_path / "boxes" / "scene.json").read_text())
    assert boxes["counts"] == {"buildings": 0, "roads": 2} and boxes["materials"]["ground"] == "medium_dry_ground"


def test_scene_files_round_trip_through_the_reader(tiny):
    _, scene_dir, _ = tiny
    scene = load_twin_scene(scene_dir)
    blds = buildings(240.0, 200.0, 100.0)
    assert scene.meta["counts"]["buildings"] == len(blds) == len(scene.buildings())
    # stored in the frame's UTM CRS, read back in scene metres: the same rectangles
    stored = gpd.read_parquet(scene_dir / "buildings.parquet")
    assert stored.crs.to_string() == scene.frame.crs
    e0, n0 = scene.frame.origin_projected_m
    np.testing.assert_allclose(stored.total_bounds, np.array(scene.buildings().total_bounds) + [e0, n0, e0, n0])
    xa, ya, xb, yb, _ = blds[-1]
    np.testing.assert_allclose(scene.buildings().geometry.iloc[-1].bounds,
                               (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)))
    assert scene.layers["building_mask"].dtype == np.uint8 and scene.layers["building_height_m"].dtype == np.float32
    # the bbox defaults to the corners of the extent
    w, s = scene.frame.to_lonlat(0.0, 0.0)
    e, n = scene.frame.to_lonlat(240.0, 200.0)
    np.testing.assert_allclose(scene.meta["bbox_lonlat"], [w, s, e, n])


def test_fixture_maps_are_written_by_write_maps(tiny):
    root, scene_dir, maps_url = tiny
    maps = open_maps(maps_url)
    assert (maps.attrs["kind"], maps.attrs["schema_version"]) == (MAPS_KIND, MAPS_SCHEMA_VERSION)
    assert maps.cell_ids == [101, 111, 121, 131] and maps.attrs["complete"] is True
    np.testing.assert_allclose(maps.cell_xy_m, default_sites(240.0, 200.0))
    assert maps.attrs["scene"] == str(scene_dir) and maps.unit("rsrp_dbm") == "dBm"
    assert maps["serving_cell"].dtype == np.int16 and maps["rsrp_dbm"].shape == (4, 100, 120)
    with pytest.raises(OutputExistsError):  # the library writer's rule: no silent overwrite
        make_maps(scene_dir, maps_url)


def test_readers_refuse_other_kinds_and_versions(tiny, tmp_path):
    _, scene_dir, maps_url = tiny
    import shutil

    copy = shutil.copytree(scene_dir, tmp_path / "scene")
    layers = zarr.open_group(str(copy / "layers.zarr"), mode="r+")
    del layers.attrs["kind"]
    with pytest.raises(InputError, match=r"layers.zarr: not a scene's GIS layers \(kind=None"):
        _ = load_twin_scene(copy).layers
    layers.attrs.update({"kind": LAYERS_KIND, "schema_version": 99})
    with pytest.raises(InputError, match="layers.zarr: schema_version 99"):
        _ = load_twin_scene(copy).layers
    meta = json.loads((copy / "scene.json").read_text())
    (copy / "scene.json").write_text(json.dumps({**meta, "kind": "twin-maps"}))
    with pytest.raises(InputError, match="scene.json: not a twin scene .kind='twin-maps', expected 'twin-scene'"):
        load_twin_scene(copy)
    maps = shutil.copytree(maps_url, tmp_path / "maps.zarr")
    zarr.open_group(str(maps), mode="r+").attrs["kind"] = SCENE_KIND
    with pytest.raises(InputError, match="not a radio-map store .kind='twin-scene', expected 'twin-maps'"):
        open_maps(maps)


def test_writer_names_what_does_not_fit(tmp_path):
    frame = SceneFrame.from_lonlat(24.94, 60.17)
    grid = Grid(0.0, 0.0, 10.0, 4, 3)
    layers = {"building_mask": np.zeros((3, 4)), "building_height_m": np.zeros((3, 4)), "road_mask": np.zeros((3, 4))}
    blds = gpd.GeoDataFrame({"height_m": [10.0], "material": ["concrete"]}, geometry=[box(0, 0, 5, 5)])
    roads = gpd.GeoDataFrame({"highway": ["primary"]}, geometry=[LineString([(0, 1), (40, 1)])])
    args = {"name": "t", "frame": frame, "grid": grid, "extent_m": (0.0, 0.0, 40.0, 30.0)}
    with pytest.raises(InputError, match=r"'road_mask' has shape \(3, 3\), expected .* \(3, 4\)"):
        write_scene_files(tmp_path, **args, layers={**layers, "road_mask": np.zeros((3, 3))},
                          buildings=blds, roads=roads)
    with pytest.raises(InputError, match="layers"):
        write_scene_files(tmp_path, **args, layers={"building_mask": layers["building_mask"]},
                          buildings=blds, roads=roads)
    with pytest.raises(InputError, match="roads.parquet: missing column.s. highway"):
        write_scene_files(tmp_path, **args, layers=layers, buildings=blds, roads=roads.rename(columns={"highway": "x"}))
    with pytest.raises(InputError, match=r"\['kind'\] are written by write_scene_files"):
        write_scene_files(tmp_path, **args, layers=layers, buildings=blds, roads=roads, meta={"kind": "other"})
    assert not any(tmp_path.iterdir())  # checked before anything is written
    meta = write_scene_files(tmp_path, **args, layers=layers, buildings=blds, roads=roads, meta={"source": "test"})
    assert meta == json.loads((tmp_path / "scene.json").read_text())
    assert meta["counts"] == {"buildings": 1, "roads": 1} and meta["source"] == "test"
    assert load_twin_scene(tmp_path).layers["building_mask"].dtype == np.uint8
