"""``twin``: build scenes, deploy base stations, trace radio maps, sample corpora."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from cli.options import BBOX, clean_errors, overwrite_option


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
@click.option("--cell-size", type=float, default=None, help="GIS-layer / radio-map cell size [m] (default 4).")
@click.option("--tile-size", type=float, default=None, help="Also write square tiles of this side [m] under OUT/tiles.")
@click.option("--max-area", type=float, default=None, help="Refuse areas larger than this [km²] (default 25).")
@overwrite_option
@clean_errors
def build_scene_cmd(bbox, osm_file, out, name, config_file, cell_size, tile_size, max_area, overwrite):
    """Build a Sionna-ready 3D scene with GIS layers from an OpenStreetMap area.

    Writes OUT/scene.xml + meshes/*.ply (loadable by sionna.rt.load_scene), scene.json,
    layers.zarr (building mask, building height, road mask), buildings.parquet and
    roads.parquet.

    \b
    Examples:
      twin build-scene --out out/helsinki
      twin build-scene --osm-file rome.osm.pbf --bbox 12.47,41.86,12.49,41.88 --out out/rome --tile-size 600
    """
    from twin.scene import build_scene, scene_config

    config = scene_config(config_file, cell_size_m=cell_size, tile_size_m=tile_size, max_area_km2=max_area)
    scene = build_scene(out, osm_file=osm_file, bbox=bbox, name=name, config=config, overwrite=overwrite)
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
    from twin.scene import load_twin_scene

    plot_scene(load_twin_scene(scene_dir), out, overwrite=overwrite)
    click.echo(f"wrote {out}")


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
@click.option("--n", type=int, help="Number of sequences  [default: 10000]")
@click.option("--mode", type=click.Choice(["random", "drive"]),
              help="Stationary outdoor UEs or vehicles along the roads  [default: random]")
@click.option("--max-events", type=int, help="Events per sequence T  [default: 20]")
@click.option("--features", help="Comma-separated maps arrays  [default: rsrp_dbm,rsrq_db,rssi_dbm,sinr_db]")
@click.option("--max-cells", type=int, help="Cells per measurement report  [default: 4]")
@click.option("--n-reports", type=int, help="Reports per sequence (0: T / max-cells)  [default: 0]")
@click.option("--interval", "report_interval_s", type=float, help="Report period [s]  [default: 1]")
@click.option("--speed", "speed", help="Drive speed range MIN,MAX [m/s]  [default: 5,15]")
@click.option("--splits", help="Train,val,test road-length shares of the spatial split  [default: 0.7,0.15,0.15]")
@click.option("--reporting", type=click.Choice(["nr", "lte", "exact"]), default=None,
              help="Reporting realism: NR ranges, LTE ranges, or exact values  [default: nr]")
@click.option("--seed", type=int, help="Random seed  [default: 0]")
@click.option("--chunk", "chunk_samples", type=int, help="Samples per corpus chunk  [default: 4096]")
@overwrite_option
@clean_errors
def sample_command(scene_dir: str, maps_url: str, out_url: str, config_file: str | None, n: int | None,
                   mode: str | None, max_events: int | None, features: str | None, max_cells: int | None,
                   n_reports: int | None, report_interval_s: float | None, speed: str | None,
                   splits: str | None, reporting: str | None, seed: int | None, chunk_samples: int | None,
                   overwrite: bool) -> None:
    """Sample measurement sequences from a scene and its radio maps into a Zarr corpus.

    \b
    Example:
      twin sample --scene out/helsinki --maps out/maps.zarr --out out/corpus.zarr --n 100000 --mode drive
    """
    import dataclasses

    from twin.config import from_dict, load_yaml, to_dict
    from twin.metrics import ReportingConfig
    from twin.sample import SampleConfig, sample

    config = load_yaml(SampleConfig, config_file) if config_file else SampleConfig()
    flags = {"n": n, "mode": mode, "max_events": max_events, "max_cells": max_cells, "n_reports": n_reports,
             "report_interval_s": report_interval_s, "seed": seed, "chunk_samples": chunk_samples,
             "features": tuple(f.strip() for f in features.split(",")) if features else None,
             "speed_mps": _floats(speed, "--speed"), "split_fractions": _floats(splits, "--splits")}
    changes: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    if reporting == "lte":
        changes["reporting"] = ReportingConfig.lte()
    elif reporting == "exact":
        changes["reporting"] = ReportingConfig.exact()
    elif reporting == "nr":
        changes["reporting"] = ReportingConfig()
    config = from_dict(SampleConfig, to_dict(dataclasses.replace(config, **changes)), "command line")
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
    from twin.generate import generate
    from twin.plan import load_plan

    summary = generate(load_plan(plan_file, output=output), workers=workers, scheduler=scheduler, cluster=cluster, resume=resume,
                       overwrite=overwrite, progress=not no_progress, echo=click.echo)
    for line in summary.lines():
        click.echo(line)
    if not summary.complete:
        sys.exit(1)


from cli.radio import deploy_cmd, show_map_cmd, trace_cmd  # noqa: E402

main.add_command(deploy_cmd)
main.add_command(trace_cmd)
main.add_command(show_map_cmd)

if __name__ == "__main__":
    main()
