"""The demo's claims are computed from results.json numbers, with the thresholds of imde.paper.claims."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pytest

from imde.cli import EXIT_BAD_INPUT, main
from imde.paper.claims import ablation_gap, claims_across_runs, claims_markdown, claims_to_json, measure_claims


def results(**changes: float) -> dict[str, Any]:
    """A results dict where every claim holds; ``changes`` edit single numbers (``assign_test=0.6``, ...)."""
    base: dict[str, Any] = {
        "random_baseline": 0.3341,
        "models": {
            "baseline": {"selectivity": {"train": 0.45, "test": 0.43}, "metrics": {"delta1": 0.80}},
            "assign": {"selectivity": {"train": 0.84, "test": 0.75}, "metrics": {"delta1": 0.795}},
            "reg": {"selectivity": {"train": 0.74, "test": 0.60}, "metrics": {"delta1": 0.79}},
        },
        "correction": {
            "baseline": {"before": {"delta1": 0.80, "rms": 0.5}, "after": {"delta1": 0.78, "rms": 0.6}},
            "assign": {"before": {"delta1": 0.795, "rms": 0.5}, "after": {"delta1": 0.90, "rms": 0.4}},
        },
        "ablation": {
            "baseline": {"units": [0, 8, 16], "most_selective_first": [0.8, 0.5, 0.1],
                         "least_selective_first": [0.8, 0.7, 0.1]},
            "assign": {"units": [0, 8, 16], "most_selective_first": [0.795, 0.4, 0.1],
                       "least_selective_first": [0.795, 0.6, 0.1]},
        },
    }
    out = copy.deepcopy(base)
    for key, value in changes.items():
        variant, field = key.split("_")
        if field in ("train", "test"):
            out["models"][variant]["selectivity"][field] = value
        else:
            out["models"][variant]["metrics"][field] = value
    return out


def verdicts(data: dict[str, Any]) -> list[bool]:
    return [claim.holds for claim in measure_claims(data)]


def test_all_claims_hold_with_their_measured_values() -> None:
    claims = measure_claims(results())
    assert all(claim.holds for claim in claims)
    values = [round(claim.value, 6) for claim in claims]
    # assign 0.75; gain 0.32; 0.75-0.3341; 0.43-0.3341; delta1 -0.005; assign-reg 0.15;
    # correction: min(gain 0.90-0.795 = 0.105, its margin 0.105 - (0.78-0.80) = 0.125); ablation gaps mean([0.2])
    assert values == [0.75, 0.32, 0.4159, 0.0959, -0.005, 0.15, 0.105, 0.2, 0.2]
    rows = claims_to_json(claims)
    assert set(rows[0]) == {"claim", "holds", "value", "threshold", "ci_low", "ci_high", "verdict"}
    assert all(row["verdict"] is None for row in rows)  # no replicates, no interval: only the point verdict


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({"assign_test": 0.69}, [0]),  # below 0.70 (0.69 - 0.43 = 0.26 still clears the gain bar)
        ({"baseline_test": 0.51}, [1]),  # gain 0.24 < 0.25
        ({"baseline_test": 0.38}, [3]),  # 0.38 - 0.3341 = 0.0459 < 0.05: not far above random
        ({"assign_delta1": 0.7899}, [4]),  # 0.0101 below the baseline
        ({"reg_test": 0.75}, [5]),  # equal selectivity is not higher
    ],
)
def test_each_threshold_is_applied(changes: dict[str, float], failing: list[int]) -> None:
    assert [i for i, ok in enumerate(verdicts(results(**changes))) if not ok] == failing


def test_correction_and_ablation_claims_fail_when_reversed() -> None:
    data = results()
    data["correction"]["baseline"]["after"]["delta1"] = 0.95  # baseline gains 0.15 > assign's 0.105
    data["ablation"]["assign"]["most_selective_first"] = [0.795, 0.65, 0.1]  # less damage than least-first
    failing = [i for i, ok in enumerate(verdicts(data)) if not ok]
    assert failing == [6, 8]


def test_a_correction_that_lowers_both_models_improves_nothing() -> None:
    # the L_assign model loses less than the baseline (0.015 vs 0.10), but it loses: the claim fails on its gain
    data = results()
    data["correction"]["baseline"]["after"]["delta1"] = 0.70
    data["correction"]["assign"]["after"]["delta1"] = 0.78
    (claim,) = [c for c in measure_claims(data) if c.claim.startswith("correction")]
    assert not claim.holds and claim.value == pytest.approx(-0.015)


def test_ablation_gap_ignores_the_shared_end_points() -> None:
    assert ablation_gap([1.0, 0.5, 0.3, 0.0], [1.0, 0.9, 0.4, 0.0]) == pytest.approx((0.4 + 0.1) / 2)
    assert ablation_gap([9.0, 0.5, 0.5, -9.0], [0.0, 0.5, 0.5, 9.0]) == 0.0
    with pytest.raises(ValueError, match="at least 3 points"):
        ablation_gap([1.0, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="equal length"):
        ablation_gap([1.0, 0.5, 0.0], [1.0, 0.0])


def test_claims_across_runs_line_up_each_claim_and_count_the_runs_it_holds_in() -> None:
    runs = {"s0": results(), "s1": results(baseline_test=0.36), "s2": results(baseline_test=0.30, assign_test=0.69)}
    rows = claims_across_runs(runs)
    assert [row.claim for row in rows] == [claim.claim for claim in measure_claims(results())]
    by_start = {row.claim.split(" (")[0]: row for row in rows}
    above_random = by_start["test selectivity of the baseline model is >= 0.05 above the random baseline"]
    assert above_random.holds == (True, False, False)
    assert above_random.values == pytest.approx((0.43 - 0.3341, 0.36 - 0.3341, 0.30 - 0.3341))
    assert by_start["test selectivity of the L_assign model >= 0.7"].holds == (True, True, False)
    table = claims_markdown(list(runs), rows).splitlines()
    header = "| claim | `s0` | `s1` | `s2` | holds in | mean [95 % interval] | verdict |"
    assert table[0] == header and len(table) == 2 + len(rows) + 1
    # mean 0.0292, s = 0.0651, t(2) s / sqrt(3) = 0.1617: the interval straddles 0.05
    line = next(line for line in table if "baseline model is" in line)
    assert "| 0.096 ✓ | 0.026 ✗ | -0.034 ✗ | 1 of 3 | 0.029 [-0.132, 0.191] | inconclusive |" in line
    assert above_random.mean == pytest.approx((0.43 + 0.36 + 0.30) / 3 - 0.3341)
    # s2 fails ">= 0.7" and "baseline above random"; its gain over the baseline (0.39) still holds
    assert table[-1].startswith("| **claims that hold** | 9 of 9 | 8 of 9 | 7 of 9 | | |")


def test_claims_across_runs_name_the_run_that_lacks_a_number() -> None:
    incomplete = results()
    del incomplete["correction"]
    with pytest.raises(ValueError, match=r"^s1: results.json lacks 'correction'"):
        claims_across_runs({"s0": results(), "s1": incomplete})
    with pytest.raises(ValueError, match="at least one run"):
        claims_across_runs({})


def test_imde_claims_measures_each_run_afresh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, data in (("a", results()), ("b", results(reg_test=0.80))):
        (tmp_path / name).mkdir()
        data["claims"] = [{"claim": "an old definition", "holds": False, "value": 0.0}]  # ignored: re-measured
        (tmp_path / name / "results.json").write_text(json.dumps(data))
    out = tmp_path / "claims.md"
    assert main(["claims", str(tmp_path / "a"), str(tmp_path / "b" / "results.json"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text() in printed and "| **claims that hold** | 9 of 9 | 8 of 9 | | |" in printed
    assert main(["claims", str(tmp_path / "a"), str(tmp_path / "a")]) == EXIT_BAD_INPUT
    assert "given more than once" in capsys.readouterr().err
    (tmp_path / "a" / "results.json").write_text('{"random_baseline": "high"}')
    assert main(["claims", str(tmp_path / "a")]) == EXIT_BAD_INPUT
    assert "random_baseline must be a number" in capsys.readouterr().err


def test_replicates_give_intervals_and_three_way_verdicts() -> None:
    data = results()
    rng = np.random.default_rng(0)
    shared = rng.normal(0.0, 0.01, 500)  # the images' common effect: it cancels in paired differences
    replicates = {"assign": 0.75 + shared + rng.normal(0, 0.002, 500), "baseline": 0.43 + shared,
                  "reg": 0.60 + rng.normal(0, 0.05, 500)}
    for variant, values in replicates.items():
        data["models"][variant]["replicates"] = {"selectivity_test": values.tolist(),
                                                 "delta1": (0.8 + shared).tolist()}
    claims = {claim.claim.split(" (")[0]: claim for claim in measure_claims(data)}
    first = claims["test selectivity of the L_assign model >= 0.7"]
    # Efron's bias-corrected percentiles, by the standard library's normal distribution
    normal = NormalDist()
    z0 = normal.inv_cdf(float(np.mean(replicates["assign"] < 0.75)))
    low, high = np.quantile(replicates["assign"], [normal.cdf(2 * z0 - 1.959964), normal.cdf(2 * z0 + 1.959964)])
    assert (first.ci_low, first.ci_high) == pytest.approx((low, high)) and first.verdict == "holds"
    gain = claims["test selectivity of the L_assign model exceeds the baseline's by >= 0.25"]
    assert gain.ci_high - gain.ci_low < 0.01 < first.ci_high - first.ci_low  # paired: the shared part cancels
    assert claims["delta1 of the L_assign model is at most 0.01 below the baseline's"].ci_low == pytest.approx(0.0)
    above = claims["test selectivity of the baseline model is >= 0.05 above the random baseline"]
    assert above.verdict == "holds"  # 0.096 with an interval of about +-0.02
    data["models"]["baseline"]["replicates"]["selectivity_test"] = (0.39 + shared * 3).tolist()
    data["models"]["baseline"]["selectivity"]["test"] = 0.39
    above = {c.claim.split(" (")[0]: c for c in measure_claims(data)}[above.claim.split(" (")[0]]
    assert above.verdict == "inconclusive"  # 0.39 - 0.3341 = 0.056: the interval reaches below 0.05
    assert claims["correction improves delta1 of the L_assign model, and more than the baseline's"].verdict is None


def test_correction_and_ablation_claims_get_intervals_from_their_replicates() -> None:
    data = results()
    rng = np.random.default_rng(1)
    shared = rng.normal(0.0, 0.02, 300)  # what the test images do to every evaluation
    for variant, (before, after) in {"baseline": (0.80, 0.78), "assign": (0.795, 0.90)}.items():
        data["correction"][variant]["replicates"] = {"before": (before + shared).tolist(),
                                                     "after": (after + shared + rng.normal(0, 0.004, 300)).tolist()}
    entry = data["ablation"]["assign"]
    entry["replicates_most"] = [(v + shared).tolist() for v in entry["most_selective_first"]]
    entry["replicates_least"] = [(v + shared + rng.normal(0, 0.01, 300)).tolist()
                                 for v in entry["least_selective_first"]]
    claims = {claim.claim.split(" (")[0]: claim for claim in measure_claims(data)}
    correction = claims["correction improves delta1 of the L_assign model, and more than the baseline's"]
    # margin = min(gain 0.105, 0.105 - (-0.02)) = 0.105 per replicate up to the noise of "after": far above 0
    assert correction.verdict == "holds" and 0.09 < correction.ci_low < 0.105 < correction.ci_high < 0.12
    gap = claims["assign model: ablating the most selective units first lowers delta1 more than least selective first"]
    assert gap.verdict == "holds" and gap.ci_low < 0.2 < gap.ci_high  # the shared term cancels in least - most
    assert claims["baseline model: ablating the most selective units first lowers delta1 more than least "
                  "selective first"].verdict is None  # no replicates for that curve
