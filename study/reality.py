"""A proxy reality over a scene: hidden true sites, a richer trace, shadowing, a drive test.

Seed 004 measures in Rome; without its data the study needs a *reality* that the twin
does not reproduce by construction. :func:`make_reality` builds one from a scene
directory, deterministically from ``seed``:

* **true sites** — ``n_sites`` sites drawn by :func:`twin.radio.deploy` (``random``),
  each with its own mast height, first-sector azimuth and downtilt drawn from the
  config's ranges;
* **the operator's BS file** — the truth perturbed as a real network's records are:
  positions moved by a Gaussian of ``operator_position_sigma_m`` per axis, heights by
  ``operator_height_sigma_m``, azimuths by ``operator_azimuth_sigma_deg`` (wrapped),
  tilts by ``operator_tilt_sigma_deg``; the same cell ids;
* **the reality's world** — a second scene directory whose building heights are the
  twin's times a log-normal factor (``building_height_sigma``), whose buildings get
  materials drawn from ``building_materials`` and whose ground is ``ground_material``;
* **the reality's physics** — traced with diffraction and edge diffraction on, diffuse
  scattering on, ``max_depth`` interactions and ``samples_per_tx`` rays (the twin's
  default has diffraction off and chooses its rays from a density target), plus a
  spatially correlated shadowing field per cell (``shadowing_db``,
  ``shadowing_corr_m``: :func:`calibrate.simulate.shadowing_field`) and UE reporting noise
  and quantization (``report_sigma_db``, ``report_step_db``); traced on one CPU thread
  (``deterministic_trace``, :class:`twin.radio.tracer.TraceConfig` ``deterministic``): with
  diffraction on, several threads race for Sionna's wedge table and the drive test would
  differ from build to build;
* **the drive test** — points every ``spacing_m`` along the drivable roads
  (:func:`calibrate.simulate.simulate_drive_test`), written in DESIGN.md's drive-test
  format (``time, lon, lat, cell_id, rssi_dbm, rsrp_dbm, rsrq_db, sinr_db``).

Outputs (``out_dir``): ``truth_bs.csv``, ``operator_bs.csv``, ``drive_test.csv``,
``reality_scene/`` and ``reality.json`` (the config, the seed, the perturbations drawn
per site). Nothing downstream but the study's known-truth read-out reads the truth.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twin.config import to_dict
from twin.errors import InputError, collect

__all__ = ["RealityConfig", "RealityFiles", "make_reality", "perturb_sites", "perturbed_scene"]


@dataclass(frozen=True)
class RealityConfig:
    """How the proxy reality differs from the twin (module docstring). Units in the names."""

    n_sites: int = 4
    sectors: int = 3
    min_spacing_m: float = 150.0
    margin_m: float = 60.0
    site_height_m: tuple[float, float] = (25.0, 45.0)
    tilt_deg: tuple[float, float] = (2.0, 10.0)
    frequency_hz: float = 1.8e9
    # the operator's records
    operator_position_sigma_m: float = 25.0
    operator_height_sigma_m: float = 6.0
    operator_azimuth_sigma_deg: float = 20.0
    operator_tilt_sigma_deg: float = 2.0
    # the reality's world
    building_height_sigma: float = 0.2
    building_materials: tuple[str, ...] = ("concrete", "brick", "glass")
    ground_material: str = "wet_ground"
    # the reality's physics
    samples_per_tx: int = 2_000_000
    max_depth: int = 4
    diffraction: bool = True
    deterministic_trace: bool = True
    shadowing_db: float = 7.0
    shadowing_corr_m: float = 50.0
    report_sigma_db: float = 2.0
    report_step_db: float = 1.0
    # the drive
    spacing_m: float = 10.0
    radius_m: float = 800.0
    max_points: int | None = None

    def __post_init__(self) -> None:
        from twin.scene.materials import ITU_TYPES

        problems = []
        if self.n_sites < 1:
            problems.append(f"n_sites: {self.n_sites} must be >= 1")
        for name in ("site_height_m", "tilt_deg"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                problems.append(f"{name}: {getattr(self, name)} must be (low, high) with low <= high")
        for name in ("operator_position_sigma_m", "operator_height_sigma_m", "operator_azimuth_sigma_deg",
                     "operator_tilt_sigma_deg", "building_height_sigma", "shadowing_db", "report_sigma_db",
                     "report_step_db"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name}: {getattr(self, name)} must be >= 0")
        for name in ("spacing_m", "radius_m", "shadowing_corr_m"):
            if not getattr(self, name) > 0:
                problems.append(f"{name}: {getattr(self, name)} must be > 0")
        bad = [m for m in (*self.building_materials, self.ground_material) if m not in ITU_TYPES]
        if bad or not self.building_materials:
            problems.append(f"materials: {bad or 'none given'} are not ITU material types "
                            f"({', '.join(sorted(ITU_TYPES))})")
        collect(problems, "reality config")


@dataclass
class RealityFiles:
    """The paths :func:`make_reality` wrote."""

    truth_bs: Path
    operator_bs: Path
    drive_test: Path
    scene: Path
    info: Path


def perturb_sites(truth: Any, config: RealityConfig, rng: np.random.Generator) -> Any:
    """The operator's BS table: ``truth`` with per-site errors (all sectors of a site move together).

    Returns a copy with ``x_m, y_m, height_m, azimuth_deg, tilt_deg`` perturbed and
    ``lon, lat`` dropped (the writer recomputes them from the scene).
    """
    table = truth.copy()
    sites = sorted(table["bs_id"].unique())
    for bs in sites:
        rows = table["bs_id"] == bs
        dx, dy = rng.normal(0.0, config.operator_position_sigma_m, 2)
        dh = rng.normal(0.0, config.operator_height_sigma_m)
        da = rng.normal(0.0, config.operator_azimuth_sigma_deg)
        dt = rng.normal(0.0, config.operator_tilt_sigma_deg)
        table.loc[rows, "x_m"] += dx
        table.loc[rows, "y_m"] += dy
        table.loc[rows, "height_m"] = np.maximum(table.loc[rows, "height_m"] + dh, 5.0)
        table.loc[rows, "azimuth_deg"] = (table.loc[rows, "azimuth_deg"] + da) % 360.0
        table.loc[rows, "tilt_deg"] = table.loc[rows, "tilt_deg"] + dt
    return table.drop(columns=[c for c in ("lon", "lat") if c in table.columns])


def perturbed_scene(scene: Any, out: str | os.PathLike, config: RealityConfig, rng: np.random.Generator) -> Path:
    """Write a scene directory like ``scene`` with perturbed building heights and materials.

    Heights: the twin's times ``exp(N(0, building_height_sigma))`` per building (at least
    3 m); materials: drawn uniformly from ``building_materials`` per building; the ground:
    ``ground_material``. Meshes are re-extruded from the footprints
    (:func:`twin.scene.extrude.extrude_footprint`); the GIS layers keep the twin's
    (the reality has no maps of its own: only its traced drive test is seen).
    """
    import geopandas as gpd

    from twin.io import atomic_dir
    from twin.scene.build import scene_xml, write_scene_files
    from twin.scene.extrude import extrude_footprint, ground_plane, merge_meshes
    from twin.scene.materials import DEFAULT_THICKNESS_M

    buildings = scene.buildings()
    n = len(buildings)
    factor = np.exp(rng.normal(0.0, config.building_height_sigma, n))
    height = np.maximum(buildings["height_m"].to_numpy(np.float64) * factor, 3.0)
    low = (buildings["min_height_m"].to_numpy(np.float64) if "min_height_m" in buildings.columns
           else np.zeros(n))
    low = np.minimum(low, height - 1.0)
    materials = np.asarray(config.building_materials, dtype=object)[
        rng.integers(0, len(config.building_materials), n)] if n else np.zeros(0, dtype=object)
    meshes: dict[str, list] = {}
    for k, geom in enumerate(buildings.geometry):
        for part in getattr(geom, "geoms", [geom]):
            if part.is_empty or part.area <= 0:
                continue
            meshes.setdefault(str(materials[k]), []).append(extrude_footprint(part, float(low[k]), float(height[k])))
    x0, y0, x1, y1 = scene.extent_m
    margin = 50.0
    shape_materials = {f"buildings-{m}": m for m in sorted(meshes)}
    shape_materials["ground"] = config.ground_material
    perturbed = gpd.GeoDataFrame({"height_m": height, "material": materials}, geometry=buildings.geometry.values)
    out = Path(out)
    with atomic_dir(out, kind="scene") as tmp:
        (tmp / "meshes").mkdir()
        for material, parts in meshes.items():
            merge_meshes(parts).export(tmp / "meshes" / f"buildings-{material}.ply")
        ground_plane(x0 - margin, y0 - margin, x1 + margin, y1 + margin).export(tmp / "meshes" / "ground.ply")
        (tmp / "scene.xml").write_text(scene_xml(shape_materials, DEFAULT_THICKNESS_M))
        write_scene_files(tmp, name=f"{scene.name}-reality", frame=scene.frame, grid=scene.grid,
                          extent_m=scene.extent_m, layers=scene.layers, buildings=perturbed,
                          roads=scene.roads(),
                          meta={"source": {"reality_of": str(scene.path)},
                                "materials": {m: len(v) for m, v in sorted(meshes.items())}
                                | {"ground": config.ground_material}})
    return out


def make_reality(scene_dir: str | os.PathLike, out_dir: str | os.PathLike, config: RealityConfig | None = None,
                 seed: int = 0, progress: bool = False) -> RealityFiles:
    """Build the proxy reality of ``scene_dir`` into ``out_dir`` (module docstring); deterministic by ``seed``.

    ``out_dir`` must be an existing, writable folder (the study builds it inside
    :func:`twin.io.atomic_dir`). Returns the paths written.
    """
    from calibrate.drive_test import write_drive_test
    from calibrate.simulate import simulate_drive_test
    from twin.radio.deployment import DeployConfig, deploy
    from twin.radio.sites import write_bs_file
    from twin.radio.tracer import TraceConfig, Tracer
    from twin.scene.build import load_twin_scene

    config = config or RealityConfig()
    out = Path(out_dir)
    if not out.is_dir():
        raise InputError(f"{out}: the reality's output folder does not exist")
    scene = load_twin_scene(scene_dir)
    rng = np.random.default_rng([seed, 4])
    truth = deploy(scene, "random", DeployConfig(count=config.n_sites, sectors=config.sectors,
                                                 min_spacing_m=config.min_spacing_m, margin_m=config.margin_m,
                                                 azimuth_deg=None, frequency_hz=config.frequency_hz),
                   seed=seed)
    # per site: its own mast, first azimuth and tilt (sectors 120 degrees apart keep their offsets)
    for bs in sorted(truth["bs_id"].unique()):
        rows = truth["bs_id"] == bs
        truth.loc[rows, "height_m"] = rng.uniform(*config.site_height_m)
        truth.loc[rows, "tilt_deg"] = rng.uniform(*config.tilt_deg)
    operator = perturb_sites(truth, config, rng)
    files = RealityFiles(out / "truth_bs.csv", out / "operator_bs.csv", out / "drive_test.csv",
                         out / "reality_scene", out / "reality.json")
    write_bs_file(truth, files.truth_bs, scene)
    write_bs_file(operator, files.operator_bs, scene)
    world = perturbed_scene(scene, files.scene, config, rng)
    trace_config = TraceConfig(samples_per_tx=config.samples_per_tx, max_depth=config.max_depth,
                               diffraction=config.diffraction, edge_diffraction=config.diffraction,
                               diffuse_reflection=True, materials_out_of_range="extrapolate",
                               deterministic=config.deterministic_trace,
                               seed=7)  # not the twin's ray seed 42: no replay of its Monte-Carlo noise
    tracer = Tracer(load_twin_scene(world), trace_config)
    rows = simulate_drive_test(tracer.scene, truth, spacing_m=config.spacing_m, radius_m=config.radius_m,
                               sigma_db=config.report_sigma_db, step_db=config.report_step_db,
                               max_points=config.max_points, tracer=tracer, seed=seed,
                               shadowing_db=config.shadowing_db, shadowing_corr_m=config.shadowing_corr_m)
    write_drive_test(rows, files.drive_test)
    info = {"seed": seed, "config": to_dict(config), "scene": str(scene_dir),
            "rows": len(rows), "points": int(rows.groupby(["time", "lon", "lat"]).ngroups),
            "cells": int(rows["cell_id"].nunique()),
            "operator_error": site_errors(truth, operator)}
    files.info.write_text(json.dumps(info, indent=2))
    return files


def site_errors(truth: Any, records: Any) -> list[dict[str, Any]]:
    """Per site of ``truth``: how far ``records`` (a BS table, scene metres) is from it.

    Position [m] (horizontal distance), height [m] and azimuth [deg] (signed, wrapped to
    [-180, 180)) of each site's first row, and tilt [deg] where both tables have it. A site
    missing from ``records`` is an :class:`~twin.errors.InputError` naming it.
    """
    out = []
    for bs in sorted(truth["bs_id"].unique()):
        t = truth[truth["bs_id"] == bs].iloc[0]
        mine = records[records["bs_id"] == bs]
        if not len(mine):
            raise InputError(f"site {bs!r} of the truth is not in the BS file compared with it")
        o = mine.iloc[0]
        da = (float(o["azimuth_deg"]) - float(t["azimuth_deg"]) + 180.0) % 360.0 - 180.0
        row = {"bs_id": str(bs), "position_m": round(float(np.hypot(o["x_m"] - t["x_m"], o["y_m"] - t["y_m"])), 2),
               "height_m": round(float(o["height_m"] - t["height_m"]), 2), "azimuth_deg": round(da, 2)}
        if "tilt_deg" in truth.columns and "tilt_deg" in records.columns:
            row["tilt_deg"] = round(float(o["tilt_deg"] - t["tilt_deg"]), 2)
        out.append(row)
    return out
