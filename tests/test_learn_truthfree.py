"""Truth-free localization: map matching, crop priors, no leakage of the truth at inference."""

from __future__ import annotations

import numpy as np
import pytest

from learn.baselines import KnnSquareBaseline, MapMatchBaseline
from learn.evaluate import evaluate
from learn.importers import Measurements, SceneSpec, SplitConfig, write_measurements
from learn.importers._build import ImportReport
from learn.mapmatch import MapMatcher, feature_sigmas
from learn.priors import CropPrior, PriorOnly, serving_sites
from twin.errors import InputError
from twin.geo import Grid, SceneFrame

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

GRID = Grid(0.0, 0.0, 4.0, 100, 80)  # 400 m x 320 m at 4 m
SITES = np.array([[-50.0, -40.0], [450.0, -30.0], [200.0, 380.0], [-60.0, 300.0]])


def _maps(grid: Grid = GRID, sites: np.ndarray = SITES) -> np.ndarray:
    """Per-cell maps ``(n_cells, 2, H, W)``: RSRP by log-distance path loss, and an RSRQ-like ratio."""
    xx, yy = np.meshgrid(grid.x_centers_m(), grid.y_centers_m())
    d = np.hypot(xx[None] - sites[:, 0, None, None], yy[None] - sites[:, 1, None, None])
    rsrp = -20 - 37 * np.log10(d)
    rsrq = rsrp - 10 * np.log10(np.sum(10 ** (rsrp / 10), axis=0, keepdims=True))
    return np.stack([rsrp, rsrq], 1).astype(np.float32)


def test_exact_pixel_on_noise_free_maps_and_smooth_degradation():
    maps = _maps()
    rng = np.random.default_rng(0)
    m = MapMatcher(maps, np.arange(len(SITES)) + 10, GRID, np.array([2.0, 1.0]))
    pix = rng.integers(0, [GRID.height, GRID.width], (200, 2))
    truth = np.stack([GRID.x_centers_m()[pix[:, 1]], GRID.y_centers_m()[pix[:, 0]]], 1)
    cells = np.arange(3) + 10  # three cells heard
    exact = [(cells, maps[:3, :, i, j].astype(np.float64)) for i, j in pix]
    res = m.match(exact)
    np.testing.assert_allclose(res.xy_m, truth, atol=1e-6)  # the exact pixel, every time
    errors = []
    for noise_db in (0.5, 2.0, 4.0, 8.0):
        noisy = [(c, f + noise_db * rng.standard_normal(f.shape)) for c, f in exact]
        errors.append(np.mean(np.linalg.norm(m.match(noisy).xy_m - truth, axis=1)))
    assert all(a < b for a, b in zip(errors, errors[1:], strict=False)), errors  # grows with the noise
    assert errors[0] < 10 and errors[-1] < 200, errors  # no jump at small noise, bounded at large


def test_unknown_or_unheard_cells_give_no_estimate_and_mask_restricts():
    maps = _maps()
    m = MapMatcher(maps, np.arange(4), GRID, np.array([2.0, 1.0]))
    res = m.match([(np.array([99]), np.array([[-80.0, -10.0]]))])
    assert not np.isfinite(res.xy_m).any()
    road = np.zeros(GRID.shape, bool)
    road[40, :] = True  # one east-west street
    m_road = MapMatcher(maps, np.arange(4), GRID, np.array([2.0, 1.0]), road)
    res = m_road.match([(np.arange(3), maps[:3, :, 10, 50].astype(np.float64))])
    assert res.xy_m[0, 1] == GRID.y_centers_m()[40]  # the street, not the true row 10


def test_feature_sigmas_from_config_defaults_and_stats():
    rep = {"reporting": {"rsrp_sigma_db": 3.0, "rsrp_step_db": 0.0, "rsrq_sigma_db": 1.0, "rsrq_step_db": 0.5}}
    s = feature_sigmas(["rsrp_dbm", "rsrq_db", "throughput"], rep, [5.0, 2.0, 8.0])
    np.testing.assert_allclose(s, [3.0, np.hypot(1.0, 0.5 / np.sqrt(12)), 2.0])
    assert feature_sigmas(["nrsrp_dbm"])[0] == 2.0


