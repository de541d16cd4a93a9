"""``learn``: import real drive tests, evaluate baselines and models, train (heatmap baseline, posterior), predict."""

from __future__ import annotations

import json
import os

import click

from cli.options import clean_errors, config_option, overwrite_option

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="radio-twin")
def main() -> None:
    """Localization: import real data, fit and evaluate baselines and models.

    \b
    Example:
      learn import rome-crop ../shared/data/rome_crop/rome_crop_knn_ready.csv --out out/crop.zarr
      learn eval --data out/crop.zarr --split spatial --baseline knn-square
    """


_SPLITS = "learn.importers:SplitConfig"


def _prior_options(func):
    for opt in reversed([
        click.option("--prior", type=click.Choice(["auto", "serving-cell", "coarse", "whole", "truth"]),
                     default="auto", show_default=True,
                     help="Where crop-based methods search: the strongest cell's site, the mode of a coarse "
                          "whole-scene map matching, the whole scene (WkNN, mapmatch), or truth (the seeds' "
                          "protocol, not deployable); auto: coarse where the corpus has per-cell maps, else "
                          "serving-cell."),
        click.option("--reports", type=click.Choice(["last", "all"]), default="last", show_default=True,
                     help="mapmatch: the last report only, or every report tempered by their count."),
        click.option("--pixel-prior", type=click.Choice(["road", "outdoor", "none"]), default="road",
                     show_default=True, help="mapmatch: pixels searched (semantic layers of the scene)."),
    ]):
        func = opt(func)
    return func


def _split_options(func):
    for opt in reversed([
        config_option(_SPLITS, "--seed", type=int, help="Random seed of the splits."),
        config_option(_SPLITS, "--test-frac", type=float, help="Share held out for test."),
        config_option(_SPLITS, "--val-frac", type=float, help="Share held out for validation."),
        config_option(_SPLITS, "--block-m", type=float, help="Side of the spatial split's blocks [m]."),
        config_option(_SPLITS, "--known-test-frac", type=float,
                      help="Spatial split: share of the training blocks' samples tested as known streets."),
        overwrite_option,
    ]):
        func = opt(func)
    return func


def _splits(seed, test_frac, val_frac, block_m, known_test_frac):
    from learn.importers import SplitConfig
    from twin.config import resolve_config

    return resolve_config(SplitConfig, None, None, seed=seed, test_frac=test_frac, val_frac=val_frac, block_m=block_m,
                          known_test_frac=known_test_frac)


def _done(corpus, report) -> None:
    click.echo(report.summary())
    counts = corpus.attrs["counts"]["splits"]
    click.echo(f"wrote {corpus.url}: {len(corpus)} samples, T={corpus.max_events}, "
               f"features {', '.join(corpus.feature_names)}")
    for scheme, parts in counts.items():
        click.echo(f"  split {scheme}: " + ", ".join(f"{k} {v}" for k, v in parts.items()))


@main.group("import")
def import_group() -> None:
    """Turn real drive tests into corpora (with random and spatial splits).

    \b
    Example:
      learn import drive-test drive.csv --bs-file bs.csv --out out/drive.zarr
    """


@import_group.command("drive-test")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--bs-file", required=True, type=click.Path(dir_okay=False), help="The cells' positions (CSV/GeoJSON).")
@click.option("--out", required=True, type=click.Path(), help="Corpus to write (.zarr).")
@click.option("--scene", "scene_dir", type=click.Path(file_okay=False), help="Scene directory: attach its GIS layers.")
@click.option("--maps", type=click.Path(), help="Radio maps (maps.zarr of twin trace) on the scene grid.")
@click.option("--gap-s", type=float, default=10.0, show_default=True, help="A larger time gap starts a new sequence [s].")
@click.option("--window-s", type=float, default=0.0, show_default=True,
              help="Events of the last seconds of the sequence in each sample (0: the point's own).")
@click.option("--max-events", type=int, help="Sequence length T (default: the longest sample).")
@_split_options
@clean_errors
def import_drive_test_cmd(file, bs_file, out, scene_dir, maps, gap_s, window_s, max_events, seed, test_frac,
                          val_frac, block_m, known_test_frac, overwrite):
    """Import a drive test (one row per point and cell: time, lon, lat, cell_id, features).

    \b
    Example:
      learn import drive-test drive.csv --bs-file bs.csv --out out/drive.zarr \\
          --scene out/helsinki --maps out/maps.zarr --window-s 5
    """
    from learn.importers import import_drive_test

    _done(*import_drive_test(file, bs_file, out, scene_dir, maps, gap_s, window_s, max_events,
                             _splits(seed, test_frac, val_frac, block_m, known_test_frac), overwrite))


