"""Fixtures for the data tests: tiny datasets written in their real on-disk formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _data_writers import random_rgb, write_image


@pytest.fixture
def nyu_sync(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Two BTS "sync" NYU frames (6x8) with known millimetre depths, and their list (first line with a leading /).

    Returns the root, the list file and ``{image path: depth in mm}``.
    """
    root = tmp_path / "sync"
    depths = {}
    lines = []
    for index, scene in ((3, "kitchen_0028b"), (7, "office_0001")):
        mm = np.arange(48, dtype=np.uint16).reshape(6, 8) * 211 + 1000 + index
        mm[0, :3] = 0  # holes
        write_image(root / scene / f"rgb_{index:05d}.jpg", random_rgb(6, 8, index))
        write_image(root / scene / f"sync_depth_{index:05d}.png", mm)
        depths[f"{scene}/rgb_{index:05d}.jpg"] = mm
        lines.append(f"{scene}/rgb_{index:05d}.jpg {scene}/sync_depth_{index:05d}.png 518.8579")
    lines[0] = "/" + lines[0].replace(" ", " /", 1)
    list_file = tmp_path / "nyudepthv2_test_files_with_gt.txt"
    list_file.write_text("\n".join(lines) + "\n")
    return root, list_file, depths
