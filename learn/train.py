"""The one training loop of every model (nanoGPT style): :func:`fit`.

:func:`fit` trains any module with ``forward(batch, targets) -> (output, loss)`` (``output``
has ``xy``, the point estimate ``(B, 2)`` in crop coordinates, and ``parts``, per-sample
loss terms) on map-style datasets of contract batch dicts: AdamW under the
warmup-stable-decay schedule (:mod:`learn.schedule`), mixed precision on CUDA, gradient
clipping, ``metrics.csv`` and TensorBoard, validation per epoch, checkpoints (``last.pt``,
``best.pt``: :mod:`learn.checkpoint`) and resume, a training curve (``curve.png``), and
``torchrun`` (DDP) with the same command. Everything is seeded: a run resumed from
``last.pt`` sees the same batches as an uninterrupted one.

``pretrain(data, config, out_dir)`` and ``finetune(init, data, config, out_dir)`` train the
posterior model (Eq. 24) through it; :func:`learn.heatmap_train.fit_heatmap` the heatmap
baseline.
"""

from __future__ import annotations

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
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from learn.checkpoint import KIND, load_checkpoint, load_model_state, save_checkpoint
from learn.data.dataset import DataConfig
from learn.model import ModelConfig, PosteriorModel
from learn.refine import RefineConfig
from learn.schedule import ScheduleConfig, wsd_lr, wsd_lr_at
from twin.config import dump_yaml, from_dict, resolve_config, to_dict
from twin.errors import InputError, OutputExistsError, collect
from twin.io import atomic_dir, check_ours, output_lock

__all__ = ["TrainConfig", "RunConfig", "TrainResult", "load_run_config", "PRESETS", "fit", "prepare_run",
           "pretrain", "finetune", "train", "build_model", "EpochSampler", "to_device", "set_threads"]

