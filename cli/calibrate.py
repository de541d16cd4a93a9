"""``calibrate``: fit base-station poses to drive tests, check a twin's fidelity, simulate drive tests."""

from __future__ import annotations

from pathlib import Path

import click

from cli.options import clean_errors, overwrite_option

PATH = click.Path(path_type=Path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="radio-twin")
def main() -> None:
    """Calibrate a radio twin's base stations against real drive tests (seed 004 §5).

    \b
    Example:
      calibrate fit --scene out/helsinki --bs-file bs.csv --drive-test dt.csv \\
          --out calibrated.csv --report out/calibration
    """


@main.command("fit")
@click.option("--scene", "scene_dir", type=PATH, required=True, help="Scene directory (twin build-scene).")
@click.option("--bs-file", type=PATH, required=True, help="BS file to calibrate (CSV or GeoJSON).")
@click.option("--drive-test", type=PATH, required=True, help="Drive test (CSV, GeoJSON or Parquet).")
@click.option("--out", type=PATH, required=True, help="Calibrated BS file to write (.csv or .geojson).")
@click.option("--report", "report_dir", type=PATH, required=True, help="Report directory to write.")
@click.option("--calls", type=int, default=90, show_default=True, help="Evaluations per site.")
@click.option("--initial-points", type=int, default=10, show_default=True,
              help="Latin-hypercube evaluations before the GP steers.")
@click.option("--metric", type=click.Choice(["rssi", "rsrp"]), default="rssi", show_default=True)
@click.option("--objective", type=click.Choice(["spearman", "rmse", "huber", "combined"]), default="huber",
              show_default=True, help="What is minimized: absolute levels after a per-site offset (huber, "
              "rmse), -Spearman rho (seed 004), or both (combined). rho is reported whatever it is.")
@click.option("--height-prior", type=float, default=None,
              help="Bound each site's height to the BS file's height ± this many metres.")
@click.option("--refine-calls", type=int, default=None,
              help="Of --calls, evaluations of a second stage in a shrunk box around the best pose.")
@click.option("--recheck-top", type=int, default=None,
              help="Of --calls, best candidates re-evaluated with 3x the rays; the best of them wins.")
@click.option("--profile-steps", type=int, default=None,
              help="Profile evaluations per side and parameter around the result (uncertainty; default 2).")
@click.option("--params", default="x,y,h,azimuth", show_default=True,
              help="Parameters to fit: x,y,h,azimuth[,tilt,power].")
@click.option("--bounds", default="", help="Bounds, e.g. 'x=-30:30,h=25:60,azimuth=-60:60' "
              "(defaults x,y -50:50 m offsets; h 20:100 m; azimuth 0:360; tilt 0:15; power -10:10 dB).")
@click.option("--samples-per-tx", type=int, default=None, help="Rays per evaluation (default 1000000).")
@click.option("--cell-size", type=float, default=None, help="Radio-map cell of the evaluations [m] (default 8).")
@click.option("--sites", default=None, help="Only these bs_id values (comma-separated).")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Dask worker processes (sites in parallel); 1 runs in this process.")
@click.option("--scheduler", default=None, help="Address of a running Dask scheduler.")
@click.option("--cluster", "cluster_kind", type=click.Choice(["local", "slurm", "pbs"]), default=None,
              help="Run the sites on a LocalCluster or in SLURM/PBS batch jobs (--workers jobs) through "
                   "dask-jobqueue, as `twin generate` does; job settings from the config's 'cluster' section.")
@click.option("--config", "config_file", type=PATH, default=None,
              help="YAML whose 'calibrate' section holds CalibrationConfig keys (and 'cluster' the engine's); "
                   "flags override it.")
@click.option("--seed", type=int, default=None, help="Random seed of the optimizer (default 0).")
@click.option("--truth", "truth_file", type=PATH, default=None,
              help="BS file of the true sites (a known-truth check): print each site's position, height and "
                   "azimuth error before and after.")