def _corpus(path, maps=True, positions=True, noise_db=0.0, seed=0):
    """A scene with per-cell maps, samples on random pixels hearing 3 of 4 cells (strongest first)."""
    rng = np.random.default_rng(seed)
    cell_maps = _maps()
    n = 300
    pix = rng.integers(0, [GRID.height, GRID.width], (n, 2))
    xy = np.stack([GRID.x_centers_m()[pix[:, 1]], GRID.y_centers_m()[pix[:, 0]]], 1)
    feats = cell_maps[:, :, pix[:, 0], pix[:, 1]].transpose(2, 0, 1) + noise_db * rng.standard_normal((n, 4, 2))
    order = np.argsort(-feats[:, :, 0], axis=1)[:, :3]
    point = np.repeat(np.arange(n), 3)
    cell = order.reshape(-1)
    f = np.take_along_axis(feats, order[..., None], 1).reshape(-1, 2)
    sem = np.stack([np.zeros(GRID.shape), np.zeros(GRID.shape), np.ones(GRID.shape)]).astype(np.float32)
    scene = SceneSpec("synthetic", SceneFrame.from_lonlat(24.94, 60.17), np.arange(4), SITES, grid=GRID,
                      semantic_maps=sem, semantic_channels=["building_mask", "building_height_m", "road_mask"],
                      cell_maps=cell_maps if maps else None)
    split = SplitConfig(test_frac=0.3, val_frac=0.0, block_m=100.0)
    meas = Measurements(xy, np.zeros(n), np.arange(n), point, cell, f)
    corpus = write_measurements(meas, path, scene, ["rsrp_dbm", "rsrq_db"], ["dBm", "dB"], ImportReport("s"),
                                split)
    if positions:
        return corpus
    import zarr

    root = zarr.open_group(str(path), mode="r+")  # the same corpus with the positions removed
    root["samples/position_xy_m"][...] = np.nan
    root["samples/event_xy_m"][...] = np.nan
    from twin import io
    from twin.corpus.store import open_corpus

    io.seal(root)  # all-NaN chunks are not stored: record the store as it now is
    io.consolidate(str(path))

    return open_corpus(path)


def test_mapmatch_in_harness_under_each_prior(tmp_path):
    corpus = _corpus(tmp_path / "c.zarr")
    for prior in ("whole", "truth", "serving-cell", "coarse"):
        r = evaluate(corpus, MapMatchBaseline(pixel_prior="road"), "random", prior=prior)
        assert r.prior == prior and r.to_json()["prior"] == prior
        if prior in ("whole", "truth", "coarse"):
            assert r.parts["all"]["median_m"] < 1e-6, prior  # noise-free: the exact pixel
    truth = evaluate(corpus, PriorOnly(), "random", prior="truth")
    assert "seeds' protocol" in truth.to_json()["prior_label"]


def test_serving_cell_prior_on_a_hand_made_case(tmp_path):
    corpus = _corpus(tmp_path / "c.zarr")
    idx = np.arange(20)
    b = corpus.batch(idx, ["cell_id", "features"])
    strongest = b["cell_id"][np.arange(20), np.nanargmax(b["features"][:, :, 0], axis=1)]
    np.testing.assert_allclose(serving_sites(corpus, idx), SITES[strongest])
    res = PriorOnly(crop_size_m=600).predict(corpus, idx, prior="serving-cell")
    np.testing.assert_allclose(res.xy_m, SITES[strongest])