PRESETS = ("small", "localize", "paper", "finetune")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: one config for every model of :func:`fit` (posterior, heatmap).

    Each default carries its reason (nanoGPT style). The presets (``learn/presets/*.yaml``,
    :data:`learn.heatmap_train.PRESETS`) override some of them per model.
    """

    # Seed 004 Sec. 6.3 trains 30 epochs; max_steps stops a run early (tests, benchmarks, the demo)
    # without changing the schedule, so a resumed run continues the same curve.
    epochs: int = 30
    max_steps: int | None = None
    # The run's length in optimizer steps instead of epochs (null: epochs x steps per epoch): the
    # schedule spans exactly these steps and reaches min_lr at the last, over as many epochs as
    # they need (the last one partial). A compute budget in steps, without cutting the decay short
    # as max_steps does (a budget in minutes: total_minutes).
    total_steps: int | None = None
    # The run's length in training minutes instead (the steps and the data loading; validation and
    # checkpoint writes excluded): the schedule follows the fraction of the budget spent and the run
    # stops when it is spent. A compute budget on a machine whose speed varies (a shared CPU); the
    # number of steps then depends on that speed (one process only: not under torchrun).
    total_minutes: float | None = None
    # Warmup-stable-decay (learn.schedule): seed 004's peak 2e-4, warm-up over the first 10 % of
    # the steps (Adam's moments settle before full steps), a linear decay over the last 20 % down
    # to min_lr = 0 (seed 004 decays to 0; the last step's rate is min_lr).
    lr: float = 2e-4
    warmup_frac: float = 0.1
    decay_frac: float = 0.2
    min_lr: float = 0.0
    # AdamW as in nanoGPT: decoupled decay 0.05 on matrices only (not biases, norms, embedding
    # tables), beta2 = 0.95 (faster-moving second moment, steadier for Transformers with small
    # batches); clip the global gradient norm at 1 (early large-gradient steps of attention).
    weight_decay: float = 0.05
    beta2: float = 0.95
    grad_clip: float = 1.0
    # Seed 004's batch of ~32 sequences: fits a CPU and is large enough for the coarse softmax.
    batch_size: int = 32
    # DataLoader workers: 2 keep the crops' resampling off the training thread on a 2-core CPU.
    num_workers: int = 2
    amp: bool = True                  # bf16 autocast on CUDA (no loss scaling needed); ignored on CPU
    seed: int = 0
    log_every: int = 10               # metrics.csv / TensorBoard row every N steps: cheap, smooth enough
    checkpoint_every: int = 0         # also save last.pt every N steps (0: at epoch ends only)
    # Snapshots of one run (a learning curve without one run per budget): save snapshot_<m>min.pt
    # at the first step after which m minutes of training have passed (the optimizer steps and
    # the data loading; validation and checkpoint writes excluded, as the steps/s of a budget
    # are measured), and snapshot_step<n>.pt after step n. Full checkpoints (learn eval, predict,
    # resume). The schedule is the run's: a snapshot before the decay has not been annealed.
    snapshot_minutes: tuple[float, ...] = ()
    snapshot_steps: tuple[int, ...] = ()
    # Validation: the first 20 batches of the val part per epoch bound its cost on large corpora
    # (0: no validation; null: the whole val part, as the small real sets of the heatmap baseline use).
    val_batches: int | None = 20
    # best.pt keeps the epoch with the lowest val_loss (the training objective: comparable across
    # runs) or val_mean_m (the localization error [m] of the point estimate, the heatmap's choice:
    # its BCE is a poor proxy of the argmax's error).
    select_on: Literal["val_loss", "val_mean_m"] = "val_loss"
    # Where the val part's crops lie: "truth" (the seeds' truth-centred crops,
    # learn.data.crops.eval_crop_origins) or "train_crops" (placed by data.train_crops' truth-free
    # prior, as a deployed model's are, truths outside their crop included: val_mean_m is then the
    # error under that prior; with train_crops random the same as truth). The posterior only, not
    # with source corpora. Measured on the Rome crop in docs/benchmarks.md (§ Rome crop: a learning curve).
    val_crops: Literal["truth", "train_crops"] = "truth"
    split_scheme: str = "random"      # train on its train part, validate on its val part
    threads: int = 1                  # torch intra-op threads per process on CPU (see set_threads)
    # Domain-adversarial training of the posterior (learn.domain, seed 004 appendix D): the weight of
    # the gradient reversal on the radio [CLS] token; needs source corpora (--source-data). 0: off,
    # the seed's plain fine-tuning (its Table 4 finds the adversary helps sim-to-real, not cross-city).
    domain_adversarial_lambda: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("epochs", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: {getattr(self, name)} must be >= 1")
        for name in ("num_workers", "checkpoint_every", "weight_decay", "grad_clip", "min_lr",
                     "domain_adversarial_lambda"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name}: {getattr(self, name)} must be >= 0")
        if self.val_batches is not None and self.val_batches < 0:
            problems.append(f"val_batches: {self.val_batches} must be >= 0 (or null: the whole val part)")
        if any(not m > 0 for m in self.snapshot_minutes):
            problems.append(f"snapshot_minutes: {list(self.snapshot_minutes)} must all be > 0")
        if any(n < 1 for n in self.snapshot_steps):
            problems.append(f"snapshot_steps: {list(self.snapshot_steps)} must all be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps: {self.max_steps} must be >= 1 (or null)")
        if self.total_steps is not None and self.total_steps < 1:
            problems.append(f"total_steps: {self.total_steps} must be >= 1 (or null: epochs)")
        if self.total_minutes is not None and not self.total_minutes > 0:
            problems.append(f"total_minutes: {self.total_minutes} must be > 0 (or null)")
        if self.total_minutes is not None and self.total_steps is not None:
            problems.append("total_minutes and total_steps: give one run length, not both")
        if not self.lr >= 0:  # 0 is allowed: a run that only evaluates or re-saves a checkpoint
            problems.append(f"lr: {self.lr} must be >= 0")
        if not 0 <= self.beta2 < 1:
            problems.append(f"beta2: {self.beta2} is outside [0, 1)")
        if self.select_on not in ("val_loss", "val_mean_m"):
            problems.append(f"select_on: {self.select_on!r} must be 'val_loss' or 'val_mean_m'")
        if self.val_crops not in ("truth", "train_crops"):
            problems.append(f"val_crops: {self.val_crops!r} must be 'truth' or 'train_crops'")
        for name in ("warmup_frac", "decay_frac"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name}: {getattr(self, name)} is outside [0, 1]")
        if self.warmup_frac + self.decay_frac > 1:
            problems.append(f"warmup_frac + decay_frac: {self.warmup_frac + self.decay_frac} exceeds 1")
        collect(problems, "train config")


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)

    def __post_init__(self) -> None:
        # The model's crop is the data's (build_model): its patches must tile it.
        if self.data.likelihood and not self.model.use_map:
            raise InputError("data.likelihood: the likelihood channels feed the map encoder; model.use_map is false")
        if self.model.coarse_prior == "likelihood" and not self.data.likelihood:
            raise InputError("model.coarse_prior: 'likelihood' reads map matching's log-likelihood of the crop; "
                             "set data.likelihood: true")
        if self.model.coarse_prior == "likelihood" and self.data.crop_px % self.model.grid_size:
            raise InputError(f"data.crop_px: {self.data.crop_px} is not a multiple of model.grid_size "
                             f"{self.model.grid_size} (the likelihood prior pools the crop's pixels per coarse cell)")
        if self.model.use_map and self.data.crop_px % self.model.patch_size:
            raise InputError(f"data.crop_px: {self.data.crop_px} is not a multiple of model.patch_size "
                             f"{self.model.patch_size} (the map encoder's patches tile the crop)")


@dataclass
class TrainResult:
    out_dir: Path
    checkpoint: Path
    steps: int
    epochs: int
    best_val: float                   # the select_on metric of best.pt (inf without validation)
    samples_per_s: float
    best_epoch: int = 0               # epochs finished when best.pt was written
    history: dict[str, list[float]] = field(default_factory=dict)  # per epoch (see learn.checkpoint)
    # One entry per snapshot written (TrainConfig.snapshot_minutes / snapshot_steps), in step order:
    # {"file": name in out_dir, "step", "epoch", "train_s" (training seconds at it), "at": "2min" / "step100"}
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    train_s: float = 0.0              # training seconds of the whole run (validation, checkpoints excluded)


def load_run_config(spec: str | os.PathLike, overrides: dict[str, dict[str, Any]] | None = None) -> RunConfig:
    """A preset name (``small``, ``localize``, ``paper``, ``finetune``) or a YAML file, then ``overrides`` per section.

    Goes through :func:`twin.config.resolve_config` (the one config path of the CLIs).
    """
    text = os.fspath(spec)
    if text in PRESETS:
        path = resources.files("learn.presets").joinpath(f"{text}.yaml")
        with resources.as_file(path) as p:
            return resolve_config(RunConfig, p, None, **(overrides or {}))
    return resolve_config(RunConfig, Path(text), None, **(overrides or {}))


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


def build_model(cfg: ModelConfig, info: dict[str, Any], data: DataConfig) -> PosteriorModel:
    """The model with the data-dependent sizes of ``info`` (from :func:`learn.data` datasets)."""
    from learn.data.likelihood import LIKELIHOOD_CHANNELS

    model_cfg = dataclasses.replace(cfg, n_features=int(info["n_features"]), n_cells=int(info["n_cells"]),
                                    map_channels=int(info["map_channels"]), crop_px=int(data.crop_px),
                                    likelihood_channels=len(LIKELIHOOD_CHANNELS) if data.likelihood else 0)
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

    def __init__(self, out: Path, resume: bool, parts: Sequence[str]):
        self.parts = list(parts)
        self.header = ["step", "epoch", "lr", "loss", *self.parts, "val_loss", "val_mean_m", "val_median_m",
                       "samples_per_s"]
        new_csv = not (out / "metrics.csv").exists() or not resume
        self._csv = open(out / "metrics.csv", "a" if resume else "w", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._csv)
        if new_csv:
            self._writer.writerow(self.header)
        from torch.utils.tensorboard import SummaryWriter

        self._tb = SummaryWriter(str(out / "tb"))

    def row(self, **values: Any) -> None:
        self._writer.writerow([values.get(k, "") for k in self.header])
        self._csv.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._tb.add_scalar(tag, value, step)

    def close(self) -> None:
        self._csv.close()
        self._tb.close()


def prepare_run(out_dir: str | os.PathLike, tc: TrainConfig, resume: bool, overwrite: bool, kind: str
                ) -> tuple[int, int, torch.device, dict[str, Any] | None]:
    """Rank, world size, device and the ``last.pt`` (of ``kind``) to resume, or None; refuses a used run directory.

    Call before building the model: it seeds every library with ``tc.seed + rank``, so the
    initial weights are the seed's.
    """
    rank, world, device = _distributed()
    out = Path(out_dir)
    last = out / "last.pt"
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: a file; the run's output is a directory (best.pt, last.pt, metrics.csv ...)")
    if rank == 0 and not resume and not overwrite and out.exists() and any(out.iterdir()):
        raise OutputExistsError(out)
    if rank == 0 and overwrite and not resume:
        check_ours(out, "run")  # --overwrite replaces a training run, not any folder
    if resume and not last.is_file():
        raise InputError(f"{out}: nothing to resume (no last.pt); drop --resume to start a new run")
    _seed_everything(tc.seed + rank)
    if device.type == "cpu":
        set_threads(tc.threads)
    return rank, world, device, (load_checkpoint(last, kind=kind) if resume else None)


def train(data: Sequence[str | os.PathLike], config: RunConfig, out_dir: str | os.PathLike, *,
          init: str | os.PathLike | None = None, resume: bool = False, overwrite: bool = False,
          progress: bool = True, datasets: tuple[Dataset, Dataset | None, dict[str, Any]] | None = None,
          source_data: Sequence[str | os.PathLike] = ()) -> TrainResult:
    """Train the posterior model on the corpora ``data`` into ``out_dir`` (``pretrain``, ``finetune``).

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
    source_data : sequence of corpus URLs
        Source (synthetic) corpora beside the target ones ``data`` (:mod:`learn.domain`): their
        train parts join the training set with domain labels; validation stays on ``data``.
        With ``train.domain_adversarial_lambda`` > 0 a domain classifier on the radio [CLS]
        token trains through a gradient reversal layer (the ``domain`` loss term).
    """
    out = Path(out_dir)
    if resume and (out / "last.pt").is_file():  # the run's own config, before seeding with it
        config = from_dict(RunConfig, load_checkpoint(out / "last.pt")["configs"], f"{out / 'last.pt'} configs")
    ckpt_init = load_checkpoint(init) if init is not None and not resume else None
    if ckpt_init is not None:
        # The model and its inputs (crop size and pixels, feature order, map channels and
        # their statistics) are the checkpoint's: the weights only mean something on them.
        init_model = from_dict(ModelConfig, ckpt_init["configs"]["model"], f"{init} model config")
        init_data = from_dict(DataConfig, ckpt_init["configs"]["data"], f"{init} data config")
        config = dataclasses.replace(config, model=init_model, data=dataclasses.replace(
            config.data, crop_px=init_data.crop_px, crop_size_m=init_data.crop_size_m,
            likelihood=init_data.likelihood))
    tc = config.train
    if datasets is None and ckpt_init is None and not resume and config.data.likelihood:
        _check_likelihood_inputs([*data, *source_data])
    rank, world, device, ckpt_resume = prepare_run(out, tc, resume, overwrite, KIND)

    if datasets is None:
        from learn.data.loader import build_training_data

        source = ckpt_resume if ckpt_resume is not None else ckpt_init  # inputs as the weights saw them
        init_norm = (source.get("data_info") or {}).get("normalization") if source is not None else None
        physics_maps = config.model.lambda_phys > 0  # only the physics loss reads them in training
        if source_data or tc.domain_adversarial_lambda:
            from learn.domain import domain_training_data

            if tc.val_crops != "truth":
                raise InputError(f"train.val_crops: {tc.val_crops!r} is for training on the target corpora alone; "
                                 "with source corpora (domain training) validation keeps the truth-centred crops")

            datasets = domain_training_data(list(data), list(source_data), config.data, tc.split_scheme,
                                            seed=tc.seed, normalization=init_norm, physics_maps=physics_maps)
        else:
            datasets = build_training_data(list(data), config.data, tc.split_scheme, seed=tc.seed,
                                           normalization=init_norm, physics_maps=physics_maps, val_crops=tc.val_crops)
    train_set, val_set, info = datasets
    model = build_model(config.model, info, config.data).to(device)
    config = dataclasses.replace(config, model=model.cfg)  # saved with the data-dependent sizes
    vocab = list(info.get("cell_vocab", []))
    if ckpt_init is not None and init is not None:
        load_model_state(model, ckpt_init["model"], init, skip=("radio.tokens.cell.",))
        _remap_cells(model, ckpt_init["model"], ckpt_init.get("cell_vocab", []), vocab)
    net: torch.nn.Module = model
    if tc.domain_adversarial_lambda:
        from learn.domain import domain_adversarial

        net = domain_adversarial(model, tc.domain_adversarial_lambda).to(device)
    return fit(net, train_set, val_set, config, out, kind=KIND, info=info, resume_ckpt=ckpt_resume,
               progress=progress, device=device, overwrite=overwrite)


def _check_likelihood_inputs(urls: Sequence[str | os.PathLike]) -> None:
    """A model trained from scratch with ``data.likelihood`` needs per-cell radio maps in every corpus.

    Without them its likelihood channels and prior would be empty (zeros, uniform): refuse,
    naming the corpus. (Fine-tuning a likelihood checkpoint on such a corpus is allowed: the
    checkpoint's model is kept and its likelihood inputs are empty there.)
    """
    from learn.data.scenes import has_cell_maps
    from twin.corpus.store import open_corpus

    bare = [os.fspath(u) for u in urls if not has_cell_maps(open_corpus(u))]
    if bare:
        raise InputError(f"data.likelihood: {', '.join(bare)} holds no per-cell radio maps, so the likelihood "
                         "channels and the likelihood prior would be empty; train with data.likelihood: false, "
                         "model.coarse_prior: none, model.fine_anchor: centre (or --config small)")


def fit(model: torch.nn.Module, train_set: Dataset, val_set: Dataset | None, config: Any, out_dir: str | os.PathLike,
        *, kind: str, info: dict[str, Any], resume_ckpt: dict[str, Any] | None = None, progress: bool = True,
        device: torch.device | None = None, desc: str = "train", overwrite: bool = False,
        _title: str | None = None, _locked: bool = False) -> TrainResult:
    """Train ``model`` (``forward(batch, targets) -> (output, loss)``) into the run directory ``out_dir``.

    ``config`` is the run's config dataclass: its ``train`` field is the :class:`TrainConfig`;
    the whole of it goes to ``config.yaml`` and the checkpoints' ``configs``. ``kind`` names
    the checkpoints (:mod:`learn.registry`); ``info`` gives their ``cell_vocab`` and
    ``data_info``. ``resume_ckpt`` (``last.pt`` of this run) restores the weights, the
    optimizer, the step and the history. The caller builds the model after
    :func:`prepare_run` (seeds, threads, resume file). Writes ``config.yaml``,
    ``metrics.csv``, ``tb/``, ``last.pt``, ``best.pt`` and ``curve.png``.

    ``overwrite`` of a used run directory (not resuming) builds the new run in a hidden
    sibling that replaces the old one only when training finishes: an interrupted run
    leaves the old one whole. Rank 0 holds :func:`twin.io.output_lock` on ``out_dir`` while
    it trains: a second run into the same directory fails at once, naming it.
    """
    tc: TrainConfig = config.train
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    device = device or next(model.parameters()).device
    out = Path(out_dir)
    if rank == 0 and overwrite and resume_ckpt is None and out.is_dir() and any(out.iterdir()):
        with atomic_dir(out, overwrite=True, kind="run") as run:
            res = fit(model, train_set, val_set, config, run, kind=kind, info=info, progress=progress,
                      device=device, desc=desc, _title=f"{kind} on {out.name}", _locked=True)
        return dataclasses.replace(res, out_dir=out, checkpoint=out / res.checkpoint.name)
    if rank == 0 and not _locked:  # one writer per run directory: a second one fails naming it
        with output_lock(out):
            return fit(model, train_set, val_set, config, out, kind=kind, info=info, resume_ckpt=resume_ckpt,
                       progress=progress, device=device, desc=desc, _title=_title, _locked=True)
    last = out / "last.pt"
    model = model.to(device)
    vocab = list(info.get("cell_vocab", []))
    opt = torch.optim.AdamW(_param_groups(model, tc.weight_decay), lr=tc.lr, betas=(0.9, tc.beta2))
    step, start_epoch, best_val, best_epoch = 0, 0, math.inf, 0
    history: dict[str, list[float]] = {k: [] for k in ("epoch", "train_loss", "val_loss", "val_mean_m",
                                                       "val_median_m")}
    if resume_ckpt is not None:
        load_model_state(model, resume_ckpt["model"], last)
        opt.load_state_dict(resume_ckpt["optimizer"])
        step, start_epoch = int(resume_ckpt["step"]), int(resume_ckpt["epoch"])
        best_val = float(resume_ckpt.get("best_val", math.inf))
        best_epoch = int(resume_ckpt.get("best_epoch", 0))
        saved = resume_ckpt.get("history", {})
        # A run stopped inside an epoch (max_steps) recorded that partial epoch under the number of
        # whole epochs again: keep each epoch's first entry, as the uninterrupted run has it.
        keep = [i for i, e in enumerate(saved.get("epoch", [])) if e not in saved["epoch"][:i]]
        history = {k: [saved[k][i] for i in keep if i < len(saved.get(k, []))] for k in history}
    train_s0 = float(resume_ckpt.get("train_s", 0.0)) if resume_ckpt is not None else 0.0
    snapshots: list[dict[str, Any]] = list(resume_ckpt.get("snapshots", [])) if resume_ckpt is not None else []
    taken = {s["at"] for s in snapshots}
    due_steps = sorted(n for n in set(tc.snapshot_steps) if f"step{n}" not in taken and n > step)
    due_minutes = sorted(m for m in set(tc.snapshot_minutes) if f"{m:g}min" not in taken)
    ddp_model = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                           else None) if world > 1 else model)

    if not isinstance(train_set, Sized):
        raise InputError("train: the training dataset has no length (a map-style Dataset with __len__ is needed)")
    if len(train_set) == 0:
        raise InputError("train: the training dataset is empty")
    per_rank = math.ceil(len(train_set) / world)
    batch_size = min(tc.batch_size, per_rank)  # a set smaller than one batch still trains
    steps_per_epoch = max(per_rank // batch_size, 1)
    # max_steps stops a run early without changing its schedule, so resuming continues it exactly.
    n_epochs = tc.epochs if tc.total_steps is None else math.ceil(tc.total_steps / steps_per_epoch)
    sched = ScheduleConfig(tc.lr, tc.warmup_frac, tc.decay_frac, tc.min_lr,
                           steps_per_epoch * tc.epochs if tc.total_steps is None else tc.total_steps)
    total = sched.total_steps if tc.max_steps is None else min(sched.total_steps, tc.max_steps)
    budget_s = None if tc.total_minutes is None else tc.total_minutes * 60.0
    if budget_s is not None:  # a time budget: as many epochs and steps as it buys (max_steps still caps)
        if world > 1:
            raise InputError("train.total_minutes: a time budget is per process; under torchrun use total_steps")
        n_epochs = 2**62
        total = tc.max_steps if tc.max_steps is not None else 2**62
    use_amp = tc.amp and device.type == "cuda"
    has_val = val_set is not None and isinstance(val_set, Sized) and len(val_set) > 0 and tc.val_batches != 0

    log: _RunLog | None = None  # rank 0 only
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        dump_yaml(config, out / "config.yaml")
        log = _RunLog(out, resume_ckpt is not None, getattr(model, "LOSS_PARTS", ()))

    def state(epoch: int, train_s: float | None = None) -> dict[str, Any]:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "configs": to_dict(config),
                "step": step, "epoch": epoch, "best_val": best_val, "best_epoch": best_epoch, "history": history,
                "cell_vocab": vocab, "data_info": info.get("data_info", {}), "rng": {"torch": torch.get_rng_state()},
                "train_s": train_seconds() if train_s is None else train_s, "snapshots": list(snapshots)}

    def train_seconds() -> float:  # the run's training time so far: steps and loading, not the pauses
        return train_s0 + time.perf_counter() - t_start - t_other

    from tqdm.auto import tqdm

    bar = tqdm(total=total if budget_s is None else None, initial=step, desc=desc, unit="step",
               disable=not progress or rank != 0)
    t_start, n_seen, t_other = time.perf_counter(), 0, 0.0  # t_other: validation and checkpoints
    epoch = start_epoch
    done = step >= total or (budget_s is not None and train_s0 >= budget_s)
    while not done and epoch < n_epochs:
        skip = step - epoch * steps_per_epoch
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)  # new random crops each epoch (workers are re-created per epoch)
        sampler = EpochSampler(len(train_set), tc.seed, epoch, rank, world, start=max(skip, 0) * batch_size)
        loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=True,
                            num_workers=tc.num_workers, worker_init_fn=_worker_init,
                            pin_memory=device.type == "cuda", persistent_workers=False)
        ddp_model.train()
        losses: list[float] = []
        for batch in loader:
            batch = to_device(batch, device)
            lr = wsd_lr(step, sched) if budget_s is None else wsd_lr_at(train_seconds() / budget_s, sched)
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
            losses.append(loss.item())
            finished = step >= total or (budget_s is not None and train_seconds() >= budget_s)
            n_seen += batch["target_xy"].shape[0] * world
            bar.update(1)
            if log is not None and (step % tc.log_every == 0 or finished):
                rate = n_seen / max(time.perf_counter() - t_start - t_other, 1e-9)
                parts = {k: float(v.detach().float().mean()) for k, v in out_.parts.items()}
                log.row(step=step, epoch=epoch, lr=lr, loss=losses[-1], samples_per_s=round(rate, 2), **parts)
                log.scalar("train/loss", losses[-1], step)
                log.scalar("train/lr", lr, step)
                for k, v in parts.items():
                    log.scalar(f"train/{k}", v, step)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if rank == 0 and (due_steps or due_minutes):
                now_s = train_seconds()
                due = ([f"step{n}" for n in due_steps if step >= n]
                       + [f"{m:g}min" for m in due_minutes if now_s >= m * 60.0])
                if due:
                    t_pause = time.perf_counter()
                    due_steps = [n for n in due_steps if step < n]
                    due_minutes = [m for m in due_minutes if now_s < m * 60.0]
                    for at in due:
                        snapshots.append({"file": f"snapshot_{at}.pt", "at": at, "step": step, "epoch": epoch,
                                          "train_s": now_s})
                        save_checkpoint(out / f"snapshot_{at}.pt", state(epoch, now_s), kind)
                    t_other += time.perf_counter() - t_pause
            if rank == 0 and tc.checkpoint_every and step % tc.checkpoint_every == 0:
                save_checkpoint(last, state(epoch), kind)
            if finished:
                done = True
                break
        if not done or step % steps_per_epoch == 0:  # a whole epoch was seen
            epoch += 1
        t_pause = time.perf_counter()
        if log is not None:
            val = (_validate(model, val_set, tc, device, use_amp) if has_val and val_set is not None
                   else {"val_loss": math.nan, "val_mean_m": math.nan, "val_median_m": math.nan})
            history["epoch"].append(float(epoch))
            history["train_loss"].append(float(np.mean(losses)) if losses else math.nan)
            for k, v in val.items():
                history[k].append(v)
            if not math.isnan(val["val_loss"]):
                for k, v in val.items():
                    log.scalar(f"val/{k[4:]}", v, step)
                log.row(step=step, epoch=epoch, **val)
            score = val[tc.select_on]
            improved = not math.isnan(score) and score < best_val
            if improved:
                best_val, best_epoch = score, epoch
            if improved or not has_val:
                best_epoch = best_epoch if has_val else epoch
                save_checkpoint(out / "best.pt", state(epoch), kind)
            save_checkpoint(last, state(epoch), kind)
        t_other += time.perf_counter() - t_pause
    bar.close()
    rate = n_seen / max(time.perf_counter() - t_start - t_other, 1e-9)
    run_s = train_seconds()
    if log is not None:
        if not (out / "best.pt").exists():
            save_checkpoint(out / "best.pt", state(epoch), kind)
        log.close()
        from learn.plot import plot_training_curve

        plot_training_curve(history, out / "curve.png", _title or f"{kind} on {out.name}")
    if world > 1:
        dist.barrier()
    return TrainResult(out, out / "best.pt", step, epoch, best_val, rate, best_epoch, history, snapshots, run_s)


@torch.no_grad()
def _validate(model: torch.nn.Module, val_set: Dataset, tc: TrainConfig, device: torch.device, use_amp: bool
              ) -> dict[str, float]:
    """Mean loss and mean / median error [m] of the point estimate over ``val_batches`` batches (all: None)."""
    model.eval()
    loader = DataLoader(val_set, batch_size=tc.batch_size, shuffle=False, num_workers=0)
    losses, errors = [], []
    for k, batch in enumerate(loader):
        if tc.val_batches is not None and k >= tc.val_batches:
            break
        batch = to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            out, loss = model(batch, batch["target_xy"])
        losses.append(float(loss))
        err = (out.xy.double() - batch["target_xy"].double()).norm(dim=1) * batch["crop_size_m"].double()
        errors.append(err.cpu())
    model.train()
    if not losses:
        return {"val_loss": math.nan, "val_mean_m": math.nan, "val_median_m": math.nan}
    e = torch.cat(errors)
    return {"val_loss": float(np.mean(losses)), "val_mean_m": float(e.mean()), "val_median_m": float(e.median())}


def pretrain(data: Sequence[str | os.PathLike], config: RunConfig, out_dir: str | os.PathLike, **kw: Any
             ) -> TrainResult:
    """Train from scratch (on synthetic corpora, seed 004's pretraining)."""
    return train(data, config, out_dir, **kw)


def finetune(init: str | os.PathLike, data: Sequence[str | os.PathLike], config: RunConfig,
             out_dir: str | os.PathLike, **kw: Any) -> TrainResult:
    """Continue training the checkpoint ``init`` on other corpora (e.g. real drive tests)."""
    return train(data, config, out_dir, init=init, **kw)
