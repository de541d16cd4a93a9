"""``twin``: build scenes, deploy base stations, trace radio maps, sample corpora, generate at scale."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cli.options import BBOX, clean_errors, config_option, overwrite_option, seed_option

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="radio-twin")
def main() -> None:
    """Radio digital twin: from an OpenStreetMap area to ray-traced radio maps and corpora.

    \b
    Example:
      twin build-scene --out out/helsinki      # the embedded central-Helsinki default
    """


@main.command("build-scene")
@click.option("--bbox", type=BBOX, default=None, help="Area as W,S,E,N in WGS84 degrees.")
@click.option("--osm-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=".osm.pbf, .osm, .osm.bz2 or GeoJSON. Without it and --bbox: bundled central Helsinki; "
                   "with only --bbox: Overpass (online).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Scene directory to write.")
@click.option("--name", default=None, help="Scene name (default: the directory's name).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML with SceneConfig keys (heights, materials, geometry, ...).")
@config_option("twin.scene.build:SceneConfig", "--cell-size", field="cell_size_m", type=float,
               help="GIS-layer / radio-map cell size [m].")
@click.option("--tile-size", type=float, default=None, help="Also write square tiles of this side [m] under OUT/tiles.")
@config_option("twin.scene.build:SceneConfig", "--max-area", field="max_area_km2", type=float,
               help="Refuse areas larger than this [km²].")
@click.option("--allow-empty", is_flag=True, help="Build a ground-only scene when the area holds no building "
                                                     "(refused by default: the bbox is likely outside the file's data).")
@overwrite_option
@clean_errors
def build_scene_cmd(bbox, osm_file, out, name, config_file, cell_size, tile_size, max_area, allow_empty, overwrite):
    """Build a Sionna-ready 3D scene with GIS layers from an OpenStreetMap area.

    Writes OUT/scene.xml + meshes/*.ply (loadable by sionna.rt.load_scene), scene.json,
    layers.zarr (building mask, building height, road mask), buildings.parquet and
    roads.parquet.

    \b
    Examples:
      twin build-scene --out out/helsinki
      twin build-scene --osm-file rome.osm.pbf --bbox 12.47,41.86,12.49,41.88 --out out/rome --tile-size 600
    """
    from twin.scene.build import build_scene, scene_config

    config = scene_config(config_file, cell_size_m=cell_size, tile_size_m=tile_size, max_area_km2=max_area)
    scene = build_scene(out, osm_file=osm_file, bbox=bbox, name=name, config=config, overwrite=overwrite,
                        allow_empty=allow_empty)
    counts = scene.meta["counts"]
    dropped = sum(counts["buildings_dropped"].values())
    click.echo(f"scene '{scene.name}' -> {scene.path}")
    click.echo(f"  buildings: {counts['buildings_built']} built of {counts['buildings_read']} read "
               f"({counts['buildings_repaired']} repaired, {dropped} dropped: {counts['buildings_dropped']})")
    click.echo(f"  heights from: {scene.meta['height_sources']}")
    click.echo(f"  roads: {counts['roads']} ({counts['roads_drivable']} drivable); "
               f"grid {scene.grid.width}x{scene.grid.height} cells of {scene.grid.cell_size_m:g} m; CRS {scene.frame.crs}")
    for warning in scene.meta.get("warnings", []):
        click.echo(f"  warning: {warning}")


@main.command("show-scene")
@click.argument("scene_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG to write.")
@overwrite_option
@clean_errors
def show_scene_cmd(scene_dir, out, overwrite):
    """Write a top view of a scene: footprints coloured by height, with roads.

    \b
    Example:
      twin show-scene out/helsinki --out out/helsinki.png
    """
    from twin.plot import plot_scene
    from twin.scene.build import load_twin_scene

    plot_scene(load_twin_scene(scene_dir), out, overwrite=overwrite)
    click.echo(f"wrote {out}")


@main.command("deploy")
@click.option("--scene", "scene_dir", required=True, type=click.Path(file_okay=False), help="Scene directory.")
@click.option("--strategy", required=True, type=click.Choice(["file", "grid", "random", "dense"]))
@click.option("--bs-file", type=click.Path(dir_okay=False), help="Input BS file (strategy 'file').")
@config_option("twin.radio.deployment:DeployConfig", "--count", type=int, help="Number of sites, exactly (dense: at least --min-visible per tile).")
@config_option("twin.radio.deployment:DeployConfig", "--min-spacing", "min_spacing_m", type=float, help="Minimum site spacing [m].")
@config_option("twin.radio.deployment:DeployConfig", "--height-m", type=float, help="Antenna height above the ground [m].")
@click.option("--rooftop", is_flag=True, default=None, help="Sites on roofs: roof height plus --mast-m.")
@config_option("twin.radio.deployment:DeployConfig", "--mast-m", type=float, help="Mast above a roof [m].")
@config_option("twin.radio.deployment:DeployConfig", "--sectors", type=click.Choice(["1", "3"]), help="Sectors per site.")
@config_option("twin.radio.deployment:DeployConfig", "--azimuth", "azimuth_deg", type=float,
               help="First sector's azimuth, clockwise from north [deg].")
@click.option("--random-azimuth", is_flag=True, help="Draw each site's azimuth.")
@config_option("twin.radio.deployment:DeployConfig", "--tilt", "tilt_deg", type=float, help="Downtilt [deg].")
@config_option("twin.radio.deployment:DeployConfig", "--power-dbm", type=float, help="Transmit power per cell [dBm].")
@config_option("twin.radio.deployment:DeployConfig", "--frequency-hz", type=float, help="Carrier [Hz].")
@config_option("twin.radio.deployment:DeployConfig", "--bandwidth-hz", type=float, help="Bandwidth [Hz].")
@click.option("--pattern", type=click.Choice(["tr38901", "iso"]), help="Antenna pattern.")
@config_option("twin.radio.deployment:DeployConfig", "--crop-m", type=float, help="dense: crop side that must see --min-visible sites [m].")
@config_option("twin.radio.deployment:DeployConfig", "--min-visible", type=int, help="dense: sites per crop.")
@config_option("twin.radio.deployment:DeployConfig", "--on-building", type=click.Choice(["rooftop", "reject"]),
               help="file: an antenna inside a building is lifted to the roof or rejected.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML with a 'deploy' section.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output BS file (.csv or .geojson).")
@seed_option
@overwrite_option
@clean_errors
def deploy_cmd(scene_dir: str, strategy: str, bs_file: str | None, config_file: str | None, out: str,
               seed: int, overwrite: bool, random_azimuth: bool, rooftop: bool | None, sectors: str | None,
               **flags: Any) -> None:
    """Place base stations (one row per cell) on a scene and write the BS file.

    \b
    Example:
      twin deploy --scene out/helsinki --strategy dense --count 72 --out out/bs.csv
    """
    from twin.config import resolve_config
    from twin.radio.deployment import DeployConfig, deploy_to_file

    flags["height"] = "rooftop" if rooftop else None
    flags["sectors"] = int(sectors) if sectors else None
    cfg = resolve_config(DeployConfig, config_file, "deploy", **flags)
    if random_azimuth:
        import dataclasses

        cfg = dataclasses.replace(cfg, azimuth_deg=None)
    table = deploy_to_file(scene_dir, strategy, out, cfg, seed=seed, bs_file=bs_file, overwrite=overwrite)
    click.echo(f"{out}: {table['bs_id'].nunique()} sites, {len(table)} cells ({strategy}), "
               f"heights {table['height_m'].min():.0f}-{table['height_m'].max():.0f} m")


@main.command("trace")
@click.option("--scene", "scene_dir", required=True, type=click.Path(file_okay=False), help="Scene directory.")
@click.option("--bs-file", required=True, type=click.Path(dir_okay=False), help="BS file (.csv or .geojson).")
@click.option("--out", required=True, help="Output radio-map store (maps.zarr).")
@config_option("twin.radio.tracer:TraceConfig", "--cell-size", "cell_size_m", type=float, help="Map cell [m].", default_text="the scene grid's")
@config_option("twin.radio.tracer:TraceConfig", "--samples-per-tx", type=int, help="Rays per transmitter, overriding the density target.",
               default_text="from --rays-per-pixel")
@config_option("twin.radio.tracer:TraceConfig", "--rays-per-pixel", type=float,
               help="Direct rays per map pixel 500 m from each transmitter (sets its rays).")
@config_option("twin.radio.tracer:TraceConfig", "--fill-radius", "fill_radius_m", type=float,
               help="Fill outdoor pixels without a ray from outdoor neighbours up to this far [m]; 0 off.")
@config_option("twin.radio.tracer:TraceConfig", "--max-depth", type=int, help="Interactions per path.")
@config_option("twin.radio.tracer:TraceConfig", "--diffraction/--no-diffraction", help="Edge diffraction.")
@config_option("twin.radio.tracer:TraceConfig", "--deterministic/--no-deterministic",
               help="Trace on one CPU thread: byte-identical maps for a seed (with diffraction the threads race; "
                    "costs the other cores; docs/trace.md).")
@config_option("twin.radio.tracer:TraceConfig", "--diffuse/--no-diffuse", "diffuse_reflection",
               help="Diffuse scattering (per-material S, K_x, pattern; docs/trace.md).")
@config_option("twin.radio.tracer:TraceConfig", "--reflection/--no-reflection", "specular_reflection", help="Specular reflection.")
@config_option("twin.radio.tracer:TraceConfig", "--beams", type=int,
               help="NR SSB beams per cell, also traced as beam maps (0 none; 4 below 3 GHz, 8 at 3-6 GHz as "
                    "NR's L_max; costs about N times the rays; docs/trace.md).")
@click.option("--pattern", type=click.Choice(["tr38901", "iso"]), help="Override the BS file's patterns.")
@click.option("--extrapolate-materials", is_flag=True,
              help="Extend ITU materials outside their frequency ranges instead of failing.")
@click.option("--on-building", type=click.Choice(["rooftop", "reject"]), help="Antennas inside buildings.")
@click.option("--path-gain-only", is_flag=True, help="Write path gain only (no RSRP/SINR/BLER ...).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML with 'trace' and 'metrics' sections.")
@overwrite_option
@clean_errors
def trace_cmd(scene_dir: str, bs_file: str, out: str, config_file: str | None, extrapolate_materials: bool,
              path_gain_only: bool, overwrite: bool, **flags: Any) -> None:
    """Ray-trace every cell of a BS file over the scene grid; write the radio maps.

    \b
    Example:
      twin trace --scene out/helsinki --bs-file out/bs.csv --out out/maps.zarr --rays-per-pixel 2
      twin trace --scene out/helsinki --bs-file out/bs.csv --out out/maps-beams.zarr --beams 8
    """
    from twin.config import resolve_config
    from twin.radio.tracer import TraceConfig, trace

    if extrapolate_materials:
        flags["materials_out_of_range"] = "extrapolate"
    cfg = resolve_config(TraceConfig, config_file, "trace", **flags)
    path = trace(scene_dir, bs_file, out, cfg, metric_config=config_file if not path_gain_only else None,
                 metrics=not path_gain_only, overwrite=overwrite, progress=True)
    from twin.radio.maps import open_maps

    maps = open_maps(path)
    click.echo(f"{path}: {len(maps.cell_ids)} cells on a {maps.grid.height} x {maps.grid.width} grid of "
               f"{maps.grid.cell_size_m:g} m; arrays {', '.join(maps.arrays)}")
    cov = maps.attrs.get("coverage") or []
    if cov:
        total = {k: sum(c[k] for c in cov) for k in ("received_outdoor", "filled_outdoor", "unheard_outdoor")}
        n = max(1, sum(total.values()))
        click.echo(f"outdoor pixels x cells: {100 * total['received_outdoor'] / n:.1f} % ray-traced, "
                   f"{100 * total['filled_outdoor'] / n:.1f} % filled, {100 * total['unheard_outdoor'] / n:.1f} % "
                   f"none; rays per cell {min(c['samples_per_tx'] for c in cov):,}-"
                   f"{max(c['samples_per_tx'] for c in cov):,}")
    if maps.n_beams:
        click.echo(f"SSB beams: {maps.n_beams} per cell (beam_path_gain_db"
                   f"{', beam_rsrp_dbm' if 'beam_rsrp_dbm' in maps.arrays else ''})")
    for note in maps.attrs.get("notes", []):
        click.echo(f"note: {note}", err=True)


@main.command("show-map")
@click.argument("maps", type=click.Path(exists=True))
@click.option("--metric", default="path_gain_db", show_default=True, help="Array of the store to draw.")
@click.option("--cell", "cells", type=int, multiple=True, help="Cell id(s) to draw (default all).")
@click.option("--beam", type=int, help="For a beam array (beam_rsrp_dbm ...): this SSB beam, not the best one.")
@click.option("--scene", "scene_dir", type=click.Path(file_okay=False),
              help="Scene for the footprints (default: the store's).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder of PNGs.")
@overwrite_option
@clean_errors
def show_map_cmd(maps: str, metric: str, cells: tuple[int, ...], beam: int | None, scene_dir: str | None, out: str,
                 overwrite: bool) -> None:
    """Draw a metric map (per cell and best cell) with BS markers over the building footprints.

    \b
    Example:
      twin show-map out/maps.zarr --metric rsrp_dbm --out out/maps-png
      twin show-map out/maps-beams.zarr --metric beam_rsrp_dbm --beam 2 --out out/beam2-png
    """
    from twin.radio.maps import show_map

    written = show_map(maps, out, metric, list(cells) or None, scene_dir, overwrite=overwrite, beam=beam)
    click.echo(f"{Path(out)}: {len(written)} picture(s)")


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint=what) from err


@main.command("sample")
@click.option("--scene", "scene_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Scene directory (twin build-scene output).")
@click.option("--maps", "maps_url", required=True, help="Radio maps of the scene (twin trace output).")
@click.option("--out", "out_url", required=True, help="Corpus store to write (.zarr).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="YAML of SampleConfig fields; the flags below override it.")
@config_option("twin.corpus.sampler:SampleConfig", "--n", type=int, help="Number of sequences.")
@config_option("twin.corpus.sampler:SampleConfig", "--mode", type=click.Choice(["random", "drive"]),
               help="Stationary outdoor UEs or vehicles along the roads.")
@config_option("twin.corpus.sampler:SampleConfig", "--max-events", type=int, help="Events per sequence T.")
@config_option("twin.corpus.sampler:SampleConfig", "--features", help="Comma-separated maps arrays.")
@config_option("twin.corpus.sampler:SampleConfig", "--max-cells", type=int, help="Cells per measurement report.")
@config_option("twin.corpus.sampler:SampleConfig", "--n-reports", type=int, help="Reports per sequence (0: T / max-cells).")
@config_option("twin.corpus.sampler:SampleConfig", "--interval", "report_interval_s", type=float, help="Report period [s].")
@config_option("twin.corpus.sampler:SampleConfig", "--speed", "speed", field="speed_mps", help="Drive speed range MIN,MAX [m/s].")
@config_option("twin.corpus.sampler:SampleConfig", "--splits", field="split_fractions", help="Train,val,test road-length shares of the spatial split.")
@config_option("twin.corpus.sampler:SampleConfig", "--known-test-frac", type=float,
               help="Spatial split: share of the training streets' samples tested as known streets.")
@config_option("twin.corpus.sampler:SampleConfig", "--reporting", type=click.Choice(["nr", "lte", "exact"]), default_text="nr",
               help="Reporting realism: NR ranges, LTE ranges, or exact values.")
@config_option("twin.corpus.sampler:SampleConfig", "--seed", type=int, help="Random seed.")
@config_option("twin.corpus.sampler:SampleConfig", "--chunk", "chunk_samples", type=int, help="Samples per corpus chunk.")
@overwrite_option
@clean_errors
def sample_command(scene_dir: str, maps_url: str, out_url: str, config_file: str | None, n: int | None,
                   mode: str | None, max_events: int | None, features: str | None, max_cells: int | None,
                   n_reports: int | None, report_interval_s: float | None, speed: str | None,
                   splits: str | None, known_test_frac: float | None, reporting: str | None, seed: int | None, chunk_samples: int | None,
                   overwrite: bool) -> None:
    """Sample measurement sequences from a scene and its radio maps into a Zarr corpus.

    \b
    Example:
      twin sample --scene out/helsinki --maps out/maps.zarr --out out/corpus.zarr --n 100000 --mode drive
    """
    from twin.config import resolve_config
    from twin.corpus.sampler import SampleConfig, sample
    from twin.radio.metrics import ReportingConfig

    config = resolve_config(
        SampleConfig, config_file, None, n=n, mode=mode, max_events=max_events, max_cells=max_cells,
        n_reports=n_reports, report_interval_s=report_interval_s, seed=seed, chunk_samples=chunk_samples,
        features=tuple(f.strip() for f in features.split(",")) if features else None,
        speed_mps=_floats(speed, "--speed"), split_fractions=_floats(splits, "--splits"),
        known_test_frac=known_test_frac, reporting={"nr": ReportingConfig(), "lte": ReportingConfig.lte(), "exact": ReportingConfig.exact()
                   }.get(reporting or ""))
    corpus = sample(scene_dir, maps_url, config, out_url, overwrite=overwrite, progress=True)
    counts = corpus.attrs["counts"]
    click.echo(f"Wrote {counts['samples']} sequences ({config.mode} mode, T={config.max_events}, "
               f"features {', '.join(config.features)}) to {corpus.url}")
    for scheme, parts in counts["splits"].items():
        click.echo(f"  split {scheme:8s} " + "  ".join(f"{k} {v}" for k, v in parts.items()))


@main.command("generate")
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--workers", type=int, default=None,
              help="LocalCluster worker processes (default: one per core; one thread each), or SLURM/PBS jobs.")
@click.option("--scheduler", default=None, help="Join a running Dask scheduler, e.g. tcp://host:8786.")
@click.option("--cluster", type=click.Choice(["local", "slurm", "pbs"]), default=None,
              help="Start the workers here or as batch jobs (dask-jobqueue), overriding the plan's cluster.kind.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run: skip the shards its manifest records.")
@click.option("--out", "output", default=None, help="Corpus URL, replacing the plan's output.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@overwrite_option
@clean_errors
def generate_cmd(plan_file, workers, scheduler, cluster, resume, output, no_progress, overwrite):
    """Generate a corpus from a plan: every patch a shard (scene, deploy, trace, sample) on Dask.

    The plan (YAML, commented example in scenes/generate_plan.yaml) names the region,
    patching, deployment, tracing, metrics, sampling, seeds, output URL and cluster.
    Shards are reproducible (seeded from the plan seed and the shard index), retried
    when they fail, and recorded in a manifest so that --resume computes only the rest.

    \b
    Examples:
      twin generate scenes/generate_plan.yaml --workers 2 --out out/helsinki_corpus.zarr
      twin generate plan.yaml --resume
      twin generate plan.yaml --cluster slurm --workers 8     # 8 jobs, see docs/cluster.md
    """
    from twin.generate.plan import load_plan
    from twin.generate.run import generate

    summary = generate(load_plan(plan_file, output=output), workers=workers, scheduler=scheduler, cluster=cluster, resume=resume,
                       overwrite=overwrite, progress=not no_progress, echo=click.echo)
    for line in summary.lines():
        click.echo(line)
    if not summary.complete:
        sys.exit(1)


if __name__ == "__main__":
    main()
