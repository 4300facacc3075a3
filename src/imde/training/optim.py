"""Optimisers and learning-rate schedules of the training recipes (models-and-data.md, Sec. 5).

``step`` and ``poly`` are pure functions of the epoch / step (so a resumed run continues exactly without
scheduler state); ``plateau`` wraps ``torch.optim.lr_scheduler.ReduceLROnPlateau`` on the held-out metric.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from imde.training.config import OptimConfig


def parameter_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """Trainable parameters split into encoder (names under ``cfg.encoder_prefixes``) and the rest.

    The encoder group gets ``encoder_weight_decay`` (when set), the rest ``weight_decay`` (BTS: encoder 1e-2,
    decoder 0). Each group carries ``lr_scale``, the factor of its rate (``encoder_lr_scale`` for the encoder, 1 for
    the rest). Empty groups are dropped.
    """
    encoder, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (encoder if name.startswith(tuple(cfg.encoder_prefixes)) else rest).append(param)
    encoder_decay = cfg.weight_decay if cfg.encoder_weight_decay is None else cfg.encoder_weight_decay
    groups = [
        {"params": encoder, "weight_decay": encoder_decay, "name": "encoder", "lr_scale": cfg.encoder_lr_scale},
        {"params": rest, "weight_decay": cfg.weight_decay, "name": "decoder", "lr_scale": 1.0},
    ]
    return [group for group in groups if group["params"]]


def create_optimizer(model: nn.Module, cfg: OptimConfig) -> Optimizer:
    """Adam (L2 weight decay, as MFF), AdamW (BTS) or SGD with (Nesterov) momentum (CSPN).

    Raises:
        ValueError: the model has no trainable parameter.
    """
    groups = parameter_groups(model, cfg)
    for group in groups:
        group["lr"] = cfg.lr * group["lr_scale"]
    if not groups:
        raise ValueError(f"{type(model).__name__}: no trainable parameters (all have requires_grad=False)")
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, eps=cfg.eps)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, eps=cfg.eps)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def scheduled_lr(cfg: OptimConfig, epoch: int, step: int, total_steps: int) -> float:
    """Learning rate of the ``step`` and ``poly`` schedules (``cfg.lr`` for ``none`` and ``plateau``).

    - ``step``: ``lr * gamma ** (epoch // step_every)`` with epochs counted from 0 (Hu et al.);
    - ``poly``: ``(lr - min_lr) * (1 - step / total_steps) ** poly_power + min_lr`` per optimiser step (BTS).

    >>> cfg = OptimConfig(lr=1e-4, schedule="step", step_every=5, gamma=0.1)
    >>> [round(scheduled_lr(cfg, e, 0, 1) / 1e-4, 6) for e in (0, 4, 5, 10)]
    [1.0, 1.0, 0.1, 0.01]
    """
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** (epoch // cfg.step_every)
    if cfg.schedule == "poly":
        progress = min(step / max(total_steps, 1), 1.0)
        return (cfg.lr - cfg.min_lr) * (1.0 - progress) ** cfg.poly_power + cfg.min_lr
    return cfg.lr


class LRSchedule:
    """Sets the optimiser's learning rate before every step and after every epoch.

    Args:
        optimizer: the optimiser.
        cfg: the optimiser config (``schedule`` and its parameters).
        total_steps: optimiser steps of the whole run (for ``poly``).
        mode: ``"max"`` or ``"min"``, how the plateau metric improves.
    """

    def __init__(self, optimizer: Optimizer, cfg: OptimConfig, total_steps: int, mode: str = "max") -> None:
        self.optimizer, self.cfg, self.total_steps = optimizer, cfg, total_steps
        self.plateau = None
        if cfg.schedule == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=mode, factor=cfg.gamma, patience=cfg.patience, min_lr=cfg.min_lr
            )

    def before_step(self, epoch: int, step: int) -> None:
        """Apply the ``step``/``poly`` rate for optimiser step ``step`` of epoch ``epoch`` (0-based)."""
        if self.cfg.schedule in ("step", "poly"):
            lr = scheduled_lr(self.cfg, epoch, step, self.total_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)

    def after_epoch(self, metric: float | None) -> None:
        """Feed the plateau schedule the epoch's held-out metric (ignored by the other schedules)."""
        if self.plateau is not None and metric is not None:
            self.plateau.step(metric)

    @property
    def lr(self) -> float:
        """Current base learning rate (of a group with ``lr_scale`` 1, e.g. the decoder)."""
        group = self.optimizer.param_groups[0]
        return float(group["lr"]) / group.get("lr_scale", 1.0)

    def state_dict(self) -> dict[str, Any]:
        """Plateau state (empty for the stateless schedules)."""
        return self.plateau.state_dict() if self.plateau is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if self.plateau is not None and state:
            self.plateau.load_state_dict(state)