@import_group.command("rome-nbiot")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(), help="Corpus to write (.zarr).")
@click.option("--operator", "operators", type=int, multiple=True, help="Keep only this MNC (1, 10, 88); repeatable.")
@_split_options
@clean_errors
def import_rome_nbiot_cmd(file, out, operators, seed, test_frac, val_frac, block_m, known_test_frac, overwrite):
    """Import the Rome NB-IoT campaigns (.mat): cells are NPCIs per operator, no maps.

    \b
    Example:
      learn import rome-nbiot ../shared/data/rome_nbiot/Campaign_data_NBIoT_1_2_3_4_5_6.mat \\
          --out out/rome_nbiot_mnc88.zarr --operator 88
    """
    from learn.importers import import_rome_nbiot

    _done(*import_rome_nbiot(file, out, list(operators) or None,
                             _splits(seed, test_frac, val_frac, block_m, known_test_frac), overwrite=overwrite))


@import_group.command("rome-crop")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(), help="Corpus to write (.zarr).")
@_split_options
@clean_errors
def import_rome_crop_cmd(file, out, seed, test_frac, val_frac, block_m, known_test_frac, overwrite):
    """Import the Rome crop with its base stations' positions (seed 004's Dataset A).

    \b
    Example:
      learn import rome-crop ../shared/data/rome_crop/rome_crop_knn_ready.csv --out out/rome_crop.zarr
    """
    from learn.importers import import_rome_crop

    _done(*import_rome_crop(file, out, _splits(seed, test_frac, val_frac, block_m, known_test_frac), overwrite))


@import_group.command("powder")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(), help="Corpus to write (.zarr).")
@_split_options
@clean_errors
def import_powder_cmd(directory, out, seed, test_frac, val_frac, block_m, known_test_frac, overwrite):
    """Import the POWDER set (stationary receivers as cells; published random/grid test splits).

    \b
    Example:
      learn import powder ../shared/data/powder --out out/powder.zarr
    """
    from learn.importers import import_powder

    _done(*import_powder(directory, out, _splits(seed, test_frac, val_frac, block_m, known_test_frac), overwrite))


@main.command("eval")
@click.option("--data", required=True, type=click.Path(), help="The corpus (.zarr).")
@click.option("--split", default="random", show_default=True,
              help="Split scheme: random, spatial (or another of the corpus, e.g. published_grid).")
@click.option("--baseline", type=click.Choice(["wknn", "knn-square", "mapmatch", "prior-only", "wknn-seed004",
                                              "knn-square-seed004"]),
              help="A baseline: wknn/knn-square fitted on the train part (the -seed004 variants with seed 004's "
                   "settings: RSSI only, -25 dB fill, distance / heard-cell count); mapmatch (physics map matching, "
                   "no training); prior-only (the crop centre alone).")
@click.option("--ckpt", type=click.Path(dir_okay=False), help="A checkpoint (heatmap, posterior ...).")
@click.option("--k", type=int, help="Baselines: neighbours (default 3).")
@click.option("--features", help="Baselines: comma-separated feature names (default all).")
@click.option("--fill", help="Baselines: value of cells not heard, or 'min' (default).")
@click.option("--coverage-weight", type=float, help="Baselines: weight of cells not in common (default 10).")
@click.option("--scale", type=click.Choice(["std", "none"]),
              help="Baselines: divide features by the corpus deviations (std, default) or keep their units.")
@click.option("--distance-norm", type=click.Choice(["rms", "count", "none"]),
              help="Baselines: sqrt(sum/(cells*features)) (rms, default), sqrt(sum)/cells (count, seed 004) "
                   "or sqrt(sum), over the cells heard by either fingerprint.")
