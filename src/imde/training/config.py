"""The training config: one frozen dataclass tree, read from YAML plus ``key=value`` overrides.

Configs layer one way: a YAML file may inherit from others (``base: ../../recipes/mff.yaml``, each
model's original training scheme lives in ``configs/recipes/``), its own values override the bases', and
command-line ``key=value`` overrides override both.

>>> cfg = TrainConfig.from_yaml_dict({"optim": {"name": "adam"}}, ["optim.lr=1e-3", "loss.layers=[D]"])
>>> cfg.optim.name, cfg.optim.lr, cfg.loss.layers, cfg.train.epochs
('adam', 0.001, ('D',), 20)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imde.core.bins import DEPTH_PRESETS, DepthBins
from imde.core.metrics import HIGHER_IS_BETTER, METRIC_NAMES
from imde.utils.config import (
    apply_overrides,
    check_choice,
    check_positive,
    check_range,
    from_dict,
    load_yaml,
    to_dict,
)

DEVICES = ("auto", "cpu", "cuda", "mps")
INTERP_TERMS = ("none", "assign", "reg")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "poly", "plateau")


@dataclass(frozen=True)
class ModelConfig:
    """Which model to train: ``imde.models.create(name, pretrained=pretrained, **kwargs)``."""

    name: str = "mff_resnet50"
    pretrained: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("model.name='': expected a registered model name")


@dataclass(frozen=True)
class DataConfig:
    """Which data: ``imde.data.create(name, root, ...)`` for the train and the held-out split.

    Attributes:
        name: dataset name in the ``imde.data`` registry.
        root: dataset root folder.
        list_file: list of training samples (``None``: the dataset's default for ``train_split``).
        test_list_file: list of held-out samples (``None``: the dataset's default for ``test_split``).
        gt_root: separate ground-truth root where the dataset keeps it apart (KITTI).
        train_split: split name used for training.
        test_split: split name used for per-epoch evaluation and dissection.
        options: extra keyword arguments for the dataset.
        transform: transform recipe of ``imde.data.transforms.create_transform`` (``None``: raw samples, no
            ImageNet normalisation).
        transform_kwargs: extra keyword arguments for the transform recipe.
        batch_size: training batch size (global: divided over processes in DDP).
        eval_batch_size: batch size for evaluation and dissection.
        num_workers: DataLoader workers.
        subset: use only the first N samples of each split (smoke runs).
    """

    name: str = "nyu_hu_csv"
    root: str = "data/nyu"
    list_file: str | None = None
    test_list_file: str | None = None
    gt_root: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    options: dict[str, Any] = field(default_factory=dict)
    transform: str | None = "simple"
    transform_kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 8
    eval_batch_size: int = 1
    num_workers: int = 4
    subset: int | None = None

    def __post_init__(self) -> None:
        check_positive("batch_size", self.batch_size)
        check_positive("eval_batch_size", self.eval_batch_size)
        check_positive("num_workers", self.num_workers, allow_zero=True)
        check_positive("subset", self.subset, allow_none=True)


@dataclass(frozen=True)
class LossConfig:
    """The interpretability term added to the model's original loss (Eq. 4-6).

    Attributes:
        interp: ``"none"`` (baseline), ``"assign"`` (Eq. 5-6, ``AssignLoss``) or ``"reg"`` (Eq. 4,
            ``SelectivityRegLoss``).
        layers: layer names the term applies to (declared names such as ``"D"`` or dotted module paths).
        lam: the weight lambda (the term is ``-lam * sum over layers of mean selectivity``).
        num_bins: requested number of depth bins (``min(num_bins, K)`` per layer).
        preset: depth-bin preset (a key of ``imde.core.bins.DEPTH_PRESETS``: ``"nyu"``, ``"kitti"``,
            ``"rendered"``) or ``[alpha, beta]`` (``None``: the model's preset).
        absent_bins: ``"skip"`` (the paper: units whose assigned bin is absent from the batch are left out) or
            ``"authors"`` (the authors' code: counted as 0); see ``imde.losses.selectivity``.
        abs_mode: ``"paper"`` (``|mean A|``) or ``"authors"`` (``mean |A|``, the authors' code).
        eps: added to the denominator of every unit's DS in the term, in units of the layer's activations
            (0: the paper's Eq. 4-5); ``eps > 0`` keeps units from fading out (``imde.losses.selectivity``).
    """

    interp: str = "none"
    layers: tuple[str, ...] = ()
    lam: float = 0.1
    num_bins: int = 64
    preset: str | tuple[float, float] | None = None
    absent_bins: str = "skip"
    abs_mode: str = "paper"
    eps: float = 0.0

    def __post_init__(self) -> None:
        check_choice("interp", self.interp, INTERP_TERMS)
        check_choice("absent_bins", self.absent_bins, ("skip", "authors"))
        check_choice("abs_mode", self.abs_mode, ("paper", "authors"))
        check_positive("lam", self.lam, allow_zero=True)
        check_positive("eps", self.eps, allow_zero=True)
        check_positive("num_bins", self.num_bins)
        if self.num_bins < 2:
            raise ValueError(f"num_bins={self.num_bins}: expected at least 2 bins")
        if self.interp != "none" and not self.layers:
            raise ValueError(f"layers=[]: interp={self.interp!r} needs at least one layer name, e.g. layers=[D,MFF]")
        if isinstance(self.preset, str):
            check_choice("preset", self.preset, tuple(DEPTH_PRESETS))
        elif self.preset is not None and not 0 < self.preset[0] < self.preset[1]:
            raise ValueError(f"preset={list(self.preset)}: expected [alpha, beta] with 0 < alpha < beta")

    def bins(self, model_preset: str | None = None) -> DepthBins:
        """The depth bins of the term, and of every dissection of the trained model (Eq. 6 assigns to them).

        Args:
            model_preset: the model's declared ``depth_preset``, used when ``preset`` is ``None`` (else NYU's).

        Example:
            >>> LossConfig(num_bins=8).bins("kitti")
            DepthBins(preset='kitti', num_bins=8, kind='sid')
        """
        return DepthBins(self.preset or model_preset or "nyu", self.num_bins)


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule.

    Attributes:
        name: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        lr: base learning rate.
        weight_decay: weight decay of the decoder (and of everything when ``encoder_weight_decay`` is ``None``).
        encoder_weight_decay: weight decay of parameters under ``encoder_prefixes`` (BTS: 1e-2).
        encoder_prefixes: module-name prefixes that make up the encoder.
        encoder_lr_scale: the encoder's learning rate is ``lr * encoder_lr_scale`` under every schedule (Depth
            Anything V2: 0.1, the encoder at a tenth of the head's rate).
        momentum: SGD momentum.
        nesterov: SGD Nesterov momentum.
        eps: Adam/AdamW epsilon.
        schedule: ``"none"``, ``"step"`` (×``gamma`` every ``step_every`` epochs), ``"poly"`` (per step,
            ``(lr - min_lr) * (1 - t/T)**poly_power + min_lr``) or ``"plateau"`` (×``gamma`` after
            ``patience`` epochs without improvement of ``train.best_metric``).
        step_every: epochs between step decays.
        gamma: decay factor of ``step`` and ``plateau``.
        poly_power: exponent of ``poly``.
        min_lr: floor of ``poly`` and ``plateau``.
        patience: epochs of ``plateau``.
    """

    name: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    encoder_weight_decay: float | None = None
    encoder_prefixes: tuple[str, ...] = ("encoder.", "E.")
    encoder_lr_scale: float = 1.0
    momentum: float = 0.9
    nesterov: bool = False
    eps: float = 1e-8
    schedule: str = "none"
    step_every: int = 5
    gamma: float = 0.1
    poly_power: float = 0.9
    min_lr: float = 0.0
    patience: int = 3

    def __post_init__(self) -> None:
        check_choice("name", self.name, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("encoder_weight_decay", self.encoder_weight_decay, allow_zero=True, allow_none=True)
        check_positive("encoder_lr_scale", self.encoder_lr_scale)
        check_range("momentum", self.momentum, 0.0, 1.0)
        check_positive("eps", self.eps)
        check_positive("step_every", self.step_every)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_positive("poly_power", self.poly_power)
        check_positive("min_lr", self.min_lr, allow_zero=True)
        check_positive("patience", self.patience, allow_zero=True)
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr}: expected at most lr={self.lr}")
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError(f"nesterov=true: needs name='sgd' and momentum > 0 (got {self.name!r}, {self.momentum})")


@dataclass(frozen=True)
class LoopConfig:
    """The loop itself.

    Attributes:
        epochs: number of epochs.
        max_steps: stop after this many optimiser steps in total (``None``: no limit), for quick runs. The epoch
            it cuts short counts as finished (evaluated, checkpointed): resumed with a larger limit, a run goes
            on with the next epoch, so it differs from one trained without the limit.
        log_every: log the step's losses every this many steps.
        amp: mixed precision (used on CUDA only; ignored elsewhere).
        channels_last: keep the model's 4-D weights (and so its activations) in channels-last memory format,
            the layout oneDNN and cuDNN convolutions run fastest in (measured in docs/benchmarks.md); the
            numbers are the same up to floating-point rounding.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        eval_every_epoch: evaluate on the held-out split after every epoch.
        dissect_every_epoch: dissect ``dissect_layers`` on the held-out split after every epoch (logged as
            ``dissect/<layer>``, ``dissect/<layer>_assigned`` and the dead-unit count ``dissect/<layer>_dead``).
        dissect_layers: layers to dissect (``None``: ``loss.layers``, or every declared layer for a baseline).
        dissect_max_batches: limit the per-epoch dissection to this many batches (``None``: the whole split).
        eval_max_batches: limit the per-epoch evaluation to this many batches (``None``: the whole split).
        best_metric: metric that selects ``best.pt`` (any key of the evaluation metrics).
        best_mode: ``"max"`` or ``"min"``.
        sync_bn: convert BatchNorm to SyncBatchNorm under DDP.
        progress: show tqdm progress bars.
    """

    epochs: int = 20
    max_steps: int | None = None
    log_every: int = 50
    amp: bool = True
    channels_last: bool = False
    grad_clip: float | None = None
    eval_every_epoch: bool = True
    dissect_every_epoch: bool = True
    dissect_layers: tuple[str, ...] | None = None
    dissect_max_batches: int | None = None
    eval_max_batches: int | None = None
    best_metric: str = "delta1"
    best_mode: str = "max"
    sync_bn: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        check_positive("epochs", self.epochs)
        check_positive("max_steps", self.max_steps, allow_none=True)
        check_positive("log_every", self.log_every)
        check_positive("grad_clip", self.grad_clip, allow_none=True)
        check_positive("dissect_max_batches", self.dissect_max_batches, allow_none=True)
        check_positive("eval_max_batches", self.eval_max_batches, allow_none=True)
        check_choice("best_mode", self.best_mode, ("max", "min"))
        if self.best_metric in METRIC_NAMES:  # a best.pt (and a plateau) chosen the wrong way round is no best
            better = "max" if self.best_metric in HIGHER_IS_BETTER else "min"
            if self.best_mode != better:
                raise ValueError(f"train.best_mode={self.best_mode!r} with train.best_metric={self.best_metric!r}: "
                                 f"a {'higher' if better == 'max' else 'lower'} {self.best_metric} is better, so "
                                 f"best_mode must be {better!r}")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol (docs/math.md, "Depth metrics"): crop mask name and depth caps."""

    crop: str = "none"
    min_depth: float = 1e-3
    max_depth: float | None = None

    def __post_init__(self) -> None:
        check_positive("min_depth", self.min_depth)
        if self.max_depth is not None and self.max_depth <= self.min_depth:
            raise ValueError(f"max_depth={self.max_depth}: expected more than min_depth={self.min_depth}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved as ``run_dir/config.yaml`` and inside every checkpoint.

    Attributes:
        run_dir: output folder (config, checkpoints, metrics.csv, tb/).
        seed: random seed (torch, numpy, python).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (``"mps"`` is refused: no float64).
    """

    run_dir: str = "runs/train"
    seed: int = 0
    device: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.device.split(":", 1)[0] not in DEVICES:
            raise ValueError(f"device={self.device!r}: expected one of {', '.join(DEVICES)} (or 'cuda:N')")
        if not self.run_dir:
            raise ValueError("run_dir='': expected an output folder")
        if self.optim.schedule == "plateau" and not self.train.eval_every_epoch:
            raise ValueError(
                "optim.schedule='plateau' follows the held-out metric: it needs train.eval_every_epoch=true"
            )

    @classmethod
    def from_yaml_dict(cls, data: Mapping[str, Any], overrides: Iterable[str] = ()) -> TrainConfig:
        """Resolve a config from a YAML mapping (its ``base:`` files already merged in) and ``overrides``.

        Raises:
            ValueError: an unknown key (with the closest valid one) or an invalid value, naming the key.
        """
        merged = apply_overrides(data, overrides)
        if merged.get("recipe") is not None:
            raise ValueError(f"recipe={merged['recipe']!r}: recipes are YAML files now; write "
                             f"base: configs/recipes/{merged['recipe']}.yaml (relative to your config) instead")
        merged.pop("recipe", None)  # recorded as null by older runs
        return from_dict(cls, merged)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> TrainConfig:
        """Read ``path`` (YAML, ``base:`` inheritance resolved) and resolve it with ``overrides`` (``key=value``).

        Raises:
            FileNotFoundError: ``path`` or one of its bases does not exist.
            ValueError: invalid YAML, a study config, an unknown key (with the closest valid one), or an invalid
                value.
        """
        data = load_yaml(path)
        if "variants" in data:
            raise ValueError(f"{path} is a study config (it has 'variants'): run it with `imde study {path}`; "
                             "`imde train` takes a training config (e.g. configs/train/rendered/mff_tiny.yaml)")
        return cls.from_yaml_dict(data, overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML- and ``weights_only``-safe)."""
        return to_dict(self)


def default_layers(config: TrainConfig, model: Any, requested: Iterable[str] | None = None) -> list[str]:
    """The layers a task works on: ``requested``, else ``config.loss.layers``, else every layer ``model`` declares.

    Example:
        >>> default_layers(TrainConfig(loss=LossConfig(interp="assign", layers=("D",))), None)
        ['D']
    """
    if requested:
        return list(requested)
    if config.loss.layers:
        return list(config.loss.layers)
    return [info.name for info in getattr(model, "unit_info", ())]
