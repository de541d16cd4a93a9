"""The Dask engine that ``twin generate`` and ``calibrate fit`` share.

A LocalCluster of single-threaded worker processes by default (tracing is heavy: one
task per worker at a time), a running scheduler by address, or SLURM/PBS jobs through
dask-jobqueue, with GPU workers declaring the Dask resource ``GPU``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Literal

from twin.errors import EngineError, InputError

__all__ = ["ClusterSpec", "start_cluster", "batch_cluster", "has_bokeh", "jobqueue"]


@dataclass(frozen=True)
class ClusterSpec:
    """The Dask engine. The command line's ``--workers``, ``--scheduler`` and ``--cluster`` win.

    Attributes
    ----------
    kind : "local", "slurm" or "pbs"
        A LocalCluster on this machine, or jobs started through dask-jobqueue.
    workers : int or None
        Worker processes (local; default: one per core) or batch jobs (slurm/pbs; default 1).
    threads_per_worker : int
        Threads of each worker, also given to Dr.Jit and torch: tracing is heavy, one task
        per worker at a time.
    gpus_per_worker : int
        GPUs each worker declares as the Dask resource ``GPU``; shard tasks then ask for one.
    retries : int
        A shard that raises is retried this many times; a shard whose worker dies is
        rescheduled by Dask (up to ``distributed.scheduler.allowed-failures``).
    memory, queue, account, walltime, job_extra_directives, job_script_prologue, local_directory
        dask-jobqueue options of one job (one worker per job).
    log_directory : str or None
        Where batch jobs write their output files (dask-jobqueue's ``log_directory``);
        None leaves them in the submitting directory, as ``sbatch`` does.
    """

    kind: Literal["local", "slurm", "pbs"] = "local"
    workers: int | None = None
    threads_per_worker: int = 1
    gpus_per_worker: int = 0
    retries: int = 2
    memory: str = "16GB"
    queue: str | None = None
    account: str | None = None
    walltime: str = "02:00:00"
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()
    local_directory: str | None = None
    log_directory: str | None = None


def start_cluster(spec: ClusterSpec | None = None, workers: int | None = None, scheduler: str | None = None,
                  kind: str | None = None, n_tasks: int | None = None) -> tuple[Any, Any]:
    """A Dask ``Client`` for the engine ``spec`` describes, and the cluster it started (None when joined).

    ``scheduler`` joins a running cluster; otherwise ``kind`` (default: ``spec.kind``)
    starts a LocalCluster of ``workers`` single-threaded processes (default one per core,
    at most ``n_tasks``), or SLURM/PBS jobs through dask-jobqueue. GPU workers declare the
    resource ``GPU``. ``twin generate`` and ``calibrate fit`` both run on it.
    """
    from distributed import Client, LocalCluster

    spec = spec or ClusterSpec()
    gpus = spec.gpus_per_worker
    if scheduler:
        try:
            return Client(scheduler), None
        except (OSError, TimeoutError) as err:
            raise EngineError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler there "
                              f"({type(err).__name__}: {err}); start one (dask scheduler) or drop --scheduler "
                              "to run on a local cluster") from None
    kind = kind or spec.kind
    if kind == "local":
        n = workers or spec.workers or os.cpu_count() or 1
        n = max(1, min(n, n_tasks or n))
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               resources={"GPU": gpus} if gpus else None,
                               dashboard_address=":0" if has_bokeh() else None,
                               local_directory=spec.local_directory, silence_logs=logging.ERROR)
        return Client(cluster), cluster
    cluster = batch_cluster(spec, kind)
    cluster.scale(jobs=workers or spec.workers or 1)
    return Client(cluster), cluster


def batch_cluster(spec: ClusterSpec, kind: str) -> Any:
    """A dask-jobqueue SLURM or PBS cluster for ``spec`` (a plan's ``cluster`` section), not yet scaled.

    Each job runs one single-process worker; with ``gpus_per_worker`` the job asks the
    batch system for the GPUs (``--gres=gpu:N`` / ``ngpus=N``) and the worker declares the
    Dask resource ``GPU`` that tracing tasks request.
    """
    if kind not in ("slurm", "pbs"):
        raise InputError(f"cluster: unknown kind {kind!r}; use local, slurm or pbs")
    gpus = spec.gpus_per_worker
    dask_jobqueue = jobqueue(kind)
    common = {"cores": spec.threads_per_worker, "processes": 1, "memory": spec.memory, "queue": spec.queue,
              "account": spec.account, "walltime": spec.walltime, "local_directory": spec.local_directory,
              "job_script_prologue": list(spec.job_script_prologue), "log_directory": spec.log_directory,
              "worker_extra_args": ["--resources", f"GPU={gpus}"] if gpus else []}
    extra = list(spec.job_extra_directives)
    if kind == "slurm":
        if gpus:
            extra.append(f"--gres=gpu:{gpus}")
        return dask_jobqueue.SLURMCluster(job_extra_directives=extra, **common)
    resource = f"select=1:ncpus={spec.threads_per_worker}:mem={spec.memory}" + (f":ngpus={gpus}" if gpus else "")
    return dask_jobqueue.PBSCluster(job_extra_directives=extra, resource_spec=resource, **common)


def jobqueue(kind: str) -> Any:
    try:
        import dask_jobqueue
    except ImportError as err:
        raise EngineError(f"--cluster {kind} needs dask-jobqueue: pip install dask-jobqueue") from err
    return dask_jobqueue


def has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True
