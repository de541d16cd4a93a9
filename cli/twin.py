"""``twin``: build scenes, deploy base stations, trace radio maps, sample corpora."""

from __future__ import annotations

from pathlib import Path

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

from cli.radio import deploy_cmd, show_map_cmd, trace_cmd  # noqa: E402

main.add_command(deploy_cmd)
main.add_command(trace_cmd)
main.add_command(show_map_cmd)

if __name__ == "__main__":
    main()
