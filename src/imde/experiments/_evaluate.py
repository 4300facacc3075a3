"""How the experiments evaluate a (possibly edited) model: one settings object, one call into ``imde.evaluate``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from imde.experiments._results import check_batch


@dataclass(frozen=True)
class EvalSettings:
    """Evaluation protocol shared by correction and ablation (spec "Depth metrics").

    Attributes:
        device: where to run (``"cpu"``, ``"cuda"``, ``"mps"``, ``"auto"``).
        crop: crop name understood by ``imde.evaluate`` (``None``: no crop).
        min_depth: smallest valid ground-truth depth.
        max_depth: largest valid ground-truth depth (``None``: the model's ``max_depth``).
        max_batches: evaluate at most this many batches (``None``: the whole loader).
        progress: show progress bars.
    """

    device: str | torch.device = "cpu"
    crop: str | None = None
    min_depth: float = 1e-3
    max_depth: float | None = None
    max_batches: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.max_batches is not None and self.max_batches < 1:
            raise ValueError(f"max_batches={self.max_batches}: expected a positive number of batches or None")
        if self.max_depth is not None and self.max_depth <= self.min_depth:
            raise ValueError(f"max_depth={self.max_depth}: expected a value above min_depth={self.min_depth}")


def evaluate_metrics(model: torch.nn.Module, loader: Iterable[Any], settings: EvalSettings) -> dict[str, float]:
    """Run ``imde.evaluate.evaluate`` with ``settings`` and return its metrics dict (``delta1``, ``rms``, ...)."""
    from imde.evaluate import evaluate

    max_depth = settings.max_depth if settings.max_depth is not None else getattr(model, "max_depth", None)
    if max_depth is None:
        raise ValueError("max_depth: the model declares no max_depth; pass max_depth explicitly")
    result = evaluate(
        model,
        loader,
        device=settings.device,
        crop=settings.crop,
        min_depth=settings.min_depth,
        max_depth=float(max_depth),
        max_batches=settings.max_batches,
        progress=settings.progress,
    )
    return {name: float(value) for name, value in result.metrics.items()}


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
