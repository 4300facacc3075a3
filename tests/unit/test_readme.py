"""The README's Python example runs as written, trains (the loss has a gradient) and uses only public names."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

import imde

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_quick_start_example_runs_and_trains() -> None:
    code = python_blocks()[0]
    torch.manual_seed(0)
    out = io.StringIO()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    match = re.fullmatch(r"selectivity (\d\.\d{3}) \(random units: (\d\.\d{3})\)\n", out.getvalue())
    assert match, out.getvalue()
    assert float(match.group(2)) == pytest.approx(imde.random_baseline(16), abs=5e-4)
    # the loss was computed with gradients and the optimiser stepped on them
    assert namespace["loss"].requires_grad
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in namespace["net"].parameters())


def test_the_example_uses_only_public_names() -> None:
    used = set(re.findall(r"\bimde\.(\w+)", python_blocks()[0]))
    assert used and used <= set(imde.__all__), used - set(imde.__all__)
