"""Drive-test ingest: read, check, clean and project real measurements onto a scene.

Format (DESIGN.md, "Drive test"): long, one row per (point, cell), as CSV, GeoJSON
(Point features, properties as columns) or Parquet (plain columns or GeoParquet):

=============== ==================================================================
column          meaning
=============== ==================================================================
time            timestamp or seconds (optional; kept for the record)
lon, lat        WGS84 degrees; or ``x_m, y_m`` in scene metres
cell_id         integer; matched to the BS file's ``cell_id``
rssi_dbm        any of these four; ``rssi_mw`` / ``rsrp_mw`` are converted to dBm
rsrp_dbm
rsrq_db
sinr_db
=============== ==================================================================

Column names are matched case-insensitively, with a few aliases (``RSSI`` ->
``rssi_dbm``, ``latitude`` -> ``lat``, ``timestamp`` -> ``time`` ...); other columns are
kept. Whole-file problems raise one :class:`InputError` naming the file and column
(a missing column, powers in milliwatts under a dBm name, RSRP above RSSI in most
rows, lon/lat swapped); row problems drop the row and say why (:attr:`DriveTest.dropped`):
unparsable or missing values, values outside the 3GPP reporting ranges, points outside
the scene, cells missing from the BS file, duplicates, and spatial outliers (a value
more than ``outlier_db`` from the median of the cell's neighbouring points).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.errors import InputError
from twin.tables import DRIVE_TEST_METRICS, canonical_drive_test, read_point_table

__all__ = ["METRICS", "RANGES", "DriveTest", "read_drive_test", "clean_drive_test", "write_drive_test"]

METRICS = DRIVE_TEST_METRICS
#: Plausible reported ranges (NR TS 38.133 report mappings; RSSI, which licensed bands do not
#: report, from the thermal floor of a narrow carrier to a UE next to a mast).
RANGES: dict[str, tuple[float, float]] = {
    "rsrp_dbm": (-156.0, -31.0),
    "rssi_dbm": (-140.0, -10.0),
    "rsrq_db": (-43.0, 20.0),
    "sinr_db": (-23.0, 40.0),
}


@dataclass
class DriveTest:
    """A checked drive test in the scene frame.

    Attributes
    ----------
    rows : DataFrame
        Kept rows: ``row`` (1-based in the source, header excluded), ``time``, ``lon``,
        ``lat``, ``x_m``, ``y_m`` (scene metres), ``cell_id`` (int64), the metric columns
        present (float64, NaN where not given), then the source's other columns.
    dropped : DataFrame
        ``row``, ``cell_id`` (when readable) and ``reason`` of every dropped row.
    source : str
    notes : list of str
        Conversions and other remarks for the report.
    """

    rows: pd.DataFrame
    dropped: pd.DataFrame
    source: str = "drive test"
    notes: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(m for m in METRICS if m in self.rows.columns and self.rows[m].notna().any())

    def cell_ids(self) -> list[int]:
        return sorted(int(c) for c in self.rows["cell_id"].unique())

    def summary(self) -> dict[str, Any]:
        """Counts for the report: rows read, kept, dropped by reason, kept per cell."""
        reasons = Counter(_reason_kind(r) for r in self.dropped["reason"])
        return {"source": self.source, "rows_read": int(len(self.rows) + len(self.dropped)),
                "rows_kept": int(len(self.rows)), "rows_dropped": int(len(self.dropped)),
                "dropped_by_reason": dict(reasons.most_common()),
                "rows_per_cell": {int(k): int(v) for k, v in self.rows["cell_id"].value_counts().sort_index().items()},
                "notes": list(self.notes)}


def _reason_kind(reason: str) -> str:
    """The reason without its row-specific numbers: ``outlier``, ``outside the scene`` ..."""
    return reason.split(":")[0]


def _numeric(col: pd.Series) -> pd.Series:
    return pd.to_numeric(col, errors="coerce").astype(np.float64)


def read_drive_test(path: str | os.PathLike, scene: Any, bs_table: pd.DataFrame | None = None,
                    metric: str | None = None, outlier_db: float = 20.0, neighbours: int = 8) -> DriveTest:
    """Read a drive test file and clean it (see :func:`clean_drive_test`).

    Parameters
    ----------
    path : path
        ``.csv``, ``.geojson``/``.json`` or ``.parquet``.
    scene : TwinScene
        Its frame projects lon/lat; its grid bounds the kept points.
    bs_table : DataFrame, optional
        The BS table (``cell_id`` column): rows of other cells are dropped.
    metric : {"rssi", "rsrp", "rssi_dbm", "rsrp_dbm", ...}, optional
        Rows without this metric are dropped, and outliers are judged on it; when
        None, on RSSI and RSRP (SINR and RSRQ jump at sector boundaries by nature).
    outlier_db : float
        A value this far [dB] from the median of its cell's neighbouring points (and
        more than 5 robust standard deviations) is an outlier; ``inf`` turns the check off.
    neighbours : int
        Neighbours (same cell, within 100 m) that the median is taken over.
    """
    raw = read_point_table(path, "drive-test", expected="time, lon, lat, cell_id, rssi_dbm ...")
    return clean_drive_test(raw, scene, bs_table, metric, outlier_db, neighbours, str(path))


def clean_drive_test(raw: pd.DataFrame, scene: Any, bs_table: pd.DataFrame | None = None,
                     metric: str | None = None, outlier_db: float = 20.0, neighbours: int = 8,
                     what: str = "drive test") -> DriveTest:
    """Check, clean and project a drive-test table (already read into a DataFrame)."""
    df, notes, problems = canonical_drive_test(raw, what)  # the one reader's aliases and mW rules
    has_ll, has_xy = {"lon", "lat"} <= set(df.columns), {"x_m", "y_m"} <= set(df.columns)
    present = [m for m in METRICS if m in df.columns]
    want = _metric_column(metric) if metric else None
    if want and want not in df.columns and not problems:
        problems.append(f"no {want!r} column for --metric {metric} (measurements: {', '.join(present)})")
    if len(df) == 0:
        problems.append("no rows")
    if problems:
        raise InputError(f"{what}: " + "; ".join(problems))

    out = pd.DataFrame({"row": np.arange(1, len(df) + 1)})
    out["time"] = df["time"].to_numpy() if "time" in df.columns else np.nan
    for c in ("lon", "lat", "x_m", "y_m"):
        out[c] = _numeric(df[c]).to_numpy() if c in df.columns else np.nan
    cell = _numeric(df["cell_id"])
    out["cell_id"] = cell.to_numpy()
    for m in present:
        out[m] = _numeric(df[m]).to_numpy()
    extra = [c for c in df.columns if c not in out.columns]
    for c in extra:
        out[c] = df[c].to_numpy()

    _check_units(out, present, what)
    reasons = pd.Series([""] * len(out), index=out.index, dtype=object)

    def drop(mask: np.ndarray, reason: Any) -> None:
        mask = np.asarray(mask, bool) & (reasons == "").to_numpy()
        for k in np.flatnonzero(mask):
            reasons.iloc[k] = reason(k) if callable(reason) else reason

    bad_cell = ~np.isfinite(out["cell_id"]) | (np.mod(out["cell_id"].fillna(0.5), 1) != 0)
    drop(bad_cell.to_numpy(), lambda k: f"bad cell_id: {df['cell_id'].iloc[k]!r} is not an integer")
    for m in present:
        raw_bad = out[m].isna() & df[m].notna() & (df[m].astype(str).str.strip() != "")
        drop(raw_bad.to_numpy(), lambda k, m=m: f"bad value: {m} {df[m].iloc[k]!r} is not a number")
    if want:
        drop(out[want].isna().to_numpy(), f"no {want} value")
    else:
        drop(out[present].isna().all(axis=1).to_numpy(), "no measurement")
    for m in present:
        lo, hi = RANGES[m]
        v = out[m].to_numpy()
        drop(np.isfinite(v) & ((v < lo) | (v > hi)),
             lambda k, m=m, lo=lo, hi=hi: f"out of range: {m} {out[m].iloc[k]:g} outside [{lo:g}, {hi:g}]")
    if {"rssi_dbm", "rsrp_dbm"} <= set(present):
        drop((out["rsrp_dbm"] > out["rssi_dbm"]).to_numpy(),
             lambda k: f"rsrp above rssi: rsrp_dbm {out['rsrp_dbm'].iloc[k]:g} > rssi_dbm {out['rssi_dbm'].iloc[k]:g}")

    _project(out, scene, has_ll, has_xy, what)
    drop(~np.isfinite(out[["x_m", "y_m"]].to_numpy()).all(axis=1), "no position: lon/lat or x_m/y_m missing")
    inside = scene.grid.contains(np.nan_to_num(out[["x_m", "y_m"]].to_numpy(), nan=1e18))
    drop(~inside, lambda k: f"outside the scene: ({out['x_m'].iloc[k]:.0f}, {out['y_m'].iloc[k]:.0f}) m")
    if bs_table is not None:
        known = set(int(c) for c in bs_table["cell_id"])
        drop(~out["cell_id"].isin(known).to_numpy(),
             lambda k: f"cell not in the BS file: cell_id {int(out['cell_id'].iloc[k])}")

    key_cols = ["time", "x_m", "y_m", "cell_id"]
    ok = (reasons == "").to_numpy()
    sub = out.loc[ok, key_cols + present].astype({"time": str})
    exact = sub.duplicated(keep="first")
    # without a time, rows at one position with other values are repeat visits, not duplicates
    timed = out.loc[ok, "time"].notna().to_numpy()
    same_key = sub.duplicated(subset=key_cols, keep="first") & ~exact & timed
    first_of: dict[tuple[Any, ...], Any] = {}
    for idx, key in zip(sub.index, map(tuple, sub[key_cols].to_numpy()), strict=True):
        first_of.setdefault(key, idx)
    for idx in sub.index[exact.to_numpy()]:
        reasons.loc[idx] = f"duplicate: same as row {out['row'].loc[first_of[tuple(sub.loc[idx, key_cols])]]}"
    for idx in sub.index[same_key.to_numpy()]:
        reasons.loc[idx] = (f"duplicate: same time, position and cell as row "
                            f"{out['row'].loc[first_of[tuple(sub.loc[idx, key_cols])]]} with other values")
    if math.isfinite(outlier_db):
        # powers only: SINR and RSRQ legitimately jump by tens of dB across a sector boundary
        for m in [c for c in ([want] if want else present) if c in ("rssi_dbm", "rsrp_dbm")]:
            _flag_outliers(out, reasons, m, outlier_db, neighbours)

    keep = (reasons == "").to_numpy()
    dropped = pd.DataFrame({"row": out["row"].to_numpy()[~keep],
                            "cell_id": out["cell_id"].to_numpy()[~keep],
                            "reason": reasons.to_numpy()[~keep]})
    kept = out[keep].reset_index(drop=True)
    kept["cell_id"] = kept["cell_id"].astype(np.int64)
    if len(kept) == 0:
        top = Counter(_reason_kind(r) for r in dropped["reason"]).most_common(4)
        raise InputError(f"{what}: no usable rows; dropped " + ", ".join(f"{n} ({r})" for r, n in top)
                         + (f"; e.g. row {dropped['row'].iloc[0]}: {dropped['reason'].iloc[0]}" if len(dropped) else ""))
    return DriveTest(kept, dropped, what, notes)


def _metric_column(metric: str) -> str:
    m = metric.strip().lower()
    col = {"rssi": "rssi_dbm", "rsrp": "rsrp_dbm", "rsrq": "rsrq_db", "sinr": "sinr_db"}.get(m, m)
    if col not in METRICS:
        raise InputError(f"metric {metric!r}: use one of rssi, rsrp, rsrq, sinr")
    return col


def _check_units(out: pd.DataFrame, present: list[str], what: str) -> None:
    """Column-level unit checks: mW under a dBm name; RSRP and RSSI swapped."""
    problems = []
    for m in ("rssi_dbm", "rsrp_dbm"):
        if m not in present:
            continue
        v = out[m].to_numpy()
        v = v[np.isfinite(v)]
        if len(v) and (v > 0).all() and np.median(v) < 1.0:
            problems.append(f"column {m!r}: every value is positive and the median is {np.median(v):.3g}; "
                            f"these look like milliwatts, not dBm. Name the column {m[:4]}_mw to convert them")
        elif len(v) and (v > 0).mean() > 0.5:
            problems.append(f"column {m!r}: {100 * (v > 0).mean():.0f}% of the values are above 0 dBm; "
                            "received cellular powers are far below (check the unit)")
    if {"rssi_dbm", "rsrp_dbm"} <= set(present):
        both = out[["rsrp_dbm", "rssi_dbm"]].dropna()
        if len(both) >= 5 and (both["rsrp_dbm"] > both["rssi_dbm"]).mean() > 0.5:
            problems.append(f"RSRP is above RSSI in {100 * (both['rsrp_dbm'] > both['rssi_dbm']).mean():.0f}% of the "
                            "rows, but RSRP (per resource element) is always below RSSI (whole band): "
                            "are the columns 'rsrp_dbm' and 'rssi_dbm' swapped?")
    if problems:
        raise InputError(f"{what}: " + "; ".join(problems))


def _project(out: pd.DataFrame, scene: Any, has_ll: bool, has_xy: bool, what: str) -> None:
    """Fill x_m, y_m from lon/lat through the scene's frame (or lon/lat from x_m, y_m)."""
    frame = scene.frame
    if has_ll:
        lon, lat = out["lon"].to_numpy(), out["lat"].to_numpy()
        ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
        x = np.full(len(out), np.nan)
        y = np.full(len(out), np.nan)
        if ok.any():
            x[ok], y[ok] = frame.to_scene(lon[ok], lat[ok])
            inside = scene.grid.contains(np.stack([x[ok], y[ok]], 1))
            if inside.mean() < 0.5:
                ok2 = ok & (np.abs(lat) <= 180) & (np.abs(lon) <= 90)
                sx, sy = frame.to_scene(lat[ok2], lon[ok2])
                if scene.grid.contains(np.stack([sx, sy], 1)).mean() > 0.5:
                    raise InputError(f"{what}: most points fall outside the scene with lon={lon[ok][0]:g}, "
                                     f"lat={lat[ok][0]:g} but inside it with the two swapped: are the columns "
                                     "'lon' and 'lat' exchanged?")
        if has_xy:
            given = np.isfinite(out["x_m"].to_numpy())
            x = np.where(given, out["x_m"].to_numpy(), x)
            y = np.where(given, out["y_m"].to_numpy(), y)
        out["x_m"], out["y_m"] = x, y
    else:
        ok = np.isfinite(out["x_m"].to_numpy()) & np.isfinite(out["y_m"].to_numpy())
        lon = np.full(len(out), np.nan)
        lat = np.full(len(out), np.nan)
        if ok.any():
            lon[ok], lat[ok] = frame.to_lonlat(out["x_m"].to_numpy()[ok], out["y_m"].to_numpy()[ok])
        out["lon"], out["lat"] = lon, lat


