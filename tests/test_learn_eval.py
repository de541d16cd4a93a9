"""Splits, k-NN baselines, the evaluation harness and the ``learn`` CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli.learn import main
from learn.baselines import KnnSquareBaseline, WknnBaseline
from learn.evaluate import evaluate
from learn.importers import Measurements, SceneSpec, SplitConfig, write_measurements
from learn.importers._build import ImportReport
from learn.metrics import error_summary
from learn.splits import TEST, TRAIN, VAL, block_ids, random_split, spatial_split
from twin.errors import InputError
from twin.geo import SceneFrame

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_random_split_reproducible_and_disjoint():
    a, b = random_split(1000, seed=3), random_split(1000, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, random_split(1000, seed=4))
    assert (a == TEST).sum() == 200 and (a == VAL).sum() == 100 and (a == TRAIN).sum() == 700
    with pytest.raises(InputError, match="fractions"):
        random_split(10, test_frac=0.7, val_frac=0.5)


def test_spatial_split_holds_out_whole_blocks():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 2000, (3000, 2))
    labels, blocks = spatial_split(xy, block_m=200, seed=1, test_frac=0.2, val_frac=0.1, known_test_frac=0.1)
    labels2, _ = spatial_split(xy, block_m=200, seed=1, test_frac=0.2, val_frac=0.1, known_test_frac=0.1)
    np.testing.assert_array_equal(labels, labels2)
    np.testing.assert_array_equal(blocks, block_ids(xy, 200))
    train_blocks = set(blocks[labels == TRAIN])
    val_blocks = set(blocks[labels == VAL])
    assert not train_blocks & val_blocks  # no val block holds a training point
    held_test = set(blocks[labels == TEST]) - train_blocks
    assert held_test and not held_test & val_blocks
    # Held-out test blocks are whole: every sample of them is test.
    assert np.all(labels[np.isin(blocks, list(held_test))] == TEST)
    unknown = np.isin(blocks, list(held_test)).sum()
    assert 0.2 * 3000 <= unknown < 0.2 * 3000 + 100  # greedy whole blocks, ~30 samples each
    known_test = (labels == TEST) & np.isin(blocks, list(train_blocks))
    assert known_test.sum() == round(0.1 * ((labels == TRAIN).sum() + known_test.sum()))


def _grid_corpus(path, noise_db=0.0, seed=0):
    """Samples on a 20 m grid; each hears 4 cells with a path-loss fingerprint (exactly repeated)."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.arange(0, 400, 20.0), np.arange(0, 400, 20.0))
    grid_xy = np.stack([gx.ravel(), gy.ravel()], 1)
    xy = np.concatenate([grid_xy, grid_xy])  # every position measured twice
    cells_xy = np.array([[-50, -50], [450, -50], [-50, 450], [450, 450.0]])
    n = len(xy)
    d = np.linalg.norm(xy[:, None] - cells_xy[None], axis=-1)  # [N, 4]
    rsrp = -30 - 35 * np.log10(d) + noise_db * rng.standard_normal(d.shape)
    point = np.repeat(np.arange(n), 4)
    cell = np.tile(np.arange(4), n)
    meas = Measurements(xy, np.zeros(n), np.arange(n), point, cell, rsrp.reshape(-1, 1))
    scene = SceneSpec("grid", SceneFrame.from_lonlat(12.5, 41.9), np.arange(4), cells_xy)
    split = SplitConfig(test_frac=0.2, val_frac=0.0, block_m=100.0)
    return write_measurements(meas, path, scene, ["rsrp_dbm"], ["dBm"], ImportReport("grid"), split)


def test_wknn_recovers_noise_free_grid_exactly(tmp_path):
    corpus = _grid_corpus(tmp_path / "g.zarr")
    result = evaluate(corpus, WknnBaseline(k=1), "random")
    # Every test position also appears in training with the same fingerprint (or within 0 m).
    train_xy = corpus.batch(corpus.split_indices("random", "train"), ["position_xy_m"])["position_xy_m"]
    seen = np.array([np.any(np.all(train_xy == t, axis=1)) for t in result.truth_xy_m])
    assert seen.sum() > 0.5 * len(seen)
    np.testing.assert_allclose(result.errors_m[seen], 0.0, atol=1e-3)
    # k = 3 with inverse-distance weights is dominated by the exact match (distance 0).
    result3 = evaluate(corpus, WknnBaseline(k=3), "random")
    np.testing.assert_allclose(result3.errors_m[seen], 0.0, atol=1e-2)


def test_knn_square_falls_back_to_crop_centre(tmp_path):
    corpus = _grid_corpus(tmp_path / "g.zarr")
    base = KnnSquareBaseline(k=1, crop_size_m=1.0)  # squares too small to hold another sample
    result = evaluate(corpus, base, "spatial", prior="truth")  # the seeds' crops around the truth
    from learn.data.crops import eval_crop_origins

    centre = eval_crop_origins(result.indices, result.truth_xy_m, 1.0) + 0.5
    exact = result.errors_m < 1e-6
    np.testing.assert_allclose(result.predictions.xy_m[~exact], centre[~exact], atol=1e-6)
    assert (~exact).any()
    # a square holding the whole corpus is plain k-NN
    big = KnnSquareBaseline(k=1, crop_size_m=1e5)
    assert big.fit(corpus, corpus.split_indices("spatial", "train")) is big
    np.testing.assert_allclose(evaluate(corpus, big, "spatial").predictions.xy_m,
                               evaluate(corpus, WknnBaseline(k=1), "spatial").predictions.xy_m)


