"""Shared test fixtures: paths to the optional real samples in ../shared, seeds, small thread counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IMDE_SHARED", REPO_ROOT.parent / "shared"))

# Two pytest-xdist workers share two cores: one intra-op thread each keeps them from fighting.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``../shared`` folder with real fixtures and split lists; skips the test when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found (real samples are optional)")
    return SHARED


@pytest.fixture(scope="session")
def fixtures_dir(shared_dir: Path) -> Path:
    path = shared_dir / "fixtures"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def splits_dir(shared_dir: Path) -> Path:
    path = shared_dir / "splits"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
