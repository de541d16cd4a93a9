"""Measurement sampling (twin.corpus.sampler, twin.corpus.routes): positions, routes, events, splits, corpus, CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import shapely
import xarray as xr
import zarr
from click.testing import CliRunner

from tests.data.tiny_city.make import default_sites, make_maps, make_scene
from twin.corpus.routes import assign_group_splits
from twin.corpus.sampler import RADIO_CHANNELS, SampleConfig, Sampler, sample
from twin.corpus.store import open_corpus
from twin.errors import InputError, OutputExistsError
from twin.geo import Grid
from twin.radio.maps import open_maps
from twin.radio.metrics import ReportingConfig
from twin.scene.build import load_twin_scene

EXACT = ReportingConfig.exact()


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_city")
    scene = load_twin_scene(make_scene(root / "scene"))
    maps = make_maps(root / "scene", root / "maps.zarr")
    return scene, str(maps), root


def draw(city, n=1500, seed=0, **kwargs):
    scene, maps, _ = city
    return Sampler(scene, maps, SampleConfig(**kwargs)).draw(n, np.random.default_rng(seed))


def roads_union(scene, streets=None, names=None):
    """The roads as one geometry; only the ways of street indices ``streets`` (each way a street)."""
    roads = scene.roads()
    if streets is not None:
        roads = roads[[names.index(f"way {k}") in streets for k in range(len(roads))]]
    return shapely.union_all(roads.geometry.values)


def test_random_mode_positions_are_outdoor_and_stationary(city):
    scene = city[0]
    b = draw(city, mode="random", reporting=EXACT)
    assert scene.is_outdoor(b["position_xy_m"]).all()
    m = b["mask"]
    np.testing.assert_array_equal(b["event_xy_m"][m], np.repeat(b["position_xy_m"], m.sum(1), axis=0))
    # Five reports a second apart, four cells each, all cells of the tiny city heard.
    np.testing.assert_array_equal(b["time_s"][0], np.repeat(np.arange(5.0), 4))
    # Uniform over the outdoor area: the mean lies near the outdoor cells' centroid.
    centers = scene.grid.centers_m()[scene.layers["building_mask"] == 0]
    assert np.linalg.norm(b["position_xy_m"].mean(0) - centers.mean(0)) < 5.0


def test_drive_routes_follow_roads_at_the_drawn_speed(city):
    scene = city[0]
    b = draw(city, n=800, mode="drive", reporting=EXACT, speed_mps=(6.0, 12.0), report_interval_s=2.0,
             max_cells=2, max_events=20)
    m = b["mask"]
    xy = b["event_xy_m"][m]
    dist = shapely.distance(roads_union(scene), shapely.points(xy))
    assert dist.max() < 1.0
    # Successive reports (one event per report time) are at most v_max * dt apart, and on
    # straight stretches exactly v * dt with v in the range.
    per_report = b["event_xy_m"][:, ::2]                      # [n, 10, 2], 2 cells per report
    times = b["time_s"][:, ::2]
    steps = np.linalg.norm(np.diff(per_report, axis=1), axis=-1)
    dts = np.diff(times, axis=1)
    ok = np.isfinite(steps) & (dts == 2.0)
    assert steps[ok].max() <= 24.0 + 1e-3
    assert np.mean(steps[ok] >= 12.0 - 1e-3) > 0.5
    assert np.median(steps[ok]) > 12.0 and np.percentile(steps[ok], 90) < 24.0 + 1e-3
    np.testing.assert_array_equal(b["position_xy_m"], b["event_xy_m"][np.arange(len(m)), m.sum(1) - 1])


def test_fixed_speed_gives_equal_steps(city):
    b = draw(city, n=300, mode="drive", reporting=EXACT, speed_mps=(10.0, 10.0), max_cells=1, max_events=6)
    steps = np.linalg.norm(np.diff(b["event_xy_m"], axis=1), axis=-1)
    # Chords shorten only at corners and dead-end U-turns.
    assert np.mean(np.abs(steps - 10.0) < 1e-3) > 0.7
    assert np.all(steps < 10.0 + 1e-3)


@pytest.mark.parametrize("mode", ["random", "drive"])
def test_features_equal_bilinear_maps_without_noise(city, mode):
    scene, maps_url, _ = city
    b = draw(city, n=400, mode=mode, reporting=EXACT, features=("rsrp_dbm", "sinr_db", "rssi_dbm", "snr_db"))
    maps = zarr.open_group(maps_url, mode="r")
    ids = list(maps.attrs["cell_ids"])
    m = b["mask"]
    n_checked = 0
    for f, name in enumerate(("rsrp_dbm", "sinr_db", "cell_rssi_dbm", "snr_db")):
        full = maps[name][:]
        for cell, c in enumerate(ids):
            sel = m & (b["cell_id"] == c)
            expect = scene.grid.sample(full[cell], b["event_xy_m"][sel])
            finite = np.isfinite(expect)  # points beside a wall: the NaN-aware lookup differs
            np.testing.assert_allclose(b["features"][sel][finite, f], expect[finite], atol=2e-3)
            n_checked += finite.sum()
    assert n_checked > 0.8 * 4 * m.sum()


def test_reported_cells_are_strongest_first_and_above_the_floor(city):
    floor = -80.0
    b = draw(city, n=600, mode="random", reporting=ReportingConfig(rsrp_floor_dbm=floor), max_cells=3,
             n_reports=6, max_events=20)
    m = b["mask"]
    rsrp = b["features"][..., 0]
    assert (rsrp[m] >= floor).all() and np.isnan(rsrp[~m]).all()
    for k in range(6):
        in_report = m & (b["time_s"] == float(k)) if k else m & (b["time_s"] == 0.0)
        counts = in_report.sum(1)
        assert counts.max() <= 3
        vals = np.where(in_report, rsrp, np.nan)
        for row in vals[counts >= 2][:200]:
            seq = row[np.isfinite(row)]
            assert np.all(np.diff(seq) <= 0)
    # Without noise the listed cells are exactly the top-3 cells above the floor.
    exact = dataclasses.replace(EXACT, rsrp_floor_dbm=floor)
    b = draw(city, n=300, mode="random", reporting=exact, max_cells=3)
    scene, maps_url, _ = city
    maps = zarr.open_group(maps_url, mode="r")
    ids = np.asarray(maps.attrs["cell_ids"])
    rsrp_all = scene.grid.sample(maps["rsrp_dbm"][:], b["position_xy_m"])      # [n_cells, n]
    for s in range(300):
        if not np.isfinite(rsrp_all[:, s]).all():
            continue
        heard = [c for c in ids[np.argsort(-rsrp_all[:, s])] if rsrp_all[list(ids).index(c), s] >= floor][:3]
        listed = b["cell_id"][s][b["mask"][s] & (b["time_s"][s] == 0)]
        assert list(listed) == heard


def test_mask_semantics_and_padding(city):
    b = draw(city, n=300, mode="drive", max_cells=3, n_reports=5, max_events=20, event_drop_prob=0.3,
             min_events=2)
    m = b["mask"]
    assert m.shape == (300, 20)
    assert not m[:, 15:].any()                       # 5 reports of 3 cells fill 15 slots at most
    assert (m.sum(1) >= 2).all()
    packed = np.argsort(~m, axis=1, kind="stable")
    np.testing.assert_array_equal(packed, np.tile(np.arange(20), (300, 1)))  # real events first
    assert (b["cell_id"][~m] == -1).all() and (b["beam_id"] == -1).all()
    assert np.isnan(b["features"][~m]).all() and np.isnan(b["event_xy_m"][~m]).all()
    assert (b["time_s"][~m] == 0).all()
    assert (np.diff(b["time_s"], axis=1)[m[:, 1:]] >= 0).all()    # real events in time order
    assert 0.6 < m.sum() / (300 * 15) < 0.8            # about 30 % of events lost


def test_group_splits_cover_every_part_by_length():
    rng = np.random.default_rng(0)
    lengths = rng.uniform(50, 500, 200)
    parts = assign_group_splits(lengths, (0.7, 0.15, 0.15), np.random.default_rng(3))
    share = np.bincount(parts, weights=lengths, minlength=3) / lengths.sum()
    np.testing.assert_allclose(share, [0.7, 0.15, 0.15], atol=0.01)
    np.testing.assert_array_equal(parts, assign_group_splits(lengths, (0.7, 0.15, 0.15),
                                                             np.random.default_rng(3)))
    assert sorted(set(assign_group_splits([1.0, 1.0, 1.0], (0.7, 0.15, 0.15), rng))) == [0, 1, 2]


@pytest.mark.parametrize("mode", ["random", "drive"])
def test_spatial_split_by_street_is_disjoint_and_reproducible(city, mode):
    scene, maps_url, _ = city
    cfg = SampleConfig(mode=mode, street_key=None, seed=5)        # each way its own street: 18 streets
    sampler = Sampler(scene, maps_url, cfg)
    names = sampler.roads.group_names
    b = sampler.draw(1500, np.random.default_rng(0))
    split = b["split_spatial"]
    street_part = sampler.group_split[b["group_id"]]
    assert set(np.unique(split)) == {0, 1, 2}
    train_streets = set(b["group_id"][split == 0])
    # Unknown streets: val and test streets hold no training sample.
    for part in (1, 2):
        held_out = set(b["group_id"][(split == part) & (street_part == part)])
        assert held_out and not held_out & train_streets
    # Known streets: 10 % (the default) of the training streets' samples are test samples,
    # on streets that training has seen; every other sample has its street's part.
    known = (split == 2) & (street_part == 0)
    assert known.sum() == round(0.1 * (street_part == 0).sum())
    assert set(b["group_id"][known]) <= train_streets
    np.testing.assert_array_equal(split[~known], street_part[~known])
    # Only the labels move: without a known part the same sequences are drawn.
    plain = Sampler(scene, maps_url, dataclasses.replace(cfg, known_test_frac=0.0)).draw(1500, np.random.default_rng(0))
    np.testing.assert_array_equal(plain["split_spatial"], street_part)
    for k in ("features", "position_xy_m", "cell_id", "group_id", "split_random"):
        np.testing.assert_array_equal(plain[k], b[k])
    if mode == "drive":
        # Every event of a route lies on a street of the route's own part.
        for part in (0, 1, 2):
            union = roads_union(scene, set(np.flatnonzero(sampler.group_split == part)), names)
            xy = b["event_xy_m"][(street_part == part)[:, None] & b["mask"]]
            assert shapely.distance(union, shapely.points(xy)).max() < 1.0
    else:
        # Random-mode points belong to their nearest street.
        roads = scene.roads()
        d = np.stack([shapely.distance(g, shapely.points(b["position_xy_m"])) for g in roads.geometry])
        assert np.mean(d.argmin(0) == b["group_id"]) > 0.97
    again = Sampler(scene, maps_url, cfg).draw(1500, np.random.default_rng(0))
    for k in b:
        np.testing.assert_array_equal(b[k], again[k])
    other = Sampler(scene, maps_url, dataclasses.replace(cfg, seed=6))
    assert not np.array_equal(other.group_split, sampler.group_split)
    fracs = np.bincount(b["split_random"], minlength=3) / 1500
    np.testing.assert_allclose(fracs, [0.7, 0.15, 0.15], atol=0.05)


def test_corpus_round_trip(city, tmp_path):
    scene, maps_url, _ = city
    cfg = SampleConfig(n=600, mode="drive", chunk_samples=256, seed=2)
    corpus = sample(scene, maps_url, cfg, tmp_path / "c.zarr")
    assert len(corpus) == 600 and corpus.feature_names == list(cfg.features)
    assert corpus.feature_units == ["dBm", "dB", "dBm", "dB"]
    assert corpus.attrs["config"]["mode"] == "drive" and corpus.attrs["config"]["reporting"]["rsrp_floor_dbm"] == -120
    # The same seed gives the same corpus, chunk by chunk.
    again = sample(scene.path, maps_url, cfg, tmp_path / "d.zarr")
    got, exp = corpus.batch(slice(0, 600)), again.batch(slice(0, 600))
    for k in got:
        np.testing.assert_array_equal(got[k], exp[k])
    chunk1 = Sampler(scene, maps_url, cfg).draw(256, np.random.default_rng([2, 1]))
    np.testing.assert_array_equal(corpus.batch(slice(256, 512))["features"], chunk1["features"])
    counts = corpus.attrs["counts"]["splits"]["spatial"]
    assert sum(counts.values()) == 600
    sampling = corpus.attrs["sampling"]
    assert len(sampling["street_names"]) == len(sampling["street_split"]) == 6
    # Scene maps: fixed radio channels, semantic layers, per-cell feature maps, sites.
    sm = corpus.scene(0)
    assert sm.radio_channels == [c for c, _, _ in RADIO_CHANNELS] and np.isfinite(sm.radio_maps).all()
    maps = zarr.open_group(maps_url, mode="r")
    outdoor = scene.layers["building_mask"] == 0
    np.testing.assert_allclose(sm.radio_maps[1][outdoor], maps["rsrp_dbm"][:][:, outdoor].max(0))
    assert (sm.radio_maps[6][outdoor] == 4).all() and (sm.radio_maps[6][~outdoor] == 0).all()
    assert (sm.radio_maps[1][~outdoor] == -140.0).all()
    np.testing.assert_array_equal(sm.semantic_maps[0], scene.layers["building_mask"])
    np.testing.assert_array_equal(sm.semantic_maps[1], scene.layers["building_height_m"])
    assert sm.cell_maps.shape == (4, 4, *scene.grid.shape)
    np.testing.assert_array_equal(sm.cell_maps[:, 1], maps["rsrq_db"][:])
    np.testing.assert_array_equal(sm.cell_maps[:, 2], maps["cell_rssi_dbm"][:])
    np.testing.assert_array_equal(sm.cell_id, maps.attrs["cell_ids"])
    np.testing.assert_allclose(sm.cell_xy_m, default_sites(240, 200))
    ds = xr.open_zarr(str(tmp_path / "c.zarr" / "samples"), consolidated=False)
    assert ds["features"].shape == (600, 20, 4) and ds["event_xy_m"].dims == ("sample", "event", "xy")
    scene_ds = xr.open_zarr(str(tmp_path / "c.zarr"), group="scenes/0", consolidated=False)
    assert scene_ds["radio_maps"].dims == ("radio_channel", "y", "x")
    assert scene_ds["cell_maps"].shape == (4, 4, *scene.grid.shape)
    tb = open_corpus(tmp_path / "c.zarr").torch_batch([5, 1, 500])
    assert tuple(tb["features"].shape) == (3, 20, 4) and tb["mask"].dtype.is_floating_point is False


def test_synthetic_spatial_split_has_known_and_unknown_streets_in_eval(city, tmp_path):
    """Seed 004's known/unknown table for a twin sample corpus: both parts non-empty, through ``learn eval``."""
    import json

    from cli.learn import main as learn_main

    scene, maps_url, _ = city
    corpus = sample(scene, maps_url, SampleConfig(n=800, mode="drive", street_key=None, seed=3, chunk_samples=400),
                    tmp_path / "c.zarr")
    assert corpus.attrs["sampling"]["known_test_frac"] == 0.1
    b = corpus.batch(slice(None), ["split_spatial", "group_id", "position_xy_m"])
    split, group = b["split_spatial"], b["group_id"]
    street_part = np.asarray(corpus.attrs["sampling"]["street_split"])[group]
    train, test = np.flatnonzero(split == 0), np.flatnonzero(split == 2)
    known = test[street_part[test] == 0]
    unknown = test[street_part[test] == 2]
    # Known streets: test samples, none of them a training sample, all on training streets.
    assert len(known) == round(0.1 * 400 * (street_part[:400] == 0).mean()) + round(0.1 * 400 * (street_part[400:] == 0).mean())
    assert not set(known) & set(train) and set(group[known]) <= set(group[train])
    train_xy = {tuple(p) for p in b["position_xy_m"][train]}
    assert not any(tuple(p) in train_xy for p in b["position_xy_m"][known])
    # Unknown streets: no training sample on any of them.
    assert len(unknown) and not set(group[unknown]) & set(group[train])
    result = CliRunner().invoke(learn_main, ["eval", "--data", str(tmp_path / "c.zarr"), "--split", "spatial",
                                             "--baseline", "knn-square", "--prior", "truth", "--json"])
    assert result.exit_code == 0, result.output
    parts = json.loads(result.output[result.output.index("{"):])["parts"]
    assert parts["known"]["n"] == len(known) and parts["unknown"]["n"] == len(unknown)
    # k-NN has training neighbours on known streets only: they are localized better.
    assert parts["known"]["mean_m"] < parts["unknown"]["mean_m"]


