"""ViT encoders with a DPT decoder: Depth Anything V2 (DINOv2 + DPT head) and DPT-Large, plus a CPU-sized family.

The encoder is a timm Vision Transformer kept under ``pretrained`` (the released Depth Anything V2 checkpoints'
names: ``pretrained.blocks.N.attn.qkv``, ...). The DPT decoder is written here with the module names of
Hugging Face ``transformers``' depth models (``neck.reassemble_stage.layers.N``, ``neck.convs.N``,
``neck.fusion_stage.layers.N``, ``head.conv1..3``), so both checkpoint layouts map onto it
(:mod:`imde.models.released`).

Declared layers (``unit_info``): the four encoder blocks the neck reads (``blockN``, the block's tokens laid out on
the patch grid by a parameter-free :class:`imde.tokens.TokenMap` after the block, from which the encoder continues,
so hooks and edits of the layer act on the block's output), the four reassemble stages (``reassembleN``), the four
fusion stages (``fusionN``, deepest first), and the head's hidden convolutions ``head_conv1`` and ``head_conv2`` (32
units after a ReLU, the counterpart of MFF's ``D``). Strides are in input pixels and may be fractional (3.5 for the
stage at four times the 14-pixel patch grid).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from imde.errors import WeightsUnavailableError
from imde.models._base import DepthNet
from imde.models._encoders import create_timm_model
from imde.models._registry import register_model
from imde.models._units import UnitInfo
from imde.tokens import TokenMap, map_to_tokens, patch_grid, split_tokens

Size = tuple[int, int]
PathLike = str | os.PathLike[str] | None
HEAD_UNITS = 32  # units of head.conv2 in every DPT head
RELATIVE_EVAL_CAP = 10.0  # max_depth of relative models: the evaluation cap of their (NYU) preset
REASSEMBLE_FACTORS = (4.0, 2.0, 1.0, 0.5)  # neck stage i works at patch grid x factor


@dataclass(frozen=True)
class DPTSpec:
    """The architecture of one DPT model.

    Attributes:
        arch: timm encoder name (``vit_small_patch14_dinov2``, ...).
        out_indices: The four encoder blocks (0-based) the neck reads.
        neck_channels: Channels of the four reassemble stages.
        features: Channels of the fusion stages (``fusion_hidden_size``).
        readout: ``"ignore"`` (drop the class token, Depth Anything) or ``"project"`` (DPT).
        norm_features: Apply the encoder's final LayerNorm to the features the neck reads (DINOv2 in Depth Anything).
        timm_kwargs: Extra arguments for ``timm.create_model`` (the tiny family's depth and width).
    """

    arch: str
    out_indices: tuple[int, int, int, int]
    neck_channels: tuple[int, int, int, int]
    features: int
    readout: str = "ignore"
    norm_features: bool = True
    timm_kwargs: tuple[tuple[str, object], ...] = ()


class ReassembleLayer(nn.Module):
    """1x1 projection to ``out_chans`` and a resize by ``factor`` (transposed conv up, identity, or strided conv)."""

    def __init__(self, in_chans: int, out_chans: int, factor: float) -> None:
        super().__init__()
        self.projection = nn.Conv2d(in_chans, out_chans, 1)
        if factor > 1:
            self.resize: nn.Module = nn.ConvTranspose2d(out_chans, out_chans, int(factor), stride=int(factor))
        elif factor == 1:
            self.resize = nn.Identity()
        else:
            self.resize = nn.Conv2d(out_chans, out_chans, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resize(self.projection(x))


class ReassembleStage(nn.Module):
    """DPT's reassemble: class-token readout (ignored or projected), then a projection and resize per stage."""

    def __init__(self, hidden: int, neck_channels: tuple[int, ...], readout: str) -> None:
        super().__init__()
        if readout not in ("ignore", "project"):
            raise ValueError(f"readout={readout!r}; expected 'ignore' or 'project'")
        self.readout = readout
        self.layers = nn.ModuleList(ReassembleLayer(hidden, c, f) for c, f in zip(neck_channels, REASSEMBLE_FACTORS))
        if readout == "project":
            self.readout_projects = nn.ModuleList(
                nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU()) for _ in neck_channels)

    def forward(self, features: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        out = []
        for i, (cls_token, feature_map) in enumerate(features):
            if self.readout == "project":
                batch, chans, height, width = feature_map.shape
                tokens = feature_map.flatten(2).transpose(1, 2)
                readout = cls_token[:, None].expand_as(tokens)
                tokens = self.readout_projects[i](torch.cat([tokens, readout], dim=-1))
                feature_map = tokens.transpose(1, 2).reshape(batch, chans, height, width)
            out.append(self.layers[i](feature_map))
        return out


class ResidualUnit(nn.Module):
    """Pre-activation residual unit: ``x + conv2(relu(conv1(relu(x))))``."""

    def __init__(self, chans: int) -> None:
        super().__init__()
        self.activation1 = nn.ReLU()
        self.convolution1 = nn.Conv2d(chans, chans, 3, padding=1)
        self.activation2 = nn.ReLU()
        self.convolution2 = nn.Conv2d(chans, chans, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.convolution2(self.activation2(self.convolution1(self.activation1(x))))


class FusionLayer(nn.Module):
    """One fusion stage: add the residual-refined skip, refine, upsample bilinearly to ``size``, 1x1 projection."""

    def __init__(self, chans: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(chans, chans, 1)
        self.residual_layer1 = ResidualUnit(chans)
        self.residual_layer2 = ResidualUnit(chans)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: Size) -> torch.Tensor:
        if skip is not None:
            x = x + self.residual_layer1(skip)
        x = self.residual_layer2(x)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.projection(x)


class FusionStage(nn.Module):
    """Four fusion layers, deepest first; each upsamples to the next shallower stage (the last by 2)."""

    def __init__(self, chans: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(FusionLayer(chans) for _ in range(4))

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        maps = maps[::-1]
        x = None
        for i, layer in enumerate(self.layers):
            size = maps[i + 1].shape[-2:] if i + 1 < len(maps) else (2 * maps[i].shape[-2], 2 * maps[i].shape[-1])
            x = layer(maps[i], None, size) if x is None else layer(x, maps[i], size)
        return x


class Neck(nn.Module):
    """Reassemble, 3x3 convs to the fusion width, fusion."""

    def __init__(self, hidden: int, neck_channels: tuple[int, ...], features: int, readout: str) -> None:
        super().__init__()
        self.reassemble_stage = ReassembleStage(hidden, neck_channels, readout)
        self.convs = nn.ModuleList(nn.Conv2d(c, features, 3, padding=1, bias=False) for c in neck_channels)
        self.fusion_stage = FusionStage(features)

    def forward(self, features: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        maps = self.reassemble_stage(features)
        return self.fusion_stage([conv(m) for conv, m in zip(self.convs, maps)])


class DepthHead(nn.Module):
    """conv1 (half width), bilinear resize to the input size, conv2 (32 units) + ReLU, conv3 to one channel.

    The output activation is a ReLU (relative depth; the output is an affine-invariant disparity) or, for metric
    models, a sigmoid scaled by ``max_depth`` (metres).
    """

    def __init__(self, features: int, metric: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.conv2 = nn.Conv2d(features // 2, HEAD_UNITS, 3, padding=1)
        self.activation1 = nn.ReLU()
        self.conv3 = nn.Conv2d(HEAD_UNITS, 1, 1)
        self.activation2: nn.Module = nn.Sigmoid() if metric else nn.ReLU()

    def forward(self, x: torch.Tensor, size: Size, scale: float) -> torch.Tensor:
        x = F.interpolate(self.conv1(x), size=size, mode="bilinear", align_corners=True)
        return self.activation2(self.conv3(self.activation1(self.conv2(x)))) * scale


def _stride(patch: int, factor: float) -> float | int:
    stride = patch / factor
    return int(stride) if stride == int(stride) else stride


def dpt_unit_info(spec: DPTSpec, hidden: int, patch: int) -> tuple[UnitInfo, ...]:
    """The declared layers of a DPT model (see the module docstring)."""
    blocks = tuple(UnitInfo(f"block{index}", hidden, patch, True, f"block_maps.{i}")
                   for i, index in enumerate(spec.out_indices))
    reassemble = tuple(UnitInfo(f"reassemble{i}", c, _stride(patch, f), True, f"neck.reassemble_stage.layers.{i}")
                       for i, (c, f) in enumerate(zip(spec.neck_channels, REASSEMBLE_FACTORS)))
    fusion_factors = (1.0, 2.0, 4.0, 8.0)  # deepest first: up to stage 2's grid, then 1's, 0's, then twice that
    fusion = tuple(UnitInfo(f"fusion{i}", spec.features, _stride(patch, f), True, f"neck.fusion_stage.layers.{i}")
                   for i, f in enumerate(fusion_factors))
    head = (UnitInfo("head_conv1", spec.features // 2, _stride(patch, 8.0), True, "head.conv1"),
            UnitInfo("head_conv2", HEAD_UNITS, 1, False, "head.activation1"))
    return blocks + reassemble + fusion + head


class DPTNet(DepthNet):
    """A ViT encoder read at four blocks by a DPT neck and head: Depth Anything V2 (relative or metric) or DPT.

    Relative models (``metric=False``) predict a non-negative, affine-invariant disparity (inverse depth up to scale
    and shift) at the input resolution; evaluate them with the zero-shot protocol. Metric models predict
    ``max_depth * sigmoid(.)`` metres.

    Args:
        spec: The architecture.
        encoder: The timm Vision Transformer (``dynamic_img_size=True``), kept as ``pretrained``.
        metric: Predict metric depth.
        max_depth: Largest depth of a metric model (20 m indoor, 80 m outdoor in Depth Anything V2); ignored by
            relative models, whose ``max_depth`` is the 10 m evaluation cap of the NYU preset.
    """

    output_stride = 1

    def __init__(self, spec: DPTSpec, encoder: nn.Module, metric: bool = False, max_depth: float = 20.0) -> None:
        super().__init__()
        if max_depth <= 0:
            raise ValueError(f"max_depth={max_depth}: expected a positive depth in metres")
        hidden = int(encoder.embed_dim)
        self.patch_size = int(encoder.patch_embed.patch_size[0])
        self.num_prefix = int(encoder.num_prefix_tokens)
        self.spec, self.metric = spec, metric
        self.pretrained = encoder
        if spec.readout == "ignore":  # the DINOv2 releases carry the masked-image-modelling token
            encoder.mask_token = nn.Parameter(torch.zeros(1, hidden))
        self.block_maps = nn.ModuleList(TokenMap(self.num_prefix) for _ in spec.out_indices)
        self.neck = Neck(hidden, spec.neck_channels, spec.features, spec.readout)
        self.head = DepthHead(spec.features, metric)
        self.unit_info = dpt_unit_info(spec, hidden, self.patch_size)
        self.size_multiple = self.min_size = self.patch_size
        # metric: the output's scale; relative: only the evaluation cap (NYU's 10 m; the output is unscaled)
        self.max_depth = float(max_depth) if metric else RELATIVE_EVAL_CAP
        self.output_scale = float(max_depth) if metric else 1.0
        self.default_loss = "dav2_silog" if metric else "ssi"
        self.prediction = "depth" if metric else "disparity"  # relative models: zero-shot evaluation
        self.depth_preset = "kitti" if metric and max_depth > 20 else "nyu"
        for param in self._unused_parameters():  # kept for the checkpoints; frozen so DDP finds no unused gradient
            param.requires_grad_(False)
        grid = encoder.patch_embed.grid_size
        self.input_size = (grid[0] * self.patch_size, grid[1] * self.patch_size)

    def _unused_parameters(self) -> list[nn.Parameter]:
        """Parameters of the released layouts that the forward pass never uses."""
        unused = list(self.neck.fusion_stage.layers[0].residual_layer1.parameters())  # the deepest stage has no skip
        unused += [param for name, param in self.pretrained.named_parameters() if name == "mask_token"]
        if not self.spec.norm_features:
            unused += list(self.pretrained.norm.parameters())
        return unused

    def _encode(self, x: torch.Tensor, grid: Size) -> list[tuple[torch.Tensor, torch.Tensor]]:
        vit = self.pretrained
        tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        features = []
        taps = {index: i for i, index in enumerate(self.spec.out_indices)}
        for index, block in enumerate(vit.blocks[: max(taps) + 1]):
            tokens = block(tokens)
            if index in taps:
                feature_map = self.block_maps[taps[index]](tokens, grid)  # the declared layer: edits flow on
                tokens = map_to_tokens(tokens[:, : self.num_prefix], feature_map)
                prefix = tokens[:, : self.num_prefix]
                if self.spec.norm_features:  # DINOv2's final norm, per token, before the neck reads the block
                    prefix, feature_map = split_tokens(vit.norm(tokens), grid, self.num_prefix)
                features.append((prefix[:, 0], feature_map))
        return features

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        """Predict ``[B, 1, H, W]`` from an ImageNet-normalised ``[B, 3, H, W]`` batch (H, W multiples of the patch).

        ``focal`` is accepted for a uniform interface and ignored.
        """
        self.check_input(x, focal)
        grid = patch_grid(x.shape[-2:], self.patch_size)
        fused = self.neck(self._encode(x, grid))
        return self.head(fused, tuple(x.shape[-2:]), self.output_scale)


# Released configurations: encoder blocks read by the neck and the neck's widths (Depth Anything V2's dpt.py
# model_configs; DPT-Large's Hugging Face config: hidden 1024, blocks 5/11/17/23, neck 256/512/1024/1024, fusion 256).
SPECS = {
    "vits": DPTSpec("vit_small_patch14_dinov2", (2, 5, 8, 11), (48, 96, 192, 384), 64),
    "vitb": DPTSpec("vit_base_patch14_dinov2", (2, 5, 8, 11), (96, 192, 384, 768), 128),
    "vitl": DPTSpec("vit_large_patch14_dinov2", (4, 11, 17, 23), (256, 512, 1024, 1024), 256),
    "dpt_large": DPTSpec("vit_large_patch16_384", (5, 11, 17, 23), (256, 512, 1024, 1024), 256, readout="project",
                         norm_features=False),
}
RELEASES = {  # Hugging Face repository and file of each released relative model
    "vits": ("depth-anything/Depth-Anything-V2-Small", "depth_anything_v2_vits.pth"),
    "vitb": ("depth-anything/Depth-Anything-V2-Base", "depth_anything_v2_vitb.pth"),
    "vitl": ("depth-anything/Depth-Anything-V2-Large", "depth_anything_v2_vitl.pth"),
    "dpt_large": ("Intel/dpt-large", "model.safetensors"),
}


def _release_file(key: str, pretrained: bool, pretrained_file: PathLike) -> Path | None:
    """The local checkpoint to load: ``pretrained_file``, or the release from the Hugging Face cache / network."""
    if pretrained_file is not None:
        path = Path(pretrained_file)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained_file={str(path)!r} does not exist")
        return path
    if not pretrained:
        return None
    repo, filename = RELEASES[key]
    try:
        import huggingface_hub

        return Path(huggingface_hub.hf_hub_download(repo, filename))
    except Exception as err:  # offline: huggingface_hub raises many different types
        raise WeightsUnavailableError(
            f"could not load the released weights {repo}/{filename} ({type(err).__name__}: {err}). Download "
            f"https://huggingface.co/{repo} (file {filename}) on a machine with network access and pass "
            f"pretrained_file=PATH (the original .pth or a Hugging Face model.safetensors both load; in a training "
            f"config: model.kwargs.pretrained_file=PATH; model.pretrained=false trains from scratch instead)"
        ) from err


def build_dpt(spec: DPTSpec, weights: Path | None = None, metric: bool = False, max_depth: float = 20.0) -> DPTNet:
    """Build a DPT model from ``spec`` with a randomly initialised encoder, then load ``weights`` when given."""
    encoder = create_timm_model(spec.arch, None, False, None, num_classes=0, dynamic_img_size=True,
                                **dict(spec.timm_kwargs))
    model = DPTNet(spec, encoder, metric=metric, max_depth=max_depth)
    if weights is not None:
        from imde.models.released import load_checkpoint

        load_checkpoint(model, weights)
    return model


def _release(key: str, pretrained: bool, pretrained_file: PathLike, metric: bool = False,
             max_depth: float = 20.0) -> DPTNet:
    return build_dpt(SPECS[key], _release_file(key, pretrained, pretrained_file), metric, max_depth)


@register_model
def depth_anything_v2_small(pretrained: bool = False, pretrained_file: PathLike = None, metric: bool = False,
                            max_depth: float = 20.0) -> DPTNet:
    """Depth Anything V2 Small (DINOv2 ViT-S/14 + DPT head), 24,785,089 parameters.

    ``metric=True`` builds the metric variant (sigmoid output times ``max_depth``: 20 m indoor, 80 m outdoor).
    """
    return _release("vits", pretrained, pretrained_file, metric, max_depth)


@register_model
def depth_anything_v2_base(pretrained: bool = False, pretrained_file: PathLike = None, metric: bool = False,
                           max_depth: float = 20.0) -> DPTNet:
    """Depth Anything V2 Base (DINOv2 ViT-B/14 + DPT head), 97,470,785 parameters."""
    return _release("vitb", pretrained, pretrained_file, metric, max_depth)


@register_model
def depth_anything_v2_large(pretrained: bool = False, pretrained_file: PathLike = None, metric: bool = False,
                            max_depth: float = 20.0) -> DPTNet:
    """Depth Anything V2 Large (DINOv2 ViT-L/14 + DPT head), 335,315,649 parameters."""
    return _release("vitl", pretrained, pretrained_file, metric, max_depth)


@register_model
def dpt_large(pretrained: bool = False, pretrained_file: PathLike = None) -> DPTNet:
    """DPT-Large (ViT-L/16 at 384x384, readout "project"), 343,030,465 parameters; relative inverse depth."""
    return _release("dpt_large", pretrained, pretrained_file)


TINY_DEPTH, TINY_WIDTH, TINY_HEADS, TINY_SIZE = 4, 48, 3, 224


@register_model
def depth_anything_tiny(pretrained: bool = False, metric: bool = False, max_depth: float = 10.0,
                        depth: int = TINY_DEPTH, width: int = TINY_WIDTH, features: int = 32) -> DPTNet:
    """A CPU-sized Depth Anything: a narrow DINOv2-style ViT/14 and the same DPT neck and head (no weights).

    Same module names and declared layers as the released models; the neck reads every ``depth // 4``-th block.

    Args:
        pretrained: Must be ``False``.
        metric: Predict metric depth (sigmoid times ``max_depth``) instead of relative disparity.
        max_depth: Largest depth of the metric variant, in metres.
        depth: Encoder blocks (a multiple of 4).
        width: Token width (a multiple of 12: 3 heads, and the first neck stage has a quarter).
        features: Width of the fusion stages (the head's ``conv1`` has half).
    """
    if pretrained:
        raise ValueError("pretrained=True: depth_anything_tiny has no released weights; use pretrained=False")
    if depth < 4 or depth % 4 or width <= 0 or width % (4 * TINY_HEADS) or features <= 0 or features % 2:
        raise ValueError(f"depth_anything_tiny: depth={depth} must be a positive multiple of 4, width={width} a "
                         f"positive multiple of {4 * TINY_HEADS} and features={features} positive and even")
    step = depth // 4
    spec = DPTSpec("vit_small_patch14_dinov2", tuple(step * i - 1 for i in (1, 2, 3, 4)),
                   (width // 4, width // 2, width, width), features,
                   timm_kwargs=(("depth", depth), ("embed_dim", width), ("num_heads", TINY_HEADS),
                                ("img_size", TINY_SIZE)))
    return build_dpt(spec, None, metric, max_depth)
