"""Atomic writes: content replaced in one step, old content kept on failure, usual file permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from imde.utils.io import atomic_write_json, atomic_write_text, read_torch_file


def test_replaces_content_and_uses_umask_permissions(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "a" / "report.html", "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temporary file left


def test_failure_keeps_previous_content(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "results.json", '{"ok": 1}')
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert path.read_text() == '{"ok": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


class _NotATensor:
    pass


@pytest.mark.parametrize("zip_format", [True, False])
def test_read_torch_file_reads_both_formats_and_names_each_failure(tmp_path: Path, zip_format: bool) -> None:
    state = {"w": torch.arange(6.0).view(2, 3), "format": "x"}
    good = tmp_path / "good.pt"
    torch.save(state, good, _use_new_zipfile_serialization=zip_format)
    loaded = read_torch_file(good, "checkpoint")
    assert torch.equal(loaded["w"], state["w"]) and loaded["format"] == "x"
    # cut short: a truncated download or a full disk
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"checkpoint '.*cut\.pt' cannot be read: truncated or corrupt"):
        read_torch_file(cut, "checkpoint")
    # Python objects that weights_only refuses, in a valid file
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"obj": _NotATensor()}, unsafe, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(ValueError, match="holds Python objects besides tensors.*allow_unsafe=True"):
        read_torch_file(unsafe, "checkpoint")
    assert isinstance(read_torch_file(unsafe, "checkpoint", weights_only=False)["obj"], _NotATensor)


def test_read_torch_file_refuses_files_that_are_not_torch_files(tmp_path: Path) -> None:
    garbage = tmp_path / "g.pt"
    garbage.write_text("garbage\n")
    with pytest.raises(ValueError, match=r"state file '.*g\.pt' is not a PyTorch file"):
        read_torch_file(garbage, "state file")
    with pytest.raises(FileNotFoundError, match=r"checkpoint '.*missing\.pt' not found"):
        read_torch_file(tmp_path / "missing.pt", "checkpoint")
