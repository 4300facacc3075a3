"""Device names: auto picks CUDA or the CPU, never MPS (no float64); bad names and missing backends are refused."""

from __future__ import annotations

import pytest
import torch

from imde.utils.device import resolve_device


def test_auto_never_picks_mps_even_where_it_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("device", ["mps", "MPS", "mps:0", torch.device("mps")])
def test_mps_is_refused_with_the_reason(monkeypatch: pytest.MonkeyPatch, device: object) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    with pytest.raises(ValueError, match=r"(?i)device=.*mps.*: the MPS backend has no float64.*use device=cpu"):
        resolve_device(device)


def test_unknown_names_and_missing_cuda_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"device='tpu': expected one of auto, cpu, cuda, mps"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available on this machine"):
        resolve_device("cuda:1")
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(torch.device("cpu")).type == "cpu"
