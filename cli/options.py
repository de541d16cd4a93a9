"""Options and error handling shared by the command groups."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from twin.errors import TwinError

__all__ = ["overwrite_option", "seed_option", "clean_errors", "BBOX"]

overwrite_option = click.option("--overwrite", is_flag=True, help="Replace an existing output.")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")


class _BBox(click.ParamType):
    name = "W,S,E,N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        parts = str(value).split(",")
        if len(parts) != 4:
            self.fail(f"expected four comma-separated numbers W,S,E,N, got {value!r}", param, ctx)
        try:
            return tuple(float(p) for p in parts)
        except ValueError:
            self.fail(f"expected numbers, got {value!r}", param, ctx)


BBOX = _BBox()


def clean_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's errors (any :class:`~twin.errors.TwinError`) into one clean message and exit code 2.

    Anything else is a bug of the toolkit and keeps its traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TwinError as err:
            click.echo(f"Error: {err}", err=True)
            sys.exit(2)

    return wrapper
