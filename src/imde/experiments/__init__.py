"""The paper's experiments as library functions returning result dataclasses (``to_dict()`` is JSON-able).

- ``compute_responses`` / ``run_dissect``: dissection by depth (Eq. 1-3; Tables 1, 4, 7).
- ``compare_reg_assign``: L_reg vs L_assign vs baseline (Table 2).
- ``run_correction``: test-time replacement of responses by their training means (Sec. 5.2, Table 3, Fig. 7).
- ``run_ablation``: successive ablation by selectivity (Fig. 2).
- ``run_explain``: FGSM error analysis through the depth-selective units (Fig. 8).
- ``unit_views``: a unit's feature map and the pixels of its depth bin (Fig. 1, 5).

Names are resolved lazily so that importing one experiment does not import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "EvalSettings": "imde.experiments._evaluate",
    "compute_responses": "imde.experiments.dissect",
    "run_dissect": "imde.experiments.dissect",
    "DissectResult": "imde.experiments.dissect",
    "LayerDissection": "imde.experiments.dissect",
    "compare_reg_assign": "imde.experiments.compare",
    "ComparisonTable": "imde.experiments.compare",
    "run_correction": "imde.experiments.correct",
    "CorrectionResult": "imde.experiments.correct",
    "run_ablation": "imde.experiments.ablate",
    "AblationResult": "imde.experiments.ablate",
    "unit_views": "imde.experiments.features",
    "UnitView": "imde.experiments.features",
    "run_explain": "imde.experiments.explain",
    "ExplainResult": "imde.experiments.explain",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'imde.experiments' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
