"""The names that code outside imde imports keep resolving, and need only torch and numpy."""

from __future__ import annotations

import importlib

import pytest

import imde

CONTRACT = (
    "sid_edges", "uniform_edges", "log_edges", "dataset_edges", "DEPTH_PRESETS", "digitize", "assign_bins",
    "depth_selectivity", "dead_units", "preferred_bins", "random_baseline", "AssignLoss", "SelectivityRegLoss",
    "DepthResponse", "LayerTap", "edit_layers", "compare_selectivity",
)


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_name_is_exported(name: str) -> None:
    assert name in imde.__all__
    assert getattr(imde, name) is not None


@pytest.mark.parametrize("name", ["create", "list", "load_checkpoint"])
def test_models_contract(name: str) -> None:
    assert callable(getattr(importlib.import_module("imde.models"), name))


def test_data_contract() -> None:
    assert callable(importlib.import_module("imde.data").create)
