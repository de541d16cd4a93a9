"""Tracing: Friis in free space, grid and antenna orientation, materials, the store, points."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from tests.scenes import make_box_scene
from twin.errors import InputError, OutputExistsError, StoreNotFoundError
from twin.geo import Grid
from twin.radio.maps import evaluate_points, open_maps
from twin.radio.tracer import TraceConfig, Tracer, sionna_orientation, trace
from twin.scene.build import load_twin_scene

C_M_S = 299_792_458.0


def _site(**kw):
    row = {"bs_id": "a", "cell_id": 1, "x_m": 0.0, "y_m": 0.0, "height_m": 40.0, "azimuth_deg": 0.0,
           "tilt_deg": 0.0, "pattern": "iso", "frequency_hz": 3.5e9}
    row.update(kw)
    return row


@pytest.fixture(scope="module")
def empty_scene(tmp_path_factory):
    """Nothing but the measurement plane: free space."""
    path = make_box_scene(tmp_path_factory.mktemp("empty") / "scene", half_size_m=550.0, cell_size_m=10.0,
                          boxes=(), ground=False)
    return load_twin_scene(path)


@pytest.fixture(scope="module")
def free_tracer(empty_scene):
    return Tracer(empty_scene, TraceConfig(samples_per_tx=10**6, max_depth=0))


@pytest.fixture(scope="module")
def box_scene(tmp_path_factory):
    return load_twin_scene(make_box_scene(tmp_path_factory.mktemp("boxes") / "scene"))


@pytest.fixture(scope="module")
def box_tracer(box_scene):
    return Tracer(box_scene, TraceConfig(samples_per_tx=2 * 10**5, max_depth=2))


def _friis_db(d_m, f_hz):
    return 20 * np.log10(C_M_S / f_hz / (4 * np.pi * d_m))


def test_free_space_matches_friis_within_1db_from_50_to_500m(free_tracer):
    f = 3.5e9
    pg = free_tracer.radio_maps([_site(frequency_hz=f)])[0]  # [H, W]
    c = free_tracer.grid.centers_m()
    r = np.hypot(c[..., 0], c[..., 1])
    err = pg - _friis_db(np.sqrt(r**2 + (40 - 1.5) ** 2), f)
    for lo in range(50, 500, 50):
        band = (r >= lo) & (r < lo + 50)
        assert np.isfinite(pg[band]).mean() > 0.95, lo
        assert abs(np.nanmedian(err[band])) < 1.0, (lo, np.nanmedian(err[band]))
    near = (r >= 50) & (r < 200)
    assert np.nanpercentile(np.abs(err[near]), 95) < 1.0


def test_metal_ground_adds_the_image_ray(tmp_path):
    """Over a perfect mirror the map is the incoherent two-ray sum: Friis(direct) + Friis(image)."""
    scene = load_twin_scene(make_box_scene(tmp_path / "g", half_size_m=300.0, cell_size_m=10.0, boxes=(),
                                           ground_material="metal"))
    f = 3.5e9
    tracer = Tracer(scene, TraceConfig(samples_per_tx=10**6, max_depth=1, diffuse_reflection=False))
    pg = tracer.radio_maps([_site(frequency_hz=f)])[0]
    c = tracer.grid.centers_m()
    r = np.hypot(c[..., 0], c[..., 1])
    lam = C_M_S / f
    direct, image = np.sqrt(r**2 + 38.5**2), np.sqrt(r**2 + 41.5**2)
    two_ray = 10 * np.log10((lam / (4 * np.pi * direct)) ** 2 + (lam / (4 * np.pi * image)) ** 2)
    for lo in range(50, 250, 50):
        band = (r >= lo) & (r < lo + 50)
        assert abs(np.nanmedian(pg[band] - two_ray[band])) < 0.5, lo
    # and the image ray is really there: about 3 dB above free space far out
    far = (r >= 200) & (r < 250)
    assert np.nanmedian(pg[far] - _friis_db(direct[far], f)) > 2.0


def test_sionna_cell_centers_match_the_grid(box_tracer):
    grid = Grid(-100.0, 20.0, 8.0, 7, 5)  # off-centre, not square
    box_tracer._configure((3.5e9, 20e6, "iso"))
    box_tracer._set_transmitters(box_tracer.sites([_site()]))
    rm = box_tracer._radio_map(grid)
    centers = rm.cell_centers.numpy()  # [H, W, 3]
    assert centers.shape == (5, 7, 3)
    np.testing.assert_allclose(centers[..., :2], grid.centers_m(), atol=1e-3)
    np.testing.assert_allclose(centers[..., 2], 1.5, atol=1e-5)


def test_map_peak_lies_under_the_transmitter(free_tracer):
    """Row i north, column j east, end to end: the strongest cell is the one under the antenna."""
    tx = (-230.0, 170.0)  # off-centre in both axes
    pg = free_tracer.radio_maps([_site(x_m=tx[0], y_m=tx[1], height_m=15.0)])[0]
    i, j = np.unravel_index(np.nanargmax(pg), pg.shape)
    ti, tj, _ = free_tracer.grid.index_of(np.array(tx))
    assert (i, j) == (int(ti), int(tj))


def test_sionna_orientation_convention():
    a, b, g = sionna_orientation(90.0, 10.0)
    assert a == pytest.approx(0.0) and b == pytest.approx(np.radians(10)) and g == 0.0
    a, _, _ = sionna_orientation(0.0, 0.0)
    assert a == pytest.approx(np.pi / 2)  # north is +y


@pytest.mark.parametrize("azimuth_deg, strong, weak", [(90.0, (200, 0), (-200, 0)), (0.0, (0, 200), (0, -200)),
                                                       (225.0, (-150, -150), (150, 150))])
def test_sector_points_where_its_azimuth_says(free_tracer, azimuth_deg, strong, weak):
    pg = free_tracer.radio_maps([_site(pattern="tr38901", azimuth_deg=azimuth_deg)])[0]
    g = free_tracer.grid
    s, w = g.sample(pg, np.array([strong, weak], dtype=float))
    assert s - w > 20.0  # TR 38.901 front-to-back ratio is 30 dB
    assert s > _friis_db(np.hypot(200, 38.5), 3.5e9) + 2.0  # boresight gain (8 dBi less elevation loss)


def test_downtilt_weakens_the_horizon_and_strengthens_near_ground(free_tracer):
    flat, tilted = free_tracer.radio_maps([_site(pattern="tr38901", azimuth_deg=90.0),
                                           _site(cell_id=2, pattern="tr38901", azimuth_deg=90.0,
                                                 tilt_deg=45.0)])
    g = free_tracer.grid
    # TR 38.901 element: A_v = -12 ((theta - 90) / 65)^2 dB, so the 45-degree tilt costs ~4.4 dB
    # 5 degrees below the horizon and gains ~10 dB at 62 degrees below
    far = np.array([[450.0, 0.0]])
    near = np.array([[20.0, 0.0]])
    assert g.sample(tilted, far)[0] < g.sample(flat, far)[0] - 3.0
    assert g.sample(tilted, near)[0] > g.sample(flat, near)[0] + 6.0


def test_itu_frequency_out_of_range_names_the_material(box_scene):
    tracer = Tracer(box_scene, TraceConfig(samples_per_tx=1000, max_depth=1))
    with pytest.raises(InputError, match=r"'concrete'.*1-100, 110-330 GHz only, not for the 0\.8 GHz of cells 7") as err:
        tracer.radio_maps([_site(cell_id=7, frequency_hz=800e6)])
    assert "extrapolate" in str(err.value)


def test_extrapolated_materials_trace_at_800mhz(box_scene):
    tracer = Tracer(box_scene, TraceConfig(samples_per_tx=20000, max_depth=1,
                                           materials_out_of_range="extrapolate"))
    pg = tracer.radio_maps([_site(frequency_hz=800e6)])[0]
    assert np.isfinite(pg).any()
    assert any("concrete" in n and "extrapolating" in n for n in tracer.notes)
    concrete = tracer.sionna_scene.radio_materials["concrete"]
    # ITU concrete: eps = 5.24 f^0, sigma = 0.0462 f^0.7822 (f in GHz), extended to 0.8 GHz
    assert float(concrete.relative_permittivity[0]) == pytest.approx(5.24, rel=1e-5)
    assert float(concrete.conductivity[0]) == pytest.approx(0.0462 * 0.8**0.7822, rel=1e-4)


def test_trace_writes_the_store(box_scene, box_tracer, tmp_path):
    sites = [_site(cell_id=5, frequency_hz=1.8e9, x_m=-200.0), _site(bs_id="b", cell_id=3, x_m=150.0,
                                                                       frequency_hz=2.1e9, pattern="tr38901")]
    out = trace(box_scene, sites, tmp_path / "maps.zarr", metrics=False, tracer=box_tracer)
    maps = open_maps(out)
    assert maps.cell_ids == [5, 3]
    assert maps.grid == box_scene.grid
    pg = maps["path_gain_db"]
    assert pg.shape == (2, *box_scene.grid.shape) and pg.dtype == np.float32
    root = zarr.open_group(str(out), mode="r")
    assert root["path_gain_db"].metadata.dimension_names == ("cell", "y", "x")
    assert root.attrs["kind"] == "twin-maps" and root.attrs["schema_version"] == 1
    assert root.attrs["trace_config"]["samples_per_tx"] == 2 * 10**5
    assert [s["cell_id"] for s in root.attrs["sites"]] == [5, 3]
    # each map is the cell's own: the strongest cell lies next to its site
    for k, x in enumerate((-200.0, 150.0)):
        i, j = np.unravel_index(np.nanargmax(pg[k]), pg[k].shape)
        assert abs(box_scene.grid.x_centers_m()[j] - x) < 60
    with pytest.raises(OutputExistsError):
        trace(box_scene, sites, out, metrics=False, tracer=box_tracer)


def test_failed_trace_leaves_nothing(box_scene, box_tracer, tmp_path):
    out = tmp_path / "maps.zarr"
    with pytest.raises(InputError, match="0.7 GHz"):
        trace(box_scene, [_site(frequency_hz=700e6)], out, metrics=False, tracer=box_tracer)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_open_maps_refuses_other_stores(tmp_path):
    g = zarr.open_group(str(tmp_path / "x.zarr"), mode="w", zarr_format=3)
    g.attrs["kind"] = "twin-corpus"
    with pytest.raises(InputError, match="not a radio-map store"):
        open_maps(tmp_path / "x.zarr")
    with pytest.raises(StoreNotFoundError, match="no radio-map store"):
        open_maps(tmp_path / "missing.zarr")


def test_window_map_covers_the_points_and_agrees_with_friis(free_tracer):
    xy = np.array([[100.0, 40.0], [160.0, -30.0], [130.0, 10.0]])
    grid, pg = free_tracer.cell_map_covering(_site(), xy)
    assert grid.shape == pg.shape and grid.width * grid.height < 20 * 20
    assert grid.contains(xy).all()
    d = np.sqrt((xy**2).sum(axis=1) + 38.5**2)
    np.testing.assert_allclose(grid.sample(pg, xy), _friis_db(d, 3.5e9), atol=1.0)


def test_points_by_path_solver_match_friis_and_the_maps(free_tracer, tmp_path):
    xy = np.array([[60.0, 0.0], [0.0, -150.0], [-210.0, 240.0], [300.0, 300.0]])
    pg = free_tracer.path_gain_at_points([_site()], xy)[0]
    d = np.sqrt((xy**2).sum(axis=1) + 38.5**2)
    np.testing.assert_allclose(pg, _friis_db(d, 3.5e9), atol=0.05)  # exact paths: no cell averaging


def test_evaluate_points_samples_the_store(box_scene, box_tracer, tmp_path):
    out = trace(box_scene, [_site()], tmp_path / "m.zarr", metrics=False, tracer=box_tracer)
    maps = open_maps(out)
    centers = box_scene.grid.centers_m()
    xy = centers[[10, 60, 100], [20, 70, 110]]
    np.testing.assert_array_equal(evaluate_points(maps, xy)[0],
                                  maps["path_gain_db"][0][[10, 60, 100], [20, 70, 110]])
    with pytest.raises(InputError, match="outside"):
        evaluate_points(maps, np.array([[1e4, 0.0]]))


def _outdoor_los(scene, tx_xyz, rx_height_m=1.5, steps=300):
    """Outdoor map pixels ``(H, W)`` with and without a line of sight to ``tx_xyz`` over the box layers."""
    layers = scene.layers
    centers = scene.grid.centers_m().reshape(-1, 2)
    t = np.linspace(0.0, 1.0, steps)[:, None, None]
    start = np.asarray(tx_xyz[:2])[None, None]
    xy = start + t * (centers[None] - start)  # [steps, N, 2]
    z = np.broadcast_to(tx_xyz[2] + t[..., 0] * (rx_height_m - tx_xyz[2]), xy.shape[:2])
    i, j, inside = scene.grid.index_of(xy.reshape(-1, 2))
    blocked = (inside & (layers["building_mask"][i, j] == 1)
               & (layers["building_height_m"][i, j] > z.reshape(-1))).reshape(steps, -1).any(axis=0)
    outdoor = layers["building_mask"].reshape(-1) == 0
    return (outdoor & ~blocked).reshape(scene.grid.shape), (outdoor & blocked).reshape(scene.grid.shape)


def test_every_itu_material_has_scattering_and_the_builder_writes_it():
    from twin.scene.build import scene_xml
    from twin.scene.materials import ITU_TYPES, SCATTERING

    assert set(SCATTERING) == set(ITU_TYPES)
    for name, p in SCATTERING.items():
        assert 0.0 <= p.coefficient <= 1.0 and 0.0 <= p.xpd_coefficient <= 1.0, name
        assert p.pattern in ("lambertian", "directive") and p.reason, name
    xml = scene_xml({"buildings-concrete": "concrete", "ground": "medium_dry_ground"}, {"concrete": 0.3})
    assert '<float name="scattering_coefficient" value="0.4"/>' in xml
    assert '<float name="scattering_coefficient" value="0.2"/>' in xml
    assert xml.count('name="xpd_coefficient" value="0.17"') == 2


def test_tracer_gives_old_scenes_the_scattering_table(box_scene):
    """The fixture's scene.xml has no scattering values: the tracer sets them from the table on load."""
    from sionna.rt import DirectivePattern, LambertianPattern

    assert "scattering_coefficient" not in box_scene.xml_path.read_text()
    mats = Tracer(box_scene, TraceConfig(samples_per_tx=1000)).sionna_scene.radio_materials
    assert float(mats["concrete"].scattering_coefficient[0]) == pytest.approx(0.4)
    assert float(mats["concrete"].xpd_coefficient[0]) == pytest.approx(0.17)
    assert isinstance(mats["concrete"].scattering_pattern, DirectivePattern)
    assert mats["concrete"].scattering_pattern.alpha_r == 4
    assert float(mats["medium_dry_ground"].scattering_coefficient[0]) == pytest.approx(0.2)
    assert isinstance(mats["medium_dry_ground"].scattering_pattern, LambertianPattern)
    kept = Tracer(box_scene, TraceConfig(samples_per_tx=1000, scattering="scene")).sionna_scene.radio_materials
    assert float(kept["concrete"].scattering_coefficient[0]) == 0.0


