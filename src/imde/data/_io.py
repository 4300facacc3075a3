"""File access for the dataset readers: list files, folders or zip archives, RGB images and depth pngs.

Every reader takes a ``where`` string (``"file 'x.png' (list 'train.txt', line 12)"``) that is put at the
front of any error, so that a bad sample is always reported with the file and list line it came from.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from imde.utils.optional import require

# PIL modes of single-channel pngs -> the integer type stored in the file.
_DEPTH_MODES: dict[str, type[np.integer]] = {"L": np.uint8, "I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16}
Image = require("PIL.Image", extra="data")
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class FileSource:
    """Reads files named relative to a dataset root that is either a folder or a ``.zip`` archive.

    A zip archive is opened lazily on first access in each process (a ``DataLoader`` worker gets its own
    handle: the handle is dropped when the dataset is pickled), and only the requested member is read.

    Args:
        root: folder or ``.zip`` file.
        argument: name of the argument ``root`` came from, used in error messages.
        must_exist: raise now when ``root`` does not exist; ``False`` defers errors to the first read
            (to parse a split list without the data).
    """

    def __init__(self, root: str | os.PathLike[str], argument: str = "root", must_exist: bool = True) -> None:
        self.root = Path(root)
        if not self.root.exists():
            if must_exist:
                raise FileNotFoundError(f"{argument}={str(self.root)!r} does not exist")
            self.is_zip = self.root.suffix.lower() == ".zip"
        else:
            self.is_zip = self.root.is_file() and zipfile.is_zipfile(self.root)
        if self.root.exists() and not self.is_zip and not self.root.is_dir():
            raise ValueError(f"{argument}={str(self.root)!r} is neither a folder nor a zip archive")
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        self._members: frozenset[str] | None = None

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_zip"] = None
        state["_zip_pid"] = None
        return state

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            if not self.root.is_file():
                raise FileNotFoundError(f"zip archive {self.root} not found")
            self._zip = zipfile.ZipFile(self.root)
            self._zip_pid = os.getpid()
        return self._zip

    def members(self) -> frozenset[str]:
        """Names of the files in the zip archive (empty for a folder)."""
        if not self.is_zip:
            return frozenset()
        if self._members is None:
            self._members = frozenset(self._archive().namelist())
        return self._members

    def describe(self, relpath: str) -> str:
        """Human-readable location of ``relpath``: ``archive.zip:member`` or the full path."""
        return f"{self.root}:{relpath}" if self.is_zip else str(self.root / relpath)

    def exists(self, relpath: str) -> bool:
        """Whether ``relpath`` exists under the root (a set lookup for zips, one ``stat`` for folders)."""
        return relpath in self.members() if self.is_zip else (self.root / relpath).is_file()

    def read_bytes(self, relpath: str, where: str) -> bytes:
        """Read a whole file; a missing file raises ``FileNotFoundError`` prefixed by ``where``."""
        if self.is_zip:
            try:
                return self._archive().read(relpath)
            except KeyError:
                raise FileNotFoundError(f"{where}: {self.describe(relpath)} not found in the archive") from None
        path = self.root / relpath
        if not path.is_file():
            raise FileNotFoundError(f"{where}: {path} not found")
        return path.read_bytes()


def read_list(
    list_file: str | os.PathLike[str],
    num_fields: Sequence[int],
    separator: str | None = None,
) -> list[tuple[int, list[str]]]:
    """Parse a split list: one sample per line, ``separator``-separated fields (``None``: whitespace).

    Blank lines are ignored.

    Args:
        list_file: path of the list.
        num_fields: accepted numbers of fields per line.
        separator: field separator, ``None`` for any whitespace.

    Returns:
        ``(line_number, fields)`` pairs, line numbers 1-based.

    Raises:
        FileNotFoundError: the list does not exist.
        ValueError: a line has a number of fields not in ``num_fields`` (the message names file and line).
    """
    path = Path(list_file)
    if not path.is_file():
        raise FileNotFoundError(f"list_file={str(path)!r} not found")
    return parse_list_text(path.read_text(encoding="utf-8"), str(path), num_fields, separator)


def parse_list_text(
    text: str, origin: str, num_fields: Sequence[int], separator: str | None = None
) -> list[tuple[int, list[str]]]:
    """Like :func:`read_list` on text already read (``origin`` names it in errors)."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.strip().split(separator)]
        if len(fields) not in num_fields:
            expected = " or ".join(str(n) for n in num_fields)
            raise ValueError(
                f"list {origin!r}, line {number}: expected {expected} fields separated by "
                f"{'whitespace' if separator is None else repr(separator)}, got {len(fields)}: {line.strip()!r}"
            )
        records.append((number, fields))
    return records


def parse_focal(text: str, where: str) -> float:
    """Parse a focal length field (pixels); must be a positive finite number."""
    try:
        focal = float(text)
    except ValueError:
        raise ValueError(f"{where}: focal length {text!r} is not a number") from None
    if not np.isfinite(focal) or focal <= 0:
        raise ValueError(f"{where}: focal length must be positive and finite, got {focal}")
    return focal


def _open_image(data: bytes, where: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except _DECODE_ERRORS as err:
        raise ValueError(f"{where}: cannot decode image ({err})") from None
    return image


def decode_rgb(data: bytes, where: str) -> torch.Tensor:
    """Decode an RGB image file (jpg/png) to a float32 tensor ``[3, H, W]`` in ``[0, 1]``."""
    image = _open_image(data, where)
    if image.mode != "RGB":
        if image.mode not in {"L", "RGBA", "P", "CMYK", "YCbCr"}:
            raise ValueError(f"{where}: expected an RGB image, got PIL mode {image.mode!r}")
        image = image.convert("RGB")
    return rgb_array_to_tensor(np.asarray(image))


def rgb_array_to_tensor(array: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 array -> float32 tensor ``[3, H, W]`` in ``[0, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float().div_(255.0)


def decode_depth_png(data: bytes, where: str, dtype: type[np.integer], metres_per_unit: float) -> torch.Tensor:
    """Decode a single-channel depth png stored as integers to metres, float32 ``[1, H, W]``.

    The stored integer type is checked against ``dtype`` (never guessed from the values); the value 0
    means "no measurement" and stays 0.

    Args:
        data: the png file's bytes.
        where: location for error messages.
        dtype: ``np.uint8`` or ``np.uint16``, the type the format declares.
        metres_per_unit: scale, e.g. ``1/1000`` for millimetres, ``1/256`` for KITTI, ``10/255`` for Hu's 8 bit.
    """
    image = _open_image(data, where)
    stored = _DEPTH_MODES.get(image.mode)
    if stored is None:
        raise ValueError(
            f"{where}: expected a single-channel {np.dtype(dtype).name} depth png, got PIL mode {image.mode!r}"
        )
    if stored is not dtype:
        raise ValueError(
            f"{where}: depth png stores {np.dtype(stored).name} values but the declared format expects "
            f"{np.dtype(dtype).name} (check the depth format / dataset name)"
        )
    values = np.asarray(image).astype(np.float32)
    return torch.from_numpy(values).mul_(metres_per_unit).unsqueeze(0)
