"""Radio digital twin: OSM scenes, Sionna RT radio maps, LTE/NR metrics, measurement corpora.

Each stage is one function with its config, in the module named for it (the CLI verbs
match)::

    twin.scene.build_scene(out, osm_file, bbox)           twin build-scene
    twin.deploy.deploy(scene, strategy)                   twin deploy
    twin.trace.trace(scene, sites, out)                   twin trace
    twin.sample.sample(scene, maps, SampleConfig(), out)  twin sample
    twin.generate.generate(plan)                          twin generate

The configs, readers and the scene builder are also exported here by name; the four
functions named like their modules are not, since ``twin.trace`` must stay the module.

Importing ``twin`` locates a libLLVM >= 16 for Dr.Jit's CPU backend (sets
``DRJIT_LIBLLVM_PATH`` when unset) before anything imports Mitsuba. The stage
functions are imported on first use, so that ``import twin`` stays light.
"""

from importlib import import_module
from typing import Any

from twin._mitsuba import configure_llvm as _configure_llvm

_configure_llvm()

from twin.corpus import Corpus, CorpusWriter, open_corpus  # noqa: E402
from twin.errors import CheckpointError, EngineError, InputError, OutputExistsError  # noqa: E402
from twin.geo import Grid, SceneFrame, utm_crs_for, validate_bbox  # noqa: E402
from twin.metrics import MetricConfig, ReportingConfig, apply_reporting, compute_metrics  # noqa: E402

_LAZY = {
    "build_scene": "twin.scene", "load_twin_scene": "twin.scene", "SceneConfig": "twin.scene",
    "TwinScene": "twin.scene",
    "DeployConfig": "twin.deploy", "read_bs_file": "twin.sites", "write_bs_file": "twin.sites",
    "TraceConfig": "twin.trace", "Tracer": "twin.trace", "open_maps": "twin.maps", "RadioMaps": "twin.maps",
    "SampleConfig": "twin.sample", "load_plan": "twin.plan", "GeneratePlan": "twin.plan",
}

__all__ = [
    "Corpus", "CorpusWriter", "open_corpus",
    "InputError", "EngineError", "CheckpointError", "OutputExistsError",
    "Grid", "SceneFrame", "utm_crs_for", "validate_bbox",
    "MetricConfig", "ReportingConfig", "apply_reporting", "compute_metrics",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'twin' has no attribute {name!r}")
