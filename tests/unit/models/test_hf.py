"""Hugging Face depth models as they are: their own layer names, token layers from their config, their output."""

from __future__ import annotations

import pytest
import torch

import imde
import imde.models
from imde.core.bins import DepthBins
from imde.experiments.dissect import compute_responses
from imde.models import depth_from_output, hf_patch_layout, hf_token_transforms

transformers = pytest.importorskip("transformers")


def _depth_anything(registers: int = 0) -> torch.nn.Module:
    kind = transformers.Dinov2WithRegistersConfig if registers else transformers.Dinov2Config
    extra = {"num_register_tokens": registers} if registers else {}
    backbone = kind(hidden_size=24, num_hidden_layers=4, num_attention_heads=2, image_size=56, patch_size=14,
                    out_indices=[1, 2, 3, 4], apply_layernorm=True, reshape_hidden_states=False, **extra)
    config = transformers.DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=[6, 12, 24, 24],
                                              fusion_hidden_size=16, reassemble_hidden_size=24, patch_size=14)
    torch.manual_seed(0)
    return transformers.DepthAnythingForDepthEstimation(config)


def _dpt() -> torch.nn.Module:
    config = transformers.DPTConfig(hidden_size=24, num_hidden_layers=4, num_attention_heads=2, intermediate_size=48,
                                    image_size=64, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
                                    neck_hidden_sizes=[6, 12, 24, 24], fusion_hidden_size=16)
    return transformers.DPTForDepthEstimation(config)


LAYERS = ["backbone.encoder.layer.3", "neck.fusion_stage.layers.0", "head.conv2"]


def test_layout_from_config() -> None:
    assert hf_patch_layout(_depth_anything()) == (14, 1)
    with torch.device("meta"):  # (transformers' Depth Anything neck itself drops only the class token)
        assert hf_patch_layout(_depth_anything(registers=4)) == (14, 5)
    assert hf_patch_layout(_dpt()) == (16, 1)
    with pytest.raises(ValueError, match="config.patch_size"):
        hf_patch_layout(imde.models.create("mff_tiny"))
    assert imde.models.token_transforms(imde.models.create("mff_tiny"), ["D"]) == {}


def test_depth_anything_layers_by_their_own_names() -> None:
    model, registers = _depth_anything().eval(), 0
    transforms = hf_token_transforms(model, LAYERS)
    assert list(transforms) == ["backbone.encoder.layer.3"]  # neck and head layers are maps already
    x = torch.randn(2, 3, 42, 70)
    with torch.no_grad(), imde.LayerTap(model, LAYERS, transforms=transforms) as tap, \
            imde.LayerTap(model, ["backbone.encoder.layer.3"]) as raw:
        output = model(pixel_values=x)
    tokens = raw.features["backbone.encoder.layer.3"]
    assert tokens.shape == (2, 1 + registers + 3 * 5, 24)
    expected = tokens[:, 1 + registers:].transpose(1, 2).reshape(2, 24, 3, 5)
    assert torch.equal(tap.features["backbone.encoder.layer.3"], expected)
    assert tap.features["head.conv2"].shape == (2, 32, 42, 70)
    assert depth_from_output(output).shape == (2, 1, 42, 70)


def test_assign_loss_trains_a_hugging_face_token_layer() -> None:
    """L_assign on the tapped token layer gives the gradients of the same loss on a hand reshape of the tokens."""
    model = _depth_anything().train()
    layer = "backbone.encoder.layer.1"
    x, depth = torch.randn(2, 3, 42, 42), torch.rand(2, 42, 42) * 9 + 0.5
    loss_fn = imde.AssignLoss(num_bins=8, alpha=0.5, beta=10.0)
    grads = []
    for transforms in (hf_token_transforms(model, [layer]), None):
        model.zero_grad()
        with imde.LayerTap(model, [layer], transforms=transforms) as tap:
            model(pixel_values=x)
        feature = tap.features[layer]
        if transforms is None:
            feature = feature[:, 1:].transpose(1, 2).reshape(2, 24, 3, 3)
        loss_fn({layer: feature}, depth).backward()
        grads.append(model.backbone.encoder.layer[1].mlp.fc2.weight.grad.clone())
        assert model.backbone.encoder.layer[3].mlp.fc2.weight.grad is None  # after the tapped block: none
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1])


