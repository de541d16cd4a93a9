"""Point tables from files: CSV/TSV, Parquet/GeoParquet and GeoJSON, one reader for all.

BS files (``twin.radio.sites``), drive tests (``calibrate``, ``learn import drive-test``)
are tables of points; GeoJSON Point geometries and GeoParquet points become ``lon``,
``lat`` columns in WGS84 degrees, reprojected from the file's declared CRS (GeoJSON's
``crs`` member, GeoParquet's ``geo`` metadata) when it is another one.

:func:`read_drive_test_table` is the one drive-test reader of ``calibrate`` and ``learn``:
column names matched case-insensitively with aliases (``RSSI`` -> ``rssi_dbm``,
``latitude`` -> ``lat``, ``timestamp`` -> ``time`` ...), ``rssi_mw`` / ``rsrp_mw``
converted to dBm, positions required or optional (reports to localize have none).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.errors import InputError, StoreNotFoundError, collect

__all__ = ["read_point_table", "TABLE_SUFFIXES", "DRIVE_TEST_METRICS", "canonical_column",
           "canonical_drive_test", "read_drive_test_table"]

#: Measurement columns of a drive test (DESIGN.md, "Drive test").
DRIVE_TEST_METRICS = ("rssi_dbm", "rsrp_dbm", "rsrq_db", "sinr_db")
_ALIASES = {
    "rssi": "rssi_dbm", "rsrp": "rsrp_dbm", "rsrq": "rsrq_db", "sinr": "sinr_db",
    "nrsrp": "rsrp_dbm", "nrsrq": "rsrq_db", "nsinr": "sinr_db",
    "latitude": "lat", "longitude": "lon", "lng": "lon", "long": "lon",
    "uelatitude": "lat", "uelongitude": "lon",
    "x": "x_m", "y": "y_m", "cell": "cell_id", "cellid": "cell_id", "pci": "cell_id",
    "timestamp": "time", "t": "time",
}
_MW = {"rssi_mw": "rssi_dbm", "rsrp_mw": "rsrp_dbm"}


def canonical_column(name: str) -> str:
    """A drive-test column's canonical name (lower case, aliases resolved): ``"RSSI"`` -> ``"rssi_dbm"``."""
    key = str(name).strip().lower().replace(" ", "_")
    return _ALIASES.get(key.replace("_", ""), _ALIASES.get(key, key))


