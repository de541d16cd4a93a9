"""A tiny synthetic city for sampling tests and benchmarks: a scene directory and its maps.zarr.

The scene is written by the library's writer ``twin.scene.build.write_scene_files``
(scene.json, layers.zarr, buildings.parquet, roads.parquet; no meshes, which sampling does
not read), the radio maps by ``twin.radio.maps.write_maps``. The maps are computed in
closed form: 3GPP UMa-like log-distance path loss ``128.1 + 37.6 log10(d_km)`` from a few
cells, then RSRP per resource element, RSSI over the carrier, RSRQ, SINR and SNR from their
definitions.

Run ``python -m tests.data.tiny_city.make OUT`` to write ``OUT/scene`` and ``OUT/maps.zarr``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from twin.geo import Grid, SceneFrame

FRAME = SceneFrame(crs="EPSG:32635", origin_lon=24.94, origin_lat=60.17)
N_RB = 50                     # 10 MHz LTE carrier
N_SC = 12 * N_RB              # resource elements per OFDM symbol over the carrier
NOISE_RE_DBM = -174 + 10 * np.log10(15e3) + 7.0   # thermal noise per RE with a 7 dB noise figure
TX_POWER_DBM = 43.0


def streets(width_m: float, height_m: float, block_m: float) -> list[tuple[str, list[tuple[float, float]]]]:
    """Named polylines: a Manhattan grid (each street split into ways at its crossings) and a bent lane."""
    out: list[tuple[str, list[tuple[float, float]]]] = []
    xs = np.arange(block_m / 5, width_m, block_m)
    ys = np.arange(block_m / 5, height_m, block_m)
    for k, y in enumerate(ys):
        cuts = [0.0, *xs, width_m]
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            out.append((f"Row {k}", [(a, y), (b, y)]))
    for k, x in enumerate(xs):
        cuts = [0.0, *ys, height_m]
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            out.append((f"Column {k}", [(x, a), (x, b)]))
    # An unnamed bent lane with intermediate vertices, joining two streets inside the first block.
    x0, y0 = xs[0], ys[0]
    out.append(("", [(x0, y0 + block_m / 2), (x0 + 15, y0 + block_m / 2 + 5),
                     (x0 + 30, y0 + block_m / 2 + 5), (x0 + 40, ys[1] if len(ys) > 1 else height_m)]))
    return out


def buildings(width_m: float, height_m: float, block_m: float) -> list[tuple[float, float, float, float, float]]:
    """Rectangles ``(x0, y0, x1, y1, height_m)`` inside the blocks, 10 m back from street centrelines."""
    xs = [*np.arange(block_m / 5, width_m, block_m), width_m + block_m / 5]
    ys = [*np.arange(block_m / 5, height_m, block_m), height_m + block_m / 5]
    out = []
    rng = np.random.default_rng(7)
    for xa, xb in zip(xs[:-1], xs[1:], strict=True):
        for ya, yb in zip(ys[:-1], ys[1:], strict=True):
            x0, x1, y0, y1 = xa + 10, min(xb - 10, width_m - 2), ya + 10, min(yb - 10, height_m - 2)
            if x1 - x0 > 10 and y1 - y0 > 10:
                # Two buildings per block with a courtyard gap, leaving the bent lane free.
                xm = (x0 + x1) / 2
                out.append((x0 + 45, y0, xm - 3, y1, float(rng.uniform(10, 30))))
                out.append((xm + 3, y0, x1, y1, float(rng.uniform(10, 30))))
    return out


def make_scene(out: str | Path, width_m: float = 240.0, height_m: float = 200.0, block_m: float = 100.0,
               cell_size_m: float = 2.0) -> Path:
    """Write a scene directory (no meshes) and return its path."""
    import geopandas as gpd
    import shapely
    from shapely.geometry import LineString, box

    from twin.io import atomic_dir
    from twin.scene.build import write_scene_files

    out = Path(out)
    grid = Grid(0.0, 0.0, cell_size_m, int(round(width_m / cell_size_m)), int(round(height_m / cell_size_m)))
    roads = streets(width_m, height_m, block_m)
    blds = buildings(width_m, height_m, block_m)
    road_gdf = gpd.GeoDataFrame(
        {"highway": ["residential"] * len(roads), "name": [n or None for n, _ in roads]},
        geometry=[LineString(pts) for _, pts in roads])
    bld_gdf = gpd.GeoDataFrame(
        {"height_m": [b[4] for b in blds], "material": ["concrete"] * len(blds)},
        geometry=[box(b[0], b[1], b[2], b[3]) for b in blds])

    centers = grid.centers_m()
    cx, cy = centers[..., 0], centers[..., 1]
    mask = np.zeros(grid.shape, np.uint8)
    height = np.zeros(grid.shape, np.float32)
    for x0, y0, x1, y1, h in blds:
        inside = (cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)
        mask[inside] = 1
        height[inside] = h
    road = np.zeros(grid.shape, np.uint8)
    for _, pts in roads:
        line = LineString(pts)
        near = shapely.contains_xy(line.buffer(4.0), cx, cy)
        road[near] = 1
    with atomic_dir(out) as tmp:
        write_scene_files(
            tmp, name="tiny-city", frame=FRAME, grid=grid, extent_m=(0.0, 0.0, width_m, height_m),
            layers={"building_mask": mask, "building_height_m": height, "road_mask": road},
            buildings=bld_gdf, roads=road_gdf,
            meta={"height_sources": {"synthetic": len(blds)}, "materials": {"concrete": len(blds)},
                  "source": "tests/data/tiny_city/make.py"})
    return out


def write_osm_geojson(path: str | Path, width_m: float = 240.0, height_m: float = 200.0,
                      block_m: float = 100.0) -> tuple[Path, tuple[float, float, float, float]]:
    """The tiny city as OSM-like GeoJSON, the input of ``twin build-scene --osm-file``.

    Buildings carry ``building`` and a ``height`` tag (the heights of :func:`buildings`),
    streets ``highway=residential`` and their ``name``. Returns the file and the city's
    ``(W, S, E, N)`` box in degrees (``--bbox``).
    """
    import json

    def lonlat(points: list[tuple[float, float]]) -> list[list[float]]:
        lon, lat = FRAME.to_lonlat([x for x, _ in points], [y for _, y in points])
        return [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]

    features = []
    for k, (x0, y0, x1, y1, h) in enumerate(buildings(width_m, height_m, block_m)):
        xa, xb, ya, yb = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        ring = [(xa, ya), (xb, ya), (xb, yb), (xa, yb), (xa, ya)]
        features.append({"type": "Feature", "properties": {"building": "yes", "height": f"{h:.1f} m", "osm_id": k + 1},
                         "geometry": {"type": "Polygon", "coordinates": [lonlat(ring)]}})
    for k, (name, pts) in enumerate(streets(width_m, height_m, block_m)):
        props = {"highway": "residential", "osm_id": 1000 + k} | ({"name": name} if name else {})
        features.append({"type": "Feature", "properties": props,
                         "geometry": {"type": "LineString", "coordinates": lonlat(pts)}})
    path = Path(path)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    (w, s), (e, n) = lonlat([(0.0, 0.0), (width_m, height_m)])
    return path, (w, s, e, n)


def default_sites(width_m: float, height_m: float) -> np.ndarray:
    """Cell positions ``(n, 2)`` [m]: three sites just inside three corners and one in the middle."""
    return np.array([[10.0, 10.0], [width_m - 10.0, 15.0], [width_m / 2, height_m - 10.0],
                     [width_m / 2 - 30.0, height_m / 2 + 8.0]])


def radio_fields(grid: Grid, sites_xy_m: np.ndarray, building_mask: np.ndarray) -> dict[str, np.ndarray]:
    """Closed-form maps: per-cell ``(n, H, W)`` and UE-level ``(H, W)`` arrays of the maps.zarr contract."""
    centers = grid.centers_m()
    d_km = np.maximum(np.linalg.norm(centers[None] - sites_xy_m[:, None, None, :], axis=-1), 10.0) / 1e3
    path_gain_db = -(128.1 + 37.6 * np.log10(d_km))
    rsrp_dbm = TX_POWER_DBM - 10 * np.log10(N_SC) + path_gain_db
    rsrp_mw = 10 ** (rsrp_dbm / 10)
    noise_mw = 10 ** (NOISE_RE_DBM / 10)
    rssi_dbm = 10 * np.log10(N_SC * (rsrp_mw.sum(0) + noise_mw))
    rsrq_db = 10 * np.log10(N_RB) + rsrp_dbm - rssi_dbm[None]
    sinr_db = rsrp_dbm - 10 * np.log10(rsrp_mw.sum(0, keepdims=True) - rsrp_mw + noise_mw)
    snr_db = rsrp_dbm - NOISE_RE_DBM
    serving = np.argmax(rsrp_dbm, axis=0).astype(np.int16)
    best_sinr = np.take_along_axis(sinr_db, serving[None], 0)[0]
    bler = 1 / (1 + np.exp(1.5 * (best_sinr - 2.0)))
    throughput_bps = 10e6 * np.log2(1 + 10 ** (best_sinr / 10)) * (1 - bler)
    indoor = building_mask.astype(bool)
    out = {"path_gain_db": path_gain_db, "rsrp_dbm": rsrp_dbm, "rsrq_db": rsrq_db, "sinr_db": sinr_db,
           "snr_db": snr_db, "cell_rssi_dbm": np.broadcast_to(rssi_dbm, rsrp_dbm.shape).copy(),
           "rssi_dbm": rssi_dbm, "bler": bler, "throughput_bps": throughput_bps}
    for name, data in out.items():
        data = data.astype(np.float32)
        data[..., indoor] = np.nan   # indoor cells are not received (as Sionna leaves them)
        out[name] = data
    serving[indoor] = -1
    out["serving_cell"] = serving
    return out


def make_maps(scene_dir: str | Path, out: str | Path, sites_xy_m: np.ndarray | None = None,
              grid: Grid | None = None) -> Path:
    """Write ``maps.zarr`` for a scene made by :func:`make_scene` (``grid`` overrides the scene grid)."""
    import pandas as pd

    from twin.radio.maps import write_maps
    from twin.scene.build import load_twin_scene

    scene = load_twin_scene(scene_dir)
    grid = grid or scene.grid
    mask = scene.layers["building_mask"]
    if mask.shape != grid.shape:
        mask = np.zeros(grid.shape, np.uint8)
    x1, y1 = scene.extent_m[2:]
    sites = default_sites(x1, y1) if sites_xy_m is None else np.asarray(sites_xy_m, float)
    cell_ids = [101 + 10 * k for k in range(len(sites))]
    table = pd.DataFrame([{"bs_id": f"site{k}", "cell_id": c, "x_m": float(x), "y_m": float(y), "height_m": 25.0,
                           "azimuth_deg": 0.0, "tilt_deg": 0.0, "power_dbm": TX_POWER_DBM, "frequency_hz": 2.6e9,
                           "bandwidth_hz": 10e6, "pattern": "iso"}
                          for k, (c, (x, y)) in enumerate(zip(cell_ids, sites, strict=True))])
    return write_maps(out, grid, scene, table, radio_fields(grid, sites, mask))


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "out/tiny_city")
    scene = make_scene(root / "scene")
    print(make_maps(scene, root / "maps.zarr"))