@overwrite_option
@clean_errors
def fit_cmd(scene_dir, bs_file, drive_test, out, report_dir, calls, initial_points, metric, objective, height_prior,
            refine_calls, recheck_top, profile_steps, params, bounds, samples_per_tx, cell_size, sites, workers,
            scheduler, cluster_kind, config_file, seed, truth_file, overwrite):
    """Fit each base station's pose (x, y, height, azimuth ...) to a drive test by GP Bayesian optimization.

    Per site, scikit-optimize's gp_minimize with expected improvement minimizes the
    objective between simulated and measured values at the site's drive-test points
    (default: a Huber loss after a fitted per-site offset), the other sites held fixed.
    Writes the calibrated BS file (a `calibrated` column added) and a report
    (report.json, report.md, convergence, scatter and profile PNGs; a warning names
    each site and parameter the drive test does not pin down).

    \b
    Example:
      calibrate fit --scene out/helsinki --bs-file bs.csv --drive-test dt.csv \\
          --out calibrated.csv --report out/calibration --calls 90 --workers 2 \\
          --objective huber --height-prior 15
    """
    from dataclasses import replace

    from calibrate.fit import CalibrationConfig, calibrate
    from twin.config import load_yaml, resolve_config
    from twin.generate.cluster import ClusterSpec

    cfg = load_yaml(CalibrationConfig, config_file, section="calibrate") if config_file else CalibrationConfig()
    flags = {"calls": calls, "initial_points": initial_points, "metric": metric, "objective": objective,
             "height_prior_m": height_prior, "refine_calls": refine_calls, "recheck_top": recheck_top,
             "profile_steps": profile_steps, "params": params,
             "bounds": bounds, "samples_per_tx": samples_per_tx, "cell_size_m": cell_size, "seed": seed}
    ctx = click.get_current_context()

    def given(key: str) -> bool:  # with a config file, only flags typed on the command line override it
        source = ctx.get_parameter_source(_flag_name(key))
        return config_file is None or (source is not None and source.name != "DEFAULT")

    cfg = replace(cfg, **{k: v for k, v in flags.items() if v is not None and given(k)})
    cluster = (resolve_config(ClusterSpec, config_file, section="cluster", kind=cluster_kind)
               if cluster_kind or config_file else None)
    result = calibrate(scene_dir, bs_file, drive_test, out, report_dir, cfg, workers=workers,
                       scheduler=scheduler, cluster=cluster, sites=sites.split(",") if sites else None,
                       overwrite=overwrite, progress=True)
    s = result.summary()
    click.echo(f"calibrated {s['fitted']} of {s['sites']} sites in {s['wall_s']:.1f} s "
               f"({s['skipped']} skipped); mean Spearman rho {s['mean_rho_before']} -> {s['mean_rho_after']}")
    for site in result.sites:
        if site.status == "fitted":
            click.echo(f"  {site.bs_id}: rho {site.rho_before:.3f} -> {site.rho_after:.3f}, RMSE "
                       f"{site.rmse_before_db:.2f} -> {site.rmse_after_db:.2f} dB, "
                       + ", ".join(f"{k}={v:.1f}" for k, v in site.after.items())
                       + f" ({len(site.evaluations)} evaluations, {site.wall_s:.1f} s)")
        else:
            click.echo(f"  {site.bs_id}: skipped ({site.reason})")
    dt = result.drive_test.summary()
    click.echo(f"drive test: {dt['rows_kept']} of {dt['rows_read']} rows kept; dropped: {dt['dropped_by_reason'] or 'none'}")
    for site in result.sites:
        for w in site.warnings:
            click.echo(f"warning: {w}")
    if truth_file:
        from calibrate.known_truth import truth_errors
        from twin.radio.sites import read_bs_file
        from twin.scene.build import load_twin_scene

        scene = load_twin_scene(scene_dir)
        errors = truth_errors(read_bs_file(bs_file, scene, on_building=None), result.table,
                              read_bs_file(truth_file, scene, on_building=None))
        for e in errors.itertuples():
            click.echo(f"  {e.bs_id} against {truth_file}: position {e.lateral_m_before:.1f} -> "
                       f"{e.lateral_m_after:.1f} m, height {e.height_m_before:.1f} -> {e.height_m_after:.1f} m, "
                       f"azimuth {e.azimuth_deg_before:.1f} -> {e.azimuth_deg_after:.1f} deg")
    click.echo(f"wrote {result.out} and {result.report_dir}/")


def _flag_name(key: str) -> str:
    return {"cell_size_m": "cell_size", "height_prior_m": "height_prior"}.get(key, key)


