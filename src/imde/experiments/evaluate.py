"""Streaming evaluation of a depth network over a DataLoader (paper Sec. 5.1; docs/math.md, "Depth metrics").

Each batch is run on the device, the prediction is bilinearly upsampled (``align_corners=False``) to the
ground truth's resolution (the MFF protocol: 114×152 -> 228×304), and :class:`imde.accumulators.DepthMetrics`
accumulates per-image metrics; memory does not grow with the dataset. Relative (disparity) models are evaluated with
the zero-shot protocol (per-image least-squares scale and shift in disparity, then the metrics in depth), named in
the result's ``protocol``. Under ``torch.distributed`` the
sums are all-reduced, so every rank returns the whole dataset's figures.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from imde.accumulators import DepthMetrics
from imde.core.affine import ZERO_SHOT_PROTOCOL, align_disparity
from imde.core.metrics import METRIC_NAMES
from imde.experiments._depth_check import DepthRangeCheck
from imde.experiments.results import SavedResult, batch_keys, check_batch, limit_batches, safe_name
from imde.hooks import unwrap_model
from imde.models import run_with_features
from imde.utils.device import resolve_device
from imde.utils.io import atomic_path, atomic_write_bytes
from imde.utils.optional import require

ALIGNMENTS = {"none": "metric depth as predicted", "scale_shift_disparity": ZERO_SHOT_PROTOCOL}
"""How a prediction is aligned to the ground truth before the metrics, and the name results carry."""
PNG_SCALES = {"nyu": 1000.0, "kitti": 256.0}
"""16-bit PNG depth scales: millimetres for NYU, ×256 for KITTI (the datasets' own formats)."""
_TABLE_NAMES = {"delta1.02": "d<1.02", "delta1.05": "d<1.05", "delta1.10": "d<1.10", "delta1": "d<1.25",
                "delta2": "d<1.25^2", "delta3": "d<1.25^3", "rms": "RMS", "mae": "MAE", "rel": "REL", "sq_rel": "SqRel",
                "rms_log": "RMSlog", "log10": "log10", "silog": "SILog"}


def align_prediction(
    pred: torch.Tensor, depth: torch.Tensor, *, upsample_to_gt: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring a prediction and its ground truth to one resolution.

    Args:
        pred: predicted depth ``[B, 1, h, w]``.
        depth: ground truth ``[B, 1, H, W]``.
        upsample_to_gt: ``True``: resize ``pred`` to ``H×W`` (bilinear, ``align_corners=False``: evaluation);
            ``False``: resize ``depth`` to ``h×w`` with nearest neighbour (training losses).

    Raises:
        ValueError: shapes that are not ``[B, 1, *, *]`` with the same ``B``.
    """
    if pred.dim() != 4 or pred.shape[1] != 1:
        raise ValueError(f"prediction: expected shape [B, 1, h, w], got {list(pred.shape)}")
    if depth.dim() != 4 or depth.shape[1] != 1 or depth.shape[0] != pred.shape[0]:
        raise ValueError(f"depth: expected shape [{pred.shape[0]}, 1, H, W] (batch of the prediction), "
                         f"got {list(depth.shape)}")
    if pred.shape[-2:] == depth.shape[-2:]:
        return pred, depth
    if upsample_to_gt:
        return F.interpolate(pred, size=depth.shape[-2:], mode="bilinear", align_corners=False), depth
    return pred, F.interpolate(depth, size=pred.shape[-2:], mode="nearest")


@dataclass(frozen=True)
class ExportOptions:
    """Where and how :func:`evaluate` writes its predictions (at the ground truth's resolution).

    Attributes:
        folder: output folder; files are named after ``batch["name"]``.
        format: ``"png"`` (16-bit, depth × ``scale``) or ``"npy"`` (float32 metres).
        scale: PNG scale (``None``: from the model's ``depth_preset``, 1000 for NYU and 256 for KITTI).
        colorize: also write a colour-mapped ``*_color.png`` with fixed limits ``[0, max_depth]``.
        colormap: matplotlib colour map of the colourised maps.
    """

    folder: str | os.PathLike[str]
    format: str = "png"
    scale: float | None = None
    colorize: bool = False
    colormap: str = "magma_r"

    def __post_init__(self) -> None:
        if self.format not in ("png", "npy"):
            raise ValueError(f"export format={self.format!r}: expected 'png' or 'npy'")
        if self.scale is not None and self.scale <= 0:
            raise ValueError(f"export scale={self.scale}: expected a positive number")


@dataclass(frozen=True)
class EvalResult(SavedResult):
    """Dataset-mean metrics and the protocol they were computed with.

    Attributes:
        metrics: mean over images of each metric of :data:`imde.core.metrics.METRIC_NAMES`.
        num_images: images evaluated (with at least one valid pixel).
        num_skipped: images without any valid ground-truth pixel.
        crop: evaluation crop name.
        min_depth: lower depth cap.
        max_depth: upper depth cap.
        intervals: with ``bootstrap``, the 95 % percentile interval ``[low, high]`` of every metric.
        replicates: with ``bootstrap``, every metric's ``R`` bootstrap replicates (paired between models evaluated
            on the same images with the same seed; :mod:`imde.significance`).
        alignment: ``"none"`` (metric predictions) or ``"scale_shift_disparity"`` (the zero-shot protocol of
            relative models, :data:`ALIGNMENTS`).
    """

    FILE = "eval"

    metrics: dict[str, float]
    num_images: int
    num_skipped: int
    crop: str
    min_depth: float
    max_depth: float
    intervals: dict[str, list[float]] = field(default_factory=dict)
    replicates: dict[str, list[float]] = field(default_factory=dict)
    alignment: str = "none"

    @property
    def protocol(self) -> str:
        """One line naming the crop, caps and alignment, printed with every table."""
        aligned = "" if self.alignment == "none" else f", {ALIGNMENTS[self.alignment]}"
        return f"crop={self.crop}, caps=({self.min_depth:g}, {self.max_depth:g}) m, " \
               f"images={self.num_images}, skipped={self.num_skipped}{aligned}"

    def to_table(self) -> str:
        """A console table: one header row of metric names, one row of values, then the protocol."""
        names = [_TABLE_NAMES[n] for n in METRIC_NAMES]
        values = [f"{self.metrics[n]:.4f}" for n in METRIC_NAMES]
        widths = [max(len(a), len(b)) for a, b in zip(names, values, strict=True)]
        header = "  ".join(a.rjust(w) for a, w in zip(names, widths, strict=True))
        row = "  ".join(b.rjust(w) for b, w in zip(values, widths, strict=True))
        return f"{header}\n{row}\n({self.protocol})"

    def to_latex_row(self, label: str = "", names: Sequence[str] = METRIC_NAMES, decimals: int = 3) -> str:
        """``label & v1 & v2 ... \\\\`` for the metrics ``names`` (default: all, in table order)."""
        cells = [label] if label else []
        cells += ["--" if math.isnan(self.metrics[n]) else f"{self.metrics[n]:.{decimals}f}" for n in names]
        return " & ".join(cells) + r" \\"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-able)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        """The inverse of :meth:`to_dict`."""
        return cls(dict(data["metrics"]), int(data["num_images"]), int(data["num_skipped"]), str(data["crop"]),
                   float(data["min_depth"]), float(data["max_depth"]), dict(data.get("intervals") or {}),
                   dict(data.get("replicates") or {}), str(data.get("alignment", "none")))

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The result as JSON text; also written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            atomic_write_bytes(path, text.encode("utf-8"))
        return text


def evaluate(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    *,
    device: str | torch.device = "auto",
    crop: str | None = "none",
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    upsample_to_gt: bool = True,
    max_batches: int | None = None,
    progress: bool = True,
    export: ExportOptions | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    alignment: str | None = None,
) -> EvalResult:
    """Evaluate ``model`` over ``loader`` with the per-image depth metrics (Sec. 5.1).

    The model runs in eval mode without gradients (its mode is restored afterwards); batches are fed
    through ``imde.models.run_model`` (image, sparse depth, focal as the model needs).

    Args:
        model: a depth network (the model contract of ``docs/architecture.md``).
        loader: iterable of batch dicts with ``image`` and ``depth`` ``[B, 1, H, W]`` (metres, 0 = invalid).
        device: where to run.
        crop: evaluation crop (``imde.data.crop_mask`` names; ``None`` means ``"none"``).
        min_depth: lower cap.
        max_depth: upper cap.
        upsample_to_gt: upsample the prediction to the ground truth (else resize the gt to the prediction).
        max_batches: stop after this many batches.
        progress: show a progress bar.
        export: write the predictions (and colour maps) as files.
        bootstrap: Poisson-bootstrap replicates of the metrics, weighted by the images' names (0: none).
        seed: seed of the replicates.
        alignment: ``"none"`` or ``"scale_shift_disparity"``: the zero-shot protocol for relative models (a
            per-image least-squares scale and shift of the predicted disparity to ``1 / depth`` over the valid
            pixels within the caps, then the metrics in depth); default: the model's ``prediction`` (relative
            ``"disparity"`` models get the zero-shot protocol).

    Raises:
        ValueError: bad caps or crop name, a batch without ``image``/``depth``, or a loader that yields nothing.
    """
    metrics = DepthMetrics(min_depth=min_depth, max_depth=max_depth, crop=crop or "none", bootstrap=bootstrap,
                           seed=seed)
    alignment = default_alignment(model) if alignment is None else alignment
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment={alignment!r}: expected one of {', '.join(ALIGNMENTS)}")
    dev = resolve_device(device)
    model.to(dev)
    depth_check = DepthRangeCheck(max_depth, f"evaluate (max_depth {max_depth:g} m)")
    num_batches = 0
    for batch in tqdm(limit_batches(loader, max_batches), desc="evaluate", disable=not progress):
        check_batch(batch)
        depth = batch["depth"].to(dev)
        depth_check.update(depth)
        pred, _ = run_with_features(model, batch, device=dev)
        pred, depth = align_prediction(pred.float(), depth, upsample_to_gt=upsample_to_gt)
        if alignment == "scale_shift_disparity":
            valid = torch.isfinite(depth) & (depth > min_depth) & (depth <= max_depth)
            pred = align_disparity(pred, depth, valid, min_depth)
        metrics.update(pred, depth, keys=batch_keys(batch))
        if export is not None:
            _export_batch(pred, batch, export, model, max_depth, num_batches)
        num_batches += 1
    if num_batches == 0:
        raise ValueError("evaluate: the loader yielded no batches (empty split?)")
    depth_check.finish()
    metrics.all_reduce()
    intervals: dict[str, list[float]] = {}
    replicates: dict[str, list[float]] = {}
    if bootstrap:
        from imde.significance import metric_intervals

        intervals = {name: list(bounds) for name, bounds in metric_intervals(metrics).items()}
        replicates = {name: column.tolist() for name, column in zip(METRIC_NAMES, metrics.replicates().T, strict=True)}
    return EvalResult(metrics.compute(), metrics.num_images, metrics.num_skipped, metrics.crop, min_depth, max_depth,
                      intervals, replicates, alignment)


def default_alignment(model: nn.Module) -> str:
    """``"scale_shift_disparity"`` for models that declare ``prediction = "disparity"`` (relative), else ``"none"``."""
    inner = unwrap_model(model)
    return "scale_shift_disparity" if getattr(inner, "prediction", "depth") == "disparity" else "none"


def _export_batch(
    pred: torch.Tensor, batch: Mapping[str, Any], options: ExportOptions, model: nn.Module, max_depth: float,
    batch_index: int,
) -> None:
    """Write one file per image of the batch (file I/O, not a hot path)."""
    folder = Path(options.folder)
    names = batch.get("name")
    depth = pred[:, 0].clamp(0.0, max_depth).cpu().numpy().astype(np.float32)
    scale = options.scale or PNG_SCALES.get(getattr(model, "depth_preset", "nyu"), 1000.0)
    for i, image in enumerate(depth):
        stem = safe_name(os.path.splitext(str(names[i]))[0]) if names is not None else f"{batch_index:06d}_{i:03d}"
        if options.format == "npy":
            with atomic_path(folder / f"{stem}.npy") as tmp, open(tmp, "wb") as handle:
                np.save(handle, image)
        else:
            _write_png(folder / f"{stem}.png", np.clip(np.round(image * scale), 0, 65535).astype(np.uint16))
        if options.colorize:
            _write_png(folder / f"{stem}_color.png", _colorize(image, max_depth, options.colormap))


def _write_png(path: Path, array: np.ndarray) -> None:
    Image = require("PIL.Image", extra="viz")

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def _colorize(depth: np.ndarray, max_depth: float, colormap: str) -> np.ndarray:
    """``uint8 [H, W, 3]`` colour map of ``depth`` with fixed limits ``[0, max_depth]``."""
    colormaps = require("matplotlib", extra="viz").colormaps

    rgba = colormaps[colormap](np.clip(depth / max_depth, 0.0, 1.0))
    return (rgba[..., :3] * 255).round().astype(np.uint8)


@dataclass(frozen=True)
class EvalSettings:
    """Evaluation protocol shared by correction and ablation (docs/math.md, "Depth metrics").

    Attributes:
        device: where to run (``"cpu"``, ``"cuda"``, ``"auto"``).
        crop: crop name understood by ``imde.experiments.evaluate`` (``None``: no crop).
        min_depth: smallest valid ground-truth depth.
        max_depth: largest valid ground-truth depth (``None``: the model's ``max_depth``).
        max_batches: evaluate at most this many batches (``None``: the whole loader).
        progress: show progress bars.
        bootstrap: bootstrap replicates of the metrics (0: none).
        seed: seed of the replicates.
        alignment: see :func:`evaluate` (``None``: from the model).
    """

    device: str | torch.device = "cpu"
    crop: str | None = None
    min_depth: float = 1e-3
    max_depth: float | None = None
    max_batches: int | None = None
    progress: bool = False
    bootstrap: int = 0
    seed: int = 0
    alignment: str | None = None

    def __post_init__(self) -> None:
        if self.max_batches is not None and self.max_batches < 1:
            raise ValueError(f"max_batches={self.max_batches}: expected a positive number of batches or None")
        if self.max_depth is not None and self.max_depth <= self.min_depth:
            raise ValueError(f"max_depth={self.max_depth}: expected a value above min_depth={self.min_depth}")


def evaluate_with(model: torch.nn.Module, loader: Iterable[Any], settings: EvalSettings) -> EvalResult:
    """Run :func:`evaluate` with ``settings`` (``max_depth`` defaulting to the model's)."""
    max_depth = settings.max_depth if settings.max_depth is not None else getattr(model, "max_depth", None)
    if max_depth is None:
        raise ValueError("max_depth: the model declares no max_depth; pass max_depth explicitly")
    return evaluate(
        model,
        loader,
        device=settings.device,
        crop=settings.crop,
        min_depth=settings.min_depth,
        max_depth=float(max_depth),
        max_batches=settings.max_batches,
        progress=settings.progress,
        bootstrap=settings.bootstrap,
        seed=settings.seed,
        alignment=settings.alignment,
    )


class TrackedLoader:
    """Re-yields a loader's batches and keeps the one being evaluated in ``current``.

    Forward hooks that need the ground truth of the batch in flight (the correction) read ``current``; this
    relies on the evaluation consuming each batch before asking for the next, as a plain ``for`` loop does.
    """

    def __init__(self, loader: Iterable[Mapping[str, Any]]) -> None:
        self.loader = loader
        self.current: Mapping[str, Any] | None = None

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        for batch in self.loader:
            check_batch(batch)
            self.current = batch
            yield batch
        self.current = None

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]
