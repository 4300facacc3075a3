"""``imde.data.create``: names, split checking and the lazy dispatch to the rendered dataset."""

from __future__ import annotations

import sys
import types

import pytest

from imde.data import create, list_datasets


def test_names():
    assert list_datasets() == ["kitti_eigen", "nyu_bts", "nyu_h5", "nyu_hu_csv", "nyu_mat", "rendered"]


def test_unknown_name_and_split(tmp_path):
    with pytest.raises(ValueError, match=r"unknown dataset name 'nyu'; choose one of \['kitti_eigen'"):
        create("nyu", tmp_path)
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        create("nyu_bts", tmp_path, split="val")


def test_rendered_is_dispatched_lazily(monkeypatch, tmp_path):
    calls = []

    class FakeRendered:
        def __init__(self, root, split="train", transform=None, **options):
            calls.append((root, split, transform, options))

    module = types.ModuleType("imde.data.rendered")
    module.RenderedDataset = FakeRendered
    monkeypatch.setitem(sys.modules, "imde.data.rendered", module)
    dataset = create("rendered", tmp_path, split="test", size=(32, 40))
    assert isinstance(dataset, FakeRendered)
    assert calls == [(tmp_path, "test", None, {"size": (32, 40)})]
    with pytest.raises(ValueError, match="takes no list_file"):
        create("rendered", tmp_path, list_file="x.txt")