@main.command("check")
@click.option("--scene", "scene_dir", type=PATH, required=True, help="Scene directory.")
@click.option("--bs-file", type=PATH, required=True, help="BS file (CSV or GeoJSON).")
@click.option("--drive-test", type=PATH, required=True, help="Drive test (CSV, GeoJSON or Parquet).")
@click.option("--report", "report_dir", type=PATH, required=True, help="Directory to write check.json/md/png.")
@click.option("--metric", type=click.Choice(["rssi", "rsrp"]), default="rssi", show_default=True)
@click.option("--k", type=int, default=5, show_default=True, help="Neighbours of the k-NN.")
@click.option("--test-fraction", type=float, default=0.25, show_default=True, help="Held-out share of locations.")
@click.option("--samples-per-tx", type=int, default=1_000_000, show_default=True, help="Rays per cell.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/test split.")
@overwrite_option
@clean_errors
def check_cmd(scene_dir, bs_file, drive_test, report_dir, metric, k, test_fraction, samples_per_tx, seed,
              overwrite):
    """Fidelity of a BS file against a drive test: Spearman rho per cell and k-NN [R→R], [S→S], [R→S], [S→R].

    \b
    Example:
      calibrate check --scene out/helsinki --bs-file calibrated.csv --drive-test dt.csv --report out/check
    """
    from calibrate.checks import check
    from calibrate.fit import CalibrationConfig

    trace_cfg = CalibrationConfig(samples_per_tx=samples_per_tx).trace_config()
    res = check(scene_dir, bs_file, drive_test, metric=metric, k=k, test_fraction=test_fraction, seed=seed,
                trace_config=trace_cfg, report_dir=report_dir, overwrite=overwrite)
    s = res.summary()
    click.echo(f"{s['locations']} locations, mean Spearman rho {s['mean_rho']}; per site: "
               + ", ".join(f"{b}={v:.3f}" for b, v in res.rho_sites.items()))
    click.echo("k-NN mean error [m], random split: " + ", ".join(f"[{c}] {v['mean']:.1f}" for c, v in res.knn_m.items()))
    if res.knn_street_m:
        click.echo("k-NN mean error [m], street split: "
                   + ", ".join(f"[{c}] {v['mean']:.1f}" for c, v in res.knn_street_m.items()))
    click.echo(f"wrote {report_dir}/")


@main.command("simulate")
@click.option("--scene", "scene_dir", type=PATH, required=True, help="Scene directory.")
@click.option("--bs-file", type=PATH, required=True, help="The true BS file.")
@click.option("--out", type=PATH, required=True, help="Drive test to write (.csv, .geojson or .parquet).")
@click.option("--spacing", type=float, default=10.0, show_default=True, help="Point spacing along roads [m].")
@click.option("--radius", type=float, default=300.0, show_default=True, help="Cells report within this range [m].")
@click.option("--sigma", type=float, default=4.0, show_default=True, help="Measurement noise [dB].")
@click.option("--step", type=float, default=1.0, show_default=True, help="Quantization step [dB].")
@click.option("--max-points", type=int, default=None, help="At most this many points.")
@click.option("--samples-per-tx", type=int, default=1_000_000, show_default=True, help="Rays per cell.")
@click.option("--cell-size", type=float, default=4.0, show_default=True, help="Radio-map cell [m].")
@click.option("--trace-seed", type=int, default=7, show_default=True,
              help="Sionna's ray seed (differ from calibration's 42: no inverse crime).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise.")
@overwrite_option
@clean_errors
def simulate_cmd(scene_dir, bs_file, out, spacing, radius, sigma, step, max_points, samples_per_tx, cell_size,
                 trace_seed, seed, overwrite):
    """Simulate a drive test of a BS file along the scene's roads (noise and quantization as a UE reports).

    \b
    Example:
      calibrate simulate --scene out/helsinki --bs-file truth.csv --out dt.csv --sigma 4
    """
    from calibrate.drive_test import write_drive_test
    from calibrate.simulate import simulate_drive_test
    from twin.io import check_output
    from twin.radio.tracer import TraceConfig

    check_output(out, overwrite, "file")
    rows = simulate_drive_test(scene_dir, bs_file, spacing_m=spacing, radius_m=radius, sigma_db=sigma,
                               step_db=step, max_points=max_points, seed=seed,
                               trace_config=TraceConfig(samples_per_tx=samples_per_tx, cell_size_m=cell_size,
                                                        seed=trace_seed))
    write_drive_test(rows, out, overwrite=overwrite)
    click.echo(f"wrote {out}: {len(rows)} rows, {rows[['lon', 'lat']].drop_duplicates().shape[0]} points, "
               f"{rows['cell_id'].nunique()} cells")


if __name__ == "__main__":
    main()
