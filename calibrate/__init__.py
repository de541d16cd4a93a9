"""Calibration of a twin's base stations against real drive tests (GP Bayesian optimization).

The stage functions, with their CLI verbs (``docs/calibrate.md``)::

    calibrate.fit.calibrate(scene, bs_file, drive_test, out, report_dir, CalibrationConfig())
                                                              calibrate fit
    calibrate.checks.check(scene, bs_file, drive_test)        calibrate check
    calibrate.simulate.simulate_drive_test(scene, sites)      calibrate simulate
    calibrate.drive_test.read_drive_test(path, scene, bs)     (ingest, used by all three)

Exported here by name and imported on first use, so that ``import calibrate`` stays light.
"""

from importlib import import_module
from typing import Any

import twin  # noqa: F401  (locates libLLVM for Dr.Jit before anything imports Mitsuba)

_LAZY = {
    "calibrate": "calibrate.fit", "CalibrationConfig": "calibrate.fit", "CalibrationResult": "calibrate.fit",
    "SiteFit": "calibrate.fit", "fit_site": "calibrate.fit",
    "check": "calibrate.checks", "CheckResult": "calibrate.checks",
    "simulate_drive_test": "calibrate.simulate",
    "read_drive_test": "calibrate.drive_test", "clean_drive_test": "calibrate.drive_test",
    "write_drive_test": "calibrate.drive_test", "DriveTest": "calibrate.drive_test",
    "SearchSpace": "calibrate.space", "CircularMatern": "calibrate.space",
    "write_report": "calibrate.report",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'calibrate' has no attribute {name!r}")
