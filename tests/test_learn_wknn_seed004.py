"""WkNN with seed 004's settings (``wknn-seed004``) against a hand computation on a hand-made corpus."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from cli.learn import main
from learn.baselines import KnnSquareSeed004Baseline, WknnBaseline, WknnSeed004Baseline
from learn.evaluate import evaluate
from learn.registry import make_baseline
from twin.corpus.store import CorpusWriter, open_corpus, sample_array_specs
from twin.errors import InputError
from twin.geo import Grid

CELLS = np.array([1, 2, 3], np.int64)
# Per sample: position [m], then (cell, rsrp_dbm, rssi_dbm) of its one report (all at t = 0), split (0 train, 2 test).
SAMPLES = [
    ((0.0, 0.0), [(1, -90.0, -60.0), (3, -95.0, -80.0)], 0),     # A: the query's RSRP, RSSI far
    ((100.0, 0.0), [(1, -70.0, -61.0), (3, -110.0, -66.0)], 0),  # B: the query's RSSI, RSRP far
    ((0.0, 100.0), [(2, -100.0, -50.0)], 0),                     # C: another cell
    ((10.0, 5.0), [(1, -90.0, -62.0), (3, -95.0, -66.0)], 2),    # Q: the query
]


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> str:
    url = tmp_path_factory.mktemp("wknn") / "toy.zarr"
    t = 2
    w = CorpusWriter(url, ("rsrp_dbm", "rssi_dbm"), ("dBm", "dBm"), t, split_schemes=("random",))
    w.add_scene("toy", Grid(-200.0, -200.0, 10.0, 40, 40), None, cell_id=CELLS,
                cell_xy_m=np.zeros((3, 2), np.float32))
    specs = sample_array_specs(t, 2)
    n = len(SAMPLES)
    s = {k: np.full((n, *shape), fill, dtype) for k, (shape, dtype, _, fill) in specs.items()}
    s["split_random"] = np.zeros(n, np.uint8)
    for i, (xy, events, split) in enumerate(SAMPLES):
        s["position_xy_m"][i] = xy
        for j, (cell, rsrp, rssi) in enumerate(events):
            s["cell_id"][i, j] = cell
            s["features"][i, j] = (rsrp, rssi)
            s["time_s"][i, j] = 0.0
            s["mask"][i, j] = True
            s["event_xy_m"][i, j] = xy
        s["split_random"][i] = split
    s["scene_index"][:] = 0
    s["group_id"] = np.arange(n)
    w.append(s)
    w.close()
    return str(url)


def _dense(events, feature: int, fill: float) -> np.ndarray:
    v = np.full(len(CELLS), fill)
    for cell, *values in events:
        v[list(CELLS).index(cell)] = values[feature]
    return v


def test_seed004_distances_equal_a_hand_computation(toy):
    corpus = open_corpus(toy)
    train = np.arange(3)
    seed = WknnSeed004Baseline(k=1).fit(corpus, train)
    d = seed.distances(corpus, np.array([3]))[0]
    # RSSI fingerprints over cells (1, 2, 3), -25 dB where not heard, Euclidean / cells heard by either.
    q = _dense(SAMPLES[3][1], 1, -25.0)
    assert q.tolist() == [-62.0, -25.0, -66.0]
    hand = [math.sqrt(2**2 + 14**2) / 2,               # A: cells {1, 3}
            math.sqrt(1**2 + 0**2) / 2,                # B: cells {1, 3}
            math.sqrt(37**2 + 25**2 + 41**2) / 3]      # C: cells {1, 2, 3}
    np.testing.assert_allclose(d, hand, rtol=1e-12)
    for ref, want in zip(SAMPLES[:3], hand, strict=True):  # the helper's fingerprints give the same
        r = _dense(ref[1], 1, -25.0)
        union = len({c for c, *_ in ref[1]} | {c for c, *_ in SAMPLES[3][1]})
        assert np.linalg.norm(q - r) / union == pytest.approx(want, rel=1e-12)
    # The nearest is B: its position is the estimate (k = 1).
    np.testing.assert_allclose(seed.predict(corpus, np.array([3])).xy_m, [[100.0, 0.0]])
    # The seed's baseline is WkNN with options, not another implementation.
    same = WknnBaseline(k=1, features=["rssi_dbm"], fill=-25.0, coverage_weight=0.0, scale="none",
                        distance_norm="count").fit(corpus, train)
    np.testing.assert_array_equal(same.distances(corpus, np.array([3])), d[None])


def test_seed004_differs_from_our_wknn_where_the_settings_differ(toy):
    corpus = open_corpus(toy)
    train, query = np.arange(3), np.array([3])
    ours = WknnBaseline(k=1).fit(corpus, train)
    d = ours.distances(corpus, query)[0]
    # Our WkNN by hand: both features over the corpus deviations, unheard cells at the training
    # minimum - 10, sqrt(sum / (|U| F)) plus 10 x the share of cells heard by one only.
    std = np.asarray(corpus.stats["feature_std"])
    fill = np.array([-110.0, -80.0]) - 10.0
    q = np.stack([_dense(SAMPLES[3][1], f, fill[f]) for f in range(2)], 1) / std
    hand = []
    for ref in SAMPLES[:3]:
        r = np.stack([_dense(ref[1], f, fill[f]) for f in range(2)], 1) / std
        a, b = {c for c, *_ in ref[1]}, {c for c, *_ in SAMPLES[3][1]}
        hand.append(math.sqrt(((q - r) ** 2).sum() / (len(a | b) * 2)) + 10.0 * len(a ^ b) / len(a | b))
    np.testing.assert_allclose(d, hand, rtol=1e-12)
    # RSRP matches A, RSSI matches B: ours answers A, the seed's (RSSI only) B.
    np.testing.assert_allclose(ours.predict(corpus, query).xy_m, [[0.0, 0.0]])
    np.testing.assert_allclose(WknnSeed004Baseline(k=1).fit(corpus, train).predict(corpus, query).xy_m,
                               [[100.0, 0.0]])
    # Each setting on its own moves the distances.
    base = {"k": 1, "features": ["rssi_dbm"], "fill": -25.0, "coverage_weight": 0.0, "scale": "none",
            "distance_norm": "count"}
    ref_d = WknnBaseline(**base).fit(corpus, train).distances(corpus, query)
    for key, value in (("fill", -120.0), ("scale", "std"), ("distance_norm", "rms"), ("coverage_weight", 10.0),
                       ("features", ["rsrp_dbm", "rssi_dbm"])):
        other = WknnBaseline(**{**base, key: value}).fit(corpus, train).distances(corpus, query)
        assert not np.allclose(other, ref_d), key
    # A cell reported without the chosen feature counts as not heard (its value is the fill).
    seed = WknnSeed004Baseline().fit(corpus, train)
    values, heard = seed._dense([np.array([1, 2])], [np.array([[-60.0], [np.nan]])])
    assert heard.tolist() == [[True, False, False]] and values.tolist() == [[-60.0, -25.0, -25.0]]
    with pytest.raises(InputError, match="distance_norm: 'cells'"):
        WknnBaseline(distance_norm="cells")


def test_seed004_baselines_by_name_in_eval_and_the_cli(toy):
    assert type(make_baseline("wknn-seed004")) is WknnSeed004Baseline
    sq = make_baseline("knn-square-seed004")
    assert type(sq) is KnnSquareSeed004Baseline and (sq.fill, sq.distance_norm, sq.features) == (-25.0, "count",
                                                                                                  ("rssi_dbm",))
    # Under the whole-scene prior k-NN in the square is WkNN, with the seed's settings too.
    r = evaluate(toy, make_baseline("knn-square-seed004", k=1), "random", prior="whole")
    assert r.errors_m[0] == pytest.approx(math.hypot(90.0, 5.0))
    res = CliRunner().invoke(main, ["eval", "--data", toy, "--split", "random", "--baseline", "wknn-seed004",
                                    "--k", "1", "--json"])
    assert res.exit_code == 0, res.output
    js = json.loads(res.output.strip().splitlines()[-1])
    assert js["method"] == "wknn-seed004" and js["n"] == 1
    assert js["mean_m"] == pytest.approx(math.hypot(90.0, 5.0))  # answered B (100, 0); the truth is (10, 5)
    res = CliRunner().invoke(main, ["eval", "--data", toy, "--split", "random", "--baseline", "wknn",
                                    "--k", "1", "--json"])
    assert json.loads(res.output.strip().splitlines()[-1])["mean_m"] == pytest.approx(math.hypot(10.0, 5.0))
