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


# ---- 6. weak spots: empty areas, foreign folders, angles, CRS, leftovers, n 0, checkpoint names ------

def test_bbox_outside_the_osm_file_is_refused_unless_allow_empty(tmp_path):
    from click.testing import CliRunner

    from cli.twin import main
    from tests.data.osm_fixtures import FRAME, write_geojson

    osm = write_geojson(tmp_path / "t.geojson")
    lon, lat = FRAME.to_lonlat([5000.0, 5200.0], [5000.0, 5200.0])  # 5 km away from the file's buildings
    bbox = f"{lon[0]},{lat[0]},{lon[1]},{lat[1]}"
    base = ["build-scene", "--osm-file", str(osm), "--bbox", bbox, "--out", str(tmp_path / "s")]
    result = CliRunner().invoke(main, base)
    assert result.exit_code == 2, result.output
    assert f"{osm}: no buildings in the bbox" in result.output and "--allow-empty" in result.output
    assert not (tmp_path / "s").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ground-only warning, asked for
        result = CliRunner().invoke(main, [*base, "--allow-empty"])
    assert result.exit_code == 0, result.output
    assert load_twin_scene(tmp_path / "s").meta["counts"]["buildings_built"] == 0


def _foreign(folder: Path) -> Path:
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work\n")
    return folder


@pytest.mark.parametrize("kind", ["scene", "maps", "corpus", "run", "report", "pictures", "any"])
def test_overwrite_refuses_a_folder_that_is_not_our_output(tmp_path, kind):
    from twin.errors import OutputExistsError

    folder = _foreign(tmp_path / "work")
    with pytest.raises(OutputExistsError, match=rf"{folder} does not look like .* refusing to --overwrite it"):
        with io.atomic_dir(folder, overwrite=True, kind=kind) as tmp:
            (tmp / "x").write_text("new")
    assert (folder / "thesis.tex").read_text() == "years of work\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_overwrite_replaces_our_own_output_and_empty_folders(city, tmp_path):
    from twin.errors import OutputExistsError

    scene, maps, _ = city
    m = _copy(maps, tmp_path / "m.zarr")
    with io.atomic_store(m, overwrite=True, kind="maps") as url:  # a maps store over a maps store
        (Path(url) / "zarr.json").write_text("{}")
    assert (m / "zarr.json").read_text() == "{}"
    with pytest.raises(OutputExistsError, match=r"c\.zarr does not look like a maps store"):
        with io.atomic_store(_corpus(tmp_path / "c.zarr"), overwrite=True, kind="maps"):
            pass  # a corpus is ours, but not a maps store
    (tmp_path / "empty").mkdir()
    with io.atomic_dir(tmp_path / "empty", overwrite=True, kind="scene") as tmp:
        (tmp / "scene.json").write_text("{}")
    io.check_ours(scene.path, "scene")
    io.check_ours(tmp_path / "nothing-here", "run")
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("mine: 1\n")  # a config alone is not a training run
    with pytest.raises(OutputExistsError, match=r"project does not look like a training run folder"):
        io.check_ours(project, "run")
    (project / "metrics.csv").write_text("step,loss\n")  # a run killed before its first checkpoint
    io.check_ours(project, "run")


