"""learn.data: batch dict shapes, crop geometry against Grid.sample, slots, normalization, workers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as nnf

from learn.data import (
    CellVocab,
    CorpusDataset,
    DataConfig,
    Normalization,
    build_training_data,
    collate,
    crop_to_grid,
    eval_dataset,
    make_loader,
)
from twin.corpus.store import CorpusWriter, sample_array_specs
from twin.errors import InputError
from twin.geo import Grid

FEATURES = ("rsrp_dbm", "sinr_db")
GRID = Grid(-400.0, -300.0, 10.0, 80, 60)   # 800 m x 600 m, row i north
CELL_IDS = np.array([7, 11, 42], np.int64)
CELL_XY = np.array([[-200.0, 0.0], [150.0, 100.0], [300.0, -200.0]], np.float32)
T = 6


def _smooth(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """Maps varying in both axes (so a north/south flip or half-pixel slip is visible)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(shape[-2]), np.arange(shape[-1]), indexing="ij")
    out = np.empty(shape, np.float32)
    for idx in np.ndindex(*shape[:-2]):
        a, b, c = rng.normal(size=3)
        out[idx] = 3 * a * xx / shape[-1] + 5 * b * yy / shape[-2] + np.sin(xx / 7.0 + c) * np.cos(yy / 5.0)
    return out


def _samples(n: int, rng: np.random.Generator, with_beams: bool) -> dict[str, np.ndarray]:
    specs = sample_array_specs(T, len(FEATURES))
    s = {k: np.full((n, *shape), fill, dtype) for k, (shape, dtype, _, fill) in specs.items()}
    xy = np.stack([rng.uniform(-350, 350, n), rng.uniform(-250, 250, n)], 1).astype(np.float32)
    s["position_xy_m"] = xy
    for i in range(n):
        k = rng.integers(2, T + 1)
        s["cell_id"][i, :k] = rng.choice(CELL_IDS, k)
        s["features"][i, :k] = rng.normal([-90, 10], [10, 5], (k, 2))
        s["features"][i, 0, 1] = np.nan
        s["time_s"][i, :k] = np.arange(k)
        s["mask"][i, :k] = True
        s["event_xy_m"][i, :k] = xy[i]
        if with_beams:
            s["beam_id"][i, :k] = rng.integers(0, 4, k)
    s["scene_index"][:] = 0
    s["group_id"] = np.arange(n) % 5
    s["split_random"] = (np.arange(n) % 5 == 0).astype(np.uint8) * 2
    return s


def _write(path, n=40, maps=True, seed=0):
    rng = np.random.default_rng(seed)
    w = CorpusWriter(path, FEATURES, ("dBm", "dB"), T, split_schemes=("random",), chunk_samples=16)
    kwargs: dict[str, Any] = {}
    if maps:
        kwargs = {"radio_maps": _smooth(1, (2, *GRID.shape)), "radio_channels": ["rsrp_max_dbm", "sinr_serving_db"],
                  "semantic_maps": (_smooth(2, (1, *GRID.shape)) > 0).astype(np.float32),
                  "semantic_channels": ["building_mask"]}
        cm = _smooth(3, (len(CELL_IDS), len(FEATURES), *GRID.shape)) * 10 - 80
        cm[1, :, 30:, :40] = np.nan          # cell 11 not received in the north-west
        kwargs["cell_maps"] = cm
    w.add_scene("toy", GRID, None, cell_id=CELL_IDS, cell_xy_m=CELL_XY, **kwargs)
    w.append(_samples(n, rng, maps))
    return w.close()


@pytest.fixture(scope="module")
def corpus_url(tmp_path_factory):
    url = tmp_path_factory.mktemp("data") / "toy.zarr"
    _write(url)
    return str(url)


@pytest.fixture(scope="module")
def bare_url(tmp_path_factory):
    url = tmp_path_factory.mktemp("data") / "bare.zarr"
    _write(url, maps=False, seed=5)
    return str(url)


