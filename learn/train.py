"""Pretraining and fine-tuning of the posterior model: a plain loop (nanoGPT style).

``pretrain(data, config, out_dir)`` and ``finetune(init, data, config, out_dir)`` stream
batches from one or more corpora (:mod:`learn.data`), optimize Eq. 24 with AdamW under the
warmup-stable-decay schedule, use mixed precision on CUDA, log to ``metrics.csv`` and
TensorBoard, checkpoint (``last.pt``, ``best.pt``) and resume, and run under ``torchrun``
(DDP) with the same command. Everything is seeded: a run resumed from ``last.pt`` sees
the same batches as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import random
import time
from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from learn.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from learn.model import ModelConfig, PosteriorModel
from learn.refine import RefineConfig
from learn.schedule import ScheduleConfig, wsd_lr
from twin.config import dump_yaml, from_dict, load_yaml, to_dict
from twin.errors import InputError, OutputExistsError, collect
from twin.io import atomic_dir

__all__ = ["TrainConfig", "DataOptions", "RunConfig", "TrainResult", "load_run_config", "PRESETS",
           "pretrain", "finetune", "train", "build_model", "EpochSampler", "to_device", "set_threads"]

PRESETS = ("small", "paper", "finetune")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    max_steps: int | None = None      # stop early after this many optimizer steps (tests, benchmarks)
    lr: float = 2e-4
    warmup_frac: float = 0.1
    decay_frac: float = 0.2
    min_lr: float = 0.0
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    batch_size: int = 32
    num_workers: int = 2
    amp: bool = True                  # bf16 autocast on CUDA; ignored on CPU
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0         # also save last.pt every N steps (0: at epoch ends only)
    val_batches: int = 20             # validation batches per epoch (0: no validation)
    split_scheme: str = "random"
    threads: int = 1                  # torch intra-op threads per process on CPU (see set_threads)

    def __post_init__(self) -> None:
        problems = []
        for name in ("epochs", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: {getattr(self, name)} must be >= 1")
        for name in ("num_workers", "checkpoint_every", "val_batches", "weight_decay", "grad_clip", "min_lr"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name}: {getattr(self, name)} must be >= 0")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps: {self.max_steps} must be >= 1 (or null)")
        if not self.lr >= 0:  # 0 is allowed: a run that only evaluates or re-saves a checkpoint
            problems.append(f"lr: {self.lr} must be >= 0")
        for name in ("warmup_frac", "decay_frac"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name}: {getattr(self, name)} is outside [0, 1]")
        if self.warmup_frac + self.decay_frac > 1:
            problems.append(f"warmup_frac + decay_frac: {self.warmup_frac + self.decay_frac} exceeds 1")
        collect(problems, "train config")


@dataclass(frozen=True)
class DataOptions:
    crop_size_m: float = 600.0        # seed 004: 600 m crops
    crop_px: int = 128
    max_cells: int = 8                # K slots of per-cell physics maps per sequence

    def __post_init__(self) -> None:
        problems = []
        if not self.crop_size_m > 0:
            problems.append(f"crop_size_m: {self.crop_size_m} must be > 0")
        if self.crop_px < 1:
            problems.append(f"crop_px: {self.crop_px} must be >= 1")
        if self.max_cells < 0:
            problems.append(f"max_cells: {self.max_cells} must be >= 0")
        collect(problems, "data config")


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataOptions = field(default_factory=DataOptions)
    refine: RefineConfig = field(default_factory=RefineConfig)

    def __post_init__(self) -> None:
        # The model's crop is the data's (build_model): its patches must tile it.
        if self.model.use_map and self.data.crop_px % self.model.patch_size:
            raise InputError(f"data.crop_px: {self.data.crop_px} is not a multiple of model.patch_size "
                             f"{self.model.patch_size} (the map encoder's patches tile the crop)")


@dataclass
class TrainResult:
    out_dir: Path
    checkpoint: Path
    steps: int
    epochs: int
    best_val: float
    samples_per_s: float


def load_run_config(spec: str | os.PathLike, overrides: dict[str, dict[str, Any]] | None = None) -> RunConfig:
    """A preset name (``small``, ``paper``, ``finetune``) or a YAML file, then ``overrides`` per section."""
    text = os.fspath(spec)
    if text in PRESETS:
        path = resources.files("learn.presets").joinpath(f"{text}.yaml")
        with resources.as_file(path) as p:
            cfg = load_yaml(RunConfig, p)
    else:
        cfg = load_yaml(RunConfig, Path(text))
    if overrides:
        data = to_dict(cfg)
        for section, values in overrides.items():
            data[section].update(values)
        cfg = from_dict(RunConfig, data, f"{text} (with overrides)")
    return cfg


class EpochSampler(Sampler[int]):
    """Seeded permutation per epoch, sharded across DDP ranks, starting at ``start`` batches in."""

    def __init__(self, n: int, seed: int, epoch: int, rank: int = 0, world: int = 1, shuffle: bool = True,
                 start: int = 0):
        self.n, self.seed, self.epoch, self.rank, self.world = n, seed, epoch, rank, world
        self.shuffle, self.start = shuffle, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        per_rank = math.ceil(self.n / self.world)
        order = (order + order[: per_rank * self.world - self.n])[self.rank::self.world]
        return order[self.start:]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return max(math.ceil(self.n / self.world) - self.start, 0)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def build_model(cfg: ModelConfig, info: dict[str, Any], data: DataOptions) -> PosteriorModel:
    """The model with the data-dependent sizes of ``info`` (from :func:`learn.data` datasets)."""
    model_cfg = dataclasses.replace(cfg, n_features=int(info["n_features"]), n_cells=int(info["n_cells"]),
                                    map_channels=int(info["map_channels"]), crop_px=int(data.crop_px))
    return PosteriorModel(model_cfg)


def set_threads(threads: int) -> int:
    """Use ``min(threads, cores)`` torch intra-op threads (``threads <= 0``: all cores); return it.

    On a small shared CPU the default (one thread per core) is several times slower than a
    single thread for this model's many small ops (the threads wait for each other while
    other processes hold the cores): measured 5-13x on the 2-core benchmark machine, so the
    presets use 1. Raise it on an idle many-core machine; GPUs are unaffected.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = cores if threads <= 0 else min(int(threads), cores)
    torch.set_num_threads(max(n, 1))
    return torch.get_num_threads()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds libraries that use the global RNG
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 - per-worker global RNG for libraries that use it
    random.seed(seed)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "embedding" not in name and not name.endswith("table") else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _remap_cells(model: PosteriorModel, state: dict[str, torch.Tensor], old_vocab: Sequence, new_vocab: Sequence
                 ) -> int:
    """Copy the cell embeddings of cells present in both vocabularies; return how many.

    Vocabularies are lists of cell keys as :class:`learn.data.CellVocab` keeps them: key
    ``k`` of the list is embedding row ``k + 1`` (row 0 is padding / unknown).
    """
    key = "radio.tokens.cell.weight"
    old = state[key]
    own = model.state_dict()[key].clone()
    where = {str(c): i + 1 for i, c in enumerate(old_vocab)}
    shared = 0
    for j, c in enumerate(new_vocab):
        i = where.get(str(c))
        if i is not None and i < len(old) and j + 1 < len(own):
            own[j + 1] = old[i]
            shared += 1
    model.radio.tokens.cell.weight.data.copy_(own)
    return shared