def test_overwrite_of_foreign_folders_by_the_writers(city, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import twin.scene.osm as osm
    from cli.learn import main as learn_main
    from cli.twin import main as twin_main
    from twin.errors import OutputExistsError
    from twin.radio.deployment import deploy_to_file
    from twin.radio.maps import write_maps

    scene, maps, _ = city
    folder = _foreign(tmp_path / "work")
    monkeypatch.setattr(osm, "read_osm", lambda *_a, **_k: pytest.fail("the OSM file was read first"))
    result = CliRunner().invoke(twin_main, ["build-scene", "--out", str(folder), "--overwrite"])
    assert result.exit_code == 2 and f"{folder} does not look like a scene folder" in result.output, result.output
    result = CliRunner().invoke(twin_main, ["sample", "--scene", str(scene.path), "--maps", str(maps),
                                            "--out", str(folder), "--n", "20", "--overwrite"])
    assert result.exit_code == 2 and f"{folder} does not look like a corpus store" in result.output, result.output
    opened = open_maps(maps)
    with pytest.raises(OutputExistsError, match=rf"{folder} does not look like a maps store"):
        write_maps(folder, scene.grid, scene, opened.sites, {"path_gain_db": opened["path_gain_db"]}, overwrite=True)
    result = CliRunner().invoke(learn_main, ["pretrain", "--data", str(_corpus(tmp_path / "c.zarr")), "--config",
                                             "small", "--out", str(folder), "--overwrite"])
    assert result.exit_code == 2 and f"{folder} does not look like a training run" in result.output, result.output
    with pytest.raises(OutputExistsError, match=rf"{folder} is a folder; this output is a file"):
        deploy_to_file(scene, "grid", folder, count=2, sectors=1, overwrite=True)  # the CLI's click refuses it too
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"]


def test_generate_refuses_to_overwrite_a_foreign_output(tmp_path):
    from twin.generate.plan import check_plan, load_plan

    folder = _foreign(tmp_path / "g.zarr")
    plan = load_plan(Path(__file__).parents[1] / "scenes" / "generate_plan.yaml", output=str(folder))
    with pytest.raises(InputError, match=rf"output: {folder} does not look like a corpus store"):
        check_plan(plan, overwrite=True)


def test_remote_overwrite_refuses_a_foreign_store():
    import fsspec

    from twin.errors import OutputExistsError

    fs = fsspec.filesystem("memory")
    fs.pipe_file("/hostile/notes.txt", b"keep")
    with pytest.raises(OutputExistsError, match=r"memory://hostile does not look like a corpus store"):
        with io.atomic_store("memory://hostile", overwrite=True, kind="corpus"):
            pass
    assert fs.cat_file("/hostile/notes.txt") == b"keep"
    fs.rm("/hostile", recursive=True)


def test_azimuth_is_read_modulo_360(tmp_path):
    from twin.radio.sites import read_bs_file

    bs = tmp_path / "bs.csv"
    bs.write_text("bs_id,cell_id,x_m,y_m,azimuth_deg\na,1,0,0,720\na,2,0,0,-90\nb,3,5,5,370.5\nb,4,5,5,1e9\n")
    np.testing.assert_allclose(read_bs_file(bs)["azimuth_deg"], [0.0, 270.0, 10.5, 1e9 % 360])
    bs.write_text("bs_id,cell_id,x_m,y_m,azimuth_deg\na,1,0,0,inf\n")
    with pytest.raises(InputError, match=r"(?s)bs\.csv: 1 problem.*row 1, column 'azimuth_deg': inf is not finite"):
        read_bs_file(bs)


def _geojson_bs(path: Path, crs: object, xy: tuple[float, float]) -> Path:
    import json

    path.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": list(xy)},
         "properties": {"bs_id": "a", "cell_id": 7, "height_m": 30}}]}))
    return path