CFG = DataConfig(crop_size_m=300.0, crop_px=24, max_cells=2)


def test_batch_shapes_and_dtypes(corpus_url):
    ds = CorpusDataset([corpus_url], config=CFG)
    b = collate([ds[i] for i in range(5)])
    f, s = len(FEATURES), CFG.crop_px
    expect = {"cell_index": ((5, T), torch.long), "beam_index": ((5, T), torch.long),
              "time_s": ((5, T), torch.float32), "features": ((5, T, f), torch.float32),
              "feature_valid": ((5, T, f), torch.bool), "mask": ((5, T), torch.bool),
              "bs_xy": ((5, T, 2), torch.float32), "bs_valid": ((5, T), torch.bool),
              "maps": ((5, 3, s, s), torch.float32), "map_valid": ((5, 1, s, s), torch.bool),
              "phys_maps": ((5, 2, f, s, s), torch.float32), "phys_valid": ((5, 2, f, s, s), torch.bool),
              "event_slot": ((5, T), torch.long), "target_xy": ((5, 2), torch.float32),
              "crop_origin_m": ((5, 2), torch.float32), "crop_size_m": ((5,), torch.float32),
              "position_xy_m": ((5, 2), torch.float32), "scene_index": ((5,), torch.long),
              "index": ((5,), torch.long)}
    for key, (shape, dtype) in expect.items():
        assert tuple(b[key].shape) == shape, key
        assert b[key].dtype == dtype, key
    assert ds.map_channels == ["rsrp_max_dbm", "sinr_serving_db", "building_mask"]
    # Padding: no cell, no beam, no features, slot -1.
    pad = ~b["mask"]
    assert (b["cell_index"][pad] == 0).all() and (b["beam_index"][pad] == 0).all()
    assert (b["event_slot"][pad] == -1).all() and not b["feature_valid"][pad].any()
    assert not b["feature_valid"][:, 0, 1].any() and (b["features"][:, 0, 1] == 0).all()


def test_crop_holds_truth_and_maps_back_exactly(corpus_url):
    for training in (False, True):
        ds = CorpusDataset([corpus_url], config=CFG, training=training)
        b = collate([ds[i] for i in range(len(ds))])
        t = b["target_xy"].double()
        assert ((t >= 0) & (t <= 1)).all()
        # Not centred: the offsets spread over the allowed band.
        assert (t - 0.5).abs().max() > 0.2 and (t - 0.5).abs().max() <= 0.35 + 1e-6
        back = b["crop_origin_m"].double() + t * b["crop_size_m"].double()[:, None]
        np.testing.assert_allclose(back.numpy(), b["position_xy_m"].double().numpy(), atol=2e-4)
        truth = ds._corpus(0).batch(np.arange(len(ds)), ["position_xy_m"])["position_xy_m"]
        np.testing.assert_array_equal(b["position_xy_m"].numpy(), truth)


def test_eval_crops_deterministic_and_training_crops_vary_by_epoch(corpus_url):
    ev = CorpusDataset([corpus_url], config=CFG)
    assert torch.equal(ev[3]["crop_origin_m"], CorpusDataset([corpus_url], config=CFG)[3]["crop_origin_m"])
    tr = CorpusDataset([corpus_url], config=CFG, training=True)
    first = tr[3]["crop_origin_m"]
    assert torch.equal(first, tr[3]["crop_origin_m"])
    tr.set_epoch(1)
    assert not torch.equal(first, tr[3]["crop_origin_m"])