class _RunLog:
    """Rank 0's ``metrics.csv`` (flushed after every row) and TensorBoard scalars of a run."""

    HEADER = ["step", "epoch", "lr", "loss", "coarse", "fine", "phys", "val_loss", "val_median_m", "samples_per_s"]

    def __init__(self, out: Path, resume: bool):
        new_csv = not (out / "metrics.csv").exists() or not resume
        self._csv = open(out / "metrics.csv", "a" if resume else "w", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._csv)
        if new_csv:
            self._writer.writerow(self.HEADER)
        from torch.utils.tensorboard import SummaryWriter

        self._tb = SummaryWriter(str(out / "tb"))

    def row(self, values: list[Any]) -> None:
        self._writer.writerow(values)
        self._csv.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._tb.add_scalar(tag, value, step)

    def close(self) -> None:
        self._csv.close()
        self._tb.close()


def train(data: Sequence[str | os.PathLike], config: RunConfig, out_dir: str | os.PathLike, *,
          init: str | os.PathLike | None = None, resume: bool = False, overwrite: bool = False,
          progress: bool = True, datasets: tuple[Dataset, Dataset | None, dict[str, Any]] | None = None
          ) -> TrainResult:
    """Train on the corpora ``data`` into ``out_dir`` (``pretrain`` and ``finetune`` delegate here).

    Parameters
    ----------
    data : sequence of corpus URLs
        Zarr corpora; their ``train`` parts (under ``config.train.split_scheme``) are
        concatenated, validation uses their ``val`` parts.
    init : path, optional
        Initial weights (fine-tuning): model sizes and cell embeddings of shared cells come
        from it; the optimizer starts afresh.
    resume : bool
        Continue ``out_dir/last.pt`` (same config) from its step.
    datasets : (train, val, info), optional
        Ready datasets yielding contract batch dicts (tests); ``info`` holds ``n_features``,
        ``n_cells``, ``map_channels``, ``cell_vocab`` and ``data_info``.
    """
    rank, world, device = _distributed()
    out = Path(out_dir)
    last = out / "last.pt"
    if rank == 0 and not resume and not overwrite and out.exists() and any(out.iterdir()):
        raise OutputExistsError(out)
    if resume and not last.is_file():
        raise InputError(f"{out}: nothing to resume (no last.pt); drop --resume to start a new run")
    ckpt_resume = load_checkpoint(last) if resume else None
    ckpt_init = load_checkpoint(init) if init is not None else None
    if ckpt_resume is not None:
        config = from_dict(RunConfig, ckpt_resume["configs"], f"{last} configs")
    elif ckpt_init is not None:
        # The model and its inputs (crop size and pixels, feature order, map channels and
        # their statistics) are the checkpoint's: the weights only mean something on them.
        init_model = from_dict(ModelConfig, ckpt_init["configs"]["model"], f"{init} model config")
        init_data = from_dict(DataOptions, ckpt_init["configs"]["data"], f"{init} data config")
        config = dataclasses.replace(config, model=init_model, data=dataclasses.replace(
            config.data, crop_px=init_data.crop_px, crop_size_m=init_data.crop_size_m))
    # --overwrite of an existing run: the new run is built in a hidden sibling and replaces
    # the old one only when it finishes; an interrupted run leaves the old one whole.
    swap = rank == 0 and overwrite and not resume and out.is_dir() and any(out.iterdir())
    with contextlib.ExitStack() as stack:
        run = stack.enter_context(atomic_dir(out, overwrite=True)) if swap else out
        last = run / "last.pt"
        tc = config.train
        _seed_everything(tc.seed + rank)
        if device.type == "cpu":
            set_threads(tc.threads)

        if datasets is None:
            from learn.data.loader import build_training_data

            init_norm = (ckpt_init.get("data_info") or {}).get("normalization") if ckpt_init is not None else None
            datasets = build_training_data(list(data), config.data, tc.split_scheme, seed=tc.seed,
                                           normalization=init_norm)
        train_set, val_set, info = datasets
        model = build_model(config.model, info, config.data).to(device)
        config = dataclasses.replace(config, model=model.cfg)  # saved with the data-dependent sizes
        vocab = list(info.get("cell_vocab", []))
        if ckpt_init is not None and init is not None:
            load_model_state(model, ckpt_init["model"], init, skip=("radio.tokens.cell.",))
            _remap_cells(model, ckpt_init["model"], ckpt_init.get("cell_vocab", []), vocab)
        opt = torch.optim.AdamW(_param_groups(model, tc.weight_decay), lr=tc.lr, betas=(0.9, 0.95))
        step, start_epoch, best_val = 0, 0, math.inf
        if ckpt_resume is not None:
            load_model_state(model, ckpt_resume["model"], last)
            opt.load_state_dict(ckpt_resume["optimizer"])
            step, start_epoch = int(ckpt_resume["step"]), int(ckpt_resume["epoch"])
            best_val = float(ckpt_resume.get("best_val", math.inf))
        ddp_model = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                               else None) if world > 1 else model)

        if not isinstance(train_set, Sized):
            raise InputError("train: the training dataset has no length (a map-style Dataset with __len__ is needed)")
        per_rank = math.ceil(len(train_set) / world)
        steps_per_epoch = max(per_rank // tc.batch_size, 1)
        # max_steps stops a run early without changing its schedule, so resuming continues it exactly.
        sched = ScheduleConfig(tc.lr, tc.warmup_frac, tc.decay_frac, tc.min_lr, steps_per_epoch * tc.epochs)
        total = sched.total_steps if tc.max_steps is None else min(sched.total_steps, tc.max_steps)
        use_amp = tc.amp and device.type == "cuda"

        log: _RunLog | None = None  # rank 0 only
        if rank == 0:
            run.mkdir(parents=True, exist_ok=True)
            dump_yaml(config, run / "config.yaml")
            log = _RunLog(run, resume)

        def state(epoch: int) -> dict[str, Any]:
            return {"model": model.state_dict(), "optimizer": opt.state_dict(), "configs": to_dict(config),
                    "step": step, "epoch": epoch, "best_val": best_val, "cell_vocab": vocab,
                    "data_info": info.get("data_info", {}), "rng": {"torch": torch.get_rng_state()}}

        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, desc="train", unit="step", disable=not progress or rank != 0)
        t_start, n_seen, t_other = time.perf_counter(), 0, 0.0  # t_other: validation and checkpoints
        epoch = start_epoch
        done = step >= total
        while not done and epoch < tc.epochs:
            skip = step - epoch * steps_per_epoch
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)  # new random crops each epoch (workers are re-created per epoch)
            sampler = EpochSampler(len(train_set), tc.seed, epoch, rank, world, start=max(skip, 0) * tc.batch_size)
            loader = DataLoader(train_set, batch_size=tc.batch_size, sampler=sampler, drop_last=True,
                                num_workers=tc.num_workers, worker_init_fn=_worker_init,
                                pin_memory=device.type == "cuda", persistent_workers=False)
            ddp_model.train()
            for batch in loader:
                batch = to_device(batch, device)
                lr = wsd_lr(step, sched)
                for group in opt.param_groups:
                    group["lr"] = lr
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    out_, loss = ddp_model(batch, batch["target_xy"])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if tc.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                opt.step()
                step += 1
                n_seen += batch["target_xy"].shape[0] * world
                bar.update(1)
                if log is not None and (step % tc.log_every == 0 or step == total):
                    rate = n_seen / max(time.perf_counter() - t_start - t_other, 1e-9)
                    parts = {k: float(v.detach().mean()) for k, v in out_.parts.items()}
                    log.row([step, epoch, lr, loss.item(), parts.get("coarse", ""), parts.get("fine", ""),
                             parts.get("phys", ""), "", "", round(rate, 2)])
                    log.scalar("train/loss", loss.item(), step)
                    log.scalar("train/lr", lr, step)
                    for k, v in parts.items():
                        log.scalar(f"train/{k}", v, step)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
                if rank == 0 and tc.checkpoint_every and step % tc.checkpoint_every == 0:
                    save_checkpoint(last, state(epoch))
                if step >= total:
                    done = True
                    break
            if not done or step % steps_per_epoch == 0:  # a whole epoch was seen
                epoch += 1
            t_pause = time.perf_counter()
            if log is not None:
                val_loss, val_med = (_validate(model, val_set, tc, device, use_amp)
                                     if val_set is not None and tc.val_batches else (math.nan, math.nan))
                if not math.isnan(val_loss):
                    log.scalar("val/loss", val_loss, step)
                    log.scalar("val/median_m", val_med, step)
                    log.row([step, epoch, "", "", "", "", "", val_loss, val_med, ""])
                improved = not math.isnan(val_loss) and val_loss < best_val
                if improved:
                    best_val = val_loss
                save_checkpoint(last, state(epoch))
                if improved or val_set is None or not tc.val_batches:
                    save_checkpoint(run / "best.pt", state(epoch))
            t_other += time.perf_counter() - t_pause
        bar.close()
        rate = n_seen / max(time.perf_counter() - t_start - t_other, 1e-9)
        if log is not None:
            if not (run / "best.pt").exists():
                save_checkpoint(run / "best.pt", state(epoch))
            log.close()
        if world > 1:
            dist.barrier()
        return TrainResult(out, out / "best.pt", step, epoch, best_val, rate)