def test_geojson_declared_crs_is_honoured_or_refused_by_name(tmp_path):
    from pyproj import Transformer

    from twin.radio.sites import read_bs_file

    e, n = Transformer.from_crs(4326, 3067, always_xy=True).transform(24.9384, 60.1699)  # ETRS-TM35FIN metres
    projected = _geojson_bs(tmp_path / "tm35.geojson", {"type": "name",
                                                         "properties": {"name": "urn:ogc:def:crs:EPSG::3067"}}, (e, n))
    frame = SceneFrame.from_lonlat(24.9384, 60.1699)
    table = read_bs_file(projected, frame=frame)
    np.testing.assert_allclose(table[["lon", "lat"]].to_numpy(float)[0], [24.9384, 60.1699], atol=1e-9)
    np.testing.assert_allclose(table[["x_m", "y_m"]].to_numpy(float)[0], [0.0, 0.0], atol=1e-3)
    crs84 = _geojson_bs(tmp_path / "crs84.geojson", {"type": "name",
                                                     "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
                        (24.9384, 60.1699))
    assert float(read_bs_file(crs84, frame=frame)["lon"][0]) == pytest.approx(24.9384, abs=1e-12)
    unknown = _geojson_bs(tmp_path / "odd.geojson", {"type": "name", "properties": {"name": "EPSG:99999"}}, (1, 2))
    with pytest.raises(InputError, match=r"odd\.geojson: member 'crs': unknown CRS 'EPSG:99999'"):
        read_bs_file(unknown, frame=frame)
    linked = _geojson_bs(tmp_path / "link.geojson", {"type": "link", "properties": {"href": "http://x/crs"}}, (1, 2))
    with pytest.raises(InputError, match=r"link\.geojson: member 'crs' .* is not a named CRS"):
        read_bs_file(linked, frame=frame)


def test_geoparquet_in_another_geographic_crs_is_reprojected(tmp_path):
    gpd = pytest.importorskip("geopandas", reason="geopandas is not installed")
    from shapely.geometry import Point

    from twin.tables import read_point_table

    # ED50 (EPSG:4230) is geographic but not WGS84: its degrees are some 100 m off in Helsinki
    wgs84 = gpd.GeoSeries([Point(24.9384, 60.1699)], crs="EPSG:4326")
    ed50 = wgs84.to_crs("EPSG:4230")
    assert abs(float(ed50.x[0]) - 24.9384) + abs(float(ed50.y[0]) - 60.1699) > 5e-4
    gpd.GeoDataFrame({"bs_id": ["a"]}, geometry=ed50).to_parquet(tmp_path / "bs.parquet")
    table = read_point_table(tmp_path / "bs.parquet")
    assert float(table["lon"][0]) == pytest.approx(24.9384, abs=1e-6)
    assert float(table["lat"][0]) == pytest.approx(60.1699, abs=1e-6)


def test_leftovers_of_killed_writers_are_removed_by_the_next_writer(tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "c.zarr"
    code = ("import os, sys; from twin.corpus.store import CorpusWriter\n"
            "w = CorpusWriter(sys.argv[1], ['rsrp_dbm'], ['dBm'], max_events=4); os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", code, str(out)], cwd=Path(__file__).parents[1]).returncode == 9
    (tmp_path / ".c.zarr.old-4242").mkdir()  # a rename interrupted between its two moves
    (tmp_path / ".bs.csv.partial-x1.csv").write_text("half")  # a killed file writer
    assert any(p.name.startswith(".c.zarr.partial-") for p in tmp_path.iterdir())
    _corpus(out)
    with io.atomic_file(tmp_path / "bs.csv") as tmp:
        tmp.write_text("bs_id\n")
    assert sorted(os.listdir(tmp_path)) == ["bs.csv", "c.zarr"]


def test_n_zero_is_refused(city, tmp_path):
    from click.testing import CliRunner

    from calibrate.simulate import simulate_drive_test
    from cli.learn import main as learn_main
    from cli.twin import main as twin_main

    scene, maps, _ = city
    result = CliRunner().invoke(twin_main, ["sample", "--scene", str(scene.path), "--maps", str(maps),
                                            "--out", str(tmp_path / "c.zarr"), "--n", "0"])
    assert result.exit_code == 2 and "n: 0 must be at least 1" in result.output, result.output
    assert not (tmp_path / "c.zarr").exists()
    url = _corpus(tmp_path / "real.zarr")
    export = ["export", "drive-test", "--data", str(url), "--out", str(tmp_path / "u.csv"),
              "--truth", str(tmp_path / "t.csv")]
    for n in ("0", "-5"):  # -5 would silently drop the last five samples
        result = CliRunner().invoke(learn_main, [*export, "--n", n])
        assert result.exit_code == 2 and f"--n: {n} must be at least 1" in result.output, result.output
    from learn.importers import export_drive_test

    with pytest.raises(InputError, match=rf"{url}: no samples to export"):
        export_drive_test(url, tmp_path / "u.csv", tmp_path / "t.csv", np.array([], np.int64))
    assert not (tmp_path / "u.csv").exists()
    with pytest.raises(InputError, match=r"max_points: 0 must be at least 1"):
        simulate_drive_test(scene.path, None, max_points=0)


def test_config_weights_mismatch_names_the_checkpoint_file(tmp_path):
    import dataclasses

    from click.testing import CliRunner

    from cli.learn import main
    from learn.checkpoint import save_checkpoint
    from learn.model import ModelConfig, PosteriorModel

    cfg = ModelConfig(n_features=1, n_cells=8, map_channels=2, crop_px=32, d_radio=16, radio_layers=1, radio_heads=2,
                      d_map=16, map_layers=1, map_heads=2, d_fusion=16, fusion_heads=2, grid_size=4, d_cell=8,
                      head_hidden=16)
    model = PosteriorModel(cfg)
    wrong = dataclasses.asdict(dataclasses.replace(cfg, d_radio=32, radio_heads=4))
    ckpt = save_checkpoint(tmp_path / "mine.pt", {"model": model.state_dict(), "optimizer": None,
                                                  "configs": {"model": wrong}, "step": 1})
    url = _corpus(tmp_path / "c.zarr")
    result = CliRunner().invoke(main, ["eval", "--data", str(url), "--ckpt", str(ckpt)])
    assert result.exit_code == 2, result.output
    assert f"{ckpt}: weights do not match the model config" in result.output, result.output


def test_second_training_run_into_one_directory_fails_naming_it(tmp_path):
    from learn.train import load_run_config, train
    from tests.learn_batch import SyntheticDataset, synthetic_info
    from twin.errors import OutputExistsError

    run = tmp_path / "model"
    config = load_run_config("small", {"data": {"crop_px": 32}, "train": {"num_workers": 0, "batch_size": 8,
                                                                          "epochs": 1, "val_batches": 0}})
    with io.output_lock(run):  # another process training into it
        with pytest.raises(OutputExistsError, match=r"model is being written by another process"):
            train([], config, run, datasets=(SyntheticDataset(8, s=32), None, synthetic_info()), progress=False)
    assert not (run / "config.yaml").exists()


@pytest.mark.parametrize("content", ["random", "schema7"])
def test_bad_checkpoint_is_a_clear_error_in_eval_predict_and_finetune(tmp_path, content):
    import os

    import torch
    from click.testing import CliRunner

    from cli.learn import main

    ckpt = tmp_path / "bad.pt"
    if content == "random":
        ckpt.write_bytes(os.urandom(4096))
        want = f"{ckpt}: corrupted or not a torch checkpoint"
    else:
        torch.save({"kind": "posterior", "schema_version": 7, "model": {}, "configs": {}, "step": 0}, ckpt)
        want = f"{ckpt}: checkpoint schema_version 7, this toolkit reads 2"
    url = str(_corpus(tmp_path / "c.zarr"))
    for args in (["eval", "--data", url, "--ckpt", str(ckpt)],
                 ["predict", "--ckpt", str(ckpt), "--data", url, "--out", str(tmp_path / "p.csv")],
                 ["finetune", "--data", url, "--init", str(ckpt), "--out", str(tmp_path / "ft")]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and want in result.output, (args[0], result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "c.zarr"]
