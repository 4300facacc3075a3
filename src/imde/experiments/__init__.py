"""The paper's experiments as library functions returning result dataclasses (``to_dict()`` is JSON-able).

- ``compute_responses`` / ``run_dissect``: dissection by depth (Eq. 1-3; Tables 1, 4, 7).
- ``compare_reg_assign``: L_reg vs L_assign vs baseline (Table 2).
- ``run_correction``: test-time replacement of responses by their training means (Sec. 5.2, Table 3, Fig. 7).
- ``run_ablation``: successive ablation by selectivity (Fig. 2).
- ``run_explain``: FGSM error analysis through the depth-selective units (Fig. 8).
- ``unit_views``: a unit's feature map and the pixels of its depth bin (Fig. 1, 5).
"""

from __future__ import annotations

from imde.experiments.ablate import AblationResult as AblationResult
from imde.experiments.ablate import run_ablation as run_ablation
from imde.experiments.compare import ComparisonTable as ComparisonTable
from imde.experiments.compare import compare_reg_assign as compare_reg_assign
from imde.experiments.correct import CorrectionResult as CorrectionResult
from imde.experiments.correct import run_correction as run_correction
from imde.experiments.dissect import DissectResult as DissectResult
from imde.experiments.dissect import LayerDissection as LayerDissection
from imde.experiments.dissect import compute_responses as compute_responses
from imde.experiments.dissect import run_dissect as run_dissect
from imde.experiments.dissect import run_random_control as run_random_control
from imde.experiments.evaluate import EvalResult as EvalResult
from imde.experiments.evaluate import EvalSettings as EvalSettings
from imde.experiments.evaluate import evaluate as evaluate
from imde.experiments.explain import ExplainResult as ExplainResult
from imde.experiments.explain import run_explain as run_explain
from imde.experiments.features import UnitView as UnitView
from imde.experiments.features import unit_views as unit_views

__all__ = [
    "AblationResult",
    "ComparisonTable",
    "CorrectionResult",
    "DissectResult",
    "EvalResult",
    "EvalSettings",
    "ExplainResult",
    "LayerDissection",
    "UnitView",
    "compare_reg_assign",
    "compute_responses",
    "evaluate",
    "run_ablation",
    "run_correction",
    "run_dissect",
    "run_random_control",
    "run_explain",
    "unit_views",
]
