"""City-scale generation (``twin generate``): scene, deployment, tracing and sampling over many patches.

The data flow, one module each: :mod:`~twin.generate.plan` (the YAML plan, the shard
layout and seeds) → :mod:`~twin.generate.cluster` (a Dask LocalCluster, a scheduler or
SLURM/PBS through dask-jobqueue) → :mod:`~twin.generate.shards` (one patch end to end,
into a partial store) → :mod:`~twin.generate.run` (``generate``: submit, resume,
finalize one corpus). The names below are imported on first use.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    **dict.fromkeys(["load_plan", "plan_from_dict", "check_plan", "GeneratePlan", "Shard"], "twin.generate.plan"),
    **dict.fromkeys(["start_cluster", "ClusterSpec"], "twin.generate.cluster"),
    **dict.fromkeys(["run_shard"], "twin.generate.shards"),
    **dict.fromkeys(["generate", "GenerateSummary"], "twin.generate.run"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
