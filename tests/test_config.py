"""Strict YAML configs and atomic writes."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from twin.config import field_default, from_dict, load_yaml, resolve_config, to_dict
from twin.errors import InputError, OutputExistsError
from twin.io import atomic_dir, atomic_file


@dataclass(frozen=True)
class Inner:
    size_m: float = 4.0
    mode: str = "a"


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    count: int = 3
    inner: Inner = field(default_factory=Inner)
    bbox: tuple[float, float, float, float] | None = None


def test_yaml_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: y\ninner:\n  size_m: 2\nbbox: [1, 2, 3, 4]\n")
    cfg = load_yaml(Outer, path)
    assert cfg == Outer(name="y", inner=Inner(size_m=2.0), bbox=(1.0, 2.0, 3.0, 4.0))
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  sise_m: 2\n")
    with pytest.raises(InputError, match=r"c\.yaml: key 'inner': unknown key\(s\) sise_m"):
        load_yaml(Outer, path)


def test_wrong_type_names_key():
    with pytest.raises(InputError, match="key 'count': expected an integer"):
        from_dict(Outer, {"count": "three"}, "plan.yaml")


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(out, kind="pictures") as tmp:
        (tmp / "done.png").write_text("x")
    assert (out / "done.png").exists()
    with pytest.raises(OutputExistsError):
        with atomic_dir(out, kind="pictures"):
            pass
    with atomic_dir(out, overwrite=True, kind="pictures") as tmp:  # --overwrite replaces our output of its kind
        (tmp / "new.png").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["new.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_file(tmp_path):
    with atomic_file(tmp_path / "a.csv") as tmp:
        tmp.write_text("a,b\n")
    assert (tmp_path / "a.csv").read_text() == "a,b\n"


def test_resolve_config_defaults_yaml_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("outer:\n  name: y\n  count: 5\n  inner:\n    mode: b\n")
    assert resolve_config(Outer) == Outer()
    # flags that are None were not given: the file's values stay; nested sections update key by key
    cfg = resolve_config(Outer, path, "outer", count=None, name="z", inner={"size_m": 2, "mode": None})
    assert cfg == Outer(name="z", count=5, inner=Inner(size_m=2.0, mode="b"))
    # a ready config is a starting point too, and flags are type-checked naming their source
    assert resolve_config(Outer, cfg, None, count=7).count == 7
    with pytest.raises(InputError, match=r"c\.yaml \(with command-line options\): key 'count': expected an integer"):
        resolve_config(Outer, path, "outer", count="many")
    with pytest.raises(InputError, match=r"command line: unknown key\(s\) colour"):
        resolve_config(Outer, None, None, colour="red")
    assert field_default(Outer, "inner") == Inner() and field_default(Outer, "count") == 3


def test_cli_help_defaults_come_from_the_dataclasses():
    from click.testing import CliRunner

    from cli.twin import main
    from twin.corpus.sampler import SampleConfig
    from twin.radio.deployment import DeployConfig

    text = " ".join(CliRunner().invoke(main, ["deploy", "--help"]).output.split())
    assert f"Sectors per site. [default: {DeployConfig().sectors}]" in text
    assert f"Minimum site spacing [m]. [default: {DeployConfig().min_spacing_m:g}]" in text
    text = " ".join(CliRunner().invoke(main, ["sample", "--help"]).output.split())
    assert f"Number of sequences. [default: {SampleConfig().n}]" in text
    assert "[default: " + ",".join(SampleConfig().features) + "]" in text
