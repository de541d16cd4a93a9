"""Base stations and radio maps (``twin deploy``, ``twin trace``, ``twin show-map``).

The data flow, one module each: :mod:`~twin.radio.sites` (the BS file) →
:mod:`~twin.radio.deployment` (``deploy``: where the cells stand) →
:mod:`~twin.radio.tracer` (``trace``: Sionna RT path gain per cell) →
:mod:`~twin.radio.metrics` (RSRP, RSRQ, SINR, BLER from path gain) →
:mod:`~twin.radio.maps` (the ``maps.zarr`` store, point sampling, pictures). The names
below are imported on first use (pandas and Sionna are not imported with the package).
"""

from importlib import import_module
from typing import Any

_LAZY = {
    **dict.fromkeys(["read_bs_file", "write_bs_file", "validate_sites", "place_sites", "sites_from_records"],
                    "twin.radio.sites"),
    **dict.fromkeys(["deploy", "deploy_to_file", "DeployConfig", "STRATEGIES"], "twin.radio.deployment"),
    **dict.fromkeys(["trace", "Tracer", "TraceConfig"], "twin.radio.tracer"),
    **dict.fromkeys(["compute_metrics", "apply_reporting", "MetricConfig", "ReportingConfig"], "twin.radio.metrics"),
    **dict.fromkeys(["open_maps", "write_maps", "show_map", "evaluate_points", "RadioMaps"],
                    "twin.radio.maps"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
