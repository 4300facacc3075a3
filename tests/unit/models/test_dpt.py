"""Depth Anything V2 and DPT: parameter counts and numerics against transformers, both checkpoint layouts, options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import imde.models
from imde.errors import WeightsUnavailableError
from imde.hooks import LayerTap, edit_layers
from imde.models import adapt_state_dict, load_checkpoint
from imde.models.dpt import DPTSpec, build_dpt

transformers = pytest.importorskip("transformers")

# (hidden, layers, heads, HF out_indices (1-based stages), neck widths, fusion width, count) of the releases
RELEASED = {
    "depth_anything_v2_small": (384, 12, 6, [3, 6, 9, 12], [48, 96, 192, 384], 64, 24_785_089),
    "depth_anything_v2_base": (768, 12, 12, [3, 6, 9, 12], [96, 192, 384, 768], 128, 97_470_785),
    "depth_anything_v2_large": (1024, 24, 16, [5, 12, 18, 24], [256, 512, 1024, 1024], 256, 335_315_649),
}


def _hf_depth_anything(hidden: int, layers: int, heads: int, out_indices: list[int], neck: list[int], fusion: int,
                       image_size: int = 518, **kwargs: object) -> torch.nn.Module:
    backbone = transformers.Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                         image_size=image_size, patch_size=14, out_indices=out_indices,
                                         apply_layernorm=True, reshape_hidden_states=False)
    config = transformers.DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=neck,
                                              fusion_hidden_size=fusion, reassemble_hidden_size=hidden,
                                              patch_size=14, **kwargs)
    return transformers.DepthAnythingForDepthEstimation(config)


def _hf_dpt(hidden: int, layers: int, heads: int, out_indices: list[int], neck: list[int], fusion: int,
            image_size: int, mlp: int) -> torch.nn.Module:
    config = transformers.DPTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                    intermediate_size=mlp, image_size=image_size, patch_size=16,
                                    backbone_out_indices=out_indices, neck_hidden_sizes=neck,
                                    fusion_hidden_size=fusion, readout_type="project", layer_norm_eps=1e-6)
    return transformers.DPTForDepthEstimation(config)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_parameter_count_equals_transformers(name: str) -> None:
    *config, count = RELEASED[name]
    with torch.device("meta"):
        ours, theirs = imde.models.create(name), _hf_depth_anything(*config)
    assert _count(ours) == _count(theirs) == count
    # transformers keeps query, key and value apart (6 tensors per block where timm's qkv has 2)
    assert len(ours.state_dict()) == len(theirs.state_dict()) - 4 * config[1]


def test_dpt_large_count_equals_transformers() -> None:
    # Intel/dpt-large's configuration as transformers' conversion script (models/dpt/convert_dpt_to_pytorch.py,
    # get_dpt_config for the "large" checkpoint) builds it: DPTConfig's defaults (readout "project", fusion 256,
    # 384 px, patch 16, no batch norm in the fusion units) with these six settings
    config = transformers.DPTConfig()
    config.hidden_size, config.intermediate_size = 1024, 4096
    config.num_hidden_layers, config.num_attention_heads = 24, 16
    config.backbone_out_indices, config.neck_hidden_sizes = [5, 11, 17, 23], [256, 512, 1024, 1024]
    assert (config.readout_type, config.fusion_hidden_size, config.image_size, config.patch_size) == (
        "project", 256, 384, 16)
    with torch.device("meta"):
        ours = imde.models.create("dpt_large")
        theirs = transformers.DPTForDepthEstimation(config)
    assert _count(ours) == _count(theirs) == 343_030_465


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Random non-zero values everywhere (transformers zero-initialises some tensors)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


def test_hf_depth_anything_weights_give_the_same_prediction() -> None:
    """transformers' model with random weights, loaded into depth_anything_tiny: equal output at the native size."""
    hf = _perturbed(_hf_depth_anything(48, 4, 3, [1, 2, 3, 4], [12, 24, 48, 48], 32, image_size=224,
                                       depth_estimation_type="metric", max_depth=20))
    ours = imde.models.create("depth_anything_tiny", metric=True, max_depth=20.0).eval()
    state = hf.state_dict()
    adapted, report = adapt_state_dict(ours, state, source="hf")
    # renamed: 5 embedding tensors, 12 per block (norms, attention output, layer scales, MLP), the final norm
    assert len(report.merged) == 4 * 2 and len(report.renamed) == 5 + 4 * 12 + 2
    assert report.merged["pretrained.blocks.2.attn.qkv.weight"] == [
        f"backbone.encoder.layer.2.attention.{p}_proj.weight" for p in "qkv"]
    assert report.renamed["backbone.embeddings.position_embeddings"] == "pretrained.pos_embed"
    ours.load_state_dict(adapted)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = hf(pixel_values=x).predicted_depth
        assert torch.allclose(ours(x)[:, 0], expected, atol=1e-4)


