"""Explaining prediction errors through depth-selective units (Sec. 5.3, Fig. 8; docs/math.md, "FGSM").

An FGSM perturbation ``x' = x + epsilon * sign(grad_x loss(f(x), gt))`` (Goodfellow et al.) is applied in the
network's normalised input space. Pixels with ``max(pred/gt, gt/pred) > 1.25`` are errors; their predicted
depths are histogrammed over the layer's bins, and the units tied to the most frequent bin ``b`` (assigned to
``b`` by Eq. 6, or, for a baseline, whose maximum response is at ``b``) are scored by how well their
top-activated region covers the error pixels.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from imde.accumulators import DepthResponse
from imde.core.bins import DEFAULT_BINS, DepthBins, digitize
from imde.experiments.dissect import LayerDissection, units_to_bins
from imde.experiments.results import SavedResult, as_batch, check_batch, write_json
from imde.models import run_with_features
from imde.utils.device import resolve_device
from imde.utils.io import atomic_torch_save

ERROR_THRESHOLD = 1.25
"""A pixel is an error when ``max(pred/gt, gt/pred)`` exceeds this (the complement of delta1)."""

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def masked_l1(pred: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over pixels with a finite, positive ground truth (the fallback FGSM loss)."""
    valid = torch.isfinite(depth) & (depth > 0)
    if not valid.any():
        raise ValueError("depth: the batch has no valid ground-truth pixel; FGSM needs some")
    return (pred[valid] - depth[valid]).abs().mean()


def default_loss(model: torch.nn.Module) -> LossFn:
    """The model's original loss (``model.default_loss`` through ``imde.losses.create``), else ``masked_l1``."""
    name = getattr(model, "default_loss", None)
    if name is None:
        return masked_l1
    from imde.losses import create

    return create(name)


