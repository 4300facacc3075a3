"""Atomic writes (a crash while writing never leaves a half-written checkpoint, report or table), and reading
``torch.save`` files with errors that say what is wrong with them."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one ``os.replace``.

    On an exception the temporary file is removed and ``path`` keeps its previous content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    tmp_path.chmod(0o666 & ~umask)  # mkstemp makes 0600 files; give them the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _atomic_open(path: str | os.PathLike[str], mode: str, write: Callable[[IO[Any]], None]) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    return _atomic_open(path, "w", lambda f: f.write(text))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return _atomic_open(path, "wb", lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (NaN is written as ``NaN``, as Python's json does)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to ``path`` atomically: a crash mid-save never corrupts an existing checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


# how a torch.save file starts: a zip archive's first local header, or (legacy format) pickle protocol 2 and
# torch's magic number as a long
_ZIP_PREFIX = b"PK\x03\x04"
_LEGACY_TORCH_PREFIX = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def read_torch_file(path: str | os.PathLike[str], what: str, *, weights_only: bool = True) -> Any:
    """``torch.load(path, map_location="cpu")`` with errors naming ``what`` and the file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a ``torch.save`` file, is truncated or corrupt, or (``weights_only``) holds
            Python objects besides tensors and plain containers.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} {str(file)!r} not found")
    with open(file, "rb") as handle:
        head = handle.read(len(_LEGACY_TORCH_PREFIX))
    if not head.startswith(_ZIP_PREFIX) and head != _LEGACY_TORCH_PREFIX:
        raise ValueError(f"{what} {str(file)!r} is not a PyTorch file (neither torch.save's zip format nor its "
                         "legacy format)")
    try:
        return torch.load(file, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if weights_only and "Weights only load failed" in str(err):
            raise ValueError(
                f"{what} {str(file)!r} holds Python objects besides tensors, which torch.load(weights_only=True) "
                "refuses; only if you trust the file, load it with full unpickling (Python: "
                "imde.models.load_checkpoint(..., allow_unsafe=True))"
            ) from err
        raise ValueError(f"{what} {str(file)!r} cannot be read: truncated or corrupt ({err})") from err
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{what} {str(file)!r} cannot be read: truncated or corrupt "
                         f"({type(err).__name__}: {err})") from err
