"""Importer of a user's own drive test (DESIGN.md format) into a corpus for finetune and eval.

The drive test is long format, one row per point and cell: ``time, lon, lat, cell_id``
and any of ``rssi_dbm, rsrp_dbm, rsrq_db, sinr_db`` (CSV, Parquet or GeoJSON; GeoJSON
points may carry lon/lat as geometry), read by the one drive-test reader
(:func:`twin.tables.read_drive_test_table`: aliases such as ``RSSI`` or ``latitude``,
``rsrp_mw`` converted). ``time`` is seconds (numeric) or a date-time. Without ``lon, lat``
(reports to localize) the positions are NaN, the corpus attribute ``positions`` is
``"unknown"``, ``--scene`` is required (frame, grid, layers) and every sample is ``test``
under the spatial split; ``learn predict`` localizes them and joins back through the
corpus's ``sources`` (per sample its times and 1-based source rows).
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
from typing import TYPE_CHECKING, Any

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
from twin.tables import read_drive_test_table

if TYPE_CHECKING:  # pandas is imported where used: it is slow to import
    import pandas as pd

__all__ = ["import_drive_test", "export_drive_test", "read_bs_positions", "DRIVE_TEST_FEATURES"]

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


#: largest distance [m] between a cell's site in the maps and in the BS file (the BS file's own lon/lat vs x/y check)
SITE_TOLERANCE_M = 1.0


def _check_map_sites(radio_maps: Any, maps: str | os.PathLike, bs_file: str | os.PathLike, frame: SceneFrame,
                     cell_ids: np.ndarray, cell_xy_m: np.ndarray) -> None:
    """Refuse maps whose site of a cell lies elsewhere than the BS file's (maps of another BS file)."""
    xy_maps = radio_maps.cell_xy_m.astype(np.float64)
    if radio_maps.frame is not None and radio_maps.frame != frame:  # compare in the import's frame
        lon, lat = radio_maps.frame.to_lonlat(xy_maps[:, 0], xy_maps[:, 1])
        xy_maps = np.stack(frame.to_scene(lon, lat), axis=1)
    where = {int(c): k for k, c in enumerate(radio_maps.cell_ids)}
    problems = []
    for cid, (x, y) in zip(cell_ids.tolist(), cell_xy_m, strict=True):
        if int(cid) not in where:
            continue
        mx, my = xy_maps[where[int(cid)]]
        d = float(np.hypot(mx - x, my - y))
        if not d <= SITE_TOLERANCE_M:  # NaN (no position in the maps) fails too
            problems.append(f"cell {int(cid)}: ({mx:.1f}, {my:.1f}) m in the maps, ({x:.1f}, {y:.1f}) m in "
                            f"the BS file, {d:.0f} m apart")
    if problems:
        raise InputError(f"{maps} and {bs_file}: the maps' sites do not match the BS file for "
                         f"{len(problems)} cell(s) (tolerance {SITE_TOLERANCE_M:g} m); the maps were traced for "
                         "other sites: trace this BS file (twin trace --bs-file) or give its maps\n  "
                         + "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else ""))


def _scene_layers(scene_dir: str | os.PathLike, maps: str | os.PathLike | None, feature_names: list[str],
                  cell_ids: np.ndarray, report: ImportReport, bs_file: str | os.PathLike = "",
                  cell_xy_m: np.ndarray | None = None) -> dict:
    """The scene's layers and (with ``maps``) radio channels and cell maps, as ``twin sample`` writes them.

    With ``maps``, each cell's site in the maps must match ``cell_xy_m`` (the BS file's) within
    :data:`SITE_TOLERANCE_M`, else :class:`InputError` names both files and the cells.
    """
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
        if cell_xy_m is not None:
            _check_map_sites(radio_maps, str(maps), bs_file, scene.frame, cell_ids, cell_xy_m)
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
    table, notes = read_drive_test_table(path, positions="optional")
    report.notes.extend(notes)
    missing = [c for c in ("time", "cell_id") if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
                         f"(expected {', '.join(_REQUIRED)} and any of {', '.join(DRIVE_TEST_FEATURES)})")
    located = {"lon", "lat"} <= set(table.columns)
    if not located and scene_dir is None:
        raise InputError(f"{path}: no lon/lat columns (reports to localize): give --scene DIR (and --maps "
                         "MAPS.zarr) for the frame and the cells' maps")
    feature_names = [c for c in DRIVE_TEST_FEATURES if c in table.columns]
    report.rows_read = len(table)
    import pandas as pd

    n_rows = len(table)
    if located:
        lon = pd.to_numeric(table["lon"], errors="coerce").to_numpy(np.float64)
        lat = pd.to_numeric(table["lat"], errors="coerce").to_numpy(np.float64)
        finite = np.isfinite(lon) & np.isfinite(lat)
        if finite.any() and (np.abs(lat[finite]) > 90).mean() > 0.5:
            raise InputError(f"{path}, column 'lat': values such as {lat[finite][0]:g} are not degrees "
                             "(expected WGS84 lon/lat; projected metres belong in the BS file's x, y)")
        bad_pos = ~finite | (np.abs(lat) > 90) | (np.abs(lon) > 180)
    else:
        lon = lat = np.full(n_rows, np.nan)
        bad_pos = np.zeros(n_rows, bool)
        report.notes.append(f"{path}: no lon/lat: positions unknown (NaN), samples to localize")
    cell = pd.to_numeric(table["cell_id"], errors="coerce").to_numpy(np.float64)
    bad_cell = ~np.isfinite(cell)
    time_s = _time_seconds(table["time"], path)
    features = np.column_stack([pd.to_numeric(table[c], errors="coerce").to_numpy(np.float64)
                                for c in feature_names])
    features = clean_feature_values(features, feature_names, report, source=str(path))
    report.drop("rows without a valid lon/lat", bad_pos.sum())
    report.drop("rows without a cell_id", (bad_cell & ~bad_pos).sum())
    keep = ~bad_pos & ~bad_cell
    frame = SceneFrame.from_lonlat(float(np.mean(lon[keep])), float(np.mean(lat[keep]))) if located and keep.any() \
        else None
    scene_kw: dict = {}
    if scene_dir is not None:
        from twin.scene.build import load_twin_scene

        frame = load_twin_scene(scene_dir).frame
    if frame is None:
        raise InputError(f"{path}: no row with a valid position\n{report.summary()}")
    bs_ids, bs_xy = read_bs_positions(bs_file, frame, frame_of_xy=scene_dir is not None)
    cell = np.where(bad_cell, -1, cell).astype(np.int64)
    unknown = keep & ~np.isin(cell, bs_ids)
    if unknown.any():
        absent = sorted(set(cell[unknown].tolist()))
        if unknown.sum() == keep.sum():
            raise InputError(f"{bs_file}: none of the drive test's cells are in this BS file (the reports of "
                             f"{path.name} name cell_id {', '.join(map(str, absent[:10]))}"
                             f"{' ...' if len(absent) > 10 else ''}; the BS file has "
                             f"{', '.join(map(str, bs_ids[:10].tolist()))}{' ...' if len(bs_ids) > 10 else ''})")
        report.notes.append(f"{bs_file}: no site for cell_id {', '.join(map(str, absent[:20]))}"
                            f"{' ...' if len(absent) > 20 else ''}")
    report.drop(f"rows of cells not in {Path(bs_file).name}", unknown.sum())
    keep &= ~unknown
    no_rf = keep & ~np.isfinite(features).any(axis=1)
    report.drop("rows without any valid feature", no_rf.sum())
    keep &= ~no_rf
    if not keep.any():
        raise InputError(f"{path}: no valid row left\n{report.summary()}")
    source_row = np.flatnonzero(keep) + 1  # 1-based data rows of the file (header excluded)
    lon, lat, cell, time_s, features = lon[keep], lat[keep], cell[keep], time_s[keep], features[keep]
    # A point is one (time, position) (one time without positions); rows repeating a (point, cell) are merged.
    if located:
        lonlat, pos_index = unique_points(lat, lon)
    else:
        lonlat, pos_index = np.full((1, 2), np.nan), np.zeros(len(time_s), np.int64)
    keys = np.stack([time_s, pos_index.astype(np.float64)], 1)
    point_keys, point = np.unique(keys, axis=0, return_inverse=True)
    point = point.reshape(-1)
    order_rows = np.argsort(point, kind="stable")
    point_rows = np.split(source_row[order_rows], np.cumsum(np.bincount(point, minlength=len(point_keys)))[:-1])
    point, cell, features = merge_duplicate_events(point, cell, features, report)
    p_time = point_keys[:, 0]
    p_lonlat = lonlat[point_keys[:, 1].astype(np.int64)]
    if located:
        x, y = frame.to_scene(p_lonlat[:, 0], p_lonlat[:, 1])
    else:
        x = y = np.full(len(p_time), np.nan)
    order = np.argsort(p_time, kind="stable")
    gaps = np.diff(p_time[order]) > gap_s
    sequence = np.empty(len(p_time), np.int64)
    sequence[order] = np.concatenate([[0], np.cumsum(gaps)])
    report.notes.append(f"{int(sequence.max()) + 1} sequence(s) split at time gaps above {gap_s:g} s")
    used = np.unique(cell)
    sorter = np.argsort(bs_ids)
    cell_xy = bs_xy[sorter[np.searchsorted(bs_ids, used, sorter=sorter)]]
    if scene_dir is not None:
        scene_kw = _scene_layers(scene_dir, maps, feature_names, used, report, bs_file, cell_xy)
    spec = SceneSpec(name=scene_kw.pop("name", Path(path).stem), frame=scene_kw.pop("frame", frame),
                     cell_id=used, cell_xy_m=cell_xy, **scene_kw)
    meas = Measurements(np.stack([x, y], 1), p_time, sequence, point, cell, features)
    corpus = write_measurements(
        meas, out, spec, feature_names, [DRIVE_TEST_FEATURES[c] for c in feature_names], report, splits,
        window_s=window_s, max_events=max_events, overwrite=overwrite, point_rows=point_rows,
        attrs={"dataset": "drive-test", "gap_s": gap_s, "bs_file": str(bs_file), "source": str(path),
               "positions": "known" if located else "unknown",
               "scene_dir": str(scene_dir) if scene_dir else None, "maps": str(maps) if maps else None})
    return corpus, report


def export_drive_test(data: str | os.PathLike | Corpus, out: str | os.PathLike, truth_out: str | os.PathLike,
                      indices: np.ndarray | None = None, gap_s: float = 60.0, overwrite: bool = False
                      ) -> tuple[Path, Path, int]:
    """Write samples of a corpus as a drive test **without positions**, and their truth apart.

    ``out`` (CSV) has one row per event: ``time`` (seconds; each sample's reports keep
    their spacing, samples are ``gap_s`` apart so that they import as separate sequences),
    ``cell_id`` and the corpus's drive-test features (no lon/lat). ``truth_out`` (CSV) has
    per report instant ``time, x_m, y_m, lon, lat`` (the UE's true position), for scoring or
    pictures *after* localization. Returns both paths and the number of rows.
    """
    import pandas as pd

    from twin.corpus.store import open_corpus
    from twin.io import atomic_file

    corpus = data if isinstance(data, Corpus) else open_corpus(data)
    idx = np.arange(len(corpus)) if indices is None else np.asarray(indices, np.int64)
    if len(idx) == 0:
        raise InputError(f"{corpus.url}: no samples to export (n 0 or an empty split part); "
                         "an empty drive test is refused")
    feats = [f for f in corpus.feature_names if f in DRIVE_TEST_FEATURES]
    if not feats:
        raise InputError(f"{corpus.url}: no drive-test feature ({', '.join(DRIVE_TEST_FEATURES)}) to export")
    take = [corpus.feature_names.index(f) for f in feats]
    b = corpus.batch(idx, ["cell_id", "features", "mask", "time_s", "event_xy_m", "scene_index"])
    rows, truth = [], []
    start = 0.0
    for i in range(len(idx)):
        m = b["mask"][i].astype(bool)
        if not m.any():
            continue
        t = start + b["time_s"][i][m].astype(np.float64)
        for tt, c, f in zip(t, b["cell_id"][i][m], b["features"][i][m][:, take], strict=True):
            rows.append({"time": round(float(tt), 3), "cell_id": int(c),
                         **{n: float(v) for n, v in zip(feats, f, strict=True)}})
        frame = corpus.scene(int(b["scene_index"][i])).frame
        for tt in np.unique(t):
            xy = b["event_xy_m"][i][m][t == tt][0].astype(np.float64)
            lon, lat = frame.to_lonlat(xy[0], xy[1]) if frame is not None else (np.nan, np.nan)
            truth.append({"time": round(float(tt), 3), "x_m": xy[0], "y_m": xy[1], "lon": float(lon),
                          "lat": float(lat)})
        start = float(t.max()) + gap_s
    out, truth_out = Path(out), Path(truth_out)
    for path, table in ((out, rows), (truth_out, truth)):
        with atomic_file(path, overwrite=overwrite) as tmp:
            pd.DataFrame(table).to_csv(tmp, index=False)
    return out, truth_out, len(rows)
