"""Errors the toolkit raises: each names the file, row or field at fault and suggests a fix.

One hierarchy, as zarr-python's: every error subclasses :class:`TwinError` and the
built-in a caller would expect (``except ValueError`` still catches bad input), so that
a command line catches ``TwinError`` alone and prints one clean message::

    TwinError
    ├── InputError(ValueError)                bad file, row, column or config field
    ├── StoreNotFoundError(FileNotFoundError) no scene, store, checkpoint ... at a path
    ├── OutputExistsError(FileExistsError)    the output exists and overwrite was not given
    ├── EngineError(RuntimeError)             the ray tracer / learning engine cannot run here
    └── CheckpointError(RuntimeError)         corrupted checkpoint, other schema or model
"""

from __future__ import annotations

__all__ = ["TwinError", "InputError", "StoreNotFoundError", "OutputExistsError", "EngineError",
           "CheckpointError", "collect"]


class TwinError(Exception):
    """Base of every error the toolkit raises on purpose (catch this one in front ends)."""


class InputError(TwinError, ValueError):
    """Bad user input: a file, a row, a column or a config field.

    Messages name the object at fault, e.g.
    ``bs.csv: row 7, column 'tilt_deg': 120 is outside [-90, 90]``.
    """


class StoreNotFoundError(TwinError, FileNotFoundError):
    """Nothing to read at the path given: no scene directory, store, BS file or checkpoint there."""


class OutputExistsError(TwinError, FileExistsError):
    """The output exists and ``overwrite`` was not given."""

    def __init__(self, path: object, reason: str | None = None):
        super().__init__(reason or f"{path} exists; pass --overwrite (overwrite=True) to replace it")
        self.path = path

    def __reduce__(self) -> tuple:  # keep the message across processes (Dask workers)
        return (type(self), (self.path, str(self)))


class EngineError(TwinError, RuntimeError):
    """The ray-tracing or learning engine cannot run here (missing libLLVM, no GPU ...)."""


class CheckpointError(TwinError, RuntimeError):
    """A checkpoint is corrupted, of another schema version or of another model."""


def collect(problems: list[str], what: str) -> None:
    """Raise one :class:`InputError` listing every problem found in ``what``, if any."""
    if problems:
        head = f"{what}: {len(problems)} problem(s)"
        shown = problems[:20]
        more = [f"... and {len(problems) - 20} more"] if len(problems) > 20 else []
        raise InputError("\n  ".join([head, *shown, *more]))
