"""One training loop for every model: the model's original loss plus the interpretability term (Eq. 4-6).

``L = L_original(pred, gt resized to pred) + L_interp(features of the chosen layers, gt)`` where
``L_interp`` is ``AssignLoss`` (Eq. 5-6), ``SelectivityRegLoss`` (Eq. 4) or nothing (baseline), computed on
the features captured by ``imde.LayerTap``. After every epoch the loop evaluates (Sec. 5.1 metrics) and
dissects (Eq. 1-2) the held-out split, keeps ``checkpoints/best.pt`` by the chosen metric and
``checkpoints/last.pt`` with everything a resumed run needs. The same code runs on CPU, one GPU or many
processes under ``torchrun`` (DDP, rank-0 logs and checkpoints, all-reduced metrics and dissection).

The work is split into :func:`preflight` (every check, before any training), :func:`train_one_epoch`,
:func:`evaluate_epoch` and :func:`save_checkpoint`; :func:`train` strings them together.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

import imde.training.checkpoint as ckpt
from imde.accumulators import DepthMetrics
from imde.core.bins import DepthBins
from imde.core.metrics import METRIC_NAMES
from imde.errors import NonFiniteFeaturesError
from imde.experiments._depth_check import DepthRangeCheck
from imde.experiments.evaluate import align_prediction
from imde.hooks import LayerTap, resolve_layer, unwrap_model
from imde.models import token_transforms
from imde.training.config import TrainConfig, default_layers
from imde.training.data import build_dataset, eval_loader, train_loader
from imde.training.distributed import DistInfo, all_reduce_mean, barrier, broadcast_buffers, cleanup, setup
from imde.training.optim import LRSchedule, create_optimizer
from imde.training.tracking import RunLogger
from imde.utils.config import save_yaml
from imde.utils.runlock import exclusive_run_dir

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; the message names the step, the batch's files and the terms."""


@dataclass
class TrainResult:
    """What a finished run produced.

    Attributes:
        run_dir: the run directory.
        epochs: completed epochs.
        steps: optimiser steps.
        history: one summary dict per epoch (losses, learning rate, throughput, ``eval/*``, ``dissect/*``).
        best: ``{"metric", "mode", "value", "epoch"}`` of ``best.pt`` (``value`` NaN when never evaluated).
        last_checkpoint: path of ``last.pt``.
        best_checkpoint: path of ``best.pt`` (``None`` without evaluation).
    """

    run_dir: Path
    epochs: int
    steps: int
    history: list[dict[str, float]]
    best: dict[str, Any]
    last_checkpoint: Path
    best_checkpoint: Path | None

    def summary(self) -> dict[str, Any]:
        """A JSON-able digest: run dir, epochs, steps, best, and the last epoch's summary."""
        return {"run_dir": str(self.run_dir), "epochs": self.epochs, "steps": self.steps, "best": dict(self.best),
                "last": dict(self.history[-1]) if self.history else {}}


@dataclass
class RunState:
    """Everything the epoch functions share (built by :func:`preflight` and :func:`build_run`)."""

    config: TrainConfig
    info: DistInfo
    device: torch.device
    model: nn.Module
    train_loader: DataLoader
    test_loader: DataLoader | None
    interp_layers: list[str]
    dissect_layers: list[str]
    bins: DepthBins
    max_depth: float
    base_loss: nn.Module | None = None
    interp_loss: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    schedule: LRSchedule | None = None
    scaler: torch.amp.GradScaler | None = None
    logger: RunLogger | None = None
    epoch: int = 0
    step: int = 0
    best: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    saved: dict[str, Any] | None = None

    @property
    def checkpoints(self) -> Path:
        """``run_dir/checkpoints``."""
        return Path(self.config.run_dir) / "checkpoints"

    @property
    def amp(self) -> bool:
        """Mixed precision is on (CUDA only)."""
        return self.config.train.amp and self.device.type == "cuda"


# --------------------------------------------------------------------------------------------------
# set-up and checks
# --------------------------------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_layers(model: nn.Module, layers: list[str], what: str) -> None:
    for name in layers:
        try:
            resolve_layer(model, name)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None


