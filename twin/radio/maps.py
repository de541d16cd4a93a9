"""The radio-map store written by ``twin trace`` (Zarr v3), its reader, point sampling and pictures.

Layout (``schema_version`` :data:`MAPS_SCHEMA_VERSION`, DESIGN.md "Radio maps"); written only
by :func:`write_maps`, read by :func:`open_maps`::

    maps.zarr/        attrs: schema_version, kind=MAPS_KIND ("twin-maps"), complete, cell_ids, grid,
                             frame, scene, sites (the BS table as records), trace_config,
                             metric_config, arrays (name -> unit), notes
      path_gain_db    (cell, y, x) float32  dB, NaN where no ray arrived
      rsrp_dbm, rsrq_db, sinr_db, snr_db, cell_rssi_dbm   (cell, y, x) float32
      rssi_dbm, bler, throughput_bps                      (y, x) float32
      serving_cell    (y, x) int16  index into cell_ids, -1 where no cell is received
      coverage        (cell, y, x) uint8  1 ray-traced, 2 filled from outdoor neighbours, 0 NaN
                      (twin.radio.coverage); attrs["coverage"]: per cell its rays and counts
      beam_path_gain_db, beam_rsrp_dbm  (cell, beam, y, x) float32  dB, dBm: each SSB beam's map
      beam_coverage   (cell, beam, y, x) uint8  as ``coverage``, per beam
                      (only with ``twin trace --beams N``; attrs["beams"]: n_beams, the array,
                      the codebook, each cell's beam azimuths; twin.radio.beams)

Float arrays have fill value NaN and ``serving_cell`` -1, every chunk carries a CRC32C
checksum, and the root records each array's chunk files (``chunks_written``), checked at
every open (``twin.io``).

The first axis follows ``cell_ids`` (the BS table's order). Row ``i`` grows north,
column ``j`` east, on ``grid`` (``twin.geo.Grid``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin import io
from twin.errors import InputError
from twin.geo import Grid, SceneFrame
from twin.io import atomic_store

__all__ = ["MAPS_SCHEMA_VERSION", "MAPS_KIND", "UNITS", "BEAM_ARRAYS", "RadioMaps", "write_maps", "open_maps",
           "check_maps_scene", "evaluate_points", "show_map"]

#: ``schema_version`` and ``kind`` of the store's attributes; :func:`open_maps` reads only these.
MAPS_SCHEMA_VERSION = 1
MAPS_KIND = "twin-maps"
UNITS = {"path_gain_db": "dB", "rsrp_dbm": "dBm", "rsrq_db": "dB", "sinr_db": "dB", "snr_db": "dB",
         "cell_rssi_dbm": "dBm", "rssi_dbm": "dBm", "serving_cell": "index", "bler": "1",
         "throughput_bps": "bit/s", "coverage": "flag", "beam_path_gain_db": "dB", "beam_rsrp_dbm": "dBm",
         "beam_coverage": "flag"}
#: arrays that describe the maps rather than a measurable quantity: never features
NOT_FEATURES = frozenset({"serving_cell", "coverage", "beam_coverage", "beam_path_gain_db"})
#: per-beam arrays ``(cell, beam, y, x)``; as features they are the serving (strongest) beam's value
BEAM_ARRAYS = frozenset({"beam_path_gain_db", "beam_rsrp_dbm", "beam_coverage"})


def _config_dict(cfg: Any) -> Any:
    import dataclasses

    if cfg is None:
        return None
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
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
               notes: list[str] | None = None, overwrite: bool = False,
               extra_attrs: dict[str, Any] | None = None) -> Path:
    """Write a radio-map store atomically; see the module docstring for the layout.

    ``arrays`` maps names to ``(n_cells, H, W)`` or ``(H, W)`` arrays on ``grid``, and
    the :data:`BEAM_ARRAYS` to ``(n_cells, n_beams, H, W)`` with ``n_beams`` from
    ``extra_attrs["beams"]``; the store must hold ``path_gain_db``. ``extra_attrs``
    (JSON-able) are added to the group's attributes (``coverage``, ``beams`` from
    ``twin trace``).
    """
    import zarr

    n = len(sites)
    if "path_gain_db" not in arrays:
        raise InputError("radio maps: 'path_gain_db' is required")
    n_beams = int((extra_attrs or {}).get("beams", {}).get("n_beams", 0))
    for name, arr in arrays.items():
        expected = [(n, n_beams, *grid.shape)] if name in BEAM_ARRAYS else [(n, *grid.shape), grid.shape]
        if arr.shape not in expected or (name in BEAM_ARRAYS and n_beams < 2):
            raise InputError(f"radio maps: {name!r} has shape {arr.shape}, expected "
                             f"{' or '.join(map(str, expected))}"
                             + (" (beam arrays need extra_attrs['beams']['n_beams'] >= 2)" if n_beams < 2 and
                                name in BEAM_ARRAYS else ""))
    with atomic_store(out, overwrite=overwrite, kind="maps") as url:
        root = zarr.open_group(url, mode="w", zarr_format=3)
        root.attrs.update({
            "schema_version": MAPS_SCHEMA_VERSION, "kind": MAPS_KIND, "complete": False,
            "cell_ids": [int(c) for c in sites["cell_id"]], "grid": grid.to_dict(),
            "frame": scene.frame.to_dict(), "scene": str(getattr(scene, "path", "")),
            "scene_id": getattr(scene, "scene_id", None),
            "sites": _records(sites), "trace_config": _config_dict(trace_config),
            "metric_config": _config_dict(metric_config),
            "arrays": {k: UNITS.get(k, "") for k in arrays}, "notes": list(notes or []),
            **(extra_attrs or {}),
        })
        for name, arr in arrays.items():
            dims = {4: ("cell", "beam", "y", "x"), 3: ("cell", "y", "x"), 2: ("y", "x")}[arr.ndim]
            data = arr if np.issubdtype(arr.dtype, np.integer) else arr.astype(np.float32)
            root.create_array(name, data=data, chunks=(1,) * (arr.ndim - 2) + grid.shape,
                              dimension_names=dims,
                              attributes={"units": UNITS.get(name, "")}, compressors=io.compressors(),
                              fill_value=io.fill_value(data.dtype))
        io.seal(root)
        root.attrs["complete"] = True
        io.consolidate(url)
    return Path(os.fspath(out))


class _LazyArrays(Mapping[str, np.ndarray]):
    """The store's arrays by name, each read on first access and kept."""

    def __init__(self, group: Any, names: list[str], where: str):
        self._group, self._names, self._where = group, names, where
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._cache:
            self._cache[name] = np.asarray(io.array(self._group, name, self._where)[...])
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


