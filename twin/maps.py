"""The radio-map store written by ``twin trace`` (Zarr v3), its reader, point sampling and pictures.

Layout (``schema_version`` 1, DESIGN.md "Radio maps")::

    maps.zarr/        attrs: schema_version=1, kind="twin-maps", complete, cell_ids, grid,
                             frame, scene, sites (the BS table as records), trace_config,
                             metric_config, arrays (name -> unit), notes
      path_gain_db    (cell, y, x) float32  dB, NaN where no ray arrived
      rsrp_dbm, rsrq_db, sinr_db, snr_db, cell_rssi_dbm   (cell, y, x) float32
      rssi_dbm, bler, throughput_bps                      (y, x) float32
      serving_cell    (y, x) int16  index into cell_ids, -1 where no cell is received

The first axis follows ``cell_ids`` (the BS table's order). Row ``i`` grows north,
column ``j`` east, on ``grid`` (``twin.geo.Grid``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin._atomic import atomic_store
from twin.errors import InputError
from twin.geo import Grid, SceneFrame

__all__ = ["MAPS_SCHEMA_VERSION", "UNITS", "RadioMaps", "write_maps", "open_maps",
           "evaluate_points", "show_map"]

MAPS_SCHEMA_VERSION = 1
UNITS = {"path_gain_db": "dB", "rsrp_dbm": "dBm", "rsrq_db": "dB", "sinr_db": "dB", "snr_db": "dB",
         "cell_rssi_dbm": "dBm", "rssi_dbm": "dBm", "serving_cell": "index", "bler": "1",
         "throughput_bps": "bit/s"}


def _config_dict(cfg: Any) -> Any:
    import dataclasses

    if cfg is None:
        return None
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return dict(cfg) if isinstance(cfg, dict) else str(cfg)


def _records(sites: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for rec in sites.to_dict(orient="records"):
        rec = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in rec.items()}
        out.append({k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in rec.items()})
    return out


def write_maps(out: str | os.PathLike, grid: Grid, scene: Any, sites: pd.DataFrame,
               arrays: dict[str, np.ndarray], trace_config: Any = None, metric_config: Any = None,
               notes: list[str] | None = None, overwrite: bool = False) -> Path:
    """Write a radio-map store atomically; see the module docstring for the layout.

    ``arrays`` maps names to ``(n_cells, H, W)`` or ``(H, W)`` arrays on ``grid``; the
    store must hold ``path_gain_db``.
    """
    import zarr

    n = len(sites)
    if "path_gain_db" not in arrays:
        raise InputError("radio maps: 'path_gain_db' is required")
    for name, arr in arrays.items():
        if arr.shape not in ((n, *grid.shape), grid.shape):
            raise InputError(f"radio maps: {name!r} has shape {arr.shape}, expected "
                             f"{(n, *grid.shape)} or {grid.shape}")
    with atomic_store(out, overwrite=overwrite) as url:
        root = zarr.open_group(url, mode="w", zarr_format=3)
        root.attrs.update({
            "schema_version": MAPS_SCHEMA_VERSION, "kind": "twin-maps", "complete": False,
            "cell_ids": [int(c) for c in sites["cell_id"]], "grid": grid.to_dict(),
            "frame": scene.frame.to_dict(), "scene": str(getattr(scene, "path", "")),
            "sites": _records(sites), "trace_config": _config_dict(trace_config),
            "metric_config": _config_dict(metric_config),
            "arrays": {k: UNITS.get(k, "") for k in arrays}, "notes": list(notes or []),
        })
        for name, arr in arrays.items():
            per_cell = arr.ndim == 3
            data = arr if np.issubdtype(arr.dtype, np.integer) else arr.astype(np.float32)
            root.create_array(name, data=data, chunks=(1, *grid.shape) if per_cell else grid.shape,
                              dimension_names=("cell", "y", "x") if per_cell else ("y", "x"),
                              attributes={"units": UNITS.get(name, "")})
        root.attrs["complete"] = True
    return Path(os.fspath(out))


@dataclass
class RadioMaps:
    """An opened radio-map store.

    Attributes
    ----------
    arrays : dict of name -> ndarray
        ``(n_cells, H, W)`` or ``(H, W)`` float32 (``serving_cell`` integer).
    grid : Grid
    frame : SceneFrame
    cell_ids : list of int
        The first axis of per-cell arrays.
    sites : DataFrame
        The BS table the maps were traced for.
    attrs : dict
        All store attributes (configs, notes, scene path).
    """

    arrays: dict[str, np.ndarray]
    grid: Grid
    frame: SceneFrame
    cell_ids: list[int]
    sites: pd.DataFrame
    attrs: dict[str, Any]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise InputError(f"radio maps hold no {name!r}; they hold {', '.join(self.arrays)}")
        return self.arrays[name]

    def cell_index(self, cell_id: int) -> int:
        try:
            return self.cell_ids.index(int(cell_id))
        except ValueError as err:
            raise InputError(f"radio maps: no cell {cell_id}; cells are {self.cell_ids}") from err


def open_maps(path: str | os.PathLike) -> RadioMaps:
    """Open a store written by ``twin trace``; refuse other kinds, versions and partial stores."""
    import zarr

    try:
        root = zarr.open_group(os.fspath(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
        raise InputError(f"{path}: no radio-map store here; make one with `twin trace`") from err
    attrs = dict(root.attrs)
    if attrs.get("kind") != "twin-maps":
        raise InputError(f"{path}: not a radio-map store (kind={attrs.get('kind')!r})")
    if attrs.get("schema_version") != MAPS_SCHEMA_VERSION:
        raise InputError(f"{path}: schema_version {attrs.get('schema_version')}, this toolkit reads "
                         f"{MAPS_SCHEMA_VERSION}; trace again")
    if not attrs.get("complete", False):
        raise InputError(f"{path}: incomplete store (its writer did not finish); trace again")
    arrays = {name: root[name][...] for name in attrs["arrays"]}
    return RadioMaps(arrays=arrays, grid=Grid.from_dict(attrs["grid"]), frame=SceneFrame.from_dict(attrs["frame"]),
                     cell_ids=[int(c) for c in attrs["cell_ids"]], sites=pd.DataFrame(attrs["sites"]),
                     attrs=attrs)


def evaluate_points(maps: RadioMaps | str | os.PathLike, xy_m: np.ndarray, name: str = "path_gain_db"
                    ) -> np.ndarray:
    """Bilinear samples of a map at points ``(N, 2)`` [scene m]: ``(n_cells, N)`` or ``(N,)``.

    Points outside the grid raise :class:`InputError`. NaN cells propagate to their
    neighbourhood (see :meth:`twin.geo.Grid.sample`).
    """
    if not isinstance(maps, RadioMaps):
        maps = open_maps(maps)
    xy_m = np.asarray(xy_m, dtype=np.float64).reshape(-1, 2)
    outside = np.flatnonzero(~maps.grid.contains(xy_m))
    if len(outside):
        raise InputError(f"points: {len(outside)} lie outside the maps' grid {maps.grid.extent_m}, "
                         f"first point {outside[0]} at {tuple(xy_m[outside[0]])}")
    values = maps[name]
    if name == "serving_cell":
        i, j, _ = maps.grid.index_of(xy_m)
        return values[i, j]
    return maps.grid.sample(values, xy_m).astype(np.float32)


def show_map(maps: str | os.PathLike, out_dir: str | os.PathLike, metric: str = "path_gain_db",
             cells: list[int] | None = None, scene: Any = None, overwrite: bool = False) -> list[Path]:
    """PNG pictures of a metric with BS markers over the building footprints.

    A per-cell metric gives one picture per cell in ``cells`` (default all) and the
    best-cell envelope (``<metric>-max.png``); an ``(H, W)`` metric gives one picture.
    ``scene`` (TwinScene or directory) defaults to the store's ``scene`` attribute;
    without footprints the maps are drawn alone. Returns the written paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twin._atomic import atomic_dir
    from twin.scene import TwinScene, load_twin_scene

    rm = open_maps(maps)
    values = rm[metric]
    if scene is None and rm.attrs.get("scene") and Path(rm.attrs["scene"], "scene.json").is_file():
        scene = rm.attrs["scene"]
    if scene is not None and not isinstance(scene, TwinScene):
        scene = load_twin_scene(scene)
    footprints = scene.buildings() if scene is not None else None
    pictures: list[tuple[str, np.ndarray, list[int]]] = []
    if values.ndim == 3:
        wanted = rm.cell_ids if cells is None else [int(c) for c in cells]
        for cid in wanted:
            pictures.append((f"{metric}-cell{cid}", values[rm.cell_index(cid)], [rm.cell_index(cid)]))
        envelope = np.max(np.where(np.isnan(values), -np.inf, values), axis=0)
        envelope[np.isinf(envelope)] = np.nan
        pictures.append((f"{metric}-max", envelope, list(range(len(rm.cell_ids)))))
    else:
        pictures.append((metric, values, list(range(len(rm.cell_ids)))))
    x0, y0, x1, y1 = rm.grid.extent_m
    written = []
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        for stem, img, idx in pictures:
            fig, ax = plt.subplots(figsize=(7, 6))
            im = ax.imshow(img, origin="lower", extent=(x0, x1, y0, y1), cmap="viridis")
            fig.colorbar(im, ax=ax, label=f"{metric} [{UNITS.get(metric, '')}]")
            if footprints is not None and len(footprints):
                footprints.boundary.plot(ax=ax, color="white", linewidth=0.6)
            s = rm.sites.iloc[idx]
            ax.scatter(s["x_m"], s["y_m"], marker="^", s=60, c="red", edgecolors="black", zorder=5)
            for _, row in s.iterrows():
                az = np.radians(float(row["azimuth_deg"]))
                ax.annotate("", xy=(row["x_m"] + 25 * np.sin(az), row["y_m"] + 25 * np.cos(az)),
                            xytext=(row["x_m"], row["y_m"]), arrowprops={"arrowstyle": "->", "color": "red"})
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.set_xlabel("x [m] (east)")
            ax.set_ylabel("y [m] (north)")
            ax.set_title(stem)
            fig.tight_layout()
            fig.savefig(tmp / f"{stem}.png", dpi=110)
            plt.close(fig)
            written.append(Path(out_dir) / f"{stem}.png")
    return written
