"""Held-out scenes as a split scheme, and the test parts of the localization benchmark (bench/bench_localize.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.bench_localize import SIZES, planned_training_minutes, split_parts
from learn.splits import TEST, TRAIN, VAL, hold_out_scenes, spatial_split
from twin import io
from twin.corpus.store import CorpusWriter, add_split_scheme, open_corpus
from twin.errors import InputError
from twin.geo import Grid


def _three_patch_corpus(path, n_per_scene: int = 120):
    """Three 400 m scenes side by side, random positions, 50 m blocks as streets, a spatial split per scene."""
    rng = np.random.default_rng(0)
    w = CorpusWriter(path, ["rsrp_dbm"], ["dBm"], 2, split_schemes=("spatial",), chunk_samples=64)
    xy, scene, group, labels = [], [], [], []
    for s in range(3):
        grid = Grid(x0_m=400.0 * s, y0_m=0.0, cell_size_m=10.0, width=40, height=40)
        w.add_scene(f"p{s}", grid, cell_id=np.array([1]), cell_xy_m=np.array([[400.0 * s + 200, 200.0]]))
        p = rng.uniform(0, 400, (n_per_scene, 2)) + [400.0 * s, 0.0]
        lab, blocks = spatial_split(p, block_m=50.0, seed=s, test_frac=0.2, val_frac=0.1, known_test_frac=0.1)
        xy.append(p)
        scene.append(np.full(n_per_scene, s))
        group.append(blocks + s * 2**32)
        labels.append(lab)
    p = np.concatenate(xy)
    n = len(p)
    w.append({"position_xy_m": p, "event_xy_m": np.repeat(p[:, None], 2, 1), "cell_id": np.ones((n, 2), np.int64),
              "beam_id": -np.ones((n, 2), np.int32), "time_s": np.zeros((n, 2)),
              "features": rng.normal(-80, 5, (n, 2, 1)), "mask": np.ones((n, 2), bool),
              "scene_index": np.concatenate(scene), "group_id": np.concatenate(group),
              "split_spatial": np.concatenate(labels)})
    return w.close()


def test_hold_out_scenes_moves_whole_scenes_to_test():
    labels = np.array([TRAIN, VAL, TEST, TRAIN, TRAIN, VAL], np.uint8)
    scenes = np.array([0, 0, 0, 1, 1, 2])
    out = hold_out_scenes(labels, scenes, [1, 2])
    np.testing.assert_array_equal(out, [TRAIN, VAL, TEST, TEST, TEST, TEST])
    assert labels[3] == TRAIN  # the input is not modified
    with pytest.raises(InputError, match="scene"):
        hold_out_scenes(labels, scenes, [7])
    with pytest.raises(InputError, match="every training sample"):
        hold_out_scenes(labels, scenes, [0, 1])


def test_held_out_patches_as_a_stored_scheme_and_the_benchmark_parts(tmp_path):
    corpus = _three_patch_corpus(tmp_path / "c.zarr")
    spatial = io.read(corpus.samples, "split_spatial", corpus.url)
    scenes = corpus.batch(slice(None), ["scene_index"])["scene_index"]
    corpus = add_split_scheme(corpus.url, "patches", hold_out_scenes(spatial, scenes, [2]))
    assert corpus.split_schemes == ["spatial", "patches"]
    labels = io.read(corpus.samples, "split_patches", corpus.url)
    assert corpus.attrs["counts"]["splits"]["patches"]["test"] == int((labels == TEST).sum())
    assert (labels[scenes == 2] == TEST).all()
    np.testing.assert_array_equal(labels[scenes != 2], spatial[scenes != 2])
    assert open_corpus(corpus.url).split_indices("patches", "test").size == (labels == TEST).sum()  # reopens verified

    parts = split_parts(corpus, "patches", [2])
    groups = io.read(corpus.samples, "group_id", corpus.url)
    train = labels == TRAIN
    train_scenes, train_groups = set(scenes[train].tolist()), set(groups[train].tolist())
    # unseen area: held-out patches, not one training sample in their scene
    assert len(parts["unseen"]) == 120 and not set(scenes[parts["unseen"]].tolist()) & train_scenes
    # unknown streets: no street shared with training; known streets: every one shared
    assert len(parts["unknown"]) > 0 and not set(groups[parts["unknown"]].tolist()) & train_groups
    assert len(parts["known"]) > 0 and set(groups[parts["known"]].tolist()) <= train_groups
    assert set(scenes[parts["unknown"]].tolist()) <= {0, 1}
    pieces = np.sort(np.concatenate([parts["unknown"], parts["known"], parts["unseen"]]))
    np.testing.assert_array_equal(pieces, parts["all"])  # the pieces tile the test part

    with pytest.raises(InputError, match="exists"):
        add_split_scheme(corpus.url, "patches", labels)
    with pytest.raises(InputError, match="labels"):
        add_split_scheme(corpus.url, "short", labels[:5])
    with pytest.raises(InputError, match="not one of"):
        add_split_scheme(corpus.url, "bad", np.full(len(labels), 7, np.uint8))
    again = add_split_scheme(corpus.url, "patches", hold_out_scenes(spatial, scenes, [1]), overwrite=True)
    assert again.split_schemes == ["spatial", "patches"]
    assert (io.read(again.samples, "split_patches", again.url)[scenes == 1] == TEST).all()


def test_benchmark_sizes_hold_out_patches_of_their_plans():
    for size in SIZES.values():
        assert max(size.curve_minutes) == size.model_minutes  # the curve's points are snapshots of the main run
        assert all(0 <= k < 2 * size.helsinki_rows for k in size.helsinki_held)
        assert all(0 <= k < len(size.test_select) for k in size.test_held)
        assert len(size.test_held) < len(size.test_select)
    full = SIZES["full"]
    # the budget: one 40-minute synthetic run (the curve) + the real runs, about 50 of the 60 minutes
    assert full.curve_minutes == (2.0, 5.0, 10.0, 20.0, 40.0)
    assert planned_training_minutes(full, 1) <= 50


def test_fingerprints_keep_the_cells_of_different_patches_apart(tmp_path):
    """Every patch of a generated corpus numbers its cells from 1: k-NN must not match cell 1 of two patches."""
    from learn.baselines import fingerprints

    corpus = _three_patch_corpus(tmp_path / "c.zarr", n_per_scene=10)
    cells, _ = fingerprints(corpus, np.array([0, 15, 25]), [0])
    assert [c.tolist() for c in cells] == [[1], [2**32 + 1], [2 * 2**32 + 1]]
