"""The ``imde`` command line: help with examples everywhere, one-line errors with exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from imde.cli import EXIT_BAD_INPUT, build_parser, main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
COMMANDS = ["data render", "data show", "train", "eval", "dissect", "ablate", "correct", "explain", "study",
            "report", "claims", "models"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"imde {command.split()[0]}" in text.split("examples:")[1]


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in {c.split()[0] for c in COMMANDS}:
        assert f"    {command} " in text


def run_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("imde: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_input_is_one_line_with_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = run_error(["study", str(tmp_path / "nope.yaml")], capsys)
    assert "nope.yaml" in err and "not found" in err
    err = run_error(["study", str(CONFIGS / "demo.yaml"), "dissect.batch_szie=8", "--list"], capsys)
    assert "did you mean 'dissect.batch_size'" in err
    err = run_error(["train", str(CONFIGS / "train" / "mff" / "resnet50_baseline.yaml"), "optim.lr=-1"], capsys)
    assert "lr=-1" in err
    err = run_error(["models", "mff_tiniest"], capsys)
    assert "mff_tiniest" in err and "mff_tiny" in err
    err = run_error(["dissect", str(tmp_path)], capsys)
    assert "config.yaml" in err
    err = run_error(["report", str(tmp_path / "missing")], capsys)
    assert "missing" in err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        main(["--debug", "study", str(tmp_path / "nope.yaml")])


def test_overrides_may_follow_options() -> None:
    args, extra = build_parser().parse_known_args(["study", "c.yaml", "a=1", "--smoke", "run_dir=x"])
    assert args.overrides == ["a=1"] and extra == ["run_dir=x"] and args.smoke
    with pytest.raises(SystemExit):
        main(["study", "c.yaml", "--smoke", "stray"])


def test_models_lists_declared_layers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "mff_tiny", "bts_densenet161_nyu"]) == 0
    out = capsys.readouterr().out
    assert "mff_tiny: 308,001 parameters" in out
    assert "bts_densenet161_nyu: 47,000,688 parameters" in out
    for layer, units in (("D", 16), ("Rconv1", 32), ("upconv3", 128), ("iconv1", 32)):
        assert any(line.split()[:2] == [layer, str(units)] for line in out.splitlines())


def test_study_list_shows_the_steps_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", str(CONFIGS / "demo.yaml"), f"run_dir={tmp_path}", "--list"]) == 0
    names = [line.split()[-1] for line in capsys.readouterr().out.splitlines()]
    assert names[:4] == ["render", "train_baseline", "train_assign", "train_reg"]
    assert names.index("dissect_assign") < names.index("correct_assign") < names.index("results")
    assert names[-1] == "report"


def test_data_render_passes_the_camera_rig_and_materials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from imde.data._scenes import CAMERAS
    from imde.data._textures import MATERIALS

    root = tmp_path / "fixed"
    argv = ["data", "render", "--root", str(root), "--size", "24", "32", "--num-train", "8", "--num-test", "8"]
    assert main([*argv, "--camera", "fixed", "--materials", "indoor"]) == 0
    index = json.loads((root / "index.json").read_text())
    assert (index["camera"], index["materials"]) == ("fixed", "indoor")
    with pytest.raises(SystemExit):
        main(["data", "render", "--help"])
    usage = capsys.readouterr().out
    assert f"{{{','.join(CAMERAS)}}}" in usage and f"{{{','.join(MATERIALS)}}}" in usage  # choices = the constants
    assert (root / "contact_sheet.png").is_file()
    with pytest.raises(SystemExit):
        main([*argv, "--camera", "tilted"])  # argparse: not a rig
    assert "invalid choice: 'tilted'" in capsys.readouterr().err
    # `data show` opens the dataset rendered there as it is: no option repeated, nothing re-rendered
    rendered_at = (root / "index.json").stat().st_mtime_ns
    assert main(["data", "show", "rendered", str(root), "--split", "test", "--out", str(tmp_path / "s.png")]) == 0
    assert "rendered test: 8 samples; image (3, 24, 32)" in capsys.readouterr().out
    assert (root / "index.json").stat().st_mtime_ns == rendered_at
    err = run_error(["data", "show", "rendered", str(tmp_path / "typo")], capsys)
    assert "holds no rendered dataset" in err and not (tmp_path / "typo").exists()


def test_sources_that_are_not_training_runs_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from imde.paper.config import load_study_config
    from imde.utils.config import save_yaml

    study = tmp_path / "study"
    save_yaml(load_study_config(CONFIGS / "demo.yaml"), study / "config.yaml")
    err = run_error(["eval", str(study)], capsys)
    assert "is a study run directory, not a training run" in err and "models/<variant>" in err
    err = run_error(["dissect", str(CONFIGS / "demo.yaml")], capsys)
    assert "is a study config, not a training run" in err
    (tmp_path / "models" / "assign").mkdir(parents=True)
    err = run_error(["report", str(tmp_path / "models")], capsys)
    assert "is not a run directory of `imde study`" in err
    assert not (tmp_path / "models" / "report.html").exists()


def test_bad_choices_and_stray_words_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(tmp_path), "--split", "trian"])
    assert exit_info.value.code == EXIT_BAD_INPUT and "invalid choice: 'trian'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["study", str(CONFIGS / "demo.yaml"), "--list", f"run_dir={tmp_path}", "noequals"])
    err = capsys.readouterr().err
    assert "unrecognized arguments: noequals (config overrides are key=value)" in err and "run_dir" not in err


def test_models_shows_each_model_options_and_default_layers(capsys: pytest.CaptureFixture[str]) -> None:
    from imde.models import create

    assert main(["models", "mff_tiny"]) == 0
    out = capsys.readouterr().out
    assert "options (model.kwargs): d_units=16, r_units=32, channels=(16, 32, 48, 64)" in out
    declared = " ".join(info.name for info in create("mff_tiny").unit_info)
    assert f"default layers: {declared}" in out
