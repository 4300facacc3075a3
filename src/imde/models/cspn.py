"""CSPN (Cheng et al., ECCV 2018) for NYU depth completion: ResNet-50 on RGB + sparse depth, an up-projection
decoder with skip connections, and a 24-step convolutional spatial propagation with 3x3 affinities.

Module names match the released ``best_model.pth`` (``conv1_1``, ``layer1``, ``gud_up_proj_layer3.conv1_1``, ...);
the unused ``up_proj_layer1-4`` and ``conv3`` of the original are not built. The paper's CSPN layers ``layer3``
(256 units, stride 4) and ``layer4`` (64 units, stride 2) are the outputs of ``gud_up_proj_layer3`` and
``gud_up_proj_layer4``.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from imde.models._base import DepthNet
from imde.models._encoders import create_timm_model
from imde.models._registry import register_model
from imde.models._units import UnitInfo

Size = tuple[int, int]
CSPN_STEPS = 24


def unpool(x: torch.Tensor, size: Size) -> torch.Tensor:
    """2x unpooling with zeros: each value goes to the top-left of its 2x2 cell; the result is cropped to ``size``."""
    batch, chans, height, width = x.shape
    out = x.new_zeros(batch, chans, 2 * height, 2 * width)
    out[:, :, ::2, ::2] = x
    return out[:, :, : size[0], : size[1]]


class GuidedUpProj(nn.Module):
    """Unpool, conv5-BN-ReLU, [concat a skip, conv3-BN-ReLU], conv3-BN; plus a conv5-BN shortcut; ReLU."""

    def __init__(self, in_chans: int, out_chans: int, skip_chans: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chans)
        if skip_chans:
            self.conv1_1 = nn.Conv2d(out_chans + skip_chans, out_chans, 3, padding=1, bias=False)
            self.bn1_1 = nn.BatchNorm2d(out_chans)
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chans)
        self.sc_conv1 = nn.Conv2d(in_chans, out_chans, 5, padding=2, bias=False)
        self.sc_bn1 = nn.BatchNorm2d(out_chans)

    def forward(self, x: torch.Tensor, size: Size, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = unpool(x, size)
        out = F.relu(self.bn1(self.conv1(x)))
        if skip is not None:
            out = F.relu(self.bn1_1(self.conv1_1(torch.cat([out, skip], dim=1))))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.sc_bn1(self.sc_conv1(x)))


class UnpoolConv(nn.Module):
    """Unpool, then a bias-free conv3x3 (the affinity and initial-depth heads)."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, size: Size) -> torch.Tensor:
        return self.conv1(unpool(x, size))


# Guidance channel n weighs the neighbour at offset CSPN_NEIGHBOURS[n] = (dy, dx): the original pads and shifts
# every affinity map together with the depth map it multiplies, so channel 0 carries the bottom-right neighbour,
# channel 7 the top-left one, and each affinity is read at its neighbour's position.
CSPN_NEIGHBOURS = ((1, 1), (1, 0), (1, -1), (0, 1), (0, -1), (-1, 1), (-1, 0), (-1, -1))
_WINDOW_INDEX = tuple((dy + 1) * 3 + (dx + 1) for dy, dx in CSPN_NEIGHBOURS)  # in the row-major 3x3 window


