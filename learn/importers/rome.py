"""Importers of the real Rome NB-IoT drive tests: the full campaigns (.mat) and the crop (.csv).

* :func:`import_rome_nbiot` — Kousias et al. / De Nardis et al. 2023, six campaigns,
  three operators. Cells are NPCIs per operator (cell id ``mnc * 100000 + npci``); the
  base stations' positions are unknown (``cell_xy_m`` is NaN); features NRSRP, NRSRQ,
  NSINR, RSSI. One sample per measured location.
* :func:`import_rome_crop` — the Ostiense/Testaccio crop with the serving stations'
  positions (seed 004's Dataset A). Cells are the 10 stations; ``-90`` is the
  publishers' missing-station value and is read as missing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from learn.importers._build import (
    DEFAULT_SPLITS,
    ImportReport,
    Measurements,
    SceneSpec,
    SplitConfig,
    clean_feature_values,
    merge_duplicate_events,
    unique_points,
    write_measurements,
)
from twin.corpus.store import Corpus
from twin.errors import InputError, StoreNotFoundError
from twin.geo import SceneFrame

__all__ = ["import_rome_nbiot", "import_rome_crop", "NBIOT_FEATURES", "CROP_FEATURES"]

NBIOT_FEATURES = ("nrsrp_dbm", "nrsrq_db", "nsinr_db", "rssi_dbm")
CROP_FEATURES = ("rssi_dbm", "nsinr_db", "nrsrp_dbm", "nrsrq_db")
_UNITS = {"dbm": "dBm", "db": "dB"}
TOA_SENTINEL = 9999.6
CROP_SENTINEL = -90.0
# Columns of the per-location matrix in the .mat file.
_NPCI, _ENB, _RSSI, _NSINR, _NRSRP, _NRSRQ, _TOA, _MNC = range(8)


def _units(names: Sequence[str]) -> list[str]:
    return [_UNITS[n.rsplit("_", 1)[-1]] for n in names]


def _frame_at(lon: np.ndarray, lat: np.ndarray) -> SceneFrame:
    return SceneFrame.from_lonlat(float(np.mean(lon)), float(np.mean(lat)))


def _load_nbiot_rows(path: Path, report: ImportReport) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import scipy.io

    if not path.is_file():
        raise StoreNotFoundError(f"{path}: no such NB-IoT campaign file (.mat)")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except (ValueError, OSError, TypeError, scipy.io.matlab.MatReadError) as err:
        raise InputError(f"{path}: not a readable MATLAB file ({err})") from err
    if "dataSet" not in mat:
        raise InputError(f"{path}: no variable 'dataSet' (has {', '.join(k for k in mat if not k.startswith('__'))})")
    data = np.atleast_2d(mat["dataSet"])
    if data.size == 0:
        raise InputError(f"{path}: variable 'dataSet' is empty")
    if data.ndim != 2 or data.shape[1] < 3:
        raise InputError(f"{path}: variable 'dataSet' has shape {data.shape}, expected (locations, 16)")
    lats, lons, blocks = [], [], []
    for r in range(data.shape[0]):
        try:
            lat, lon = float(data[r, 0]), float(data[r, 1])
        except (TypeError, ValueError) as err:
            raise InputError(f"{path}: dataSet row {r}, columns 0-1 (latitude, longitude): not numbers") from err
        cells = np.asarray(data[r, 2], dtype=np.float64)
        if cells.size == 0:
            report.drop("locations without any cell row", 1)
            continue
        cells = np.atleast_2d(cells)
        if cells.shape[1] < 8:
            raise InputError(f"{path}: dataSet row {r}, column 2: cell matrix has {cells.shape[1]} columns, "
                             "expected 9 [NPCI, eNodeB_ID, RSSI, NSINR, NRSRP, NRSRQ, ToA, MNC, campaign]")
        lats.append(lat)
        lons.append(lon)
        blocks.append(cells)
    report.rows_read = int(sum(len(b) for b in blocks))
    return np.array(lats), np.array(lons), blocks  # type: ignore[return-value]


def import_rome_nbiot(path: str | os.PathLike, out: str | os.PathLike, operators: Sequence[int] | None = None,
                      splits: SplitConfig = DEFAULT_SPLITS, max_events: int | None = None,
                      overwrite: bool = False) -> tuple[Corpus, ImportReport]:
    """Import ``Campaign_data_NBIoT_*.mat`` into a corpus.

    Parameters
    ----------
    path : path
        The .mat file (variable ``dataSet``, one row per location).
    out : path
        The corpus to write (``.zarr``).
    operators : sequence of int, optional
        Keep only these MNCs (1, 10, 88); all by default.
    """
    path = Path(path)
    report = ImportReport(source=str(path))
    lat, lon, blocks = _load_nbiot_rows(path, report)
    bad_pos = ~(np.isfinite(lat) & np.isfinite(lon))
    report.drop("locations without a valid latitude/longitude", bad_pos.sum())
    keep_loc = np.flatnonzero(~bad_pos)
    loc_of_row = np.concatenate([np.full(len(blocks[k]), k) for k in keep_loc]) if len(keep_loc) else np.zeros(0, int)
    rows = np.concatenate([blocks[k] for k in keep_loc]) if len(keep_loc) else np.zeros((0, 9))
    report.drop("cell rows of locations without a valid position", report.rows_read - len(rows))
    toa_sentinel = np.isclose(rows[:, _TOA], TOA_SENTINEL)
    if toa_sentinel.any():
        report.notes.append(f"{int(toa_sentinel.sum())} ToA values are the sentinel {TOA_SENTINEL} "
                            "(ToA is not imported as a feature)")
    mnc = rows[:, _MNC].astype(np.int64)
    if operators is not None:
        other = ~np.isin(mnc, list(operators))
        report.drop(f"cell rows of operators other than {sorted(operators)}", other.sum())
        rows, mnc, loc_of_row = rows[~other], mnc[~other], loc_of_row[~other]
    features = rows[:, [_NRSRP, _NRSRQ, _NSINR, _RSSI]]
    features = clean_feature_values(features, NBIOT_FEATURES, report, source=str(path))
    no_rf = ~np.isfinite(features).any(axis=1)
    report.drop("cell rows seen only by ToA (no RF feature)", no_rf.sum())
    rows, mnc, loc_of_row, features = rows[~no_rf], mnc[~no_rf], loc_of_row[~no_rf], features[~no_rf]
    npci = rows[:, _NPCI].astype(np.int64)
    cell = mnc * 100000 + npci
    lonlat, point_of_loc = unique_points(lat[keep_loc], lon[keep_loc])
    report.drop("duplicate locations merged into one point", len(keep_loc) - len(lonlat))
    loc_index = np.full(len(lat), -1, np.int64)
    loc_index[keep_loc] = point_of_loc
    point, cell, features = merge_duplicate_events(loc_index[loc_of_row], cell, features, report)
    frame = _frame_at(lonlat[:, 0], lonlat[:, 1])
    x, y = frame.to_scene(lonlat[:, 0], lonlat[:, 1])
    n = len(lonlat)
    meas = Measurements(np.stack([x, y], 1), np.zeros(n), np.arange(n), point, cell, features)
    cell_ids = np.unique(cell)
    scene = SceneSpec(name="rome-nbiot", frame=frame, cell_id=cell_ids,
                      cell_xy_m=np.full((len(cell_ids), 2), np.nan))
    names = {str(c): f"MNC {c // 100000} NPCI {c % 100000}" for c in cell_ids.tolist()}
    corpus = write_measurements(
        meas, out, scene, NBIOT_FEATURES, _units(NBIOT_FEATURES), report, splits, max_events=max_events,
        attrs={"dataset": "rome-nbiot", "cell_names": names, "operators": sorted(set(mnc.tolist())),
               "cell_id_rule": "mnc * 100000 + npci"},
        overwrite=overwrite)
    return corpus, report


_CROP_COLUMNS = ("RSSI", "NSINR", "NRSRP", "NRSRQ", "BSLatitude", "BSLongitude", "UELatitude", "UELongitude")


def import_rome_crop(path: str | os.PathLike, out: str | os.PathLike, splits: SplitConfig = DEFAULT_SPLITS,
                     overwrite: bool = False) -> tuple[Corpus, ImportReport]:
    """Import ``rome_crop_knn_ready.csv`` (one row per UE location and base station) into a corpus."""
    import pandas as pd

    path = Path(path)
    report = ImportReport(source=str(path))
    if not path.is_file():
        raise StoreNotFoundError(f"{path}: no such Rome crop file (rome_crop_knn_ready.csv)")
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError as err:
        raise InputError(f"{path}: empty file (expected columns {', '.join(_CROP_COLUMNS)})") from err
    missing = [c for c in _CROP_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
                         f"(expected {', '.join(_CROP_COLUMNS)})")
    if len(table) == 0:
        raise InputError(f"{path}: no rows")
    report.rows_read = len(table)
    for c in _CROP_COLUMNS:
        values = pd.to_numeric(table[c], errors="coerce")
        bad = values.isna() & table[c].notna()
        if bad.any():
            raise InputError(f"{path} row {int(np.flatnonzero(bad)[0]) + 2}, column '{c}': "
                             f"{table[c][bad].iloc[0]!r} is not a number")
        table[c] = values
    pos_cols = ["BSLatitude", "BSLongitude", "UELatitude", "UELongitude"]
    bad_pos = ~np.isfinite(table[pos_cols].to_numpy()).all(axis=1)
    bad_pos |= (table["UELatitude"].abs() > 90).to_numpy() | (table["UELongitude"].abs() > 180).to_numpy()
    report.drop("rows without a valid UE/BS latitude/longitude", bad_pos.sum())
    table = table[~bad_pos]
    features = table[["RSSI", "NSINR", "NRSRP", "NRSRQ"]].to_numpy(np.float64)
    features = clean_feature_values(features, CROP_FEATURES, report, sentinels=(CROP_SENTINEL,),
                                    source=str(path))
    no_rf = ~np.isfinite(features).any(axis=1)
    report.drop("rows without any valid feature", no_rf.sum())
    table, features = table[~no_rf], features[~no_rf]
    ue_lonlat, point = unique_points(table["UELatitude"].to_numpy(), table["UELongitude"].to_numpy())
    bs_lonlat, cell = unique_points(table["BSLatitude"].to_numpy(), table["BSLongitude"].to_numpy())
    point, cell, features = merge_duplicate_events(point, cell, features, report,
                                                   "duplicate (UE, BS) rows merged by mean")
    frame = _frame_at(ue_lonlat[:, 0], ue_lonlat[:, 1])
    x, y = frame.to_scene(ue_lonlat[:, 0], ue_lonlat[:, 1])
    bx, by = frame.to_scene(bs_lonlat[:, 0], bs_lonlat[:, 1])
    n = len(ue_lonlat)
    meas = Measurements(np.stack([x, y], 1), np.zeros(n), np.arange(n), point, cell, features)
    scene = SceneSpec(name="rome-crop", frame=frame, cell_id=np.arange(len(bs_lonlat)),
                      cell_xy_m=np.stack([bx, by], 1), cell_size_m=5.0)
    names = {str(k): f"BS {lat:.6f}_{lon:.6f}" for k, (lon, lat) in enumerate(bs_lonlat.tolist())}
    corpus = write_measurements(meas, out, scene, CROP_FEATURES, _units(CROP_FEATURES), report, splits,
                                attrs={"dataset": "rome-crop", "cell_names": names}, overwrite=overwrite)
    return corpus, report
