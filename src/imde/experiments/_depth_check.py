"""Depth sanity check before long work: the ground truth must have valid pixels inside ``(0, beta]`` metres.

A dataset read in the wrong unit (millimetres where imde expects metres), a preset for another dataset
(``beta`` = 10 m for NYU, 80 m for KITTI) or an all-NaN depth map otherwise shows up only at the end, as
bins without a single pixel. :class:`DepthRangeCheck` looks at the first batch and at the totals, and says
what it saw and what the likely cause is: a first batch whose valid pixels lie mostly beyond ``beta`` stops
the work at once; a first batch without any valid pixel is only a warning (a dataset may hold images
without depth), and the work fails at the end if no batch had a valid pixel in ``(0, beta]``.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch import Tensor

MILLIMETRES_PER_METRE = 1000.0


def depth_range_problem(num_valid: int, num_inside: int, low: float, high: float, beta: float) -> str | None:
    """What is wrong with a depth sample of ``num_valid`` valid pixels, ``num_inside`` of them in ``(0, beta]``.

    Valid means finite and ``> 0``; ``low`` / ``high`` are the smallest and largest valid values. The
    sample is wrong when it has no valid pixel, or when most valid pixels lie beyond ``beta``.

    Returns:
        ``None`` when the sample is fine, else a sentence with the observed range and the likely cause.

    Example:
        >>> depth_range_problem(100, 0, 500.0, 9000.0, beta=10.0)
        'depth: all valid pixels are beyond beta = 10 m (100 of 100, observed range 500 to 9000); it looks like \
millimetres (0.5 to 9 m after dividing by 1000): imde expects metres'
    """
    if num_valid == 0:
        return ("depth: no valid pixel (every value is NaN, inf or <= 0); check the dataset's depth files and "
                "how they are decoded")
    if 2 * num_inside > num_valid:
        return None
    share = "all" if num_inside == 0 else "most"
    message = (f"depth: {share} valid pixels are beyond beta = {beta:g} m ({num_valid - num_inside} of {num_valid}, "
               f"observed range {low:g} to {high:g}); ")
    if beta / 10 < high / MILLIMETRES_PER_METRE <= 2 * beta:  # the deepest pixel is plausible in millimetres
        return message + (f"it looks like millimetres ({low / MILLIMETRES_PER_METRE:g} to "
                          f"{high / MILLIMETRES_PER_METRE:g} m after dividing by 1000): imde expects metres")
    return message + ("check the unit (imde expects metres) and the depth preset or cap for this dataset "
                      "(NYU 10 m, KITTI 80 m)")


class DepthRangeCheck:
    """Counts valid depth pixels over batches; fails on the first batch or at the end with the diagnosis.

    Args:
        beta: the upper end of the depth range of the work (the bins' last edge, the evaluation cap), metres.
        where: the name of the work, for messages (``"dissect"``, ``"evaluate"``).
        first: what the first update holds, for messages.

    Example:
        >>> check = DepthRangeCheck(beta=10.0, where="dissect")
        >>> check.update(torch.tensor([[[2.0, 0.0], [3.0, 12.0]]]))
        >>> check.finish()
    """

    def __init__(self, beta: float, where: str, first: str = "the first batch") -> None:
        self.beta, self.where, self.first = float(beta), where, first
        self.num_batches = 0
        self._totals: Tensor | None = None  # float64 [valid, inside, low, high] over the batches, on their device

    def update(self, depth: Tensor) -> None:
        """Count ``depth``'s pixels (one reduction); the first batch's valid pixels must lie mostly in range.

        Only the first batch is read on the host; later ones are added on their device (no sync per batch).

        Warns:
            UserWarning: the first batch has no valid pixel (the diagnosis; :meth:`finish` fails if none has).

        Raises:
            ValueError: most of the first batch's valid pixels exceed ``beta``.
        """
        valid = torch.isfinite(depth) & (depth > 0)
        inside = valid & (depth <= self.beta)
        low = torch.where(valid, depth, torch.inf).amin()
        high = torch.where(valid, depth, -torch.inf).amax()
        stats = torch.stack([valid.sum().double(), inside.sum().double(), low.double(), high.double()])
        self.num_batches += 1
        if self._totals is None:
            self._totals = stats
            num_valid, num_inside, low, high = stats.tolist()
            if num_valid == 0:
                warnings.warn(f"{self.where}: {self.first}: {depth_range_problem(0, 0, low, high, self.beta)}",
                              stacklevel=3)
            else:
                self._raise_if_wrong(int(num_valid), int(num_inside), low, high, self.first)
            return
        totals = self._totals
        self._totals = torch.stack([totals[0] + stats[0], totals[1] + stats[1], torch.minimum(totals[2], stats[2]),
                                    torch.maximum(totals[3], stats[3])])

    def totals(self) -> tuple[int, int, float, float]:
        """``(valid pixels, pixels in (0, beta], lowest, highest valid depth)`` over the batches so far (one sync)."""
        if self._totals is None:
            return 0, 0, float("inf"), float("-inf")
        num_valid, num_inside, low, high = self._totals.tolist()
        return int(num_valid), int(num_inside), low, high

    def finish(self) -> None:
        """Raise when, over all batches (of all processes under ``torch.distributed``), no valid pixel fell in
        ``(0, beta]``.

        Raises:
            ValueError: with the same diagnosis as :meth:`update`.
        """
        if self._totals is None:
            return
        num_valid, num_inside, low, high = self.totals()
        if dist.is_available() and dist.is_initialized():
            total = torch.tensor(num_inside, dtype=torch.float64,
                                 device="cuda" if dist.get_backend() == "nccl" else "cpu")
            dist.all_reduce(total)
            num_inside = total.item()
        if num_inside == 0:
            self._raise_if_wrong(num_valid, 0, low, high, f"all {self.num_batches} batches")

    def _raise_if_wrong(self, num_valid: int, num_inside: int, low: float, high: float, sample: str) -> None:
        problem = depth_range_problem(num_valid, num_inside, low, high, self.beta)
        if problem is not None:
            raise ValueError(f"{self.where}: {sample}: {problem}")
