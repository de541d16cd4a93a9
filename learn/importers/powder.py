"""Importer of the POWDER RSS localization set (Salt Lake City, 462.7 MHz).

The handheld transmitter is the UE; the stationary receivers play the cells (their
positions are known, cell id = index of the receiver name in sorted order, names in
the corpus attribute ``cell_names``). RSS is uncalibrated per receiver, so the feature
is ``rss_db`` (relative dB, not dBm). ``-101`` means not received. Mobile (bus)
receivers are dropped: their position changes from sample to sample, so their RSS is
no fingerprint of the transmitter's position alone. Besides ``random`` and ``spatial``
the corpus carries the published splits ``published_random`` and ``published_grid``
(test = the timestamps of ``random_test.json`` / ``grid_test.json``, train = the rest).
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import numpy as np

from learn.importers._build import (
    DEFAULT_SPLITS,
    ImportReport,
    Measurements,
    SceneSpec,
    SplitConfig,
    clean_feature_values,
    write_measurements,
)
from learn.splits import TEST, TRAIN
from twin.corpus.store import Corpus
from twin.errors import InputError, StoreNotFoundError
from twin.geo import SceneFrame

__all__ = ["import_powder", "POWDER_FEATURES", "NOT_RECEIVED"]

POWDER_FEATURES = ("rss_db",)
NOT_RECEIVED = -101.0


def _receivers(path: Path) -> dict[str, tuple[float, float] | None]:
    try:
        table = ast.literal_eval(path.read_text())
    except (OSError, ValueError, SyntaxError) as err:
        raise InputError(f"{path}: not a readable receiver table ({err})") from err
    if not isinstance(table, dict):
        raise InputError(f"{path}: expected a mapping receiver name -> (lat, lon) or None")
    return table


def import_powder(directory: str | os.PathLike, out: str | os.PathLike, splits: SplitConfig = DEFAULT_SPLITS,
                  overwrite: bool = False) -> tuple[Corpus, ImportReport]:
    """Import a POWDER directory (``single_tx.csv``, ``location_coordinates.json``, test splits)."""
    import pandas as pd

    directory = Path(directory)
    csv = directory / "single_tx.csv"
    if not csv.exists():
        raise StoreNotFoundError(f"{directory}: no single_tx.csv here (is this the POWDER directory?)")
    report = ImportReport(source=str(csv))
    receivers = _receivers(directory / "location_coordinates.json")
    try:
        table = pd.read_csv(csv)
    except pd.errors.EmptyDataError as err:
        raise InputError(f"{csv}: empty file") from err
    for col in ("timestamp", "tx_x_coord", "tx_y_coord"):
        if col not in table.columns:
            raise InputError(f"{csv}: missing column '{col}'")
    if len(table) == 0:
        raise InputError(f"{csv}: no rows")
    report.rows_read = len(table)
    stationary = sorted(name for name, pos in receivers.items() if pos is not None and name in table.columns)
    mobile = [c for c in table.columns if c.endswith("_rss")]
    absent = sorted(name for name, pos in receivers.items() if pos is not None and name not in table.columns)
    if absent:
        report.notes.append(f"receivers without a column: {', '.join(absent)}")
    if not stationary:
        raise InputError(f"{csv}: no column of a stationary receiver of location_coordinates.json")
    mobile_readings = (table[mobile].to_numpy(np.float64) > NOT_RECEIVED).sum() if mobile else 0
    report.drop("readings of mobile (bus) receivers, whose positions move", mobile_readings)
    dup = table.duplicated("timestamp", keep="first").to_numpy()
    report.drop("rows repeating a timestamp", dup.sum())
    table = table[~dup].reset_index(drop=True)
    lat = pd.to_numeric(table["tx_x_coord"], errors="coerce").to_numpy()
    lon = pd.to_numeric(table["tx_y_coord"], errors="coerce").to_numpy()
    bad_pos = ~(np.isfinite(lat) & np.isfinite(lon)) | (np.abs(lat) > 90) | (np.abs(lon) > 180)
    report.drop("rows without a valid transmitter position", bad_pos.sum())
    table, lat, lon = table[~bad_pos].reset_index(drop=True), lat[~bad_pos], lon[~bad_pos]
    rss = table[stationary].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)  # [P, R]
    not_received = np.isclose(rss, NOT_RECEIVED)
    report.drop("receiver entries -101 (not received)", not_received.sum())
    p_idx, r_idx = np.nonzero(~not_received)
    feats = rss[p_idx, r_idx][:, None]
    report.drop("receiver entries without a number", (~np.isfinite(feats[:, 0])).sum())
    feats = clean_feature_values(feats, POWDER_FEATURES, report, source=str(csv))
    valid = np.isfinite(feats[:, 0])
    p_idx, r_idx, feats = p_idx[valid], r_idx[valid], feats[valid]
    frame = SceneFrame.from_lonlat(float(np.mean(lon)), float(np.mean(lat)))
    x, y = frame.to_scene(lon, lat)
    rx = np.array([receivers[name] for name in stationary], np.float64)  # (lat, lon)
    rx_x, rx_y = frame.to_scene(rx[:, 1], rx[:, 0])
    times = pd.to_datetime(table["timestamp"], errors="coerce")
    t_s = ((times - times.min()).dt.total_seconds()).fillna(0.0).to_numpy()
    n = len(table)
    meas = Measurements(np.stack([x, y], 1), t_s, np.arange(n), p_idx, r_idx.astype(np.int64), feats)
    stamps = table["timestamp"].astype(str).to_numpy()
    extra = {}
    for name in ("random", "grid"):
        file = directory / f"{name}_test.json"
        if not file.exists():
            report.notes.append(f"no {file.name}: published split '{name}' not written")
            continue
        try:
            keys = set(json.loads(file.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{file}: not readable JSON ({err})") from err
        labels = np.where(np.isin(stamps, list(keys)), TEST, TRAIN).astype(np.uint8)
        missing = len(keys) - int((labels == TEST).sum())
        if missing:
            report.notes.append(f"{file.name}: {missing} test timestamps not among the kept rows")
        extra[f"published_{name}"] = labels
    scene = SceneSpec(name="powder", frame=frame, cell_id=np.arange(len(stationary)),
                      cell_xy_m=np.stack([rx_x, rx_y], 1))
    corpus = write_measurements(
        meas, out, scene, POWDER_FEATURES, ["dB (uncalibrated)"], report, splits, extra_splits=extra,
        attrs={"dataset": "powder", "cell_names": {str(k): s for k, s in enumerate(stationary)}},
        overwrite=overwrite)
    return corpus, report
