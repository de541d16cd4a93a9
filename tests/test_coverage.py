"""Maps without ray-count holes: the ray budget from a density, hole filling, coverage in the store."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.scenes import make_box_scene
from twin.errors import InputError
from twin.radio.coverage import (
    FILLED,
    NO_VALUE,
    RECEIVED,
    fill_holes,
    samples_for_density,
    unheard_fraction,
)
from twin.radio.maps import open_maps
from twin.radio.tracer import TraceConfig, Tracer, trace
from twin.scene.build import load_twin_scene


def test_samples_for_density_gives_the_target_at_the_radius():
    ext = (-2000.0, -2000.0, 2000.0, 2000.0)
    n = samples_for_density(40.0, ext, 0.0, 0.0, 4.0, rays_per_pixel=3.0, radius_m=500.0)
    dh, d = 38.5, math.hypot(500.0, 38.5)
    solid_angle = 16.0 * dh / d**3  # a 4 m pixel seen from the antenna
    assert n * solid_angle / (4 * math.pi) == pytest.approx(3.0, rel=1e-4)
    # a small map caps the radius at its farthest corner; bounds hold
    small = samples_for_density(40.0, (-100.0, -100.0, 100.0, 100.0), 0.0, 0.0, 4.0, 3.0, 500.0)
    assert small < n / 10
    assert samples_for_density(40.0, ext, 0.0, 0.0, 4.0, 3.0, 500.0, min_samples=10**8) == 10**8
    assert samples_for_density(2.0, ext, 0.0, 0.0, 4.0, 3.0, 500.0, max_samples=10**7) == 10**7


def test_fill_stays_outdoors_within_the_radius_and_never_crosses_a_building():
    # a street (rows 0-2) and a building (rows 3-4) with a courtyard behind it (rows 5-6)
    outdoor = np.ones((7, 12), bool)
    outdoor[3:5] = False
    pg = np.full((1, 7, 12), np.nan, np.float32)
    pg[0, 1, 0] = -80.0  # one received pixel at the west end of the street
    pg[0, 3, 0] = -120.0  # a refracted ray indoors: kept, never a source
    filled, cov = fill_holes(pg, outdoor, cell_size_m=4.0, radius_m=20.0)  # 5 steps
    assert cov[0, 1, 0] == RECEIVED and cov[0, 3, 0] == RECEIVED and filled[0, 3, 0] == -120.0
    street = cov[0, :3]
    assert (street[:, 1:6] == FILLED).all() and (street[:, 6:] == NO_VALUE).all()  # 5 pixels = 20 m
    # the window mean of the linear estimate, holes and indoor-free: 1e-8 over the outdoor pixels of 11 x 11
    for i, j in ((0, 1), (2, 5)):
        window = outdoor[max(0, i - 5):i + 6, max(0, j - 5):j + 6]
        assert filled[0, i, j] == pytest.approx(10 * np.log10(1e-8 / window.sum()), abs=1e-4)
    assert (filled[0, :3, 1:6] < -80.0).all()
    assert (cov[0, 3:5, 1:] == NO_VALUE).all() and np.isnan(filled[0, 3:5, 1:]).all()  # never indoors
    assert (cov[0, 5:] == NO_VALUE).all()  # the courtyard is 3 rows away, but only through the building
    # the mean is linear and counts the holes as zero (the Monte-Carlo estimate)
    pg2 = np.full((3, 3), np.nan, np.float32)
    pg2[1, 0], pg2[1, 2] = -70.0, -90.0
    f2, _ = fill_holes(pg2, np.ones((3, 3), bool), 4.0, 4.0)
    assert f2[1, 1] == pytest.approx(10 * np.log10((1e-7 + 1e-9) / 9), abs=1e-4)  # zeros count: not -80
    assert np.isnan(fill_holes(pg2, np.ones((3, 3), bool), 4.0, 3.9)[0][1, 1])  # radius under a cell: nothing


def test_unheard_fraction_counts_pixels_near_sites_that_no_cell_hears():
    pg = np.full((2, 1, 4), np.nan)
    pg[0, 0, 0] = -90.0
    pg[1, 0, 1] = -95.0
    centers = np.stack(np.meshgrid(np.arange(4) * 100.0, [0.0]), axis=-1)  # x = 0, 100, 200, 300
    where = np.ones((1, 4), bool)
    assert unheard_fraction(pg, where, centers, np.array([[0.0, 0.0]]), radius_m=250.0) == pytest.approx(1 / 3)
    assert np.isnan(unheard_fraction(pg, where, centers, np.array([[5000.0, 0.0]]), radius_m=250.0))


def test_config_checks_the_density_fields():
    with pytest.raises(InputError, match="rays_per_pixel"):
        TraceConfig(rays_per_pixel=0)
    with pytest.raises(InputError, match="fill_radius_m"):
        TraceConfig(fill_radius_m=-1.0)
    with pytest.raises(InputError, match="min_samples_per_tx: 5 exceeds"):
        TraceConfig(min_samples_per_tx=5, max_samples_per_tx=4)


def test_trace_chooses_rays_fills_holes_and_records_coverage(tmp_path):
    scene = load_twin_scene(make_box_scene(tmp_path / "scene", half_size_m=150.0))
    site = {"bs_id": "a", "cell_id": 4, "x_m": -140.0, "y_m": -145.0, "height_m": 20.0, "pattern": "iso",
            "frequency_hz": 1.8e9}
    cfg = TraceConfig(rays_per_pixel=0.05, min_samples_per_tx=1000, max_depth=1)
    tracer = Tracer(scene, cfg)
    expected = samples_for_density(20.0, scene.grid.extent_m, -140.0, -145.0, 4.0, 0.05, 500.0, 1.5, 1000,
                                   cfg.max_samples_per_tx)
    out = trace(scene, [site], tmp_path / "maps.zarr", metrics=False, tracer=tracer)
    maps = open_maps(out)
    cov, pg = maps["coverage"], maps["path_gain_db"]
    assert cov.dtype == np.uint8 and cov.shape == pg.shape
    assert "coverage" not in maps.feature_names()
    outdoor = tracer.outdoor()
    assert ((cov == FILLED) & ~outdoor).sum() == 0
    assert np.isfinite(pg[cov != NO_VALUE]).all() and np.isnan(pg[cov == NO_VALUE]).all()
    (rec,) = maps.attrs["coverage"]
    assert rec["cell_id"] == 4 and rec["samples_per_tx"] == expected
    assert rec["filled_outdoor"] == int(((cov[0] == FILLED) & outdoor).sum()) > 0
    assert rec["received_outdoor"] + rec["filled_outdoor"] + rec["unheard_outdoor"] == int(outdoor.sum())
    # an explicit count overrides the density; fill_radius_m=0 keeps the holes
    raw = Tracer(scene, TraceConfig(samples_per_tx=2000, fill_radius_m=0.0, max_depth=1))
    pg_raw, cov_raw, n = raw.radio_maps_with_coverage([site])
    assert n.tolist() == [2000] and not (cov_raw == FILLED).any()
    assert np.isnan(pg_raw[0][outdoor]).mean() > np.isnan(pg[0][outdoor]).mean()
