"""``learn pretrain | finetune | predict``: help, clean errors."""

from __future__ import annotations

import torch
from click.testing import CliRunner

import cli.learn  # noqa: F401  (registers the commands)
from cli.learn import main


def test_help_ends_with_example():
    runner = CliRunner()
    for cmd in ("pretrain", "finetune", "predict"):
        res = runner.invoke(main, [cmd, "--help"])
        assert res.exit_code == 0
        assert "Example:" in res.output and f"learn {cmd}" in res.output.split("Example:")[1]


def test_clean_errors(tmp_path):
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    res = runner.invoke(main, ["pretrain", "--data", "x.zarr", "--config", str(bad), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "epochz" in res.output and "Traceback" not in res.output
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    res = runner.invoke(main, ["predict", "--ckpt", str(broken), "--data", "x.zarr", "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 2 and "corrupted" in res.output
    torch.save({"kind": "heatmap", "schema_version": 1, "model": {}, "configs": {}, "step": 0}, tmp_path / "h.pt")
    res = runner.invoke(main, ["finetune", "--init", str(tmp_path / "h.pt"), "--data", "x.zarr",
                               "--out", str(tmp_path / "ft")])
    assert res.exit_code == 2 and "'heatmap' checkpoint" in res.output
