"""Feed a batch dict to any model and read its depth prediction, so callers need no per-model logic.

:func:`run_with_features` is the one way the experiments run a model for its prediction and features: eval
mode, no gradients, a :class:`~imde.LayerTap`, the output through :func:`run_model`, every mode restored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from imde.hooks import LayerTap, unwrap_model
from imde.models._output import OutputRule, depth_from_output
from imde.models.hf import token_transforms
from imde.utils.device import resolve_device


def run_model(
    model: nn.Module, batch: Mapping[str, object], device: str | torch.device | None = None, output: OutputRule = None
) -> torch.Tensor:
    """Build a model's input from a batch dict and return its predicted depth ``[B, 1, h, w]`` in metres.

    The model's output (tensor, tuple, dict or ``ModelOutput``) becomes the prediction through
    :func:`imde.models.depth_from_output`.

    Args:
        model: A registered model (declares ``in_chans`` and ``uses_focal``) or any ``nn.Module`` taking an
            image batch, possibly wrapped in ``DataParallel`` / ``DistributedDataParallel``. ``focal`` is passed
            as a keyword only to models that declare ``uses_focal``.
        batch: A collated dataset batch: ``image`` ``[B, 3, H, W]``; ``sparse_depth`` ``[B, 1, H, W]`` for
            4-channel models (CSPN); ``focal`` ``[B]`` for models that use it (BTS-KITTI).
        device: Where to run; default: the device of the model's parameters.
        output: Which part of the output is the depth (a key, an index or a callable); default the model's
            ``depth_output`` attribute when it has one, else the recognised cases of ``depth_from_output``.

    Raises:
        ValueError: when a key the model needs is missing, or the output holds no single depth prediction.
    """
    if device is not None:
        target = resolve_device(device)
    else:
        target = next((p.device for p in model.parameters()), torch.device("cpu"))
    inner = unwrap_model(model)
    name = type(inner).__name__
    if "image" not in batch:
        raise ValueError(f"run_model: batch has keys {sorted(batch)}; expected an 'image' entry")
    image = torch.as_tensor(batch["image"]).to(target)
    if getattr(inner, "in_chans", 3) == 4:
        if "sparse_depth" not in batch:
            raise ValueError(f"run_model: {name} takes RGB + sparse depth; batch has keys {sorted(batch)}, "
                             f"expected a 'sparse_depth' entry [B, 1, H, W]")
        image = torch.cat([image, torch.as_tensor(batch["sparse_depth"]).to(target, image.dtype)], dim=1)
    if getattr(inner, "uses_focal", False):
        if "focal" not in batch:
            raise ValueError(f"run_model: {name} needs the focal length; batch has keys {sorted(batch)}, "
                             f"expected a 'focal' entry [B]")
        focal = torch.as_tensor(batch["focal"]).to(target, torch.float32).reshape(-1)
        raw = model(image, focal=focal)
    else:
        raw = model(image)
    return depth_from_output(raw, output if output is not None else declared_output(inner))


def declared_output(model: nn.Module) -> OutputRule:
    """The model's ``depth_output`` attribute when it is a key, an index or a plain callable, else ``None``.

    A submodule or parameter that happens to be called ``depth_output`` (a model's last layer) is no rule.
    """
    rule = getattr(model, "depth_output", None)
    if isinstance(rule, str | int) or (callable(rule) and not isinstance(rule, nn.Module)):
        return rule
    return None


def run_with_features(
    model: nn.Module,
    batch: Mapping[str, Any],
    layers: str | Sequence[str] = (),
    *,
    device: str | torch.device | None = None,
    grad: bool = False,
    output: Any = None,
    transforms: Mapping[str, Any] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Run ``model`` on a batch in eval mode and return its depth prediction and the tapped layers' features.

    The model is put in eval mode for the pass and every submodule's mode restored afterwards (also on error,
    and also when submodules were in different modes, e.g. frozen BatchNorm layers in a training model); gradients
    are off unless ``grad=True``. The input is built and the output read by :func:`imde.models.run_model`
    (image, sparse depth, focal as the model needs; tensor, tuple, dict or ``ModelOutput`` output).

    Args:
        model: the network (it is not moved: put it on ``device`` first).
        batch: a batch dict with ``image`` ``[B, 3, H, W]`` (and what the model needs besides).
        layers: the layers to tap (none: only the prediction).
        device: where the inputs go; default the device of the model's parameters.
        grad: keep autograd on (e.g. for an input gradient).
        output: which part of the model's output is the depth (``run_model``'s ``output``).
        transforms: ``LayerTap`` transforms for layers whose output is not a map (``imde.tokens_to_map`` for ViT
            tokens); default: those of a Hugging Face ViT depth model's token layers (:func:`token_transforms`).

    Returns:
        ``(prediction [B, 1, h, w], {layer: features [B, K, h', w']})``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 1, 1))
        >>> pred, feats = run_with_features(net, {"image": torch.rand(2, 3, 5, 5)}, ["1"])
        >>> tuple(pred.shape), tuple(feats["1"].shape), net.training
        ((2, 1, 5, 5), (2, 4, 5, 5), True)
    """
    if layers and transforms is None:
        transforms = token_transforms(model, layers)
    tap = LayerTap(model, layers, detach=not grad, transforms=transforms) if layers else None
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.set_grad_enabled(grad), tap if tap is not None else nullcontext():
            prediction = run_model(model, batch, device, output=output)
    finally:
        for module, training in modes:
            module.training = training
    return prediction, dict(tap.features) if tap is not None else {}