def test_map_pixel_equals_grid_sample_at_pixel_centre(corpus_url):
    """Convention: crop row r grows north; pixel [r, c] is the scene map at its centre."""
    ds = CorpusDataset([corpus_url], config=CFG)
    corpus = ds._corpus(0)
    scene = corpus.scene(0)
    raw = np.concatenate([scene.radio_maps, scene.semantic_maps])
    norm = ds.normalization
    s = CFG.crop_px
    for i in (0, 7, 19):
        item = ds[i]
        origin = item["crop_origin_m"].double().numpy()
        u = (np.arange(s) + 0.5) / s
        cx, cy = np.meshgrid(origin[0] + u * 300.0, origin[1] + u * 300.0)   # [S, S], row = north
        pts = np.stack([cx.ravel(), cy.ravel()], 1)
        want = GRID.sample(raw, pts).reshape(3, s, s)
        want = (want - np.asarray(norm.map_mean)[:, None, None]) / np.asarray(norm.map_std)[:, None, None]
        inside = GRID.contains(pts).reshape(s, s)
        assert (item["map_valid"][0].numpy() == inside).all()
        got = item["maps"].double().numpy()
        np.testing.assert_allclose(got[:, inside], want[:, inside], atol=1e-4)
        assert (got[:, ~inside] == 0).all()
        # And the same for the per-cell maps of the slots.
        slots = item["event_slot"].numpy()
        cells = corpus.batch([i], ["cell_id"])["cell_id"][0]
        for slot in range(2):
            ts = np.flatnonzero(slots == slot)
            if not len(ts):
                continue
            row = list(CELL_IDS).index(cells[ts[0]])
            want = GRID.sample(scene.cell_maps[row], pts).reshape(2, s, s)
            want = (want - np.asarray(norm.feature_mean)[:, None, None]) / np.asarray(norm.feature_std)[:, None, None]
            ok = np.isfinite(want) & inside[None]
            assert (item["phys_valid"][slot].numpy() == ok).all()
            np.testing.assert_allclose(item["phys_maps"][slot].double().numpy()[ok], want[ok], atol=1e-4)


def test_grid_sample_at_target_reads_the_truth_value(corpus_url):
    """The physics loss's read: grid_sample(phys_maps, 2*target_xy-1) = Grid.sample at the truth."""
    ds = CorpusDataset([corpus_url], config=DataConfig(crop_size_m=300.0, crop_px=150, max_cells=3))
    scene = ds._corpus(0).scene(0)
    norm = ds.normalization
    checked = 0
    for i in range(12):
        item = ds[i]
        b = collate([item])
        cells = ds._corpus(0).batch([i], ["cell_id"])["cell_id"][0]
        row = list(CELL_IDS).index(cells[np.flatnonzero(item["event_slot"].numpy() == 0)[0]])
        want = GRID.sample(scene.cell_maps[row], b["position_xy_m"].double().numpy())[:, 0]
        if not np.isfinite(want).all():
            continue
        want = (want - np.asarray(norm.feature_mean)) / np.asarray(norm.feature_std)
        g = crop_to_grid(b["target_xy"])[:, None, None, :]                    # [1, 1, 1, 2]
        got = nnf.grid_sample(b["phys_maps"][:, 0], g, align_corners=False)[0, :, 0, 0].double().numpy()
        # Crop pixels are 2 m against 10 m cells: bilinear of bilinear stays within a few %.
        np.testing.assert_allclose(got, want, atol=0.02 * np.abs(want).max() + 0.01)
        checked += 1
    assert checked >= 6


def test_slots_and_cells(corpus_url):
    ds = CorpusDataset([corpus_url], config=CFG)
    corpus = ds._corpus(0)
    arr = corpus.batch(np.arange(len(ds)), ["cell_id", "mask", "beam_id"])
    vocab = ds.cell_vocab
    assert vocab.to_list() == ["toy:7", "toy:11", "toy:42"] and len(vocab) == 4
    for i in range(len(ds)):
        item = ds[i]
        cells, mask = arr["cell_id"][i], arr["mask"][i]
        order = list(dict.fromkeys(cells[mask]))[:2]          # first two distinct cells
        want = np.array([order.index(c) if (m and c in order) else -1 for c, m in zip(cells, mask, strict=True)])
        np.testing.assert_array_equal(item["event_slot"].numpy(), want)
        np.testing.assert_array_equal(item["cell_index"].numpy(),
                                      np.where(mask, [list(CELL_IDS).index(c) + 1 if c >= 0 else 0 for c in cells], 0))
        np.testing.assert_array_equal(item["beam_index"].numpy(), np.where(mask, arr["beam_id"][i] + 1, 0))
        site = CELL_XY[[list(CELL_IDS).index(c) if c >= 0 else 0 for c in cells]]
        back = item["crop_origin_m"].double().numpy() + item["bs_xy"].double().numpy() * 300.0
        np.testing.assert_allclose(back[mask], site[mask], atol=1e-3)
        assert (item["bs_valid"].numpy() == mask).all()


