"""Scene building (``twin build-scene``): OSM buildings and roads to a Sionna RT scene directory.

The data flow, one module each: :mod:`~twin.scene.osm` (read buildings and roads) →
:mod:`~twin.scene.heights` and :mod:`~twin.scene.materials` (per building) →
:mod:`~twin.scene.extrude` (watertight meshes) and :mod:`~twin.scene.layers` (GIS
rasters) → :mod:`~twin.scene.build` (``build_scene``: the scene directory, read back by
``load_twin_scene``). The names below are imported on first use (trimesh, shapely and
Mitsuba are not imported with the package).
"""

from importlib import import_module
from typing import Any

_LAZY = {
    **dict.fromkeys(["build_scene", "build_tiles", "scene_config", "load_twin_scene", "SceneConfig", "TwinScene",
                     "SCENE_SCHEMA_VERSION", "SCENE_KIND", "LAYERS_KIND", "LAYER_NAMES", "LAYER_UNITS",
                     "write_scene_files"], "twin.scene.build"),
    **dict.fromkeys(["read_osm", "OsmData"], "twin.scene.osm"),
    **dict.fromkeys(["estimate_heights", "HeightConfig"], "twin.scene.heights"),
    **dict.fromkeys(["assign_materials", "MaterialConfig"], "twin.scene.materials"),
    **dict.fromkeys(["extrude_footprint", "ExtrudeConfig"], "twin.scene.extrude"),
    **dict.fromkeys(["building_layers", "road_mask"], "twin.scene.layers"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