def preflight(
    config: TrainConfig,
    info: DistInfo,
    device: torch.device,
    resume: bool,
    *,
    model: nn.Module | None = None,
    train_set: Dataset[dict[str, Any]] | None = None,
    test_set: Dataset[dict[str, Any]] | None = None,
) -> RunState:
    """Build the model and the data and check everything that can fail, before any training work.

    Args:
        config: the resolved config.
        info: this process's rank and world size.
        device: where to train.
        resume: continue from ``checkpoints/last.pt``.
        model: a model to train instead of ``imde.models.create(config.model.name, ...)``.
        train_set: a training dataset instead of the config's.
        test_set: a held-out dataset instead of the config's.

    Raises:
        ValueError: unknown layer names (with the model's declared layers), an empty split, an unknown
            ``best_metric``, a checkpoint from another model or config, a fresh run into a run directory
            that already holds a checkpoint, a first held-out sample whose depth lies mostly beyond the model's
            maximum depth (millimetres?).
        FileNotFoundError: ``resume=True`` without ``checkpoints/last.pt``.
    """
    cfg = config
    last = Path(cfg.run_dir) / "checkpoints" / "last.pt"
    saved = _check_run_dir(cfg, last, resume)
    evaluating = cfg.train.eval_every_epoch
    if evaluating and cfg.train.best_metric not in METRIC_NAMES:
        raise ValueError(f"train.best_metric={cfg.train.best_metric!r}: expected one of {', '.join(METRIC_NAMES)}")
    _seed_everything(cfg.seed)
    if model is None:
        from imde.models import create

        model = create(cfg.model.name, pretrained=cfg.model.pretrained, **cfg.model.kwargs)
    if info.world_size > 1:  # one initialisation everywhere, then each process its own augmentations
        _seed_everything(cfg.seed + info.rank)
    max_depth = cfg.eval.max_depth or float(getattr(model, "max_depth", 10.0))
    if evaluating:
        try:  # the crop name and caps, checked now rather than after the first epoch
            DepthMetrics(min_depth=cfg.eval.min_depth, max_depth=max_depth, crop=cfg.eval.crop)
        except ValueError as exc:
            raise ValueError(f"eval: {exc}") from None
    interp_layers = list(cfg.loss.layers) if cfg.loss.interp != "none" else []
    _check_layers(model, interp_layers, "loss.layers")
    dissect_layers = default_layers(cfg, model, cfg.train.dissect_layers) if cfg.train.dissect_every_epoch else []
    _check_layers(model, dissect_layers, "train.dissect_layers")
    if cfg.train.dissect_every_epoch and not dissect_layers:
        raise ValueError(f"train.dissect_every_epoch=true: {type(model).__name__} declares no layers; "
                         f"set train.dissect_layers or train.dissect_every_epoch=false")
    if saved is not None:
        ckpt.load_model_state(model, saved, last)
    train_set = train_set if train_set is not None else build_dataset(cfg.data, "train", train=True)
    held_out = evaluating or cfg.train.dissect_every_epoch
    if held_out and test_set is None:
        test_set = build_dataset(cfg.data, "test", train=False)
    _check_not_empty(train_set, "train")
    if held_out:  # the held-out split: no augmentation, so reading a sample draws no random number
        _check_depth_unit(_check_not_empty(test_set, "test"), max_depth)
    state = RunState(
        config=cfg, info=info, device=device, model=model,
        train_loader=train_loader(train_set, cfg.data, info, cfg.seed),
        test_loader=eval_loader(_check_not_empty(test_set, "test"), cfg.data, info) if held_out else None,
        interp_layers=interp_layers, dissect_layers=dissect_layers,
        bins=cfg.loss.bins(getattr(model, "depth_preset", None)),
        max_depth=max_depth,
        saved=saved,
    )
    state.best = {"metric": cfg.train.best_metric, "mode": cfg.train.best_mode, "value": math.nan, "epoch": 0}
    return state