def test_normalization_uses_corpus_stats(corpus_url):
    ds = CorpusDataset([corpus_url], config=CFG)
    corpus = ds._corpus(0)
    mean, std = np.asarray(corpus.stats["feature_mean"]), np.asarray(corpus.stats["feature_std"])
    np.testing.assert_allclose(ds.normalization.feature_mean, mean)
    np.testing.assert_allclose(ds.normalization.feature_std, std)
    raw = corpus.batch([2], ["features"])["features"][0]
    item = ds[2]
    ok = item["feature_valid"].numpy()
    np.testing.assert_allclose(item["features"].numpy()[ok], ((raw - mean) / std)[ok], rtol=1e-5, atol=1e-5)
    # Given statistics (from a checkpoint) win over the corpus's.
    fixed = Normalization(list(FEATURES), [0.0, 0.0], [2.0, 2.0], ds.map_channels, [0.0] * 3, [1.0] * 3)
    other = CorpusDataset([corpus_url], config=CFG, normalization=fixed.to_dict(),
                          cell_vocab=ds.state()["cell_vocab"])
    np.testing.assert_allclose(other[2]["features"].numpy()[ok], raw[ok] / 2, rtol=1e-5)
    with pytest.raises(InputError, match="features"):
        CorpusDataset([corpus_url], config=CFG,
                      normalization=Normalization(["x"], [0.0], [1.0]))


def test_one_statistics_rule_divides_by_n_and_pools_exactly(corpus_url):
    from learn.data.stats import compute_normalization, feature_statistics
    from twin.corpus.store import mean_std, moment_sums, open_corpus

    x = np.array([[1.0, 5.0], [3.0, np.nan], [8.0, 5.0]])
    valid = np.array([[True, True], [True, True], [False, True]])
    mean, std = mean_std(*moment_sums(x, valid, axis=(0,)))
    np.testing.assert_allclose(mean, [2.0, 5.0])
    np.testing.assert_allclose(std, np.array([np.std([1.0, 3.0]), 1.0]))  # divide by n; a constant feature gets 1
    assert mean_std(np.zeros(1), np.zeros(1), np.zeros(1)) == (0.0, 1.0)  # no value: mean 0, std 1
    # The corpus's stored stats (train part of its first split), their pooling and a split's
    # train part computed directly agree: one rule everywhere.
    corpus = open_corpus(corpus_url)
    train = corpus.split_indices(corpus.split_schemes[0], "train")
    direct = feature_statistics(corpus, train)
    np.testing.assert_allclose(direct[0], corpus.stats["feature_mean"], rtol=1e-6)
    np.testing.assert_allclose(direct[1], corpus.stats["feature_std"], rtol=1e-6)
    pooled = compute_normalization([corpus, corpus], stats_scenes=1)
    np.testing.assert_allclose(pooled.feature_mean, direct[0], rtol=1e-6)
    np.testing.assert_allclose(pooled.feature_std, direct[1], rtol=1e-6)


