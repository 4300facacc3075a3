"""End-to-end training on CPU: learning, the assign term, files, checkpoint/resume exactness and the guards."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from _train_toy import ToyDepthNet, ToyDepthSet, toy_config

from imde.training import NonFiniteLossError, TrainConfig, train
from imde.training.checkpoint import read_checkpoint
from imde.training.tracking import read_metrics_csv


def _run(run_dir: Path, resume: bool = False, **sections):
    return train(toy_config(str(run_dir), **sections), resume=resume, model=ToyDepthNet(),
                 train_set=ToyDepthSet(16, seed=0), test_set=ToyDepthSet(8, seed=1))


def test_training_reduces_loss_and_writes_the_run(tmp_path: Path) -> None:
    result = _run(tmp_path / "run", optim={"lr": 3e-2}, train={"epochs": 6})
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.history[-1]["eval/rms"] < 0.5 * result.history[0]["eval/rms"]
    assert (result.epochs, result.steps) == (6, 24)
    run = tmp_path / "run"
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["name"] == "toy"
    assert list((run / "tb").iterdir()), "no TensorBoard events"
    rows = read_metrics_csv(run / "metrics.csv")
    step_losses = [r for r in rows if r["kind"] == "step" and r["name"] == "loss"]
    assert [r["step"] for r in step_losses] == list(range(1, 25))
    assert {r["name"] for r in rows if r["kind"] == "eval"} >= {"delta1", "rms", "silog"}
    assert {r["name"] for r in rows if r["kind"] == "dissect"} == {"feat", "feat_assigned", "feat_dead"}
    assert [h["dissect/feat_dead"] for h in result.history] == [0.0] * 6
    best = read_checkpoint(run / "checkpoints" / "best.pt")
    assert best["epoch"] == result.best["epoch"] and result.best["metric"] == "delta1"
    assert best["best"]["value"] == max(h["eval/delta1"] for h in result.history)


def test_assign_term_increases_selectivity(tmp_path: Path) -> None:
    assign = _run(tmp_path / "assign", loss={"interp": "assign", "lam": 1.0}, optim={"lr": 0.1}, train={"epochs": 6})
    baseline = _run(tmp_path / "baseline", optim={"lr": 0.1}, train={"epochs": 6})
    rows = read_metrics_csv(tmp_path / "assign" / "metrics.csv")
    sel = [r["value"] for r in rows if r["kind"] == "step" and r["name"] == "sel/feat"]
    assert len(sel) == 24
    assert sum(sel[-4:]) / 4 > sum(sel[:4]) / 4 + 0.2  # the per-batch assigned selectivity (Eq. 5) goes up
    for h in assign.history:  # the logged term is -lam * (mean selectivity over the epoch's batches)
        assert h["interp"] == pytest.approx(-1.0 * h["sel/feat"], abs=1e-6)
    # on the held-out split (Eq. 5 form, dissection): up with the term, well above the baseline's
    assert assign.history[-1]["dissect/feat_assigned"] > assign.history[0]["dissect/feat_assigned"] + 0.2
    assert assign.history[-1]["dissect/feat_assigned"] > baseline.history[-1]["dissect/feat_assigned"] + 0.2


def test_dissection_counts_dead_units_every_epoch(tmp_path: Path) -> None:
    model = ToyDepthNet()
    with torch.no_grad():  # unit 0 of ``feat`` never fires: no input reaches it and its bias is negative
        model.feat.weight[0].zero_()
        model.feat.bias[0] = -1.0
    result = train(toy_config(str(tmp_path / "run"), train={"epochs": 2}), model=model,
                   train_set=ToyDepthSet(16, seed=0), test_set=ToyDepthSet(8, seed=1))
    assert [h["dissect/feat_dead"] for h in result.history] == [1.0, 1.0]


class _NoisyToySet(ToyDepthSet):
    """The toy with training-time noise drawn from the global torch generator, like random augmentation."""

    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        return {**sample, "image": sample["image"] + 0.01 * torch.rand(sample["image"].shape)}


def test_held_out_passes_leave_the_training_random_stream_alone(tmp_path: Path) -> None:
    losses = {}
    for held_out in (False, True):
        config = toy_config(str(tmp_path / str(held_out)), train={"epochs": 3, "dissect_every_epoch": held_out,
                                                                 "eval_every_epoch": held_out})
        result = train(config, model=ToyDepthNet(), train_set=_NoisyToySet(16, seed=0), test_set=ToyDepthSet(8, seed=1))
        losses[held_out] = [h["loss"] for h in result.history]
    assert losses[True] == losses[False]


def test_resume_is_exact(tmp_path: Path) -> None:
    straight = _run(tmp_path / "straight", loss={"interp": "assign"}, train={"epochs": 2})
    _run(tmp_path / "split", loss={"interp": "assign"}, train={"epochs": 1})
    resumed = _run(tmp_path / "split", resume=True, loss={"interp": "assign"}, train={"epochs": 2})
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    a = read_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    b = read_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = read_metrics_csv(tmp_path / "split" / "metrics.csv")
    assert [r["step"] for r in rows if r["kind"] == "step" and r["name"] == "loss"] == list(range(1, 9))


def test_resume_with_another_config_lists_the_keys(tmp_path: Path) -> None:
    _run(tmp_path / "run", train={"epochs": 1})
    with pytest.raises(ValueError, match=r"differing keys: optim\.lr: 0\.01 -> 0\.001"):
        _run(tmp_path / "run", resume=True, optim={"lr": 1e-3}, train={"epochs": 2})
    with pytest.raises(ValueError, match="already holds checkpoints/last.pt"):
        _run(tmp_path / "run", train={"epochs": 1})
    with pytest.raises(FileNotFoundError, match="last.pt"):
        _run(tmp_path / "other", resume=True)


def test_checkpoint_from_another_model(tmp_path: Path) -> None:
    _run(tmp_path / "run", train={"epochs": 1})
    config = toy_config(str(tmp_path / "run"), model={"name": "mff_tiny"}, train={"epochs": 2})
    with pytest.raises(ValueError, match="is from model 'toy', but the config trains model.name='mff_tiny'"):
        train(config, resume=True, train_set=ToyDepthSet(4), test_set=ToyDepthSet(4))


def test_nan_loss_stops_with_step_files_and_terms(tmp_path: Path) -> None:
    model = ToyDepthNet()
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    config = toy_config(str(tmp_path / "run"))
    with pytest.raises(NonFiniteLossError, match=r"step 0 .*'base': nan.*toy/0_0"):
        train(config, model=model, train_set=ToyDepthSet(8), test_set=ToyDepthSet(4))
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


class Millimetres(ToyDepthSet):
    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        return {**sample, "depth": sample["depth"] * 1000}


def test_millimetre_held_out_data_stops_before_training(tmp_path: Path) -> None:
    config = toy_config(str(tmp_path / "run"))
    with pytest.raises(ValueError, match=r"train \(max depth 10 m\): the first held-out sample: depth: all "
                                         r"valid pixels are beyond .*looks like millimetres"):
        train(config, model=ToyDepthNet(), train_set=ToyDepthSet(4), test_set=Millimetres(4))
    assert not (tmp_path / "run" / "config.yaml").exists()


class DictToy(ToyDepthNet):
    """``ToyDepthNet`` returning ``{"out": depth, "aux": -depth}`` (torchvision segmentation style)."""

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        depth = super().forward(x, focal)
        return {"out": depth, "aux": -depth}


def test_a_dict_returning_model_trains_like_the_tensor_one(tmp_path: Path) -> None:
    loss = {"interp": "assign", "layers": ["feat"], "num_bins": 4}
    runs = [train(toy_config(str(tmp_path / name), loss=loss, train={"epochs": 1}), model=model,
                  train_set=ToyDepthSet(8), test_set=ToyDepthSet(4)) for name, model in
            (("dict", DictToy()), ("tensor", ToyDepthNet()))]
    assert [h["loss"] for h in runs[0].history] == [h["loss"] for h in runs[1].history]
    assert runs[0].history[0]["eval/rms"] == runs[1].history[0]["eval/rms"]


class NaNFeatures(ToyDepthNet):
    """``feat``'s unit 2 is NaN; the prediction reads ``nan_to_num(feat)``, so only the selectivity loss sees it."""

    def __init__(self) -> None:
        super().__init__()
        with torch.no_grad():
            self.feat.bias[2] = float("nan")

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(torch.nan_to_num(self.act(self.feat(self.hidden(x[:, :1])))))