def _check_run_dir(cfg: TrainConfig, last: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from (checked against ``cfg``), or ``None`` for a fresh run."""
    if not resume:
        if last.is_file():
            raise ValueError(f"run_dir={cfg.run_dir!r} already holds checkpoints/{last.name}; pass resume=True "
                             f"(--resume) to continue it, or choose another run_dir")
        return None
    if not last.is_file():
        raise FileNotFoundError(f"resume=True: {str(last)!r} not found; start the run without resume")
    saved = ckpt.read_checkpoint(last)
    ckpt.check_resume(saved, cfg.to_dict(), last)
    return saved


def _check_not_empty(dataset: Dataset[dict[str, Any]] | None, split: str) -> Dataset[dict[str, Any]]:
    if dataset is None or len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError(f"data: the {split} split is empty (no samples)")
    return dataset


def _check_depth_unit(dataset: Dataset[dict[str, Any]], max_depth: float) -> None:
    """The first held-out sample's depth must lie mostly in ``(0, max_depth]`` (metres, not millimetres)."""
    sample = dataset[0]
    if isinstance(sample, Mapping) and "depth" in sample:
        check = DepthRangeCheck(max_depth, f"train (max depth {max_depth:g} m)", first="the first held-out sample")
        check.update(torch.as_tensor(sample["depth"]))


def _interp_loss(state: RunState) -> nn.Module | None:
    from imde.losses import create

    loss = state.config.loss
    if loss.interp == "none":
        return None
    return create(loss.interp, bins=state.bins, lam=loss.lam, absent_bins=loss.absent_bins, abs_mode=loss.abs_mode,
                  eps=loss.eps)


def build_run(state: RunState) -> None:
    """Losses, optimiser, schedule, AMP scaler, DDP wrapper and logger; restores ``last.pt`` when resuming."""
    from imde.losses import create as create_loss

    cfg = state.config
    model = unwrap_model(state.model)
    default_loss = getattr(model, "default_loss", "")
    if not default_loss:
        raise ValueError(f"{type(model).__name__} declares no default_loss (a name for imde.losses.create)")
    state.base_loss = create_loss(default_loss)
    state.interp_loss = _interp_loss(state)
    state.optimizer = create_optimizer(model, cfg.optim)
    steps_per_epoch = len(state.train_loader)
    total = cfg.train.epochs * steps_per_epoch
    if cfg.train.max_steps is not None:
        total = min(total, cfg.train.max_steps)
    state.schedule = LRSchedule(state.optimizer, cfg.optim, total, mode=cfg.train.best_mode)
    state.scaler = torch.amp.GradScaler("cuda", enabled=state.amp)
    resume_step = _restore(state) if state.saved is not None else None
    memory_format = torch.channels_last if cfg.train.channels_last else torch.preserve_format
    model.to(state.device, memory_format=memory_format)
    if state.info.distributed:
        if cfg.train.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [state.device.index] if state.device.type == "cuda" else None
        state.model = DistributedDataParallel(model, device_ids=device_ids)
    else:
        state.model = model
    _move_optimizer_state(state.optimizer, state.device)
    state.logger = RunLogger(cfg.run_dir, enabled=state.info.is_main, resume_step=resume_step)


def _move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for values in optimizer.state.values():
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and key != "step":
                values[key] = value.to(device)


def _restore(state: RunState) -> int:
    """Optimiser, schedule, scaler, counters, history and RNG states from the checkpoint (weights: preflight)."""
    saved = state.saved
    state.optimizer.load_state_dict(saved["optimizer"])
    state.schedule.load_state_dict(saved["scheduler"])
    if saved["scaler"]:  # a run started without AMP (e.g. on CPU) saved a disabled scaler's empty state
        state.scaler.load_state_dict(saved["scaler"])
    state.epoch, state.step = int(saved["epoch"]), int(saved["step"])
    state.best, state.history = dict(saved["best"]), [dict(h) for h in saved["history"]]
    ckpt.set_rng_state(ckpt.rank_rng_state(saved["rng"], state.info.rank, state.info.world_size))
    return state.step


# --------------------------------------------------------------------------------------------------
# one step, one epoch
# --------------------------------------------------------------------------------------------------


def _loss_terms(state: RunState, batch: Mapping[str, Any], tap: LayerTap | None) -> tuple[dict[str, torch.Tensor], str]:
    """Forward pass and the loss terms: ``loss`` (total), ``base``, ``interp``; and what made a term non-finite.

    The model's output goes through ``run_model``'s output rule (tensor, tuple, dict, ``ModelOutput``). NaN
    or inf features make the selectivity loss refuse them; the term is then NaN and the refusal's message
    (layer, number of bad values) is returned, for :func:`_check_finite` to report with the step and files.
    """
    from imde.models import run_model

    depth = batch["depth"].to(state.device, non_blocking=True)
    with torch.autocast(state.device.type, enabled=state.amp):
        pred = run_model(state.model, batch, state.device)
    pred, target = align_prediction(pred.float(), depth, upsample_to_gt=False)
    terms = {"base": state.base_loss(pred, target)}
    cause = ""
    if state.interp_loss is not None and tap is not None:
        features = {name: tap.features[name].float() for name in state.interp_layers}
        try:
            terms["interp"] = state.interp_loss(features, depth)
        except NonFiniteFeaturesError as error:
            terms["interp"], cause = terms["base"].new_full((), math.nan), str(error)
    else:
        terms["interp"] = terms["base"].new_zeros(())
    terms["loss"] = terms["base"] + terms["interp"]
    return terms, cause


def _check_finite(state: RunState, terms: Mapping[str, torch.Tensor], batch: Mapping[str, Any], cause: str) -> None:
    bad = (~torch.isfinite(terms["loss"].detach())).float()
    if state.info.distributed:
        torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
    if bad.item() > 0:
        values = {name: float(value.detach()) for name, value in terms.items()}
        raise NonFiniteLossError(
            f"non-finite loss at step {state.step} (epoch {state.epoch}, rank {state.info.rank}): terms {values}"
            f"{'; ' + cause if cause else ''}; batch files {list(batch.get('name', ['<no name key>']))}"
        )


def training_step(state: RunState, batch: Mapping[str, Any], tap: LayerTap | None) -> dict[str, torch.Tensor]:
    """One optimiser step on ``batch``; returns the detached loss terms (and per-layer selectivity).

    Raises:
        NonFiniteLossError: the loss is NaN or infinite (on any process).
    """
    cfg = state.config
    state.schedule.before_step(state.epoch, state.step)
    terms, cause = _loss_terms(state, batch, tap)
    _check_finite(state, terms, batch, cause)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(terms["loss"]).backward()
    if cfg.train.grad_clip is not None:
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.train.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.step += 1
    out = {name: value.detach().float() for name, value in terms.items()}
    breakdown = getattr(state.interp_loss, "last_breakdown", {})
    for name in state.interp_layers:
        out[f"sel/{name}"] = torch.tensor(breakdown.get(name, math.nan), device=state.device)
    return out


def _reduce(values: Mapping[str, torch.Tensor]) -> dict[str, float]:
    names = list(values)
    stacked = all_reduce_mean(torch.stack([values[n].to(torch.float64) for n in names]))
    return dict(zip(names, stacked.tolist(), strict=True))


def train_one_epoch(state: RunState) -> dict[str, float]:
    """Train for one epoch (or until ``train.max_steps``); returns the epoch's mean terms, lr and throughput."""
    cfg = state.config
    state.model.train()
    state.train_loader.sampler.set_epoch(state.epoch)
    sums: dict[str, torch.Tensor] = {}
    num_batches, images, window_images = 0, 0, 0
    start = window_start = time.perf_counter()
    # a Hugging Face ViT's token layers are laid out on the patch grid, as for dissection
    transforms = token_transforms(unwrap_model(state.model), state.interp_layers) if state.interp_layers else {}
    tap_context = LayerTap(state.model, state.interp_layers, transforms=transforms) if state.interp_layers \
        else nullcontext()
    bar = tqdm(state.train_loader, desc=f"epoch {state.epoch + 1}/{cfg.train.epochs}",
               disable=not (cfg.train.progress and state.info.is_main), leave=False)
    with tap_context as tap:
        for batch in bar:
            if cfg.train.max_steps is not None and state.step >= cfg.train.max_steps:
                break
            terms = training_step(state, batch, tap)
            count = len(batch["depth"]) * state.info.world_size
            images, window_images, num_batches = images + count, window_images + count, num_batches + 1
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value
            if state.step % cfg.train.log_every == 0:
                now = time.perf_counter()
                logged = _reduce(terms)
                logged.update(lr=state.schedule.lr, img_per_s=window_images / max(now - window_start, 1e-9))
                state.logger.log("step", logged, step=state.step, epoch=state.epoch)
                bar.set_postfix(loss=f"{logged['loss']:.4f}")
                window_images, window_start = 0, now
    if num_batches == 0:
        return {}
    summary = _reduce({name: value / num_batches for name, value in sums.items()})
    summary.update(lr=state.schedule.lr, img_per_s=images / max(time.perf_counter() - start, 1e-9))
    return summary


# --------------------------------------------------------------------------------------------------
# held-out evaluation and dissection
# --------------------------------------------------------------------------------------------------


def evaluate_epoch(state: RunState) -> dict[str, float]:
    """Depth metrics on the held-out split (all processes together), as ``eval/<metric>``."""
    from imde.experiments.evaluate import evaluate

    ev = state.config.eval
    result = evaluate(unwrap_model(state.model), state.test_loader, device=state.device, crop=ev.crop,
                      min_depth=ev.min_depth, max_depth=state.max_depth,
                      max_batches=state.config.train.eval_max_batches, progress=False)
    return {f"eval/{name}": value for name, value in result.metrics.items()}


def dissect_epoch(state: RunState) -> dict[str, float]:
    """Layer selectivity (Eq. 2 with the free max; Eq. 5 with the assignment) and dead units of the held-out split.

    ``dissect/<layer>_dead`` counts the units whose response is 0 in every observed bin, so a run shows when
    units die (or revive) during training.

    The responses are all-reduced over processes by ``compute_responses``; a layer whose units see fewer
    than 2 depth bins gets NaN (and a warning).
    """
    from imde.core.bins import assign_bins
    from imde.core.selectivity import dead_units, depth_selectivity
    from imde.experiments.dissect import compute_responses

    cfg = state.config
    responses = compute_responses(unwrap_model(state.model), state.test_loader, state.dissect_layers,
                                  bins=state.bins, device=state.device,
                                  max_batches=cfg.train.dissect_max_batches, progress=False)
    out: dict[str, float] = {}
    for name, response in responses.items():
        mean = response.mean_response()
        try:
            out[f"dissect/{name}"] = float(depth_selectivity(mean).nanmean())
            assigned = assign_bins(mean.shape[0], mean.shape[1]).to(mean.device)
            out[f"dissect/{name}_assigned"] = float(depth_selectivity(mean, assigned).nanmean())
            out[f"dissect/{name}_dead"] = float(dead_units(mean).sum())
        except ValueError as exc:
            log.warning("dissection of %s: %s", name, exc)
            out[f"dissect/{name}"] = out[f"dissect/{name}_assigned"] = out[f"dissect/{name}_dead"] = math.nan
    return out


# --------------------------------------------------------------------------------------------------
# checkpoints and the driver
# --------------------------------------------------------------------------------------------------


def save_checkpoint(state: RunState, name: str = "last") -> Path:
    """Write ``checkpoints/<name>.pt`` (rank 0 only; every process waits for it)."""
    path = state.checkpoints / f"{name}.pt"
    rng = ckpt.gathered_rng_state()  # every process's, so that each resumes its own augmentations
    if state.info.is_main:
        ckpt.save_checkpoint(
            path, model=state.model, model_name=state.config.model.name, optimizer=state.optimizer.state_dict(),
            scheduler=state.schedule.state_dict(), scaler=state.scaler.state_dict(), epoch=state.epoch,
            step=state.step, best=dict(state.best), history=[dict(h) for h in state.history],
            rng=rng, config=state.config.to_dict(),
        )
    barrier()
    return path


def _is_better(state: RunState, value: float) -> bool:
    best = state.best["value"]
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if state.config.train.best_mode == "max" else value < best


def _finish_epoch(state: RunState, summary: dict[str, float]) -> None:
    cfg = state.config
    held_out: dict[str, float] = {}
    if cfg.train.eval_every_epoch or cfg.train.dissect_every_epoch:
        broadcast_buffers(state.model)  # every process scores the model last.pt will hold
    if cfg.train.eval_every_epoch:
        held_out.update(evaluate_epoch(state))
    if cfg.train.dissect_every_epoch:
        held_out.update(dissect_epoch(state))
    metric = held_out.get(f"eval/{cfg.train.best_metric}")
    state.schedule.after_epoch(metric)
    state.epoch += 1
    record = {"epoch": float(state.epoch), "step": float(state.step), **summary, **held_out}
    state.history.append(record)
    state.logger.log("epoch", summary, step=state.step, epoch=state.epoch)
    state.logger.log("eval", {k[5:]: v for k, v in held_out.items() if k.startswith("eval/")},
                     step=state.step, epoch=state.epoch)
    state.logger.log("dissect", {k[8:]: v for k, v in held_out.items() if k.startswith("dissect/")},
                     step=state.step, epoch=state.epoch)
    improved = metric is not None and _is_better(state, metric)
    if improved:
        state.best.update(value=metric, epoch=state.epoch)
    if improved:  # best.pt first: a last.pt naming a new best always has it written
        save_checkpoint(state, "best")
    save_checkpoint(state, "last")
    if state.info.is_main:
        log.info("%s", _epoch_line(state, record))


def _epoch_line(state: RunState, record: Mapping[str, float]) -> str:
    parts = [f"epoch {state.epoch}/{state.config.train.epochs}", f"step {state.step}"]
    parts += [f"{key} {record[key]:.4g}" for key in ("loss", "base", "interp", "lr", "img_per_s") if key in record]
    parts += [f"{key} {value:.4f}" for key, value in record.items() if key.startswith(("eval/delta1", "eval/rms",
                                                                                     "dissect/"))]
    return " | ".join(parts)


def train(
    config: TrainConfig,
    resume: bool = False,
    *,
    model: nn.Module | None = None,
    train_set: Dataset[dict[str, Any]] | None = None,
    test_set: Dataset[dict[str, Any]] | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``config.data`` with the original loss plus ``config.loss``'s term.

    Writes ``run_dir/config.yaml``, ``checkpoints/last.pt`` (every epoch), ``checkpoints/best.pt`` (by
    ``train.best_metric``), ``metrics.csv`` and TensorBoard events under ``tb/``.

    Args:
        config: the resolved training config.
        resume: continue the run in ``config.run_dir`` from ``last.pt`` exactly (same config required,
            except the keys of :data:`imde.training.checkpoint.RESUMABLE_KEYS`).
        model: train this module instead of ``imde.models.create(config.model.name)`` (it must follow the
            model contract: ``default_loss``, and ``unit_info`` or dotted layer names).
        train_set: training dataset of sample dicts instead of the config's ``data``.
        test_set: held-out dataset instead of the config's ``data``.

    Raises:
        ValueError / FileNotFoundError: bad config, layers, data or checkpoint, before any training work.
        RunFolderBusyError: another process is writing ``config.run_dir``.
        NonFiniteLossError: the loss became NaN or infinite.
    """
    created_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    info, device = setup(config.device)
    try:  # one writer per run folder: rank 0 holds its lock for the whole run
        with exclusive_run_dir(config.run_dir, "imde train") if info.is_main else nullcontext():
            state = preflight(config, info, device, resume, model=model, train_set=train_set, test_set=test_set)
            build_run(state)
            if info.is_main:
                save_yaml(config, Path(config.run_dir) / "config.yaml")
            try:
                while state.epoch < config.train.epochs and not _steps_done(state):
                    summary = train_one_epoch(state)
                    _finish_epoch(state, summary)
            finally:
                state.logger.close()
    finally:
        if created_group:
            cleanup()
    best_path = state.checkpoints / "best.pt"
    return TrainResult(Path(config.run_dir), state.epoch, state.step, state.history, dict(state.best),
                       state.checkpoints / "last.pt", best_path if best_path.is_file() else None)


def _steps_done(state: RunState) -> bool:
    limit = state.config.train.max_steps
    return limit is not None and state.step >= limit
