"""One error hierarchy: every toolkit error is a TwinError and the built-in a caller expects; the CLI prints it cleanly."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from cli.learn import main as learn_main
from cli.options import clean_errors
from cli.twin import main as twin_main
from twin.errors import (
    CheckpointError,
    EngineError,
    InputError,
    OutputExistsError,
    StoreNotFoundError,
    TwinError,
)


@pytest.mark.parametrize(("cls", "builtin"), [
    (InputError, ValueError), (StoreNotFoundError, FileNotFoundError), (OutputExistsError, FileExistsError),
    (EngineError, RuntimeError), (CheckpointError, RuntimeError),
])
def test_each_error_is_a_twin_error_and_its_builtin(cls, builtin):
    err = cls("out/x") if cls is OutputExistsError else cls("message")
    assert isinstance(err, TwinError) and isinstance(err, builtin)


def test_clean_errors_catches_the_base_and_leaves_bugs_alone():
    class Odd(TwinError):
        """A subclass that no list names."""

    @click.command()
    @click.option("--kind")
    @clean_errors
    def cmd(kind):
        raise Odd("odd problem") if kind == "odd" else ValueError("a bug")

    result = CliRunner().invoke(cmd, ["--kind", "odd"])
    assert result.exit_code == 2 and "Error: odd problem" in result.output
    result = CliRunner().invoke(cmd, ["--kind", "bug"])
    assert isinstance(result.exception, ValueError)  # a toolkit bug keeps its traceback


def test_bad_crop_px_is_a_clean_error_naming_the_field(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  patch_size: 16\ndata:\n  crop_px: 100\n")
    result = CliRunner().invoke(learn_main, ["pretrain", "--data", str(tmp_path / "none.zarr"), "--config",
                                             str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "data.crop_px: 100 is not a multiple of model.patch_size 16" in result.output
    assert str(config) in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_bad_model_field_names_the_file_and_the_field(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  d_map: 30\n  map_heads: 4\n")
    result = CliRunner().invoke(learn_main, ["pretrain", "--data", "x.zarr", "--config", str(config),
                                             "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert f"{config}" in result.output and "d_map: 30 is not a multiple of map_heads 4" in result.output


def test_a_missing_store_is_a_clean_store_not_found_error(tmp_path):
    missing = tmp_path / "missing.zarr"
    result = CliRunner().invoke(learn_main, ["eval", "--data", str(missing), "--baseline", "wknn"])
    assert result.exit_code == 2 and f"{missing}: no corpus here" in result.output
    result = CliRunner().invoke(twin_main, ["show-scene", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a.png")])
    assert result.exit_code == 2 and "not a scene directory" in result.output

    from twin.corpus.store import open_corpus

    with pytest.raises(FileNotFoundError, match="no corpus here"):  # a StoreNotFoundError is one
        open_corpus(missing)


def test_config_checks_name_the_field():
    from learn.model import ModelConfig
    from learn.train import TrainConfig
    from twin.scene.build import SceneConfig

    with pytest.raises(InputError, match=r"(?s)model config: .*crop_px: 100 is not a multiple of patch_size 16"):
        ModelConfig(crop_px=100)
    with pytest.raises(InputError, match="(?s)train config: .*warmup_frac \\+ decay_frac: 1.5 exceeds 1"):
        TrainConfig(warmup_frac=0.75, decay_frac=0.75)
    with pytest.raises(InputError, match="(?s)scene config: .*cell_size_m: 0 must be > 0"):
        SceneConfig(cell_size_m=0)