@click.option("--crop-size-m", type=float, help="knn-square, mapmatch, prior-only: side of the square [m] (default 600).")
@_prior_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), help="Write error CDF and error map PNGs here.")
@clean_errors
def eval_cmd(data, split, baseline, ckpt, k, features, fill, coverage_weight, scale, distance_norm, crop_size_m, prior,
             reports, pixel_prior, as_json, plot_dir):
    """Evaluate a baseline or a checkpoint on a split's test part (known / unknown streets apart).

    \b
    Example:
      learn eval --data out/rome_crop.zarr --split spatial --baseline knn-square --json
      learn eval --data out/rome_crop.zarr --split spatial --baseline wknn-seed004
      learn eval --data out/rome_crop.zarr --split spatial --ckpt out/heatmap/best.pt --plot out/eval
      learn eval --data out/demo/corpus.zarr --split spatial --baseline mapmatch --prior whole

    Every figure names its prior (JSON field "prior"); --prior truth is the seeds' protocol
    (the crop placed around the true position), for comparison with published figures only.
    """
    from learn.evaluate import evaluate_named

    options: dict = {}
    if baseline in ("wknn", "knn-square", "wknn-seed004", "knn-square-seed004"):
        fill_value = None if fill is None else (fill if fill == "min" else float(fill))
        options = {"k": k, "features": features.split(",") if features else None, "fill": fill_value,
                   "coverage_weight": coverage_weight, "scale": scale, "distance_norm": distance_norm}
    if baseline in ("knn-square", "knn-square-seed004", "mapmatch", "prior-only"):
        options["crop_size_m"] = crop_size_m
    if baseline == "mapmatch":
        options |= {"reports": reports, "pixel_prior": pixel_prior}
    result = evaluate_named(data, split, baseline, ckpt, prior=prior, **options)
    if plot_dir:
        from learn.plot import plot_evaluation

        plot_evaluation(result, plot_dir)
    click.echo(json.dumps(result.to_json()) if as_json else result.table())


@main.command("temperature")
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="A posterior checkpoint.")
@click.option("--data", "data", required=True, multiple=True, type=click.Path(),
              help="Corpus (.zarr) whose split part fits the temperature; repeatable.")
@click.option("--split", default="random", show_default=True, help="Split scheme of the corpora.")
@click.option("--part", default="val", show_default=True, help="The part fitted on (not the test part).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The calibrated checkpoint to write (the checkpoint with its temperature).")
@click.option("--objective", type=click.Choice(["coverage", "nll"]), default="coverage", show_default=True,
              help="coverage: 50 / 90 % HDR coverage nearest nominal; nll: the lowest mean NLL.")
@click.option("--max-samples", type=int, default=2000, show_default=True,
              help="At most this many samples per corpus, evenly spaced over the part.")
@click.option("--prior", type=click.Choice(["auto", "serving-cell", "coarse", "truth"]), default="auto",
              show_default=True, help="Crops of the fit, as learn eval places them (auto: truth-free).")
@clean_errors
def temperature_cmd(ckpt, data, split, part, out, objective, max_samples, prior):
    """Fit one temperature of the posterior on a split's val part; write the checkpoint with it.

    learn eval and learn predict apply a checkpoint's temperature to the posterior (weights
    pi^(1/T), spreads T sigma; the MAP point is unchanged).

    \b
    Example:
      learn temperature --ckpt runs/pre/best.pt --data out/demo/corpus.zarr --split spatial --out runs/pre/calibrated.pt
    """
    from learn.temperature import calibrate_temperature

    fit = calibrate_temperature(ckpt, list(data), split, out, part=part, prior=prior, max_samples=max_samples,
                                objective=objective)
    click.echo(f"temperature {fit.temperature:.3g} on {fit.n} {part} samples ({objective}): HDR coverage 50 / 90 % "
               f"{fit.before['coverage50']:.2f} / {fit.before['coverage90']:.2f} -> "
               f"{fit.after['coverage50']:.2f} / {fit.after['coverage90']:.2f}, NLL {fit.before['nll']:.2f} -> "
               f"{fit.after['nll']:.2f} nats/m²; wrote {out}")


@main.command("fit-baseline")
@click.argument("name", type=click.Choice(["heatmap", "mlp-unet"]))
@click.option("--data", required=True, type=click.Path(), help="The corpus (.zarr).")
@click.option("--split", default="random", show_default=True,
              help="Split scheme: trains on its train part, picks the epoch on its val part.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run directory (best.pt, last.pt, metrics.csv, curve.png, tb/, config.yaml).")
@click.option("--config", "config", default="small", show_default=True,
              help="Preset (heatmap small: 64 px, 4 blocks, CPU; full: seed 004's 224 px DINOv2-L/14-sized ViT; "
                   "mlp-unet small: 64 px, 16-128 channels, CPU; full: seed 004's 224 px, 64-1024 channels) "
                   "or a YAML file with model/train/data sections.")
