"""The hostile-input battery: damaged stores, racing writers, bad options and configs.

Each test feeds one hostile input a new user could produce (a deleted chunk, a flipped bit,
two writers on one output, an interrupted run ...) and asserts a clear error naming the
file, row or field, or that the good output is preserved.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.data.tiny_city.make import default_sites, make_scene, radio_fields
from twin import io
from twin.corpus.store import CorpusWriter, open_corpus, sample_array_specs
from twin.errors import InputError, TwinError
from twin.geo import Grid, SceneFrame
from twin.radio.maps import open_maps, write_maps
from twin.scene.build import load_twin_scene


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """A tiny scene and its maps written by the toolkit's own writer (sealed, checksummed)."""
    import pandas as pd
    import zarr

    root = tmp_path_factory.mktemp("hostile_city")
    scene_dir = make_scene(root / "scene")
    scene = load_twin_scene(scene_dir)
    mask = zarr.open_group(str(scene_dir / "layers.zarr"), mode="r")["building_mask"][:]
    x1, y1 = scene.extent_m[2:]
    xy = default_sites(x1, y1)
    fields = radio_fields(scene.grid, xy, mask)
    sites = pd.DataFrame({"bs_id": [f"s{k}" for k in range(len(xy))], "cell_id": [101 + 10 * k for k in range(len(xy))],
                          "x_m": xy[:, 0], "y_m": xy[:, 1], "height_m": 25.0, "azimuth_deg": 0.0})
    maps = write_maps(root / "maps.zarr", scene.grid, scene, sites, fields)
    return scene, maps, root


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _corpus(url: Path, n: int = 40, chunk: int = 16) -> Path:
    rng = np.random.default_rng(0)
    writer = CorpusWriter(url, ["rsrp_dbm"], ["dBm"], max_events=4, chunk_samples=chunk)
    writer.add_scene("s", Grid(0, 0, 4, 8, 6), SceneFrame.from_lonlat(24.9, 60.1))
    samples = {}
    for name, (trailing, dtype, _, _) in sample_array_specs(4, 1).items():
        samples[name] = (rng.normal(size=(n, *trailing)) * 10).astype(dtype)
    samples["mask"] = np.ones((n, 4), bool)
    samples["scene_index"] = np.zeros(n, np.int32)
    samples["split_random"] = (np.arange(n) % 3).astype(np.uint8)
    samples["split_spatial"] = (np.arange(n) % 3).astype(np.uint8)
    writer.append(samples)
    writer.close()
    return url


# ---- 1. missing chunks, bit flips, corrupt metadata -------------------------------------------------

def test_missing_map_chunk_is_refused_naming_the_array(city, tmp_path):
    _, maps, _ = city
    m = _copy(maps, tmp_path / "m.zarr")
    (m / "rsrp_dbm" / "c" / "3" / "0" / "0").unlink()
    with pytest.raises(InputError, match=r"m\.zarr: array 'rsrp_dbm' is incomplete: 3 of its 4 chunk files.*"
                                         r"missing rsrp_dbm/c/3/0/0"):
        open_maps(m)


def test_cli_sample_refuses_maps_with_a_missing_chunk(city, tmp_path):
    from click.testing import CliRunner

    from cli.twin import main

    scene, maps, _ = city
    m = _copy(maps, tmp_path / "m.zarr")
    (m / "rsrp_dbm" / "c" / "3" / "0" / "0").unlink()
    result = CliRunner().invoke(main, ["sample", "--scene", str(scene.path), "--maps", str(m),
                                       "--out", str(tmp_path / "c.zarr"), "--n", "50"])
    assert result.exit_code == 2, result.output
    assert "array 'rsrp_dbm' is incomplete" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "c.zarr").exists()


