"""Ray-traced radio maps of every cell of a scene with Sionna RT (``twin trace``).

One :class:`Tracer` loads a scene's Sionna RT scene once and keeps it: it computes
path-gain maps of many cells in as few ``RadioMapSolver`` calls as
``max_rays_per_call`` allows (cells of one frequency, bandwidth and antenna pattern go
together), a single cell over a sub-window (what calibration needs, re-solved after
moving or turning the transmitter), and path gains at arbitrary points with
``PathSolver``. :func:`trace` runs it over a BS table and writes the maps store
(:mod:`twin.radio.maps`).

Conventions (DESIGN.md): a transmitter's boresight is ``azimuth_deg`` clockwise from
north (scene +y) and ``tilt_deg`` below the horizon. Sionna orients a device by
``R = Rz(α) Ry(β) Rx(γ)`` applied to its local +x boresight, so the boresight is
``(cos α cos β, sin α cos β, -sin β)``: ``α = 90° - azimuth``, ``β = +tilt``, ``γ = 0``.
Radio-map rows follow Sionna's ``cell_centers[i, j]``: ``i`` grows with y (north),
``j`` with x (east), as :class:`twin.geo.Grid` (tested).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from twin.errors import EngineError, InputError
from twin.geo import Grid
from twin.io import check_output
from twin.radio.sites import place_sites, read_bs_file, sites_from_records
from twin.scene.build import TwinScene, load_twin_scene

__all__ = ["TraceConfig", "Tracer", "trace", "sionna_orientation", "check_materials", "apply_scattering"]


@dataclass(frozen=True)
class TraceConfig:
    """How to trace radio maps.

    Attributes
    ----------
    samples_per_tx : int or None
        Rays shot per transmitter, an explicit override (seed 004 used 10^6). None
        (default) chooses them per transmitter from ``rays_per_pixel``
        (:func:`twin.radio.coverage.samples_for_density`).
    rays_per_pixel : float
        Target density: expected direct rays crossing a map pixel ``density_radius_m``
        from the transmitter (nearer pixels get more, shadowed ones fewer).
    density_radius_m : float
        Horizontal distance [m] at which ``rays_per_pixel`` is met; capped at the map's
        farthest corner from the transmitter.
    min_samples_per_tx, max_samples_per_tx : int
        Bounds of the rays chosen from the density (a low mast would need very many).
    fill_radius_m : float
        Outdoor pixels that caught no ray take the dB mean of received outdoor
        neighbours up to this distance along outdoor pixels, flagged as filled
        (:func:`twin.radio.coverage.fill_holes`); 0 fills nothing.
    max_depth : int
        Interactions per path (seed 004: 3 reflections).
    los, specular_reflection, diffuse_reflection, refraction, diffraction, edge_diffraction : bool
        Sionna's interaction switches. Diffuse reflection (seed 004's "diffuse
        scattering") only acts on materials with a scattering coefficient above 0.
    scattering : "table" or "scene"
        ``table`` (default) gives every ITU material of the loaded scene the
        scattering coefficient, XPD coefficient and pattern of
        :data:`twin.scene.materials.SCATTERING`, whatever its ``scene.xml`` says (so
        scenes built before the table get it too); ``scene`` keeps the scene file's
        values (custom materials; Lambertian pattern).
    cell_size_m : float or None
        Radio-map cell [m]; None takes the scene grid's. Another size keeps the grid's
        extent (``Grid.covering``).
    rx_height_m : float
        Height of the measurement plane and of point receivers above the ground [m].
    seed : int
        Sionna's sampling seed.
    max_rays_per_call : int
        Memory bound: a solver call traces at most this many rays, i.e.
        ``max_rays_per_call // samples`` transmitters (at least one).
    materials_out_of_range : "error" or "extrapolate"
        ITU materials are defined on frequency ranges (concrete and brick from 1 GHz,
        ground materials up to 10 GHz). ``error`` refuses other frequencies;
        ``extrapolate`` evaluates the ITU power law ``eps = a f^b, sigma = c f^d`` of
        the nearest range at the carrier (documented in docs/trace.md).
    pattern : str or None
        Override the BS table's ``pattern`` column (``tr38901`` or ``iso``).
    max_paths_per_src : int
        ``PathSolver``'s path budget per transmitter (point evaluation).
    on_building : "rooftop" or "reject"
        Sites whose antenna lies inside a building: lifted to the roof or refused.
    deterministic : bool
        Run Sionna's solver kernels on one Dr.Jit CPU thread (the LLVM backend), so that
        one seed gives byte-identical maps and point gains in every run and process.
        With several threads the rays race: with ``diffraction`` on, the wedge table
        keeps whichever ray reaches a slot first, so the wedges found (and maps by up to
        ~150 dB, NaN patterns) change from run to run; without it only the float
        accumulation order changes (~2e-5 dB). Costs the other cores (docs/trace.md,
        "Determinism"); the CUDA backend's atomics cannot be made to keep an order.
    beams : int
        NR SSB beams per cell (0, default: none). ``N`` >= 2 also traces each cell as a
        horizontal ``N``-element λ/2 array with an ``N``-beam DFT codebook tiling its
        sector (:mod:`twin.radio.beams`), one map per beam: ``N`` times the rays of the
        cell's own map. 4 (``L_max`` below 3 GHz) or 8 (3-6 GHz) as NR's SSB sweeps.
    """

    samples_per_tx: int | None = None
    rays_per_pixel: float = 2.0
    density_radius_m: float = 500.0
    min_samples_per_tx: int = 10**6
    max_samples_per_tx: int = 4 * 10**7
    fill_radius_m: float = 8.0
    max_depth: int = 3
    los: bool = True
    specular_reflection: bool = True
    diffuse_reflection: bool = True
    refraction: bool = True
    diffraction: bool = False
    edge_diffraction: bool = False
    scattering: Literal["table", "scene"] = "table"
    cell_size_m: float | None = None
    rx_height_m: float = 1.5
    seed: int = 42
    max_rays_per_call: int = 5 * 10**7
    materials_out_of_range: Literal["error", "extrapolate"] = "error"
    pattern: str | None = None
    max_paths_per_src: int = 10**6
    on_building: Literal["rooftop", "reject"] = "rooftop"
    deterministic: bool = False
    beams: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("samples_per_tx", "max_rays_per_call", "max_paths_per_src", "min_samples_per_tx",
                     "max_samples_per_tx"):
            v = getattr(self, name)
            if v is None and name == "samples_per_tx":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append(f"{name}: {v!r} must be an integer >= 1")
        if not problems and self.min_samples_per_tx > self.max_samples_per_tx:
            problems.append(f"min_samples_per_tx: {self.min_samples_per_tx} exceeds max_samples_per_tx "
                            f"{self.max_samples_per_tx}")
        for name in ("rays_per_pixel", "density_radius_m"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                problems.append(f"{name}: {v!r} must be a number > 0")
        v = self.fill_radius_m
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
            problems.append(f"fill_radius_m: {v!r} must be a number >= 0")
        if isinstance(self.max_depth, bool) or not isinstance(self.max_depth, int) or self.max_depth < 0:
            problems.append(f"max_depth: {self.max_depth!r} must be an integer >= 0")
        if self.cell_size_m is not None and not (self.cell_size_m > 0 and math.isfinite(self.cell_size_m)):
            problems.append(f"cell_size_m: {self.cell_size_m} must be > 0")
        if not (self.rx_height_m > 0 and math.isfinite(self.rx_height_m)):
            problems.append(f"rx_height_m: {self.rx_height_m} must be > 0")
        if self.materials_out_of_range not in ("error", "extrapolate"):
            problems.append(f"materials_out_of_range: {self.materials_out_of_range!r} must be 'error' or 'extrapolate'")
        if self.pattern is not None and self.pattern not in ("tr38901", "iso"):
            problems.append(f"pattern: unknown antenna pattern {self.pattern!r}; use 'tr38901' or 'iso'")
        if self.scattering not in ("table", "scene"):
            problems.append(f"scattering: {self.scattering!r} must be 'table' or 'scene'")
        if self.on_building not in ("rooftop", "reject"):
            problems.append(f"on_building: {self.on_building!r} must be 'rooftop' or 'reject'")
        from twin.radio.beams import MAX_BEAMS

        b = self.beams
        if isinstance(b, bool) or not isinstance(b, int) or b < 0 or b == 1 or b > MAX_BEAMS:
            problems.append(f"beams: {b!r} must be 0 (no beams) or an integer from 2 to {MAX_BEAMS}")
        if problems:
            raise InputError("trace config: " + "; ".join(problems))

    def solver_kwargs(self) -> dict[str, Any]:
        """The interaction switches and sampling arguments shared by both Sionna solvers."""
        return {"max_depth": self.max_depth, "los": self.los,
                "specular_reflection": self.specular_reflection,
                "diffuse_reflection": self.diffuse_reflection, "refraction": self.refraction,
                "diffraction": self.diffraction, "edge_diffraction": self.edge_diffraction,
                "seed": self.seed}


def sionna_orientation(azimuth_deg: float, tilt_deg: float) -> tuple[float, float, float]:
    """Sionna's ``(α, β, γ)`` [rad] for a boresight ``azimuth_deg`` clockwise from north, ``tilt_deg`` down."""
    return math.radians(90.0 - azimuth_deg), math.radians(tilt_deg), 0.0


