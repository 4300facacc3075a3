"""The MFF network of Hu et al. (WACV 2019): encoder E, decoder D, multi-scale fusion MFF, refinement R.

Layer names follow the paper: ``D`` (decoder output), ``MFF`` (fused multi-scale features), ``Rconv0`` and
``Rconv1`` (the two hidden refinement convolutions), all after a ReLU and at half the input resolution.
Module and parameter names match Hu et al.'s released checkpoints (``E.*``, ``D.up1.conv1``, ``R.conv2``, ...).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from imde.models._base import DepthNet
from imde.models._encoders import block_channels, create_timm_model
from imde.models._registry import register_model
from imde.models._units import UnitInfo

Size = tuple[int, int]


class UpProj(nn.Module):
    """Up-projection: bilinear resize, then ReLU(conv5-BN-ReLU-conv3-BN + conv5-BN)."""

    def __init__(self, in_chans: int, out_chans: int, align_corners: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chans)
        self.conv1_2 = nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False)
        self.bn1_2 = nn.BatchNorm2d(out_chans)
        self.conv2 = nn.Conv2d(in_chans, out_chans, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chans)
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)
        branch_a = self.bn1_2(self.conv1_2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(branch_a + self.bn2(self.conv2(x)))


class Decoder(nn.Module):
    """D: 1x1 conv + BN + ReLU on block4, then four up-projections to block3, block2, block1 and 2x block1 size."""

    def __init__(self, in_chans: int, widths: tuple[int, int, int, int, int], align_corners: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, widths[0], 1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        self.up1 = UpProj(widths[0], widths[1], align_corners)
        self.up2 = UpProj(widths[1], widths[2], align_corners)
        self.up3 = UpProj(widths[2], widths[3], align_corners)
        self.up4 = UpProj(widths[3], widths[4], align_corners)

    def forward(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(blocks[3])))
        x = self.up1(x, blocks[2].shape[-2:])
        x = self.up2(x, blocks[1].shape[-2:])
        x = self.up3(x, blocks[0].shape[-2:])
        return self.up4(x, (2 * blocks[0].shape[-2], 2 * blocks[0].shape[-1]))


class MultiScaleFusion(nn.Module):
    """MFF: up-project each encoder block to ``size`` (width/4 channels each), concatenate, conv5 + BN + ReLU."""

    def __init__(self, block_chans: tuple[int, ...], width: int, align_corners: bool = False) -> None:
        super().__init__()
        if width % 4:
            raise ValueError(f"MFF width={width} must be a multiple of 4 (one quarter per encoder block)")
        self.up1 = UpProj(block_chans[0], width // 4, align_corners)
        self.up2 = UpProj(block_chans[1], width // 4, align_corners)
        self.up3 = UpProj(block_chans[2], width // 4, align_corners)
        self.up4 = UpProj(block_chans[3], width // 4, align_corners)
        self.conv = nn.Conv2d(width, width, 5, padding=2, bias=False)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, blocks: list[torch.Tensor], size: Size) -> torch.Tensor:
        ups = (self.up1, self.up2, self.up3, self.up4)
        x = torch.cat([up(block, size) for up, block in zip(ups, blocks)], dim=1)
        return F.relu(self.bn(self.conv(x)))


class Refinement(nn.Module):
    """R: two conv5 + BN + ReLU layers (``Rconv0``, ``Rconv1``) and a conv5 to depth with bias."""

    def __init__(self, in_chans: int, width: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(in_chans, width, 5, padding=2, bias=False)
        self.bn0 = nn.BatchNorm2d(width)
        self.act0 = nn.ReLU()
        self.conv1 = nn.Conv2d(width, width, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, 1, 5, padding=2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act0(self.bn0(self.conv0(x)))
        x = self.act1(self.bn1(self.conv1(x)))
        return self.conv2(x)


class ResNetEncoder(nn.Module):
    """A timm ResNet without its head; its children keep torchvision's names (``conv1``, ``layer1``, ...)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        for name in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(backbone, name))
        self.channels = block_channels(backbone)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        blocks = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            blocks.append(x)
        return blocks


