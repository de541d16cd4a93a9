"""Tiny scene directories in the format of ``docs/formats.md``, made by code for tests.

:func:`make_box_scene` writes a flat ground plane and a few box buildings (ITU
``concrete`` walls on ITU ``medium_dry_ground``), with ``scene.json``, ``layers.zarr``,
``buildings.parquet`` and ``roads.parquet``. ``ground=False`` and no boxes give an empty
scene (free space), the reference for Friis tests. The OSM scene builder replaces these
for realistic runs; other test modules reuse them::

    from tests.scenes import make_box_scene
    scene_dir = make_box_scene(tmp_path / "scene")

Run as a script to write the default scene: ``python -m tests.scenes OUT_DIR``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_BOXES", "HELSINKI_ORIGIN", "city_boxes", "city_streets", "make_box_scene"]

HELSINKI_ORIGIN = (24.944, 60.1716)
# (x_min, y_min, x_max, y_max, height_m) in scene metres
DEFAULT_BOXES: tuple[tuple[float, float, float, float, float], ...] = (
    (-120.0, 40.0, -40.0, 120.0, 25.0),
    (40.0, 40.0, 140.0, 100.0, 18.0),
    (-100.0, -140.0, 0.0, -60.0, 30.0),
    (60.0, -120.0, 120.0, -40.0, 12.0),
)
_GROUND_MATERIAL = "medium_dry_ground"
_BUILDING_MATERIAL = "concrete"


def city_boxes(half_size_m: float, block_m: float = 80.0, street_m: float = 20.0,
               heights_m: tuple[float, float] = (10.0, 35.0), seed: int = 0
               ) -> list[tuple[float, float, float, float, float]]:
    """A Manhattan grid of blocks ``block_m`` wide between ``street_m`` streets, random heights.

    For benchmarks standing in for a city scene: ``(x_min, y_min, x_max, y_max, height_m)``.
    """
    rng = np.random.default_rng(seed)
    pitch = block_m + street_m
    starts = np.arange(-half_size_m + street_m / 2, half_size_m - block_m, pitch)
    return [(float(x), float(y), float(x + block_m), float(y + block_m), float(rng.uniform(*heights_m)))
            for x in starts for y in starts]


def city_streets(half_size_m: float, block_m: float = 80.0, street_m: float = 20.0
                 ) -> list[tuple[str, list[tuple[float, float]]]]:
    """The named street centrelines between the blocks of :func:`city_boxes`: ``(name, [(x, y), ...])``.

    Each street is cut into ways at its crossings (as OSM ways are), so that the road graph
    has junctions; the ways of one street share its name.
    """
    pitch = block_m + street_m
    starts = np.arange(-half_size_m + street_m / 2, half_size_m - block_m, pitch)
    lines = [float(v) for v in starts[1:] - street_m / 2]
    cuts = [-half_size_m, *lines, half_size_m]
    out: list[tuple[str, list[tuple[float, float]]]] = []
    for k, c in enumerate(lines):
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            out.append((f"Street {k}", [(a, c), (b, c)]))
            out.append((f"Avenue {k}", [(c, a), (c, b)]))
    return out


def _write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Binary little-endian PLY with float32 vertices and int32 triangle faces."""
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    face_rec = np.zeros(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face_rec["n"] = 3
    face_rec["i"] = faces
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(np.asarray(vertices, dtype="<f4").tobytes())
        f.write(face_rec.tobytes())


def _box_mesh(x0: float, y0: float, x1: float, y1: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0],
                  [x0, y0, h], [x1, y0, h], [x1, y1, h], [x0, y1, h]], dtype=np.float64)
    # counter-clockwise seen from outside: outward normals
    f = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                  [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]])
    return v, f


def _scene_xml(shapes: list[tuple[str, str]]) -> str:
    mats = sorted({m for _, m in shapes})
    lines = ['<scene version="2.1.0">']
    for m in mats:
        lines += [f'  <bsdf type="itu-radio-material" id="mat-{m}">',
                  f'    <string name="type" value="{m}"/>',
                  '    <float name="thickness" value="0.2"/>', '  </bsdf>']
    for file, m in shapes:
        lines += [f'  <shape type="ply" id="mesh-{Path(file).stem}">',
                  f'    <string name="filename" value="{file}"/>',
                  '    <boolean name="face_normals" value="true"/>',
                  f'    <ref id="mat-{m}" name="bsdf"/>', '  </shape>']
    lines.append("</scene>")
    return "\n".join(lines) + "\n"