@click.option("--epochs", type=int, help="Override train.epochs.")
@click.option("--max-steps", type=int, help="Stop after this many steps (the schedule is unchanged).")
@click.option("--batch-size", type=int, help="Override train.batch_size.")
@click.option("--lr", type=float, help="Override train.lr (peak of warmup-stable-decay).")
@click.option("--crop-size-m", type=float, help="Override data.crop_size_m (side of the crop [m]).")
@click.option("--init-weights", type=click.Path(dir_okay=False),
              help="A local state dict (or checkpoint) to start from; tensors matching by name and shape.")
@click.option("--num-workers", type=int, help="Override train.num_workers (DataLoader worker processes).")
@click.option("--seed", type=int, help="Override train.seed.")
@click.option("--resume", is_flag=True, help="Continue OUT/last.pt.")
@overwrite_option
@clean_errors
def fit_baseline_cmd(name, data, split, out, config, epochs, max_steps, batch_size, lr, crop_size_m, init_weights,
                     num_workers, seed, resume, overwrite):
    """Train a heatmap baseline: the MapRadioFormer-style ViT (heatmap) or the MLP+UNet (mlp-unet).

    Trains through the same loop as `learn pretrain` (from scratch or local weights); writes
    the run directory OUT with best.pt (kind NAME, judged by `learn eval --ckpt` and used by
    `learn predict --ckpt`) and a training curve curve.png.

    \b
    Example:
      learn fit-baseline heatmap --data out/rome_crop.zarr --split spatial --out out/heatmap --epochs 40
      learn fit-baseline mlp-unet --data out/demo/corpus.zarr --split spatial --out out/unet --max-steps 300
      learn eval --data out/rome_crop.zarr --split spatial --ckpt out/heatmap/best.pt
    """
    from learn.heatmap_train import fit_baseline

    click.echo(fit_baseline(name, data, split, out, config, epochs=epochs, max_steps=max_steps,
                            batch_size=batch_size, lr=lr, init_weights=init_weights, seed=seed,
                            num_workers=num_workers, crop_size_m=crop_size_m, resume=resume, overwrite=overwrite))


def _train_options(func):
    for opt in reversed([
        click.option("--data", "data", multiple=True, required=True, type=click.Path(),
                     help="Corpus (.zarr); repeat for several."),
        click.option("--source-data", "source_data", multiple=True, type=click.Path(),
                     help="Source (synthetic) corpus beside the target --data corpora, repeatable: its train part "
                          "joins training with a domain label (domain-adversarial training with "
                          "--domain-adversarial-lambda > 0); validation stays on --data."),
        click.option("--domain-adversarial-lambda", "domain_lambda", type=float,
                     help="Override train.domain_adversarial_lambda (gradient reversal weight of the domain "
                          "classifier on the radio [CLS] token; 0: off)."),
        click.option("--config", "config", default="small", show_default=True,
                     help="Preset (small, localize, paper, finetune) or a YAML file with model/train/data/refine sections."),
        click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory."),
        click.option("--epochs", type=int, help="Override train.epochs."),
        click.option("--max-steps", type=int, help="Stop after this many steps (the schedule is unchanged)."),
        click.option("--batch-size", type=int, help="Override train.batch_size."),
        click.option("--lr", type=float, help="Override train.lr (peak)."),
        click.option("--num-workers", type=int, help="Override train.num_workers."),
        click.option("--seed", type=int, help="Override train.seed."),
        click.option("--split", "split_scheme", help="Override train.split_scheme: train on its train part, "
                     "validate on its val part (random, spatial)."),
        click.option("--threads", type=int, help="Override train.threads (torch CPU threads per process; 0: all cores)."),
        click.option("--resume", is_flag=True, help="Continue OUT/last.pt."),
        overwrite_option,
    ]):
        func = opt(func)
    return func


def _config(config, epochs, max_steps, batch_size, lr, num_workers, seed, split_scheme=None, threads=None,
            domain_lambda=None):
    from learn.train import load_run_config

    return load_run_config(config, {"train": {
        "epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr, "num_workers": num_workers,
        "seed": seed, "split_scheme": split_scheme, "threads": threads,
        "domain_adversarial_lambda": domain_lambda}})


def _report(result) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return
    click.echo(f"trained {result.steps} steps ({result.epochs} epochs, {result.samples_per_s:.1f} samples/s); "
               f"best validation loss {result.best_val:.3f}")
    click.echo(f"wrote {result.out_dir}: best.pt, last.pt, metrics.csv, tb/, config.yaml")


