"""``twin deploy``, ``twin trace``, ``twin show-map``: base stations, radio maps, pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.options import clean_errors, overwrite_option, seed_option

__all__ = ["deploy_cmd", "trace_cmd", "show_map_cmd"]


def _config(cls: type, path: str | None, section: str, flags: dict[str, Any]) -> Any:
    """A config from the YAML ``section`` (if given), then the flags that were set."""
    import dataclasses

    from twin.config import load_yaml

    base = load_yaml(cls, path, section=section) if path else cls()
    return dataclasses.replace(base, **{k: v for k, v in flags.items() if v is not None})


@click.command("deploy")
@click.option("--scene", "scene_dir", required=True, type=click.Path(file_okay=False), help="Scene directory.")
@click.option("--strategy", required=True, type=click.Choice(["file", "grid", "random", "dense"]))
@click.option("--bs-file", type=click.Path(dir_okay=False), help="Input BS file (strategy 'file').")
@click.option("--count", type=int, help="Number of sites (grid, random; extra sites for dense).  [default: 10]")
@click.option("--min-spacing", "min_spacing_m", type=float, help="Minimum site spacing [m].  [default: 50]")
@click.option("--height-m", type=float, help="Antenna height above the ground [m].  [default: 40]")
@click.option("--rooftop", is_flag=True, default=None, help="Sites on roofs: roof height plus --mast-m.")
@click.option("--mast-m", type=float, help="Mast above a roof [m].  [default: 5]")
@click.option("--sectors", type=click.Choice(["1", "3"]), help="Sectors per site.  [default: 3]")
@click.option("--azimuth", "azimuth_deg", type=float, help="First sector's azimuth, clockwise from north [deg].")
@click.option("--random-azimuth", is_flag=True, help="Draw each site's azimuth.")
@click.option("--tilt", "tilt_deg", type=float, help="Downtilt [deg].  [default: 6]")
@click.option("--power-dbm", type=float, help="Transmit power per cell [dBm].  [default: 43]")
@click.option("--frequency-hz", type=float, help="Carrier [Hz].  [default: 1.8e9]")
@click.option("--bandwidth-hz", type=float, help="Bandwidth [Hz].  [default: 20e6]")
@click.option("--pattern", type=click.Choice(["tr38901", "iso"]), help="Antenna pattern.")
@click.option("--crop-m", type=float, help="dense: crop side that must see --min-visible sites [m].  [default: 600]")
@click.option("--min-visible", type=int, help="dense: sites per crop.  [default: 3]")
@click.option("--on-building", type=click.Choice(["rooftop", "reject"]),
              help="file: an antenna inside a building is lifted to the roof or rejected.  [default: rooftop]")
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
      twin deploy --scene out/helsinki --strategy dense --count 12 --out out/bs.csv
    """
    from twin.deploy import DeployConfig, deploy_to_file

    flags["height"] = "rooftop" if rooftop else None
    flags["sectors"] = int(sectors) if sectors else None
    cfg = _config(DeployConfig, config_file, "deploy", flags)
    if random_azimuth:
        import dataclasses

        cfg = dataclasses.replace(cfg, azimuth_deg=None)
    table = deploy_to_file(scene_dir, strategy, out, cfg, seed=seed, bs_file=bs_file, overwrite=overwrite)
    click.echo(f"{out}: {table['bs_id'].nunique()} sites, {len(table)} cells ({strategy}), "
               f"heights {table['height_m'].min():.0f}-{table['height_m'].max():.0f} m")


@click.command("trace")
@click.option("--scene", "scene_dir", required=True, type=click.Path(file_okay=False), help="Scene directory.")
@click.option("--bs-file", required=True, type=click.Path(dir_okay=False), help="BS file (.csv or .geojson).")
@click.option("--out", required=True, help="Output radio-map store (maps.zarr).")
@click.option("--cell-size", "cell_size_m", type=float, help="Map cell [m].  [default: the scene grid's]")
@click.option("--samples-per-tx", type=int, help="Rays per transmitter.  [default: 1000000]")
@click.option("--max-depth", type=int, help="Interactions per path.  [default: 3]")
@click.option("--diffraction/--no-diffraction", default=None, help="Edge diffraction.  [default: off]")
@click.option("--diffuse/--no-diffuse", "diffuse_reflection", default=None,
              help="Diffuse scattering.  [default: on]")
@click.option("--reflection/--no-reflection", "specular_reflection", default=None,
              help="Specular reflection.  [default: on]")
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
      twin trace --scene out/helsinki --bs-file out/bs.csv --out out/maps.zarr --samples-per-tx 1000000
    """
    from twin.trace import TraceConfig, trace

    if extrapolate_materials:
        flags["materials_out_of_range"] = "extrapolate"
    cfg = _config(TraceConfig, config_file, "trace", flags)
    path = trace(scene_dir, bs_file, out, cfg, metric_config=config_file if not path_gain_only else None,
                 metrics=not path_gain_only, overwrite=overwrite, progress=True)
    from twin.maps import open_maps

    maps = open_maps(path)
    click.echo(f"{path}: {len(maps.cell_ids)} cells on a {maps.grid.height} x {maps.grid.width} grid of "
               f"{maps.grid.cell_size_m:g} m; arrays {', '.join(maps.arrays)}")
    for note in maps.attrs.get("notes", []):
        click.echo(f"note: {note}", err=True)


@click.command("show-map")
@click.argument("maps", type=click.Path(exists=True))
@click.option("--metric", default="path_gain_db", show_default=True, help="Array of the store to draw.")
@click.option("--cell", "cells", type=int, multiple=True, help="Cell id(s) to draw (default all).")
@click.option("--scene", "scene_dir", type=click.Path(file_okay=False),
              help="Scene for the footprints (default: the store's).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder of PNGs.")
@overwrite_option
@clean_errors
def show_map_cmd(maps: str, metric: str, cells: tuple[int, ...], scene_dir: str | None, out: str,
                 overwrite: bool) -> None:
    """Draw a metric map (per cell and best cell) with BS markers over the building footprints.

    \b
    Example:
      twin show-map out/maps.zarr --metric rsrp_dbm --out out/maps-png
    """
    from twin.maps import show_map

    written = show_map(maps, out, metric, list(cells) or None, scene_dir, overwrite=overwrite)
    click.echo(f"{Path(out)}: {len(written)} picture(s)")
