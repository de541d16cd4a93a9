"""Importer of a user's own drive test (DESIGN.md format) into a corpus for finetune and eval.

The drive test is long format, one row per point and cell: ``time, lon, lat, cell_id``
and any of ``rssi_dbm, rsrp_dbm, rsrq_db, sinr_db`` (CSV, Parquet or GeoJSON; GeoJSON
points may carry lon/lat as geometry). ``time`` is seconds (numeric) or a date-time.
The BS file gives the cells' site positions (``cell_id`` and ``lon, lat`` or scene
``x, y``). Points are grouped into sequences where the time gap exceeds ``gap_s``; a
sample is one point with the events of its sequence's last ``window_s`` seconds.
With ``scene_dir`` the corpus takes the scene's grid, frame and GIS layers as semantic
channels; with ``maps`` also the traced radio maps (best-server channels and each
cell's feature maps, the physics term's ``r(y)``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

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
from twin.errors import InputError
from twin.geo import SceneFrame
from twin.tables import read_point_table

if TYPE_CHECKING:  # pandas is imported where used: it is slow to import
    import pandas as pd

__all__ = ["import_drive_test", "read_bs_positions", "DRIVE_TEST_FEATURES"]

DRIVE_TEST_FEATURES = {"rsrp_dbm": "dBm", "rssi_dbm": "dBm", "rsrq_db": "dB", "sinr_db": "dB"}
_REQUIRED = ("time", "lon", "lat", "cell_id")


def read_bs_positions(path: str | os.PathLike, frame: SceneFrame, frame_of_xy: bool = True
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(cell_id (n,), xy_m (n, 2))`` from a BS file of DESIGN.md's format (:func:`twin.radio.sites.read_bs_file`).

    ``frame_of_xy=False`` when ``frame`` is the drive test's own (no scene): lon/lat give the positions.
    """
    from twin.radio.sites import read_bs_file

    table = read_bs_file(path, frame=frame, on_building=None, frame_of_xy=frame_of_xy)
    return table["cell_id"].to_numpy(np.int64), table[["x_m", "y_m"]].to_numpy(np.float64)


def _time_seconds(column: pd.Series, path: Path) -> np.ndarray:
    import pandas as pd

    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        return numeric.to_numpy(np.float64)
    stamps = pd.to_datetime(column, errors="coerce", utc=True)
    bad = stamps.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path} row {row + 2}, column 'time': {column.iloc[row]!r} is neither seconds "
                         "nor a date-time")
    return (stamps - stamps.min()).dt.total_seconds().to_numpy()


def _scene_layers(scene_dir: str | os.PathLike, maps: str | os.PathLike | None, feature_names: list[str],
                  cell_ids: np.ndarray, report: ImportReport) -> dict:
    """The scene's layers and (with ``maps``) radio channels and cell maps, as ``twin sample`` writes them."""
    from twin.corpus.sampler import scene_channels
    from twin.radio.maps import open_maps
    from twin.scene.build import load_twin_scene

    scene = load_twin_scene(scene_dir)
    radio_maps = open_maps(maps) if maps is not None else None
    if radio_maps is not None:
        missing = [f for f in feature_names if f not in radio_maps.feature_names()]
        if missing:
            raise InputError(f"{maps}: no map of feature(s) {', '.join(missing)}; trace with the metrics "
                             "(not --path-gain-only) or import fewer features")
        unmapped = sorted(set(cell_ids.tolist()) - set(radio_maps.cell_ids))
        if unmapped:
            report.notes.append(f"{maps}: cell(s) {unmapped} have no maps; their cell maps are NaN")
    content = scene_channels(scene, radio_maps, feature_names, cell_ids)
    content.pop("attrs")
    for key in ("cell_id", "cell_xy_m"):
        content.pop(key, None)  # the drive test's BS file decides the cells and their positions
    return {"grid": scene.grid, "frame": scene.frame, "name": scene.name, **content}


