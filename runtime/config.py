"""Configuration: a TOML file, then ``HESGATE_*`` environment overrides, validated.

Each program describes its configuration as frozen dataclasses (sections of
fields with types and defaults). :func:`load_config` reads the file, applies
overrides and builds those dataclasses, checking every key. A mistake stops
the program at start with a :class:`ConfigError` that names the key and why,
for example ``database.pool_size: expected an integer, got 'ten'``.

Environment overrides name a section and a key joined by a double
underscore: ``HESGATE_DATABASE__DSN=postgresql://...`` sets ``[database] dsn``.
Variables without a double underscore (``HESGATE_TEST_DSN``, ...) are not
configuration and are left alone.
"""

from __future__ import annotations

import dataclasses
import enum
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeVar, get_args, get_origin, get_type_hints

ENV_PREFIX = "HESGATE_"
ENV_SEPARATOR = "__"

T = TypeVar("T")


class ConfigError(ValueError):
    """The configuration is wrong; the message names the key and why."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


def load_config(
    schema: type[T],
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Build ``schema`` from the TOML file at ``path``, the environment and ``overrides``.

    Later sources win: file, then environment, then ``overrides`` (a nested
    mapping, as from command-line flags).
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_toml(path)
    if env is not None:
        _merge(data, env_overrides(env))
    if overrides:
        _merge(data, dict(overrides))
    return build(schema, data)


def hex_bytes(name: str, text: str, size: int) -> bytes:
    """Decode a key written as ``size`` bytes of hexadecimal digits (spaces around allowed).

    Meant for a section's ``__post_init__``: the :class:`ValueError` it raises
    names ``name`` (``"keys.list_key"``), and :func:`build` reports it as a
    :class:`ConfigError` of that section.
    """
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError as err:
        raise ValueError(f"{name}: expected {size * 2} hexadecimal digits") from err
    if len(raw) != size:
        raise ValueError(f"{name}: expected {size} bytes ({size * 2} hex digits), got {len(raw)}")
    return raw


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning every failure into a :class:`ConfigError`."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as err:
        raise ConfigError("", f"configuration file {path} does not exist") from err
    except OSError as err:
        raise ConfigError("", f"cannot read configuration file {path}: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("", f"{path} is not valid TOML: {err}") from err


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``HESGATE_SECTION__KEY=value`` variables into a nested mapping of strings."""
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or ENV_SEPARATOR not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split(ENV_SEPARATOR)]
        if any(not p for p in parts):
            raise ConfigError(name, "empty section or key in environment override")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(name, "conflicts with another environment override")
        node[parts[-1]] = _EnvValue(value, name)
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class _EnvValue:
    """A string from the environment, converted to the field's type when built."""

    text: str
    variable: str


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def build(schema: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build the dataclass ``schema`` from ``data``, naming any bad key."""
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"{schema!r} is not a dataclass")
    hints = get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(_join(prefix, unknown[0]), "unknown key")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        key = _join(prefix, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], key)
        elif (
            _is_dataclass_type(hints[name])
            and field.default is dataclasses.MISSING
            and (field.default_factory is dataclasses.MISSING)
        ):
            # A section may be left out when all of its keys have defaults.
            kwargs[name] = _convert(hints[name], {}, key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(key, "required key is missing")
    try:
        return schema(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(prefix or schema.__name__, str(err)) from err


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _describe(value: Any) -> str:
    if isinstance(value, _EnvValue):
        return f"{value.text!r} (from {value.variable})"
    return repr(value)


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args and (
            value is None or (isinstance(value, _EnvValue) and value.text == "")
        ):
            return None
        errors: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError as err:
                errors.append(err.problem)
        raise ConfigError(key, "; ".join(errors))
    if origin is typing.Literal:
        allowed = get_args(tp)
        raw = value.text if isinstance(value, _EnvValue) else value
        if raw not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise ConfigError(key, f"expected one of {choices}, got {_describe(value)}")
        return raw
    if origin in (list, tuple):
        return _convert_sequence(tp, origin, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a table, got {_describe(value)}")
        _, value_type = get_args(tp)
        return {str(k): _convert(value_type, v, _join(key, str(k))) for k, v in value.items()}
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a table, got {_describe(value)}")
        return build(tp, value, key)
    return _convert_scalar(tp, value, key)


def _convert_sequence(tp: Any, origin: Any, value: Any, key: str) -> Any:
    args = get_args(tp)
    if isinstance(value, _EnvValue):
        value = [_EnvValue(p.strip(), value.variable) for p in value.text.split(",") if p.strip()]
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list, got {_describe(value)}")
    item_type = args[0] if args else Any
    items = [_convert(item_type, v, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _convert_scalar(tp: Any, value: Any, key: str) -> Any:
    env = value.text if isinstance(value, _EnvValue) else None
    if tp is Any:
        return env if env is not None else value
    if tp is bool:
        if env is not None and env.lower() in _TRUE | _FALSE:
            return env.lower() in _TRUE
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {_describe(value)}")
    if tp is int:
        if env is not None:
            try:
                return int(env)
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected an integer, got {_describe(value)}")
    if tp is float:
        if env is not None:
            try:
                return float(env)
            except ValueError:
                pass
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(key, f"expected a number, got {_describe(value)}")
    if tp is str:
        if env is not None:
            return env
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {_describe(value)}")
    if tp is Path:
        raw = env if env is not None else value
        if isinstance(raw, str) and raw:
            return Path(raw).expanduser()
        raise ConfigError(key, f"expected a path, got {_describe(value)}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        raw = env if env is not None else value
        for member in tp:
            if raw in (member.value, member.name, member.name.lower()):
                return member
        choices = ", ".join(repr(m.value) for m in tp)
        raise ConfigError(key, f"expected one of {choices}, got {_describe(value)}")
    raise TypeError(f"{key}: configuration type {tp!r} is not supported")