def test_nan_features_stop_with_the_layer_step_and_files(tmp_path: Path) -> None:
    config = toy_config(str(tmp_path / "run"), loss={"interp": "assign", "layers": ["feat"], "num_bins": 4})
    with pytest.raises(NonFiniteLossError, match=r"step 0 .*'interp': nan.*features\['feat'\] .*: 1280 of 5120 values "
                                                 r"are NaN or inf; batch files \['toy/"):
        train(config, model=NaNFeatures(), train_set=ToyDepthSet(8), test_set=ToyDepthSet(4))


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"loss": {"interp": "assign", "layers": ["feat", "nope"]}}, r"loss\.layers: unknown layer 'nope'.*feat"),
        ({"train": {"dissect_layers": ["bogus"]}}, r"train\.dissect_layers: unknown layer 'bogus'"),
        ({"train": {"best_metric": "accuracy"}}, r"train\.best_metric='accuracy'"),
        ({"eval": {"crop": "eigen"}}, r"eval: .*'eigen'"),
    ],
)
def test_bad_config_fails_before_training(tmp_path: Path, sections: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _run(tmp_path / "run", **sections)
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_empty_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the test split is empty"):
        train(toy_config(str(tmp_path)), model=ToyDepthNet(), train_set=ToyDepthSet(8), test_set=ToyDepthSet(0))


def test_registered_model_on_rendered_data_from_config_only(tmp_path: Path) -> None:
    """The config path: ``imde.models.create`` + ``imde.data.create("rendered")`` + transform recipe."""
    config = TrainConfig.from_yaml_dict({
        "run_dir": str(tmp_path / "run"), "device": "cpu", "model": {"name": "mff_tiny"},
        "data": {"name": "rendered", "root": str(tmp_path / "data"), "transform": "simple",
                 "options": {"size": [32, 40], "num_train": 4, "num_test": 2, "num_workers": 0, "progress": False,
                             "generate": True},
                 "batch_size": 2, "eval_batch_size": 2, "num_workers": 0},
        "loss": {"interp": "reg", "layers": ["D", "MFF"]},
        "train": {"epochs": 1, "log_every": 1, "progress": False, "max_steps": 1},
    })
    result = train(config)
    assert result.steps == 1 and result.epochs == 1
    assert math.isfinite(result.history[0]["loss"]) and math.isfinite(result.history[0]["eval/rms"])
    assert {"dissect/D", "dissect/MFF"} <= set(result.history[0])


@pytest.mark.parametrize("metric", [True, False])
def test_vit_trains_with_assign_on_a_token_layer(tmp_path: Path, metric: bool) -> None:
    """depth_anything_tiny through the loop: L_assign on an encoder block (tokens on the patch grid) and a fusion
    stage, the encoder at a tenth of the head's rate; the relative model is evaluated with the zero-shot protocol."""
    config = TrainConfig.from_yaml_dict({
        "run_dir": str(tmp_path / "run"), "device": "cpu",
        "model": {"name": "depth_anything_tiny", "kwargs": {"metric": metric, "max_depth": 10.0}},
        "data": {"name": "rendered", "root": str(tmp_path / "data"), "transform": "simple",
                 "transform_kwargs": {"size": [28, 42]},
                 "options": {"size": [32, 40], "num_train": 4, "num_test": 2, "num_workers": 0, "progress": False,
                             "generate": True},
                 "batch_size": 2, "eval_batch_size": 2, "num_workers": 0},
        "loss": {"interp": "assign", "layers": ["block3", "fusion3"], "num_bins": 8},
        "optim": {"name": "adamw", "encoder_prefixes": ["pretrained."], "encoder_lr_scale": 0.1},
        "train": {"epochs": 1, "log_every": 1, "progress": False, "max_steps": 1},
    })
    result = train(config)
    assert result.steps == 1 and math.isfinite(result.history[0]["loss"])
    assert math.isfinite(result.history[0]["eval/rms"]) and {"dissect/block3", "dissect/fusion3"} <= set(
        result.history[0])


def test_channels_last_trains_the_same_model(tmp_path: Path) -> None:
    """``train.channels_last`` changes the weights' memory layout, not the function they compute.

    Only the first step's loss is compared tightly: with BatchNorm over a few pixels of the deepest stage, the
    rounding differences of the two layouts' convolutions grow quickly from the first update on.
    """
    from imde.models import create

    models, first_loss = {}, {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = create("mff_tiny", d_units=8)
        initial = {name: value.clone() for name, value in model.state_dict().items()}
        run = tmp_path / f"run{channels_last}"
        config = TrainConfig.from_yaml_dict({
            "run_dir": str(run), "device": "cpu", "model": {"name": "mff_tiny"},
            "data": {"name": "rendered", "root": str(tmp_path / "data"), "transform": "simple",
                     "options": {"size": [32, 40], "num_train": 4, "num_test": 2, "progress": False, "generate": True},
                     "batch_size": 2, "num_workers": 0},
            "loss": {"interp": "assign", "layers": ["D", "MFF"]},
            "train": {"epochs": 1, "log_every": 1, "progress": False, "channels_last": channels_last,
                      "eval_every_epoch": False, "dissect_every_epoch": False},
        })
        train(config, model=model)
        models[channels_last] = model
        first_loss[channels_last] = next(r["value"] for r in read_metrics_csv(run / "metrics.csv")
                                         if r["kind"] == "step" and r["name"] == "loss")
    conv = models[True].R.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert models[False].R.conv1.weight.is_contiguous()
    assert not torch.allclose(conv, initial["R.conv1.weight"])  # and training moved them
    assert first_loss[True] == pytest.approx(first_loss[False], rel=1e-5)


def test_a_hugging_face_depth_anything_trains_with_assign_on_its_own_token_layer(tmp_path: Path) -> None:
    """transformers' DepthAnythingForDepthEstimation as it is (it does not train itself) through imde's loop: its
    ``predicted_depth`` is the prediction, its block tokens are laid out on the patch grid, L_assign reaches them."""
    transformers = pytest.importorskip("transformers")
    layer = "backbone.encoder.layer.2"

    def trained_block(interp: str) -> tuple[torch.Tensor, dict]:
        backbone = transformers.Dinov2Config(hidden_size=24, num_hidden_layers=4, num_attention_heads=2,
                                             image_size=28, patch_size=14, out_indices=[1, 2, 3, 4],
                                             reshape_hidden_states=False)
        torch.manual_seed(0)
        model = transformers.DepthAnythingForDepthEstimation(transformers.DepthAnythingConfig(
            backbone_config=backbone, neck_hidden_sizes=[6, 12, 24, 24], fusion_hidden_size=16,
            reassemble_hidden_size=24, patch_size=14))
        model.default_loss, model.max_depth, model.depth_preset = "cspn_l1", 10.0, "nyu"  # the model contract
        config = toy_config(str(tmp_path / interp), model={"name": "depth_anything_hf"},
                            loss={"interp": interp, "layers": [layer], "num_bins": 4, "lam": 1.0},
                            train={"epochs": 1, "max_steps": 2, "dissect_every_epoch": False})
        result = train(config, model=model, train_set=ToyDepthSet(8, size=(28, 42)),
                       test_set=ToyDepthSet(4, seed=1, size=(28, 42)))
        assert result.steps == 2 and math.isfinite(result.history[0]["loss"])
        return model.get_submodule(layer).mlp.fc1.weight.detach(), result.history[0]

    plain, _ = trained_block("none")
    assigned, history = trained_block("assign")
    assert history["interp"] != 0 and math.isfinite(history["interp"])  # -lam * mean DS on the block's patch map
    assert not torch.allclose(plain, assigned)  # the assign term's gradient reached the block's tokens
