"""``imde study configs/demo.yaml --smoke``: the whole pipeline at toy sizes, its public results.json, resuming."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from imde.cli import EXIT_BAD_INPUT, main
from imde.experiments.dissect import DissectResult
from imde.paper.claims import measure_claims
from imde.paper.config import load_study_config
from imde.paper.pipeline import step_status

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
METRICS = {"delta1", "delta2", "delta3", "rms", "rel", "log10"}


def markers(run: Path) -> dict[str, tuple[int, str]]:
    return {p.stem: (p.stat().st_mtime_ns, p.read_text()) for p in sorted((run / "steps").glob("*.done"))}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("smoke")
    # the smoke config evaluates no claims (claims: false); here they are, to check their plumbing end to end
    argv = ["-q", "study", str(DEMO), "--smoke", f"run_dir={root / 'run'}", f"train.data.root={root / 'data'}",
            "claims=true"]
    assert main(argv) == 0
    return root / "run", argv


def is_number(value: Any) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool) and math.isfinite(value)


def test_results_json_follows_the_public_schema(smoke: tuple[Path, list[str]]) -> None:
    run, _ = smoke
    results = json.loads((run / "results.json").read_text())
    assert {"random_baseline", "models", "correction", "ablation", "claims", "seconds"} <= set(results)
    assert 1 / 3 < results["random_baseline"] < 0.35  # Eq. 3 for 8 bins
    assert set(results["models"]) == {"baseline", "assign", "reg"}
    for entry in results["models"].values():
        assert set(entry["selectivity"]) == {"train", "test"}
        assert all(0 <= value <= 1 for value in entry["selectivity"].values())
        assert set(entry["metrics"]) == METRICS and all(is_number(v) for v in entry["metrics"].values())
    assert set(results["correction"]) == {"baseline", "assign"}
    for entry in results["correction"].values():
        for when in ("before", "after"):
            assert {"delta1", "rms"} <= set(entry[when]) and all(is_number(v) for v in entry[when].values())
    for entry in results["ablation"].values():
        assert entry["layers"] == ["D", "MFF"]
        assert entry["units"] == list(range(0, 17, 2))  # the 8 + 8 units of D and MFF, ranked together, 2 at a time
        assert len(entry["most_selective_first"]) == len(entry["least_selective_first"]) == 9
        assert entry["most_selective_first"][0] == entry["least_selective_first"][0]  # nothing ablated yet
    assert len(results["claims"]) == 9
    assert all(set(c) >= {"claim", "holds", "value"} and isinstance(c["holds"], bool) for c in results["claims"])
    # the smoke config keeps 50 bootstrap and 49 permutation replicates: intervals, p/q-values and verdicts
    for entry in results["models"].values():
        for split, (low, high) in entry["selectivity_ci"].items():
            assert low <= entry["selectivity"][split] <= high
        assert len(entry["replicates"]["selectivity_test"]) == len(entry["replicates"]["delta1"]) == 50
        assert entry["metrics_ci"]["delta1"][0] <= entry["metrics"]["delta1"] <= entry["metrics_ci"]["delta1"][1]
        assert 0 <= entry["significance"]["test"]["D"]["num_significant"] <= 8
    assert all(c["verdict"] in ("holds", "fails", "inconclusive") for c in results["claims"])
    assert len(results["correction"]["assign"]["replicates"]["after"]) == 50
    assert len(results["ablation"]["assign"]["replicates_most"]) == 9  # a replicate vector at every step
    control = results["control"]  # the baseline's architecture with random weights, on the same images
    low, high = control["selectivity_ci"]["test"]
    assert low <= control["selectivity"]["test"] <= high
    assert results["seconds"] == pytest.approx(sum(results["step_seconds"].values()))


def test_results_agree_with_the_step_files(smoke: tuple[Path, list[str]]) -> None:
    run, _ = smoke
    results = json.loads((run / "results.json").read_text())
    recomputed = [claim.holds for claim in measure_claims(results)]
    assert [c["holds"] for c in results["claims"]] == recomputed
    for variant, entry in results["models"].items():
        dissect = json.loads((run / "dissect" / variant / "dissect.json").read_text())
        assert entry["selectivity"]["test"] == dissect["splits"]["test"]["selectivity"]
        layer = DissectResult.load(run / "dissect" / variant).layers["test"]["D"]  # rebuilt from the raw sums
        assert layer.mean_response.shape == (8, 8) and layer.edges.numel() == 9
        assert layer.mean_selectivity == pytest.approx(entry["layers"]["test"]["D"])
        significance = layer.significance  # the replicates' results, saved and loaded with the layer
        assert significance is not None and len(significance.q_value) == 8
        assert all(not p == p or 1 / 50 <= p <= 1 for p in significance.p_value.tolist())
        metrics = json.loads((run / "eval" / f"{variant}.json").read_text())["metrics"]
        assert entry["metrics"]["rms"] == metrics["rms"]
    correction = json.loads((run / "correction" / "assign.json").read_text())
    assert results["correction"]["assign"]["after"]["rms"] == correction["after"]["rms"]


def test_the_report_and_figures_are_written(smoke: tuple[Path, list[str]]) -> None:
    run, _ = smoke
    for name in ("report.html", "results.md", "config.yaml", "compare.json", "figures/fig2_ablation.png",
                 "figures/fig5_feature_maps_D.png", "figures/contact_sheet.png", "atlas/assign/index.json"):
        assert (run / name).is_file(), name
    assert (run / "models" / "reg" / "checkpoints" / "last.pt").is_file()


def test_resuming_redoes_nothing_and_force_redoes_dependents(smoke: tuple[Path, list[str]]) -> None:
    run, argv = smoke
    before = markers(run)
    assert len(before) == 23  # 22 and the random-weight control's dissection
    assert main(argv) == 0
    assert markers(run) == before  # same content and modification times: no step ran again
    assert main([*argv, "--force", "ablate_assign"]) == 0
    after = markers(run)
    redone = sorted(name for name in before if after[name] != before[name])
    assert redone == ["ablate_assign", "figures", "report", "results"]


def test_a_changed_experiment_setting_redoes_its_steps_and_a_changed_training_is_refused(
    smoke: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    run, argv = smoke
    before = markers(run)
    overrides = [*argv[4:], "ablation.step=4"]
    status = dict(step_status(load_study_config(DEMO, overrides, smoke=True)))
    assert [name for name, done in status.items() if not done] == [
        "ablate_baseline", "ablate_assign", "figures", "results", "report"]
    assert main([*argv, "ablation.step=4", "device=cpu"]) == 0  # the device changes no finished step
    after = markers(run)
    redone = sorted(name for name in before if after[name] != before[name])
    assert redone == ["ablate_assign", "ablate_baseline", "figures", "report", "results"]
    assert json.loads((run / "results.json").read_text())["ablation"]["assign"]["units"] == [0, 4, 8, 12, 16]
    assert main([*argv, "ablation.step=4", "train.optim.lr=0.002"]) == EXIT_BAD_INPUT
    assert "trained with another config (differs in train.optim.lr)" in capsys.readouterr().err


def test_a_smoke_size_run_says_its_claims_are_not_evaluated(smoke: tuple[Path, list[str]], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run, argv = smoke
    assert load_study_config(DEMO, smoke=True).claims is False  # what `make demo-smoke` runs
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    capsys.readouterr()
    assert main([arg for arg in argv[:-1] if not arg.startswith("run_dir=")] + [f"run_dir={copy}"]) == 0
    out = capsys.readouterr().out
    assert "claims not evaluated (claims: false" in out and "FAIL" not in out
    results = json.loads((copy / "results.json").read_text())
    assert results["claims_evaluated"] is False and results["claims"] == []
    assert "Claims not evaluated: this is a smoke-size run" in (copy / "report.html").read_text(encoding="utf-8")
    redone = {name for name, marker in markers(copy).items() if marker != markers(run)[name]}
    assert {"report", "results"} <= redone  # what the claims change (the earlier tests changed the ablation too)
    assert not any(name.startswith(("render", "train_", "dissect_", "eval_")) for name in redone)