@pytest.mark.parametrize("array", ["features", "cell_id", "position_xy_m", "split_spatial"])
def test_missing_corpus_chunk_is_refused_naming_the_array(tmp_path, array):
    url = _corpus(tmp_path / "c.zarr")
    chunk = next((url / "samples" / array / "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    chunk.unlink()
    with pytest.raises(InputError, match=rf"c\.zarr: array 'samples/{array}' is incomplete"):
        open_corpus(url)


def test_fill_values_mark_missing_data(tmp_path):
    url = _corpus(tmp_path / "c.zarr")
    corpus = open_corpus(url)
    assert np.isnan(corpus.samples["features"].fill_value)
    assert np.isnan(corpus.samples["time_s"].fill_value)
    assert corpus.samples["split_spatial"].fill_value == 255  # not 'train'
    assert corpus.samples["scene_index"].fill_value == -1


def test_bit_flip_in_a_chunk_is_an_error_naming_the_chunk_file(city, tmp_path):
    _, maps, _ = city
    m = _copy(maps, tmp_path / "m.zarr")
    chunk = m / "rsrp_dbm" / "c" / "2" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))
    opened = open_maps(m)  # metadata and chunk count are fine
    with pytest.raises(InputError, match=r"m\.zarr/rsrp_dbm/c/2/0/0: chunk is corrupt"):
        opened["rsrp_dbm"]


def test_bit_flip_in_a_corpus_chunk_is_an_error(tmp_path):
    url = _corpus(tmp_path / "c.zarr")
    chunk = url / "samples" / "features" / "c" / "1" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[-8] ^= 0x01
    chunk.write_bytes(bytes(data))
    corpus = open_corpus(url)
    with pytest.raises(InputError, match=r"samples/features/c/1/0/0: chunk is corrupt"):
        corpus.batch(slice(0, 40), ["features"])


def test_corrupt_zarr_json_names_the_file(city, tmp_path):
    _, maps, _ = city
    m = _copy(maps, tmp_path / "m.zarr")
    (m / "zarr.json").write_text('{"zarr_format": 3, "node_type": "gr')
    with pytest.raises(InputError, match=r"m\.zarr/zarr\.json: corrupt Zarr metadata"):
        open_maps(m)
    c = _corpus(tmp_path / "c.zarr")
    (c / "zarr.json").write_bytes(b"\x00\xff garbage")
    with pytest.raises(InputError, match=r"c\.zarr/zarr\.json: corrupt Zarr metadata"):
        open_corpus(c)


def test_corrupt_layers_chunk_names_the_scene_store(city, tmp_path):
    import shutil

    scene, _, _ = city
    d = tmp_path / "scene"
    shutil.copytree(scene.path, d)
    (d / "layers.zarr" / "road_mask" / "c" / "0" / "0").unlink()
    with pytest.raises(InputError, match=r"layers\.zarr: array 'road_mask' is incomplete"):
        _ = load_twin_scene(d).layers


def test_xarray_opens_maps_without_warning(city):
    xr = pytest.importorskip("xarray", reason="xarray is not installed")
    _, maps, _ = city
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(str(maps))
    assert ds["rsrp_dbm"].dims == ("cell", "y", "x")
    assert set(ds.data_vars) >= {"rsrp_dbm", "serving_cell"}


def test_errors_are_twin_errors():
    assert issubclass(InputError, TwinError)


# ---- 2. two writers on one output; leftovers of killed writers --------------------------------------

def test_second_writer_of_one_output_fails_naming_the_path(tmp_path):
    from twin.errors import OutputExistsError

    out = tmp_path / "x.zarr"
    first = CorpusWriter(out, ["rsrp_dbm"], ["dBm"], max_events=4)
    with pytest.raises(OutputExistsError, match=r"x\.zarr is being written by another process"):
        CorpusWriter(out, ["rsrp_dbm"], ["dBm"], max_events=4, overwrite=True)
    first.add_scene("s", Grid(0, 0, 4, 8, 6))
    first.close()
    assert open_corpus(out).n_scenes == 1  # the first writer's output survives
    assert not (tmp_path / ".x.zarr.lock").exists()


