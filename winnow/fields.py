"""The one coercer: typed values for Winnow's frozen dataclass configs.

Every config section (`winnow.Config`'s embed, knn, detect, policy and run, and
`curation.DecisionPolicy` on its own) is a frozen dataclass whose field annotations say
what a value may be. A value from TOML, a dict or a `section.key=value` string is checked
and converted against that annotation here, and nowhere else:

- an int is accepted for a float field, a list for a tuple field (TOML arrays), a single
  string for a tuple-of-strings field (one item), a table for a dict field (its keys as text);
- "none" (any case) is None for a field that may be None (TOML has no null);
- anything else that does not fit is an error quoting the key and the value.

Standard library only: every layer imports it (it sits below them all).
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["dataclass_from_dict", "coerce_value", "field_names", "parse_scalar", "parse_assignment", "read_toml"]


def field_names(cls: type) -> list[str]:
    """The fields of a dataclass, in declaration order."""
    return [f.name for f in dataclasses.fields(cls)]


def dataclass_from_dict(cls: type, values: Mapping[str, Any], *, base: Any = None, error: type[Exception] = ValueError,
                        what: str = "") -> Any:
    """`cls(**values)` on top of `base` (default: cls()), each value coerced to its field's type.

    Unknown keys raise `error` naming them and the allowed ones; a value of the wrong type
    raises `error` quoting it. `what` prefixes the key in messages ("policy" -> "policy
    'keep' must be ...").
    """
    if not isinstance(values, Mapping):
        raise error(f"{what or cls.__name__} must be a table of key = value, got {values!r}")
    known = field_names(cls)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise error(f"unknown {what + ' ' if what else ''}key(s) {unknown!r}; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    current = {name: getattr(base, name) for name in known} if base is not None else {}
    for key, value in values.items():
        current[key] = coerce_value(value, hints[key], name=f"{what} {key!r}".strip(), error=error)
    return cls(**current)


def coerce_value(value: Any, annotation: Any, *, name: str, error: type[Exception] = ValueError) -> Any:
    """`value` as the type `annotation` names (see the module docstring), or `error` quoting it."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is tuple:
        item = args[0] if args else Any
        if isinstance(value, str) and item is str:
            return (value,)
        if not isinstance(value, (list, tuple)):
            raise error(f"{name} must be a list of {_type_name(item)}, got {value!r}")
        try:
            return tuple(coerce_value(v, item, name=name, error=error) for v in value)
        except error:  # quote the whole list the user wrote, not one item of it
            raise error(f"{name} must be a list of {_type_name(item)}, got {value!r}") from None
    allowed = tuple(a for a in args) if origin in (typing.Union, _UnionType) else (annotation,)
    if type(None) in allowed and (value is None or (isinstance(value, str) and value.strip().lower() == "none")):
        return None
    tables = [a for a in allowed if typing.get_origin(a) is dict]
    if tables and isinstance(value, Mapping):
        # A table keyed by name (TOML {"3" = 0.5}): the keys are names, so an int key is its text.
        value_type = typing.get_args(tables[0])[1]
        return {str(k): coerce_value(v, value_type, name=f"{name}[{str(k)!r}]", error=error) for k, v in value.items()}
    if tuple in {typing.get_origin(a) for a in allowed} and (
            isinstance(value, (list, tuple)) or (isinstance(value, str) and str not in allowed)):
        [tup] = [a for a in allowed if typing.get_origin(a) is tuple]
        return coerce_value(value, tup, name=name, error=error)
    if float in allowed and isinstance(value, float):
        return value
    if int in allowed and _is_int(value):
        return int(value)
    if float in allowed and _is_int(value):
        return float(value)
    if bool in allowed and isinstance(value, bool):
        return value
    if str in allowed and isinstance(value, str):
        return value
    if Any in allowed:
        return value
    names = " or ".join(_type_name(a) for a in allowed)
    raise error(f"{name} must be {names}, got {value!r}")


def read_toml(path: str | os.PathLike, *, what: str, error: type[Exception] = ValueError,
              missing: type[Exception] | None = None) -> tuple[Path, dict[str, Any]]:
    """(path, parsed TOML) of a user's file: `missing` (default `error`) when it does not exist,
    `error` when it is not UTF-8 TOML; both quote `what` and the path ("--config 'x.toml'")."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise (missing or error)(f"{what} {str(path)!r} does not exist")
    try:
        return path, tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {str(path)!r} is not valid TOML: {exc}") from exc


def parse_scalar(text: str) -> Any:
    """A value written on a command line: a TOML value (number, boolean, array, quoted
    string) when it parses as one, else the text itself (`pixels:16`, `cuda:0`)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignment(item: str, *, option: str, error: type[Exception] = ValueError) -> tuple[str, Any]:
    """`KEY=VALUE` -> (KEY, parsed VALUE); `error` quoting `item` when there is no `=` or no key."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise error(f"{option} expects KEY=VALUE, got {item!r}")
    return key.strip(), parse_scalar(value.strip())


def _is_int(value: Any) -> bool:
    # numpy integers register as Integral; a bool is one too, but never a count.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "None"
    if typing.get_origin(annotation) is tuple:
        return f"a list of {_type_name(typing.get_args(annotation)[0])}"
    if typing.get_origin(annotation) is dict:
        return f"a table of {_type_name(typing.get_args(annotation)[1])}"
    return getattr(annotation, "__name__", str(annotation))


_UnionType = type(int | None)
