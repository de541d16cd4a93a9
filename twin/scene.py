"""A built scene directory (see ``docs/formats.md``): its frame, grid, GIS layers and geometry.

:func:`load_twin_scene` is how every later stage (deploy, trace, sample, calibrate,
generate) opens a scene built by :func:`twin.build_scene`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from twin.errors import InputError
from twin.geo import Grid, SceneFrame

__all__ = ["SCENE_SCHEMA_VERSION", "TwinScene", "load_twin_scene", "LAYER_NAMES"]

SCENE_SCHEMA_VERSION = 1
LAYER_NAMES = ("building_mask", "building_height_m", "road_mask")


@dataclass(frozen=True)
class TwinScene:
    """An opened scene directory.

    Attributes
    ----------
    path : Path
        The scene directory.
    meta : dict
        The content of ``scene.json``.
    frame : SceneFrame
        The lon/lat ↔ scene-metres transform.
    grid : Grid
        The raster grid of the GIS layers, reused by radio maps.
    """

    path: Path
    meta: dict[str, Any]
    frame: SceneFrame
    grid: Grid

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def xml_path(self) -> Path:
        return self.path / "scene.xml"

    @property
    def extent_m(self) -> tuple[float, float, float, float]:
        """``(x_min, y_min, x_max, y_max)`` of the requested area in scene metres."""
        x0, y0, x1, y1 = self.meta["extent_m"]
        return float(x0), float(y0), float(x1), float(y1)

    @cached_property
    def layers(self) -> dict[str, np.ndarray]:
        """GIS layers ``(height, width)`` on :attr:`grid`: building mask, building height [m], road mask."""
        import zarr

        group = zarr.open_group(str(self.path / "layers.zarr"), mode="r")
        return {name: group[name][:] for name in LAYER_NAMES}

    def buildings(self) -> Any:
        """Built footprints as a GeoDataFrame in scene metres (columns ``height_m``, ``material`` ...)."""
        return self._frame_to_scene(self.path / "buildings.parquet")

    def roads(self) -> Any:
        """OSM highways as a GeoDataFrame of LineStrings in scene metres (column ``highway`` ...)."""
        return self._frame_to_scene(self.path / "roads.parquet")

    def _frame_to_scene(self, file: Path) -> Any:
        import geopandas as gpd

        gdf = gpd.read_parquet(file)
        e0, n0 = self.frame.origin_projected_m
        gdf = gdf.set_geometry(gdf.geometry.translate(-e0, -n0))
        return gdf.set_crs(None, allow_override=True)

    def is_outdoor(self, xy_m: np.ndarray) -> np.ndarray:
        """Whether points ``(N, 2)`` [m] lie inside the grid and outside every building (by the mask)."""
        i, j, inside = self.grid.index_of(np.asarray(xy_m))
        return inside & (self.layers["building_mask"][i, j] == 0)

    def load_sionna(self, **kwargs: Any) -> Any:
        """Load ``scene.xml`` into a Sionna RT ``Scene`` (select the variant first)."""
        from twin._mitsuba import sionna_rt

        rt = sionna_rt()
        return rt.load_scene(str(self.xml_path), **kwargs)


def load_twin_scene(path: str | os.PathLike) -> TwinScene:
    """Open a scene directory written by ``twin build-scene``.

    Raises :class:`InputError` naming the directory when it is not a scene or of
    another schema version.
    """
    path = Path(path)
    meta_file = path / "scene.json"
    if not meta_file.is_file():
        raise InputError(f"{path}: not a scene directory (no scene.json); build one with `twin build-scene`")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{meta_file}: not valid JSON ({err})") from err
    if meta.get("kind") != "twin-scene":
        raise InputError(f"{meta_file}: not a twin scene (kind={meta.get('kind')!r})")
    if meta.get("schema_version") != SCENE_SCHEMA_VERSION:
        raise InputError(f"{meta_file}: schema_version {meta.get('schema_version')}, "
                         f"this toolkit reads {SCENE_SCHEMA_VERSION}; rebuild the scene")
    return TwinScene(path=path, meta=meta, frame=SceneFrame.from_dict(meta["frame"]),
                     grid=Grid.from_dict(meta["grid"]))
