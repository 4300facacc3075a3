"""The one rule from a model's output (tensor, tuple, dict, ModelOutput) to the depth prediction [B, 1, H, W]."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from imde.models import depth_from_output, run_model

DEPTH = torch.arange(24.0).view(2, 1, 3, 4)


def test_tensor_tuple_and_recognised_keys() -> None:
    assert depth_from_output(DEPTH) is DEPTH
    assert torch.equal(depth_from_output(DEPTH[:, 0]), DEPTH)  # [B, H, W] gets its channel axis
    assert depth_from_output((DEPTH, torch.zeros(1))) is DEPTH
    assert depth_from_output([{"out": DEPTH}]) is DEPTH  # first element, then the dict rule
    assert depth_from_output(OrderedDict(out=DEPTH, aux=-DEPTH)) is DEPTH  # torchvision segmentation
    assert torch.equal(depth_from_output({"predicted_depth": DEPTH[:, 0], "hidden_states": None}), DEPTH)
    assert depth_from_output({"depth": DEPTH, "normals": torch.zeros(2, 3, 3, 4)}) is DEPTH
    assert depth_from_output({"logits": DEPTH, "n": 3}) is DEPTH  # the only tensor


def test_hugging_face_model_output() -> None:
    outputs = pytest.importorskip("transformers.modeling_outputs")
    raw = outputs.DepthEstimatorOutput(predicted_depth=DEPTH[:, 0], hidden_states=(torch.zeros(2, 5, 8),))
    assert torch.equal(depth_from_output(raw), DEPTH)


def test_explicit_key_index_or_callable() -> None:
    raw = {"coarse": -DEPTH, "fine": DEPTH}
    assert depth_from_output(raw, "fine") is DEPTH
    assert depth_from_output((-DEPTH, DEPTH), 1) is DEPTH
    assert torch.equal(depth_from_output(raw, lambda r: r["coarse"] * -1), DEPTH)
    with pytest.raises(ValueError, match=r"output='mid': the model's output has keys 'coarse', 'fine'"):
        depth_from_output(raw, "mid")
    with pytest.raises(ValueError, match="output=2: the model returned a tuple of 2 elements"):
        depth_from_output((DEPTH, DEPTH), 2)


def test_ambiguous_or_wrong_outputs_are_named() -> None:
    with pytest.raises(ValueError, match=r"keys 'coarse', 'fine'; recognised: predicted_depth, depth, out"):
        depth_from_output({"coarse": DEPTH, "fine": DEPTH})
    with pytest.raises(ValueError, match=r"keys 'depth', 'out'"):
        depth_from_output({"depth": DEPTH, "out": DEPTH})
    with pytest.raises(ValueError, match=r"output\['out'\]: expected the depth prediction .*\(2, 3, 3, 4\)"):
        depth_from_output({"out": torch.zeros(2, 3, 3, 4)})
    with pytest.raises(ValueError, match=r"output\[0\]: the model returned str; expected a Tensor, tuple or dict"):
        depth_from_output(("depth",))
    with pytest.raises(ValueError, match="empty tuple"):
        depth_from_output(())


class TwoHeads(nn.Module):
    """Returns ``{"coarse": x0, "fine": 2 x0}``: which one is the depth only the caller knows."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"coarse": x[:, :1], "fine": 2 * x[:, :1]}


def test_run_model_takes_the_argument_then_the_model_attribute() -> None:
    model, batch = TwoHeads(), {"image": torch.ones(1, 3, 2, 2)}
    with pytest.raises(ValueError, match="model.depth_output"):
        run_model(model, batch)
    assert float(run_model(model, batch, output="fine").mean()) == 2.0
    model.depth_output = "coarse"
    assert float(run_model(model, batch).mean()) == 1.0
    assert float(run_model(nn.DataParallel(model), batch).mean()) == 1.0  # read from the unwrapped model
    assert float(run_model(model, batch, output="fine").mean()) == 2.0


class HeadNamedDepthOutput(nn.Module):
    """A model whose last layer is *called* ``depth_output``: a layer, not an output rule."""

    def __init__(self) -> None:
        super().__init__()
        self.depth_output = nn.Conv2d(3, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.depth_output(x), x


def test_a_layer_called_depth_output_is_not_a_rule() -> None:
    model, image = HeadNamedDepthOutput(), torch.rand(1, 3, 2, 2)
    torch.testing.assert_close(run_model(model, {"image": image}), model.depth_output(image))
