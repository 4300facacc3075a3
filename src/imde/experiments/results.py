"""Shared plumbing for experiment results: a base that saves and loads them, JSON-able conversion, CSV tables,
file names, batch helpers."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import torch

from imde.utils.io import atomic_write_json, atomic_write_text

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def to_jsonable(obj: Any) -> Any:
    """Convert tensors, dataclasses, paths and containers into plain JSON types (lists, dicts, floats).

    Non-finite floats stay ``float('nan')`` / ``inf`` (Python's ``json`` writes them as ``NaN`` / ``Infinity``).
    """
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        to_dict = getattr(obj, "to_dict", None)
        if callable(to_dict):
            return to_dict()
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(key): to_jsonable(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(value) for value in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


class SavedResult:
    """Base of the experiment results: ``save(dir)`` writes ``<dir>/<name>.json``, ``load(dir)`` reads it back.

    A subclass defines ``to_dict()`` (plain JSON types) and ``from_dict(data)`` (its inverse) and the default
    file stem ``FILE``; ``load(save(...))`` then gives an equal result.
    """

    FILE: ClassVar[str] = "result"

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def save(self, out_dir: str | Path, name: str | None = None) -> Path:
        """Write ``out_dir/<name or FILE>.json`` atomically; return its path."""
        return write_json(out_dir, f"{name or self.FILE}.json", self.to_dict())

    @classmethod
    def load(cls, out_dir: str | Path, name: str | None = None) -> Self:
        """Read the result ``save(out_dir, name)`` wrote.

        Raises:
            FileNotFoundError: the file is missing (the step that writes it has not run).
            ValueError: the file is not such a result (a missing key is named).
        """
        path = Path(out_dir) / f"{name or cls.FILE}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the step that writes it has not run")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path}: not a {cls.__name__} ({type(err).__name__}: {err})") from None
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None


def safe_name(name: str) -> str:
    """A layer or split name made safe for a file name.

    Example:
        >>> safe_name("layer1.0/conv")
        'layer1.0_conv'
    """
    cleaned = _UNSAFE.sub("_", name).strip("._")
    if not cleaned:
        raise ValueError(f"name={name!r}: cannot be turned into a file name")
    return cleaned


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV table atomically; floats are written with ``repr`` precision, NaN as ``nan``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def write_json(out_dir: str | Path, file_name: str, obj: Any) -> Path:
    """Write ``to_jsonable(obj)`` as ``out_dir/file_name`` atomically."""
    return atomic_write_json(Path(out_dir) / file_name, to_jsonable(obj))


def limit_batches(loader: Iterable[Any], max_batches: int | None) -> Iterator[Any]:
    """Iterate over at most ``max_batches`` batches of ``loader`` (all of them when ``None``)."""
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches={max_batches}: expected a positive number of batches or None")
    for index, batch in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            return
        yield batch


def as_batch(sample: Mapping[str, Any]) -> dict[str, Any]:
    """A batch dict from a batch or from one dataset sample (``image`` ``[C, H, W]`` gets a batch dimension).

    Example:
        >>> as_batch({"image": torch.zeros(3, 4, 5), "depth": torch.ones(1, 4, 5), "name": "a"})["depth"].shape
        torch.Size([1, 1, 4, 5])
    """
    check_batch(sample)
    if torch.as_tensor(sample["image"]).ndim != 3:
        return dict(sample)
    return {key: value.unsqueeze(0) if isinstance(value, torch.Tensor) else [value] for key, value in sample.items()}


def count_batches(loader: Iterable[Any], max_batches: int | None) -> int | None:
    """How many batches ``limit_batches(loader, max_batches)`` yields, when the loader knows its length."""
    try:
        total = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return max_batches
    return total if max_batches is None else min(total, max_batches)


def check_batch(batch: Any, keys: Sequence[str] = ("image", "depth")) -> None:
    """Raise ``ValueError`` unless ``batch`` is a dict holding ``keys`` (the dataset sample contract)."""
    if not isinstance(batch, Mapping):
        raise ValueError(f"batch: expected a dict with keys {list(keys)}, got {type(batch).__name__}")
    missing = [key for key in keys if key not in batch]
    if missing:
        raise ValueError(f"batch: missing keys {missing}; expected a dict with {list(keys)}, got {sorted(batch)}")


def batch_keys(batch: Mapping[str, Any]) -> list[str] | None:
    """The images' keys for the replicate weights: the batch's sample names, ``None`` when it has none."""
    names = batch.get("name")
    if isinstance(names, str):
        return [names]
    if isinstance(names, Sequence) and all(isinstance(name, str) for name in names):
        return list(names)
    return None