def import_drive_test(path: str | os.PathLike, bs_file: str | os.PathLike, out: str | os.PathLike,
                      scene_dir: str | os.PathLike | None = None, maps: str | os.PathLike | None = None,
                      gap_s: float = 10.0, window_s: float = 0.0, max_events: int | None = None,
                      splits: SplitConfig = DEFAULT_SPLITS, overwrite: bool = False) -> tuple[Corpus, ImportReport]:
    """Import a drive test (one row per point and cell) with its BS file into a corpus.

    Parameters
    ----------
    path : path
        The drive test (CSV / Parquet / GeoJSON).
    bs_file : path
        The cells' site positions.
    scene_dir, maps : path, optional
        A scene directory (GIS layers become semantic channels) and its traced radio maps.
    gap_s : float
        A time gap above this [s] starts a new sequence.
    window_s : float
        Each sample holds the events of the last ``window_s`` seconds of its sequence
        (0: the point's own events only).
    """
    path = Path(path)
    if maps is not None and scene_dir is None:
        raise InputError(f"{maps}: radio maps need their scene (--scene DIR) for the grid and frame")
    report = ImportReport(source=str(path))
    table = read_point_table(path, "drive-test", expected="time, lon, lat, cell_id, rsrp_dbm ...")
    if len(table.columns) and len(table) == 0:
        raise InputError(f"{path}: no rows")
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
                         f"(expected {', '.join(_REQUIRED)} and any of {', '.join(DRIVE_TEST_FEATURES)})")
    feature_names = [c for c in DRIVE_TEST_FEATURES if c in table.columns]
    if not feature_names:
        units_hint = [c for c in table.columns if c.lower() in ("rsrp", "rssi", "rsrq", "sinr", "rsrp_mw", "rssi_w")]
        raise InputError(f"{path}: no feature column; expected any of {', '.join(DRIVE_TEST_FEATURES)}"
                         + (f" (found {', '.join(units_hint)}: name columns with their units)" if units_hint else ""))
    report.rows_read = len(table)
    import pandas as pd

    lon = pd.to_numeric(table["lon"], errors="coerce").to_numpy(np.float64)
    lat = pd.to_numeric(table["lat"], errors="coerce").to_numpy(np.float64)
    finite = np.isfinite(lon) & np.isfinite(lat)
    if finite.any() and (np.abs(lat[finite]) > 90).mean() > 0.5:
        raise InputError(f"{path}, column 'lat': values such as {lat[finite][0]:g} are not degrees "
                         "(expected WGS84 lon/lat; projected metres belong in the BS file's x, y)")
    bad_pos = ~finite | (np.abs(lat) > 90) | (np.abs(lon) > 180)
    cell = pd.to_numeric(table["cell_id"], errors="coerce").to_numpy(np.float64)
    bad_cell = ~np.isfinite(cell)
    time_s = _time_seconds(table["time"], path)
    features = np.column_stack([pd.to_numeric(table[c], errors="coerce").to_numpy(np.float64)
                                for c in feature_names])
    features = clean_feature_values(features, feature_names, report, source=str(path))
    report.drop("rows without a valid lon/lat", bad_pos.sum())
    report.drop("rows without a cell_id", (bad_cell & ~bad_pos).sum())
    keep = ~bad_pos & ~bad_cell
    frame = SceneFrame.from_lonlat(float(np.mean(lon[keep])), float(np.mean(lat[keep]))) if keep.any() else None
    scene_kw: dict = {}
    if scene_dir is not None:
        from twin.scene.build import load_twin_scene

        frame = load_twin_scene(scene_dir).frame
    if frame is None:
        raise InputError(f"{path}: no row with a valid position\n{report.summary()}")
    bs_ids, bs_xy = read_bs_positions(bs_file, frame, frame_of_xy=scene_dir is not None)
    cell = np.where(bad_cell, -1, cell).astype(np.int64)
    unknown = keep & ~np.isin(cell, bs_ids)
    report.drop(f"rows of cells not in {Path(bs_file).name}", unknown.sum())
    keep &= ~unknown
    no_rf = keep & ~np.isfinite(features).any(axis=1)
    report.drop("rows without any valid feature", no_rf.sum())
    keep &= ~no_rf
    if not keep.any():
        raise InputError(f"{path}: no valid row left\n{report.summary()}")
    lon, lat, cell, time_s, features = lon[keep], lat[keep], cell[keep], time_s[keep], features[keep]
    # A point is one (time, position); rows repeating a (point, cell) pair are merged.
    lonlat, pos_index = unique_points(lat, lon)
    keys = np.stack([time_s, pos_index.astype(np.float64)], 1)
    point_keys, point = np.unique(keys, axis=0, return_inverse=True)
    point = point.reshape(-1)
    point, cell, features = merge_duplicate_events(point, cell, features, report)
    p_time = point_keys[:, 0]
    p_lonlat = lonlat[point_keys[:, 1].astype(np.int64)]
    x, y = frame.to_scene(p_lonlat[:, 0], p_lonlat[:, 1])
    order = np.argsort(p_time, kind="stable")
    gaps = np.diff(p_time[order]) > gap_s
    sequence = np.empty(len(p_time), np.int64)
    sequence[order] = np.concatenate([[0], np.cumsum(gaps)])
    report.notes.append(f"{int(sequence.max()) + 1} sequence(s) split at time gaps above {gap_s:g} s")
    used = np.unique(cell)
    sorter = np.argsort(bs_ids)
    cell_xy = bs_xy[sorter[np.searchsorted(bs_ids, used, sorter=sorter)]]
    if scene_dir is not None:
        scene_kw = _scene_layers(scene_dir, maps, feature_names, used, report)
    spec = SceneSpec(name=scene_kw.pop("name", Path(path).stem), frame=scene_kw.pop("frame", frame),
                     cell_id=used, cell_xy_m=cell_xy, **scene_kw)
    meas = Measurements(np.stack([x, y], 1), p_time, sequence, point, cell, features)
    corpus = write_measurements(
        meas, out, spec, feature_names, [DRIVE_TEST_FEATURES[c] for c in feature_names], report, splits,
        window_s=window_s, max_events=max_events, overwrite=overwrite,
        attrs={"dataset": "drive-test", "gap_s": gap_s, "bs_file": str(bs_file),
               "scene_dir": str(scene_dir) if scene_dir else None, "maps": str(maps) if maps else None})
    return corpus, report
