"""empty_huge advises exactly the whole huge pages inside a large CPU tensor, and is a plain empty otherwise."""

from __future__ import annotations

import ctypes

import pytest
import torch

import imde.utils.memory as memory


@pytest.fixture
def advised(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    calls: list[tuple[int, int, int]] = []

    def record(start: ctypes.c_void_p, length: ctypes.c_size_t, advice: int) -> int:
        calls.append((start.value, length.value, advice))
        return 0

    monkeypatch.setattr(memory, "_madvise", record)
    return calls


def test_a_large_tensor_gets_its_aligned_interior_advised(advised) -> None:
    tensor = memory.empty_huge((3, 1_000_000), torch.float32, "cpu")  # 12 MB
    assert tensor.shape == (3, 1_000_000) and tensor.dtype == torch.float32 and tensor.device.type == "cpu"
    ((start, length, advice),) = advised
    begin, end = tensor.data_ptr(), tensor.data_ptr() + tensor.numel() * 4
    assert advice == memory.MADV_HUGEPAGE
    assert start % memory.HUGE_PAGE == 0 and length % memory.HUGE_PAGE == 0 and length > 0
    assert begin <= start < start + length <= end  # never outside the tensor's own bytes
    assert start - begin < memory.HUGE_PAGE and end - (start + length) < memory.HUGE_PAGE  # all whole pages
    tensor.fill_(2.0)
    assert float(tensor.sum()) == 6_000_000.0


def test_small_tensors_and_other_platforms_get_no_advice(advised, monkeypatch) -> None:
    assert memory.empty_huge((1000,), torch.float64, "cpu").shape == (1000,)
    assert advised == []  # no whole huge page inside 8 kB
    monkeypatch.setattr(memory, "_madvise", None)  # not Linux, or no madvise in libc
    tensor = memory.empty_huge((4, 1_000_000), torch.float32, torch.device("cpu"))
    assert tensor.shape == (4, 1_000_000) and advised == []