def test_diffuse_scattering_brings_energy_into_shadowed_streets(tmp_path):
    """Same rays, diffuse reflection on vs off, in a street grid: the shadowed (NLOS) street pixels get
    more power and twice the coverage; in line of sight the direct ray dominates and little changes."""
    from tests.scenes import city_boxes

    scene = load_twin_scene(make_box_scene(tmp_path / "city", half_size_m=250.0, boxes=city_boxes(250.0)))
    tx = (50.0, 50.0, 15.0)  # a crossing of 20 m streets, below most roofs (10-35 m)
    site = _site(x_m=tx[0], y_m=tx[1], height_m=tx[2], frequency_hz=1.8e9)
    cfg = {"samples_per_tx": 4 * 10**5, "max_depth": 2, "seed": 3, "fill_radius_m": 0.0}  # the rays alone
    on = Tracer(scene, TraceConfig(**cfg)).radio_maps([site])[0]
    off = Tracer(scene, TraceConfig(**cfg, diffuse_reflection=False)).radio_maps([site])[0]
    los, nlos = _outdoor_los(scene, tx)
    assert nlos.sum() > 3000 and los.sum() > 900

    def power(pg, where):  # mean linear path gain, no ray = 0
        return float(np.mean(np.where(np.isfinite(pg[where]), 10 ** (pg[where] / 10), 0.0)))

    assert power(on, nlos) > power(off, nlos)  # measured +0.2 to +0.3 dB over all NLOS pixels
    heard_on, heard_off = np.isfinite(on[nlos]).mean(), np.isfinite(off[nlos]).mean()
    assert heard_on > 1.5 * heard_off, (heard_on, heard_off)  # measured 0.14 against 0.077
    both = nlos & np.isfinite(on) & np.isfinite(off)
    assert np.median(on[both] - off[both]) > 0.5  # measured +1.1 dB
    both = los & np.isfinite(on) & np.isfinite(off)
    assert abs(np.median(on[both] - off[both])) < 0.5