def _flag_outliers(out: pd.DataFrame, reasons: pd.Series, m: str, outlier_db: float, neighbours: int) -> None:
    """Spatial Hampel filter per cell: far from the median of the nearest same-cell points."""
    from scipy.spatial import cKDTree

    ok = (reasons == "").to_numpy() & out[m].notna().to_numpy()
    for _cid, idx in out[ok].groupby("cell_id").groups.items():
        idx = np.asarray(idx)
        if len(idx) <= neighbours:
            continue
        xy = out.loc[idx, ["x_m", "y_m"]].to_numpy()
        v = out.loc[idx, m].to_numpy()
        dist, nn = cKDTree(xy).query(xy, k=neighbours + 1, distance_upper_bound=100.0)
        nn = nn[:, 1:]  # the point itself comes first
        valid = np.isfinite(dist[:, 1:])
        vals = np.where(valid, v[np.minimum(nn, len(v) - 1)], np.nan)
        enough = valid.sum(axis=1) >= max(3, neighbours // 2)
        with np.errstate(all="ignore"):
            med = np.nanmedian(vals, axis=1)
            mad = 1.4826 * np.nanmedian(np.abs(vals - med[:, None]), axis=1)
        dev = np.abs(v - med)
        bad = enough & (dev > outlier_db) & (dev > 5.0 * mad)
        for k in np.flatnonzero(bad):
            reasons.loc[idx[k]] = (f"outlier: {m} {v[k]:g} is {dev[k]:.0f} dB from the median "
                                   f"{med[k]:.0f} of {int(valid[k].sum())} neighbours")


def write_drive_test(rows: pd.DataFrame, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write drive-test rows as CSV, GeoJSON (``.geojson``/``.json``, needs lon/lat) or Parquet, atomically."""
    from twin.io import atomic_file

    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_file(path, overwrite=overwrite) as tmp:
        if suffix in (".geojson", ".json"):
            feats = []
            for rec in rows.to_dict(orient="records"):
                lon, lat = rec.pop("lon"), rec.pop("lat")
                props = {k: (None if isinstance(v, float) and not math.isfinite(v) else
                             v.item() if isinstance(v, np.generic) else v) for k, v in rec.items()}
                feats.append({"type": "Feature", "properties": props,
                              "geometry": {"type": "Point", "coordinates": [float(lon), float(lat)]}})
            tmp.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
        elif suffix in (".parquet", ".pq"):
            rows.to_parquet(tmp, index=False)
        else:
            rows.to_csv(tmp, index=False)
    return path
