"""Pictures people look at: scene top views and metric maps (PNG via matplotlib, Agg)."""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection, PatchCollection  # noqa: E402
from matplotlib.patches import PathPatch  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402

from twin.io import atomic_file  # noqa: E402

__all__ = ["plot_scene", "footprint_patches", "draw_roads", "save_figure"]


def _polygon_path(polygon: Any) -> MplPath:
    rings = [polygon.exterior, *polygon.interiors]
    vertices, codes = [], []
    for ring in rings:
        coords = list(ring.coords)
        vertices += coords
        codes += [MplPath.MOVETO] + [MplPath.LINETO] * (len(coords) - 2) + [MplPath.CLOSEPOLY]
    return MplPath(vertices, codes)


def footprint_patches(geometries: Any, values: Any | None = None, cmap: str = "viridis",
                      **kwargs: Any) -> PatchCollection:
    """Footprints (Polygon/MultiPolygon, courtyards kept) as a PatchCollection coloured by ``values``."""
    patches, colors = [], []
    values = list(values) if values is not None else [0.0] * len(geometries)
    for geometry, value in zip(geometries, values, strict=True):
        parts = geometry.geoms if hasattr(geometry, "geoms") else [geometry]
        for part in parts:
            patches.append(PathPatch(_polygon_path(part)))
            colors.append(value)
    collection = PatchCollection(patches, cmap=cmap, **kwargs)
    collection.set_array(colors)
    return collection


def draw_roads(ax: Any, roads: Any, **kwargs: Any) -> None:
    """Draw road LineStrings (scene metres) on ``ax``."""
    segments = [list(line.coords) for line in roads.geometry]
    ax.add_collection(LineCollection(segments, **{"colors": "0.55", "linewidths": 0.6, **kwargs}))


def save_figure(fig: Any, path: str | os.PathLike, overwrite: bool = True, dpi: int = 150) -> None:
    """Write ``fig`` as PNG atomically and close it."""
    with atomic_file(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_scene(scene: Any, out_png: str | os.PathLike, overwrite: bool = False) -> None:
    """Top view of a scene: footprints coloured by roof height, roads, the area's extent.

    Parameters
    ----------
    scene : TwinScene
    out_png : path
        PNG to write (refused if it exists unless ``overwrite``).
    """
    buildings, roads = scene.buildings(), scene.roads()
    x0, y0, x1, y1 = scene.extent_m
    fig, ax = plt.subplots(figsize=(8, 8 * (y1 - y0) / max(x1 - x0, 1.0) + 0.5))
    draw_roads(ax, roads)
    if len(buildings):
        patches = footprint_patches(list(buildings.geometry), buildings["height_m"], edgecolor="k", linewidths=0.2)
        ax.add_collection(patches)
        fig.colorbar(patches, ax=ax, label="roof height [m]", shrink=0.7)
    ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], "r--", lw=0.8, label="area")
    ax.set_xlim(x0 - 20, x1 + 20)
    ax.set_ylim(y0 - 20, y1 + 20)
    ax.set_aspect("equal")
    ax.set_xlabel("x east [m]")
    ax.set_ylabel("y north [m]")
    counts = scene.meta["counts"]
    ax.set_title(f"{scene.name}: {counts['buildings_built']} buildings, {counts['roads']} road segments")
    save_figure(fig, out_png, overwrite=overwrite)
