"""Footprints to watertight 3D solids: repair, drop slivers, extrude with courtyards.

Footprints are triangulated by earcut through trimesh (correct for concave shapes and
holes, unlike a fan from one vertex); every part of a MultiPolygon becomes its own
solid. Meshes are merged per material, since thousands of shapes load slowly in Mitsuba.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from twin.errors import collect

if TYPE_CHECKING:  # trimesh (with scipy and networkx) only where meshes are made: tracing needs none
    import trimesh

__all__ = ["ExtrudeConfig", "RepairReport", "repair_footprint", "extrude_footprint", "ground_plane",
           "merge_meshes"]


@dataclass(frozen=True)
class ExtrudeConfig:
    """Geometry clean-up.

    Attributes
    ----------
    min_area_m2 : float
        Parts smaller than this are slivers and dropped (a 1 m² building scatters nothing).
    simplify_tolerance_m : float
        Vertices closer than this to the line through their neighbours are removed
        (OSM traces carry centimetre jitter that only adds triangles).
    min_width_m : float
        Parts thinner than this (area / half-perimeter) are slivers too.
    """

    min_area_m2: float = 2.0
    simplify_tolerance_m: float = 0.05
    min_width_m: float = 0.5

    def __post_init__(self) -> None:
        collect([f"{name}: {getattr(self, name)} must be >= 0"
                 for name in ("min_area_m2", "simplify_tolerance_m", "min_width_m") if not getattr(self, name) >= 0],
                "geometry config")


@dataclass
class RepairReport:
    """How many footprints were repaired or dropped, and why."""

    repaired: int = 0
    dropped: Counter | None = None

    def __post_init__(self) -> None:
        self.dropped = self.dropped or Counter()

    def drop(self, reason: str) -> None:
        assert self.dropped is not None
        self.dropped[reason] += 1


def _polygons(geometry: BaseGeometry) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [geometry]
    if isinstance(geometry, MultiPolygon):
        return list(geometry.geoms)
    if hasattr(geometry, "geoms"):
        return [p for g in geometry.geoms for p in _polygons(g)]
    return []


def repair_footprint(geometry: BaseGeometry | None, config: ExtrudeConfig, report: RepairReport) -> list[Polygon]:
    """Valid, simplified polygon parts of a footprint in metres, slivers removed.

    Invalid footprints (self-intersections, bow ties) are repaired with
    ``shapely.make_valid``; the report counts repairs and drops by reason.
    """
    if geometry is None or geometry.is_empty:
        report.drop("empty geometry")
        return []
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
        report.repaired += 1
    geometry = geometry.simplify(config.simplify_tolerance_m, preserve_topology=True)
    parts = []
    for part in _polygons(geometry):
        part = shapely.orient_polygons(part) if hasattr(shapely, "orient_polygons") else shapely.geometry.polygon.orient(part)
        if part.is_empty or part.area < config.min_area_m2:
            continue
        if part.area / (part.length / 2) < config.min_width_m:
            continue
        parts.append(part)
    if not parts:
        report.drop("sliver or degenerate footprint")
    return parts


def extrude_footprint(polygon: Polygon, min_height_m: float, height_m: float) -> trimesh.Trimesh:
    """A watertight prism from ``min_height_m`` to ``height_m`` over ``polygon`` (holes kept)."""
    import trimesh

    mesh = trimesh.creation.extrude_polygon(polygon, height_m - min_height_m)
    if min_height_m:
        mesh.apply_translation([0.0, 0.0, min_height_m])
    return mesh


def ground_plane(x_min: float, y_min: float, x_max: float, y_max: float, z_m: float = 0.0) -> trimesh.Trimesh:
    """Two triangles covering the rectangle at height ``z_m``, normal pointing up (+z)."""
    import trimesh

    vertices = np.array([[x_min, y_min, z_m], [x_max, y_min, z_m], [x_max, y_max, z_m], [x_min, y_max, z_m]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    return trimesh.Trimesh(vertices=vertices, faces=faces, process=False)


def merge_meshes(meshes: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    """One mesh holding all ``meshes`` (each stays a closed component)."""
    import trimesh

    # trimesh types the result as any Geometry; Trimesh inputs concatenate to a Trimesh.
    return cast(trimesh.Trimesh, trimesh.util.concatenate(meshes))