def test_hf_dpt_weights_give_the_same_layers() -> None:
    hf = _perturbed(_hf_dpt(48, 4, 3, [0, 1, 2, 3], [12, 24, 48, 48], 32, 64, 96))
    spec = DPTSpec("vit_large_patch16_384", (0, 1, 2, 3), (12, 24, 48, 48), 32, readout="project",
                   norm_features=False, timm_kwargs=(("depth", 4), ("embed_dim", 48), ("num_heads", 3),
                                                     ("img_size", 64), ("mlp_ratio", 2.0)))
    ours = build_dpt(spec).eval()
    adapted, report = adapt_state_dict(ours, hf.state_dict())
    assert report.renamed["head.head.4.weight"] == "head.conv3.weight"
    assert report.merged["pretrained.blocks.0.attn.qkv.bias"][0] == "dpt.encoder.layer.0.attention.attention.query.bias"
    ours.load_state_dict(adapted)
    x = torch.randn(2, 3, 64, 64)  # transformers' DPT reshapes to a square grid
    with torch.no_grad(), LayerTap(hf, ["head.head.2", "neck.fusion_stage.layers.1"]) as theirs, \
            LayerTap(ours, ["head.conv2", "fusion1"]) as mine:
        hf(pixel_values=x)
        ours(x)
    assert torch.allclose(mine.features["head.conv2"], theirs.features["head.head.2"], atol=1e-5)
    assert torch.allclose(mine.features["fusion1"], theirs.features["neck.fusion_stage.layers.1"], atol=1e-5)


def test_hf_dpt_checkpoint_saved_by_transformers_loads_from_its_file(tmp_path: Path) -> None:
    """A DPTForDepthEstimation saved with save_pretrained (model.safetensors) loads strictly into imde's DPT."""
    hf = _perturbed(_hf_dpt(48, 4, 3, [0, 1, 2, 3], [12, 24, 48, 48], 32, 64, 96))
    hf.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
    assert "neck.reassemble_stage.readout_projects.0.0.weight" in keys and "head.head.4.weight" in keys
    spec = DPTSpec("vit_large_patch16_384", (0, 1, 2, 3), (12, 24, 48, 48), 32, readout="project",
                   norm_features=False, timm_kwargs=(("depth", 4), ("embed_dim", 48), ("num_heads", 3),
                                                     ("img_size", 64), ("mlp_ratio", 2.0)))
    ours = build_dpt(spec).eval()
    report = load_checkpoint(ours, path)
    assert len(report.merged) == 4 * 2 and report.renamed["head.head.4.weight"] == "head.conv3.weight"
    assert not report.missing and not report.unexpected
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(), LayerTap(hf, ["head.head.2"]) as theirs, LayerTap(ours, ["head.conv2"]) as mine:
        expected = hf(pixel_values=x).predicted_depth
        prediction = ours(x)
    assert torch.allclose(mine.features["head.conv2"], theirs.features["head.head.2"], atol=1e-5)
    assert torch.allclose(prediction[:, 0], expected, atol=1e-5)


