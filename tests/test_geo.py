"""The lon/lat ↔ scene transform and the shared raster grid."""

from __future__ import annotations

import numpy as np
import pytest

from twin.errors import InputError
from twin.geo import Grid, SceneFrame, utm_crs_for, validate_bbox


@pytest.mark.parametrize(("lon", "lat", "crs"), [
    (24.94, 60.17, "EPSG:32635"),   # Helsinki
    (12.48, 41.86, "EPSG:32633"),   # Rome
    (-111.84, 40.76, "EPSG:32612"),  # Salt Lake City
    (151.2, -33.87, "EPSG:32756"),  # Sydney, southern hemisphere
])
def test_utm_zone_follows_the_area(lon, lat, crs):
    assert utm_crs_for(lon, lat) == crs


def test_round_trip_under_one_centimetre():
    frame = SceneFrame.from_lonlat(24.944, 60.1716)
    rng = np.random.default_rng(0)
    lon = 24.944 + rng.uniform(-0.02, 0.02, 1000)
    lat = 60.1716 + rng.uniform(-0.01, 0.01, 1000)
    x, y = frame.to_scene(lon, lat)
    lon2, lat2 = frame.to_lonlat(x, y)
    x2, y2 = frame.to_scene(lon2, lat2)
    assert np.max(np.hypot(x2 - x, y2 - y)) < 0.01
    assert np.max(np.abs(lon2 - lon)) < 1e-9


def test_scene_axes_point_east_and_north():
    frame = SceneFrame.from_lonlat(24.944, 60.1716)
    x0, y0 = frame.to_scene(24.944, 60.1716)
    assert abs(x0) < 1e-6 and abs(y0) < 1e-6
    x_east, y_east = frame.to_scene(24.954, 60.1716)
    x_north, y_north = frame.to_scene(24.944, 60.1816)
    # 0.01° of longitude at 60.17° N is about 554 m; 0.01° of latitude about 1,113 m.
    assert 540 < x_east < 570 and abs(y_east) < 30
    # Scene y is UTM grid north: 2° of meridian convergence here (zone 35, central meridian 27°).
    assert 1100 < y_north < 1125
    assert np.degrees(np.arctan2(x_north, y_north)) == pytest.approx(1.78, abs=0.02)


@pytest.mark.parametrize("bbox", [(24.95, 60.16, 24.94, 60.17), (24.94, 60.17, 24.95, 60.17),
                                  (1, 2, 3), ("a", 1, 2, 3), (0, 95, 1, 96)])
def test_bad_bbox_is_refused(bbox):
    with pytest.raises(InputError, match="bbox"):
        validate_bbox(bbox)


def test_bbox_area_limit():
    with pytest.raises(InputError, match="km²"):
        validate_bbox((24.0, 60.0, 25.0, 60.5), max_area_km2=25)
    assert validate_bbox((24.93, 60.16, 24.95, 60.18), max_area_km2=25) == (24.93, 60.16, 24.95, 60.18)


def test_grid_rows_grow_north_and_columns_east():
    grid = Grid(x0_m=-100.0, y0_m=-50.0, cell_size_m=10.0, width=20, height=10)
    centers = grid.centers_m()
    assert centers.shape == (10, 20, 2)
    assert centers[0, 0].tolist() == [-95.0, -45.0]
    assert centers[9, 0, 1] > centers[0, 0, 1]  # row index grows north
    assert centers[0, 19, 0] > centers[0, 0, 0]  # column index grows east
    i, j, inside = grid.index_of(np.array([[-95.0, -45.0], [99.0, 49.0], [150.0, 0.0]]))
    assert (i.tolist(), j.tolist(), inside.tolist()) == ([0, 9, 5], [0, 19, 19], [True, True, False])


def test_grid_covering_and_window():
    grid = Grid.covering(-500, -300, 500, 300, 4.0)
    assert (grid.width, grid.height) == (250, 150)
    assert grid.extent_m == (-500, -300, 500, 300)
    sub, (rows, cols) = grid.window(-10, -10, 10, 10)  # cell edges at -12, -8 ... 12
    assert (sub.width, sub.height) == (6, 6)
    assert np.allclose(sub.centers_m(), grid.centers_m()[rows, cols])