@dataclass
class RadioMaps:
    """An opened radio-map store; arrays are read lazily, on first use.

    Attributes
    ----------
    url : str
    arrays : mapping of name -> ndarray
        ``(n_cells, H, W)`` or ``(H, W)`` float32 (``serving_cell`` integer); the
        :data:`BEAM_ARRAYS` ``(n_cells, n_beams, H, W)``.
    grid : Grid
    frame : SceneFrame or None
    cell_ids : list of int
        The first axis of per-cell arrays.
    sites : DataFrame
        The BS table the maps were traced for.
    attrs : dict
        All store attributes (configs, notes, scene path).
    """

    url: str
    arrays: Mapping[str, np.ndarray]
    grid: Grid
    frame: SceneFrame | None
    cell_ids: list[int]
    sites: pd.DataFrame
    attrs: dict[str, Any]
    units: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise InputError(f"{self.url}: radio maps hold no {name!r}; they hold {', '.join(self.arrays)}")
        return self.arrays[name]

    @property
    def n_cells(self) -> int:
        return len(self.cell_ids)

    @property
    def n_beams(self) -> int:
        """SSB beams per cell (0: the maps were traced without beams)."""
        return int((self.attrs.get("beams") or {}).get("n_beams", 0))

    def beams(self, name: str = "beam_rsrp_dbm") -> np.ndarray:
        """A per-beam array ``(n_cells, n_beams, H, W)``; :class:`InputError` if the maps have no beams."""
        if name not in BEAM_ARRAYS:
            raise InputError(f"{self.url}: {name!r} is not a per-beam array ({', '.join(sorted(BEAM_ARRAYS))})")
        if name not in self.arrays:
            raise InputError(f"{self.url}: radio maps hold no {name!r}; trace them with beams "
                             "(`twin trace --beams 8`)")
        return self.arrays[name]

    @property
    def cell_id(self) -> np.ndarray:
        """``cell_ids`` as an int64 array ``(n_cells,)``."""
        return np.asarray(self.cell_ids, np.int64)

    @property
    def cell_xy_m(self) -> np.ndarray:
        """Each cell's site position ``(n_cells, 2)`` [scene m] from the BS table; NaN where absent."""
        xy = np.full((self.n_cells, 2), np.nan, np.float32)
        if {"cell_id", "x_m", "y_m"} <= set(self.sites.columns):
            where = {int(c): k for k, c in enumerate(self.cell_ids)}
            for cid, x, y in zip(self.sites["cell_id"], self.sites["x_m"], self.sites["y_m"], strict=True):
                if int(cid) in where and x is not None and y is not None:
                    xy[where[int(cid)]] = (float(x), float(y))
        return xy

    def cell_index(self, cell_id: int) -> int:
        try:
            return self.cell_ids.index(int(cell_id))
        except ValueError as err:
            raise InputError(f"{self.url}: no cell {cell_id}; cells are {self.cell_ids}") from err

    def feature_names(self) -> list[str]:
        """Arrays usable as per-event features (not the flags, the serving-cell index, ``cell_*``).

        ``beam_rsrp_dbm`` (maps with beams) is, per event, the L1-RSRP of the cell's serving beam.
        """
        return sorted(n for n in self.arrays if n not in NOT_FEATURES and not n.startswith("cell_"))

    def per_cell(self, name: str) -> np.ndarray:
        """Feature ``name`` as ``(n_cells, H, W)`` float32; an ``(H, W)`` map is repeated for every cell.

        ``rssi_dbm`` reads ``cell_rssi_dbm`` (each cell's own carrier) when the store has it;
        a per-beam array gives its strongest beam per pixel (the serving beam's value).
        """
        if name == "rssi_dbm" and "cell_rssi_dbm" in self.arrays:
            name = "cell_rssi_dbm"
        if name in BEAM_ARRAYS:
            beams = np.asarray(self.beams(name), np.float32)
            with np.errstate(all="ignore"):
                best = np.max(np.where(np.isnan(beams), -np.inf, beams), axis=1)
            return np.where(np.isneginf(best), np.nan, best).astype(np.float32)
        data = np.asarray(self[name], np.float32)
        if data.shape == self.grid.shape:
            data = np.broadcast_to(data, (self.n_cells, *self.grid.shape))
        return data

    def unit(self, name: str) -> str:
        """A feature's unit: the store's record, else from its name's suffix."""
        return self.units.get(name) or UNITS.get(name) or _unit_from_name(name)


