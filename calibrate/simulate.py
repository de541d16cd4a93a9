"""Simulated drive tests: the known truth that calibration is tested and demonstrated against.

Points are laid along the scene's drivable roads every ``spacing_m`` (a car's route,
in the order of the road geometries); every cell is traced at its true pose over one
window covering the points, its metrics computed (:func:`twin.radio.metrics.compute_metrics`)
and turned into UE reports (:func:`twin.radio.metrics.apply_reporting`: Gaussian-in-dB
noise, the sensitivity floor, the reporting ranges and quantization). A cell reports
at the points within ``radius_m`` of its site where its noisy RSRP clears the floor.
With ``shadowing_db`` each cell's path gain also gets a spatially correlated shadowing
field (:func:`shadowing_field`) before the metrics, so that RSRP, RSRQ and SINR stay
consistent with one another. The output has the drive-test format of :mod:`calibrate.drive_test`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from twin.errors import InputError

__all__ = ["road_points", "shadowing_field", "simulate_drive_test"]


def road_points(scene: Any, spacing_m: float = 10.0, drivable_only: bool = True) -> np.ndarray:
    """Points every ``spacing_m`` along the scene's (drivable) roads, inside its grid: ``(N, 2)`` [m]."""
    if not spacing_m > 0:
        raise InputError(f"spacing_m: {spacing_m} must be > 0")
    roads = scene.roads()
    if drivable_only and "drivable" in roads.columns:
        roads = roads[roads["drivable"].astype(bool)]
    pts = []
    for geom in roads.geometry:
        lines = getattr(geom, "geoms", [geom])
        for line in lines:
            d = np.arange(0.0, line.length, spacing_m)
            if len(d):
                pts.append(np.array([line.interpolate(t).coords[0][:2] for t in d]))
    if not pts:
        raise InputError(f"{scene.path}: no {'drivable ' if drivable_only else ''}roads to drive along")
    xy = np.concatenate(pts)
    x0, y0, x1, y1 = scene.grid.extent_m
    edge = 0.5  # keep off the border: a lon/lat round trip must not carry a point outside
    xy = xy[(xy[:, 0] > x0 + edge) & (xy[:, 0] < x1 - edge) & (xy[:, 1] > y0 + edge) & (xy[:, 1] < y1 - edge)]
    # one point per spacing-sized cell: crossings and overlapping ways would repeat points
    key = np.floor(xy / spacing_m).astype(np.int64)
    _, first = np.unique(key, axis=0, return_index=True)
    return xy[np.sort(first)]


