"""GIS layers on the scene grid: building mask, building height and road mask.

A cell belongs to a footprint when its centre does. The grid is the one radio maps
are traced on, so layers and maps align cell for cell.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from twin.errors import InputError
from twin.geo import Grid

__all__ = ["rasterize", "building_layers", "road_mask", "ROAD_WIDTH_M"]

# Carriageway widths by highway class [m] (typical two-lane urban values), for the road mask.
ROAD_WIDTH_M: dict[str, float] = {
    "motorway": 14.0, "trunk": 12.0, "primary": 10.0, "secondary": 9.0, "tertiary": 8.0,
    "unclassified": 6.0, "residential": 6.0, "living_street": 5.0, "service": 4.0,
    "pedestrian": 6.0, "road": 6.0, "busway": 4.0, "cycleway": 2.5, "footway": 2.0, "path": 2.0,
    "steps": 2.0, "track": 3.0, "bridleway": 2.0, "corridor": 2.0,
}


def rasterize(geometries: Iterable[BaseGeometry], values: Iterable[float], grid: Grid,
              reduce: str = "max") -> np.ndarray:
    """Burn polygons into a ``(height, width)`` float array on ``grid`` (0 where none).

    Each geometry gives its value to the cells whose centres it contains; where
    geometries overlap, ``reduce`` (``"max"``) keeps the largest value.
    """
    out = np.zeros(grid.shape, dtype=np.float32)
    xc, yc = grid.x_centers_m(), grid.y_centers_m()
    for geometry, value in zip(geometries, values, strict=True):
        if geometry is None or geometry.is_empty:
            continue
        x0, y0, x1, y1 = geometry.bounds
        j0, j1 = np.searchsorted(xc, [x0, x1])
        i0, i1 = np.searchsorted(yc, [y0, y1])
        if j1 <= j0 or i1 <= i0:
            continue
        xx, yy = np.meshgrid(xc[j0:j1], yc[i0:i1])
        inside = shapely.contains_xy(geometry, xx, yy)
        window = out[i0:i1, j0:j1]
        if reduce == "max":
            np.maximum(window, np.where(inside, value, 0.0), out=window)
        else:
            raise InputError(f"rasterize: reduce {reduce!r} is not 'max' (the only one)")
    return out


def building_layers(footprints: Iterable[BaseGeometry], heights_m: Iterable[float], grid: Grid
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``building_mask`` (uint8) and ``building_height_m`` (float32, roof height) on ``grid``."""
    height = rasterize(list(footprints), list(heights_m), grid)
    return (height > 0).astype(np.uint8), height


def road_mask(lines: Iterable[BaseGeometry], highway: Iterable[str], grid: Grid) -> np.ndarray:
    """``road_mask`` (uint8): highways buffered by half their carriageway width."""
    areas = [line.buffer(ROAD_WIDTH_M.get(kind, 4.0) / 2, cap_style="flat") for line, kind in zip(lines, highway, strict=True)]
    return (rasterize(areas, [1.0] * len(areas), grid) > 0).astype(np.uint8)