def _unit_from_name(name: str) -> str:
    for suffix, unit in (("_dbm", "dBm"), ("_db", "dB"), ("_bps", "bit/s"), ("_m", "m"), ("_s", "s")):
        if name.endswith(suffix):
            return unit
    return "1"


def open_maps(path: str | os.PathLike) -> RadioMaps:
    """Open a store written by ``twin trace``; refuse other kinds, versions, partial stores and bad shapes.

    Arrays are read lazily; :class:`InputError` names the store and the attribute at fault.
    """
    url = os.fspath(path)
    root = io.open_group(url, missing=f"{url}: no radio-map store here; make one with `twin trace`")
    attrs = io.attrs(root)
    if attrs.get("kind") != MAPS_KIND:
        raise InputError(f"{url}: not a radio-map store (kind={attrs.get('kind')!r}, expected {MAPS_KIND!r})")
    if attrs.get("schema_version") != MAPS_SCHEMA_VERSION:
        raise InputError(f"{url}: schema_version {attrs.get('schema_version')}, this toolkit reads "
                         f"{MAPS_SCHEMA_VERSION}; trace again")
    if not attrs.get("complete", False):
        raise InputError(f"{url}: incomplete store (its writer did not finish); trace again")
    io.verify(root, url)
    for key in ("grid", "cell_ids", "arrays", "sites"):
        if key not in attrs:
            raise InputError(f"{url}: radio maps lack the attribute '{key}'")
    grid = Grid.from_dict(attrs["grid"])
    cell_ids = [int(c) for c in attrs["cell_ids"]]
    if len(set(cell_ids)) != len(cell_ids):
        raise InputError(f"{url}: attribute 'cell_ids' has duplicates")
    names = list(attrs["arrays"])
    n_beams = int((attrs.get("beams") or {}).get("n_beams", 0))
    for name in names:
        shape = io.array(root, name, url).shape
        if name in BEAM_ARRAYS:
            if shape != (len(cell_ids), n_beams, *grid.shape) or n_beams < 2:
                raise InputError(f"{url}: array '{name}' has shape {shape}, expected ({len(cell_ids)}, "
                                 f"{n_beams}, {grid.height}, {grid.width}) from 'cell_ids', 'beams' "
                                 "(n_beams >= 2) and 'grid'")
        elif shape not in ((len(cell_ids), *grid.shape), grid.shape):
            raise InputError(f"{url}: array '{name}' has shape {shape}, expected "
                             f"({len(cell_ids)}, {grid.height}, {grid.width}) or ({grid.height}, {grid.width}) "
                             "from 'cell_ids' and 'grid'")
    frame = SceneFrame.from_dict(attrs["frame"]) if attrs.get("frame") else None
    return RadioMaps(url=url, arrays=_LazyArrays(root, names, url), grid=grid, frame=frame, cell_ids=cell_ids,
                     sites=pd.DataFrame(attrs["sites"]), attrs=attrs, units=dict(attrs["arrays"]))


