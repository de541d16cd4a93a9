"""A synthetic city of any size, as OSM-like GeoJSON that ``twin.scene.osm.read_osm`` reads.

Benchmark and test data: the bundled OSM extracts are a few km², Dataset C of seed 004
is 100 patches of 8.25 km². :func:`make_city` lays out a street grid of irregular
spacing (residential streets, with a primary or secondary arterial every few streets),
split into ways at every crossing as OSM does, and fills the blocks between the streets
with building footprints (rectangles, L shapes, courtyard blocks) set back from every
carriageway. Each block's number of buildings follows a smooth density field (a centre
and a few sub-centres over a suburban floor, some blocks left empty as parks) whose
city-wide mean is ``buildings_per_km2``; dense blocks hold tall apartment and office
buildings, sparse ones houses. Tags: ``building`` (type), ``building:levels`` (most),
``height`` (some, in metres), neither (a few: the type default applies),
``building:material`` (a few); streets ``highway`` and ``name``.

The city is centred on ``(origin_lon, origin_lat)``, by default on a UTM central
meridian (27° E, zone 35, at Helsinki's latitude) so that a lon/lat bbox of the city is
an axis-aligned rectangle in the region's metre frame (no meridian convergence) and
square patches tile it exactly. Everything is drawn from ``numpy.random.default_rng(seed)``:
one seed, one file, byte for byte.

Run: ``PYTHONPATH=$PWD .venv/bin/python -m bench.synthetic_city OUT.geojson --size-m 6000
[--density 470] [--seed 0] [--plot city.png]``.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CitySpec", "City", "make_city", "write_city", "plot_city", "SETBACK_M"]

#: Street classes: (highway tag, carriageway width [m], as twin.scene.layers.ROAD_WIDTH_M).
_CLASSES = {"residential": 6.0, "tertiary": 8.0, "secondary": 9.0, "primary": 10.0}
#: Footprints stay this far [m] beyond the edge of the carriageway (a pavement).
SETBACK_M = 3.0
_GAP_M = 1.5  # half the smallest gap between two footprints of a block [m]


@dataclass(frozen=True)
class CitySpec:
    """What city to draw.

    Attributes
    ----------
    width_m, height_m : float
        Size of the city [m] east-west and south-north, centred on the origin.
    buildings_per_km2 : float
        Mean building density over the whole city (central Helsinki: about 470 per km²).
    seed : int
        Every draw comes from ``numpy.random.default_rng(seed)``.
    origin_lon, origin_lat : float
        The city centre [deg].
    street_spacing_m : (low, high)
        Distance between neighbouring parallel streets, drawn uniformly [m].
    arterial_every : int
        Every this many streets (on average) is a primary or secondary road.
    park_fraction : float
        Share of blocks left without buildings.
    centres : int
        Density sub-centres beside the main one (each a Gaussian bump over the floor).
    floor : float
        The density floor relative to the main centre's peak (1): the suburbs' share.
    """

    width_m: float = 3000.0
    height_m: float = 3000.0
    buildings_per_km2: float = 470.0
    seed: int = 0
    origin_lon: float = 27.0
    origin_lat: float = 60.17
    street_spacing_m: tuple[float, float] = (90.0, 170.0)
    arterial_every: int = 6
    park_fraction: float = 0.05
    centres: int = 4
    floor: float = 0.25


@dataclass
class City:
    """A drawn city in its own metre frame (x east, y north, origin at the centre).

    Attributes
    ----------
    spec : CitySpec
    crs : str
        The metre frame's CRS (UTM of the origin; metres = that CRS minus the origin's).
    buildings : GeoDataFrame
        Footprints [m] and tags ``osm_id``, ``building``, ``building:levels``, ``height``,
        ``building:material``.
    roads : GeoDataFrame
        Ways [m], ``osm_id``, ``highway``, ``name``, ``width_m`` (carriageway).
    relative_density : ndarray
        ``(n_blocks,)`` the density field at each block centre (peak 1).
    block_area_m2 : ndarray
        ``(n_blocks,)`` each block's area between street centrelines [m²].
    """

    spec: CitySpec
    crs: str
    buildings: Any
    roads: Any
    relative_density: np.ndarray
    block_area_m2: np.ndarray

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """The city's ``(west, south, east, north)`` [deg] (its corners), a plan's ``region.bbox``."""
        w, h = self.spec.width_m / 2, self.spec.height_m / 2
        lon, lat = self._frame().to_lonlat(np.array([-w, w, w, -w]), np.array([-h, -h, h, h]))
        return float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())

    def _frame(self) -> Any:
        from twin.geo import SceneFrame

        return SceneFrame(crs=self.crs, origin_lon=self.spec.origin_lon, origin_lat=self.spec.origin_lat)

    def to_lonlat(self) -> tuple[Any, Any]:
        """Buildings and roads in WGS84, as a GeoJSON file holds them."""
        frame = self._frame()
        ox, oy = frame.origin_projected_m
        out = []
        for gdf in (self.buildings, self.roads):
            import shapely

            moved = shapely.transform(gdf.geometry.values, lambda xy: xy + np.array([ox, oy]))
            out.append(gdf.set_geometry(moved, crs=self.crs).to_crs("EPSG:4326"))
        return out[0], out[1]


def _street_positions(span_m: float, rng: np.random.Generator, spacing: tuple[float, float]) -> np.ndarray:
    """Street centrelines across ``[-span/2, span/2]``: both edges plus irregular steps between."""
    half = span_m / 2
    pos = [-half]
    while True:
        nxt = pos[-1] + rng.uniform(*spacing)
        if nxt > half - spacing[0] / 2:
            break
        pos.append(nxt)
    pos.append(half)
    return np.array(pos)


def _classes(n: int, rng: np.random.Generator, every: int) -> np.ndarray:
    """Highway class per street: arterials every ``every`` streets (jittered), the edges primary."""
    out = np.array(["residential"] * n, dtype=object)
    k = int(rng.integers(1, every + 1))
    while k < n:
        out[k] = "primary" if rng.random() < 0.4 else "secondary"
        k += int(rng.integers(max(every - 2, 2), every + 3))
    tertiary = (out == "residential") & (rng.random(n) < 0.15)
    out[tertiary] = "tertiary"
    out[0] = out[-1] = "primary"  # ring road
    return out


def _density(x: np.ndarray, y: np.ndarray, spec: CitySpec, rng: np.random.Generator) -> np.ndarray:
    """Relative density (peak about 1) at ``(x, y)`` [m]: a centre, sub-centres, a floor."""
    scale = math.sqrt(spec.width_m * spec.height_m)
    peaks = [(0.0, 0.0, 0.18 * scale, 1.0)]
    for _ in range(spec.centres):
        peaks.append((rng.uniform(-0.4, 0.4) * spec.width_m, rng.uniform(-0.4, 0.4) * spec.height_m,
                      rng.uniform(0.05, 0.12) * scale, rng.uniform(0.4, 0.8)))
    field = np.zeros_like(x)
    for cx, cy, sigma, amp in peaks:
        field = np.maximum(field, amp * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2)))
    return spec.floor + (1 - spec.floor) * field


def _footprint(x0: float, y0: float, x1: float, y1: float, rng: np.random.Generator,
               dense: float) -> tuple[list[tuple[float, float]], list[list[tuple[float, float]]]]:
    """A footprint inside the lot ``[x0, x1] x [y0, y1]`` [m]: outer ring (counter-clockwise) and holes."""
    w, h = x1 - x0, y1 - y0
    fw, fh = w * rng.uniform(0.6, 0.95), h * rng.uniform(0.6, 0.95)
    ax, ay = x0 + rng.uniform(0, w - fw), y0 + rng.uniform(0, h - fh)
    bx, by = ax + fw, ay + fh
    kind = rng.random()
    if kind < 0.08 + 0.2 * dense and fw > 30 and fh > 30:  # a courtyard block
        t = rng.uniform(8.0, 12.0)
        return ([(ax, ay), (bx, ay), (bx, by), (ax, by)], [[(ax + t, ay + t), (ax + t, by - t), (bx - t, by - t),
                                                              (bx - t, ay + t)]])
    if kind < 0.4 and fw > 14 and fh > 14:  # an L: the rectangle less one corner
        cx, cy = ax + fw * rng.uniform(0.4, 0.7), ay + fh * rng.uniform(0.4, 0.7)
        return [(ax, ay), (bx, ay), (bx, cy), (cx, cy), (cx, by), (ax, by)], []
    return [(ax, ay), (bx, ay), (bx, by), (ax, by)], []


def make_city(spec: CitySpec = CitySpec()) -> City:
    """Draw a city (see the module docstring); deterministic in ``spec``."""
    import geopandas as gpd
    from shapely.geometry import LineString, Polygon

    from twin.geo import SceneFrame

    rng = np.random.default_rng(spec.seed)
    frame = SceneFrame.from_lonlat(spec.origin_lon, spec.origin_lat)
    xs = _street_positions(spec.width_m, rng, spec.street_spacing_m)   # north-south streets at these x
    ys = _street_positions(spec.height_m, rng, spec.street_spacing_m)  # east-west streets at these y
    x_class, y_class = _classes(len(xs), rng, spec.arterial_every), _classes(len(ys), rng, spec.arterial_every)
    x_half = np.array([_CLASSES[c] / 2 for c in x_class])
    y_half = np.array([_CLASSES[c] / 2 for c in y_class])

    # Ways, split at every crossing (OSM ways end at junctions more often than not).
    road_geoms, road_rows = [], []
    for k, (x, cls) in enumerate(zip(xs, x_class, strict=True)):
        for a, b in zip(ys[:-1], ys[1:], strict=True):
            road_geoms.append(LineString([(x, a), (x, b)]))
            road_rows.append((cls, f"Meridian Street {k}", _CLASSES[cls]))
    for k, (y, cls) in enumerate(zip(ys, y_class, strict=True)):
        for a, b in zip(xs[:-1], xs[1:], strict=True):
            road_geoms.append(LineString([(a, y), (b, y)]))
            road_rows.append((cls, f"Parallel Street {k}", _CLASSES[cls]))

    # Blocks: per-block building counts from the density field, summing to the target in expectation.
    cx, cy = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2
    bx, by = np.meshgrid(cx, cy, indexing="xy")
    area = np.outer(np.diff(ys), np.diff(xs))
    rel = _density(bx, by, spec, rng)
    park = rng.random(rel.shape) < spec.park_fraction
    weight = np.where(park, 0.0, rel * area)
    total = spec.buildings_per_km2 * spec.width_m * spec.height_m / 1e6
    expected = total * weight / weight.sum()
    counts = np.floor(expected + rng.random(expected.shape)).astype(int)  # stochastic rounding

    polys, rows = [], []
    for i in range(len(ys) - 1):
        for j in range(len(xs) - 1):
            n = counts[i, j]
            if n == 0:
                continue
            x0 = xs[j] + x_half[j] + SETBACK_M
            x1 = xs[j + 1] - x_half[j + 1] - SETBACK_M
            y0 = ys[i] + y_half[i] + SETBACK_M
            y1 = ys[i + 1] - y_half[i + 1] - SETBACK_M
            w, h = x1 - x0, y1 - y0
            if w < 8 or h < 8:
                continue
            # a grid of lots with about the block's aspect, at least n lots, lots of at least 8 m
            nx = max(1, round(math.sqrt(n * w / h)))
            ny = max(1, math.ceil(n / nx))
            nx, ny = min(nx, int(w // 8)), min(ny, int(h // 8))
            n = min(n, nx * ny)
            lots = np.sort(rng.choice(nx * ny, size=n, replace=False))
            lw, lh = w / nx, h / ny
            dense = float(rel[i, j])
            for lot in lots:
                li, lj = divmod(int(lot), nx)
                ax, ay = x0 + lj * lw + _GAP_M, y0 + li * lh + _GAP_M
                shell, holes = _footprint(ax, ay, ax + lw - 2 * _GAP_M, ay + lh - 2 * _GAP_M, rng, dense)
                polys.append(Polygon(shell, holes))
                rows.append(_tags(rng, dense))
    buildings = gpd.GeoDataFrame(
        {"osm_id": np.arange(1, len(rows) + 1, dtype=np.int64),
         **{key: [r[key] for r in rows] for key in ("building", "building:levels", "height", "building:material")}},
        geometry=polys, crs=frame.crs)
    n_b = len(rows)
    roads = gpd.GeoDataFrame(
        {"osm_id": np.arange(n_b + 1, n_b + 1 + len(road_rows), dtype=np.int64),
         "highway": [r[0] for r in road_rows], "name": [r[1] for r in road_rows],
         "width_m": [r[2] for r in road_rows]},
        geometry=road_geoms, crs=frame.crs)
    return City(spec, frame.crs, buildings, roads, rel.ravel(), area.ravel())


def _tags(rng: np.random.Generator, dense: float) -> dict[str, str | None]:
    """Tags of one building; ``dense`` in (0, 1] the block's relative density."""
    levels = max(1, int(round(rng.normal(1.5 + 6.5 * dense, 1.0 + dense))))
    kind = ("house" if levels <= 2 else "apartments") if rng.random() < 0.75 else (
        "office" if levels >= 5 else "commercial" if levels >= 3 else "retail")
    tag = rng.random()
    out: dict[str, str | None] = {"building": kind, "building:levels": None, "height": None,
                                  "building:material": None}
    if tag < 0.65:
        out["building:levels"] = str(levels)
    elif tag < 0.85:
        out["height"] = f"{levels * 3.1 + rng.uniform(0.5, 2.5):.1f}"
    if rng.random() < 0.1:
        out["building:material"] = str(rng.choice(["brick", "glass", "concrete"]))
    return out


