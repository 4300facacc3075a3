"""Table 2 from dissections and evaluations."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from imde.accumulators import DepthResponse
from imde.core.bins import dataset_edges
from imde.experiments.compare import TABLE2_METRICS, compare_reg_assign
from imde.experiments.dissect import DissectResult


def _dissection(splits: dict[str, torch.Tensor]) -> DissectResult:
    """A dissection whose single layer has the given mean responses ``[K, 3]`` per split."""
    responses = {}
    for split, mean in splits.items():
        response = DepthResponse(mean.shape[0], dataset_edges("nyu", 3))
        response.sums, response.counts = mean.double().clone(), torch.ones(3, dtype=torch.int64)
        responses[split] = {"D": response}
    return DissectResult.from_responses(responses)


def test_table_rows_by_hand(tmp_path):
    one_hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])  # DS = 1 for both units
    flat = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])  # DS = 0
    half = torch.tensor([[3.0, 1.0, 1.0], [1.0, 3.0, 1.0]])  # DS = (3 - 1) / (3 + 1) = 0.5
    metrics = {name: 0.1 * i for i, name in enumerate(TABLE2_METRICS)}
    table = compare_reg_assign(
        {
            "baseline": (_dissection({"train": flat, "test": half}), metrics),
            "assign": (_dissection({"train": one_hot}), {"delta1": 0.9}),
        },
        out_dir=tmp_path,
    )
    assert table.columns == ["selectivity_train", "selectivity_test", *TABLE2_METRICS]
    assert table.rows["baseline"]["selectivity_train"] == pytest.approx(0.0)
    assert table.rows["baseline"]["selectivity_test"] == pytest.approx(0.5)
    assert table.rows["baseline"]["rms"] == pytest.approx(metrics["rms"])
    assert table.rows["assign"]["selectivity_train"] == pytest.approx(1.0)
    assert math.isnan(table.rows["assign"]["selectivity_test"]) and math.isnan(table.rows["assign"]["rms"])
    markdown = table.to_markdown()
    assert "| assign | 1.000 |  | 0.900 |" in markdown
    assert table.to_latex().splitlines()[0].startswith("baseline & 0.000 & 0.500 & 0.000 & 0.100")
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["rows"]["baseline"]["selectivity_test"] == pytest.approx(0.5)
    rows = list(csv.reader((tmp_path / "comparison.csv").open()))
    assert rows[0][0] == "model" and rows[2][0] == "assign"
    assert (tmp_path / "comparison.md").read_text() == markdown


def test_bad_results():
    with pytest.raises(ValueError, match="results"):
        compare_reg_assign({})
    with pytest.raises(ValueError, match=r"results\['reg'\]: expected a \(DissectResult, metrics\) pair"):
        compare_reg_assign({"reg": ({}, {})})
