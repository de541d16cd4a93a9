"""Radio digital twin: OSM scenes, Sionna RT radio maps, LTE/NR metrics, measurement corpora.

Importing ``twin`` locates a libLLVM >= 16 for Dr.Jit's CPU backend (sets
``DRJIT_LIBLLVM_PATH`` when unset) before anything imports Mitsuba.
"""

from twin._mitsuba import configure_llvm as _configure_llvm

_configure_llvm()

from twin.corpus import Corpus, CorpusWriter, open_corpus  # noqa: E402
from twin.errors import CheckpointError, EngineError, InputError, OutputExistsError  # noqa: E402
from twin.geo import Grid, SceneFrame, utm_crs_for, validate_bbox  # noqa: E402
from twin.metrics import MetricConfig, ReportingConfig, apply_reporting, compute_metrics  # noqa: E402

__all__ = [
    "Corpus", "CorpusWriter", "open_corpus",
    "InputError", "EngineError", "CheckpointError", "OutputExistsError",
    "Grid", "SceneFrame", "utm_crs_for", "validate_bbox",
    "MetricConfig", "ReportingConfig", "apply_reporting", "compute_metrics",
]