def test_one_crop_frame_for_pixels_cells_and_pictures():
    from learn.data.crops import CropFrame, pixel_centre
    from learn.data.resample import crop_grid
    from learn.heads import cell_centers
    from learn.heatmap import decode_argmax

    frame = CropFrame((100.0, -50.0), 600.0, 4)
    xs, ys = frame.centres_m()
    np.testing.assert_allclose(xs, [175.0, 325.0, 475.0, 625.0])  # (c + 0.5) / S of the side
    np.testing.assert_allclose(ys, [25.0, 175.0, 325.0, 475.0])
    np.testing.assert_allclose(frame.to_crop(frame.to_m(np.array([0.3, 0.9]))), [0.3, 0.9])
    # the dataset's resampling points, the coarse cells and the heatmap's argmax follow the same rule
    g, _ = crop_grid(np.array(frame.origin_m), frame.size_m, frame.px, GRID)
    w_m, h_m = GRID.size_m
    np.testing.assert_allclose((g[0, 0, :, 0].numpy() + 1) / 2 * w_m + GRID.x0_m, xs, rtol=1e-5)
    np.testing.assert_allclose((g[0, :, 0, 1].numpy() + 1) / 2 * h_m + GRID.y0_m, ys, rtol=1e-5)
    centres = cell_centers(4).numpy()                        # cell c = i * G + j
    np.testing.assert_allclose(centres[1 * 4 + 2], [pixel_centre(2, 4), pixel_centre(1, 4)])
    logits = torch.zeros(1, 4, 4)
    logits[0, 1, 2] = 1.0                                    # row 1 (north), column 2 (east)
    xy = decode_argmax(logits, torch.tensor([frame.origin_m]), torch.tensor([frame.size_m]))
    np.testing.assert_allclose(xy[0].numpy(), [xs[2], ys[1]])


def test_state_roundtrip_through_torch_save(corpus_url, tmp_path):
    ds = CorpusDataset([corpus_url], config=CFG)
    torch.save({"kind": "test", **ds.state()}, tmp_path / "c.pt")
    st = torch.load(tmp_path / "c.pt", weights_only=True)
    again = CorpusDataset([corpus_url], config=DataConfig.from_dict(st["data_config"]),
                          normalization=st["normalization"], cell_vocab=st["cell_vocab"])
    for k, v in ds[9].items():
        assert torch.equal(v, again[9][k]), k
    ext = CellVocab(st["cell_vocab"]).extended(["rome:1", "toy:7"])
    assert ext.index("toy", np.array([7, 42, -1])).tolist() == [1, 3, 0] and ext.index("rome", [1]).tolist() == [4]


def test_corpus_without_maps_works(bare_url, corpus_url):
    ds = CorpusDataset([bare_url], config=CFG)
    b = collate([ds[i] for i in range(4)])
    assert b["maps"].shape == (4, 0, 24, 24) and b["phys_maps"].shape == (4, 0, 2, 24, 24)
    assert not b["map_valid"].any() and (b["event_slot"] == -1).all()
    assert b["bs_valid"].equal(b["mask"])
    # Mixed with a mapped corpus: same channels (zeros, invalid) and K slots for every sample.
    mixed = CorpusDataset([corpus_url, bare_url], config=CFG)
    assert len(mixed) == 80
    b = collate(mixed.__getitems__([0, 45]))
    assert b["maps"].shape == (2, 3, 24, 24) and b["phys_maps"].shape == (2, 2, 2, 24, 24)
    assert b["map_valid"][0].any() and not b["map_valid"][1].any() and (b["maps"][1] == 0).all()
    assert b["corpus_index"].tolist() == [0, 1] and b["index"].tolist() == [0, 5]


def test_loader_two_workers_matches_single_process(corpus_url):
    for training in (False, True):
        ds = CorpusDataset([corpus_url], config=CFG, training=training)
        ds._corpus(0)        # a store opened in the parent must not leak into the workers
        one = list(make_loader(ds, batch_size=8, shuffle=True, num_workers=0, seed=3))
        two = list(make_loader(ds, batch_size=8, shuffle=True, num_workers=2, seed=3))
        assert len(one) == len(two) == 5
        for a, b in zip(one, two, strict=True):
            for k in a:
                assert torch.equal(a[k], b[k]), k


