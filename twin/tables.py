"""Point tables from files: CSV/TSV, Parquet/GeoParquet and GeoJSON, one reader for all.

BS files (``twin.radio.sites``), drive tests (``calibrate``, ``learn import drive-test``)
are tables of points; GeoJSON Point geometries and GeoParquet points become ``lon``,
``lat`` columns in WGS84 degrees.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from twin.errors import InputError, StoreNotFoundError, collect

__all__ = ["read_point_table", "TABLE_SUFFIXES"]

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".geoparquet", ".geojson", ".json")


def _geojson(path: Path, as_strings: bool) -> pd.DataFrame:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid GeoJSON ({err})") from err
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" \
            or not isinstance(data.get("features"), list):
        raise InputError(f"{path}: expected a GeoJSON FeatureCollection of Point features")
    rows, problems = [], []
    for k, feature in enumerate(data["features"]):
        props = dict(feature.get("properties") or {})
        geometry = feature.get("geometry") or {}
        coords = geometry.get("coordinates") or []
        if geometry.get("type") != "Point" or len(coords) < 2:
            problems.append(f"feature {k + 1}: geometry must be a Point (lon, lat)")
            continue
        props["lon"], props["lat"] = coords[0], coords[1]
        rows.append({key: ("" if v is None else str(v)) for key, v in props.items()} if as_strings else props)
    collect(problems, str(path))
    return pd.DataFrame(rows)


def _parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    if b"geo" not in metadata:
        return pd.read_parquet(path)
    import geopandas as gpd

    gdf = gpd.read_parquet(path)
    if gdf.crs is not None and not gdf.crs.is_geographic:
        gdf = gdf.to_crs("EPSG:4326")
    if len(gdf) and not gdf.geometry.geom_type.eq("Point").all():
        raise InputError(f"{path}: GeoParquet geometries must be Points (lon, lat)")
    table = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    table["lon"], table["lat"] = gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy()
    return table


def read_point_table(path: str | os.PathLike, what: str = "table", expected: str = "",
                     as_strings: bool = False) -> pd.DataFrame:
    """Read a table of points; :class:`StoreNotFoundError` (missing) or :class:`InputError` (unreadable) names the file.

    Parameters
    ----------
    path : path
        ``.csv``/``.tsv``/``.txt``, ``.parquet`` (GeoParquet points too) or ``.geojson``.
    what : str
        What the file is, for messages ("BS file", "drive test").
    expected : str
        The header a user should give, for the empty-file message.
    as_strings : bool
        Keep every value as text (CSV and GeoJSON), for validators that parse cells
        themselves and report the row and column of each bad one.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreNotFoundError(f"{path}: no such {what} file")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputError(f"{path}: unknown {what} format {suffix!r}; use .csv, .geojson or .parquet")
    if suffix in (".geojson", ".json"):
        return _geojson(path, as_strings)
    try:
        if suffix in (".parquet", ".pq", ".geoparquet"):
            table = _parquet(path)
            return table.astype(str) if as_strings else table
        options = {"dtype": str, "keep_default_na": False} if as_strings else {}
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", skipinitialspace=True, **options)
    except pd.errors.EmptyDataError as err:
        hint = f"; expected a header with {expected}" if expected else ""
        raise InputError(f"{path}: empty file{hint}") from err
    except (ValueError, OSError) as err:
        raise InputError(f"{path}: not readable as {suffix} ({err})") from err