def write_city(path: str | Path, spec: CitySpec = CitySpec()) -> tuple[Path, City]:
    """Draw a city and write it as GeoJSON (WGS84, 7 decimals: about 1 cm); return the file and the city.

    The file is written next to ``path`` and renamed into place when complete.
    """
    from twin.io import atomic_file

    city = make_city(spec)
    buildings, roads = city.to_lonlat()
    import pandas as pd

    both = pd.concat([buildings, roads.drop(columns="width_m")], ignore_index=True)
    path = Path(path)
    with atomic_file(path, overwrite=True) as tmp:
        both.to_file(tmp, driver="GeoJSON", engine="pyogrio", layer_options={"COORDINATE_PRECISION": 7})
    return path, city


def plot_city(city: City, out: str | Path, zoom_m: float = 800.0, patch_m: float | None = None,
              selected: list[tuple[int, int]] | None = None) -> Path:
    """A two-panel PNG: the whole city's building density (with the patch grid), and a zoom of footprints.

    ``patch_m`` draws the square patches from the south-west corner; ``selected`` (row, col)
    pairs are outlined. The zoom is a ``zoom_m`` square at the centre.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    spec = city.spec
    cent = city.buildings.geometry.centroid
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4.8))
    bins = (max(1, int(spec.width_m // 250)), max(1, int(spec.height_m // 250)))
    hist, ex, ey = np.histogram2d(cent.x, cent.y, bins=bins,
                                  range=[[-spec.width_m / 2, spec.width_m / 2], [-spec.height_m / 2, spec.height_m / 2]])
    cell_km2 = (ex[1] - ex[0]) * (ey[1] - ey[0]) / 1e6
    im = ax0.imshow(hist.T / cell_km2, origin="lower", extent=(ex[0] / 1e3, ex[-1] / 1e3, ey[0] / 1e3, ey[-1] / 1e3),
                    cmap="magma")
    fig.colorbar(im, ax=ax0, label="buildings per km²", shrink=0.85)
    if patch_m:
        nx, ny = int(spec.width_m // patch_m), int(spec.height_m // patch_m)
        for r in range(ny):
            for c in range(nx):
                chosen = selected is not None and (r, c) in selected
                ax0.add_patch(Rectangle(((-spec.width_m / 2 + c * patch_m) / 1e3, (-spec.height_m / 2 + r * patch_m) / 1e3),
                                        patch_m / 1e3, patch_m / 1e3, fill=False, lw=1.4 if chosen else 0.3,
                                        ec="cyan" if chosen else "white"))
    ax0.set(xlabel="x [km]", ylabel="y [km]",
            title=f"{len(city.buildings):,} buildings, {len(city.roads):,} ways,\n"
                  f"{spec.width_m / 1e3:.1f} x {spec.height_m / 1e3:.1f} km")
    ax0.title.set_fontsize(9)
    half = zoom_m / 2
    from shapely.geometry import box

    window = box(-half, -half, half, half)
    b = city.buildings[city.buildings.intersects(window)]
    r = city.roads[city.roads.intersects(window)]
    levels = b["building:levels"].astype(float)
    b.plot(ax=ax1, column=levels.fillna(-1), cmap="viridis", edgecolor="k", linewidth=0.2)
    r.plot(ax=ax1, linewidth=[w / 3 for w in r["width_m"]], color="0.5")
    ax1.set(xlim=(-half, half), ylim=(-half, half), xlabel="x [m]", ylabel="y [m]",
            title=f"the centre's {zoom_m:.0f} m: footprints (colour: levels,\ndark: none tagged) and streets")
    ax1.title.set_fontsize(9)
    ax1.set_aspect("equal")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="example: python -m bench.synthetic_city out/city.geojson --size-m 3000")
    p.add_argument("out", help="GeoJSON file to write")
    p.add_argument("--size-m", type=float, default=3000.0, help="side of the square city [m] (default 3000)")
    p.add_argument("--density", type=float, default=470.0, help="buildings per km² (default 470)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", help="also write this PNG (density map and a zoom)")
    a = p.parse_args(argv)
    t = time.perf_counter()
    path, city = write_city(a.out, CitySpec(width_m=a.size_m, height_m=a.size_m, buildings_per_km2=a.density,
                                            seed=a.seed))
    print(f"{path}: {len(city.buildings)} buildings, {len(city.roads)} ways, bbox {city.bbox}, "
          f"{path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t:.1f} s")
    if a.plot:
        print(plot_city(city, a.plot))


if __name__ == "__main__":
    main()