def check_maps_scene(maps: RadioMaps, scene: Any) -> None:
    """Refuse radio maps traced on another scene than ``scene`` (a :class:`~twin.scene.build.TwinScene`).

    The grids must agree, and the maps' ``scene_id`` (the fingerprint of the scene they were
    traced on) must be the scene's; maps written before ``scene_id`` existed are compared by
    their frame. Raises :class:`InputError` naming the store and the attribute.
    """
    where = f"scene {getattr(scene, 'path', '')}"
    if maps.grid != scene.grid:
        raise InputError(f"{maps.url}: attribute 'grid' {maps.grid.to_dict()} does not match the scene grid "
                         f"{scene.grid.to_dict()} ({where}, scene.json 'grid'); trace the maps on this scene")
    traced_on = maps.attrs.get("scene_id")
    scene_id = getattr(scene, "scene_id", None)
    if traced_on and scene_id and traced_on != scene_id:
        raise InputError(f"{maps.url}: traced on another scene (attribute 'scene_id' {traced_on}, "
                         f"attribute 'scene' {maps.attrs.get('scene')!r}) than {where} (scene_id {scene_id}); "
                         "trace the maps on this scene")
    if not traced_on and maps.frame is not None and maps.frame != scene.frame:
        raise InputError(f"{maps.url}: attribute 'frame' {maps.frame.to_dict()} is not the frame of {where} "
                         f"{scene.frame.to_dict()}; trace the maps on this scene")


