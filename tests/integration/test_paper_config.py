"""Every YAML under configs/ loads through the config system, and names models and layers that exist."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch

from imde.core.bins import DepthBins
from imde.models import create, list_models
from imde.paper.config import load_study_config
from imde.paper.steps import StudySteps
from imde.training import TrainConfig
from imde.utils.config import load_yaml

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TRAIN_CONFIGS = sorted([*(CONFIGS / "train").rglob("*.yaml"), *(CONFIGS / "recipes").glob("[!_]*.yaml")])
# study configs; files starting with "_" are partial bases, checked through the configs that inherit them
STUDY_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml")
                       if not {"train", "recipes"} & set(p.relative_to(CONFIGS).parts) and not p.name.startswith("_"))


@cache
def declared_layers(model_name: str) -> frozenset[str]:
    """Layer names a registered model declares, read from a weightless (meta-device) instance."""
    with torch.device("meta"):
        model = create(model_name)
    return frozenset(info.name for info in model.unit_info)


def check_train_config(config: TrainConfig, where: str) -> None:
    assert config.model.name in list_models(), f"{where}: model {config.model.name!r} is not registered"
    missing = set(config.loss.layers) - declared_layers(config.model.name)
    assert not missing, f"{where}: layers {sorted(missing)} not declared by {config.model.name}"


def test_the_configs_are_found() -> None:
    assert len(TRAIN_CONFIGS) >= 28 and {CONFIGS / "demo.yaml", CONFIGS / "demo_smoke.yaml"} <= set(STUDY_CONFIGS)


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_train_config_loads_and_names_real_layers(path: Path) -> None:
    config = TrainConfig.from_yaml(path)
    check_train_config(config, str(path))
    if config.data.name != "rendered":  # the embedded data's CPU-sized models train from scratch, offline
        assert config.model.pretrained, f"{path}: the paper's models start from ImageNet weights"


@pytest.mark.parametrize("path", STUDY_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_study_config_loads_and_names_real_layers(path: Path) -> None:
    config = load_study_config(path)
    steps = StudySteps(config)
    for variant, train_config in steps.train_configs.items():
        check_train_config(train_config, f"{path} variant {variant}")
    declared = declared_layers(steps.train_configs["assign"].model.name)
    used = {*steps.layers, *steps.correction_layers, *steps.ablation_layers, steps.explain_layer}
    assert used <= declared
    # the paper's studies start from ImageNet weights; the demos' tiny models have none (they run offline)
    assert steps.train_configs["assign"].model.pretrained == (not path.name.startswith("demo"))
    assert {v: c.loss.interp for v, c in steps.train_configs.items()} == {
        "baseline": "none", "assign": "assign", "reg": "reg"}
    # the three variants differ only in the interpretability term (same schedule, seed and data)
    base = steps.train_configs["baseline"].to_dict()
    for variant in ("assign", "reg"):
        other = steps.train_configs[variant].to_dict()
        assert {k: v for k, v in other.items() if k not in ("loss", "run_dir")} == \
            {k: v for k, v in base.items() if k not in ("loss", "run_dir")}


def test_demo_trains_the_paper_layers_on_rendered_data() -> None:
    steps = StudySteps(load_study_config(CONFIGS / "demo.yaml"))
    assign, reg = steps.train_configs["assign"], steps.train_configs["reg"]
    assert (assign.data.name, assign.loss.layers) == ("rendered", ("D", "MFF"))
    # L_assign and L_reg compared at the same weight and the same eps in DS
    assert (assign.loss.lam, assign.loss.eps) == (reg.loss.lam, reg.loss.eps)
    smoke = StudySteps(load_study_config(CONFIGS / "demo_smoke.yaml")).train_configs["assign"]
    assert load_study_config(CONFIGS / "demo.yaml", smoke=True) == load_study_config(CONFIGS / "demo_smoke.yaml")
    assert smoke.train.epochs == 1 and smoke.data.root != assign.data.root  # never overwrites the demo's cache
    # one lens and camera height (absolute scale learnable in the budget, docs/demo.md), smoke run included
    assert assign.data.options["camera"] == smoke.data.options["camera"] == "fixed"
    # rooms with the usual look of their floors, walls and ceilings (docs/demo.md, "Indoor materials")
    assert assign.data.options["materials"] == smoke.data.options["materials"] == "indoor"


def test_base_inheritance_merges_sections_and_resolves_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "root.yaml").write_text("a: {x: 1, y: 2}\nb: [1, 2]\ntrain: {base: t.yaml}\n")
    (tmp_path / "sub" / "mid.yaml").write_text("base: ../root.yaml\na: {y: 3}\n")
    (tmp_path / "sub" / "leaf.yaml").write_text("base: [mid.yaml]\nb: [9]\nc: 4\n")
    data = load_yaml(tmp_path / "sub" / "leaf.yaml", ["a.x=7"], path_keys=("train.base",))
    assert data == {"a": {"x": 7, "y": 3}, "b": [9], "c": 4, "train": {"base": str(tmp_path / "t.yaml")}}


def test_inheritance_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ValueError, match="inheritance cycle"):
        load_yaml(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"c\.yaml.*base 'missing\.yaml' not found"):
        load_yaml(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: {x: 1}\n")
    with pytest.raises(ValueError, match="'base' must be a file name or a list"):
        load_yaml(tmp_path / "d.yaml")


def test_bad_study_keys_and_values_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown config key 'ablation\.stpe' \(did you mean 'ablation\.step'\?\)"):
        load_study_config(CONFIGS / "demo.yaml", ["ablation.stpe=3"])
    with pytest.raises(ValueError, match=r"correction\.variants=\['assign'\]: must include baseline and assign"):
        load_study_config(CONFIGS / "demo.yaml", ["correction.variants=[assign]"])
    with pytest.raises(ValueError, match=r"variants: missing \['reg'\]"):
        load_study_config(CONFIGS / "demo.yaml", ["variants={baseline: {}, assign: {}}"])
    with pytest.raises(ValueError, match=r"unknown config key 'train\.optim\.nme' \(did you mean 'train\.optim\.name'"):
        load_study_config(CONFIGS / "demo.yaml", ["train.optim.nme=sgd"])
    with pytest.raises(ValueError, match="train config of variant 'baseline': .*optim"):  # checked at load
        load_study_config(CONFIGS / "demo.yaml", ["variants.baseline.optim.nme=sgd"])
    # what a study trains and dissects is checked before the first step, naming the variant
    with pytest.raises(ValueError, match=r"variant 'baseline': model.name='mff_tinyy': not a registered model"):
        StudySteps(load_study_config(CONFIGS / "demo.yaml", ["train.model.name=mff_tinyy"]))
    with pytest.raises(ValueError, match=r"variant 'baseline': data.name='rendred': not a dataset"):
        StudySteps(load_study_config(CONFIGS / "demo.yaml", ["train.data.name=rendred"]))
    with pytest.raises(ValueError, match=r"variant 'baseline': unknown layer 'Dx' for MFFNet"):
        StudySteps(load_study_config(CONFIGS / "demo.yaml", ["dissect.layers=[Dx]"]))
    with pytest.raises(ValueError, match=r"variant 'assign': unknown layer 'NOPE'"):
        StudySteps(load_study_config(CONFIGS / "demo.yaml",
                                     ["dissect.layers=[D]", "variants.assign.loss.layers=[D, NOPE]"]))
    with pytest.raises(ValueError, match=r"model.kwargs=\{.*'d_unit': 3\}: .*unexpected keyword argument 'd_unit'"):
        StudySteps(load_study_config(CONFIGS / "demo.yaml", ["train.model.kwargs={d_unit: 3}"]))


def test_experiment_layers_must_be_dissected_and_ablation_defaults_to_all_of_them() -> None:
    # correction and ablation read the training-set dissection of their layers: an undissected one is named up
    # front, not a KeyError after the trainings
    with pytest.raises(ValueError, match=r"ablation\.layers: \['Rconv0'\] are not dissected \(dissect\.layers: "
                                         r"\['D', 'MFF'\]\)"):
        StudySteps(load_study_config(CONFIGS / "demo.yaml", ["ablation.layers=[Rconv0, D]"]))
    with pytest.raises(ValueError, match=r"correction\.layers: \['Rconv1'\] are not dissected"):
        StudySteps(load_study_config(CONFIGS / "demo.yaml", ["correction.layers=[Rconv1]"]))
    # Fig. 2 ranks the units of D and MFF together: the default ablates every dissected layer
    assert StudySteps(load_study_config(CONFIGS / "demo.yaml")).ablation_layers == ["D", "MFF"]
    assert StudySteps(load_study_config(CONFIGS / "demo.yaml", ["ablation.layers=[MFF]"])).ablation_layers == ["MFF"]


def test_dissection_uses_the_bins_the_units_were_assigned_to() -> None:
    # Eq. 6 assigns unit k to bin floor(k N_b / K) of the training's N_b: the dissection, the error analysis and
    # the unit browser take their bins from the same place, the assign variant's loss
    steps = StudySteps(load_study_config(CONFIGS / "demo.yaml", ["train.loss.num_bins=4"]))
    assert steps.bins == DepthBins("rendered", 4)
    assert StudySteps(load_study_config(CONFIGS / "study/nyu_mff_resnet50.yaml")).bins == DepthBins("nyu", 64)
    with pytest.raises(ValueError, match=r"unknown config key 'dissect\.num_bins'"):
        load_study_config(CONFIGS / "demo.yaml", ["dissect.num_bins=4"])
    # one set of bins for the whole study: a variant cannot change them
    with pytest.raises(ValueError, match=r"variants: their loss bins differ \(baseline: preset 'rendered', "
                                         r"num_bins 64; assign: preset 'rendered', num_bins 8"):
        load_study_config(CONFIGS / "demo.yaml", ["variants.assign.loss.num_bins=8"])


def test_the_rendered_training_config_trains_the_demo_assign_model(tmp_path: Path) -> None:
    """`imde train configs/train/rendered/mff_tiny_assign.yaml` is the demo's L_assign variant on its own."""
    from imde.utils.config import diff_dicts

    demo = load_study_config(CONFIGS / "demo.yaml")
    study_assign = demo.variant_train("assign").to_dict()
    standalone = TrainConfig.from_yaml(CONFIGS / "train" / "rendered" / "mff_tiny_assign.yaml").to_dict()
    monitoring = {"run_dir", "train.eval_every_epoch", "train.dissect_every_epoch"}  # where and what is logged
    assert [key for key in diff_dicts(study_assign, standalone) if key not in monitoring] == []


def test_a_study_config_given_to_imde_train_says_use_imde_study(capsys: pytest.CaptureFixture[str]) -> None:
    from imde.cli import EXIT_BAD_INPUT, main

    assert main(["train", str(CONFIGS / "demo.yaml")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "is a study config" in err and f"`imde study {CONFIGS / 'demo.yaml'}`" in err
