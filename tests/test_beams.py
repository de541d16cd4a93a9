"""NR SSB beams: the codebook, beam maps traced by Sionna RT, the store, and beam ids in corpora."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from tests.scenes import make_box_scene
from twin.corpus.sampler import SampleConfig, Sampler, sample
from twin.errors import InputError
from twin.radio.beams import (
    array_power_gain,
    beam_azimuths_deg,
    beam_offsets_deg,
    max_ssb_beams,
    precoding_vectors,
)
from twin.radio.maps import evaluate_points, open_maps, write_maps
from twin.radio.metrics import ReportingConfig
from twin.radio.tracer import TraceConfig, Tracer, sionna_orientation, trace
from twin.scene.build import load_twin_scene

N_BEAMS = 8
SECTOR_DEG = 60.0  # half-width of a three-sector site's sector


def _site(**kw):
    row = {"bs_id": "a", "cell_id": 1, "x_m": 0.0, "y_m": 0.0, "height_m": 30.0, "azimuth_deg": 60.0,
           "tilt_deg": 6.0, "pattern": "tr38901", "frequency_hz": 3.5e9}
    row.update(kw)
    return row


def _offset_deg(xy_m, site):
    """Horizontal bearing of points from a site, clockwise from its boresight, in [-180, 180)."""
    bearing = np.degrees(np.arctan2(xy_m[..., 0] - site["x_m"], xy_m[..., 1] - site["y_m"]))
    return (bearing - site["azimuth_deg"] + 180.0) % 360.0 - 180.0


def test_codebook_is_unitary_symmetric_and_conserves_power():
    for n in (2, 4, 8, 16):
        w = precoding_vectors(n)
        np.testing.assert_allclose(w @ w.conj().T, np.eye(n), atol=1e-12)
        off = beam_offsets_deg(n)
        np.testing.assert_allclose(off, -off[::-1], atol=1e-12)     # symmetric about the boresight
        assert np.all(np.diff(off) > 0)                              # clockwise order
        gain = array_power_gain(n, np.linspace(-90, 90, 721))      # [B, 721]
        np.testing.assert_allclose(gain.mean(0), 1.0, atol=1e-9)   # the sweep conserves power
        np.testing.assert_allclose(np.diag(array_power_gain(n, off)), n, rtol=1e-9)  # peak = N
    np.testing.assert_allclose(beam_offsets_deg(4), [-48.59, -14.48, 14.48, 48.59], atol=0.01)
    np.testing.assert_allclose(beam_azimuths_deg(350.0, 4)[[0, 3]], [301.41, 38.59], atol=0.01)
    assert [max_ssb_beams(f) for f in (1.8e9, 3.5e9, 28e9)] == [4, 8, 64]


@pytest.mark.parametrize("beams", [1, -2, 65, True, 2.5])
def test_config_refuses_bad_beam_counts(beams):
    with pytest.raises(InputError, match="beams"):
        TraceConfig(beams=beams)


@pytest.fixture(scope="module")
def free_tracer(tmp_path_factory):
    scene = load_twin_scene(make_box_scene(tmp_path_factory.mktemp("free") / "scene", half_size_m=300.0,
                                           cell_size_m=10.0, boxes=(), ground=False))
    return Tracer(scene, TraceConfig(samples_per_tx=10**6, max_depth=0))


def test_beam_maps_tile_the_sector_in_free_space(free_tracer):
    site = _site()
    cell = free_tracer.radio_maps([site])[0]                                  # [H, W] dB
    beams, coverage = free_tracer.beam_maps_with_coverage([site], N_BEAMS)   # [1, B, H, W]
    beams = beams[0]
    c = free_tracer.grid.centers_m()
    off = _offset_deg(c, site)
    r = np.hypot(c[..., 0], c[..., 1])
    sector = (np.abs(off) < SECTOR_DEG) & (r > 40) & (r < 290)
    assert np.isfinite(beams[:, sector]).all() and (coverage[0][:, sector] == 1).all()
    best = np.argmax(beams, axis=0)
    # the best beam is the one steered nearest the pixel (in sin of the offset: the DFT grid)
    nearest = np.argmin(np.abs(np.sin(np.radians(off[..., None])) - np.sin(np.radians(beam_offsets_deg(N_BEAMS)))),
                        axis=-1)
    assert (best == nearest)[sector].mean() > 0.95
    # every beam serves a wedge of the sector, the wedges in clockwise order, spread over it
    share = np.array([(best[sector] == b).mean() for b in range(N_BEAMS)])
    assert share.min() > 0.04, share
    medians = [np.median(off[sector & (best == b)]) for b in range(N_BEAMS)]
    assert np.all(np.diff(medians) > 5.0), medians
    assert medians[0] < -45.0 and medians[-1] > 45.0
    steer = beam_offsets_deg(N_BEAMS)
    ring = (r > 150) & (r < 250) & (np.abs(off) < 90)
    for b in range(N_BEAMS):  # each beam's map peaks in its own wedge: nearer its steering than the others'
        peak = off[ring][np.argmax(beams[b][ring])]
        assert np.argmin(np.abs(np.sin(np.radians(peak)) - np.sin(np.radians(steer)))) == b, (b, peak)
        if 0 < b < N_BEAMS - 1:  # inner beams within 4°; the element pattern pulls the outer two inwards
            assert abs(peak - steer[b]) < 4.0, (b, peak)
    # each beam over the cell is the array factor of the line-of-sight departure direction,
    # taken in the antenna's tilted frame (Sionna's R = Rz(alpha) Ry(beta))
    alpha, beta, _ = sionna_orientation(site["azimuth_deg"], site["tilt_deg"])
    rz = np.array([[np.cos(alpha), -np.sin(alpha), 0], [np.sin(alpha), np.cos(alpha), 0], [0, 0, 1]])
    ry = np.array([[np.cos(beta), 0, np.sin(beta)], [0, 1, 0], [-np.sin(beta), 0, np.cos(beta)]])
    d = np.concatenate([c - [site["x_m"], site["y_m"]], np.full((*r.shape, 1), 1.5 - site["height_m"])], -1)
    local = (d / np.linalg.norm(d, axis=-1, keepdims=True)) @ (rz @ ry)     # R^T d
    predicted_db = 10 * np.log10(array_power_gain(N_BEAMS, -np.degrees(np.arcsin(local[..., 1]))))
    for b in range(N_BEAMS):
        near_peak = sector & (predicted_db[b] > 10 * np.log10(N_BEAMS) - 6)
        err = (beams[b] - cell - predicted_db[b])[near_peak]
        assert near_peak.sum() > 30 and np.median(np.abs(err)) < 0.15, (b, np.median(np.abs(err)))
    # same rays: the beams' mean is the cell's map; the best beam carries the array gain
    mean_db = 10 * np.log10(np.mean(10 ** (beams / 10), axis=0))
    ok = np.isfinite(cell)
    np.testing.assert_allclose(mean_db[ok], cell[ok], atol=0.01)
    gain = (beams.max(0) - cell)[sector]
    assert gain.min() > 3.0 and 7.0 < np.median(gain) < 10 * np.log10(N_BEAMS) + 0.01


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """Box buildings, diffuse scattering, reflections: a three-sector site with 8 beams per sector, traced."""
    root = tmp_path_factory.mktemp("beam_city")
    scene = load_twin_scene(make_box_scene(root / "scene", half_size_m=160.0, cell_size_m=5.0))
    sites = [_site(cell_id=k + 1, x_m=-20.0, y_m=-20.0, azimuth_deg=az) for k, az in enumerate((0.0, 120.0, 240.0))]
    cfg = TraceConfig(samples_per_tx=10**5, max_depth=2, beams=N_BEAMS)
    maps = trace(scene, sites, root / "maps.zarr", cfg)
    return scene, open_maps(maps), root


def test_trace_stores_beam_maps_whose_best_beam_beats_the_cell(city):
    scene, maps, _ = city
    assert maps.n_beams == N_BEAMS
    assert {"beam_path_gain_db", "beam_rsrp_dbm", "beam_coverage"} <= set(maps.arrays)
    beam_pg, beam_rsrp = maps.beams("beam_path_gain_db"), maps.beams("beam_rsrp_dbm")
    assert beam_pg.shape == (3, N_BEAMS, *scene.grid.shape)
    np.testing.assert_allclose(maps.attrs["beams"]["azimuth_deg"][1], beam_azimuths_deg(120.0, N_BEAMS), atol=1e-3)
    # the beams follow the cell's rays: the same pixels received or filled ...
    np.testing.assert_array_equal(maps["beam_coverage"], np.repeat(maps["coverage"][:, None], N_BEAMS, 1))
    # ... their mean power is the cell's map, and the best beam at least the cell's RSRP
    pg = maps["path_gain_db"]
    ok = np.isfinite(pg)
    assert ok.mean() > 0.5
    mean_db = 10 * np.log10(np.mean(10 ** (beam_pg.astype(np.float64) / 10), axis=1))
    np.testing.assert_allclose(mean_db[ok], pg[ok], atol=0.01)
    best_rsrp = maps.per_cell("beam_rsrp_dbm")
    assert (best_rsrp[ok] >= maps["rsrp_dbm"][ok] - 1e-3).all()
    offset = (beam_rsrp - beam_pg) - (maps["rsrp_dbm"] - pg)[:, None]  # the same power per resource element
    assert np.nanmax(np.abs(offset)) < 1e-3 and np.isfinite(offset).sum() >= N_BEAMS * ok.sum()
    # the array gain over the whole map (reflections, scattering and the back lobes included)
    assert np.median((best_rsrp - maps["rsrp_dbm"])[ok]) > 4.0


def test_sampler_writes_the_serving_beam_of_each_event(city):
    scene, maps, _ = city
    batch = Sampler(scene, maps, SampleConfig(features=("rsrp_dbm", "beam_rsrp_dbm"), max_cells=3,
                                              reporting=ReportingConfig.exact())).draw(300, np.random.default_rng(3))
    mask = batch["mask"]
    beam = batch["beam_id"]
    assert (beam[~mask] == -1).all()
    assert ((beam[mask] >= 0) & (beam[mask] < N_BEAMS)).mean() > 0.99
    # without measurement noise the serving beam is the argmax of the beam maps at the event
    xy, cells, got = batch["event_xy_m"][mask], batch["cell_id"][mask], beam[mask]
    at = evaluate_points(maps, xy, "beam_rsrp_dbm")                          # [cells, B, N]
    own = at[[maps.cell_index(c) for c in cells], :, np.arange(len(xy))]       # [N, B]
    heard = np.isfinite(own).any(1)
    assert heard.mean() > 0.99
    np.testing.assert_array_equal(got[heard], np.nanargmax(own[heard], axis=1))
    np.testing.assert_allclose(batch["features"][mask][heard, 1], np.nanmax(own[heard], 1), atol=1e-3)
    # several beams serve: the embedding sees more than one id
    assert len(np.unique(got)) >= 4
    # with the default reporting noise, ids stay in range and mostly the argmax
    noisy = Sampler(scene, maps, SampleConfig(max_cells=3)).draw(300, np.random.default_rng(4))
    m = noisy["mask"]
    assert ((noisy["beam_id"][m] >= -1) & (noisy["beam_id"][m] < N_BEAMS)).all()
    own = evaluate_points(maps, noisy["event_xy_m"][m], "beam_rsrp_dbm")[
        [maps.cell_index(c) for c in noisy["cell_id"][m]], :, np.arange(m.sum())]
    heard = np.isfinite(own).any(1)
    assert (noisy["beam_id"][m][heard] == np.nanargmax(own[heard], 1)).mean() > 0.5


def test_corpus_records_beams_and_maps_without_beams_give_none(city, tmp_path):
    scene, maps, root = city
    corpus = sample(scene, maps, SampleConfig(n=64, chunk_samples=32), tmp_path / "corpus.zarr")
    assert corpus.attrs["sampling"]["n_beams"] == N_BEAMS
    beam_id = np.asarray(corpus.root["samples/beam_id"][...])
    mask = np.asarray(corpus.root["samples/mask"][...])
    assert (beam_id[mask] >= 0).mean() > 0.99 and (beam_id[~mask] == -1).all()
    # the same maps without their beam arrays: beam ids are -1, everything else unchanged
    arrays = {k: np.asarray(maps.arrays[k]) for k in maps.arrays if not k.startswith("beam_")}
    attrs = {k: v for k, v in maps.attrs.items() if k == "coverage"}
    plain = open_maps(write_maps(tmp_path / "plain.zarr", maps.grid, scene, maps.sites, arrays, extra_attrs=attrs))
    cfg = SampleConfig(max_cells=3)
    # one round of draws (draw() redraws positions that hear no cell, after the beams' draws)
    a = Sampler(scene, plain, cfg)._draw_once(100, np.random.default_rng(5))
    b = Sampler(scene, maps, cfg)._draw_once(100, np.random.default_rng(5))
    assert (a["beam_id"] == -1).all()
    for key in ("cell_id", "features", "mask", "position_xy_m", "split_random"):
        np.testing.assert_array_equal(a[key], b[key])


def test_beam_features_need_beam_maps(city, tmp_path):
    scene, maps, _ = city
    arrays = {k: np.asarray(maps.arrays[k]) for k in maps.arrays if not k.startswith("beam_")}
    plain = open_maps(write_maps(tmp_path / "plain.zarr", maps.grid, scene, maps.sites, arrays))
    with pytest.raises(InputError, match="beam_rsrp_dbm"):
        Sampler(scene, plain, SampleConfig(features=("rsrp_dbm", "beam_rsrp_dbm")))
    with pytest.raises(InputError, match="--beams"):
        plain.beams("beam_rsrp_dbm")
    with pytest.raises(InputError, match="n_beams"):
        write_maps(tmp_path / "bad.zarr", maps.grid, scene, maps.sites,
                   {**arrays, "beam_rsrp_dbm": np.asarray(maps.arrays["beam_rsrp_dbm"])})


def test_trace_cli_documents_beams():
    from cli.twin import main

    out = CliRunner().invoke(main, ["trace", "--help"]).output
    assert "--beams" in out and "--beams 8" in out


def test_show_map_draws_one_beam_or_the_best(city, tmp_path):
    from twin.radio.maps import show_map

    _, maps, root = city
    best = show_map(maps.url, tmp_path / "best", "beam_rsrp_dbm", cells=[2], scene=root / "scene")
    one = show_map(maps.url, tmp_path / "one", "beam_rsrp_dbm", cells=[2], scene=root / "scene", beam=3)
    assert [p.name for p in best] == ["beam_rsrp_dbm-cell2.png", "beam_rsrp_dbm-max.png"]
    assert [p.name for p in one] == ["beam_rsrp_dbm-beam3-cell2.png", "beam_rsrp_dbm-beam3-max.png"]
    assert all(p.stat().st_size > 1000 for p in best + one)
    with pytest.raises(InputError, match="no beam 8"):
        show_map(maps.url, tmp_path / "bad", "beam_rsrp_dbm", beam=8)
    with pytest.raises(InputError, match="per-beam metric"):
        show_map(maps.url, tmp_path / "bad2", "rsrp_dbm", beam=0)


def test_learning_batches_carry_the_beams(city, tmp_path):
    """The model's beam embedding gets ``beam_id + 1`` for every real event whose beam is known."""
    from learn.data import CorpusDataset, DataConfig

    scene, maps, _ = city
    corpus = sample(scene, maps, SampleConfig(n=16, chunk_samples=16, max_cells=3), tmp_path / "corpus.zarr")
    item = CorpusDataset([corpus.url], config=DataConfig(crop_size_m=300.0, crop_px=16, max_cells=2))[0]
    beam_id = np.asarray(corpus.root["samples/beam_id"][0])
    mask = item["mask"].numpy()
    np.testing.assert_array_equal(item["beam_index"].numpy(), np.where(mask & (beam_id >= 0), beam_id + 1, 0))
    assert (item["beam_index"].numpy()[mask] >= 1).all()