@main.command("pretrain")
@_train_options
@clean_errors
def pretrain_cmd(data, source_data, domain_lambda, config, out, epochs, max_steps, batch_size, lr, num_workers, seed,
                 split_scheme, threads, resume, overwrite):
    """Train the map-conditioned posterior from scratch (on synthetic corpora).

    Runs under torchrun (DDP) unchanged: torchrun --nproc-per-node 2 -m cli.learn pretrain ...

    \b
    Example:
      learn pretrain --data out/synth.zarr --config small --out runs/pre --epochs 5
    """
    from learn.train import pretrain

    cfg = _config(config, epochs, max_steps, batch_size, lr, num_workers, seed, split_scheme, threads, domain_lambda)
    _report(pretrain(list(data), cfg, out, resume=resume, overwrite=overwrite, source_data=list(source_data)))


@main.command("finetune")
@click.option("--init", "init", required=True, type=click.Path(dir_okay=False), help="Checkpoint to start from.")
@_train_options
@clean_errors
def finetune_cmd(init, data, source_data, domain_lambda, config, out, epochs, max_steps, batch_size, lr, num_workers,
                 seed, split_scheme, threads, resume, overwrite):
    """Fine-tune a checkpoint on other corpora (e.g. real drive tests; seed 004's protocol).

    Model sizes come from the checkpoint; use --config finetune for the linear-decay schedule.
    With --source-data and --domain-adversarial-lambda > 0: domain-adversarial training
    (seed 004 appendix D), a domain classifier on the radio [CLS] token through a gradient
    reversal layer (the "domain" column of metrics.csv).

    \b
    Example:
      learn finetune --init runs/pre/best.pt --data out/rome_crop.zarr --config finetune --out runs/ft
      learn finetune --init runs/pre/best.pt --data out/rome_crop.zarr --source-data out/synth.zarr \\
          --domain-adversarial-lambda 0.1 --config finetune --out runs/ft_da
    """
    from learn.train import finetune

    cfg = _config(config, epochs, max_steps, batch_size, lr, num_workers, seed, split_scheme, threads, domain_lambda)
    _report(finetune(init, list(data), cfg, out, resume=resume, overwrite=overwrite, source_data=list(source_data)))


@main.command("predict")
@click.option("--ckpt", type=click.Path(dir_okay=False),
              help="A checkpoint: posterior, or a heatmap baseline's (heatmap, mlp-unet: point estimates).")
@click.option("--baseline", type=click.Choice(["mapmatch", "prior-only"]),
              help="Instead of a checkpoint: physics map matching, or the prior's crop centre alone.")
@click.option("--data", required=True, type=click.Path(), help="The corpus (.zarr), with or without positions.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="predictions.parquet or .csv.")
@click.option("--split", help="Only this split scheme's PART (default: every sample).")
@click.option("--part", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@_prior_options
@click.option("--crop-size-m", type=float, help="mapmatch, prior-only: side of the square [m] (default 600).")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), help="Write posterior heatmap PNGs here.")
@click.option("--n-plots", type=int, default=8, show_default=True)
@click.option("--refine/--no-refine", default=True, show_default=True, help="MAP refinement (Algorithm 1).")
@overwrite_option
@clean_errors
def predict_cmd(ckpt, baseline, data, out, split, part, prior, reports, pixel_prior, crop_size_m, plot_dir, n_plots,
                refine, overwrite):
    """Localize a corpus: positions (scene x/y and lon/lat), spread, prior, times and source rows.

    Works on corpora without positions (`learn import drive-test` of reports without
    lon/lat); where the truth is known it is only used to add error columns afterwards.

    \b
    Example:
      learn predict --ckpt runs/pre/best.pt --data out/synth.zarr --split random --out pred.parquet --plot plots/
      learn predict --baseline mapmatch --prior whole --data out/unlabeled.zarr --out pred.csv
    """
    from learn.predict import predict
    from learn.refine import RefineConfig

    refine_cfg = None if refine else RefineConfig(steps=0, threshold=0.0)
    options = {"crop_size_m": crop_size_m}
    if baseline == "mapmatch":
        options |= {"reports": reports, "pixel_prior": pixel_prior}
    path, summary = predict(ckpt, data, out, split, part, plot_dir, n_plots, refine_cfg, overwrite, prior=prior,
                            baseline=baseline, baseline_options={k: v for k, v in options.items() if v is not None})
    extra = f", median error {summary['median_m']:.1f} m" if "median_m" in summary else ""
    click.echo(f"wrote {path}: {int(summary['n'])} predictions (prior {summary['prior_label']}){extra}")