def test_dissection_reads_token_layers_of_a_hugging_face_model() -> None:
    model = _depth_anything()
    depth = torch.rand(2, 1, 42, 56) * 9 + 0.5
    batches = [{"image": torch.randn(2, 3, 42, 56), "depth": depth}]
    responses = compute_responses(model, batches, ["backbone.encoder.layer.2", "head.conv2"],
                                  bins=DepthBins("nyu", 8))
    assert responses["backbone.encoder.layer.2"].num_units == 24
    assert int(responses["backbone.encoder.layer.2"].counts.sum()) == 2 * 42 * 56  # every pixel, upsampled
    assert responses["head.conv2"].num_units == 32


def test_dpt_token_layer_and_output() -> None:
    model = _dpt().eval()
    layers = ["dpt.encoder.layer.2", "neck.fusion_stage.layers.1", "head.head.2"]
    with torch.no_grad(), imde.LayerTap(model, layers, transforms=hf_token_transforms(model, layers)) as tap:
        output = model(pixel_values=torch.randn(1, 3, 64, 64))
    assert tap.features["dpt.encoder.layer.2"].shape == (1, 24, 4, 4)
    assert depth_from_output(output).shape == (1, 1, 64, 64)


def test_output_without_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="output='predicted_depth': the model's output has keys 'logits'"):
        depth_from_output(transformers.modeling_outputs.SemanticSegmenterOutput(logits=torch.zeros(1, 2, 3, 3)),
                          "predicted_depth")
    with pytest.raises(ValueError, match="cannot index the model's output of type Tensor"):
        depth_from_output(torch.zeros(1, 3, 3), "predicted_depth")


def test_a_token_layer_is_edited_as_its_map_and_the_prefix_tokens_are_kept() -> None:
    model = _depth_anything().eval()
    layer, later = "backbone.encoder.layer.2", "backbone.encoder.layer.3"
    transforms = hf_token_transforms(model, [layer])
    x = torch.randn(2, 3, 42, 70)

    def by_hand(module: torch.nn.Module, inputs: object, output: object) -> object:  # units 0, 5 of the patches
        tokens = (output[0] if isinstance(output, tuple) else output).clone()
        tokens[:, 1:, [0, 5]] = 0.0
        return (tokens, *output[1:]) if isinstance(output, tuple) else tokens

    def zero_units(feature_map: torch.Tensor) -> torch.Tensor:
        edited = feature_map.clone()
        edited[:, [0, 5]] = 0.0
        return edited

    def later_tokens() -> torch.Tensor:
        with torch.no_grad(), imde.LayerTap(model, [later]) as tap:
            model(pixel_values=x)
        return tap.features[later]

    plain = later_tokens()
    handle = model.get_submodule(layer).register_forward_hook(by_hand)
    expected = later_tokens()
    handle.remove()
    with imde.edit_layers(model, {layer: zero_units}, transforms):
        edited = later_tokens()
    assert not torch.allclose(plain, expected)  # the edit reaches the next block
    assert torch.allclose(edited, expected, atol=1e-6)  # and equals zeroing the patch tokens by hand
    with pytest.raises(ValueError, match="invertible transform"):
        imde.edit_layers(model, {layer: zero_units}, {layer: lambda output, size: output}).__enter__()


def test_hugging_face_models_go_through_correction_and_ablation_on_token_layers(monkeypatch) -> None:
    from imde.experiments import run_ablation, run_correction
    from imde.experiments.evaluate import EvalSettings
    from imde.tokens import TokensToMap

    model = _depth_anything().eval()
    layer = "backbone.encoder.layer.2"
    gen = torch.Generator().manual_seed(0)
    batches = [{"image": torch.rand(2, 3, 42, 70, generator=gen),
                "depth": 0.8 + 8 * torch.rand(2, 1, 42, 70, generator=gen), "name": [f"a{i}", f"b{i}"]}
               for i in range(2)]
    responses = compute_responses(model, batches, [layer], bins=DepthBins("nyu", 4))
    restored = []
    original = TokensToMap.restore
    monkeypatch.setattr(TokensToMap, "restore", lambda self, *args: restored.append(1) or original(self, *args))
    settings = EvalSettings(max_depth=10.0)
    run_correction(model, responses, batches, [layer], settings=settings)
    assert len(restored) == len(batches)  # the token layer was edited, as its map, in every test batch
    restored.clear()
    ablation = run_ablation(model, batches, {layer: torch.arange(24.0)}, step=12, settings=settings)
    assert ablation.units == [0, 12, 24]
    # evaluations with 12 units ablated in each order, and all 24 once (the same set in both orders: cached)
    assert len(restored) == 3 * len(batches)
