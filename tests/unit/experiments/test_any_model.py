"""Models imde did not ship: torchvision ResNet bottlenecks (in-place ops after the tapped layer) and models
returning dicts, through taps, the selectivity loss and every experiment."""

from __future__ import annotations

import copy
import types

import pytest
import torch
from _tiny_models import DepthInImage, make_batches
from torch import nn
from torchvision import models
from torchvision.models import segmentation
from torchvision.models.resnet import Bottleneck

from imde.core.bins import DepthBins
from imde.experiments.ablate import run_ablation
from imde.experiments.correct import run_correction
from imde.experiments.dissect import compute_responses
from imde.experiments.evaluate import EvalSettings, evaluate
from imde.experiments.explain import run_explain
from imde.hooks import LayerTap
from imde.losses.selectivity import AssignLoss
from imde.models import run_with_features


def _fcn() -> nn.Module:
    torch.manual_seed(0)
    model = segmentation.fcn_resnet50(num_classes=1, weights=None, weights_backbone=None)
    with torch.no_grad():
        model.classifier[-1].bias.fill_(5.0)  # predictions around 5 m, inside the evaluation caps
    model.max_depth = 10.0
    return model.eval()


def _bottleneck_out_of_place(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ``Bottleneck.forward`` with ``out = out + identity`` and a non-in-place ReLU."""
    out = torch.relu(self.bn1(self.conv1(x)))
    out = torch.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    identity = x if self.downsample is None else self.downsample(x)
    return torch.relu(out + identity)


def _without_in_place(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (same weights) whose bottlenecks and ReLUs change no tensor in place."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if isinstance(module, Bottleneck):
            module.forward = types.MethodType(_bottleneck_out_of_place, module)
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return twin


@pytest.mark.parametrize(("build", "prefix", "size"), [
    (lambda: models.resnet50(weights=None).eval(), "", 64),
    (_fcn, "backbone.", 32),
])
def test_bottleneck_bn3_tap_equals_its_ops_run_by_hand(build, prefix: str, size: int) -> None:
    torch.manual_seed(1)
    model, x = build(), torch.randn(2, 3, size, size)
    block = model.get_submodule(f"{prefix}layer4.2")
    with torch.no_grad(), LayerTap(model, [f"{prefix}layer4.1", f"{prefix}layer4.2.bn3"]) as tap:
        model(x)
    inputs = tap.features[f"{prefix}layer4.1"]  # the block's input
    relu = nn.functional.relu
    with torch.no_grad():  # outside the tap, so these calls do not overwrite its features
        by_hand = block.bn3(block.conv3(relu(block.bn2(block.conv2(relu(block.bn1(block.conv1(inputs))))))))
    assert by_hand.min() < 0  # the block's `out += identity; relu(out)` would have rectified these
    torch.testing.assert_close(tap.features[f"{prefix}layer4.2.bn3"], by_hand, rtol=1e-5, atol=1e-5)


def test_fcn_dissection_and_assign_loss_gradient_equal_the_model_without_in_place_ops() -> None:
    model = _fcn()
    twin = _without_in_place(model)
    layer = "backbone.layer4.2.bn3"
    batches = make_batches(2, 2, size=(32, 32))
    for name, response in compute_responses(model, batches, [layer], bins=DepthBins("nyu", 8)).items():
        reference = compute_responses(twin, batches, [layer], bins=DepthBins("nyu", 8))[name]
        torch.testing.assert_close(response.sums, reference.sums)
        assert torch.equal(response.counts, reference.counts)
    grads = []
    for net in (model.train(), twin.train()):
        with LayerTap(net, [layer]) as tap:
            net(batches[0]["image"])
            AssignLoss(num_bins=8)({layer: tap.features[layer]}, batches[0]["depth"]).backward()
        grads.append(net.get_submodule(layer).weight.grad)
    assert grads[0].abs().sum() > 0  # the gradient reaches the tapped layer
    torch.testing.assert_close(grads[0], grads[1])


def test_fcn_ablation_edits_the_returned_output() -> None:
    model = _fcn()
    twin = _without_in_place(model)
    layer = "backbone.layer4.2.bn3"
    batches = make_batches(1, 2, size=(32, 32))
    order = {layer: torch.linspace(0, 1, 2048)}
    settings = EvalSettings()
    ablated, reference = (run_ablation(net, batches, order, step=[0, 1024], metric="rms", settings=settings)
                          for net in (model, twin))
    assert ablated.most_selective_first == pytest.approx(reference.most_selective_first, rel=1e-5)
    assert ablated.least_selective_first == pytest.approx(reference.least_selective_first, rel=1e-5)
    assert ablated.most_selective_first[1] != pytest.approx(ablated.most_selective_first[0])  # ablation acts


class DictDepth(DepthInImage):
    """:class:`DepthInImage` returning ``{"out": depth, "aux": -depth}`` like torchvision's segmentation nets."""

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        depth = super().forward(x)
        return {"out": depth, "aux": -depth}


class TensorOf(nn.Module):
    """The ``"out"`` entry of a dict-returning model as a plain tensor (layer names gain ``inner.``)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.max_depth = inner, inner.max_depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)["out"]


@pytest.mark.parametrize(("build", "layer"), [
    (lambda: DictDepth([0.5, 0.3, 0.2], noise=0.3), "feat"),
    (_fcn, "backbone.layer1.2.bn3"),
])
def test_dict_outputs_through_every_experiment(build, layer: str) -> None:
    model = build()
    plain = TensorOf(model)
    batches = make_batches(2, 2, size=(32, 32))
    settings = EvalSettings(max_depth=10.0)

    assert evaluate(model, batches, max_depth=10.0, progress=False).metrics == pytest.approx(
        evaluate(plain, batches, max_depth=10.0, progress=False).metrics, nan_ok=True)
    responses = compute_responses(model, batches, [layer], bins=DepthBins("nyu", 4))
    reference = compute_responses(plain, batches, [f"inner.{layer}"], bins=DepthBins("nyu", 4))
    torch.testing.assert_close(responses[layer].sums, reference[f"inner.{layer}"].sums)
    units = responses[layer].num_units
    order = {layer: torch.linspace(0, 1, units)}
    ablation = run_ablation(model, batches, order, step=[1], metric="rms", settings=settings)
    assert ablation.most_selective_first == pytest.approx(run_ablation(
        plain, batches, {f"inner.{layer}": order[layer]}, step=[1], metric="rms", settings=settings
    ).most_selective_first, nan_ok=True)
    corrected = run_correction(model, responses, batches, [layer], settings=settings)
    assert corrected.after == pytest.approx(run_correction(
        plain, reference, batches, [f"inner.{layer}"], settings=settings).after, nan_ok=True)
    explained = run_explain(model, batches[0], layer=layer, bins=DepthBins("nyu", 4))
    expected = run_explain(plain, batches[0], layer=f"inner.{layer}", bins=DepthBins("nyu", 4))
    torch.testing.assert_close(explained.clean.prediction, expected.clean.prediction)
    torch.testing.assert_close(explained.adversarial.image, expected.adversarial.image)
    prediction, _ = run_with_features(model, batches[0])
    torch.testing.assert_close(prediction, plain(batches[0]["image"]))
