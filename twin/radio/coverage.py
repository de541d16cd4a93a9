"""Radio maps without ray-count holes: the ray budget per transmitter, hole filling, coverage flags.

Sionna's ``RadioMapSolver`` shoots ``samples_per_tx`` rays on a Fibonacci lattice of
the unit sphere; a map pixel of area ``A`` on the measurement plane at slant distance
``d`` from a transmitter ``dh`` above it subtends the solid angle ``A dh / d^3``, so it
is crossed by ``N A dh / (4 pi d^3)`` direct rays on average. :func:`samples_for_density`
inverts this: the rays that give ``rays_per_pixel`` direct rays to a pixel at the
density radius (the far edge of the area of interest, at most the map's far corner).
Shadowed pixels only see reflected, scattered or refracted rays and stay sparser;
:func:`fill_holes` then fills outdoor pixels that caught no ray within a bounded
distance along outdoor pixels of a received one (never indoors, never across a
building) with the window mean of the linear Monte-Carlo estimate, and flags them. ``docs/trace.md`` documents the treatment.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["NO_VALUE", "RECEIVED", "FILLED", "samples_for_density", "fill_holes", "coverage_counts",
           "unheard_fraction"]

#: ``coverage`` flags (uint8, per cell and pixel) of the maps store
NO_VALUE, RECEIVED, FILLED = 0, 1, 2


def samples_for_density(height_m: float, grid_extent_m: tuple[float, float, float, float], x_m: float,
                        y_m: float, cell_size_m: float, rays_per_pixel: float, radius_m: float,
                        rx_height_m: float = 1.5, min_samples: int = 1, max_samples: int | None = None) -> int:
    """Rays for one transmitter so that a pixel ``radius_m`` away gets ``rays_per_pixel`` direct rays.

    Parameters
    ----------
    height_m, x_m, y_m : float
        The antenna [m]: height above the ground and scene position.
    grid_extent_m : (x0, y0, x1, y1)
        The map; the radius is capped at the distance to its farthest corner.
    cell_size_m : float
        Pixel side [m].
    rays_per_pixel : float
        Expected direct rays crossing a pixel at the radius.
    radius_m : float
        Horizontal distance [m] at which the density is met (nearer pixels get more).
    rx_height_m : float
        The measurement plane's height [m]; the height difference is at least 1 m.
    min_samples, max_samples : int
        Bounds of the result.

    Returns
    -------
    int
        ``ceil(rays_per_pixel * 4 pi d^3 / (cell_size_m^2 * dh))`` within the bounds, with
        ``d = sqrt(r^2 + dh^2)``.
    """
    x0, y0, x1, y1 = grid_extent_m
    far_m = max(math.hypot(cx - x_m, cy - y_m) for cx in (x0, x1) for cy in (y0, y1))
    r = min(radius_m, far_m)
    dh = max(height_m - rx_height_m, 1.0)
    d = math.hypot(r, dh)
    n = math.ceil(rays_per_pixel * 4.0 * math.pi * d**3 / (cell_size_m**2 * dh))
    n = max(n, min_samples)
    return min(n, max_samples) if max_samples is not None else n


def _box_sum(values: np.ndarray, k: int) -> np.ndarray:
    """Sums over the ``(2k+1) x (2k+1)`` window around each pixel of ``values`` ``(..., H, W)`` (zero outside).

    Rounding leaves ~1e-7 relative error, and values of order 1e-16 of the largest where
    the exact sum is 0: callers use it only where the window holds a received pixel.
    """
    from scipy.ndimage import uniform_filter

    s = 2 * k + 1
    size = (1,) * (values.ndim - 2) + (s, s)
    return uniform_filter(np.asarray(values, np.float64), size=size, mode="constant") * (s * s)


def fill_holes(path_gain_db: np.ndarray, outdoor: np.ndarray, cell_size_m: float,
               radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Fill outdoor pixels that caught no ray from the outdoor pixels around them; flag them.

    With ``k = floor(radius_m / cell_size_m)``:

    - *which* holes: those an outdoor path of at most ``k`` 8-connected steps joins to
      a received outdoor pixel (a value never travels through or into a building, nor
      to a courtyard behind one; holes farther away stay NaN);
    - *what* value: the mean **linear** path gain over the outdoor pixels of the
      ``(2k+1) x (2k+1)`` window around the hole, holes counting as zero, in dB. The
      radio map is a Monte-Carlo estimate (a pixel's power is the sum of the rays that
      crossed it, zero when none did), unbiased pixel by pixel; the window mean is the
      same estimator over a larger area. Averaging the received neighbours alone, or
      in dB, would ignore the zeros and read a shadow as bright as its best-lit
      neighbour (measured: +8 dB against ``PathSolver``; docs/trace.md).

    Parameters
    ----------
    path_gain_db : ndarray ``(n_cells, H, W)`` or ``(H, W)``
        Path gain [dB], NaN where no ray arrived.
    outdoor : ndarray of bool ``(H, W)``
        Pixels outside every building.
    cell_size_m, radius_m : float
        Pixel side and the largest fill distance [m]; ``radius_m < cell_size_m`` fills nothing.

    Returns
    -------
    filled_db : ndarray, float32, the shape of ``path_gain_db``
    coverage : ndarray, uint8, same shape
        :data:`RECEIVED` where a ray arrived (indoors too), :data:`FILLED` where filled,
        :data:`NO_VALUE` elsewhere.
    """
    pg = np.asarray(path_gain_db, np.float32)
    outdoor = np.broadcast_to(np.asarray(outdoor, bool), pg.shape)
    received = np.isfinite(pg)
    source = received & outdoor
    k = int(radius_m // cell_size_m)
    reached = source
    if k > 0:  # geodesic reach: k 8-connected steps, each through outdoor pixels only
        from scipy.ndimage import binary_dilation

        step = np.zeros((1,) * (pg.ndim - 2) + (3, 3), bool)
        step[..., :, :] = True
        reached = binary_dilation(source, structure=step, iterations=k, mask=outdoor) | source
    filled = reached & ~received
    out = pg.copy()
    if filled.any():
        power = _box_sum(np.where(source, 10.0 ** (np.where(source, pg, 0.0) / 10.0), 0.0), k)
        area = _box_sum(outdoor[(0,) * (pg.ndim - 2)].astype(np.float64), k)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_db = 10.0 * np.log10(power / area)
        filled &= np.isfinite(mean_db)
        out[filled] = mean_db[filled]
    coverage = np.full(pg.shape, NO_VALUE, np.uint8)
    coverage[received] = RECEIVED
    coverage[filled] = FILLED
    return out, coverage


def coverage_counts(coverage: np.ndarray, outdoor: np.ndarray) -> list[dict[str, int]]:
    """Per cell of ``coverage`` ``(n_cells, H, W)``: pixels received / filled / unheard outdoors, and indoors."""
    outdoor = np.asarray(outdoor, bool)
    out = []
    for flags in coverage:
        out.append({
            "received_outdoor": int(((flags == RECEIVED) & outdoor).sum()),
            "filled_outdoor": int(((flags == FILLED) & outdoor).sum()),
            "unheard_outdoor": int(((flags == NO_VALUE) & outdoor).sum()),
            "received_indoor": int(((flags == RECEIVED) & ~outdoor).sum()),
            "unheard_indoor": int(((flags == NO_VALUE) & ~outdoor).sum()),
        })
    return out


def unheard_fraction(path_gain_db: np.ndarray, where: np.ndarray, centers_m: np.ndarray, sites_xy_m: np.ndarray,
                     radius_m: float = 500.0) -> float:
    """Share of the pixels ``where`` (``(H, W)`` bool) within ``radius_m`` of a site that no cell hears.

    ``path_gain_db`` is ``(n_cells, H, W)`` (NaN: not heard), ``centers_m`` the pixel
    centres ``(H, W, 2)`` and ``sites_xy_m`` the sites ``(S, 2)`` [m]. NaN if no pixel qualifies.
    """
    sites = np.asarray(sites_xy_m, np.float64).reshape(-1, 2)
    dist = np.min(np.hypot(centers_m[..., None, 0] - sites[:, 0], centers_m[..., None, 1] - sites[:, 1]), axis=-1)
    sel = np.asarray(where, bool) & (dist <= radius_m)
    if not sel.any():
        return float("nan")
    heard = np.isfinite(path_gain_db).any(axis=0)
    return float((~heard[sel]).mean())