def test_truth_outside_crop_is_scored_not_dropped(tmp_path):
    corpus = _corpus(tmp_path / "c.zarr")
    # 40 m squares around the serving site: most truths lie outside; every test sample is scored.
    base = KnnSquareBaseline(k=1, crop_size_m=40.0)
    r = evaluate(corpus, base, "random", prior="serving-cell")
    assert r.parts["all"]["n"] == len(corpus.split_indices("random", "test"))
    sites = serving_sites(corpus, r.indices)
    outside = (np.abs(r.truth_xy_m - sites) > 20).any(1)
    assert outside.sum() > 0.5 * len(outside)
    np.testing.assert_allclose(r.errors_m, np.linalg.norm(r.predictions.xy_m - r.truth_xy_m, axis=1))
    assert r.errors_m[outside].min() > 0


def test_predictions_identical_without_positions(tmp_path):
    with_pos = _corpus(tmp_path / "a.zarr", noise_db=2.0)
    without = _corpus(tmp_path / "b.zarr", positions=False, noise_db=2.0)
    idx = with_pos.split_indices("random", "test")
    train = with_pos.split_indices("random", "train")
    for prior in ("serving-cell", "coarse", "whole"):
        for method in (MapMatchBaseline(), PriorOnly()):
            a = method.predict(with_pos, idx, prior=prior).xy_m
            b = method.predict(without, idx, prior=prior).xy_m
            np.testing.assert_array_equal(a, b)
        # k-NN fitted on the labelled corpus, queried on both: the query's truth is never read.
        knn = KnnSquareBaseline().fit(with_pos, train)
        np.testing.assert_array_equal(knn.predict(with_pos, idx, prior=prior).xy_m,
                                      knn.predict(without, idx, prior=prior).xy_m)
    with pytest.raises(InputError, match="prior truth needs the true positions"):
        MapMatchBaseline().predict(without, idx, prior="truth")


def test_prior_needing_maps_on_corpus_without_maps(tmp_path):
    corpus = _corpus(tmp_path / "c.zarr", maps=False)
    with pytest.raises(InputError, match=r"c\.zarr.*no per-cell maps.*serving-cell"):
        CropPrior("coarse").centres_m(corpus, np.arange(5), 600.0)
    with pytest.raises(InputError, match="no per-cell maps"):
        MapMatchBaseline().predict(corpus, np.arange(5), prior="whole")
    with pytest.raises(InputError, match="prior 'nope'"):
        CropPrior("nope")
    # the default resolves per corpus: serving-cell without maps, coarse with them
    assert CropPrior().for_corpus(corpus).name == "serving-cell"
    assert CropPrior().for_corpus(_corpus(tmp_path / "m.zarr")).name == "coarse"
    r = evaluate(corpus, KnnSquareBaseline(), "random")
    assert r.to_json()["prior"] == "serving-cell"