def _release_name(key: str) -> str:
    """imde's key -> the Depth Anything V2 release's (depth_anything_v2_vits.pth), written out independently."""
    fusion = re.match(r"neck\.fusion_stage\.layers\.(\d)\.(.*)$", key)
    if fusion:
        stage, rest = 4 - int(fusion.group(1)), fusion.group(2)
        rest = re.sub(r"residual_layer(\d)\.convolution(\d)", r"resConfUnit\1.conv\2", rest)
        return f"depth_head.scratch.refinenet{stage}.{rest.replace('projection', 'out_conv')}"
    rules = ((r"neck\.reassemble_stage\.layers\.(\d)\.projection", r"depth_head.projects.\1"),
             (r"neck\.reassemble_stage\.layers\.(\d)\.resize", r"depth_head.resize_layers.\1"),
             (r"neck\.convs\.(\d)", lambda m: f"depth_head.scratch.layer{int(m.group(1)) + 1}_rn"),
             (r"head\.conv1", "depth_head.scratch.output_conv1"), (r"head\.conv2", "depth_head.scratch.output_conv2.0"),
             (r"head\.conv3", "depth_head.scratch.output_conv2.2"))
    for pattern, replacement in rules:
        key = re.sub("^" + pattern, replacement, key)
    return key


@pytest.fixture(scope="module")
def small() -> torch.nn.Module:
    return imde.models.create("depth_anything_v2_small")


def test_release_layout_loads_strictly(small: torch.nn.Module, tmp_path: Path) -> None:
    release = {_release_name(k): v.clone() for k, v in small.state_dict().items()}
    # the release's exact names and shapes (DINOv2 ViT-S/14 at 518 and the DPT head of depth_anything_v2_vits.pth)
    shapes = {"pretrained.pos_embed": (1, 1370, 384), "pretrained.mask_token": (1, 384),
              "pretrained.blocks.11.ls2.gamma": (384,), "pretrained.blocks.0.attn.qkv.weight": (1152, 384),
              "depth_head.resize_layers.0.weight": (48, 48, 4, 4),
              "depth_head.scratch.layer4_rn.weight": (64, 384, 3, 3),
              "depth_head.scratch.refinenet4.resConfUnit1.conv1.weight": (64, 64, 3, 3),
              "depth_head.scratch.output_conv2.0.weight": (32, 32, 3, 3),
              "depth_head.scratch.output_conv2.2.weight": (1, 32, 1, 1)}
    assert {k: tuple(release[k].shape) for k in shapes} == shapes
    assert sum(k.startswith("depth_head.") for k in release) == 4 * 2 + 3 * 2 + 4 + 4 * 10 + 2 + 4
    path = tmp_path / "depth_anything_v2_vits.pth"
    torch.save(release, path)
    target = imde.models.create("depth_anything_v2_small")
    report = load_checkpoint(target, path)
    assert len(report.renamed) == sum(k.startswith("depth_head.") for k in release) and not report.merged
    renamed = report.renamed["depth_head.scratch.refinenet1.out_conv.weight"]
    assert renamed == "neck.fusion_stage.layers.3.projection.weight"
    assert torch.equal(target.neck.fusion_stage.layers[0].residual_layer1.convolution1.weight,
                       release["depth_head.scratch.refinenet4.resConfUnit1.conv1.weight"])
    # pretrained_file= goes through the same loader
    again = imde.models.create("depth_anything_v2_small", pretrained_file=path)
    assert torch.equal(again.head.conv3.weight, release["depth_head.scratch.output_conv2.2.weight"])


