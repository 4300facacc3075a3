"""Optional dependencies: the core needs only torch and numpy; each heavier part names the extra it needs.

>>> require("math", extra="viz").sqrt(4.0)
2.0
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {
    "models": "the network definitions (timm, torchvision)",
    "data": "the dataset loaders and transforms (torchvision, pillow, h5py, scipy, pybullet)",
    "viz": "figures, unit atlases and the report (matplotlib, jinja2, pillow)",
    "train": "training logs (tensorboard)",
    "hf": "Hugging Face models (transformers, safetensors)",
}


def require(module: str, *, extra: str) -> ModuleType:
    """Import ``module``, or raise an ``ImportError`` that says which extra of imde installs it.

    Args:
        module: the dotted module name, e.g. ``"matplotlib.figure"``.
        extra: the ``pyproject`` extra that provides it (a key of :data:`EXTRAS`).

    Raises:
        ImportError: ``module`` cannot be imported; the message names it and ``pip install 'imde[<extra>]'``.
    """
    if extra not in EXTRAS:
        raise ValueError(f"extra={extra!r}: expected one of {', '.join(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{module} is needed for {EXTRAS[extra]} and is not installed: "
                          f"pip install 'imde[{extra}]' (or 'imde[all]')") from err
