"""Typed configs: nested frozen dataclasses built from YAML plus ``key=value`` overrides.

Every config in imde is a tree of frozen dataclasses. This module turns plain dicts (from YAML or
the command line) into such trees and back, and its errors name the full dotted key:

- :func:`from_dict` builds a dataclass from a dict, coercing YAML scalars to the annotated types and
  rejecting unknown keys with the closest valid key suggested;
- :func:`apply_overrides` applies ``a.b.c=value`` strings (values parsed by ``yaml.safe_load``, so
  ``lr=1e-3`` and ``layers=[D,MFF]`` work);
- :func:`load_yaml` / :func:`save_yaml` read and (atomically) write YAML;
- :func:`to_dict` turns a config back into plain, YAML- and ``weights_only``-safe data;
- :func:`deep_merge` and :func:`diff_dicts` merge and compare such plain data.

Validation of values lives in each dataclass's ``__post_init__``, using :func:`check_choice`,
:func:`check_positive` and :func:`check_range` so that every message names its field.

>>> from imde.training.config import TrainConfig
>>> from_dict(TrainConfig, apply_overrides({}, ["optim.lr=1e-3", "loss.layers=[D,MFF]"])).optim.lr
0.001
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from imde.utils.io import atomic_write_text

T = TypeVar("T")

__all__ = [
    "apply_overrides",
    "check_choice",
    "check_positive",
    "check_range",
    "deep_merge",
    "diff_dicts",
    "from_dict",
    "load_yaml",
    "parse_override",
    "save_yaml",
    "to_dict",
]


# --------------------------------------------------------------------------------------------------
# Validation helpers for __post_init__
# --------------------------------------------------------------------------------------------------


def check_choice(field: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` naming ``field`` unless ``value`` is one of ``choices``."""
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{field}={value!r}: expected one of {', '.join(repr(c) for c in options)}")


def check_positive(
    field: str, value: float | int | None, *, allow_zero: bool = False, allow_none: bool = False
) -> None:
    """Raise ``ValueError`` naming ``field`` unless ``value > 0`` (or ``>= 0`` with ``allow_zero``)."""
    if value is None and allow_none:
        return
    if value is None or (value < 0 if allow_zero else value <= 0):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{field}={value!r}: expected a number {expected}")


def check_range(field: str, value: float, low: float, high: float) -> None:
    """Raise ``ValueError`` naming ``field`` unless ``low <= value <= high``."""
    if not low <= value <= high:
        raise ValueError(f"{field}={value!r}: expected a number in [{low}, {high}]")


# --------------------------------------------------------------------------------------------------
# dict -> dataclass
# --------------------------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _unknown_key_error(cls: type, key: str, valid: Sequence[str], path: str) -> ValueError:
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
    hint = f" (did you mean {_join(path, close[0])!r}?)" if close else ""
    where = f" in section {path!r}" if path else ""
    return ValueError(
        f"unknown config key {_join(path, str(key))!r}{hint}; valid keys{where} of {cls.__name__}: {', '.join(valid)}"
    )


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, path: str = "") -> T:
    """Build the dataclass ``cls`` from a (nested) mapping.

    Keys missing from ``data`` take the dataclass defaults; nested dataclass fields accept nested
    mappings; scalar values are coerced to the annotated type (an ``int`` for a ``float`` field, a
    string such as ``"1e-3"`` that YAML left unparsed, a list for a tuple field).

    Args:
        cls: a dataclass type.
        data: its fields as a mapping (``None`` means all defaults).
        path: dotted prefix used in error messages (for nested sections).

    Raises:
        ValueError: an unknown key (with the closest valid key and the full dotted path), a value of
            the wrong type, a missing required field, or a value rejected by ``__post_init__``.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"from_dict: {cls!r} is not a dataclass")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError(f"config section {path or cls.__name__!r}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise _unknown_key_error(cls, key, list(fields), path)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name in fields:
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], _join(path, name))
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"config section {path or cls.__name__!r}: {exc}") from None
    except ValueError as exc:
        message = str(exc)
        raise ValueError(f"{path}.{message}" if path and not message.startswith(path) else message) from None


def _is_optional_none(value: Any, args: tuple[Any, ...]) -> bool:
    return value is None and type(None) in args


def _coerce(value: Any, hint: Any, path: str) -> Any:  # noqa: C901 - one branch per supported annotation
    """Convert the YAML value ``value`` to the annotation ``hint``; errors name ``path``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if _is_optional_none(value, args):
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, path)
            except ValueError:
                continue
        raise ValueError(f"{path}={value!r}: expected {_type_name(hint)}")
    if origin is Literal:
        check_choice(path, value, args)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if dataclasses.is_dataclass(value) and isinstance(value, hint):
            return value
        return from_dict(hint, value, path=path)
    if origin in (list, tuple, Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ValueError(f"{path}={value!r}: expected a list ({_type_name(hint)})")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ValueError(f"{path}={value!r}: expected {len(args)} values ({_type_name(hint)})")
            return tuple(_coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}={value!r}: expected a mapping ({_type_name(hint)})")
        return dict(value)
    return _coerce_scalar(value, hint, path)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TypeError


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, (int, float, str)):  # YAML 1.1 reads "1e-3" (no dot) as a string
        return float(value)
    raise TypeError


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError


def _to_none(value: Any) -> None:
    if value is not None:
        raise TypeError