def test_cli_localizes_a_drive_test_without_positions(tmp_path):
    """Export reports without lon/lat, import them with --scene/--maps, predict, join back, picture."""
    import pandas as pd
    from click.testing import CliRunner

    from cli.learn import main
    from tests.data.tiny_city.make import make_maps, make_scene
    from twin.corpus.sampler import SampleConfig, sample
    from twin.corpus.store import open_corpus
    from twin.radio.maps import open_maps
    from twin.scene.build import load_twin_scene

    scene_dir = make_scene(tmp_path / "scene")
    maps_url = make_maps(scene_dir, tmp_path / "maps.zarr")
    maps = open_maps(maps_url)
    pd.DataFrame({"bs_id": [f"s{c}" for c in maps.cell_ids], "cell_id": maps.cell_ids,
                  "x_m": maps.cell_xy_m[:, 0], "y_m": maps.cell_xy_m[:, 1]}).to_csv(tmp_path / "bs.csv", index=False)
    labelled = sample(load_twin_scene(scene_dir), maps_url, SampleConfig(n=30, mode="drive", seed=3),
                      tmp_path / "s.zarr")
    run = CliRunner()

    def ok(*args):
        res = run.invoke(main, [str(a) for a in args])
        assert res.exit_code == 0, res.output
        return res.output

    ok("export", "drive-test", "--data", labelled.url, "--out", tmp_path / "drive.csv", "--truth", tmp_path / "t.csv")
    drive = pd.read_csv(tmp_path / "drive.csv")
    assert "lon" not in drive.columns and "lat" not in drive.columns and len(drive) > 30
    drive = drive.rename(columns={"rsrp_dbm": "RSRP", "time": "timestamp"})  # the reader's aliases
    drive.to_csv(tmp_path / "drive.csv", index=False)
    # bad input: no frame for a position-less file; a BS file of other cells
    res = run.invoke(main, ["import", "drive-test", str(tmp_path / "drive.csv"), "--bs-file", str(tmp_path / "bs.csv"),
                            "--out", str(tmp_path / "x.zarr")])
    assert res.exit_code == 2 and "drive.csv: no lon/lat" in res.output and "--scene" in res.output
    pd.DataFrame({"bs_id": ["z"], "cell_id": [999], "x_m": [0.0], "y_m": [0.0]}).to_csv(tmp_path / "bs9.csv", index=False)
    res = run.invoke(main, ["import", "drive-test", str(tmp_path / "drive.csv"), "--bs-file", str(tmp_path / "bs9.csv"),
                            "--scene", str(scene_dir), "--out", str(tmp_path / "x.zarr")])
    assert res.exit_code == 2 and "bs9.csv: none of the drive test's cells" in res.output and "999" in res.output
    ok("import", "drive-test", tmp_path / "drive.csv", "--bs-file", tmp_path / "bs.csv", "--scene", scene_dir,
       "--maps", maps_url, "--out", tmp_path / "u.zarr")
    corpus = open_corpus(tmp_path / "u.zarr")
    assert corpus.attrs["positions"] == "unknown"
    assert not np.isfinite(corpus.batch(np.arange(len(corpus)), ["position_xy_m"])["position_xy_m"]).any()
    out = ok("predict", "--baseline", "mapmatch", "--prior", "whole", "--data", tmp_path / "u.zarr",
             "--out", tmp_path / "p.csv")
    assert "prior whole" in out
    pred = pd.read_csv(tmp_path / "p.csv")
    assert len(pred) == len(corpus) and (pred["prior"] == "whole").all() and "error_m" not in pred.columns
    assert pred[["lon", "lat", "x_m", "y_m", "std_m"]].notna().all().all()
    # every input row is joined back to exactly one prediction, with its time
    rows = [int(r) for cell in pred["rows"].astype(str) for r in cell.split(";")]
    assert sorted(rows) == list(range(1, len(drive) + 1))
    for _, p in pred.head(20).iterrows():
        picked = drive.iloc[[int(r) - 1 for r in str(p["rows"]).split(";")]]
        assert (picked["timestamp"] == p["last_time_s"]).all()
    # scored afterwards against the truth it never saw: noise-level errors on a 240 m x 200 m town
    true = pd.read_csv(tmp_path / "t.csv").rename(columns={"time": "last_time_s"})
    joined = pred.merge(true, on="last_time_s", suffixes=("", "_true"))
    err = np.hypot(joined["x_m"] - joined["x_m_true"], joined["y_m"] - joined["y_m_true"])
    assert len(joined) == len(pred) and np.median(err) < 40, np.median(err)
    out = ok("show-predictions", tmp_path / "p.csv", "--truth", tmp_path / "t.csv", "--data", tmp_path / "u.zarr",
             "--out", tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 5000 and "median error" in out
    # a prior needing maps on a corpus without maps
    ok("import", "drive-test", tmp_path / "drive.csv", "--bs-file", tmp_path / "bs.csv", "--scene", scene_dir,
       "--out", tmp_path / "nomaps.zarr")
    res = run.invoke(main, ["predict", "--baseline", "prior-only", "--prior", "coarse", "--data",
                            str(tmp_path / "nomaps.zarr"), "--out", str(tmp_path / "q.csv")])
    assert res.exit_code == 2 and "nomaps.zarr" in res.output and "no per-cell maps" in res.output