def resize_depth(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Ground truth ``[B, 1, H, W]`` resized to ``size`` with nearest-neighbour (invalid stays invalid)."""
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise ValueError(f"depth: expected [B, 1, H, W], got {tuple(depth.shape)}")
    if tuple(depth.shape[-2:]) == tuple(size):
        return depth
    return F.interpolate(depth, size=size, mode="nearest")


def fgsm(
    model: torch.nn.Module,
    batch: Mapping[str, Any],
    *,
    epsilon: float = 0.05,
    loss_fn: LossFn | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """FGSM adversarial image ``x + epsilon * sign(grad_x loss(f(x), gt))`` in the normalised input space.

    The model runs in eval mode (its mode is restored); ``loss_fn(pred, depth)`` receives the ground truth
    resized to the prediction with nearest-neighbour (default: ``default_loss(model)``).

    Returns:
        The perturbed ``image`` ``[B, C, H, W]`` on ``device``, detached.
    """
    check_batch(batch)
    if not epsilon >= 0:
        raise ValueError(f"epsilon={epsilon}: expected a non-negative step size")
    dev = resolve_device(device)
    loss_fn = loss_fn or default_loss(model)
    image = batch["image"].to(dev).detach().clone().requires_grad_(True)
    pred, _ = run_with_features(model, {**batch, "image": image}, device=dev, grad=True)
    depth = resize_depth(batch["depth"].to(dev), tuple(pred.shape[-2:]))
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss_fn(pred, depth), image)
    return (image + epsilon * grad.sign()).detach()


def error_mask(pred: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(errors, valid)``: pixels with ``max(pred/gt, gt/pred) > 1.25`` among those with a valid ground truth."""
    if pred.shape != depth.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and depth {tuple(depth.shape)}: expected the same shape")
    valid = torch.isfinite(depth) & (depth > 0)
    safe_gt = torch.where(valid, depth, torch.ones_like(depth))
    safe_pred = pred.clamp(min=torch.finfo(pred.dtype).tiny)
    ratio = torch.maximum(safe_pred / safe_gt, safe_gt / safe_pred)
    return valid & (ratio > ERROR_THRESHOLD), valid


def localisation_iou(activations: torch.Tensor, errors: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """IoU of each unit's top-activated region with the error mask.

    The region holds a unit's ``n`` most activated valid pixels, ``n`` = the number of error pixels (the top-q
    quantile with q = the error fraction), so a unit whose activation equals the error mask scores 1.

    Args:
        activations: ``[U, ...]`` unit maps at the resolution of ``errors``.
        errors: boolean error mask, the shape of one unit map.
        valid: boolean mask of pixels with ground truth, same shape.

    Returns:
        ``[U]`` IoU in ``[0, 1]``; NaN for every unit when there is no error pixel.
    """
    if activations.shape[1:] != errors.shape or errors.shape != valid.shape:
        raise ValueError(f"activations {tuple(activations.shape)}, errors {tuple(errors.shape)} and valid "
                         f"{tuple(valid.shape)}: expected [U, *S], S and S")
    flat_valid = valid.reshape(-1)
    acts = activations.reshape(activations.shape[0], flat_valid.numel())[:, flat_valid].float()
    err = errors.reshape(-1)[flat_valid]
    count = int(err.sum())
    if count == 0:
        return torch.full((activations.shape[0],), float("nan"))
    top = acts.topk(count, dim=1).indices
    region = torch.zeros_like(acts, dtype=torch.bool).scatter_(1, top, True)
    inter = (region & err).sum(dim=1).float()
    return (inter / (region | err).sum(dim=1).float()).cpu()


@dataclass
class ExplainCase:
    """Error analysis of one input (clean or adversarial).

    Attributes:
        image: the normalised input ``[B, C, H, W]``.
        prediction: predicted depth ``[B, 1, h, w]``.
        errors: error mask ``[B, h, w]`` (``delta > 1.25``).
        loss: the FGSM loss on this input.
        error_fraction: error pixels / valid pixels.
        histogram: error pixels per predicted-depth bin ``[N_b]`` (predictions outside the bins are left out).
        top_bin: the most frequent bin ``b`` (-1 when there is no error).
        units: units tied to ``b``.
        feature_maps: their maps upsampled to the prediction ``[B, U, h, w]``.
        localisation: IoU of each unit's top-activated region with the errors ``[U]``.
    """

    image: torch.Tensor
    prediction: torch.Tensor
    errors: torch.Tensor
    loss: float
    error_fraction: float
    histogram: torch.Tensor
    top_bin: int
    units: list[int]
    feature_maps: torch.Tensor
    localisation: torch.Tensor

    @property
    def delta1(self) -> float:
        """Fraction of valid pixels within ``1.25`` (pooled over the batch: delta1 for a single image)."""
        return 1.0 - self.error_fraction

    def to_dict(self) -> dict[str, Any]:
        """The numbers (no images): loss, error fraction, delta1, histogram, top bin, units and their IoU."""
        return {
            "loss": self.loss,
            "error_fraction": self.error_fraction,
            "delta1": self.delta1,
            "histogram": self.histogram.tolist(),
            "top_bin": self.top_bin,
            "units": self.units,
            "localisation": self.localisation.tolist(),
        }


@dataclass
class ExplainResult(SavedResult):
    """FGSM error analysis of one layer (Fig. 8): the clean and the adversarial case.

    Attributes:
        layer: the analysed layer.
        epsilon: the FGSM step.
        unit_bins: ``"assigned"`` (Eq. 6) or ``"preferred"`` (max-response bin from a dissection).
        edges: the layer's bin edges.
        depth: ground truth resized to the prediction ``[B, 1, h, w]``.
        clean: the analysis of the clean input.
        adversarial: the analysis of the FGSM input.
        files: files written (empty without ``out_dir``).
    """

    layer: str
    epsilon: float
    unit_bins: str
    edges: torch.Tensor
    depth: torch.Tensor
    clean: ExplainCase
    adversarial: ExplainCase
    files: list[Path] = field(default_factory=list)
    FILE = "explain"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able numbers of both cases."""
        return {
            "layer": self.layer,
            "epsilon": self.epsilon,
            "unit_bins": self.unit_bins,
            "edges": self.edges.tolist(),
            "clean": self.clean.to_dict(),
            "adversarial": self.adversarial.to_dict(),
        }

    def save(self, out_dir: str | Path, name: str | None = None) -> list[Path]:  # type: ignore[override]
        """Write ``<name>.json`` (the numbers) and ``<name>.pt`` (images, maps, masks) atomically."""
        stem = name or self.FILE
        maps = {"depth": self.depth, "clean": vars(self.clean), "adversarial": vars(self.adversarial)}
        self.files = [write_json(out_dir, f"{stem}.json", self), atomic_torch_save(maps, Path(out_dir) / f"{stem}.pt")]
        return self.files

    @classmethod
    def load(cls, out_dir: str | Path, name: str | None = None) -> ExplainResult:
        """The result :meth:`save` wrote (both files).

        Raises:
            FileNotFoundError: either file is missing.
        """
        stem = Path(out_dir) / (name or cls.FILE)
        for path in (stem.with_suffix(".json"), stem.with_suffix(".pt")):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: the error analysis has not run")
        data = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        maps = torch.load(stem.with_suffix(".pt"), map_location="cpu", weights_only=True)
        return cls(str(data["layer"]), float(data["epsilon"]), str(data["unit_bins"]),
                   torch.tensor(data["edges"], dtype=torch.float64), maps["depth"], ExplainCase(**maps["clean"]),
                   ExplainCase(**maps["adversarial"]))


def _analyse(
    model: torch.nn.Module,
    batch: Mapping[str, Any],
    image: torch.Tensor,
    spec: tuple[str, LayerDissection | None, DepthBins, LossFn],
    dev: torch.device,
) -> tuple[ExplainCase, torch.Tensor, torch.Tensor, str]:
    """Forward ``image``, find the errors, their top bin and that bin's units, and score the units.

    Returns:
        The case, the resized ground truth, the layer's edges and how units were tied to bins.
    """
    layer, dissection, bins, loss_fn = spec
    pred, tapped = run_with_features(model, {**batch, "image": image}, [layer], device=dev)
    features = tapped[layer]
    edges, unit_bins, mode = units_to_bins(features.shape[1], dissection, bins=bins)
    size = tuple(pred.shape[-2:])
    depth = resize_depth(batch["depth"].to(dev), size)
    errors, valid = error_mask(pred, depth)
    bins = digitize(pred[errors], edges.to(dev))
    histogram = torch.bincount(bins[bins >= 0], minlength=edges.numel() - 1).cpu()
    top_bin = int(histogram.argmax()) if histogram.sum() > 0 else -1
    units = torch.nonzero(unit_bins.cpu() == top_bin).flatten() if top_bin >= 0 else torch.zeros(0, dtype=torch.long)
    maps = features[:, units.to(dev)].float()
    if units.numel():  # interpolate rejects empty channel dimensions
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    else:
        maps = maps.new_zeros(maps.shape[0], 0, *size)
    iou = localisation_iou(maps.transpose(0, 1), errors[:, 0], valid[:, 0])
    case = ExplainCase(
        image=image.detach().cpu(),
        prediction=pred.detach().cpu(),
        errors=errors[:, 0].cpu(),
        loss=float(loss_fn(pred, depth)),
        error_fraction=float(errors.sum() / valid.sum().clamp(min=1)),
        histogram=histogram,
        top_bin=top_bin,
        units=units.tolist(),
        feature_maps=maps.cpu(),
        localisation=iou,
    )
    return case, depth.cpu(), edges.cpu(), mode


def run_explain(
    model: torch.nn.Module,
    batch: Mapping[str, Any],
    *,
    layer: str,
    epsilon: float = 0.05,
    responses: DepthResponse | LayerDissection | None = None,
    bins: DepthBins = DEFAULT_BINS,
    loss_fn: LossFn | None = None,
    device: str | torch.device = "cpu",
    out_dir: str | Path | None = None,
) -> ExplainResult:
    """FGSM error analysis of ``layer`` on one batch, clean and adversarial (Fig. 8).

    Args:
        model: the network.
        batch: a batch dict (``image`` normalised, ``depth`` ``[B, 1, H, W]``), usually of one image, or one
            dataset sample (``image`` ``[C, H, W]``).
        layer: the layer whose units explain the errors.
        epsilon: FGSM step in normalised input units (the paper: 0.05).
        responses: a dissection of ``layer`` (baseline models): units are tied to their max-response bin and
            the dissection's edges are used. ``None`` (interpretable models): units are tied to their assigned
            bin ``floor(k N_b / K)`` (Eq. 6) over ``bins.for_units(K)``.
        bins: the depth bins when ``responses`` is ``None``.
        loss_fn: FGSM loss ``loss_fn(pred, depth)``; default the model's original loss, else masked L1.
        device: where to run.
        out_dir: when given, ``explain.json`` and ``explain.pt`` (the maps) are written there.
    """
    batch = as_batch(batch)
    dev = resolve_device(device)
    model.to(dev)
    loss_fn = loss_fn or default_loss(model)
    if isinstance(responses, DepthResponse):
        responses = LayerDissection.from_response(layer, responses)
    spec = (layer, responses, bins, loss_fn)
    adversarial = fgsm(model, batch, epsilon=epsilon, loss_fn=loss_fn, device=dev)
    clean, depth, edges, mode = _analyse(model, batch, batch["image"].to(dev), spec, dev)
    attacked, _, _, _ = _analyse(model, batch, adversarial, spec, dev)
    result = ExplainResult(layer, float(epsilon), mode, edges, depth, clean, attacked)
    if out_dir is not None:
        result.save(out_dir)
    return result