def test_evaluate_points_skips_empty_cells_unless_told(box_scene, box_tracer, tmp_path):
    out = trace(box_scene, [_site()], tmp_path / "m.zarr", metrics=False, tracer=box_tracer)
    maps = open_maps(out)
    pg = maps["path_gain_db"][0]
    i, j = np.argwhere(np.isnan(pg[1:-1, 1:-1]) & np.isfinite(pg[1:-1, 2:]))[0] + 1  # a NaN cell, finite east
    x, y = box_scene.grid.centers_m()[i, j]
    xy = np.array([[x + 1.0, y]])  # a quarter cell east of the NaN centre: weight 3/4 NaN, 1/4 finite east
    assert evaluate_points(maps, xy)[0, 0] == pytest.approx(pg[i, j + 1], abs=1e-4)  # the finite corner alone
    assert np.isnan(evaluate_points(maps, xy, skip_nan=False)[0, 0])


_REPRO_SCRIPT = """
import sys
import drjit as dr
import numpy as np
from tests.scenes import city_boxes, city_streets, make_box_scene
from twin.radio.tracer import TraceConfig, Tracer

scene_dir, out = sys.argv[1], sys.argv[2]
cfg = TraceConfig(samples_per_tx=10**5, max_depth=4, diffraction=True, edge_diffraction=True,
                  diffuse_reflection=True, seed=7, deterministic=True)  # the reality's physics (study/reality.py)
tracer = Tracer(scene_dir, cfg)
dr.set_thread_count(4)  # several threads even on a small machine: the races need them
sites = [dict(bs_id="a", cell_id=1, x_m=-90.0, y_m=-90.0, height_m=30.0, azimuth_deg=45.0, tilt_deg=4.0),
         dict(bs_id="b", cell_id=2, x_m=90.0, y_m=90.0, height_m=30.0, azimuth_deg=225.0, tilt_deg=4.0)]
maps = [tracer.radio_maps(sites) for _ in range(2)]
xy = np.stack(np.meshgrid(np.linspace(-150, 150, 8), np.linspace(-150, 150, 8)), -1).reshape(-1, 2)
points = [tracer.path_gain_at_points(sites, xy) for _ in range(2)]
assert dr.thread_count() == 4, dr.thread_count()  # restored after the solver calls
np.savez(out, maps=np.stack(maps), points=np.stack(points))
"""