@torch.no_grad()
def _validate(model: PosteriorModel, val_set: Dataset, tc: TrainConfig, device: torch.device, use_amp: bool
              ) -> tuple[float, float]:
    """Mean loss and median error [m] (posterior mean) over the first ``val_batches`` batches."""
    model.eval()
    loader = DataLoader(val_set, batch_size=tc.batch_size, shuffle=False, num_workers=0)
    losses, errors = [], []
    for k, batch in enumerate(loader):
        if k >= tc.val_batches:
            break
        batch = to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            out, loss = model(batch, batch["target_xy"])
        losses.append(float(loss))
        err = (out.mixture.mean() - batch["target_xy"]).norm(dim=1) * batch["crop_size_m"]
        errors.append(err.float().cpu())
    model.train()
    if not losses:
        return math.nan, math.nan
    return float(np.mean(losses)), float(torch.cat(errors).median())


def pretrain(data: Sequence[str | os.PathLike], config: RunConfig, out_dir: str | os.PathLike, **kw: Any
             ) -> TrainResult:
    """Train from scratch (on synthetic corpora, seed 004's pretraining)."""
    return train(data, config, out_dir, **kw)


def finetune(init: str | os.PathLike, data: Sequence[str | os.PathLike], config: RunConfig,
             out_dir: str | os.PathLike, **kw: Any) -> TrainResult:
    """Continue training the checkpoint ``init`` on other corpora (e.g. real drive tests)."""
    return train(data, config, out_dir, init=init, **kw)
