"""``learn pretrain | finetune | predict``: the posterior model's commands, added to the ``learn`` group.

Importing this module registers the commands on :data:`cli.learn.main`.
"""

from __future__ import annotations

import os

import click

from cli.options import clean_errors, overwrite_option

__all__ = ["pretrain_cmd", "finetune_cmd", "predict_cmd", "register"]


def _train_options(func):
    for opt in reversed([
        click.option("--data", "data", multiple=True, required=True, type=click.Path(),
                     help="Corpus (.zarr); repeat for several."),
        click.option("--config", "config", default="small", show_default=True,
                     help="Preset (small, paper, finetune) or a YAML file with model/train/data/refine sections."),
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


def _config(config, epochs, max_steps, batch_size, lr, num_workers, seed, split_scheme=None, threads=None):
    from learn.train import load_run_config

    given = {"epochs": epochs, "max_steps": max_steps, "batch_size": batch_size, "lr": lr,
             "num_workers": num_workers, "seed": seed, "split_scheme": split_scheme, "threads": threads}
    return load_run_config(config, {"train": {k: v for k, v in given.items() if v is not None}})


def _report(result) -> None:
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return
    click.echo(f"trained {result.steps} steps ({result.epochs} epochs, {result.samples_per_s:.1f} samples/s); "
               f"best validation loss {result.best_val:.3f}")
    click.echo(f"wrote {result.out_dir}: best.pt, last.pt, metrics.csv, tb/, config.yaml")


@click.command("pretrain")
@_train_options
@clean_errors
def pretrain_cmd(data, config, out, epochs, max_steps, batch_size, lr, num_workers, seed, split_scheme, threads,
                 resume, overwrite):
    """Train the map-conditioned posterior from scratch (on synthetic corpora).

    Runs under torchrun (DDP) unchanged: torchrun --nproc-per-node 2 -m cli.learn_train pretrain ...

    \b
    Example:
      learn pretrain --data out/synth.zarr --config small --out runs/pre --epochs 5
    """
    from learn.train import pretrain

    cfg = _config(config, epochs, max_steps, batch_size, lr, num_workers, seed, split_scheme, threads)
    _report(pretrain(list(data), cfg, out, resume=resume, overwrite=overwrite))


@click.command("finetune")
@click.option("--init", "init", required=True, type=click.Path(dir_okay=False), help="Checkpoint to start from.")
@_train_options
@clean_errors
def finetune_cmd(init, data, config, out, epochs, max_steps, batch_size, lr, num_workers, seed, split_scheme, threads,
                 resume, overwrite):
    """Fine-tune a checkpoint on other corpora (e.g. real drive tests; seed 004's protocol).

    Model sizes come from the checkpoint; use --config finetune for the linear-decay schedule.

    \b
    Example:
      learn finetune --init runs/pre/best.pt --data out/rome_crop.zarr --config finetune --out runs/ft
    """
    from learn.train import finetune

    cfg = _config(config, epochs, max_steps, batch_size, lr, num_workers, seed, split_scheme, threads)
    _report(finetune(init, list(data), cfg, out, resume=resume, overwrite=overwrite))


@click.command("predict")
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="A posterior checkpoint.")
@click.option("--data", required=True, type=click.Path(), help="The corpus (.zarr).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="predictions.parquet or .csv.")
@click.option("--split", help="Only this split scheme's PART (default: every sample).")
@click.option("--part", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), help="Write posterior heatmap PNGs here.")
@click.option("--n-plots", type=int, default=8, show_default=True)
@click.option("--refine/--no-refine", default=True, show_default=True, help="MAP refinement (Algorithm 1).")
@overwrite_option
@clean_errors
def predict_cmd(ckpt, data, out, split, part, plot_dir, n_plots, refine, overwrite):
    """Predict positions, uncertainties and refined positions for a corpus.

    \b
    Example:
      learn predict --ckpt runs/pre/best.pt --data out/synth.zarr --split random --out pred.parquet --plot plots/
    """
    from learn.predict import predict
    from learn.refine import RefineConfig

    refine_cfg = None if refine else RefineConfig(steps=0, threshold=0.0)
    path, summary = predict(ckpt, data, out, split, part, plot_dir, n_plots, refine_cfg, overwrite)
    extra = f", median error {summary['median_m']:.1f} m" if "median_m" in summary else ""
    click.echo(f"wrote {path}: {int(summary['n'])} predictions{extra}")


def register(group: click.Group) -> None:
    for cmd in (pretrain_cmd, finetune_cmd, predict_cmd):
        group.add_command(cmd)


from cli.learn import main as _learn_main  # noqa: E402

register(_learn_main)

if __name__ == "__main__":  # torchrun -m cli.learn_train pretrain ...
    _learn_main()
