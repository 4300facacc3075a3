"""Fixtures of the experiment tests (the tiny models live in ``_tiny_models``)."""

from __future__ import annotations

import pytest
from _tiny_models import make_batches


@pytest.fixture
def batches() -> list[dict[str, object]]:
    return make_batches(3, 2)
