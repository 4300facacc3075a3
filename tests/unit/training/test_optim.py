"""Optimisers and schedules of the recipes: parameter groups, step/poly formulas, plateau."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imde.training.config import OptimConfig
from imde.training.optim import LRSchedule, create_optimizer, parameter_groups, scheduled_lr


class EncDec(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(2, 2)
        self.decoder = nn.Linear(2, 1)
        self.frozen = nn.Linear(1, 1)
        self.frozen.requires_grad_(False)


def test_encoder_weight_decay_group() -> None:
    groups = parameter_groups(EncDec(), OptimConfig(name="adamw", weight_decay=0.0, encoder_weight_decay=1e-2))
    assert [(g["name"], g["weight_decay"], len(g["params"])) for g in groups] == [("encoder", 1e-2, 2),
                                                                                  ("decoder", 0.0, 2)]
    same = parameter_groups(EncDec(), OptimConfig(weight_decay=1e-4))
    assert [g["weight_decay"] for g in same] == [1e-4, 1e-4]


@pytest.mark.parametrize(
    ("cfg", "cls", "checks"),
    [
        (OptimConfig(name="adam", lr=1e-4, weight_decay=1e-4), torch.optim.Adam, {"lr": 1e-4, "eps": 1e-8}),
        (OptimConfig(name="adamw", eps=1e-6), torch.optim.AdamW, {"eps": 1e-6}),
        (OptimConfig(name="sgd", lr=0.01, momentum=0.9, nesterov=True), torch.optim.SGD,
         {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    ],
)
def test_create_optimizer(cfg: OptimConfig, cls: type, checks: dict) -> None:
    opt = create_optimizer(EncDec(), cfg)
    assert type(opt) is cls
    for key, value in checks.items():
        assert opt.param_groups[0][key] == value


def test_no_trainable_parameters() -> None:
    with pytest.raises(ValueError, match="no trainable parameters"):
        create_optimizer(nn.Linear(1, 1).requires_grad_(False), OptimConfig())


def test_poly_schedule_formula() -> None:
    cfg = OptimConfig(name="adamw", lr=1e-4, schedule="poly", poly_power=0.9, min_lr=1e-5)
    assert scheduled_lr(cfg, 0, 0, 100) == pytest.approx(1e-4)
    assert scheduled_lr(cfg, 0, 50, 100) == pytest.approx(9e-5 * 0.5**0.9 + 1e-5)
    assert scheduled_lr(cfg, 3, 100, 100) == pytest.approx(1e-5)
    assert scheduled_lr(cfg, 3, 150, 100) == pytest.approx(1e-5)  # never below min_lr


def test_schedule_sets_every_group() -> None:
    opt = create_optimizer(EncDec(), OptimConfig(lr=1e-4, schedule="step", step_every=5, gamma=0.1))
    schedule = LRSchedule(opt, OptimConfig(lr=1e-4, schedule="step", step_every=5, gamma=0.1), total_steps=10)
    schedule.before_step(epoch=12, step=0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-6, 1e-6])
    assert schedule.state_dict() == {}


def test_plateau_reduces_after_patience_and_round_trips() -> None:
    cfg = OptimConfig(name="sgd", lr=0.01, schedule="plateau", gamma=0.1, patience=1, min_lr=1e-6)
    opt = create_optimizer(EncDec(), cfg)
    schedule = LRSchedule(opt, cfg, total_steps=10, mode="min")
    for metric in (1.0, 1.0, 1.0):  # best, then 2 epochs without improvement > patience 1
        schedule.after_epoch(metric)
    assert schedule.lr == pytest.approx(1e-3)
    schedule.before_step(epoch=5, step=3)  # plateau ignores the step hook
    assert schedule.lr == pytest.approx(1e-3)
    other = LRSchedule(create_optimizer(EncDec(), cfg), cfg, total_steps=10, mode="min")
    other.load_state_dict(schedule.state_dict())
    assert other.plateau.best == 1.0 and other.plateau.num_bad_epochs == schedule.plateau.num_bad_epochs


def test_encoder_lr_scale_follows_every_schedule() -> None:
    """Depth Anything V2's scheme: the encoder at a tenth of the head's rate, also after poly decay."""
    model = nn.Module()
    model.pretrained, model.head = nn.Linear(2, 2), nn.Linear(2, 1)
    cfg = OptimConfig(name="adamw", lr=5e-5, encoder_lr_scale=0.1, encoder_prefixes=("pretrained.",),
                      weight_decay=0.01, schedule="poly", poly_power=0.9)
    opt = create_optimizer(model, cfg)
    assert [(g["name"], g["lr"]) for g in opt.param_groups] == [("encoder", pytest.approx(5e-6)),
                                                               ("decoder", pytest.approx(5e-5))]
    schedule = LRSchedule(opt, cfg, total_steps=100)
    schedule.before_step(epoch=0, step=50)
    head = 5e-5 * 0.5**0.9
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([head / 10, head])
    assert schedule.lr == pytest.approx(head / 10 / 0.1)
    with pytest.raises(ValueError, match="encoder_lr_scale"):
        OptimConfig(encoder_lr_scale=0.0)
