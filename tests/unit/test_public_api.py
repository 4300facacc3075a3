"""The names that code outside imde imports (issue 2's contract) resolve to the implementing objects."""

from __future__ import annotations

import importlib

import pytest

import imde


@pytest.mark.parametrize("name", sorted(imde._EXPORTS))
def test_public_name_resolves_to_its_module(name: str) -> None:
    module = importlib.import_module(imde._EXPORTS[name])
    assert getattr(imde, name) is getattr(module, name)


@pytest.mark.parametrize("name", ["models", "data", "losses", "metrics", "evaluate", "training", "experiments", "viz"])
def test_submodules_are_reachable_as_attributes(name: str) -> None:
    assert getattr(imde, name) is importlib.import_module(f"imde.{name}")


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        imde.nope  # noqa: B018