def test_output_that_appeared_meanwhile_is_not_replaced(tmp_path):
    from twin.errors import OutputExistsError

    out = tmp_path / "bs.csv"
    with pytest.raises(OutputExistsError, match=r"bs\.csv appeared while this output was being written"):
        with io.atomic_file(out) as tmp:
            tmp.write_text("mine\n")
            out.write_text("theirs\n")  # another tool, not going through the lock
    assert out.read_text() == "theirs\n"
    assert [p.name for p in tmp_path.iterdir()] == ["bs.csv"]


def test_lock_of_a_killed_writer_does_not_block_and_its_partials_are_removed(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "maps.zarr"
    code = ("import os, sys; from twin import io\n"
            "with io.atomic_dir(sys.argv[1]) as tmp:\n"
            "    (tmp / 'half').write_text('x'); os._exit(9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=Path(__file__).parents[1])
    assert proc.returncode == 9
    left = [p.name for p in tmp_path.iterdir()]
    assert any(n.startswith(".maps.zarr.partial-") for n in left), left
    other = tmp_path / ".other.zarr.partial-keep"
    other.mkdir()
    with io.atomic_dir(out) as tmp:
        (tmp / "done").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.zarr.partial-keep", "maps.zarr"]
    assert (out / "done").read_text() == "ok"


def test_two_cli_writers_one_wins_the_other_names_the_output(city, tmp_path):
    import subprocess
    import sys

    scene, maps, _ = city
    out = tmp_path / "x.zarr"
    base = [sys.executable, "-m", "cli.twin", "sample", "--scene", str(scene.path), "--maps", str(maps),
            "--out", str(out)]
    cwd = Path(__file__).parents[1]
    a = subprocess.Popen([*base, "--n", "3000", "--seed", "1"], cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    b = subprocess.Popen([*base, "--n", "3000", "--seed", "2", "--mode", "drive"], cwd=cwd,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results = [(p.wait(timeout=300), p.stdout.read() if p.stdout else "") for p in (a, b)]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    loser = next(text for rc, text in results if rc == 2)
    assert "x.zarr" in loser and "Traceback" not in loser
    assert len(open_corpus(out)) == 3000


# ---- 3. learn pretrain: --overwrite interrupted, bad options and configs ----------------------------

def _run_files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_interrupted_overwrite_keeps_the_old_run_whole(tmp_path):
    from learn.train import load_run_config, train
    from tests.learn_batch import SyntheticDataset, synthetic_info

    def config(**kw):
        return load_run_config("small", {"data": {"crop_px": 32}, "train": {
            "num_workers": 0, "batch_size": 8, "log_every": 1, "val_batches": 1, **kw}})

    class Dies(SyntheticDataset):
        def __getitem__(self, i):
            if self.calls == 12:
                raise KeyboardInterrupt  # Ctrl-C in the second epoch, after a checkpoint
            self.calls += 1
            return super().__getitem__(i)

    ds = SyntheticDataset(16, s=32)
    run = tmp_path / "model"
    train([], config(epochs=1, val_batches=0), run, datasets=(ds, None, synthetic_info()), progress=False)
    before = _run_files(run)
    assert {"best.pt", "last.pt", "metrics.csv", "config.yaml"} <= set(before)
    dies = Dies(16, s=32)
    dies.calls = 0
    with pytest.raises(KeyboardInterrupt):
        train([], config(epochs=3, checkpoint_every=1), run, datasets=(dies, None, synthetic_info()),
              overwrite=True, progress=False)
    assert _run_files(run) == before  # old best.pt, last.pt, metrics.csv and config.yaml, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no half-built run left
    res = train([], config(epochs=1, val_batches=0), run, datasets=(ds, None, synthetic_info()), overwrite=True,
                progress=False)
    after = _run_files(run)
    assert res.steps == 2 and after["metrics.csv"] != before["metrics.csv"] and after["best.pt"] != before["best.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize(("option", "field"), [(["--epochs", "0"], "epochs: 0 must be >= 1"),
                                                (["--max-steps", "0"], "max_steps: 0 must be >= 1"),
                                                (["--lr", "-1"], "lr: -1.0 must be >= 0"),
                                                (["--batch-size", "0"], "batch_size: 0 must be >= 1")])
def test_pretrain_refuses_bad_options_naming_them(tmp_path, option, field):
    from click.testing import CliRunner

    from cli.learn import main

    url = _corpus(tmp_path / "c.zarr")
    result = CliRunner().invoke(main, ["pretrain", "--data", str(url), "--config", "small",
                                       "--out", str(tmp_path / "m"), *option])
    assert result.exit_code == 2 and field in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "m").exists()


def test_pretrain_refuses_an_invalid_model_config_naming_the_file(tmp_path):
    from click.testing import CliRunner

    from cli.learn import main

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("data: {crop_px: 100}\n")
    url = _corpus(tmp_path / "c.zarr")
    result = CliRunner().invoke(main, ["pretrain", "--data", str(url), "--config", str(cfg),
                                       "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "bad.yaml: data.crop_px: 100" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ---- 4. maps of another scene, duplicate YAML keys, dense count, README's import --------------------

def test_sample_refuses_maps_traced_on_another_scene_with_the_same_grid(city, tmp_path):
    from twin.corpus.sampler import SampleConfig, sample

    scene, maps, _ = city
    other = load_twin_scene(make_scene(tmp_path / "other", block_m=80.0))  # same 240 x 200 m grid
    assert other.grid == scene.grid and other.scene_id != scene.scene_id
    with pytest.raises(InputError, match=r"maps\.zarr: traced on another scene \(attribute 'scene_id'"):
        sample(other, str(maps), SampleConfig(n=20), tmp_path / "c.zarr")
    assert not (tmp_path / "c.zarr").exists()
    assert open_maps(maps).attrs["scene_id"] == scene.scene_id


def test_duplicate_keys_in_a_plan_are_refused_naming_the_line(tmp_path):
    from twin.generate.plan import load_plan

    plan = Path(__file__).parents[1] / "scenes" / "generate_plan.yaml"
    text = plan.read_text()
    assert "\n  rows: " in text
    bad = tmp_path / "plan.yaml"
    bad.write_text(text.replace("\n  rows: ", "\n  rows: 1\n  rows: ", 1))
    with pytest.raises(InputError, match=r"plan\.yaml: not valid YAML: duplicate key 'rows' \(line \d+; first at line"):
        load_plan(bad)


def test_duplicate_keys_in_any_config_are_refused(tmp_path):
    from learn.train import load_run_config
    from twin.config import load_yaml
    from twin.corpus.sampler import SampleConfig

    cfg = tmp_path / "sample.yaml"
    cfg.write_text("n: 100\nmode: drive\nn: 300\n")
    with pytest.raises(InputError, match=r"sample\.yaml: not valid YAML: duplicate key 'n' \(line 3; first at line 1\)"):
        load_yaml(SampleConfig, cfg)
    run = tmp_path / "run.yaml"
    run.write_text("train:\n  lr: 0.001\n  epochs: 2\n  lr: 0.1\n")
    with pytest.raises(InputError, match=r"run\.yaml: not valid YAML: duplicate key 'lr'"):
        load_run_config(str(run))


def test_dense_deploy_never_exceeds_count(city):
    from twin.radio.deployment import deploy

    scene, _, _ = city  # 240 x 200 m: 2 x 2 tiles of 150 m for crop_m 300
    with pytest.raises(InputError, match=r"count: 6 sites cannot give min_visible=3 .* 4 tiles.*--count 12"):
        deploy(scene, "dense", count=6, crop_m=300, min_spacing_m=10, cluster_radius_m=40)
    table = deploy(scene, "dense", count=13, crop_m=300, min_spacing_m=10, cluster_radius_m=40, sectors=1)
    assert table["bs_id"].nunique() == 13


def test_import_reads_a_bs_file_written_by_deploy_without_scene(city, tmp_path):
    import pandas as pd

    from learn.importers import import_drive_test
    from twin.radio.deployment import deploy_to_file

    scene, _, _ = city
    bs = tmp_path / "bs.csv"
    table = deploy_to_file(scene, "grid", bs, count=2, sectors=1, min_spacing_m=10)
    written = pd.read_csv(bs)
    assert {"lon", "lat", "x_m", "y_m"} <= set(written.columns)  # both pairs, x_m/y_m in the scene's frame
    # a drive test around the first site, away from the scene origin: its own frame differs
    ue_x, ue_y = np.array([30.0, 40.0, 50.0, 60.0]), np.array([5.0, 5.0, 5.0, 5.0])
    lon, lat = scene.frame.to_lonlat(ue_x + float(table["x_m"][0]), ue_y + float(table["y_m"][0]))
    rows = pd.DataFrame({"time": np.arange(4.0), "lon": lon, "lat": lat, "cell_id": int(table["cell_id"][0]),
                         "rsrp_dbm": [-80.0, -82.0, -84.0, -86.0]})
    rows.to_csv(tmp_path / "drive.csv", index=False)
    corpus, _ = import_drive_test(tmp_path / "drive.csv", bs, tmp_path / "real.zarr")
    grid_site = corpus.scene(0).cell_xy_m[0]
    ue = corpus.batch(slice(None))["position_xy_m"]
    # site-to-UE offsets are the scene's, whatever frame the corpus uses
    offsets = np.sort(ue[:, 0] - grid_site[0])
    np.testing.assert_allclose(offsets, [30, 40, 50, 60], atol=0.5)
    only_xy = tmp_path / "bs_xy.csv"
    written.drop(columns=["lon", "lat"]).to_csv(only_xy, index=False)
    with pytest.raises(InputError, match=r"bs_xy\.csv: positions are x_m, y_m in the frame of the scene"):
        import_drive_test(tmp_path / "drive.csv", only_xy, tmp_path / "real2.zarr")


# ---- 5. tracebacks: bad --out, huge grids, unreachable scheduler -------------------------------------

def test_out_under_a_regular_file_is_refused_before_reading_osm(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import twin.scene.osm as osm
    from cli.twin import main

    def no_read(*_a, **_k):
        raise AssertionError("the OSM file was read before the output was checked")

    monkeypatch.setattr(osm, "read_osm", no_read)
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(main, ["build-scene", "--out", str(tmp_path / "file" / "scene")])
    assert result.exit_code == 2, result.output
    assert f"{tmp_path / 'file' / 'scene'}: cannot write here: {tmp_path / 'file'} is a file" in result.output


def test_unwritable_folder_is_named(tmp_path, monkeypatch):
    # running as root ignores permissions: fake the check's answer and the kernel's refusal
    monkeypatch.setattr(io.os, "access", lambda *_a, **_k: False)
    with pytest.raises(InputError, match=r"bs\.csv: cannot write here: the folder .* is not writable"):
        io.check_output(tmp_path / "ro" / "bs.csv", overwrite=False)


def test_huge_grid_is_refused_naming_the_cell_size():
    from twin.geo import MAX_GRID_CELLS, Grid

    with pytest.raises(InputError, match=r"cell_size_m 0\.001 gives 1063000 x 1697000 .* use a cell size of at "
                                         r"least 0\.13\d* m \(--cell-size\)"):
        Grid.covering(-531.5, -848.5, 531.5, 848.5, 0.001)
    assert Grid.covering(-531.5, -848.5, 531.5, 848.5, 0.2).width * 8485 <= MAX_GRID_CELLS


def test_unreachable_scheduler_fails_before_overwrite_deletes_the_partial_run(tmp_path):
    import dask

    from twin.errors import EngineError
    from twin.generate.run import generate

    plan = Path(__file__).parents[1] / "scenes" / "generate_plan.yaml"
    out = tmp_path / "g.zarr"
    text = plan.read_text().replace("output: out/helsinki_corpus.zarr", f"output: {out}")
    (tmp_path / "plan.yaml").write_text(text)
    partial = tmp_path / "g.zarr.partial"
    partial.mkdir()
    (partial / "plan.json").write_text("{}")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(EngineError, match=r"--scheduler tcp://127\.0\.0\.1:9: cannot connect"):
        generate(tmp_path / "plan.yaml", scheduler="tcp://127.0.0.1:9", overwrite=True)
    assert (partial / "plan.json").exists()
