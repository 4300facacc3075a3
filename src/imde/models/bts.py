"""BTS (Lee et al., 2019): DenseNet-161 encoder and the local-planar-guidance decoder.

Module and parameter names match the released BTS checkpoints (``encoder.base_model.*``, ``decoder.upconv5.conv``,
``decoder.daspp_3.atrous_conv.aconv_sequence.1``, ``decoder.reduc8x8.reduc.plane_params``, ...). The dissected
layers are ``upconv3`` (BN output), ``upconv2`` (BN output), ``iconv2``, ``upconv1`` and ``iconv1`` (ELU outputs).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from imde.models._base import DepthNet
from imde.models._encoders import create_timm_model
from imde.models._registry import register_model
from imde.models._units import UnitInfo

BN_MOMENTUM = 0.01
BN_EPS = 1.1e-5
KITTI_REFERENCE_FOCAL = 715.0873  # BTS-KITTI scales its output by focal / this value
NUM_FEATURES = 512
DASPP_DILATIONS = (3, 6, 12, 18, 24)


def _bn(chans: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(chans, momentum=BN_MOMENTUM, eps=BN_EPS)


def _conv_elu(in_chans: int, out_chans: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False), nn.ELU())


class UpConv(nn.Module):
    """Nearest x2 upsampling, conv3x3, ELU."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu(self.conv(F.interpolate(x, scale_factor=2, mode="nearest")))


