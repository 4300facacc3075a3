"""Atomic writes: content replaced in one step, old content kept on failure, usual file permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from imde.utils.io import atomic_write_json, atomic_write_text


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