def _itu_ranges(itu_type: str) -> dict[tuple[float, float], tuple[float, float, float, float]]:
    from sionna.rt.radio_materials.itu import ITU_MATERIALS_PROPERTIES

    return ITU_MATERIALS_PROPERTIES[itu_type]


def _nearest_range_params(itu_type: str, f_ghz: float) -> tuple[float, float, float, float]:
    ranges = _itu_ranges(itu_type)
    gap = {r: 0.0 if r[0] <= f_ghz <= r[1] else min(abs(f_ghz - r[0]), abs(f_ghz - r[1])) for r in ranges}
    return ranges[min(gap, key=lambda r: (gap[r], r))]


def check_materials(sionna_scene: Any, frequencies_hz: Mapping[float, list[int]], mode: str,
                    where: str = "scene") -> list[str]:
    """Check every ITU material of a loaded scene against the carriers; return notes.

    ``frequencies_hz`` maps each carrier to the cell ids using it. In ``error`` mode an
    out-of-range carrier raises :class:`InputError` naming the material, its valid
    ranges and the cells; in ``extrapolate`` mode each ITU material's frequency
    callback is replaced by the nearest range's power law and a note is returned.
    """
    import drjit as dr

    problems, notes = [], []
    for name, mat in sionna_scene.radio_materials.items():
        itu_type = getattr(mat, "itu_type", None)
        if itu_type is None:
            continue
        ranges = sorted(_itu_ranges(itu_type))
        text = ", ".join(f"{lo:g}-{hi:g}" for lo, hi in ranges)
        for f_hz, cells in frequencies_hz.items():
            f_ghz = f_hz / 1e9
            if any(lo <= f_ghz <= hi for lo, hi in ranges):
                continue
            msg = (f"material {name!r} (ITU {itu_type!r}) is defined for {text} GHz only, not for the "
                   f"{f_ghz:g} GHz of cells {', '.join(map(str, cells[:10]))}{' ...' if len(cells) > 10 else ''}")
            if mode == "error":
                problems.append(msg)
            else:
                notes.append(msg + "; extrapolating the ITU fit of the nearest range")
        if mode == "extrapolate":
            def callback(f: Any, itu_type: str = itu_type) -> tuple[Any, Any]:
                f_ghz = f / 1e9
                flat: Any = dr.ravel(f_ghz)  # drjit's stub types the result as a bare object
                a, b, c, d = _nearest_range_params(itu_type, float(flat[0]))
                return a * dr.power(f_ghz, b), c * dr.power(f_ghz, d)
            mat.frequency_update_callback = callback
    if problems:
        raise InputError(
            f"{where}: {len(problems)} material/frequency problem(s)\n  " + "\n  ".join(problems)
            + "\n  Give the scene custom radio materials valid for this band (docs/trace.md), or trace "
              "with materials_out_of_range='extrapolate' (--extrapolate-materials)")
    return notes