def test_eval_parts_known_unknown(tmp_path):
    corpus = _grid_corpus(tmp_path / "g.zarr", noise_db=1.0)
    r = evaluate(corpus, WknnBaseline(), "spatial")
    assert r.parts["known"]["n"] + r.parts["unknown"]["n"] == r.parts["all"]["n"] == len(r.indices)
    assert r.parts["unknown"]["n"] > 0 and r.parts["known"]["n"] > 0
    # Unknown-block samples have no training sample at their position: larger errors.
    assert r.parts["unknown"]["mean_m"] > r.parts["known"]["mean_m"]
    js = r.to_json()
    assert {"mean_m", "median_m", "p90_m", "rmse_m", "n"} <= set(js)
    # max_samples: the same evenly spaced subset of the test part for every method, its errors unchanged
    sub = evaluate(corpus, WknnBaseline(), "spatial", max_samples=7)
    sub2 = evaluate(corpus, WknnBaseline(k=1), "spatial", max_samples=7)
    assert len(sub.indices) == 7 and sub.indices[0] == r.indices[0] and sub.indices[-1] == r.indices[-1]
    np.testing.assert_array_equal(sub.indices, sub2.indices)
    at = np.searchsorted(r.indices, sub.indices)
    np.testing.assert_allclose(sub.errors_m, r.errors_m[at])
    assert np.diff(at).min() >= len(r.indices) // 7 - 1  # spread over the part, not its head
    assert len(evaluate(corpus, WknnBaseline(), "spatial", max_samples=10**6).indices) == len(r.indices)
    with pytest.raises(InputError, match="max_samples"):
        evaluate(corpus, WknnBaseline(), "spatial", max_samples=0)


def test_error_summary_values():
    s = error_summary(np.array([3.0, 4.0, 0.0, 5.0]), nll=np.array([1.0, 3.0, 2.0, 2.0]),
                      in_hdr50=np.array([1, 0, 1, 0], bool))
    assert s["mean_m"] == 3.0 and s["median_m"] == 3.5 and s["rmse_m"] == pytest.approx(np.sqrt(12.5))
    assert s["p90_m"] == pytest.approx(4.7) and s["nll"] == 2.0 and s["coverage50"] == 0.5
    assert error_summary(np.array([]))["n"] == 0


def test_cli_import_and_eval(tmp_path):
    from twin.geo import SceneFrame as F

    frame = F.from_lonlat(12.47, 41.87)
    rng = np.random.default_rng(0)
    xy = rng.uniform(-300, 300, (80, 2))
    bs = np.array([[-400, 0], [400, 0], [0, 400.0]])
    lon, lat = frame.to_lonlat(xy[:, 0], xy[:, 1])
    blon, blat = frame.to_lonlat(bs[:, 0], bs[:, 1])
    rows = []
    for p in range(len(xy)):
        for c in range(3):
            d = np.linalg.norm(xy[p] - bs[c])
            rows.append({"time": p * 60.0, "lon": lon[p], "lat": lat[p], "cell_id": 100 + c,
                         "rsrp_dbm": -30 - 35 * np.log10(d)})
    pd.DataFrame(rows).to_csv(tmp_path / "drive.csv", index=False)
    pd.DataFrame({"bs_id": ["a", "b", "c"], "cell_id": [100, 101, 102], "lon": blon, "lat": blat}).to_csv(tmp_path / "bs.csv", index=False)
    runner = CliRunner()
    res = runner.invoke(main, ["import", "drive-test", str(tmp_path / "drive.csv"), "--bs-file",
                               str(tmp_path / "bs.csv"), "--out", str(tmp_path / "d.zarr")])
    assert res.exit_code == 0, res.output
    assert "80 samples" in res.output
    res = runner.invoke(main, ["eval", "--data", str(tmp_path / "d.zarr"), "--split", "spatial",
                               "--baseline", "wknn", "--json", "--plot", str(tmp_path / "plots")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["n"] == out["parts"]["known"]["n"] + out["parts"]["unknown"]["n"] > 0
    assert out["mean_m"] < 150  # noise-free path loss: far better than guessing in a 600 m square
    assert (tmp_path / "plots" / "error_cdf.png").stat().st_size > 1000
    res = runner.invoke(main, ["eval", "--data", str(tmp_path / "d.zarr"), "--baseline", "wknn",
                               "--features", "rssi_dbm"])
    assert res.exit_code == 2 and "no feature(s) rssi_dbm" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["eval", "--data", str(tmp_path / "d.zarr")])
    assert res.exit_code == 2 and "exactly one of" in res.output
    res = runner.invoke(main, ["import", "rome-crop", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "x.zarr")])
    assert res.exit_code == 2 and "nope.csv" in res.output


def test_baselines_are_registered_by_name_and_the_cli_offers_each():
    from learn.baselines import KnnSquareSeed004Baseline, MapMatchBaseline, WknnSeed004Baseline
    from learn.priors import PriorOnly
    from learn.registry import baseline_names, make_baseline

    kinds = {"wknn": WknnBaseline, "knn-square": KnnSquareBaseline, "mapmatch": MapMatchBaseline,
             "prior-only": PriorOnly, "wknn-seed004": WknnSeed004Baseline,
             "knn-square-seed004": KnnSquareSeed004Baseline}
    for name, cls in kinds.items():
        assert type(make_baseline(name)) is cls
    assert make_baseline("wknn", k=3, fill=None).k == 3  # None options keep the default
    assert baseline_names() == list(kinds)
    option = next(p for p in main.commands["eval"].params if p.name == "baseline")
    assert list(option.type.choices) == baseline_names()
    with pytest.raises(InputError, match="unknown baseline 'nope'; choose one of wknn, knn-square"):
        make_baseline("nope")
