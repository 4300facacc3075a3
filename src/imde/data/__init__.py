"""Depth datasets (NYU Depth V2, KITTI Eigen, the embedded rendered rooms) and joint image/depth transforms.

``create(name, root, split, list_file, transform, **options)`` is the entry point; see ``docs/datasets.md``.
"""

from __future__ import annotations

from imde.core.crops import crop_box as crop_box
from imde.core.crops import crop_mask as crop_mask
from imde.core.crops import kb_crop as kb_crop
from imde.data._registry import create as create
from imde.data._registry import list_datasets as list_datasets

__all__ = ["create", "crop_box", "crop_mask", "kb_crop", "list_datasets"]