def apply_scattering(sionna_scene: Any) -> list[str]:
    """Set every ITU material's diffuse scattering from :data:`twin.scene.materials.SCATTERING`.

    Sionna reads ``scattering_coefficient`` and ``xpd_coefficient`` from ``scene.xml``
    but always gives XML materials the Lambertian pattern; this sets all three on the
    loaded scene. Returns the names of the materials set.
    """
    from sionna.rt import DirectivePattern, LambertianPattern

    from twin.scene.materials import SCATTERING

    done = []
    for name, mat in sionna_scene.radio_materials.items():
        params = SCATTERING.get(getattr(mat, "itu_type", None) or "")
        if params is None:
            continue
        mat.scattering_coefficient = params.coefficient
        mat.xpd_coefficient = params.xpd_coefficient
        mat.scattering_pattern = (DirectivePattern(alpha_r=params.alpha_r) if params.pattern == "directive"
                                  else LambertianPattern())
        done.append(name)
    return done


def _as_sites(sites: Any, scene: TwinScene, on_building: str) -> pd.DataFrame:
    if isinstance(sites, (str, os.PathLike)):
        return read_bs_file(sites, scene, on_building=on_building)
    if isinstance(sites, Mapping):
        sites = [dict(sites)]
    if isinstance(sites, list):
        sites = pd.DataFrame(sites)
    if {"x_m", "y_m"} <= set(sites.columns):
        # in memory the scene position rules (calibration moves x_m, y_m); lon/lat follow it
        sites = sites.drop(columns=[c for c in ("lon", "lat") if c in sites.columns])
    table = sites_from_records(sites.to_dict(orient="records"), scene)
    return place_sites(table, scene, on_building)