def make_box_scene(out: str | Path, *, half_size_m: float = 250.0, cell_size_m: float = 4.0,
                   boxes: Sequence[tuple[float, float, float, float, float]] = DEFAULT_BOXES,
                   ground: bool = True, origin_lonlat: tuple[float, float] = HELSINKI_ORIGIN,
                   ground_material: str = _GROUND_MATERIAL, name: str = "boxes",
                   roads: Sequence[tuple[str, list[tuple[float, float]]]] | None = None) -> Path:
    """Write a scene directory of box buildings on a flat ground; return its path.

    Parameters
    ----------
    out : path
        The directory to create (parents too); it must not hold a scene already.
    half_size_m : float
        The scene extent is ``[-half_size_m, half_size_m]^2`` [m] around the origin.
    cell_size_m : float
        The GIS grid's cell size [m].
    boxes : sequence of ``(x_min, y_min, x_max, y_max, height_m)``
        Buildings in scene metres.
    ground : bool
        Write the ground plane (else the scene holds only the boxes, or nothing).
    ground_material : str
        The ground's ITU material (``metal`` makes a perfect mirror for physics tests).
    origin_lonlat : (float, float)
        The scene origin in WGS84 degrees.
    roads : sequence of ``(name, [(x, y), ...])``, optional
        Named road polylines (e.g. :func:`city_streets`); default one east-west and one
        north-south street through the origin.
    """
    import geopandas as gpd
    from shapely.geometry import LineString, box

    from twin.geo import Grid, SceneFrame
    from twin.io import atomic_dir
    from twin.scene.build import write_scene_files

    out = Path(out)
    frame = SceneFrame.from_lonlat(*origin_lonlat)
    s = float(half_size_m)
    grid = Grid.covering(-s, -s, s, s, cell_size_m)

    # GIS layers by cell centre
    centers = grid.centers_m()
    mask = np.zeros(grid.shape, dtype=np.uint8)
    height = np.zeros(grid.shape, dtype=np.float32)
    for x0, y0, x1, y1, h in boxes:
        inside = ((centers[..., 0] >= x0) & (centers[..., 0] <= x1)
                  & (centers[..., 1] >= y0) & (centers[..., 1] <= y1))
        mask[inside] = 1
        height[inside] = h
    if roads is None:
        road_y = 0.0  # one east-west and one north-south street through the origin
        road_mask = ((np.abs(centers[..., 1] - road_y) < 6) | (np.abs(centers[..., 0]) < 6)).astype(np.uint8)
        road_gdf = gpd.GeoDataFrame({"highway": ["residential", "residential"]},
                                    geometry=[LineString([(-s, 0.0), (s, 0.0)]), LineString([(0.0, -s), (0.0, s)])])
    else:
        import shapely

        road_gdf = gpd.GeoDataFrame({"highway": ["residential"] * len(roads), "name": [n for n, _ in roads],
                                     "drivable": [True] * len(roads)},
                                    geometry=[LineString(c) for _, c in roads])
        pts = shapely.points(centers.reshape(-1, 2))
        near = shapely.union_all(list(road_gdf.geometry)).buffer(6.0)
        road_mask = shapely.contains(near, pts).reshape(grid.shape).astype(np.uint8)
    road_mask[mask == 1] = 0
    bld = gpd.GeoDataFrame(
        {"height_m": [float(b[4]) for b in boxes], "material": [_BUILDING_MATERIAL] * len(boxes)},
        geometry=[box(b[0], b[1], b[2], b[3]) for b in boxes])

    with atomic_dir(out) as tmp:
        (tmp / "meshes").mkdir()
        shapes: list[tuple[str, str]] = []
        if ground:
            m = s + 50.0  # a margin so that rays near the edge still meet the ground
            gv = np.array([[-m, -m, 0], [m, -m, 0], [m, m, 0], [-m, m, 0]], dtype=np.float64)
            _write_ply(tmp / "meshes" / "ground.ply", gv, np.array([[0, 1, 2], [0, 2, 3]]))
            shapes.append(("meshes/ground.ply", ground_material))
        if boxes:
            verts, faces = [], []
            for k, b in enumerate(boxes):
                v, f = _box_mesh(*b)
                verts.append(v)
                faces.append(f + 8 * k)
            _write_ply(tmp / "meshes" / f"buildings-{_BUILDING_MATERIAL}.ply",
                       np.concatenate(verts), np.concatenate(faces))
            shapes.append((f"meshes/buildings-{_BUILDING_MATERIAL}.ply", _BUILDING_MATERIAL))
        (tmp / "scene.xml").write_text(_scene_xml(shapes))
        write_scene_files(
            tmp, name=name, frame=frame, grid=grid, extent_m=(-s, -s, s, s),
            layers={"building_mask": mask, "building_height_m": height, "road_mask": road_mask},
            buildings=bld, roads=road_gdf,
            meta={"height_sources": {"fixture": len(boxes)},
                  "materials": {"ground": ground_material if ground else None,
                                "buildings": {_BUILDING_MATERIAL: len(boxes)}},
                  "source": "tests/scenes.py"})
        (tmp / "config.yaml").write_text(f"fixture: boxes\nhalf_size_m: {s}\ncell_size_m: {cell_size_m}\n")
    return out


if __name__ == "__main__":
    print(make_box_scene(sys.argv[1] if len(sys.argv) > 1 else "out/boxes"))