class AtrousConv(nn.Module):
    """Dense-ASPP branch: [BN], ReLU, conv1x1 to 2*out, BN, ReLU, dilated conv3x3 to out."""

    def __init__(self, in_chans: int, out_chans: int, dilation: int, bn_first: bool = True) -> None:
        super().__init__()
        self.atrous_conv = nn.Sequential()
        if bn_first:
            self.atrous_conv.add_module("first_bn", _bn(in_chans))
        self.atrous_conv.add_module("aconv_sequence", nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(in_chans, 2 * out_chans, 1, bias=False),
            nn.BatchNorm2d(2 * out_chans, momentum=BN_MOMENTUM),
            nn.ReLU(),
            nn.Conv2d(2 * out_chans, out_chans, 3, padding=dilation, dilation=dilation, bias=False),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.atrous_conv(x)


class Reduction1x1(nn.Module):
    """Halving chain of 1x1 conv + ELU down to 8 channels, then a plane ``(n1, n2, n3, dist)`` or a sigmoid depth.

    A plane is decoded from three sigmoids: theta = s0 * pi/3, phi = s1 * 2pi, dist = s2 * max_depth, and
    n = (sin(theta) cos(phi), sin(theta) sin(phi), cos(theta)).
    """

    def __init__(self, in_chans: int, out_chans: int, max_depth: float, is_final: bool = False) -> None:
        super().__init__()
        self.max_depth = max_depth
        self.is_final = is_final
        self.reduc = nn.Sequential()
        while out_chans >= 8:
            self.reduc.add_module(f"inter_{in_chans}_{out_chans}",
                                  nn.Sequential(nn.Conv2d(in_chans, out_chans, 1, bias=False), nn.ELU()))
            in_chans, out_chans = out_chans, out_chans // 2
        if is_final:
            self.reduc.add_module("final", nn.Sequential(nn.Conv2d(in_chans, 1, 1, bias=False), nn.Sigmoid()))
        else:
            self.reduc.add_module("plane_params", nn.Conv2d(in_chans, 3, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduc(x)
        if self.is_final:
            return x
        s = torch.sigmoid(x)
        theta, phi, dist = s[:, 0] * math.pi / 3, s[:, 1] * 2 * math.pi, s[:, 2] * self.max_depth
        return torch.stack([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos(), dist], dim=1)


def local_planar_guidance(plane: torch.Tensor, ratio: int) -> torch.Tensor:
    """Expand per-pixel planes ``[B, 4, h, w]`` into depth ``[B, 1, h*ratio, w*ratio]`` (BTS, Eq. 1).

    Each plane covers a ``ratio x ratio`` block; depth = n4 / (n1 u + n2 v + n3), where (u, v) are the pixel's
    column/row offsets within the block, normalised to (-0.5, 0.5).
    """
    normal = F.normalize(plane[:, :3], dim=1)
    dist = plane[:, 3:4]
    normal = normal.repeat_interleave(ratio, dim=2).repeat_interleave(ratio, dim=3)
    dist = dist.repeat_interleave(ratio, dim=2).repeat_interleave(ratio, dim=3)
    offsets = (torch.arange(ratio, device=plane.device, dtype=plane.dtype) - (ratio - 1) / 2) / ratio
    height, width = normal.shape[-2:]
    u = offsets.repeat(width // ratio).view(1, 1, width)
    v = offsets.repeat(height // ratio).view(1, height, 1)
    return dist / (normal[:, 0:1] * u + normal[:, 1:2] * v + normal[:, 2:3])


class BTSDecoder(nn.Module):
    """The BTS decoder: up-convolutions, dense ASPP, local planar guidance at 8x8, 4x4, 2x2 and a 1x1 reduction."""

    def __init__(self, skip_chans: tuple[int, int, int, int, int], max_depth: float,
                 num_features: int = NUM_FEATURES) -> None:
        super().__init__()
        f = num_features
        self.max_depth = max_depth
        self.upconv5, self.bn5 = UpConv(skip_chans[4], f), _bn(f)
        self.conv5 = _conv_elu(f + skip_chans[3], f)
        self.upconv4, self.bn4 = UpConv(f, f // 2), _bn(f // 2)
        self.conv4 = _conv_elu(f // 2 + skip_chans[2], f // 2)
        self.bn4_2 = _bn(f // 2)
        concat4 = f // 2 + skip_chans[2]
        self.daspp_3 = AtrousConv(f // 2, f // 4, 3, bn_first=False)
        self.daspp_6 = AtrousConv(concat4 + f // 4, f // 4, 6)
        self.daspp_12 = AtrousConv(concat4 + 2 * (f // 4), f // 4, 12)
        self.daspp_18 = AtrousConv(concat4 + 3 * (f // 4), f // 4, 18)
        self.daspp_24 = AtrousConv(concat4 + 4 * (f // 4), f // 4, 24)
        self.daspp_conv = nn.Sequential(nn.Conv2d(f // 2 + 5 * (f // 4), f // 4, 3, padding=1, bias=False), nn.ELU())
        self.reduc8x8 = Reduction1x1(f // 4, f // 4, max_depth)
        self.upconv3, self.bn3 = UpConv(f // 4, f // 4), _bn(f // 4)
        self.conv3 = _conv_elu(f // 4 + skip_chans[1] + 1, f // 4)
        self.reduc4x4 = Reduction1x1(f // 4, f // 8, max_depth)
        self.upconv2, self.bn2 = UpConv(f // 4, f // 8), _bn(f // 8)
        self.conv2 = _conv_elu(f // 8 + skip_chans[0] + 1, f // 8)
        self.reduc2x2 = Reduction1x1(f // 8, f // 16, max_depth)
        self.upconv1 = UpConv(f // 8, f // 16)
        self.reduc1x1 = Reduction1x1(f // 16, f // 32, max_depth, is_final=True)
        self.conv1 = _conv_elu(f // 16 + 4, f // 16)
        self.get_depth = nn.Sequential(nn.Conv2d(f // 16, 1, 3, padding=1, bias=False), nn.Sigmoid())

    def _dense_aspp(self, iconv4: torch.Tensor, concat4: torch.Tensor) -> torch.Tensor:
        outputs = [self.daspp_3(iconv4)]
        for branch in (self.daspp_6, self.daspp_12, self.daspp_18, self.daspp_24):
            outputs.append(branch(torch.cat([concat4, *outputs], dim=1)))
        return self.daspp_conv(torch.cat([iconv4, *outputs], dim=1))

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        """Decode the five encoder features (strides 2, 4, 8, 16, 32) into depth ``[B, 1, H, W]`` in (0, max_depth)."""
        upconv5 = self.bn5(self.upconv5(skips[4]))
        iconv5 = self.conv5(torch.cat([upconv5, skips[3]], dim=1))
        upconv4 = self.bn4(self.upconv4(iconv5))
        concat4 = torch.cat([upconv4, skips[2]], dim=1)
        iconv4 = self.bn4_2(self.conv4(concat4))
        daspp = self._dense_aspp(iconv4, concat4)

        depth_8x8 = local_planar_guidance(self.reduc8x8(daspp), 8) / self.max_depth
        upconv3 = self.bn3(self.upconv3(daspp))
        iconv3 = self.conv3(torch.cat([upconv3, skips[1], F.interpolate(depth_8x8, scale_factor=0.25)], dim=1))

        depth_4x4 = local_planar_guidance(self.reduc4x4(iconv3), 4) / self.max_depth
        upconv2 = self.bn2(self.upconv2(iconv3))
        iconv2 = self.conv2(torch.cat([upconv2, skips[0], F.interpolate(depth_4x4, scale_factor=0.5)], dim=1))

        depth_2x2 = local_planar_guidance(self.reduc2x2(iconv2), 2) / self.max_depth
        upconv1 = self.upconv1(iconv2)
        reduc1x1 = self.reduc1x1(upconv1)
        iconv1 = self.conv1(torch.cat([upconv1, reduc1x1, depth_2x2, depth_4x4, depth_8x8], dim=1))
        return self.max_depth * self.get_depth(iconv1)


class DenseNetEncoder(nn.Module):
    """timm's DenseNet features as ``base_model``, returning the five BTS skips (norm0, pool0, transition1/2, norm5).

    timm fuses BN and ReLU (``BatchNormAct2d``), so norm0's output is BTS's relu0 and norm5's output is already
    the ReLU that BTS applies to the dense features.
    """

    SKIPS = ("norm0", "pool0", "transition1", "transition2", "norm5")

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        self.base_model = features
        channels = {"norm0": features.norm0.num_features, "pool0": features.norm0.num_features,
                    "transition1": features.transition1.conv.out_channels,
                    "transition2": features.transition2.conv.out_channels, "norm5": features.norm5.num_features}
        self.channels = tuple(channels[name] for name in self.SKIPS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for name, module in self.base_model.named_children():
            x = module(x)
            if name in self.SKIPS:
                skips.append(x)
        return skips


class BTS(DepthNet):
    """BTS with a DenseNet-161 encoder (47,000,688 parameters).

    Args:
        max_depth: 10 for NYU, 80 for KITTI.
        uses_focal: ``True`` for the KITTI model, whose output is multiplied by ``focal / 715.0873``.
        encoder: The DenseNet encoder.
    """

    default_loss = "bts_silog"
    output_stride = 1
    size_multiple = 32
    unit_info = (
        UnitInfo("upconv3", 128, 4, True, "decoder.bn3"),
        UnitInfo("upconv2", 64, 2, True, "decoder.bn2"),
        UnitInfo("iconv2", 64, 2, True, "decoder.conv2"),
        UnitInfo("upconv1", 32, 1, True, "decoder.upconv1"),
        UnitInfo("iconv1", 32, 1, True, "decoder.conv1"),
    )

    def __init__(self, encoder: DenseNetEncoder, max_depth: float, uses_focal: bool) -> None:
        super().__init__()
        self.max_depth = max_depth
        self.uses_focal = uses_focal
        self.encoder = encoder
        self.decoder = BTSDecoder(encoder.channels, max_depth)

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        """Predict depth in metres ``[B, 1, H, W]``; ``focal`` ``[B]`` (pixels) is required for the KITTI model."""
        self.check_input(x, focal)
        depth = self.decoder(self.encoder(x))
        if self.uses_focal:
            depth = depth * (focal.to(depth.dtype) / KITTI_REFERENCE_FOCAL).view(-1, 1, 1, 1)
        return depth


def _densenet161(pretrained: bool, pretrained_file: str | os.PathLike[str] | None) -> DenseNetEncoder:
    backbone = create_timm_model("densenet161", "tv_in1k", pretrained, pretrained_file, num_classes=0,
                                 global_pool="")
    return DenseNetEncoder(backbone.features)


@register_model
def bts_densenet161_nyu(pretrained: bool = False, pretrained_file: str | os.PathLike[str] | None = None) -> BTS:
    """BTS-DenseNet161 for NYU (max depth 10 m, 480x640 input); encoder weights ``densenet161.tv_in1k``."""
    model = BTS(_densenet161(pretrained, pretrained_file), max_depth=10.0, uses_focal=False)
    model.input_size = (480, 640)
    return model


@register_model
def bts_densenet161_kitti(pretrained: bool = False, pretrained_file: str | os.PathLike[str] | None = None) -> BTS:
    """BTS-DenseNet161 for KITTI (max depth 80 m, 352x1216 input, needs ``focal``); weights ``densenet161.tv_in1k``."""
    model = BTS(_densenet161(pretrained, pretrained_file), max_depth=80.0, uses_focal=True)
    model.input_size = (352, 1216)
    model.depth_preset = "kitti"
    model.default_loss = "bts_silog_kitti"
    return model
