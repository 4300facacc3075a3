"""Large CPU tensors backed by transparent huge pages where the kernel grants them only on request.

A fresh CPU tensor of tens of MB is fresh memory: glibc maps it anew and the kernel faults it in 4 KiB page
by page on first touch. Where transparent huge pages are in ``madvise`` mode (the default of many Linux
distributions), advising the range ``MADV_HUGEPAGE`` before the first touch makes that 2 MiB at a time.
On the 2-core VM of ``docs/benchmarks.md``, in a fresh process, allocating and filling a 35 MB float32
tensor took about 20 ms plainly and 4-5 ms advised; where glibc hands back memory that is already faulted
in (as in ``benchmarks/bench_core.py``, after its loops ran) it makes no difference. The advice is only a
hint: where it is refused or meaningless (THP ``never`` or ``always``, another OS, another device) the tensor
is an ordinary ``torch.empty``.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

import torch
from torch import Tensor

HUGE_PAGE = 1 << 21  # bytes of an x86-64 / arm64 transparent huge page
MADV_HUGEPAGE = 14  # <sys/mman.h> on Linux


def _load_madvise() -> Callable[[ctypes.c_void_p, ctypes.c_size_t, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None


_madvise = _load_madvise()


def empty_huge(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """``torch.empty(shape)``, with the 2 MiB-aligned interior of a large CPU buffer advised to use huge pages.

    Advises only the whole huge pages that lie inside the tensor's own bytes (none for a small tensor), before
    anything touches them.
    """
    tensor = torch.empty(shape, dtype=dtype, device=device)
    if _madvise is None or tensor.device.type != "cpu":
        return tensor
    begin = tensor.data_ptr()
    start = -(-begin // HUGE_PAGE) * HUGE_PAGE
    stop = (begin + tensor.numel() * tensor.element_size()) // HUGE_PAGE * HUGE_PAGE
    if stop - start >= HUGE_PAGE:
        _madvise(ctypes.c_void_p(start), ctypes.c_size_t(stop - start), MADV_HUGEPAGE)  # a hint: result ignored
    return tensor
