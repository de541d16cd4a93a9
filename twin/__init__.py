"""Radio digital twin: OSM scenes, Sionna RT radio maps, LTE/NR metrics, measurement corpora.

The subpackages follow the data flow; each stage is one function with its config (the CLI
verbs match)::

    twin.scene       build_scene(out, osm_file, bbox)                twin build-scene
    twin.radio       deploy(scene, strategy)                         twin deploy
                     trace(scene, sites, out)                        twin trace
    twin.corpus      sample(scene, maps, SampleConfig(), out)        twin sample
    twin.generate    generate(plan)                                  twin generate

Shared by all stages, at the top level: :mod:`twin.geo` (the lon/lat ↔ scene transform
and the ``Grid``), :mod:`twin.config` (strict YAML ↔ dataclasses), :mod:`twin.io`
(atomic writes, Zarr access), :mod:`twin.engine` (the Mitsuba variant and libLLVM),
:mod:`twin.tables` (point tables: BS files, drive tests), :mod:`twin.errors` and
:mod:`twin.plot`. The stage functions, configs and readers are also exported here by
name, except ``generate``, which stays the subpackage (``twin.generate.generate``).

Importing ``twin`` locates a libLLVM >= 16 for Dr.Jit's CPU backend (sets
``DRJIT_LIBLLVM_PATH`` when unset) before anything imports Mitsuba. Everything else is
imported on first use, so that ``import twin`` stays light.
"""

from importlib import import_module
from typing import Any

from twin.engine import configure_llvm as _configure_llvm

_configure_llvm()

from twin.errors import (  # noqa: E402
    CheckpointError,
    EngineError,
    InputError,
    OutputExistsError,
    StoreNotFoundError,
    TwinError,
)

_LAZY = {
    **dict.fromkeys(["Grid", "SceneFrame", "utm_crs_for", "validate_bbox"], "twin.geo"),
    **dict.fromkeys(["build_scene", "load_twin_scene", "SceneConfig", "TwinScene"], "twin.scene.build"),
    **dict.fromkeys(["read_bs_file", "write_bs_file"], "twin.radio.sites"),
    **dict.fromkeys(["deploy", "DeployConfig"], "twin.radio.deployment"),
    **dict.fromkeys(["trace", "Tracer", "TraceConfig"], "twin.radio.tracer"),
    **dict.fromkeys(["MetricConfig", "ReportingConfig", "apply_reporting", "compute_metrics"], "twin.radio.metrics"),
    **dict.fromkeys(["open_maps", "RadioMaps"], "twin.radio.maps"),
    **dict.fromkeys(["sample", "SampleConfig"], "twin.corpus.sampler"),
    **dict.fromkeys(["Corpus", "CorpusWriter", "open_corpus"], "twin.corpus.store"),
    **dict.fromkeys(["load_plan", "GeneratePlan"], "twin.generate.plan"),
}

__all__ = [
    "TwinError", "InputError", "StoreNotFoundError", "OutputExistsError", "EngineError", "CheckpointError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'twin' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