def test_deterministic_trace_is_byte_identical_across_runs_and_processes(tmp_path):
    """With the reality's settings (diffraction, edge diffraction, diffuse, depth 4) on 4 Dr.Jit threads,
    ``deterministic`` gives the very same maps and point gains twice in a process and in another process
    (another hash seed). Without it the same maps differed by 1.5e-5 to 3e-5 dB here (float accumulation
    order), point gains by 0.2 dB, and the study's Helsinki reality by up to 157 dB with ~1e5 NaN cells
    changed (the wedge race)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.scenes import city_boxes, city_streets

    scene = make_box_scene(tmp_path / "city", half_size_m=200.0, cell_size_m=5.0, boxes=city_boxes(200.0),
                           roads=city_streets(200.0))
    repo = Path(__file__).resolve().parents[1]
    runs = []
    for k, hash_seed in enumerate(("1", "2")):
        out = tmp_path / f"trace{k}.npz"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed,
               "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
        subprocess.run([sys.executable, "-c", _REPRO_SCRIPT, str(scene), str(out)], cwd=repo, env=env,
                       check=True, capture_output=True, timeout=300)
        with np.load(out) as arrays:
            runs.append({name: arrays[name] for name in ("maps", "points")})
    maps, points = runs[0]["maps"], runs[0]["points"]
    assert maps.shape == (2, 2, 80, 80) and np.isfinite(maps).mean() > 0.5
    assert points.shape == (2, 2, 64) and np.isfinite(points).mean() > 0.5
    for name in ("maps", "points"):
        assert runs[0][name][0].tobytes() == runs[0][name][1].tobytes(), name  # twice in one process
        assert runs[0][name].tobytes() == runs[1][name].tobytes(), name  # and in another