@main.group("export")
def export_group() -> None:
    """Write corpus samples in the drive-test format.

    \b
    Example:
      learn export drive-test --data out/demo/corpus.zarr --split spatial --out drive.csv --truth truth.csv
    """


@export_group.command("drive-test")
@click.option("--data", required=True, type=click.Path(), help="The corpus (.zarr).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Drive test to write (.csv), no positions.")
@click.option("--truth", "truth_out", required=True, type=click.Path(dir_okay=False),
              help="The true positions per report time (.csv), kept apart.")
@click.option("--split", help="Only this split scheme's PART (default: every sample).")
@click.option("--part", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--n", "n_samples", type=int, help="At most this many samples (the first of the selection).")
@overwrite_option
@clean_errors
def export_drive_test_cmd(data, out, truth_out, split, part, n_samples, overwrite):
    """Write samples as a drive test without lon/lat (time, cell_id, features) and their truth apart.

    \b
    Example:
      learn export drive-test --data out/demo/corpus.zarr --split spatial --n 200 \\
          --out out/demo/unlabeled.csv --truth out/demo/unlabeled_truth.csv
    """
    import numpy as np

    from learn.importers import export_drive_test
    from twin.corpus.store import open_corpus
    from twin.errors import InputError

    if n_samples is not None and n_samples < 1:
        raise InputError(f"--n: {n_samples} must be at least 1 (an empty drive test is refused)")
    corpus = open_corpus(data)
    idx = np.arange(len(corpus)) if split is None else corpus.split_indices(split, part)
    if n_samples is not None:
        idx = idx[:n_samples]
    path, truth_path, n = export_drive_test(corpus, out, truth_out, idx, overwrite=overwrite)
    click.echo(f"wrote {path}: {n} rows of {len(idx)} samples, no positions; their truth in {truth_path}")


@main.command("show-predictions")
@click.argument("predictions", type=click.Path(dir_okay=False))
@click.option("--truth", required=True, type=click.Path(dir_okay=False), help="CSV with time, x_m, y_m.")
@click.option("--data", required=True, type=click.Path(), help="The corpus predicted (its scene is drawn).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG to write.")
@overwrite_option
@clean_errors
def show_predictions_cmd(predictions, truth, data, out, overwrite):
    """Draw `learn predict`'s positions beside the truth (read only here, after prediction).

    \b
    Example:
      learn show-predictions out/demo/unlabeled_pred.csv --truth out/demo/unlabeled_truth.csv \\
          --data out/demo/unlabeled.zarr --out out/demo/unlabeled_pred.png
    """
    from learn.plot import plot_predictions_vs_truth

    path, stats = plot_predictions_vs_truth(predictions, truth, data, out, overwrite)
    click.echo(f"wrote {path}: {int(stats['n'])} predictions against the truth, median error "
               f"{stats['median_m']:.1f} m, mean {stats['mean_m']:.1f} m")


@main.command("study")
@click.argument("plan", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="The study folder; an existing one of the same plan is resumed (complete stages skipped).")
@click.option("--quiet", is_flag=True, help="No progress bars (the stage log still prints).")
@clean_errors
def study_cmd(plan, out, quiet):
    """Seed 004's study end to end: Datasets A, B, B', C, every training chain, Table 1.

    PLAN (YAML, docs/study.md) names the city, Dataset A (the proxy reality, or your own
    drive test and BS file under `a:`), the synthetic datasets, the calibration, the
    models, the training chains (e.g. "C->B'->A"), the baselines and the priors. Writes
    one folder per stage under --out and Table 1 to OUT/table/ (table.md, table.json,
    errors.png: known vs unknown streets, compute.png: error vs compute).

    \b
    Example:
      learn study scenes/study_plan.yaml --out /tmp/study
    """
    from study.run import run_study

    result = run_study(plan, out, progress=not quiet, log=click.echo)
    rows = [r for r in result["rows"] if r["prior_asked"] == "auto"]
    for r in rows:
        unk = r.get("parts", {}).get("unknown", {})
        kn = r.get("parts", {}).get("known", {})
        name = r["experiment"] if r["kind"] == "model" else "baseline"
        click.echo(f"{name:<14} {r['model']:<12} known {kn.get('rmse_m', float('nan')):8.1f} m   "
                   f"unknown {unk.get('rmse_m', float('nan')):8.1f} m   (prior {r['prior']})")
    click.echo(f"wrote {result['paths']['md']}, {result['paths']['json']}, {result['paths']['errors_png']}")


if __name__ == "__main__":  # python -m cli.learn ..., torchrun -m cli.learn pretrain ...
    main()