def test_bilinear_sampling_is_exact_for_planes():
    grid = Grid(0.0, 0.0, 2.0, 30, 20)
    c = grid.centers_m()
    plane = 3.0 * c[..., 0] - 2.0 * c[..., 1] + 5.0
    rng = np.random.default_rng(1)
    pts = np.column_stack([rng.uniform(1, 59, 200), rng.uniform(1, 39, 200)])
    assert np.allclose(grid.sample(plane, pts), 3 * pts[:, 0] - 2 * pts[:, 1] + 5)
    stacked = np.stack([plane, 2 * plane])
    assert grid.sample(stacked, pts).shape == (2, 200)
    np.testing.assert_allclose(grid.sample(stacked, pts, skip_nan=False)[1], 2 * (3 * pts[:, 0] - 2 * pts[:, 1] + 5))
    # points beyond the outermost centres take the edge value (clamped onto the centres)
    edge = np.array([[0.2, 21.0], [59.9, 21.0]])
    np.testing.assert_allclose(grid.sample(plane, edge), [3 * 1 - 2 * 21 + 5, 3 * 59 - 2 * 21 + 5])
    assert grid.sample(plane.astype(np.float32), pts).dtype == np.float32


def test_bilinear_nan_rule_renormalizes_finite_corners():
    from twin.geo import MIN_FINITE_WEIGHT, blend_corners

    grid = Grid(0.0, 0.0, 1.0, 2, 2)  # centres at 0.5 and 1.5
    v = np.array([[0.0, 10.0],     # row 0 (south): (0.5, 0.5) = 0, (1.5, 0.5) = 10
                  [np.nan, 20.0]])  # row 1 (north): (0.5, 1.5) = NaN, (1.5, 1.5) = 20
    xy = np.array([[1.0, 1.0],      # the middle: weights 1/4 each, NaN dropped -> (0 + 10 + 20) / 3
                   [0.5, 1.5],      # the NaN cell's centre: no finite weight -> NaN
                   [0.75, 1.0],     # weights (3/8, 1/8, 3/8 NaN, 1/8) -> (0 * 3 + 10 + 20) / 5
                   [1.5, 0.5]])     # a finite centre: its value exactly
    np.testing.assert_allclose(grid.sample(v, xy), [10.0, np.nan, 6.0, 10.0])
    # plain bilinear: a NaN among the four corners makes the point NaN, even at zero weight
    assert np.isnan(grid.sample(v, xy, skip_nan=False)).all()
    np.testing.assert_allclose(grid.sample(np.nan_to_num(v), xy, skip_nan=False), [7.5, 0.0, 3.75, 10.0])
    assert np.isnan(grid.sample(np.full((2, 2), np.nan), xy)).all()
    # -inf ("not received") drops out like NaN
    np.testing.assert_allclose(grid.sample(np.where(np.isnan(v), -np.inf, v), xy[:1]), [10.0])
    # the threshold: a finite share just below it gives NaN, just above it the finite value
    corners = [np.array([np.nan]), np.array([7.0]), np.array([np.nan]), np.array([np.nan])]
    below = np.array([[1.0 - MIN_FINITE_WEIGHT / 2], [MIN_FINITE_WEIGHT / 2], [0.0], [0.0]])
    above = np.array([[1.0 - 2 * MIN_FINITE_WEIGHT], [2 * MIN_FINITE_WEIGHT], [0.0], [0.0]])
    assert np.isnan(blend_corners(corners, below)[0])
    assert blend_corners(corners, above)[0] == pytest.approx(7.0)


def test_grid_round_trips_through_attributes():
    grid = Grid(1.5, -2.5, 4.0, 7, 9)
    assert Grid.from_dict(grid.to_dict()) == grid
    with pytest.raises(InputError, match="cell_size_m"):
        Grid.from_dict({"x0_m": 0, "y0_m": 0, "width": 2, "height": 2})
