"""Strict YAML configs and atomic writes."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from twin.config import from_dict, load_yaml, to_dict
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
    with atomic_dir(out) as tmp:
        (tmp / "done").write_text("x")
    assert (out / "done").exists()
    with pytest.raises(OutputExistsError):
        with atomic_dir(out):
            pass
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_file(tmp_path):
    with atomic_file(tmp_path / "a.csv") as tmp:
        tmp.write_text("a,b\n")
    assert (tmp_path / "a.csv").read_text() == "a,b\n"
