"""The synthetic city of the Dataset-C benchmark (bench/synthetic_city.py): deterministic, streets clear, densities as asked, read by read_osm."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from bench.synthetic_city import SETBACK_M, CitySpec, make_city, write_city

SMALL = CitySpec(width_m=2000.0, height_m=1600.0, seed=3)


@pytest.fixture(scope="module")
def city():
    return make_city(SMALL)


def test_same_seed_same_city_other_seed_other_city(city):
    again = make_city(SMALL)
    assert len(again.buildings) == len(city.buildings) and len(again.roads) == len(city.roads)
    assert shapely.equals_exact(again.buildings.geometry.values, city.buildings.geometry.values, 0.0).all()
    assert again.buildings.drop(columns="geometry").equals(city.buildings.drop(columns="geometry"))
    other = make_city(CitySpec(width_m=2000.0, height_m=1600.0, seed=4))
    assert len(other.buildings) != len(city.buildings) or not shapely.equals_exact(
        other.buildings.geometry.values[:50], city.buildings.geometry.values[:50], 1e-6).all()


def test_buildings_keep_clear_of_every_carriageway_and_of_each_other(city):
    b = city.buildings.geometry.values
    # each way's carriageway plus the pavement, 1 cm short of the setback
    clear = shapely.buffer(city.roads.geometry.values, city.roads["width_m"].to_numpy() / 2 + SETBACK_M - 0.01)
    tree = shapely.STRtree(b)
    hits = tree.query(clear, predicate="intersects")
    assert hits.shape[1] == 0, f"{hits.shape[1]} building/street overlaps"
    pairs = tree.query(b, predicate="intersects")
    assert (pairs[0] == pairs[1]).all(), "two footprints overlap"
    assert shapely.is_valid(b).all()
    area = shapely.area(b)
    assert area.min() > 20 and np.median(area) > 100  # houses to blocks, no slivers
    holes = shapely.get_num_interior_rings(b)
    corners = shapely.get_num_coordinates(shapely.get_exterior_ring(b)) - 1
    assert (holes > 0).any() and (corners == 6).any() and (corners == 4).any()  # courtyards, L shapes, boxes


@pytest.mark.parametrize("density", [470.0, 1500.0])
def test_density_is_the_requested_one_and_varies_over_the_city(density):
    c = make_city(CitySpec(width_m=2000.0, height_m=1600.0, buildings_per_km2=density, seed=1))
    per_km2 = len(c.buildings) / (2.0 * 1.6)
    assert per_km2 == pytest.approx(density, rel=0.05)
    # blocks of the densest quarter of the field hold at least twice the buildings per m² of the sparsest
    cent = c.buildings.geometry.centroid
    xs, ys = c.roads.geometry.bounds.minx.unique(), c.roads.geometry.bounds.miny.unique()
    assert len(xs) > 5 and len(ys) > 5
    counts, _, _ = np.histogram2d(cent.x, cent.y, bins=4, range=[[-1000, 1000], [-800, 800]])
    assert counts.max() >= 2 * max(counts.min(), 1)


def test_read_osm_reads_the_geojson_with_its_tags(tmp_path, city):
    from twin.scene.heights import HeightConfig, estimate_heights
    from twin.scene.osm import read_osm

    path, written = write_city(tmp_path / "city.geojson", SMALL)
    assert len(written.buildings) == len(city.buildings)
    osm = read_osm(path)
    assert len(osm.buildings) == len(city.buildings) and len(osm.roads) == len(city.roads)
    assert osm.roads["drivable"].all() and set(osm.roads["highway"]) <= {"residential", "tertiary", "secondary",
                                                                          "primary"}
    assert sorted(osm.buildings["osm_id"]) == sorted(city.buildings["osm_id"])
    assert 0.5 < osm.buildings["building:levels"].notna().mean() < 0.8
    height_m, _, source = estimate_heights(osm.buildings, HeightConfig())
    assert {"height_tag", "levels", "type_default"} <= set(source)
    assert ((height_m >= 2.0) & (height_m <= 60.0)).all()
    tall = osm.buildings["building:levels"].astype(float) > 5
    assert tall.any() and np.median(height_m[tall.to_numpy()]) > 15.0
    # the file's extent is the city's (its frame's metres, back from lon/lat to within 1 m)
    w, s, e, n = written.bbox
    assert w <= osm.bbox[0] and osm.bbox[2] <= e and s <= osm.bbox[1] and osm.bbox[3] <= n


def test_square_patches_tile_the_city_in_the_region_frame():
    from twin.generate.plan import layout_shards, plan_from_dict, region_extent

    c = make_city(CitySpec(width_m=2200.0, height_m=2200.0, seed=0))
    plan = plan_from_dict({"name": "t", "output": "t.zarr", "region": {"bbox": list(c.bbox)},
                           "patches": {"size_m": 1000.0, "rows": 2, "cols": 2}})
    _, extent = region_extent(plan, c.bbox)
    # on the zone's central meridian the lon/lat box is the city's rectangle, to metres
    assert extent[2] - extent[0] == pytest.approx(2200.0, abs=2.0)
    assert extent[3] - extent[1] == pytest.approx(2200.0, abs=2.0)
    shards = layout_shards(plan, extent)
    assert [s.extent_m[2] - s.extent_m[0] for s in shards] == [1000.0] * 4


def test_the_dataset_c_benchmark_spreads_its_patches_over_the_layout():
    from bench.bench_dataset_c import PATCH_M, spread

    assert abs(PATCH_M**2 / 1e6 - 8.25) < 0.01  # seed 004's 2.5 x 3.3 km
    some = spread(20)
    assert len(set(some)) == 20 and {r for r, _ in some} == set(range(10)) and {c for _, c in some} == set(range(10))
    assert spread(100) == [(r, c) for r in range(10) for c in range(10)]