def cspn_propagate(guidance: torch.Tensor, blur: torch.Tensor, sparse: torch.Tensor,
                   steps: int = CSPN_STEPS) -> torch.Tensor:
    """Convolutional spatial propagation with 3x3 affinities and '8sum' normalisation (CSPN, Eq. 1-2).

    As the original propagation code does it: for pixel ``p`` and neighbour ``n`` at ``q = p + o_n``
    (:data:`CSPN_NEIGHBOURS`), the affinity is channel ``n`` of ``guidance`` read at ``q``; neighbours outside
    the image have none. The affinities of ``p``'s neighbours are divided by the sum of their absolute values,
    ``w_n = g_n(q) / sum_m |g_m(q_m)|``, and the centre keeps ``1 - sum(w)`` of the initial depth ``blur``. Each
    step: ``d(p) = sum_n w_n * d(q_n) + (1 - sum(w)) * blur(p)``; then pixels with a non-zero sparse input are
    reset to ``blur`` (the original code's behaviour, not the measurement). Where all of a pixel's affinities
    are 0 the original divides 0 by 0; here the pixel keeps ``blur``.

    Args:
        guidance: Affinities ``[B, 8, H, W]``.
        blur: Initial depth ``[B, 1, H, W]``.
        sparse: Sparse depth ``[B, 1, H, W]``, 0 where unmeasured.
        steps: Number of propagation steps.
    """
    batch, _, height, width = blur.shape
    window = torch.tensor(_WINDOW_INDEX, device=guidance.device)
    channels = torch.arange(len(CSPN_NEIGHBOURS), device=guidance.device)
    windows = F.unfold(guidance, 3, padding=1).view(batch, len(CSPN_NEIGHBOURS), 9, height, width)
    gates = windows[:, channels, window]  # [B, 8, H, W]: gate n at neighbour n's position, 0 outside the image
    weights = gates / gates.abs().sum(dim=1, keepdim=True).clamp_min(torch.finfo(gates.dtype).tiny)
    keep = (1.0 - weights.sum(dim=1, keepdim=True)) * blur
    measured = sparse != 0
    depth = blur
    for _ in range(steps):
        neighbours = F.unfold(depth, 3, padding=1).view(batch, 9, height, width)[:, window]
        depth = (weights * neighbours).sum(dim=1, keepdim=True) + keep
        depth = torch.where(measured, blur, depth)
    return depth


class CSPN(DepthNet):
    """CSPN-ResNet50 depth completion (218,121,920 parameters): input ``[B, 4, H, W]`` = normalised RGB + sparse depth.

    Args:
        backbone: A timm ResNet-50 (3-channel); its stem conv is replaced by the 4-channel ``conv1_1``.
    """

    default_loss = "cspn_l1"
    max_depth = 10.0
    input_size = (228, 304)
    depth_preset = "nyu"
    output_stride = 1
    in_chans = 4
    ignored_checkpoint_prefixes = ("up_proj_layer", "conv3.")  # unused modules of the released model
    unit_info = (
        UnitInfo("layer3", 256, 4, False, "gud_up_proj_layer3"),
        UnitInfo("layer4", 64, 2, False, "gud_up_proj_layer4"),
    )

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.conv1_1 = nn.Conv2d(4, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = backbone.bn1
        self.maxpool = backbone.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (backbone.layer1, backbone.layer2, backbone.layer3,
                                                              backbone.layer4)
        self.conv2 = nn.Conv2d(2048, 2048, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2048)
        self.gud_up_proj_layer1 = GuidedUpProj(2048, 1024)
        self.gud_up_proj_layer2 = GuidedUpProj(1024, 512, skip_chans=512)
        self.gud_up_proj_layer3 = GuidedUpProj(512, 256, skip_chans=256)
        self.gud_up_proj_layer4 = GuidedUpProj(256, 64, skip_chans=64)
        self.gud_up_proj_layer5 = UnpoolConv(64, 1)
        self.gud_up_proj_layer6 = UnpoolConv(64, 8)

    def forward(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        """Complete depth ``[B, 1, H, W]`` (metres) from RGB + sparse depth; ``focal`` is ignored."""
        self.check_input(x, focal)
        sparse = x[:, 3:4]
        skip4 = self.conv1_1(x)
        skip3 = self.layer1(self.maxpool(F.relu(self.bn1(skip4))))
        skip2 = self.layer2(skip3)
        block3 = self.layer3(skip2)
        out = self.bn2(self.conv2(self.layer4(block3)))
        out = self.gud_up_proj_layer1(out, block3.shape[-2:])
        out = self.gud_up_proj_layer2(out, skip2.shape[-2:], skip2)
        out = self.gud_up_proj_layer3(out, skip3.shape[-2:], skip3)
        out = self.gud_up_proj_layer4(out, skip4.shape[-2:], skip4)
        guidance = self.gud_up_proj_layer6(out, x.shape[-2:])
        blur = self.gud_up_proj_layer5(out, x.shape[-2:])
        return cspn_propagate(guidance, blur, sparse)


@register_model
def cspn_resnet50(pretrained: bool = False, pretrained_file: str | os.PathLike[str] | None = None) -> CSPN:
    """CSPN-ResNet50 for NYU; ``pretrained`` loads ``resnet50.tv_in1k`` into everything but ``conv1_1``."""
    backbone = create_timm_model("resnet50", "tv_in1k", pretrained, pretrained_file, num_classes=0, global_pool="")
    return CSPN(backbone)
