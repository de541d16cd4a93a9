"""Options and error handling shared by the command groups."""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any

import click

from twin.errors import TwinError

__all__ = ["overwrite_option", "seed_option", "clean_errors", "BBOX", "config_option"]

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


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(_default_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class _ConfigOption(click.Option):
    """An option overriding one field of a config dataclass; its help shows that field's default.

    The option's own default stays ``None`` (not given: the YAML file or the dataclass
    decides, :func:`twin.config.resolve_config`); the dataclass is imported only when the
    help is drawn, so the command line starts fast.
    """

    def __init__(self, *args: Any, config: str, field: str | None = None, default_text: str | None = None,
                 **kwargs: Any):
        kwargs.setdefault("default", None)
        super().__init__(*args, **kwargs)
        self.config_path, self.config_field, self.default_text = config, field or self.name, default_text

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        text = self.default_text
        if text is None:
            from twin.config import field_default

            module, name = self.config_path.split(":")
            text = _default_text(field_default(getattr(importlib.import_module(module), name), str(self.config_field)))
        extra["default"] = text
        return extra


def config_option(config: str, *param_decls: str, field: str | None = None, default_text: str | None = None,
                  **kwargs: Any) -> Callable[[Any], Any]:
    """``click.option`` for field ``field`` (default: the option's name) of the dataclass ``config`` ("module:Class").

    The help's ``[default: ...]`` is the dataclass's default (``default_text`` when it needs words).
    """
    return click.option(*param_decls, cls=_ConfigOption, config=config, field=field, default_text=default_text,
                        **kwargs)


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