_SCALARS: dict[Any, tuple[Any, str]] = {
    bool: (_to_bool, "true or false"),
    int: (_to_int, "an integer"),
    float: (_to_float, "a number"),
    str: (_to_str, "a string"),
    type(None): (_to_none, "null"),
}


def _coerce_scalar(value: Any, hint: Any, path: str) -> Any:
    if hint in _SCALARS:
        convert, expected = _SCALARS[hint]
        try:
            return convert(value)
        except (TypeError, ValueError):
            raise ValueError(f"{path}={value!r}: expected {expected}") from None
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ValueError(f"{path}={value!r}: expected {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


# --------------------------------------------------------------------------------------------------
# dataclass -> plain data, merging, diffing
# --------------------------------------------------------------------------------------------------


def to_dict(obj: Any) -> Any:
    """Turn a config (dataclasses, tuples, paths) into plain dicts/lists/scalars, safe for YAML and
    ``torch.load(weights_only=True)``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``update``; nested mappings are merged key by key, other values replaced."""
    merged: dict[str, Any] = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def diff_dicts(a: Mapping[str, Any], b: Mapping[str, Any], *, path: str = "") -> list[str]:
    """Dotted keys whose values differ between the nested mappings ``a`` and ``b`` (sorted).

    >>> diff_dicts({"optim": {"lr": 1e-4, "name": "adam"}}, {"optim": {"lr": 1e-3, "name": "adam"}})
    ['optim.lr']
    """
    keys = sorted(set(a) | set(b))
    out: list[str] = []
    for key in keys:
        dotted = _join(path, str(key))
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out.extend(diff_dicts(va, vb, path=dotted))
        elif va != vb:
            out.append(dotted)
    return out


_MISSING = object()


# --------------------------------------------------------------------------------------------------
# overrides and YAML files
# --------------------------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b.c=value"`` into ``(["a", "b", "c"], yaml.safe_load("value"))``.

    >>> parse_override("loss.layers=[D,MFF]")
    (['loss', 'layers'], ['D', 'MFF'])

    Raises:
        ValueError: when there is no ``=`` or the key is empty.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"override {text!r}: expected key=value with a dotted key, e.g. optim.lr=1e-3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f"override {text!r}: the value is not valid YAML ({exc})") from None
    return key.split("."), value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key=value`` override applied (later ones win).

    Missing intermediate sections are created; unknown keys are left for :func:`from_dict` to reject.

    Raises:
        ValueError: a malformed override, or one that descends into a value that is not a section.
    """
    result = deep_merge({}, data)
    for text in overrides:
        keys, value = parse_override(text)
        node = result
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, Mapping):
                prefix = ".".join(keys[: depth + 1])
                raise ValueError(f"override {text!r}: {prefix!r} is a value ({child!r}), not a section")
            else:
                child = node[key] = dict(child)
            node = child
        node[keys[-1]] = value
    return result


_MAX_BASE_DEPTH = 16


def load_yaml(
    path: str | os.PathLike[str], overrides: Iterable[str] = (), *, path_keys: Sequence[str] = ()
) -> dict[str, Any]:
    """Read a YAML config, resolve its ``base:`` inheritance, then apply ``key=value`` overrides.

    A file may inherit: ``base: other.yaml`` (a path relative to the file, or a list of them) is loaded first
    and the file's own keys are merged over it, section by section (:func:`deep_merge`).

    Args:
        path: the YAML file.
        overrides: ``a.b=value`` strings applied after inheritance.
        path_keys: keys holding a file name (dotted for a nested one, ``train.base``), resolved relative to the
            file that sets them.

    Raises:
        FileNotFoundError: the file, or one of its bases, does not exist (naming the file that refers to it).
        ValueError: invalid YAML or a top level that is not a mapping (naming the file and line), ``base`` not
            a string or list of strings, or an inheritance cycle.
    """
    return apply_overrides(_resolve_bases(Path(path), (), tuple(path_keys)), overrides)


def _resolve_bases(path: Path, chain: tuple[Path, ...], path_keys: tuple[str, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in chain or len(chain) > _MAX_BASE_DEPTH:
        names = " -> ".join(str(p) for p in (*chain, path))
        raise ValueError(f"config file {str(path)!r}: inheritance cycle or too deep ({names})")
    data = _read_yaml_mapping(path)
    for key in path_keys:  # dotted keys name a nested value ("train.base")
        *parents, last = key.split(".")
        node: Any = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(last), str) and node[last]:
            node[last] = str(path.parent / node[last])
    bases = data.pop("base", None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ValueError(f"config file {str(path)!r}: 'base' must be a file name or a list of them, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = path.parent / base
        if not base_path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r}: base {base!r} not found (looked at {base_path})")
        merged = deep_merge(merged, _resolve_bases(base_path, (*chain, path), path_keys))
    return deep_merge(merged, data)


def _read_yaml_mapping(file: Path) -> dict[str, Any]:
    """One YAML file's top-level mapping, with errors naming the file and line."""
    if not file.is_file():
        raise FileNotFoundError(f"config file {str(file)!r} not found")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"config file {str(file)!r}{where}: invalid YAML ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError(f"config file {str(file)!r}: expected a mapping at the top level, got {type(data).__name__}")
    return dict(data)


def save_yaml(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write a config (dataclass or plain mapping) to ``path`` as YAML, atomically."""
    text = yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=None)
    return atomic_write_text(path, text)