def test_hugging_face_layout_from_safetensors(small: torch.nn.Module, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    with torch.device("meta"):
        names = _hf_depth_anything(384, 12, 6, [3, 6, 9, 12], [48, 96, 192, 384], 64).state_dict()
    # the names of a model.safetensors on disk: transformers' older attention.attention.query / output.dense
    disk = {re.sub(r"attention\.([qkv])_proj", lambda m: "attention.attention."
                   + {"q": "query", "k": "key", "v": "value"}[m.group(1)], k).replace("attention.o_proj",
                                                                                    "attention.output.dense"): v
            for k, v in names.items()}
    source = small.state_dict()
    state = {}
    for key, meta in disk.items():
        attn = re.match(r"backbone\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(\w+)$", key)
        if attn:
            qkv = source[f"pretrained.blocks.{attn.group(1)}.attn.qkv.{attn.group(3)}"]
            state[key] = qkv.chunk(3)[("query", "key", "value").index(attn.group(2))].clone()
        else:
            state[key] = torch.randn(meta.shape)
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    target = imde.models.create("depth_anything_v2_small")
    report = load_checkpoint(target, path)
    assert len(report.merged) == 24 and len(report.renamed) == 5 + 12 * 12 + 2
    assert torch.equal(target.pretrained.blocks[7].attn.qkv.weight, source["pretrained.blocks.7.attn.qkv.weight"])
    assert torch.equal(target.pretrained.norm.bias, state["backbone.layernorm.bias"])


def test_checkpoint_of_another_size_is_refused(small: torch.nn.Module, tmp_path: Path) -> None:
    release = {_release_name(k): v for k, v in small.state_dict().items()}
    with torch.device("meta"):
        base = imde.models.create("depth_anything_v2_base")
    with pytest.raises(ValueError, match=r"Depth Anything \(original release\).*shape mismatches \(file vs model\): "
                                         r"\d+ \(pretrained\.cls_token \(1, 1, 384\) vs \(1, 1, 768\)"):
        adapt_state_dict(base, release)
    with torch.device("meta"):
        large = imde.models.create("depth_anything_v2_large")
    partial = {k: v for k, v in release.items() if not k.startswith("pretrained.blocks.")}
    with pytest.raises(ValueError, match=r"Missing keys: \d+ \(pretrained\.blocks\.0\.norm1\.weight"):
        adapt_state_dict(large, partial)


def test_pretrained_offline_names_the_release_and_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def offline(repo: str, filename: str, **kwargs: object) -> str:
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(WeightsUnavailableError, match=r"depth-anything/Depth-Anything-V2-Small/depth_anything_v2_vits"
                                                      r"\.pth.*pretrained_file=PATH"):
        imde.models.create("depth_anything_v2_small", pretrained=True)
    with pytest.raises(ValueError, match="no released weights"):
        imde.models.create("depth_anything_tiny", pretrained=True)
    with pytest.raises(FileNotFoundError, match="pretrained_file="):
        imde.models.create("depth_anything_v2_small", pretrained_file="/nonexistent/vits.pth")


def test_metric_variant_and_relative_defaults() -> None:
    metric = imde.models.create("depth_anything_tiny", metric=True, max_depth=80.0).eval()
    relative = imde.models.create("depth_anything_tiny").eval()
    assert (metric.max_depth, metric.default_loss, metric.depth_preset) == (80.0, "dav2_silog", "kitti")
    assert (relative.default_loss, relative.prediction, relative.max_depth) == ("ssi", "disparity", 10.0)
    assert isinstance(relative.head.activation2, torch.nn.ReLU)
    x = torch.randn(2, 3, 56, 84)
    with torch.no_grad(), LayerTap(metric, ["head.conv3"]) as tap:
        depth = metric(x)
    assert torch.allclose(depth, 80.0 * torch.sigmoid(tap.features["head.conv3"]))
    with pytest.raises(ValueError, match=r"\(H, W\)=\(50, 84\) is not valid; expected H and W >= 14 and multiples"):
        metric(torch.randn(1, 3, 50, 84))


def test_declared_block_edit_reaches_later_blocks() -> None:
    """The block layer sits in the encoder's path: editing it changes every later block, as for a CNN layer."""
    model = imde.models.create("depth_anything_tiny").eval()
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad(), LayerTap(model, ["block3", "pretrained.blocks.1"]) as plain:
        model(x)
    with torch.no_grad(), edit_layers(model, {"block0": torch.zeros_like}), \
            LayerTap(model, ["block3", "pretrained.blocks.1"]) as edited:
        model(x)
    assert plain.features["block3"].shape == (1, 48, 4, 4)
    assert not torch.allclose(plain.features["block3"], edited.features["block3"])
    # the block's tokens, laid out by hand, are the declared layer
    with torch.no_grad(), LayerTap(model, ["block1", "pretrained.blocks.1"]) as tap:
        model(x)
    tokens = tap.features["pretrained.blocks.1"]
    assert torch.equal(tap.features["block1"], tokens[:, 1:].transpose(1, 2).reshape(1, 48, 4, 4))