def shadowing_field(shape: tuple[int, ...], cell_size_m: float, sigma_db: float, corr_m: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Spatially correlated log-normal shadowing [dB]: one Gaussian random field per leading index.

    White noise on the raster ``shape`` (``(..., H, W)``) is smoothed by a Gaussian kernel of
    standard deviation ``corr_m / (sqrt(2) cell_size_m)`` pixels, so that the field's
    autocorrelation is ``exp(-d^2 / (2 corr_m^2))`` at distance ``d`` [m], then renormalized
    to standard deviation ``sigma_db`` per field (mean removed).
    """
    from scipy.ndimage import gaussian_filter

    if not (sigma_db >= 0 and corr_m > 0 and cell_size_m > 0):
        raise InputError(f"shadowing: sigma_db {sigma_db} must be >= 0, corr_m {corr_m} and cell size "
                         f"{cell_size_m} > 0")
    white = rng.standard_normal(shape)
    if sigma_db == 0:
        return np.zeros(shape)
    s_px = corr_m / (np.sqrt(2.0) * cell_size_m)
    sigma = (0,) * (len(shape) - 2) + (s_px, s_px)
    field = gaussian_filter(white, sigma=sigma, mode="reflect")
    axes = (-2, -1)
    field = field - field.mean(axis=axes, keepdims=True)
    return sigma_db * field / np.maximum(field.std(axis=axes, keepdims=True), 1e-12)


def simulate_drive_test(scene: Any, sites: Any, *, spacing_m: float = 10.0, radius_m: float = 300.0,
                        sigma_db: float = 4.0, step_db: float = 1.0, max_points: int | None = None,
                        trace_config: Any = None, metric_config: Any = None, tracer: Any = None,
                        seed: int = 0, speed_mps: float = 10.0, shadowing_db: float = 0.0,
                        shadowing_corr_m: float = 50.0) -> pd.DataFrame:
    """A drive test of ``sites`` (at their true poses) over ``scene``.

    Parameters
    ----------
    scene : TwinScene or path
    sites : DataFrame, records or BS-file path
        The true base stations.
    spacing_m : float
        Distance between measurement points along the roads [m].
    radius_m : float
        A cell reports only within this distance of its site [m].
    sigma_db, step_db : float
        Measurement noise (standard deviation, dB) and quantization step of RSSI and
        RSRP; RSRQ and SINR get half of each (their errors partly cancel).
    max_points : int, optional
        Keep at most this many points (a seeded random subset, in route order).
    seed : int
        Seeds the noise and the subset.
    speed_mps : float
        The car's speed: ``time`` is the distance driven over it [s].
    shadowing_db, shadowing_corr_m : float
        Standard deviation [dB] and correlation distance [m] of the per-cell shadowing
        field added to the traced path gain (:func:`shadowing_field`, seeded by ``seed``
        apart from the noise); 0 (default) adds none.

    Returns
    -------
    DataFrame
        ``time, lon, lat, cell_id, rssi_dbm, rsrp_dbm, rsrq_db, sinr_db`` (one row per
        reported point and cell).
    """
    from twin.radio.metrics import MetricConfig, ReportingConfig, apply_reporting, compute_metrics
    from twin.radio.tracer import Tracer
    from twin.scene.build import TwinScene, load_twin_scene

    if max_points is not None and max_points < 1:
        raise InputError(f"max_points: {max_points} must be at least 1 (an empty drive test is refused)")
    scene = scene if isinstance(scene, TwinScene) else load_twin_scene(scene)
    tracer = tracer or Tracer(scene, trace_config)
    table = tracer.sites(sites)
    rng = np.random.default_rng(seed)
    xy = road_points(scene, spacing_m)
    dist = np.hypot(xy[:, None, 0] - table["x_m"].to_numpy()[None], xy[:, None, 1] - table["y_m"].to_numpy()[None])
    near = dist <= radius_m  # [N, C]
    keep = near.any(axis=1)
    xy, near = xy[keep], near[keep]
    if max_points is not None and len(xy) > max_points:
        pick = np.sort(rng.choice(len(xy), max_points, replace=False))
        xy, near = xy[pick], near[pick]
    if len(xy) == 0:
        raise InputError(f"no road point within {radius_m:g} m of any site")
    grid = tracer.window_covering(xy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        gain = tracer.radio_maps(table, grid)  # [C, H, W] dB
    if shadowing_db > 0:
        gain = gain + shadowing_field(gain.shape, grid.cell_size_m, shadowing_db, shadowing_corr_m,
                                      np.random.default_rng([seed, 1]))
    pg = grid.sample(gain, xy)  # [C, N]
    metric_config = metric_config or MetricConfig()
    exact = compute_metrics(pg[:, :, None], table["power_dbm"].to_numpy(np.float64),
                            table["frequency_hz"].to_numpy(np.float64), metric_config)
    keys = ("rssi_dbm", "rsrp_dbm", "rsrq_db", "sinr_db")
    per_cell = {"rssi_dbm": exact["cell_rssi_dbm"][..., 0], "rsrp_dbm": exact["rsrp_dbm"][..., 0],
                "rsrq_db": exact["rsrq_db"][..., 0], "sinr_db": exact["sinr_db"][..., 0]}  # [C, N]
    reporting = ReportingConfig(rssi_sigma_db=sigma_db, rsrp_sigma_db=sigma_db, rsrq_sigma_db=sigma_db / 2,
                                sinr_sigma_db=sigma_db / 2, rssi_step_db=step_db, rsrp_step_db=step_db,
                                rsrq_step_db=step_db / 2, sinr_step_db=step_db / 2)
    reported = apply_reporting(per_cell, reporting, rng)
    lon, lat = scene.frame.to_lonlat(xy[:, 0], xy[:, 1])
    step = np.r_[0.0, np.hypot(*np.diff(xy, axis=0).T)]
    time_s = np.cumsum(np.minimum(step, 3 * spacing_m)) / speed_mps  # jumps between roads count short
    c_idx, p_idx = np.nonzero(near.T & np.isfinite(reported["rsrp_dbm"]))
    order = np.lexsort((c_idx, p_idx))
    c_idx, p_idx = c_idx[order], p_idx[order]
    out = pd.DataFrame({"time": np.round(time_s[p_idx], 1), "lon": lon[p_idx], "lat": lat[p_idx],
                        "cell_id": table["cell_id"].to_numpy()[c_idx]})
    for k in keys:
        out[k] = reported[k][c_idx, p_idx].astype(np.float64)
    return out
