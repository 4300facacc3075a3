"""Base class of the datasets described by a split list of (image, depth, focal) lines.

It owns what the NYU and KITTI list readers share: the record list, the check that listed files exist,
the per-sample checks (image/depth sizes agree, some depth is valid), ``on_error="raise"|"skip"`` and
the transform call. Subclasses only say how a record's depth png is decoded.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from imde.data._io import FileSource, decode_rgb, parse_focal

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]

ON_ERROR_CHOICES = ("raise", "skip")
# With on_error="skip", give up after this many unreadable samples in a row (a broken root, not a few bad files).
MAX_CONSECUTIVE_FAILURES = 16


@dataclass(frozen=True)
class Record:
    """One list line: image and depth paths relative to their roots, focal length (pixels) if known."""

    line: int
    image: str
    depth: str
    focal: float | None

    @property
    def name(self) -> str:
        """Sample name: the image path relative to the root."""
        return self.image


def check_on_error(on_error: str) -> str:
    """Validate the ``on_error`` option."""
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    return on_error


class ListedDataset(Dataset[Sample], ABC):
    """Samples read from an image root and a depth root following a parsed split list.

    Args:
        records: parsed list lines.
        images: where image paths are resolved.
        depths: where depth paths are resolved (may be the same source as ``images``).
        list_name: the list's name for error messages.
        transform: joint sample transform (see :mod:`imde.data.transforms`), or ``None`` for the raw sample.
        on_error: ``"raise"`` (default) stops at the first bad sample; ``"skip"`` drops listed files that do not
            exist at construction (``num_skipped``) and replaces an unreadable sample by the next readable one at
            load time (``num_load_errors``, counted per process), with a warning.
        check_files: check at construction that every listed file exists (one ``stat`` per file, or a set
            lookup in a zip); ``False`` defers the check to loading.
        skipped: reasons for list lines the subclass already dropped (counted in ``num_skipped``).
    """

    def __init__(
        self,
        records: list[Record],
        images: FileSource,
        depths: FileSource,
        list_name: str,
        transform: Transform | None = None,
        on_error: str = "raise",
        check_files: bool = True,
        skipped: Sequence[str] = (),
    ) -> None:
        self.images = images
        self.depths = depths
        self.list_name = list_name
        self.transform = transform
        self.on_error = check_on_error(on_error)
        self.skipped = list(skipped)
        self.num_load_errors = 0
        self.records = self._existing(records) if check_files else records
        self.report_skipped()
        if not self.records:
            raise ValueError(f"list {list_name!r} yields no sample ({len(self.skipped)} skipped)")

    @property
    def num_skipped(self) -> int:
        """Number of list lines dropped at construction (no ground truth, or missing files when skipping)."""
        return len(self.skipped)

    def where(self, record: Record) -> str:
        """Location of a record for error messages."""
        return f"list {self.list_name!r}, line {record.line}"

    def skip(self, reason: str) -> None:
        """Record a dropped list line."""
        self.skipped.append(reason)

    def report_skipped(self) -> None:
        """Warn once about the lines dropped at construction."""
        if self.skipped:
            message = f"list {self.list_name!r}: skipped {len(self.skipped)} line(s), first: {self.skipped[0]}"
            warnings.warn(message, stacklevel=3)

    def _existing(self, records: list[Record]) -> list[Record]:
        kept = []
        for record in records:
            missing = [
                source.describe(path)
                for source, path in ((self.images, record.image), (self.depths, record.depth))
                if not source.exists(path)
            ]
            if not missing:
                kept.append(record)
            elif self.on_error == "raise":
                raise FileNotFoundError(f"{self.where(record)}: {missing[0]} not found")
            else:
                self.skip(f"{self.where(record)}: {missing[0]} not found")
        return kept

    def __len__(self) -> int:
        return len(self.records)

    @abstractmethod
    def decode_depth(self, data: bytes, where: str) -> torch.Tensor:
        """Decode one depth file to metres ``[1, H, W]`` (0 = invalid); implemented by each dataset."""

    def load(self, record: Record) -> Sample:
        """Read and check one record, without transform."""
        where = self.where(record)
        image = decode_rgb(self.images.read_bytes(record.image, where), f"{where}: image {record.image!r}")
        depth_where = f"{where}: depth {record.depth!r}"
        depth = self.decode_depth(self.depths.read_bytes(record.depth, where), depth_where)
        check_pair(image, depth, depth_where)
        sample: Sample = {"image": image, "depth": depth, "name": record.name}
        if record.focal is not None:
            sample["focal"] = record.focal
        return sample

    def __getitem__(self, index: int) -> Sample:
        for attempt in range(MAX_CONSECUTIVE_FAILURES):
            record = self.records[(index + attempt) % len(self.records)]
            try:
                sample = self.load(record)
            except (ValueError, FileNotFoundError) as err:
                if self.on_error == "raise":
                    raise
                self.num_load_errors += 1
                warnings.warn(f"skipping unreadable sample: {err}", stacklevel=2)
                continue
            return self.transform(sample) if self.transform is not None else sample
        raise ValueError(
            f"list {self.list_name!r}: {MAX_CONSECUTIVE_FAILURES} unreadable samples in a row from index {index}; "
            "check the dataset roots"
        )


def check_pair(image: torch.Tensor, depth: torch.Tensor, where: str) -> None:
    """Check that an image ``[3,H,W]`` and a depth map ``[1,H,W]`` match and that some depth is valid."""
    if image.shape[-2:] != depth.shape[-2:]:
        raise ValueError(
            f"{where}: depth size {tuple(depth.shape[-2:])} does not match image size {tuple(image.shape[-2:])} (H, W)"
        )
    if not bool((depth > 0).any()):
        raise ValueError(f"{where}: depth map has no valid pixel (all values are 0)")


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def make_record(line: int, fields: list[str], origin: str, default_focal: float | None) -> Record:
    """Build a record from ``image depth [focal]`` fields, checking the file types.

    A leading ``/`` (as in BTS's NYU train list) is dropped: paths are always relative to their root.
    """
    where = f"list {origin!r}, line {line}"
    image, depth = (field.lstrip("/") for field in fields[:2])
    if not image.lower().endswith(IMAGE_SUFFIXES):
        raise ValueError(f"{where}: first field should be an image ({'/'.join(IMAGE_SUFFIXES)}), got {fields[0]!r}")
    if not depth.lower().endswith(".png"):
        raise ValueError(f"{where}: second field should be a depth .png, got {fields[1]!r}")
    focal = parse_focal(fields[2], where) if len(fields) > 2 else default_focal
    return Record(line=line, image=image, depth=depth, focal=focal)


def require_list(list_file: str | None, dataset: str, needed: str) -> str:
    """Fail with a pointer to the distributed split list when ``list_file`` is missing."""
    if list_file is None:
        raise ValueError(
            f"dataset {dataset!r} needs list_file=: {needed}. imde does not redistribute split lists; "
            "pass the list that came with your copy of the data"
        )
    return str(list_file)