class SENetEncoder(nn.Module):
    """timm's legacy SENet-154 as ``base[0..4]`` = [layer0 + pool0, layer1..4], like Hu et al.'s ``E.base``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        stem = backbone.layer0
        stem.add_module("pool", backbone.pool0)
        self.base = nn.Sequential(stem, backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)
        self.channels = block_channels(backbone)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.base[0](x)
        blocks = []
        for layer in self.base[1:]:
            x = layer(x)
            blocks.append(x)
        return blocks


def _mff_unit_info(d_units: int, r_units: int) -> tuple[UnitInfo, ...]:
    return (
        UnitInfo("D", d_units, 2, False, "D"),
        UnitInfo("MFF", d_units, 2, False, "MFF"),
        UnitInfo("Rconv0", r_units, 2, False, "R.act0"),
        UnitInfo("Rconv1", r_units, 2, False, "R.act1"),
    )


class MFFNet(DepthNet):
    """Hu et al.'s network: ``depth = R(cat(D(E(x)), MFF(E(x))))`` at half the input resolution.

    With ``d_units=64, r_units=128`` and a ResNet-50 / SENet-154 encoder this is exactly the original
    (67,569,473 / 157,101,425 parameters). D's widths halve from ``C4 / 2`` (C4 = channels of block 4) down to
    ``d_units``; MFF has ``d_units`` channels (a quarter per encoder block); R has ``r_units``.

    Args:
        encoder: Module returning the four encoder blocks (strides 4, 8, 16, 32) and exposing ``channels``.
        d_units: Units of the layers ``D`` and ``MFF``.
        r_units: Units of the layers ``Rconv0`` and ``Rconv1``.
        align_corners: Bilinear mode of the up-projections; ``True`` reproduces Hu et al.'s PyTorch 0.3.1 behaviour
            (use it with their released weights), ``False`` is the authors' (You et al.) setting.
    """

    default_loss = "hu"
    max_depth = 10.0
    input_size = (228, 304)
    depth_preset = "nyu"
    output_stride = 2
    size_multiple = 4

    def __init__(self, encoder: nn.Module, d_units: int = 64, r_units: int = 128, align_corners: bool = False) -> None:
        super().__init__()
        channels = tuple(encoder.channels)
        widths = [channels[3] // 2]
        for _ in range(4):
            widths.append(max(d_units, widths[-1] // 2))
        widths[-1] = d_units
        self.E = encoder
        self.D = Decoder(channels[3], tuple(widths), align_corners)
        self.MFF = MultiScaleFusion(channels, d_units, align_corners)
        self.R = Refinement(2 * d_units, r_units)
        self.unit_info = _mff_unit_info(d_units, r_units)

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        """Predict depth in metres, ``[B, 1, H/2, W/2]``, from an ImageNet-normalised ``[B, 3, H, W]`` batch.

        ``focal`` is accepted for a uniform interface and ignored.
        """
        self.check_input(x, focal)
        blocks = self.E(x)
        x_d = self.D(blocks)
        x_mff = self.MFF(blocks, x_d.shape[-2:])
        return self.R(torch.cat([x_d, x_mff], dim=1))


PathLike = str | os.PathLike[str] | None


def _resnet_encoder(arch: str, tag: str | None, pretrained: bool, pretrained_file: PathLike,
                    **timm_kwargs: object) -> ResNetEncoder:
    backbone = create_timm_model(arch, tag, pretrained, pretrained_file, num_classes=0, global_pool="",
                                 **timm_kwargs)
    return ResNetEncoder(backbone)


@register_model
def mff_resnet50(pretrained: bool = False, pretrained_file: PathLike = None, align_corners: bool = False) -> MFFNet:
    """MFF with a ResNet-50 encoder (Hu et al.), 67,569,473 parameters; ImageNet weights ``resnet50.tv_in1k``."""
    return MFFNet(_resnet_encoder("resnet50", "tv_in1k", pretrained, pretrained_file), align_corners=align_corners)


@register_model
def mff_senet154(pretrained: bool = False, pretrained_file: PathLike = None, align_corners: bool = False) -> MFFNet:
    """MFF with a SENet-154 encoder (Hu et al.), 157,101,425 parameters; weights ``legacy_senet154.in1k``."""
    backbone = create_timm_model("legacy_senet154", "in1k", pretrained, pretrained_file, num_classes=0,
                                 global_pool="")
    return MFFNet(SENetEncoder(backbone), align_corners=align_corners)


@register_model
def mff_resnet18(pretrained: bool = False, pretrained_file: PathLike = None, d_units: int = 64,
                 r_units: int = 128) -> MFFNet:
    """MFF with a ResNet-18 encoder (``resnet18.tv_in1k`` weights): the same layers, a CPU-friendlier encoder."""
    return MFFNet(_resnet_encoder("resnet18", "tv_in1k", pretrained, pretrained_file), d_units, r_units)


TINY_CHANNELS = (16, 32, 48, 64)


@register_model
def mff_tiny(pretrained: bool = False, d_units: int = 16, r_units: int = 32,
             channels: tuple[int, int, int, int] = TINY_CHANNELS) -> MFFNet:
    """MFF with a narrow one-block-per-stage ResNet encoder, sized for CPU training (no pretrained weights).

    The defaults cost about 0.64 GMAC per 128x160 image (0.31 M parameters): the 5x5 convolutions of MFF and R
    run at half resolution, so their widths, not the encoder's depth, set the cost.

    Args:
        pretrained: Must be ``False`` (there are no ImageNet weights for this encoder).
        d_units: Units of ``D`` and ``MFF``.
        r_units: Units of ``Rconv0`` and ``Rconv1``.
        channels: Widths of the four encoder stages.
    """
    encoder = _resnet_encoder("resnet18", None, pretrained, None, layers=(1, 1, 1, 1), channels=tuple(channels),
                              stem_width=channels[0])
    return MFFNet(encoder, d_units, r_units)