class Tracer:
    """A scene loaded once into Sionna RT, ready to trace cells again and again.

    Parameters
    ----------
    scene : TwinScene or path
        The scene directory.
    config : TraceConfig, optional

    Attributes
    ----------
    grid : Grid
        The radio-map grid: the scene's, or its extent at ``config.cell_size_m``.
    solver_s : float
        Seconds spent inside Sionna's solver calls (with the read-back of their
        results), summed over the tracer's life: the benchmark's "bare" time.
    notes : list of str
        Warnings met (materials extrapolated ...).
    """

    def __init__(self, scene: TwinScene | str | os.PathLike, config: TraceConfig | None = None):
        from twin.engine import sionna_rt

        self.scene = scene if isinstance(scene, TwinScene) else load_twin_scene(scene)
        self.config = config or TraceConfig()
        self.rt = sionna_rt()
        self.sionna_scene = self.scene.load_sionna()
        if self.config.scattering == "table":
            apply_scattering(self.sionna_scene)
        g = self.scene.grid
        self.grid = g if self.config.cell_size_m in (None, g.cell_size_m) else Grid.covering(
            *g.extent_m, self.config.cell_size_m)
        self.solver_s = 0.0
        self.notes: list[str] = []
        import mitsuba as mi

        if self.config.deterministic and str(mi.variant()).startswith("cuda"):
            self.notes.append("deterministic: the CUDA backend's atomics keep no order; with diffraction "
                              "the maps still vary from run to run")
        elif self.config.diffraction and not self.config.deterministic:
            self.notes.append("diffraction without deterministic=True: the wedges found, hence the maps, "
                              "vary from run to run on several threads")
        self._radio_solver = self.rt.RadioMapSolver()
        self._path_solver = self.rt.PathSolver()
        self._state: tuple[float, float, str, int] | None = None
        self._checked: set[float] = set()
        self.sionna_scene.rx_array = self.rt.PlanarArray(num_rows=1, num_cols=1, pattern="iso",
                                                         polarization="V")

    @contextmanager
    def _solving(self) -> Iterator[None]:
        """Time a solver call with the read-back of its results; on one Dr.Jit thread if ``deterministic``."""
        import drjit as dr

        threads = dr.thread_count()
        if self.config.deterministic:
            dr.set_thread_count(1)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.solver_s += time.perf_counter() - t0
            dr.set_thread_count(threads)

    # -- set-up -------------------------------------------------------------------------
    def sites(self, sites: Any) -> pd.DataFrame:
        """Validate a BS table (DataFrame, records, or a BS file path) against this scene."""
        return _as_sites(sites, self.scene, self.config.on_building)

    def check(self, sites: pd.DataFrame) -> None:
        """Check the carriers of ``sites`` against the scene's materials (raises InputError)."""
        freqs: dict[float, list[int]] = {}
        for f, cid in zip(sites["frequency_hz"], sites["cell_id"], strict=True):
            freqs.setdefault(float(f), []).append(int(cid))
        new = {f: c for f, c in freqs.items() if f not in self._checked}
        if new:
            self.notes += check_materials(self.sionna_scene, new, self.config.materials_out_of_range,
                                          str(self.scene.xml_path))
            self._checked |= set(new)

    def _groups(self, sites: pd.DataFrame) -> list[tuple[tuple[float, float, str], np.ndarray]]:
        pattern = sites["pattern"] if self.config.pattern is None else pd.Series(
            [self.config.pattern] * len(sites), index=sites.index)
        keys = list(zip(sites["frequency_hz"].astype(float), sites["bandwidth_hz"].astype(float), pattern,
                        strict=True))
        groups: dict[tuple[float, float, str], list[int]] = {}
        for k, key in enumerate(keys):
            groups.setdefault(key, []).append(k)
        return [(key, np.asarray(idx)) for key, idx in groups.items()]

    def _configure(self, key: tuple[float, float, str], n_elements: int = 1) -> None:
        """Carrier and transmit array: ``n_elements`` in a horizontal row, λ/2 apart (1: the sector antenna)."""
        if self._state == (*key, n_elements):
            return
        frequency_hz, bandwidth_hz, pattern = key
        sc = self.sionna_scene
        sc.frequency = frequency_hz
        # Sionna's own SINR/noise use scene.bandwidth (default 1 MHz): keep it the cells'
        sc.bandwidth = bandwidth_hz
        sc.tx_array = self.rt.PlanarArray(num_rows=1, num_cols=n_elements, horizontal_spacing=0.5,
                                          pattern=pattern, polarization="V")
        self._state = (*key, n_elements)

    def _set_transmitters(self, rows: pd.DataFrame) -> None:
        sc = self.sionna_scene
        for name in list(sc.transmitters):
            sc.remove(name)
        for k, row in enumerate(rows.itertuples(index=False)):
            sc.add(self.rt.Transmitter(
                name=f"tx{k:05d}", position=[float(row.x_m), float(row.y_m), float(row.height_m)],
                orientation=list(sionna_orientation(float(row.azimuth_deg), float(row.tilt_deg))),
                power_dbm=float(row.power_dbm)))

    def samples_for(self, sites: pd.DataFrame, grid: Grid | None = None) -> np.ndarray:
        """Rays per transmitter ``(n,)`` for a validated BS table on ``grid``: the explicit
        ``samples_per_tx``, else from the density target (:func:`twin.radio.coverage.samples_for_density`)."""
        from twin.radio.coverage import samples_for_density

        cfg = self.config
        if cfg.samples_per_tx is not None:
            return np.full(len(sites), cfg.samples_per_tx, np.int64)
        grid = grid or self.grid
        return np.array([samples_for_density(float(r.height_m), grid.extent_m, float(r.x_m), float(r.y_m),
                                             grid.cell_size_m, cfg.rays_per_pixel, cfg.density_radius_m,
                                             cfg.rx_height_m, cfg.min_samples_per_tx, cfg.max_samples_per_tx)
                         for r in sites.itertuples(index=False)], np.int64)

    def _batches(self, table: pd.DataFrame, samples: np.ndarray) -> list[tuple[tuple[float, float, str], np.ndarray]]:
        """Solver calls: cells of one (frequency, bandwidth, pattern), at most ``max_rays_per_call`` rays each."""
        out = []
        for key, idx in self._groups(table):
            idx = idx[np.argsort(samples[idx], kind="stable")]
            start = 0
            for k in range(1, len(idx) + 1):
                # one call shoots its largest count from every transmitter
                if k == len(idx) or (k + 1 - start) * samples[idx[k]] > self.config.max_rays_per_call:
                    out.append((key, idx[start:k]))
                    start = k
        return out

    def _radio_map(self, grid: Grid, samples_per_tx: int | None = None,
                   precoding: np.ndarray | None = None) -> Any:
        """Sionna's ``RadioMap`` of the current transmitters, aligned with ``grid``.

        ``precoding`` ``(n_tx, n_elements)`` complex: each transmitter's weights on the
        scene's ``tx_array`` (None: Sionna's default, equal weights).
        """
        cs = grid.cell_size_m
        cx, cy = grid.center_m
        extra: dict[str, Any] = {}
        if precoding is not None:
            import mitsuba as mi

            extra["precoding_vec"] = (mi.TensorXf(np.ascontiguousarray(precoding.real, np.float32)),
                                      mi.TensorXf(np.ascontiguousarray(precoding.imag, np.float32)))
        return self._radio_solver(
            self.sionna_scene, center=[cx, cy, self.config.rx_height_m], orientation=[0.0, 0.0, 0.0],
            # half a cell short: Sionna rounds the size up to whole cells, float32 error could add one
            size=[(grid.width - 0.5) * cs, (grid.height - 0.5) * cs], cell_size=[cs, cs],
            samples_per_tx=int(samples_per_tx or self.config.samples_per_tx or self.config.min_samples_per_tx),
            **extra, **self.config.solver_kwargs())

    def _solve_map(self, grid: Grid, samples_per_tx: int | None = None,
                   precoding: np.ndarray | None = None) -> np.ndarray:
        with self._solving():
            gain = self._radio_map(grid, samples_per_tx, precoding).path_gain.numpy()  # [n_tx, H, W] linear
        if gain.shape[1:] != grid.shape:
            raise EngineError(f"Sionna returned a {gain.shape[1:]} map for the {grid.shape} grid")
        return gain

    # -- radio maps ---------------------------------------------------------------------
    def radio_maps(self, sites: Any, grid: Grid | None = None, progress: bool = False) -> np.ndarray:
        """Path-gain maps of every cell of ``sites`` on ``grid`` (default :attr:`grid`).

        Returns
        -------
        ndarray, float32, ``(n_cells, height, width)``
            Path gain [dB] including the transmit antenna's gain (isotropic receiver),
            in the order of ``sites``; outdoor holes filled within ``fill_radius_m``
            (:meth:`radio_maps_with_coverage` says which); NaN where no ray reached the
            cell and none was filled.
        """
        return self.radio_maps_with_coverage(sites, grid, progress)[0]

    def radio_maps_with_coverage(self, sites: Any, grid: Grid | None = None,
                                 progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`radio_maps` with, per cell and pixel, where the value comes from.

        Returns
        -------
        path_gain_db : ndarray, float32, ``(n_cells, H, W)``
        coverage : ndarray, uint8, ``(n_cells, H, W)``
            :data:`twin.radio.coverage.RECEIVED` (a ray arrived), ``FILLED`` (filled
            from outdoor neighbours) or ``NO_VALUE`` (NaN).
        samples_per_tx : ndarray, int64, ``(n_cells,)``
            Rays shot per cell.
        """
        from tqdm.auto import tqdm

        from twin.radio.coverage import fill_holes

        table = self.sites(sites)
        self.check(table)
        grid = grid or self.grid
        out = np.full((len(table), *grid.shape), np.nan, dtype=np.float32)
        samples = self.samples_for(table, grid)
        bar = tqdm(total=len(table), desc="trace", unit="cell", disable=not progress)
        for key, idx in self._batches(table, samples):
            self._configure(key)
            self._set_transmitters(table.iloc[idx])
            gain = self._solve_map(grid, int(samples[idx].max()))
            with np.errstate(divide="ignore"):
                out[idx] = np.where(gain > 0, 10.0 * np.log10(gain), np.nan)
            bar.update(len(idx))
        bar.close()
        self._set_transmitters(table.iloc[:0])
        out, coverage = fill_holes(out, self.outdoor(grid), grid.cell_size_m, self.config.fill_radius_m)
        return out, coverage, samples

    def beam_maps_with_coverage(self, sites: Any, n_beams: int | None = None, grid: Grid | None = None,
                                progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Path-gain maps of every SSB beam of every cell of ``sites`` (:mod:`twin.radio.beams`).

        Each cell becomes a transmitter with the ``n_beams``-element array, traced once
        per beam with that beam's precoding vector, in the batches and with the rays and
        seed of :meth:`radio_maps_with_coverage`: the same ray paths as the cell's own
        map, so that at every pixel the mean of the beam maps is the cell's map (the
        codebook is unitary; tested). Holes are filled in the same way.

        Parameters
        ----------
        n_beams : int, optional
            Beams per cell, at least 2; default ``config.beams``.

        Returns
        -------
        path_gain_db : ndarray, float32, ``(n_cells, n_beams, H, W)``
            Path gain [dB] with the beam's antenna gain (element pattern times array
            factor); NaN where no ray arrived and none was filled.
        coverage : ndarray, uint8, ``(n_cells, n_beams, H, W)``
            The flags of :data:`twin.radio.coverage.RECEIVED` / ``FILLED`` / ``NO_VALUE``.
        """
        from tqdm.auto import tqdm

        from twin.radio.beams import MAX_BEAMS, precoding_vectors
        from twin.radio.coverage import fill_holes

        nb = int(n_beams if n_beams is not None else self.config.beams)
        if not 2 <= nb <= MAX_BEAMS:
            raise InputError(f"beams: {nb} must be an integer from 2 to {MAX_BEAMS}")
        table = self.sites(sites)
        self.check(table)
        grid = grid or self.grid
        out = np.full((len(table), nb, *grid.shape), np.nan, dtype=np.float32)
        samples = self.samples_for(table, grid)
        codebook = precoding_vectors(nb)                                      # [B, N]
        bar = tqdm(total=len(table), desc=f"trace {nb} beams", unit="cell", disable=not progress)
        # The batches, transmitter order, rays and seed of radio_maps_with_coverage, one call per
        # beam: every beam map then follows the very rays (and random interaction draws) of the
        # cell's own map, only the antenna weight of each ray differs.
        for key, idx in self._batches(table, samples):
            self._configure(key, n_elements=nb)
            self._set_transmitters(table.iloc[idx])
            for b in range(nb):
                gain = self._solve_map(grid, int(samples[idx].max()), np.tile(codebook[b], (len(idx), 1)))
                with np.errstate(divide="ignore"):
                    out[idx, b] = np.where(gain > 0, 10.0 * np.log10(gain), np.nan)
            bar.update(len(idx))
        bar.close()
        self._set_transmitters(table.iloc[:0])
        flat, coverage = fill_holes(out.reshape(-1, *grid.shape), self.outdoor(grid), grid.cell_size_m,
                                    self.config.fill_radius_m)
        return flat.reshape(out.shape), coverage.reshape(out.shape)

    def outdoor(self, grid: Grid | None = None) -> np.ndarray:
        """Pixels of ``grid`` (default :attr:`grid`) whose centre lies outside every building ``(H, W)``."""
        grid = grid or self.grid
        return self.scene.is_outdoor(grid.centers_m().reshape(-1, 2)).reshape(grid.shape)

    def cell_map(self, site: Mapping[str, Any] | pd.Series, grid: Grid | None = None) -> np.ndarray:
        """Path-gain map [dB] ``(height, width)`` of one cell (a BS-table row) on ``grid``."""
        row = dict(site)
        row.setdefault("bs_id", "cell")
        row.setdefault("cell_id", 0)
        return self.radio_maps([row], grid)[0]

    def window_covering(self, xy_m: np.ndarray, margin_m: float = 0.0) -> Grid:
        """The smallest sub-window of :attr:`grid` whose cells cover points ``(N, 2)`` [m] (plus a margin)."""
        xy_m = np.asarray(xy_m, dtype=np.float64).reshape(-1, 2)
        lo, hi = xy_m.min(axis=0) - margin_m, xy_m.max(axis=0) + margin_m
        # bilinear sampling reads the neighbouring centres: keep one more cell on each side
        c = self.grid.cell_size_m
        return self.grid.window(lo[0] - c, lo[1] - c, hi[0] + c, hi[1] + c)[0]

    def cell_map_covering(self, site: Mapping[str, Any] | pd.Series, xy_m: np.ndarray,
                          margin_m: float = 0.0) -> tuple[Grid, np.ndarray]:
        """One cell's path-gain map [dB] over the smallest window covering ``xy_m``; returns ``(grid, map)``.

        The calibration loop calls this with the same tracer many times: the scene
        stays loaded, only the transmitter moves or turns.
        """
        grid = self.window_covering(xy_m, margin_m)
        return grid, self.cell_map(site, grid)

    # -- points -------------------------------------------------------------------------
    def path_gain_at_points(self, sites: Any, xy_m: np.ndarray, batch: int = 2000,
                            progress: bool = False) -> np.ndarray:
        """Path gain [dB] from every cell to receivers at ``xy_m`` ``(N, 2)`` by ``PathSolver``.

        The receivers stand ``rx_height_m`` above the ground with an isotropic
        antenna; gains are the incoherent sum of the paths' powers, as in the maps.

        Returns
        -------
        ndarray, float32, ``(n_cells, N)``; NaN where no path was found.
        """
        from tqdm.auto import tqdm

        table = self.sites(sites)
        self.check(table)
        xy_m = np.asarray(xy_m, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy_m).all():
            raise InputError("points: coordinates must be finite")
        sc = self.sionna_scene
        out = np.full((len(table), len(xy_m)), np.nan, dtype=np.float32)
        steps = [(key, idx, s) for key, idx in self._groups(table) for s in range(0, len(xy_m), batch)]
        for key, idx, s in tqdm(steps, desc="paths", disable=not progress):
            self._configure(key)
            self._set_transmitters(table.iloc[idx])
            for name in list(sc.receivers):
                sc.remove(name)
            pts = xy_m[s:s + batch]
            for k, (x, y) in enumerate(pts):
                sc.add(self.rt.Receiver(name=f"rx{k:06d}", position=[float(x), float(y), self.config.rx_height_m]))
            rays = self.config.samples_per_tx or self.config.min_samples_per_tx
            with self._solving():
                paths = self._path_solver(sc, samples_per_src=rays,
                                          max_num_paths_per_src=self.config.max_paths_per_src,
                                          synthetic_array=True, **self.config.solver_kwargs())
                a_re, a_im = (np.asarray(t.numpy()) for t in paths.a)  # [rx, rx_ant, tx, tx_ant, paths]
            power = (a_re**2 + a_im**2).sum(axis=(1, 3, 4))  # [rx, tx]
            with np.errstate(divide="ignore"):
                out[np.ix_(idx, np.arange(s, s + len(pts)))] = np.where(
                    power > 0, 10 * np.log10(power), np.nan).T
        for name in list(sc.receivers):
            sc.remove(name)
        self._set_transmitters(table.iloc[:0])
        return out


def trace(scene: TwinScene | str | os.PathLike, sites: Any, out: str | os.PathLike,
          config: TraceConfig | None = None, metric_config: Any = None, *, metrics: bool = True,
          overwrite: bool = False, progress: bool = False, tracer: Tracer | None = None) -> Path:
    """Trace every cell of a BS table over the scene grid and write the radio-map store.

    Parameters
    ----------
    scene : TwinScene or path
    sites : DataFrame, list of dicts, or path of a BS file
    out : path or URL
        The Zarr store to write (``maps.zarr``), atomically.
    config : TraceConfig, optional
    metric_config : MetricConfig or path, optional
        Passed to :func:`twin.radio.metrics.compute_metrics`; a path is read as the
        ``metrics`` section of a YAML file.
    metrics : bool
        Also compute RSRP/RSRQ/SINR/... (:mod:`twin.radio.metrics`); False writes path gain only.
    overwrite : bool
        Replace an existing store.
    tracer : Tracer, optional
        Reuse a loaded scene (its config wins over ``config``).

    Returns
    -------
    Path
        ``out``.
    """
    from twin.io import is_local
    from twin.radio.maps import write_maps

    if is_local(out):
        check_output(out, overwrite, "maps")
    compute_metrics: Callable[..., dict[str, np.ndarray]] | None = None
    if metrics:  # resolve the metric config before the long part, so that a bad one fails fast
        from twin.radio.metrics import MetricConfig, compute_metrics

        if isinstance(metric_config, (str, os.PathLike)):
            from twin.config import load_yaml

            metric_config = load_yaml(MetricConfig, metric_config, section="metrics")
        metric_config = metric_config or MetricConfig()
    if tracer is None:
        scene = scene if isinstance(scene, TwinScene) else load_twin_scene(scene)
        cfg = config or TraceConfig()
        table = _as_sites(sites, scene, cfg.on_building)  # bad rows fail before Sionna loads the scene
        tracer = Tracer(scene, cfg)
    else:
        table = tracer.sites(sites)
    tracer.check(table)
    from twin.radio.coverage import coverage_counts

    path_gain_db, coverage, samples = tracer.radio_maps_with_coverage(table, progress=progress)  # [n_cells, H, W]
    counts = coverage_counts(coverage, tracer.outdoor())
    per_cell = [{"cell_id": int(cid), "samples_per_tx": int(n), **c}
                for cid, n, c in zip(table["cell_id"], samples, counts, strict=True)]
    arrays: dict[str, np.ndarray] = {"path_gain_db": path_gain_db}
    if compute_metrics is not None:
        arrays = dict(compute_metrics(path_gain_db, table["power_dbm"].to_numpy(np.float64),
                                      table["frequency_hz"].to_numpy(np.float64), metric_config))
        arrays.setdefault("path_gain_db", path_gain_db)
    arrays["coverage"] = coverage
    extra: dict[str, Any] = {"coverage": per_cell}
    if tracer.config.beams:
        from twin.radio.beams import beam_attrs

        beam_pg, beam_coverage = tracer.beam_maps_with_coverage(table, progress=progress)  # [n, B, H, W]
        arrays["beam_path_gain_db"] = beam_pg
        if compute_metrics is not None:
            from twin.radio.metrics import re_power_dbm

            arrays["beam_rsrp_dbm"] = (beam_pg + re_power_dbm(table["power_dbm"].to_numpy(np.float64),
                                                              metric_config)[:, None, None, None]
                                       ).astype(np.float32)
        arrays["beam_coverage"] = beam_coverage
        extra["beams"] = beam_attrs(table, tracer.config.beams)
    return write_maps(out, tracer.grid, tracer.scene, table, arrays, trace_config=tracer.config,
                      metric_config=metric_config if metrics else None, notes=tracer.notes,
                      overwrite=overwrite, extra_attrs=extra)
