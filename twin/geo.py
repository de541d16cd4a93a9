"""The one transform between lon/lat and scene metres, and the raster grid shared by all stages.

Conventions (DESIGN.md): scene ``x`` grows east and ``y`` north, in metres from the
scene origin, in the metric UTM zone of the area. Grid column ``j`` grows east and
row ``i`` grows north; cell centres lie at ``x0_m + (j + 0.5) * cell_size_m`` and
``y0_m + (i + 0.5) * cell_size_m``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info

from twin.errors import InputError

__all__ = ["SceneFrame", "Grid", "utm_crs_for", "validate_bbox", "MAX_GRID_CELLS", "blend_corners", "MIN_FINITE_WEIGHT"]

#: The NaN rule of bilinear sampling (:func:`blend_corners`, :meth:`Grid.sample`): a point
#: is NaN only when its finite corners carry less than this share of the bilinear weight.
#: The NaN cells of radio maps are building cells and shadowed cells that caught no ray;
#: a street point beside a wall, or a drive-test point beside an empty Monte-Carlo cell,
#: takes its finite neighbours' value however small their share (down to the point on a
#: NaN cell's centre, where it is 0). So the threshold only has to separate "no weight" from
#: "some weight" in float32 arithmetic, whose rounding of a zero weight stays below ~1e-7:
#: 1e-6 is safely above that and far below the weight of any neighbour a point sits near.
MIN_FINITE_WEIGHT = 1e-6


def validate_bbox(bbox: tuple[float, float, float, float], max_area_km2: float | None = None,
                  what: str = "bbox") -> tuple[float, float, float, float]:
    """Check a WGS84 ``(west, south, east, north)`` box in degrees and return it as floats.

    Raises :class:`InputError` for a malformed, inverted, degenerate or too large box.
    """
    try:
        west, south, east, north = (float(v) for v in bbox)
    except (TypeError, ValueError) as err:
        raise InputError(f"{what}: expected four numbers W,S,E,N in degrees, got {bbox!r}") from err
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise InputError(f"{what}: values must be finite, got {bbox!r}")
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90 and -90 <= north <= 90):
        raise InputError(f"{what}: {bbox!r} is outside lon [-180, 180] / lat [-90, 90]")
    if west >= east or south >= north:
        raise InputError(
            f"{what}: inverted or degenerate box W={west}, S={south}, E={east}, N={north}; "
            "expected west < east and south < north"
        )
    if max_area_km2 is not None:
        frame = SceneFrame.from_lonlat((west + east) / 2, (south + north) / 2)
        xs, ys = frame.to_scene(np.array([west, east, east, west]), np.array([south, south, north, north]))
        area_km2 = (xs.max() - xs.min()) * (ys.max() - ys.min()) / 1e6
        if area_km2 > max_area_km2:
            raise InputError(
                f"{what}: the box covers {area_km2:.1f} km², above the limit of {max_area_km2:g} km²; "
                "split it into tiles (twin generate) or raise max_area_km2"
            )
    return west, south, east, north


def blend_corners(corner_values: Sequence[np.ndarray] | np.ndarray, weights: np.ndarray, *,
                  skip_nan: bool = True) -> np.ndarray:
    """The NaN-aware bilinear blend of four corner values: the one rule every sampler uses.

    Parameters
    ----------
    corner_values : four arrays ``(N, ...)`` (or one ``(4, N, ...)``)
        The values at the corners of :meth:`Grid.corners`, any trailing shape (cells,
        features); gathered by the caller in whatever memory layout suits it.
    weights : ``(4, N)``
        The bilinear weights of :meth:`Grid.corners`.
    skip_nan : bool
        Drop non-finite corners (NaN, and -inf "not received"): their weights are left
        out and the others renormalized to sum to 1, and the point is NaN only where the
        finite corners' weight is below :data:`MIN_FINITE_WEIGHT`. Where all four corners
        are finite this is plain bilinear interpolation (up to rounding). Without it the
        plain weighted sum is returned and NaN corners propagate.

    Returns ``(N, ...)`` in the values' floating dtype (float32 at least).
    """
    first = np.asarray(corner_values[0])
    dtype = np.result_type(first.dtype, np.float32)
    weights = np.asarray(weights, dtype)
    num = np.zeros(first.shape, dtype)
    den = np.zeros(first.shape, dtype) if skip_nan else None
    for v, w in zip(corner_values, weights, strict=True):
        v = np.asarray(v)
        w = w.reshape(-1, *([1] * (v.ndim - 1)))
        if den is None:
            num += v * w
            continue
        ok = np.isfinite(v)
        num += np.where(ok, v, 0) * w
        den += ok * w
    if den is None:
        return num
    with np.errstate(invalid="ignore", divide="ignore"):
        num /= den
    num[~(den >= MIN_FINITE_WEIGHT)] = np.nan
    return num


def utm_crs_for(lon: float, lat: float) -> str:
    """The EPSG code (``"EPSG:326xx"`` or ``"EPSG:327xx"``) of the WGS84 UTM zone holding a point."""
    infos = query_utm_crs_info(
        datum_name="WGS 84",
        area_of_interest=AreaOfInterest(lon, lat, lon, lat),
    )
    if not infos:
        raise InputError(f"no UTM zone covers lon={lon}, lat={lat}")
    return f"{infos[0].auth_name}:{infos[0].code}"


@dataclass(frozen=True)
class SceneFrame:
    """A scene's metric frame: a UTM CRS and the lon/lat of the scene origin.

    Parameters
    ----------
    crs : str
        The metric CRS, e.g. ``"EPSG:32635"``.
    origin_lon, origin_lat : float
        The scene origin (x = y = 0) in WGS84 degrees.
    """

    crs: str
    origin_lon: float
    origin_lat: float

    @classmethod
    def from_lonlat(cls, lon: float, lat: float) -> SceneFrame:
        """The frame with its origin at ``(lon, lat)`` in that point's UTM zone."""
        return cls(crs=utm_crs_for(lon, lat), origin_lon=float(lon), origin_lat=float(lat))

    @cached_property
    def _forward(self) -> Transformer:
        return Transformer.from_crs("EPSG:4326", CRS.from_user_input(self.crs), always_xy=True)

    @cached_property
    def _inverse(self) -> Transformer:
        return Transformer.from_crs(CRS.from_user_input(self.crs), "EPSG:4326", always_xy=True)

    @cached_property
    def origin_projected_m(self) -> tuple[float, float]:
        """The origin's easting and northing in the CRS [m]."""
        e, n = self._forward.transform(self.origin_lon, self.origin_lat)
        return float(e), float(n)

    def to_scene(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 degrees to scene ``(x_m, y_m)``; arrays of any matching shape."""
        e, n = self._forward.transform(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
        e0, n0 = self.origin_projected_m
        return np.asarray(e) - e0, np.asarray(n) - n0

    def to_lonlat(self, x_m: Any, y_m: Any) -> tuple[np.ndarray, np.ndarray]:
        """Scene ``(x_m, y_m)`` to WGS84 ``(lon, lat)`` degrees."""
        e0, n0 = self.origin_projected_m
        lon, lat = self._inverse.transform(np.asarray(x_m, dtype=np.float64) + e0,
                                           np.asarray(y_m, dtype=np.float64) + n0)
        return np.asarray(lon), np.asarray(lat)

    def projected_to_scene(self, easting_m: Any, northing_m: Any) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates already in ``crs`` [m] to scene metres (a shift by the origin)."""
        e0, n0 = self.origin_projected_m
        return np.asarray(easting_m) - e0, np.asarray(northing_m) - n0

    def to_dict(self) -> dict[str, Any]:
        return {"crs": self.crs, "origin_lon": self.origin_lon, "origin_lat": self.origin_lat}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneFrame:
        return cls(crs=str(data["crs"]), origin_lon=float(data["origin_lon"]),
                   origin_lat=float(data["origin_lat"]))


MAX_GRID_CELLS = 100_000_000
"""The largest grid (width x height cells) any layer or map may have: 400 MB per float32
layer. Larger areas are split into tiles or patches (``tile_size_m``, ``twin generate``)."""


def _check_grid_size(width: int, height: int, cell_size_m: float) -> None:
    cells = int(width) * int(height)
    if cells > MAX_GRID_CELLS:
        side_m = math.sqrt(cells / MAX_GRID_CELLS) * cell_size_m
        raise InputError(f"grid: cell_size_m {cell_size_m:g} gives {width} x {height} = {cells:.3g} cells, above "
                         f"the limit of {MAX_GRID_CELLS:,} (twin.geo.MAX_GRID_CELLS); use a cell size of at least "
                         f"{side_m:.3g} m (--cell-size) or a smaller area")


@dataclass(frozen=True)
class Grid:
    """A north-up raster in scene metres, shared by GIS layers and radio maps.

    Parameters
    ----------
    x0_m, y0_m : float
        Scene coordinates of the south-west corner [m].
    cell_size_m : float
        Side of a square cell [m].
    width, height : int
        Number of columns (growing east) and rows (growing north).
    """

    x0_m: float
    y0_m: float
    cell_size_m: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if not (self.cell_size_m > 0 and self.width > 0 and self.height > 0):
            raise InputError(f"grid: cell_size_m, width and height must be positive, got {self}")
        _check_grid_size(self.width, self.height, self.cell_size_m)

    @classmethod
    def covering(cls, x_min_m: float, y_min_m: float, x_max_m: float, y_max_m: float,
                 cell_size_m: float) -> Grid:
        """The grid of ``cell_size_m`` cells that covers a box, centred on it."""
        if cell_size_m <= 0:
            raise InputError(f"cell_size_m must be positive, got {cell_size_m}")
        width = max(1, math.ceil((x_max_m - x_min_m) / cell_size_m - 1e-9))
        height = max(1, math.ceil((y_max_m - y_min_m) / cell_size_m - 1e-9))
        _check_grid_size(width, height, cell_size_m)
        cx, cy = (x_min_m + x_max_m) / 2, (y_min_m + y_max_m) / 2
        return cls(cx - width * cell_size_m / 2, cy - height * cell_size_m / 2,
                   float(cell_size_m), width, height)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``: the array shape of a layer on this grid."""
        return self.height, self.width

    @property
    def size_m(self) -> tuple[float, float]:
        """``(width_m, height_m)`` of the covered area."""
        return self.width * self.cell_size_m, self.height * self.cell_size_m

    @property
    def center_m(self) -> tuple[float, float]:
        w, h = self.size_m
        return self.x0_m + w / 2, self.y0_m + h / 2

    @property
    def extent_m(self) -> tuple[float, float, float, float]:
        """``(x_min, y_min, x_max, y_max)`` in scene metres."""
        w, h = self.size_m
        return self.x0_m, self.y0_m, self.x0_m + w, self.y0_m + h

    def x_centers_m(self) -> np.ndarray:
        """Cell-centre x of each column, shape ``(width,)`` [m]."""
        return self.x0_m + (np.arange(self.width) + 0.5) * self.cell_size_m

    def y_centers_m(self) -> np.ndarray:
        """Cell-centre y of each row, shape ``(height,)`` [m]."""
        return self.y0_m + (np.arange(self.height) + 0.5) * self.cell_size_m

    def centers_m(self) -> np.ndarray:
        """Cell centres, shape ``(height, width, 2)`` with ``[..., 0] = x``, ``[..., 1] = y`` [m]."""
        xx, yy = np.meshgrid(self.x_centers_m(), self.y_centers_m())
        return np.stack([xx, yy], axis=-1)

    def index_of(self, xy_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row ``i``, column ``j`` of the cell holding each point, and whether it is inside.

        ``xy_m`` has shape ``(..., 2)``; outside points get clipped indices and ``inside=False``.
        """
        xy_m = np.asarray(xy_m, dtype=np.float64)
        j = np.floor((xy_m[..., 0] - self.x0_m) / self.cell_size_m).astype(np.int64)
        i = np.floor((xy_m[..., 1] - self.y0_m) / self.cell_size_m).astype(np.int64)
        inside = (i >= 0) & (i < self.height) & (j >= 0) & (j < self.width)
        return np.clip(i, 0, self.height - 1), np.clip(j, 0, self.width - 1), inside

    def contains(self, xy_m: np.ndarray) -> np.ndarray:
        """Whether each point of shape ``(..., 2)`` lies inside the grid's extent."""
        return self.index_of(xy_m)[2]

    def corners(self, xy_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The four bilinear neighbours of points ``(N, 2)`` [m]: rows, columns, weights, each ``(4, N)``.

        Cell values sit at cell centres. The corners come in the order ``(i0, j0)``,
        ``(i0, j1)``, ``(i1, j0)``, ``(i1, j1)`` with ``i1 = i0 + 1`` (north) and
        ``j1 = j0 + 1`` (east), clamped to the grid; the float64 weights are the usual
        bilinear products and sum to 1. Points between the outermost centres and the edge
        (or beyond it) are moved onto the outermost centres, so they take the edge value.
        """
        xy_m = np.asarray(xy_m, dtype=np.float64).reshape(-1, 2)
        fx = np.clip((xy_m[:, 0] - self.x0_m) / self.cell_size_m - 0.5, 0.0, self.width - 1.0)
        fy = np.clip((xy_m[:, 1] - self.y0_m) / self.cell_size_m - 0.5, 0.0, self.height - 1.0)
        j0 = np.minimum(np.floor(fx).astype(np.int64), max(self.width - 2, 0))
        i0 = np.minimum(np.floor(fy).astype(np.int64), max(self.height - 2, 0))
        j1 = np.minimum(j0 + 1, self.width - 1)
        i1 = np.minimum(i0 + 1, self.height - 1)
        wx, wy = fx - j0, fy - i0
        rows = np.stack([i0, i0, i1, i1])
        cols = np.stack([j0, j1, j0, j1])
        weights = np.stack([(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy])
        return rows, cols, weights

    def sample(self, values: np.ndarray, xy_m: np.ndarray, *, skip_nan: bool = True) -> np.ndarray:
        """Bilinear interpolation of ``values`` ``(..., height, width)`` at points ``(N, 2)`` [m].

        Returns ``(..., N)`` in the values' floating dtype (at least float32). Cell values
        sit at cell centres (:meth:`corners`); with ``skip_nan`` (default) non-finite
        corners drop out by the rule of :func:`blend_corners`, without it a NaN corner
        makes the point NaN (plain bilinear interpolation, as ``torch`` ``grid_sample``).
        """
        values = np.asarray(values)
        rows, cols, weights = self.corners(xy_m)
        corner_values = [np.moveaxis(values[..., r, c], -1, 0) for r, c in zip(rows, cols, strict=True)]
        return np.moveaxis(blend_corners(corner_values, weights, skip_nan=skip_nan), 0, -1)

    def window(self, x_min_m: float, y_min_m: float, x_max_m: float, y_max_m: float
               ) -> tuple[Grid, tuple[slice, slice]]:
        """The sub-grid of whole cells covering a box, and the ``(rows, cols)`` slices into this grid."""
        j0 = max(0, math.floor((x_min_m - self.x0_m) / self.cell_size_m))
        i0 = max(0, math.floor((y_min_m - self.y0_m) / self.cell_size_m))
        j1 = min(self.width, math.ceil((x_max_m - self.x0_m) / self.cell_size_m))
        i1 = min(self.height, math.ceil((y_max_m - self.y0_m) / self.cell_size_m))
        if j1 <= j0 or i1 <= i0:
            raise InputError(f"window ({x_min_m}, {y_min_m}, {x_max_m}, {y_max_m}) misses the grid {self.extent_m}")
        sub = Grid(self.x0_m + j0 * self.cell_size_m, self.y0_m + i0 * self.cell_size_m,
                   self.cell_size_m, j1 - j0, i1 - i0)
        return sub, (slice(i0, i1), slice(j0, j1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grid:
        try:
            return cls(float(data["x0_m"]), float(data["y0_m"]), float(data["cell_size_m"]),
                       int(data["width"]), int(data["height"]))
        except KeyError as err:
            raise InputError(f"grid attributes lack {err.args[0]!r}: {data}") from err