def test_bad_inputs_name_the_field(city, tmp_path):
    scene, maps_url, root = city
    other = make_maps(root / "scene", tmp_path / "m.zarr", grid=Grid(0, 0, 4.0, 60, 50))
    with pytest.raises(InputError, match="'grid'.*does not match the scene grid"):
        sample(scene, other, SampleConfig(n=10), tmp_path / "a.zarr")
    with pytest.raises(InputError, match="features: unknown feature.*nope_db"):
        sample(scene, maps_url, SampleConfig(n=10, features=("rsrp_dbm", "nope_db")), tmp_path / "b.zarr")
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()
    with pytest.raises(InputError, match="speed_mps"):
        SampleConfig(speed_mps=(10.0, 5.0))
    with pytest.raises(InputError, match="split_fractions"):
        SampleConfig(split_fractions=(0.5, 0.2, 0.2))
    with pytest.raises(InputError, match=r"known_test_frac: 1.0 is outside \[0, 1\)"):
        SampleConfig(known_test_frac=1.0)
    with pytest.raises(InputError, match="not a radio-map store"):
        sample(scene, root / "scene" / "layers.zarr", SampleConfig(n=10), tmp_path / "c.zarr")
    with pytest.raises(InputError, match="not a radio-map store"):
        open_maps(root / "scene" / "layers.zarr")
    (tmp_path / "exists.zarr").mkdir()
    with pytest.raises(OutputExistsError, match="exists.zarr exists"):
        sample(scene, maps_url, SampleConfig(n=10), tmp_path / "exists.zarr")


