"""Seed 004's study end to end: a proxy reality, Datasets A, B, B' and C, Table 1 (``learn study``).

The data flow, one module each: :mod:`~study.reality` (``make_reality``: hidden true
sites, the operator's BS file, a drive test of a richer world) → :mod:`~study.datasets`
(A's split rule; B, B', C restricted to A's training streets) → :mod:`~study.run`
(``run_study``: the resumable runner, one folder per stage) → :mod:`~study.table`
(Table 1, Fig. 4, Fig. 9). :mod:`~study.plan` reads the plan YAML. The package sits
after ``twin``, ``calibrate`` and ``learn`` and may import all three.

Exported here by name and imported on first use.
"""

from importlib import import_module
from typing import Any

import twin  # noqa: F401  (locates libLLVM for Dr.Jit before anything imports Mitsuba)

_LAZY = {
    **dict.fromkeys(["make_reality", "RealityConfig", "RealityFiles", "perturb_sites", "perturbed_scene"],
                    "study.reality"),
    **dict.fromkeys(["HeldOut", "held_out_region", "restrict_corpus", "training_rows", "fidelity_gap"],
                    "study.datasets"),
    **dict.fromkeys(["StudyPlan", "load_plan", "parse_chain"], "study.plan"),
    **dict.fromkeys(["run_study", "StudyResult"], "study.run"),
    **dict.fromkeys(["write_table", "readout"], "study.table"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'study' has no attribute {name!r}")
