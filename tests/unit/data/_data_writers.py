"""Writers of tiny dataset files in the real on-disk formats (png/jpg), for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, array: np.ndarray) -> Path:
    """Write an ``[H, W, 3]`` uint8 (RGB) or ``[H, W]`` uint8/uint16 (depth) array; format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(array).save(path)
    return path


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