def test_cli_sample_end_to_end(city, tmp_path):
    from cli.twin import main

    scene, maps_url, _ = city
    out = tmp_path / "c.zarr"
    args = ["sample", "--scene", str(scene.path), "--maps", maps_url, "--out", str(out), "--n", "300",
            "--mode", "drive", "--speed", "8,12", "--reporting", "lte", "--seed", "4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "Wrote 300 sequences (drive mode" in result.output and "split spatial" in result.output
    corpus = open_corpus(out)
    assert corpus.attrs["config"]["speed_mps"] == [8.0, 12.0]
    assert corpus.attrs["config"]["reporting"]["rsrp_range_dbm"] == [-140.0, -44.0]
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "exists" in again.output and "Traceback" not in again.output
    bad = CliRunner().invoke(main, [*args[:-2], "--features", "rsrp_dbm,bogus", "--overwrite"])
    assert bad.exit_code == 2 and "bogus" in bad.output
    plain = CliRunner().invoke(main, [*args, "--known-test-frac", "0", "--overwrite"])
    assert plain.exit_code == 0, plain.output
    corpus = open_corpus(out)
    b = corpus.batch(slice(None), ["split_spatial", "group_id"])
    assert corpus.attrs["sampling"]["known_test_frac"] == 0.0
    np.testing.assert_array_equal(b["split_spatial"], np.asarray(corpus.attrs["sampling"]["street_split"])[b["group_id"]])
    bad = CliRunner().invoke(main, [*args, "--known-test-frac", "1.5", "--overwrite"])
    assert bad.exit_code == 2 and "known_test_frac: 1.5 is outside [0, 1)" in bad.output and "Traceback" not in bad.output


def test_xarray_opens_a_scene_without_cell_maps(tmp_path):
    from twin.corpus.store import CorpusWriter

    writer = CorpusWriter(tmp_path / "c.zarr", ["rsrp_dbm"], ["dBm"], max_events=3)
    grid = Grid(0, 0, 2.0, 4, 3)
    writer.add_scene("real", grid, radio_maps=np.zeros((2, 3, 4)), radio_channels=["a", "b"],
                     semantic_maps=np.ones((1, 3, 4)), semantic_channels=["m"], cell_id=[7], cell_xy_m=[[1, 2]])
    corpus = writer.close()
    ds = xr.open_zarr(str(tmp_path / "c.zarr"), group="scenes/0", consolidated=False)
    assert ds.sizes["radio_channel"] == 2 and ds.sizes["semantic_channel"] == 1 and ds.sizes["y"] == 3
    assert corpus.scene(0).cell_maps is None


def test_cli_reads_a_strict_yaml_config(city, tmp_path):
    from cli.twin import main

    scene, maps_url, _ = city
    cfg = tmp_path / "sample.yaml"
    cfg.write_text("n: 120\nmode: drive\nmax_cells: 2\nreporting:\n  rsrp_floor_dbm: -90.0\n")
    args = ["sample", "--scene", str(scene.path), "--maps", maps_url, "--out", str(tmp_path / "c.zarr"),
            "--config", str(cfg), "--max-events", "8"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    corpus = open_corpus(tmp_path / "c.zarr")
    assert len(corpus) == 120 and corpus.max_events == 8
    assert corpus.attrs["config"]["reporting"]["rsrp_floor_dbm"] == -90.0
    b = corpus.batch(slice(0, 120))
    assert (b["features"][..., 0][b["mask"]] >= -90.0).all()
    cfg.write_text("n: 10\nspeed: 3\n")
    bad = CliRunner().invoke(main, [*args, "--overwrite"])
    assert bad.exit_code == 2 and "unknown key(s) speed" in bad.output
