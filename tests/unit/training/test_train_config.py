"""Config machinery: dict <-> dataclass, overrides, YAML round trip, the recipe files and the error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from imde.training.config import TrainConfig
from imde.utils.config import apply_overrides, diff_dicts, from_dict, load_yaml, parse_override, save_yaml

RECIPES = Path(__file__).resolve().parents[3] / "configs" / "recipes"


def recipe(name: str, overrides: list[str] | None = None) -> TrainConfig:
    return TrainConfig.from_yaml(RECIPES / f"{name}.yaml", overrides or [])


def test_overrides_are_parsed_as_yaml_and_nested() -> None:
    data = apply_overrides({"optim": {"lr": 1.0, "name": "sgd"}}, ["optim.lr=1e-3", "loss.layers=[D,MFF]", "seed=7"])
    assert data == {"optim": {"lr": "1e-3", "name": "sgd"}, "loss": {"layers": ["D", "MFF"]}, "seed": 7}
    cfg = from_dict(TrainConfig, data)
    assert cfg.optim.lr == pytest.approx(1e-3) and cfg.optim.name == "sgd"
    assert cfg.loss.layers == ("D", "MFF") and cfg.seed == 7


def test_overrides_do_not_mutate_input_and_later_wins() -> None:
    base = {"optim": {"lr": 1.0}}
    out = apply_overrides(base, ["optim.lr=2", "optim.lr=3"])
    assert base == {"optim": {"lr": 1.0}} and out["optim"]["lr"] == 3


@pytest.mark.parametrize("text", ["lr", "=3", "a..b=1", "optim.=1"])
def test_malformed_override(text: str) -> None:
    with pytest.raises(ValueError, match="key=value"):
        parse_override(text)


def test_override_into_scalar_is_rejected() -> None:
    with pytest.raises(ValueError, match="'seed' is a value"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_unknown_key_suggests_closest_with_dotted_path() -> None:
    with pytest.raises(ValueError, match=r"unknown config key 'optim\.lrr' \(did you mean 'optim\.lr'\?\)"):
        TrainConfig.from_yaml_dict({}, ["optim.lrr=1"])
    with pytest.raises(ValueError, match=r"'train\.epoch' \(did you mean 'train\.epochs'\?\)"):
        TrainConfig.from_yaml_dict({"train": {"epoch": 3}})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=-1", r"optim\.lr=-1\.0: expected a number > 0"),
        ("optim.name=rmsprop", r"optim\.name='rmsprop': expected one of 'adam', 'adamw', 'sgd'"),
        ("train.epochs=two", r"train\.epochs='two': expected an integer"),
        ("train.epochs=2.5", r"train\.epochs=2\.5: expected an integer"),
        ("loss.interp=assign", r"loss\.layers=\[\]: interp='assign' needs at least one layer"),
        ("loss.preset=[5,1]", r"loss\.preset=\[5\.0, 1\.0\]: expected \[alpha, beta\]"),
        ("loss.preset=sunrgbd", r"loss\.preset='sunrgbd': expected one of 'nyu', 'kitti', 'rendered'"),
        ("data.batch_size=0", r"data\.batch_size=0: expected a number > 0"),
        ("loss.eps=-0.1", r"loss\.eps=-0\.1: expected a number >= 0"),
        ("device=tpu", r"device='tpu': expected one of auto, cpu, cuda, mps"),
        ("train.amp=maybe", r"train\.amp='maybe': expected true or false"),
        ("optim.nesterov=true", r"optim\.nesterov=true: needs name='sgd'"),
        ("eval.max_depth=0.0001", r"eval\.max_depth=0\.0001: expected more than min_depth"),
    ],
)
def test_invalid_values_name_the_field(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_yaml_dict({}, [override])


def test_yaml_roundtrip(tmp_path: Path) -> None:
    cfg = recipe("bts_kitti", ["loss.interp=assign", "data.subset=4"])
    path = save_yaml(cfg, tmp_path / "sub" / "config.yaml")
    plain = yaml.safe_load(path.read_text())
    assert plain["loss"]["layers"] == ["upconv3", "upconv2"] and plain["data"]["subset"] == 4
    again = TrainConfig.from_yaml(path)
    assert again == cfg
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temporary file left behind


def test_recipe_file_then_file_then_overrides(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(f"base: {RECIPES / 'mff.yaml'}\noptim:\n  lr: 5.0e-4\ntrain:\n  epochs: 3\n")
    cfg = TrainConfig.from_yaml(file, ["train.epochs=4"])
    assert cfg.model.name == "mff_resnet50"
    assert cfg.optim.name == "adam" and cfg.optim.weight_decay == pytest.approx(1e-4)  # recipe
    assert cfg.optim.lr == pytest.approx(5e-4)  # file
    assert cfg.train.epochs == 4  # override
    assert cfg.optim.schedule == "step" and cfg.optim.step_every == 5 and cfg.optim.gamma == pytest.approx(0.1)


def test_cspn_recipe_scheme() -> None:
    cfg = recipe("cspn")
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.nesterov) == ("sgd", 0.01, 0.9, True)
    assert cfg.optim.schedule == "plateau" and cfg.train.best_mode == "min"
    assert cfg.data.transform_kwargs == {"num_samples": 500}


@pytest.mark.parametrize("name", ["mff", "bts_nyu", "bts_kitti", "cspn"])
def test_every_recipe_is_a_valid_config(name: str) -> None:
    cfg = recipe(name)
    assert cfg.model.pretrained  # the original schemes all start from ImageNet weights (models-and-data.md)
    assert cfg.loss.layers  # each names the layers the paper trains with L_assign


def test_bts_recipe_scheme() -> None:
    cfg = recipe("bts_nyu")
    assert cfg.optim.name == "adamw" and cfg.optim.encoder_weight_decay == pytest.approx(1e-2)
    assert cfg.optim.weight_decay == 0 and cfg.optim.schedule == "poly" and cfg.optim.min_lr == pytest.approx(1e-5)
    assert recipe("bts_kitti").eval.crop == "garg" and recipe("bts_kitti").optim == cfg.optim  # one shared base


def test_recipe_key_points_at_the_recipe_files() -> None:
    with pytest.raises(ValueError, match=r"recipe='mff': recipes are YAML files now; write base: "
                                         r"configs/recipes/mff\.yaml"):
        TrainConfig.from_yaml_dict({"recipe": "mff"})


def test_load_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\noptim: [unclosed\n")
    with pytest.raises(ValueError, match=r"bad\.yaml' line \d+: invalid YAML"):
        load_yaml(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="expected a mapping at the top level"):
        load_yaml(scalar)


def test_diff_dicts_lists_nested_and_missing_keys() -> None:
    a = {"optim": {"lr": 1e-4, "name": "adam"}, "seed": 0, "x": 1}
    b = {"optim": {"lr": 1e-3, "name": "adam"}, "seed": 0, "y": 2}
    assert diff_dicts(a, b) == ["optim.lr", "x", "y"]


def test_from_yaml_resolves_base_inheritance(tmp_path: Path) -> None:
    """The public loader reads configs that inherit (``base:``), as every shipped training config does."""
    (tmp_path / "_common.yaml").write_text(f"base: {RECIPES / 'mff.yaml'}\nloss: {{interp: assign, lam: 0.5}}\n")
    (tmp_path / "run.yaml").write_text("base: _common.yaml\nloss: {lam: 0.2}\nrun_dir: runs/x\n")
    cfg = TrainConfig.from_yaml(tmp_path / "run.yaml", ["optim.lr=3e-4"])
    assert (cfg.loss.interp, cfg.loss.lam, cfg.run_dir) == ("assign", 0.2, "runs/x")
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.optim.name == "adam"  # recipe default kept
    shipped = Path(__file__).resolve().parents[3] / "configs/train/mff/resnet50_assign_d_mff.yaml"
    assert TrainConfig.from_yaml(shipped).model.name == "mff_resnet50"


def test_best_mode_must_agree_with_the_metric() -> None:
    # a best.pt (and a plateau schedule) chosen the wrong way round: the lowest delta1, the highest RMS
    with pytest.raises(ValueError, match="train.best_mode='max' with train.best_metric='rms': a lower rms is better"):
        TrainConfig.from_yaml_dict({}, ["train.best_metric=rms"])
    with pytest.raises(ValueError, match="best_mode must be 'max'"):
        recipe("cspn", ["train.best_metric=delta1"])
    assert TrainConfig.from_yaml_dict({}, ["train.best_metric=rms", "train.best_mode=min"]).train.best_mode == "min"


def test_depth_anything_recipe_scheme() -> None:
    cfg = recipe("dav2_kitti")
    assert cfg.model.kwargs == {"metric": True, "max_depth": 80.0} and cfg.data.transform == "dav2"
    assert cfg.optim.name == "adamw" and cfg.optim.encoder_lr_scale == pytest.approx(0.1)
    assert cfg.optim.encoder_prefixes == ("pretrained.",) and cfg.optim.weight_decay == pytest.approx(0.01)
