"""Errors the toolkit raises: each names the file, row or field at fault and suggests a fix."""

from __future__ import annotations

__all__ = ["InputError", "EngineError", "CheckpointError", "OutputExistsError", "collect"]


class InputError(ValueError):
    """Bad user input: a file, a row, a column or a config field.

    Messages name the object at fault, e.g.
    ``bs.csv row 7, column 'azimuth_deg': 400 is outside [0, 360)``.
    """


class EngineError(RuntimeError):
    """The ray-tracing or learning engine cannot run here (missing libLLVM, no GPU ...)."""


class CheckpointError(RuntimeError):
    """A checkpoint is corrupted, of another schema version or of another model."""


class OutputExistsError(FileExistsError):
    """The output exists and ``overwrite`` was not given."""

    def __init__(self, path: object):
        super().__init__(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
        self.path = path


def collect(problems: list[str], what: str) -> None:
    """Raise one :class:`InputError` listing every problem found in ``what``, if any."""
    if problems:
        head = f"{what}: {len(problems)} problem(s)"
        shown = problems[:20]
        more = [f"... and {len(problems) - 20} more"] if len(problems) > 20 else []
        raise InputError("\n  ".join([head, *shown, *more]))