@pytest.mark.data
def test_real_rome_crop_slice(tmp_path):
    import pandas as pd

    from learn.importers import import_rome_crop
    from tests.conftest import shared_data

    src = shared_data("rome_crop", "rome_crop_knn_ready.csv")
    pd.read_csv(src).head(400).to_csv(tmp_path / "slice.csv", index=False)
    corpus, _ = import_rome_crop(tmp_path / "slice.csv", tmp_path / "c.zarr")
    ds = CorpusDataset([corpus.url], [corpus.split_indices("spatial", "train")], config=CFG, training=True)
    b = next(iter(make_loader(ds, batch_size=16, shuffle=True)))
    assert b["maps"].shape == (16, 0, 24, 24) and b["phys_maps"].shape[1] == 0
    assert b["bs_valid"].equal(b["mask"]) and (b["cell_index"][b["mask"]] > 0).all()
    assert ((b["target_xy"] >= 0) & (b["target_xy"] <= 1)).all()
    assert b["feature_valid"].any() and torch.isfinite(b["features"]).all()


def test_training_and_eval_helpers(corpus_url, bare_url):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Opts:           # a model preset's data section
        crop_size_m: float = 300.0
        crop_px: int = 24
        max_cells: int = 2

    train, val, info = build_training_data([corpus_url, bare_url], Opts(), "random", seed=1)
    assert len(train) == 64 and len(val) == 0 and train.training and not val.training
    assert info["n_features"] == 2 and info["map_channels"] == 3 and info["max_cells"] == 2
    assert info["n_cells"] == 4 and info["cell_vocab"] == ["toy:7", "toy:11", "toy:42"]
    ev = eval_dataset(corpus_url, np.array([3, 4]), {"crop_size_m": 300.0, "crop_px": 24, "max_cells": 2},
                      cell_vocab=info["cell_vocab"], data_info=info["data_info"])
    assert ev.normalization == train.normalization and len(ev) == 2
    assert ev[0]["index"].item() == 3
    with pytest.raises(InputError, match="no split scheme 'spatial'"):
        build_training_data([corpus_url], Opts(), "spatial")


def test_one_resampling_of_several_arrays_equals_one_per_array():
    """resample_crops: the planes of several arrays in one grid_sample give each array's own crop exactly."""
    from learn.data.resample import resample_crop, resample_crops

    rng = np.random.default_rng(3)
    cells = rng.normal(size=(4, 2, GRID.height, GRID.width)).astype(np.float32)
    cells[1, 0, 20:23, 30:33] = np.nan  # a hole: its NaN propagates to the pixels next to it, as Grid.sample
    scene = rng.normal(size=(1, 3, GRID.height, GRID.width)).astype(np.float32)
    origin, size, px = np.array([-150.0, -120.0]), 300.0, 24
    crops, inside = resample_crops([(scene, None), (cells, [3, 1]), (cells, [])], GRID, origin, size, px)
    assert [tuple(c.shape) for c in crops] == [(1, 3, px, px), (2, 2, px, px), (0, 2, px, px)]
    alone_scene, inside_scene = resample_crop(scene, GRID, origin, size, px)
    alone_cells, _ = resample_crop(cells, GRID, origin, size, px, [3, 1])
    torch.testing.assert_close(crops[0], alone_scene, rtol=0, atol=0)
    torch.testing.assert_close(crops[1], alone_cells, rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(crops[1][1, 0]).any() and torch.equal(inside, inside_scene) and bool(inside.all())
    u = (np.arange(px) + 0.5) / px
    cx, cy = np.meshgrid(origin[0] + u * size, origin[1] + u * size)
    want = GRID.sample(cells[3], np.stack([cx.ravel(), cy.ravel()], 1)).reshape(2, px, px)
    np.testing.assert_allclose(crops[1][0].double().numpy(), want, atol=1e-5)
    # a crop off the grid: zeros, nothing inside; nothing to sample: only where the crop lies
    off, off_inside = resample_crops([(cells, [0])], GRID, np.array([5000.0, 5000.0]), size, px)
    assert not off_inside.any() and not off[0].any()
    none, none_inside = resample_crops([(cells, [])], GRID, origin, size, px)
    assert none[0].shape == (0, 2, px, px) and torch.equal(none_inside, inside)
