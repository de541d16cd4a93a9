"""The Rome-crop learning-curve benchmark's pieces (bench/bench_rome_curve.py) and the shared curve plot."""

from __future__ import annotations

import pytest

from bench.bench_localize import plot_error_curve
from bench.bench_rome_curve import parse_sets, run_label


def test_parse_sets_reads_yaml_values_per_section():
    over = parse_sets(["model.dropout=0.2", "train.lr=1e-3", "train.select_on=val_mean_m", "data.likelihood=false"])
    assert over == {"model": {"dropout": 0.2}, "train": {"lr": 1e-3, "select_on": "val_mean_m"},
                    "data": {"likelihood": False}}
    assert run_label(over) == "_data.likelihood=False_model.dropout=0.2_train.lr=0.001_train.select_on=val_mean_m"
    assert run_label({}) == ""


@pytest.mark.parametrize("bad", ["dropout=0.2", "model.dropout", ".dropout=1", "model.=1"])
def test_parse_sets_refuses_malformed_items(bad):
    with pytest.raises(SystemExit, match="SECTION.KEY=VALUE"):
        parse_sets([bad])


def test_plot_error_curve_writes_a_png(tmp_path):
    path = tmp_path / "curve.png"
    plot_error_curve([("run a", [2.0, 5.0, 10.0], [250.0, 230.0, 220.0]), ("run b", [2.0, 20.0], [240.0, 210.0])],
                     [("knn-square", 213.9), ("prior-only", 276.2)], path, "RMSE [m]", "title",
                     line_colours=[None, "C2"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
