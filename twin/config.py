"""Strict YAML → frozen dataclass loading: an unknown or mistyped key is an error naming file and key."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from twin.errors import InputError, StoreNotFoundError

__all__ = ["from_dict", "load_yaml", "read_yaml", "to_dict", "dump_yaml", "resolve_config", "field_default"]

T = TypeVar("T")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except InputError as err:
                errors.append(str(err))
        raise InputError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise InputError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(hint, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(v, args[0], f"{where}[{k}]") for k, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise InputError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{k}]") for k, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            items = [_coerce(v, args[0], f"{where}[{k}]") if args else v for k, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise InputError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise :class:`InputError`."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    kwargs = {name: _coerce(value, hints[name], f"{source}: key '{name}'") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise InputError(f"{source}: {err}") from err
    except InputError as err:  # the config's own checks (__post_init__) do not know the file: name it
        text = str(err)
        if text.startswith(source):
            raise
        raise InputError(f"{source}: {text}") from None


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice (YAML 1.2 forbids it;
    PyYAML would keep the last one silently)."""


def _strict_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {line}; first at line {seen[key]})", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def read_yaml(path: str | os.PathLike, what: str = "config") -> Any:
    """Parse a YAML file strictly (duplicate keys refused); errors name the file and the line.

    The one YAML reader of the toolkit: every config and plan goes through it.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as err:
        raise StoreNotFoundError(f"{path}: no such {what} file") from err
    except (IsADirectoryError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a YAML {what} file ({err})") from err
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML: {err}") from err


def load_yaml(cls: type[T], path: str | os.PathLike, section: str | None = None) -> T:
    """Load ``cls`` from a YAML file (optionally one top-level ``section`` of it)."""
    path = Path(path)
    data = read_yaml(path) or {}
    if section is not None:
        data = data.get(section, {}) if isinstance(data, dict) else data
    return from_dict(cls, data, f"{path}" + (f" [{section}]" if section else ""))


def to_dict(obj: Any) -> Any:
    """A dataclass (nested) as plain YAML/JSON-ready data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def dump_yaml(obj: Any, path: str | Path) -> None:
    """Write the resolved config ``obj`` beside an output."""
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))


def resolve_config(cls: type[T], yaml_file: str | os.PathLike | T | None = None, section: str | None = None,
                   **flags: Any) -> T:
    """The one config path: the dataclass defaults, then the YAML ``section`` (when a file is given), then ``flags``.

    ``yaml_file`` may also be a ready ``cls`` instance (a preset built in code) to start from.

    Flags that are ``None`` were not given and change nothing; a flag holding a dict updates
    the nested dataclass of that name key by key (``resolve_config(RunConfig, f, train={"lr":
    1e-3})``). The result is built with :func:`from_dict`, so a flag of the wrong type or one
    the config's own checks refuse is an :class:`InputError` naming the file (or "command
    line") and the key.
    """
    if isinstance(yaml_file, cls):
        base, where = yaml_file, "config"
    elif yaml_file is not None:
        base, where = load_yaml(cls, yaml_file, section=section), os.fspath(yaml_file)  # type: ignore[arg-type]
    else:
        base, where = cls(), ""
    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return base
    data = to_dict(base)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update({k: v for k, v in value.items() if v is not None})
        else:
            data[key] = to_dict(value)
    source = f"{where} (with command-line options)" if where else "command line"
    return from_dict(cls, data, source)


def field_default(cls: type, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name`` (its factory called), for help texts."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            break
    raise KeyError(f"{cls.__name__} has no field {name!r} with a default")