def canonical_drive_test(raw: pd.DataFrame, what: str = "drive test", positions: str = "required"
                         ) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Rename a drive test's columns to canonical names and convert milliwatt powers to dBm.

    Returns the table (index reset; row ``k`` is data row ``k`` of the file), notes on
    conversions, and the whole-file problems found (for one :class:`InputError`):
    duplicate columns after aliasing, both mW and dBm of one power, no ``cell_id``, no
    measurement column, and, with ``positions="required"``, no ``lon, lat`` nor ``x_m, y_m``.
    """
    df = raw.rename(columns={c: canonical_column(c) for c in raw.columns}).reset_index(drop=True)
    dup_cols = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if dup_cols:
        raise InputError(f"{what}: columns {', '.join(dup_cols)} appear twice (after matching aliases such as "
                         "RSSI -> rssi_dbm); keep one of each")
    notes: list[str] = []
    problems: list[str] = []
    for mw, dbm in _MW.items():
        if mw in df.columns:
            if dbm in df.columns:
                problems.append(f"both {mw!r} and {dbm!r} given; keep one")
                continue
            v = pd.to_numeric(df[mw], errors="coerce").astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                df[dbm] = np.where(v > 0, 10.0 * np.log10(v), np.nan)
            df = df.drop(columns=mw)
            notes.append(f"{mw} converted to {dbm} (10 log10 of milliwatts)")
    if "cell_id" not in df.columns:
        problems.append(f"missing column 'cell_id' (columns: {', '.join(map(str, raw.columns))})")
    has_position = {"lon", "lat"} <= set(df.columns) or {"x_m", "y_m"} <= set(df.columns)
    if positions == "required" and not has_position:
        problems.append("missing position columns: give 'lon', 'lat' (WGS84) or 'x_m', 'y_m' (scene metres)")
    if not any(m in df.columns for m in DRIVE_TEST_METRICS):
        problems.append(f"no measurement column; give any of {', '.join(DRIVE_TEST_METRICS)}")
    return df, notes, problems


def read_drive_test_table(path: str | os.PathLike, positions: str = "required") -> tuple[pd.DataFrame, list[str]]:
    """Read a drive test (CSV / Parquet / GeoJSON) with canonical columns (:func:`canonical_drive_test`).

    ``positions``: ``"required"`` or ``"optional"`` (reports without lon/lat, to localize).
    Raises one :class:`InputError` naming the file and every whole-file problem.
    """
    raw = read_point_table(path, "drive-test", expected="time, lon, lat, cell_id, rsrp_dbm ...")
    df, notes, problems = canonical_drive_test(raw, str(path), positions)
    if len(df) == 0:
        problems.append("no rows")
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems))
    return df, notes

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".geoparquet", ".geojson", ".json")


def _geojson(path: Path, as_strings: bool) -> pd.DataFrame:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid GeoJSON ({err})") from err
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" \
            or not isinstance(data.get("features"), list):
        raise InputError(f"{path}: expected a GeoJSON FeatureCollection of Point features")
    to_lonlat = _geojson_crs(path, data.get("crs"))
    rows, problems = [], []
    for k, feature in enumerate(data["features"]):
        props = dict(feature.get("properties") or {})
        geometry = feature.get("geometry") or {}
        coords = geometry.get("coordinates") or []
        if geometry.get("type") != "Point" or len(coords) < 2:
            problems.append(f"feature {k + 1}: geometry must be a Point (lon, lat)")
            continue
        if to_lonlat is not None:
            try:
                x, y = float(coords[0]), float(coords[1])
            except (TypeError, ValueError):
                problems.append(f"feature {k + 1}: coordinates {coords[:2]} are not numbers")
                continue
            coords = to_lonlat(x, y)
        props["lon"], props["lat"] = coords[0], coords[1]
        rows.append({key: ("" if v is None else str(v)) for key, v in props.items()} if as_strings else props)
    collect(problems, str(path))
    return pd.DataFrame(rows)


def _geojson_crs(path: Path, crs: Any) -> Callable[[float, float], tuple[float, float]] | None:
    """The reprojection to WGS84 lon/lat of a GeoJSON's declared ``crs`` member; None for WGS84 (or none).

    RFC 7946 GeoJSON is WGS84 lon/lat and has no ``crs``; the 2008 format's named CRS
    (``{"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3067"}}``) is
    honoured, in the GeoJSON axis order (easting/longitude first). Anything else
    (a linked CRS, an unknown name) is refused naming the file and the CRS.
    """
    if crs is None:
        return None
    name = crs.get("properties", {}).get("name") if isinstance(crs, dict) and crs.get("type") == "name" \
        and isinstance(crs.get("properties"), dict) else None
    if not isinstance(name, str):
        raise InputError(f"{path}: member 'crs' {json.dumps(crs)[:120]} is not a named CRS "
                         '({"type": "name", "properties": {"name": "EPSG:..."}}); give WGS84 lon/lat without \'crs\'')
    from pyproj import CRS, Transformer
    from pyproj.exceptions import CRSError

    try:
        declared = CRS.from_user_input(name)
    except CRSError as err:
        raise InputError(f"{path}: member 'crs': unknown CRS {name!r} ({err})") from err
    if declared.equals(CRS.from_epsg(4326), ignore_axis_order=True):
        return None
    if declared.is_geocentric or declared.is_vertical:
        raise InputError(f"{path}: member 'crs': {name!r} ({declared.name}) is not a horizontal CRS")
    transformer = Transformer.from_crs(declared, CRS.from_epsg(4326), always_xy=True)

    def to_lonlat(x: float, y: float) -> tuple[float, float]:
        lon, lat = transformer.transform(x, y)
        return float(lon), float(lat)

    return to_lonlat


def _parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    if b"geo" not in metadata:
        return pd.read_parquet(path)
    import geopandas as gpd

    gdf = gpd.read_parquet(path)
    if gdf.crs is not None and not gdf.crs.equals("EPSG:4326", ignore_axis_order=True):
        gdf = gdf.to_crs("EPSG:4326")  # any declared CRS, geographic ones (ETRS89 ...) included
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
