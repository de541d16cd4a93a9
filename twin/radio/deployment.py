"""Base-station deployment: where the cells of a scene stand (``twin deploy``).

Strategies (seed 004, §4.2-4.3):

- ``file``: real sites from a BS file (Dataset B), checked against the scene.
- ``grid``: ``count`` sites on a regular lattice over the scene.
- ``random``: ``count`` sites drawn uniformly with a minimum spacing (Dataset C).
- ``dense``: ``count`` sites concentrated in clusters, at least ``min_visible`` of them in every
  tile of side ``crop_m / 2``. A ``crop_m`` square centred anywhere in the scene holds
  the whole tile its centre falls in, so every such crop sees ``min_visible`` sites
  (Dataset C's denser variant: "≥ 3 BS visibility per 600 m crop").

Each site carries 1 or 3 sectors (120° apart, each its own ``cell_id``). Heights are
``height_m`` above the ground, or the roof plus ``mast_m`` with ``height="rooftop"``
(then sites stand on buildings). Everything is drawn from ``seed``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from twin.errors import InputError
from twin.radio.sites import DEFAULTS, place_sites, read_bs_file, validate_sites

__all__ = ["DeployConfig", "deploy", "deploy_to_file", "STRATEGIES"]

STRATEGIES = ("file", "grid", "random", "dense")


@dataclass(frozen=True)
class DeployConfig:
    """How to deploy base stations.

    Attributes
    ----------
    count : int
        Number of sites, exactly (for ``dense`` at least ``min_visible`` per tile:
        a smaller count is refused with the count needed; the rest go to random tiles).
    min_spacing_m : float
        Smallest distance between two sites [m].
    margin_m : float
        Sites keep this far from the scene's edge [m].
    height : "fixed" or "rooftop"
        ``fixed``: ``height_m`` above the ground; ``rooftop``: on a building, its roof
        plus ``mast_m``.
    sectors : 1 or 3
        Sectors per site, 120° apart from ``azimuth_deg``.
    azimuth_deg : float or None
        First sector's azimuth, clockwise from north; None draws one per site.
    pattern : str or None
        Antenna pattern; None gives ``iso`` for 1 sector and ``tr38901`` for 3.
    crop_m, min_visible, cluster_radius_m : float, int, float
        ``dense`` only: the crop side, the sites each crop must hold, and the radius
        of the cluster each tile's sites are drawn in.
    on_building : "rooftop" or "reject"
        For ``file``: an antenna inside a building is lifted to its roof or rejected.
    """

    count: int = 10
    min_spacing_m: float = 50.0
    margin_m: float = 20.0
    height: Literal["fixed", "rooftop"] = "fixed"
    height_m: float = DEFAULTS["height_m"]
    mast_m: float = 5.0
    sectors: int = 3
    azimuth_deg: float | None = 0.0
    tilt_deg: float = 6.0
    power_dbm: float = DEFAULTS["power_dbm"]
    frequency_hz: float = DEFAULTS["frequency_hz"]
    bandwidth_hz: float = DEFAULTS["bandwidth_hz"]
    pattern: str | None = None
    crop_m: float = 600.0
    min_visible: int = 3
    cluster_radius_m: float = 75.0
    on_building: Literal["rooftop", "reject"] = "rooftop"
    first_cell_id: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.count < 1:
            problems.append(f"count: {self.count} must be >= 1")
        if self.sectors not in (1, 3):
            problems.append(f"sectors: {self.sectors} must be 1 or 3")
        if self.height not in ("fixed", "rooftop"):
            problems.append(f"height: {self.height!r} must be 'fixed' or 'rooftop'")
        for name in ("min_spacing_m", "margin_m", "mast_m", "cluster_radius_m"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name}: {getattr(self, name)} must be >= 0")
        for name in ("height_m", "crop_m"):
            if not getattr(self, name) > 0:
                problems.append(f"{name}: {getattr(self, name)} must be > 0")
        if self.min_visible < 1:
            problems.append(f"min_visible: {self.min_visible} must be >= 1")
        if problems:
            raise InputError("deploy config: " + "; ".join(problems))


def _candidates(scene: Any, cfg: DeployConfig) -> np.ndarray:
    """Cell centres ``(K, 2)`` [m] where a site may stand: inside the margin (and on a roof if asked)."""
    grid = scene.grid
    centers = grid.centers_m().reshape(-1, 2)
    x0, y0, x1, y1 = grid.extent_m
    m = cfg.margin_m
    ok = ((centers[:, 0] >= x0 + m) & (centers[:, 0] <= x1 - m)
          & (centers[:, 1] >= y0 + m) & (centers[:, 1] <= y1 - m))
    if cfg.height == "rooftop":
        ok &= scene.layers["building_mask"].reshape(-1) > 0
    if not ok.any():
        raise InputError(f"deploy: no {'rooftop ' if cfg.height == 'rooftop' else ''}position lies "
                         f"{m:g} m inside the scene's edge; lower margin_m")
    return centers[ok]


def _dart(rng: np.random.Generator, pool: np.ndarray, n: int, spacing: float, taken: list[np.ndarray],
          what: str) -> list[np.ndarray]:
    """Draw ``n`` points from ``pool`` at least ``spacing`` from each other and from ``taken``."""
    chosen: list[np.ndarray] = []
    order = rng.permutation(len(pool))
    for idx in order:
        p = pool[idx]
        others = taken + chosen
        if others and np.min(np.hypot(*(np.asarray(others) - p).T)) < spacing:
            continue
        chosen.append(p)
        if len(chosen) == n:
            return chosen
    raise InputError(f"deploy: could place only {len(chosen)} of {n} sites {what} at a spacing of "
                     f"{spacing:g} m; lower min_spacing_m or the count")


def _grid_sites(scene: Any, cfg: DeployConfig, pool: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = scene.grid.extent_m
    m = cfg.margin_m
    w, h = x1 - x0 - 2 * m, y1 - y0 - 2 * m
    cols = max(1, round(math.sqrt(cfg.count * w / h)))
    rows = math.ceil(cfg.count / cols)
    xs = x0 + m + (np.arange(cols) + 0.5) * w / cols
    ys = y0 + m + (np.arange(rows) + 0.5) * h / rows
    lattice = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)[: cfg.count]
    if len(lattice) > 1 and min(w / cols, h / rows) < cfg.min_spacing_m:
        raise InputError(f"deploy grid: {cfg.count} sites are {min(w / cols, h / rows):.0f} m apart, "
                         f"below min_spacing_m={cfg.min_spacing_m:g}; lower the count")
    # snap each lattice point to the nearest allowed position (a roof in rooftop mode)
    d = np.hypot(pool[None, :, 0] - lattice[:, None, 0], pool[None, :, 1] - lattice[:, None, 1])
    return pool[np.argmin(d, axis=1)]


def _dense_sites(scene: Any, cfg: DeployConfig, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x0, y0, x1, y1 = scene.grid.extent_m
    tile = cfg.crop_m / 2
    nx, ny = math.ceil((x1 - x0) / tile - 1e-9), math.ceil((y1 - y0) / tile - 1e-9)
    n_tiles = nx * ny
    per_tile = np.full(n_tiles, cfg.min_visible)
    need = int(per_tile.sum())
    if cfg.count < need:  # never place more sites than asked
        raise InputError(f"deploy dense: count: {cfg.count} sites cannot give min_visible={cfg.min_visible} sites "
                         f"in each of the {n_tiles} tiles ({nx} x {ny} tiles of {tile:g} m = crop_m / 2): that "
                         f"needs {need} sites; pass --count {need} (or more), lower --min-visible or raise --crop-m")
    extra = cfg.count - need
    per_tile += np.bincount(rng.integers(0, n_tiles, size=extra), minlength=n_tiles)
    taken: list[np.ndarray] = []
    for t in range(n_tiles):
        tx0, ty0 = x0 + (t % nx) * tile, y0 + (t // nx) * tile
        in_tile = ((pool[:, 0] >= tx0) & (pool[:, 0] < tx0 + tile)
                   & (pool[:, 1] >= ty0) & (pool[:, 1] < ty0 + tile))
        tile_pool = pool[in_tile]
        if len(tile_pool) == 0:
            raise InputError(f"deploy dense: the tile at ({tx0:.0f}, {ty0:.0f}) m has no allowed position; "
                             "lower margin_m or use height='fixed'")
        centre = tile_pool[rng.integers(len(tile_pool))]
        near = tile_pool[np.hypot(*(tile_pool - centre).T) <= cfg.cluster_radius_m]
        try:
            taken += _dart(rng, near, int(per_tile[t]), cfg.min_spacing_m, taken, "in a cluster")
        except InputError:  # the cluster is too tight for the spacing: use the whole tile
            taken += _dart(rng, tile_pool, int(per_tile[t]), cfg.min_spacing_m, taken,
                           f"in the tile at ({tx0:.0f}, {ty0:.0f}) m")
    return np.asarray(taken)


def _site_table(scene: Any, xy: np.ndarray, cfg: DeployConfig, rng: np.random.Generator) -> pd.DataFrame:
    grid = scene.grid
    i, j, _ = grid.index_of(xy)
    roof = np.where(scene.layers["building_mask"][i, j] > 0, scene.layers["building_height_m"][i, j], 0.0)
    heights = roof + cfg.mast_m if cfg.height == "rooftop" else np.full(len(xy), cfg.height_m)
    pattern = cfg.pattern or ("iso" if cfg.sectors == 1 else "tr38901")
    rows = []
    cell_id = cfg.first_cell_id
    for s, (x, y) in enumerate(xy):
        az0 = float(rng.uniform(0, 360)) if cfg.azimuth_deg is None else float(cfg.azimuth_deg)
        for k in range(cfg.sectors):
            rows.append({"bs_id": f"bs{s:03d}", "cell_id": cell_id, "x_m": float(x), "y_m": float(y),
                         "height_m": float(heights[s]), "azimuth_deg": (az0 + 120.0 * k) % 360.0,
                         "tilt_deg": cfg.tilt_deg, "power_dbm": cfg.power_dbm,
                         "frequency_hz": cfg.frequency_hz, "bandwidth_hz": cfg.bandwidth_hz,
                         "pattern": pattern})
            cell_id += 1
    table = validate_sites(pd.DataFrame(rows), "deployed sites")
    lon, lat = scene.frame.to_lonlat(table["x_m"].to_numpy(), table["y_m"].to_numpy())
    table.insert(2, "lon", lon)
    table.insert(3, "lat", lat)
    return table


def deploy(scene: Any, strategy: str, config: DeployConfig | None = None, seed: int = 0,
           bs_file: str | os.PathLike | None = None, **kwargs: Any) -> pd.DataFrame:
    """Deploy base stations on a scene; return the BS table (one row per cell).

    Parameters
    ----------
    scene : TwinScene
        The scene (its grid, frame and building layers).
    strategy : {"file", "grid", "random", "dense"}
    config : DeployConfig, optional
        Options; ``kwargs`` override its fields (``deploy(scene, "grid", count=4)``).
    seed : int
        Seed of every random draw.
    bs_file : path
        The input BS file (``file`` only).

    Returns
    -------
    DataFrame
        Columns of :data:`twin.radio.sites.COLUMNS`; write it with :func:`twin.radio.sites.write_bs_file`.
    """
    import dataclasses

    try:
        cfg = dataclasses.replace(config or DeployConfig(), **kwargs)
    except TypeError as err:
        raise InputError(f"deploy: {err}") from err
    if strategy not in STRATEGIES:
        raise InputError(f"deploy: unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if strategy == "file":
        if bs_file is None:
            raise InputError("deploy file: give the BS file (--bs-file)")
        return read_bs_file(bs_file, scene, on_building=cfg.on_building, mast_m=cfg.mast_m)
    if bs_file is not None:
        raise InputError(f"deploy {strategy}: --bs-file is only read by the 'file' strategy")
    rng = np.random.default_rng(seed)
    pool = _candidates(scene, cfg)
    if strategy == "grid":
        xy = _grid_sites(scene, cfg, pool)
    elif strategy == "random":
        xy = np.asarray(_dart(rng, pool, cfg.count, cfg.min_spacing_m, [], "in the scene"))
    else:
        xy = _dense_sites(scene, cfg, pool, rng)
    table = _site_table(scene, xy, cfg, rng)
    if cfg.height == "fixed":
        table = place_sites(table, scene, "rooftop", cfg.mast_m, what=f"deploy {strategy}")
    return table


def deploy_to_file(scene: Any, strategy: str, out: str | os.PathLike, config: DeployConfig | None = None,
                   seed: int = 0, bs_file: str | os.PathLike | None = None, overwrite: bool = False,
                   **kwargs: Any) -> pd.DataFrame:
    """:func:`deploy` on a scene (object or directory), then write the BS file ``out`` atomically.

    The output is checked first, so an existing file without ``overwrite`` fails before any work.
    """
    from twin.io import check_output
    from twin.radio.sites import write_bs_file
    from twin.scene.build import TwinScene, load_twin_scene

    check_output(out, overwrite, "file")
    scene = scene if isinstance(scene, TwinScene) else load_twin_scene(scene)
    table = deploy(scene, strategy, config, seed=seed, bs_file=bs_file, **kwargs)
    write_bs_file(table, out, scene, overwrite=overwrite)
    return table
