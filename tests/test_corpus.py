"""The Zarr corpus: round trip, whole-chunk appends, statistics, schema checks, atomic output."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr

from twin.corpus.store import CorpusWriter, open_corpus, sample_array_specs
from twin.errors import InputError, OutputExistsError, StoreNotFoundError
from twin.geo import Grid, SceneFrame


def make_samples(n: int, t: int = 5, f: int = 2, seed: int = 0, start: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, (trailing, dtype, _, _) in sample_array_specs(t, f).items():
        out[name] = (rng.normal(size=(n, *trailing)) * 10).astype(dtype)
    out["mask"] = rng.random((n, t)) < 0.7
    out["group_id"] = np.arange(start, start + n)
    out["scene_index"] = np.zeros(n, np.int32)
    out["split_random"] = (np.arange(n) % 3).astype(np.uint8)
    out["split_spatial"] = np.zeros(n, np.uint8)
    return out


def test_round_trip_and_statistics(tmp_path):
    url = tmp_path / "c.zarr"
    grid = Grid(0, 0, 4, 8, 6)
    writer = CorpusWriter(url, ["rsrp_dbm", "sinr_db"], ["dBm", "dB"], max_events=5, chunk_samples=16,
                          config={"seed": 3})
    maps = np.arange(2 * 6 * 8, dtype=np.float32).reshape(2, 6, 8)
    k = writer.add_scene("s", grid, SceneFrame.from_lonlat(24.9, 60.1), radio_maps=maps,
                         radio_channels=["a", "b"], cell_id=np.array([11, 12]), cell_xy_m=[[0, 0], [5, 5]],
                         cell_maps=np.ones((2, 2, 6, 8)))
    assert k == 0
    parts = [make_samples(10, seed=s, start=10 * s) for s in range(4)]
    for p in parts:
        writer.append(p)
    assert not url.exists()  # built elsewhere until closed
    corpus = writer.close()
    assert len(corpus) == 40
    whole = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    got = corpus.batch([39, 0, 17])
    for name in whole:
        np.testing.assert_array_equal(got[name], whole[name][[39, 0, 17]])
    train = whole["split_random"] == 0
    feats = whole["features"][train]
    valid = whole["mask"][train][..., None] & np.isfinite(feats)
    mean = np.array([feats[..., i][valid[..., i]].mean() for i in range(2)])
    std = np.array([feats[..., i][valid[..., i]].std() for i in range(2)])
    assert np.allclose(corpus.stats["feature_mean"], mean, atol=1e-4)
    assert np.allclose(corpus.stats["feature_std"], std, atol=1e-4)
    expected = {name: int((whole["split_random"] == code).sum()) for code, name in enumerate(["train", "val", "test"])}
    assert corpus.attrs["counts"]["splits"]["random"] == expected == {"train": 16, "val": 12, "test": 12}
    np.testing.assert_array_equal(corpus.split_indices("random", "val"), np.flatnonzero(whole["split_random"] == 1))
    scene = corpus.scene(0)
    assert scene.grid == grid and scene.radio_channels == ["a", "b"]
    np.testing.assert_array_equal(scene.radio_maps, maps)
    assert scene.cell_maps.shape == (2, 2, 6, 8)
    assert corpus.attrs["config"] == {"seed": 3}
    # Chunked along samples, named by dimension (xarray opens it).
    arr = zarr.open_group(str(url), mode="r")["samples/features"]
    assert arr.chunks == (16, 5, 2)
    ds = xr.open_zarr(str(url / "samples"), consolidated=False)
    assert ds["features"].dims == ("sample", "event", "feature")
    assert corpus.torch_batch(slice(0, 4))["features"].shape == (4, 5, 2)


def test_preallocated_regions(tmp_path):
    writer = CorpusWriter(tmp_path / "c.zarr", ["x"], ["dB"], max_events=5, chunk_samples=8, n_samples=16)
    writer.add_scene("s", Grid(0, 0, 1, 2, 2))
    a, b = make_samples(8, f=1, seed=1), make_samples(8, f=1, seed=2)
    writer.write_at(8, b)
    writer.write_at(0, a)
    with pytest.raises(InputError, match="exceeds"):
        writer.write_at(12, a)
    corpus = writer.close()
    np.testing.assert_array_equal(corpus.batch(slice(8, 16))["features"], b["features"])


def test_bad_samples_and_failures_leave_nothing(tmp_path):
    url = tmp_path / "c.zarr"
    with pytest.raises(InputError, match="lack array"):
        with CorpusWriter(url, ["x"], ["dB"], max_events=5) as writer:
            bad = make_samples(3, f=1)
            del bad["mask"]
            writer.append(bad)
    assert not url.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="shape"):
        with CorpusWriter(url, ["x"], ["dB"], max_events=5) as writer:
            writer.append(make_samples(3, t=4, f=1))
    assert not url.exists()


def test_reader_checks_schema_and_completeness(tmp_path):
    with CorpusWriter(tmp_path / "ok.zarr", ["x"], ["dB"], max_events=5) as writer:
        writer.append(make_samples(3, f=1))
    group = zarr.open_group(str(tmp_path / "ok.zarr"), mode="r+")
    group.attrs["schema_version"] = 99
    with pytest.raises(InputError, match="schema_version 99"):
        open_corpus(tmp_path / "ok.zarr")
    group.attrs.update({"schema_version": 1, "complete": False})
    with pytest.raises(InputError, match="incomplete"):
        open_corpus(tmp_path / "ok.zarr")
    with pytest.raises(StoreNotFoundError, match="no corpus"):
        open_corpus(tmp_path / "missing.zarr")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        CorpusWriter(tmp_path / "ok.zarr", ["x"], ["dB"], max_events=5)


def test_xarray_and_dask_read_a_corpus_lazily_without_warnings(tmp_path):
    import warnings

    import dask.array as da

    writer = CorpusWriter(tmp_path / "c.zarr", ["rsrp_dbm", "rsrq_db"], ["dBm", "dB"], max_events=5, chunk_samples=8)
    writer.add_scene("s", Grid(0, 0, 1, 2, 2))
    writer.append(make_samples(40, seed=5))
    corpus = writer.close()
    expected = corpus.batch(slice(0, 40))["features"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "consolidated metadata not found" fallback
        ds = xr.open_zarr(str(tmp_path / "c.zarr"), group="samples")
        assert isinstance(ds["features"].data, da.Array)  # lazy: one dask chunk per Zarr chunk
        assert ds["features"].data.numblocks[0] == 5
        np.testing.assert_array_equal(ds["features"].values, expected)
        lazy = da.from_zarr(zarr.open_group(str(tmp_path / "c.zarr"), mode="r")["samples/features"])
        assert lazy.chunks[0] == (8,) * 5
        np.testing.assert_allclose(float(da.nanmean(lazy[..., 0]).compute()), np.nanmean(expected[..., 0]), rtol=1e-6)
