"""The report's statistics: intervals in Table 1 and the claims, verdicts, per-unit intervals and q < 0.05 marks."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import torch
from test_report_fakerun import RESULTS, UNITS, make_fake_run, synthetic_depth

pytest.importorskip("jinja2")

from imde.paper.report import build_report  # noqa: E402


def _page_data(html: str) -> dict:
    match = re.search(r'<script id="imde-data" type="application/json">(.*?)</script>', html, re.S)
    assert match
    return json.loads(match.group(1))


def _dissection_with_replicates(out_dir: Path) -> None:
    """The assign model's dissection with 40 bootstrap and 39 permutation replicates: units coding their own depth."""
    from imde.accumulators import DepthResponse
    from imde.core.bins import dataset_edges, digitize
    from imde.experiments.dissect import DissectResult

    edges = dataset_edges("nyu", UNITS)
    responses = {}
    for split, seed in (("train", 1), ("test", 2)):
        scale = 0.5 + 0.5 * torch.rand(6, 1, 1, 1, generator=torch.Generator().manual_seed(seed))
        depth = synthetic_depth(6, seed=seed) * scale  # the rooms differ in size: the null can tell them apart
        bins = digitize(depth, edges).float().clamp(min=0)
        features = torch.exp(-((bins - torch.arange(UNITS).view(1, UNITS, 1, 1)) ** 2) / 2)
        features[:, 0] = torch.rand(6, 48, 64, generator=torch.Generator().manual_seed(seed))  # one noise unit
        response = DepthResponse(UNITS, edges, bootstrap=40, permutations=39, seed=0)
        response.update(features, depth, keys=[f"{split}{i}" for i in range(6)])
        responses[split] = {"D": response}
    DissectResult.from_responses(responses).save(out_dir)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    results = copy.deepcopy(RESULTS)
    results["models"]["assign"]["selectivity_ci"] = {"train": [0.8101, 0.8533], "test": [0.7502, 0.7991]}
    results["models"]["assign"]["metrics_ci"] = {"delta1": [0.8011, 0.8342]}
    results["control"] = {"selectivity": {"train": 0.3912, "test": 0.3871},
                          "selectivity_ci": {"train": [0.3801, 0.4013], "test": [0.3755, 0.3990]}}
    results["correction"]["assign"]["replicates"] = {"before": [0.80, 0.81, 0.82, 0.83], "after": [0.88, 0.90, 0.91,
                                                                                                  0.93]}
    results["claims"][0].update(ci_low=0.7502, ci_high=0.7991, verdict="holds")
    results["claims"][2].update(ci_low=-0.0211, ci_high=0.0093, verdict="inconclusive")
    run = make_fake_run(tmp_path_factory.mktemp("report_stats") / "demo", atlas=False, figures=False,
                        results=results)
    _dissection_with_replicates(run / "dissect" / "assign")
    return run, build_report(run).read_text(encoding="utf-8")


def test_intervals_and_verdicts_are_shown(built: tuple[Path, str]) -> None:
    run, html = built
    assert "0.7764 [0.7502, 0.7991]" in html and "0.819 [0.801, 0.834]" in html  # Table 1: test DS, delta1
    assert "| Random weights (control) | 0.3912 [0.3801, 0.4013] | 0.3871 [0.3755, 0.3990] | – |" in (
        run / "results.md").read_text(encoding="utf-8")
    assert '<span class="verdict holds">holds</span>' in html
    assert '<span class="verdict inconclusive">inconclusive</span>' in html
    md = (run / "results.md").read_text(encoding="utf-8")
    # Table 3: the gain 0.0825 with the BC interval of the paired differences 0.08, 0.09, 0.09, 0.10 (z0 = -0.674)
    assert "+0.083 [0.080, 0.092]" in md
    assert "| 0.7764 | [0.7502, 0.7991] | holds |" in md
    assert "| -0.0064 | [-0.0211, 0.0093] | inconclusive |" in md
    assert "| -0.0001 | – | – |" in md  # no interval: no verdict


def test_per_unit_intervals_and_q_values_reach_the_page(built: tuple[Path, str]) -> None:
    run, html = built
    layer = _page_data(html)["dissect"]["assign"]["test"]["D"]["significance"]["units"]  # dissect.json as is
    saved = json.loads((run / "dissect" / "assign" / "dissect.json").read_text())["splits"]["test"]["layers"]["D"]
    units = saved["significance"]["units"]
    assert layer["ci_low"] == pytest.approx(units["ci_low"], rel=1e-5)
    assert layer["q_value"] == pytest.approx(units["q_value"], rel=1e-5)
    assert all(low <= high for low, high in zip(layer["ci_low"], layer["ci_high"]))
    # the depth-coding units are significant; the noise unit 0 is not
    assert layer["q_value"][0] >= 0.05 and sum(q < 0.05 for q in layer["q_value"][1:]) >= UNITS // 2
    assert 'id="ds-intervals"' in html and "function drawIntervals" in html
    assert layer_without_replicates(html).get("significance") is None


def layer_without_replicates(html: str) -> dict:
    return _page_data(html)["dissect"]["baseline"]["test"]["D"]


def test_tables_1_and_2_show_paired_differences_with_their_intervals() -> None:
    import torch

    from imde.core.inference import bias_corrected_interval
    from imde.paper.report import results_tables

    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(200, generator=gen, dtype=torch.float64) * 0.01  # shared by the models: the same images
    models = {}
    values = {"baseline": (0.33, 0.82), "assign": (0.76, 0.80), "reg": (0.69, 0.75)}
    for variant, (selectivity, delta1) in values.items():
        own = torch.randn(200, generator=gen, dtype=torch.float64) * 0.005  # and a part of each model's own
        models[variant] = {"selectivity": {"train": selectivity, "test": selectivity},
                           "metrics": {"delta1": delta1, "rms": 0.6},
                           "replicates": {"selectivity_test": (selectivity + noise + own).tolist(),
                                          "delta1": (delta1 - noise + own).tolist()}}
    tables = results_tables({"models": models})
    row = tables["table1"].rows[-1]
    replicates = {v: torch.tensor(models[v]["replicates"]["delta1"], dtype=torch.float64) for v in models}
    low, high = (float(b) for b in bias_corrected_interval(replicates["assign"] - replicates["baseline"],
                                                            0.80 - 0.82, 0.95))
    assert high - low > 0.01  # the models' own parts of the replicates do not cancel
    assert row[0].endswith("(paired)") and row[1] == "–"
    assert row[2].startswith("+0.4300 [") and row[3] == f"-0.020 [{low:.3f}, {high:.3f}]"
    assert tables["table2"].rows[-1][2].startswith("+0.0700")
    del models["reg"]["replicates"]
    assert tables["table2"].rows[-1][2] != results_tables({"models": models})["table2"].rows[-1][2] == "+0.0700"