def evaluate_points(maps: RadioMaps | str | os.PathLike, xy_m: np.ndarray, name: str = "path_gain_db",
                    skip_nan: bool = True) -> np.ndarray:
    """Bilinear samples of a map at points ``(N, 2)`` [scene m]: ``(n_cells, N)`` or ``(N,)``
    (a per-beam array: ``(n_cells, n_beams, N)``).

    Points outside the grid raise :class:`InputError`. With ``skip_nan`` (default)
    NaN cells are left out of the interpolation by the rule of
    :func:`twin.geo.blend_corners` (radio maps are Monte-Carlo estimates whose shadowed
    cells may have caught no ray: one empty cell should not blank its neighbourhood);
    without it they propagate to their neighbourhood (:meth:`twin.geo.Grid.sample`).
    ``serving_cell`` is read from the cell holding each point.
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
    sampled = maps.grid.sample(values, xy_m, skip_nan=skip_nan)
    return sampled.astype(np.float32)


def show_map(maps: str | os.PathLike, out_dir: str | os.PathLike, metric: str = "path_gain_db",
             cells: list[int] | None = None, scene: Any = None, overwrite: bool = False,
             beam: int | None = None) -> list[Path]:
    """PNG pictures of a metric with BS markers over the building footprints.

    A per-cell metric gives one picture per cell in ``cells`` (default all) and the
    best-cell envelope (``<metric>-max.png``); an ``(H, W)`` metric gives one picture.
    A per-beam metric (:data:`BEAM_ARRAYS`) is drawn as each cell's best beam, or as
    SSB beam ``beam`` (``<metric>-beam<k>-cell<id>.png``).
    ``scene`` (TwinScene or directory) defaults to the store's ``scene`` attribute;
    without footprints the maps are drawn alone. Returns the written paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from twin.io import atomic_dir
    from twin.scene.build import TwinScene, load_twin_scene

    rm = open_maps(maps)
    stem_metric = metric
    if beam is not None:
        if metric not in BEAM_ARRAYS:
            raise InputError(f"show-map: --beam needs a per-beam metric ({', '.join(sorted(BEAM_ARRAYS))}), "
                             f"not {metric!r}")
        beams = rm.beams(metric)
        if not 0 <= beam < rm.n_beams:
            raise InputError(f"{rm.url}: no beam {beam}; the maps have beams 0 to {rm.n_beams - 1}")
        values, stem_metric = np.asarray(beams[:, beam]), f"{metric}-beam{beam}"
    else:
        values = rm.per_cell(metric) if metric in BEAM_ARRAYS else rm[metric]  # beams: the best beam's
    if scene is None and rm.attrs.get("scene") and Path(rm.attrs["scene"], "scene.json").is_file():
        scene = rm.attrs["scene"]
    if scene is not None and not isinstance(scene, TwinScene):
        scene = load_twin_scene(scene)
    footprints = scene.buildings() if scene is not None else None
    pictures: list[tuple[str, np.ndarray, list[int]]] = []
    if values.ndim == 3:
        wanted = rm.cell_ids if cells is None else [int(c) for c in cells]
        for cid in wanted:
            pictures.append((f"{stem_metric}-cell{cid}", values[rm.cell_index(cid)], [rm.cell_index(cid)]))
        envelope = np.max(np.where(np.isnan(values), -np.inf, values), axis=0)
        envelope[np.isinf(envelope)] = np.nan
        pictures.append((f"{stem_metric}-max", envelope, list(range(len(rm.cell_ids)))))
    else:
        pictures.append((metric, values, list(range(len(rm.cell_ids)))))
    x0, y0, x1, y1 = rm.grid.extent_m
    written = []
    with atomic_dir(out_dir, overwrite=overwrite, kind="pictures") as tmp:
        for stem, img, idx in pictures:
            fig, ax = plt.subplots(figsize=(7, 6))
            im = ax.imshow(img, origin="lower", extent=(x0, x1, y0, y1), cmap="viridis")
            fig.colorbar(im, ax=ax, label=f"{metric} [{UNITS.get(metric, '')}]")
            if footprints is not None and len(footprints):
                footprints.boundary.plot(ax=ax, color="white", linewidth=0.6)
            s = rm.sites.iloc[idx]
            ax.scatter(s["x_m"], s["y_m"], marker="^", s=60, c="red", edgecolors="black", zorder=5)
            for k, (_, row) in zip(idx, s.iterrows(), strict=True):
                # the boresight, or the drawn beam's steering azimuth
                az = np.radians(float(row["azimuth_deg"]) if beam is None
                                else float(rm.attrs["beams"]["azimuth_deg"][k][beam]))
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
