"""The base-station file: one row per cell (sector), as CSV or GeoJSON.

Columns (``docs/trace.md``):

============== ======== ========================================================
column         default  meaning
============== ======== ========================================================
bs_id          required the site (mast); sectors of one site share it
cell_id        required integer, unique in the file; the id of the sector's cell
lon, lat       \\-      WGS84 degrees; or the scene position below
x_m, y_m       \\-      scene metres (``x``/``y`` also read); one position pair is needed
height_m       40       antenna height above the ground [m]
azimuth_deg    0        boresight, clockwise from (grid) north [deg], read modulo 360
tilt_deg       0        downtilt, positive downward [deg], in [-90, 90]
power_dbm      43       transmit power of the cell [dBm]
frequency_hz   1.8e9    carrier frequency [Hz]
bandwidth_hz   20e6     channel bandwidth [Hz]
pattern        tr38901  ``tr38901`` (3GPP TR 38.901 sector element) or ``iso``
============== ======== ========================================================

An empty cell of an optional column takes the default; other columns are kept and
written back unchanged. Every problem of a file is reported at once, each naming the
row (counted from 1, the header excluded) and the column.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.errors import InputError, StoreNotFoundError, collect
from twin.geo import SceneFrame
from twin.io import atomic_file
from twin.tables import read_point_table

__all__ = [
    "COLUMNS", "DEFAULTS", "PATTERNS", "read_bs_file", "write_bs_file", "validate_sites",
    "place_sites", "sites_from_records",
]

COLUMNS = ("bs_id", "cell_id", "lon", "lat", "x_m", "y_m", "height_m", "azimuth_deg", "tilt_deg",
           "power_dbm", "frequency_hz", "bandwidth_hz", "pattern")
DEFAULTS: dict[str, Any] = {
    "height_m": 40.0,       # seed 004, Dataset C: "10 BSs at 40 m height"
    "azimuth_deg": 0.0,
    "tilt_deg": 0.0,
    "power_dbm": 43.0,      # a 20 W macro cell
    "frequency_hz": 1.8e9,  # LTE band 3: sub-3 GHz as in seed 004, inside the ITU materials' ranges
    "bandwidth_hz": 20e6,
    "pattern": "tr38901",
}
PATTERNS = ("tr38901", "iso")
_PATTERN_ALIASES = {"tr38901": "tr38901", "3gpp": "tr38901", "iso": "iso", "isotropic": "iso"}
# (low, high, inclusive-high) plausibility ranges of the numeric columns
_RANGES: dict[str, tuple[float, float]] = {
    "height_m": (0.0, 1000.0),
    "tilt_deg": (-90.0, 90.0),
    "power_dbm": (-30.0, 90.0),
    "frequency_hz": (1e6, 1e12),
    "bandwidth_hz": (1e3, 1e10),
    "lon": (-180.0, 180.0),
    "lat": (-90.0, 90.0),
}
_NUMERIC = ("lon", "lat", "x_m", "y_m", "height_m", "azimuth_deg", "tilt_deg", "power_dbm",
            "frequency_hz", "bandwidth_hz")
_POSITION_TOL_M = 1.0


def validate_sites(raw: pd.DataFrame, what: str = "BS table") -> pd.DataFrame:
    """Parse and check a BS table of strings or numbers; return the canonical table.

    The result has the columns of :data:`COLUMNS` that apply (``lon``/``lat`` only
    when given) with defaults filled in, numeric dtypes, ``azimuth_deg`` in
    ``[0, 360)``, then every other column unchanged. Raises one :class:`InputError`
    listing every problem with its row and column.
    """
    raw = raw.rename(columns={c: c.strip() for c in raw.columns})
    raw = raw.rename(columns={"x": "x_m", "y": "y_m"})
    problems: list[str] = []
    for col in ("bs_id", "cell_id"):
        if col not in raw.columns:
            problems.append(f"missing required column {col!r} (columns: {', '.join(map(str, raw.columns))})")
    has_xy = {"x_m", "y_m"} <= set(raw.columns)
    has_ll = {"lon", "lat"} <= set(raw.columns)
    if not (has_xy or has_ll):
        problems.append("missing position columns: give 'lon', 'lat' (WGS84) or 'x_m', 'y_m' (scene metres)")
    if len(raw) == 0:
        problems.append("no rows")
    collect(problems, what)

    out = pd.DataFrame(index=range(len(raw)))

    def cell(k: int, col: str) -> Any:
        v = raw[col].iloc[k]
        return "" if v is None or (isinstance(v, float) and math.isnan(v) and col in DEFAULTS) else v

    out["bs_id"] = [str(v).strip() for v in raw["bs_id"]]
    for k, v in enumerate(out["bs_id"]):
        if v in ("", "nan", "None"):
            problems.append(f"row {k + 1}, column 'bs_id': empty")
    ids = []
    for k, v in enumerate(raw["cell_id"]):
        try:
            f = float(str(v).strip())
            if not math.isfinite(f) or f != int(f):
                raise ValueError
            ids.append(int(f))
        except ValueError:
            problems.append(f"row {k + 1}, column 'cell_id': {v!r} is not an integer")
            ids.append(-1)
    out["cell_id"] = np.asarray(ids, dtype=np.int64)
    seen: dict[int, int] = {}
    for k, cid in enumerate(ids):
        if cid in seen and cid != -1:
            problems.append(f"row {k + 1}, column 'cell_id': {cid} repeats row {seen[cid] + 1}")
        seen.setdefault(cid, k)

    for col in _NUMERIC:
        if col not in raw.columns and col not in DEFAULTS:
            continue
        values = np.full(len(raw), np.nan)
        for k in range(len(raw)):
            v = cell(k, col) if col in raw.columns else ""
            text = str(v).strip()
            if text == "":
                if col in DEFAULTS:
                    values[k] = DEFAULTS[col]
                else:
                    problems.append(f"row {k + 1}, column {col!r}: empty")
                continue
            try:
                f = float(text)
            except ValueError:
                problems.append(f"row {k + 1}, column {col!r}: {text!r} is not a number")
                continue
            if not math.isfinite(f):
                problems.append(f"row {k + 1}, column {col!r}: {text} is not finite (NaN or infinite)")
                continue
            lo, hi = _RANGES.get(col, (-math.inf, math.inf))
            if col == "azimuth_deg":
                f %= 360.0  # an angle: 720 and -90 are 0 and 270, as documented
            elif not lo <= f <= hi or (col in ("height_m", "frequency_hz", "bandwidth_hz") and f <= lo):
                problems.append(f"row {k + 1}, column {col!r}: {f:g} is outside the range ({lo:g}, {hi:g}]"
                                if col in ("height_m", "frequency_hz", "bandwidth_hz")
                                else f"row {k + 1}, column {col!r}: {f:g} is outside [{lo:g}, {hi:g}]")
                continue
            values[k] = f
        out[col] = values

    patterns = []
    for k in range(len(raw)):
        text = str(cell(k, "pattern")).strip().lower() if "pattern" in raw.columns else ""
        if text == "":
            patterns.append(DEFAULTS["pattern"])
        elif text in _PATTERN_ALIASES:
            patterns.append(_PATTERN_ALIASES[text])
        else:
            problems.append(f"row {k + 1}, column 'pattern': unknown antenna pattern {text!r}; "
                            f"use one of {', '.join(PATTERNS)}")
            patterns.append("")
    out["pattern"] = patterns
    collect(problems, what)

    extra = [c for c in raw.columns if c not in COLUMNS]
    for c in extra:
        out[c] = raw[c].to_numpy()
    order = [c for c in COLUMNS if c in out.columns] + extra
    return out[order]


def _resolve_positions(table: pd.DataFrame, scene: Any, what: str, frame: SceneFrame | None = None,
                       frame_of_xy: bool = True) -> pd.DataFrame:
    """Fill ``x_m, y_m`` from ``lon, lat`` (or back) through the scene's frame; check they agree.

    ``frame_of_xy=False``: ``frame`` is not the one the file's ``x_m, y_m`` were written in
    (a drive test's own frame, no scene): positions come from ``lon, lat`` alone, and a
    file with only ``x_m, y_m`` is refused.
    """
    table = table.copy()
    has_xy = "x_m" in table.columns and table["x_m"].notna().all()
    has_ll = "lon" in table.columns and table["lon"].notna().all()
    frame = scene.frame if scene is not None else frame
    if scene is None and frame is not None and not frame_of_xy:
        if not has_ll:
            raise InputError(f"{what}: positions are x_m, y_m in the frame of the scene the file was made for; "
                             "pass that scene (--scene DIR) or give columns 'lon, lat'")
        has_xy = False  # the x_m, y_m of another scene's frame: recomputed from lon, lat
    if frame is None:
        if not has_xy:
            raise InputError(f"{what}: positions are lon/lat; a scene is needed to place them in scene metres")
        return table
    if has_ll:
        x, y = frame.to_scene(table["lon"].to_numpy(), table["lat"].to_numpy())
        if has_xy:
            gap = np.hypot(x - table["x_m"].to_numpy(), y - table["y_m"].to_numpy())
            bad = np.flatnonzero(gap > _POSITION_TOL_M)
            collect([f"row {k + 1}, columns 'lon, lat' and 'x_m, y_m': they disagree by {gap[k]:.1f} m "
                     "in this scene's frame; keep one pair" for k in bad], what)
        table["x_m"], table["y_m"] = x, y
    else:
        lon, lat = frame.to_lonlat(table["x_m"].to_numpy(), table["y_m"].to_numpy())
        table["lon"], table["lat"] = lon, lat
    order = [c for c in COLUMNS if c in table.columns] + [c for c in table.columns if c not in COLUMNS]
    return table[order]


def place_sites(table: pd.DataFrame, scene: Any, on_building: str = "rooftop", mast_m: float = 3.0,
                what: str = "BS table") -> pd.DataFrame:
    """Check the sites against the scene: inside its grid, not inside a building.

    A site whose antenna is below the roof of the building it stands in is lifted to
    the roof plus ``mast_m`` when ``on_building="rooftop"`` (with a warning naming the
    rows), or rejected with an :class:`InputError` when ``"reject"``. Sites outside the
    scene's grid are always rejected.
    """
    if on_building not in ("rooftop", "reject"):
        raise InputError(f"on_building: {on_building!r} is not one of 'rooftop', 'reject'")
    table = table.copy()
    xy = table[["x_m", "y_m"]].to_numpy(dtype=np.float64)
    i, j, inside = scene.grid.index_of(xy)
    problems = [f"row {k + 1}: site ({xy[k, 0]:.1f}, {xy[k, 1]:.1f}) m lies outside the scene "
                f"{tuple(round(v, 1) for v in scene.grid.extent_m)}" for k in np.flatnonzero(~inside)]
    collect(problems, what)
    roof = np.where(scene.layers["building_mask"][i, j] > 0, scene.layers["building_height_m"][i, j], 0.0)
    low = np.flatnonzero(table["height_m"].to_numpy() <= roof)
    if len(low):
        rows = ", ".join(f"row {k + 1} ({table['height_m'].iloc[k]:g} m in a {roof[k]:g} m building)"
                         for k in low)
        if on_building == "reject":
            collect([f"row {k + 1}: the antenna ({table['height_m'].iloc[k]:g} m) is inside a building "
                     f"of {roof[k]:g} m; raise height_m or use on_building='rooftop'" for k in low], what)
        table.loc[table.index[low], "height_m"] = roof[low] + mast_m
        warnings.warn(f"{what}: moved to the rooftop (+{mast_m:g} m mast): {rows}", UserWarning, stacklevel=2)
    return table


def sites_from_records(records: list[dict[str, Any]], scene: Any = None, what: str = "BS table") -> pd.DataFrame:
    """Build a validated BS table from a list of dicts (the ``sites`` attribute of a maps store)."""
    table = validate_sites(pd.DataFrame(records), what)
    return _resolve_positions(table, scene, what)


def read_bs_file(path: str | os.PathLike, scene: Any = None, on_building: str | None = "rooftop",
                 mast_m: float = 3.0, frame: SceneFrame | None = None, frame_of_xy: bool = True) -> pd.DataFrame:
    """Read a BS file (``.csv``, ``.geojson`` or ``.json``) into a validated table.

    Parameters
    ----------
    path : path
        The file.
    scene : TwinScene, optional
        Gives the frame for lon/lat ↔ scene metres and the buildings; without it the
        file must hold ``x_m, y_m`` (or ``frame`` be given) and no placement check is made.
    on_building : {"rooftop", "reject", None}
        What to do with an antenna inside a building (see :func:`place_sites`);
        ``None`` skips the placement check.
    mast_m : float
        Mast above a roof for ``on_building="rooftop"`` [m].
    frame : SceneFrame, optional
        The frame for lon/lat positions when there is no scene (e.g. a drive test's own).
    frame_of_xy : bool
        Whether ``frame`` is the one the file's ``x_m, y_m`` are in. False (a drive test's
        own frame): ``lon, lat`` alone give the positions, as a file written by
        ``twin deploy`` holds both pairs, its ``x_m, y_m`` in its scene's frame.

    Returns
    -------
    DataFrame
        One row per cell with ``x_m, y_m`` (and ``lon, lat`` when a scene is given).
    """
    path = Path(path)
    if not path.is_file():
        raise StoreNotFoundError(f"{path}: no such BS file")
    raw = read_point_table(path, "BS", expected="bs_id, cell_id, lon, lat ...", as_strings=True)
    table = validate_sites(raw, str(path))
    table = _resolve_positions(table, scene, str(path), frame, frame_of_xy)
    if scene is not None and on_building is not None:
        table = place_sites(table, scene, on_building, mast_m, what=str(path))
    return table


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_bs_file(table: pd.DataFrame, path: str | os.PathLike, scene: Any = None,
                  overwrite: bool = False) -> Path:
    """Write a BS table as CSV (any other suffix) or GeoJSON (``.geojson``/``.json``), atomically.

    With a scene both ``lon, lat`` and ``x_m, y_m`` are written; GeoJSON needs lon/lat
    (from the table or through the scene). Raises :class:`OutputExistsError` when the
    file exists and not ``overwrite``.
    """
    path = Path(path)
    table = validate_sites(table, "BS table")
    table = _resolve_positions(table, scene, str(path)) if scene is not None else table
    geojson = path.suffix.lower() in (".geojson", ".json")
    if geojson and "lon" not in table.columns:
        raise InputError(f"{path}: GeoJSON needs lon/lat; pass the scene to convert x_m, y_m")
    with atomic_file(path, overwrite=overwrite) as tmp:
        if geojson:
            feats = []
            for rec in table.to_dict(orient="records"):
                lon, lat = rec.pop("lon"), rec.pop("lat")
                feats.append({"type": "Feature",
                              "geometry": {"type": "Point", "coordinates": [float(lon), float(lat)]},
                              "properties": {k: _jsonable(v) for k, v in rec.items()}})
            tmp.write_text(json.dumps({"type": "FeatureCollection", "features": feats}, indent=1))
        else:
            table.to_csv(tmp, index=False)
    return path
