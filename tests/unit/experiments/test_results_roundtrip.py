"""Every experiment result saves to a folder and loads back equal (the study's steps read each other this way)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _tiny_models import StridedNet, make_batches

from imde.core.bins import DepthBins
from imde.experiments.ablate import AblationResult
from imde.experiments.compare import ComparisonTable
from imde.experiments.correct import CorrectionResult
from imde.experiments.dissect import DissectResult, run_dissect
from imde.experiments.evaluate import EvalResult
from imde.experiments.explain import ExplainCase, ExplainResult


def test_json_results_round_trip(tmp_path) -> None:
    ablation = AblationResult(["D", "MFF"], [0, 2, 4], [0.8, 0.6, 0.1], [0.8, 0.79, 0.1],
                              [{"delta1": 0.8}, {"delta1": 0.6}, {"delta1": 0.1}],
                              [{"delta1": 0.8}, {"delta1": 0.79}, {"delta1": 0.1}],
                              [("D", 1), ("MFF", 0), ("D", 0), ("MFF", 1)])
    correction = CorrectionResult(["D"], {"delta1": 0.5, "rms": 1.0}, {"delta1": 0.625, "rms": 0.75})
    evaluation = EvalResult({"delta1": 0.5, "rms": math.nan}, 10, 1, "eigen", 1e-3, 10.0)
    bootstrapped = EvalResult({"delta1": 0.5}, 10, 0, "none", 1e-3, 10.0, {"delta1": [0.4, 0.6]},
                              {"delta1": [0.45, 0.55, 0.5]})  # intervals and replicates come back too
    for result in (ablation, correction, evaluation, bootstrapped):
        folder = tmp_path / result.FILE
        assert result.save(folder, "assign") == folder / "assign.json"
        again = type(result).load(folder, "assign")
        assert _same(again.to_dict(), result.to_dict())
    assert CorrectionResult.load(tmp_path / "correction", "assign").change() == {"delta1": 0.125, "rms": -0.25}
    assert AblationResult.load(tmp_path / "ablation", "assign").order[0] == ("D", 1)  # pairs come back as tuples


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_loading_names_the_missing_file_and_a_wrong_one(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"baseline\.json not found"):
        CorrectionResult.load(tmp_path, "baseline")
    (tmp_path / "x.json").write_text('{"layers": []}')
    with pytest.raises(ValueError, match=r"x\.json: not a CorrectionResult \(KeyError: 'before'\)"):
        CorrectionResult.load(tmp_path, "x")


def test_dissection_round_trips_exactly_through_its_json(tmp_path) -> None:
    batches = make_batches(3, 2, seed=3)
    result = run_dissect(StridedNet(), {"train": batches, "test": batches[:2]}, ["enc.1", "act"],
                         bins=DepthBins("nyu", 4), out_dir=tmp_path)
    again = DissectResult.load(tmp_path)
    assert again.layers.keys() == result.layers.keys()
    for split, per_layer in result.layers.items():
        for name, layer in per_layer.items():
            other = again.layers[split][name]
            torch.testing.assert_close(other.mean_response, layer.mean_response, equal_nan=True, rtol=0, atol=0)
            assert torch.equal(other.counts, layer.counts) and other.num_images == layer.num_images
            for key in ("selectivity", "selectivity_assigned", "preferred_bin", "assigned_bin", "dead", "edges"):
                assert torch.equal(getattr(other, key).nan_to_num(-9), getattr(layer, key).nan_to_num(-9)), key
    assert _same(again.to_dict(), result.to_dict())
    # a file whose shapes disagree is refused, naming the file, the layer and the key
    data = result.to_dict()
    data["splits"]["test"]["layers"]["act"]["units"]["dead"] = [False]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"bad\.json: layer 'act': units\.dead has length 1; expected 5"):
        DissectResult.load(tmp_path, "bad")


def test_comparison_and_explain_round_trip(tmp_path) -> None:
    table = ComparisonTable(["selectivity_test", "delta1"], {"baseline": {"selectivity_test": 0.3, "delta1": 0.8},
                                                             "assign": {"selectivity_test": 0.7, "delta1": math.nan}})
    files = table.save(tmp_path, "compare")
    assert [f.name for f in files] == ["compare.json", "compare.csv", "compare.md"]
    assert _same(ComparisonTable.load(tmp_path, "compare").to_dict(), table.to_dict())

    def case(seed: int) -> ExplainCase:
        gen = torch.Generator().manual_seed(seed)
        return ExplainCase(torch.rand(1, 3, 4, 5, generator=gen), torch.rand(1, 1, 4, 5, generator=gen),
                           torch.rand(1, 4, 5, generator=gen) > 0.5, 0.25, 0.4, torch.tensor([3, 0, 5]), 2, [4, 5],
                           torch.rand(1, 2, 4, 5, generator=gen), torch.tensor([0.5, float("nan")]))

    result = ExplainResult("D", 0.05, "assigned", torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64),
                           torch.rand(1, 1, 4, 5), case(0), case(1))
    result.save(tmp_path, "assign")
    again = ExplainResult.load(tmp_path, "assign")
    assert _same(again.to_dict(), result.to_dict())
    for name in ("clean", "adversarial"):
        for key, value in vars(getattr(result, name)).items():
            other = getattr(getattr(again, name), key)
            assert torch.equal(other.nan_to_num(-1), value.nan_to_num(-1)) if torch.is_tensor(value) else other == value
    assert torch.equal(again.depth, result.depth)
    (tmp_path / "assign.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"assign\.pt not found"):
        ExplainResult.load(tmp_path, "assign")
