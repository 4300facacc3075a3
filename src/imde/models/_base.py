"""What every imde depth network declares, and the input checks they share."""

from __future__ import annotations

import torch
from torch import nn

from imde.models._units import UnitInfo


class DepthNet(nn.Module):
    """Base class of the registered depth networks (see ``docs/architecture.md``, model contract).

    Subclasses set the class attributes below and call :meth:`check_input` at the top of ``forward``.

    Attributes:
        unit_info: The dissectable layers, as data.
        default_loss: Name of the network's original loss for ``imde.losses.create``.
        max_depth: Largest depth the network predicts, in metres.
        input_size: Standard input ``(H, W)``.
        depth_preset: ``"nyu"`` or ``"kitti"`` (selects the depth bins and evaluation caps).
        output_stride: Input size divided by output size (2 for MFF, 1 for BTS and CSPN).
        in_chans: Number of input channels (3, or 4 for RGB + sparse depth).
        uses_focal: ``True`` when ``forward`` needs the per-sample focal length.
        size_multiple: Input ``H`` and ``W`` must be multiples of this.
        min_size: Smallest ``H`` and ``W`` accepted.
        prediction: ``"depth"`` (metres) or ``"disparity"`` (relative models: affine-invariant inverse depth,
            evaluated with the zero-shot protocol).
    """

    unit_info: tuple[UnitInfo, ...] = ()
    default_loss: str = ""
    max_depth: float = 10.0
    input_size: tuple[int, int] = (228, 304)
    depth_preset: str = "nyu"
    output_stride: int = 1
    in_chans: int = 3
    uses_focal: bool = False
    size_multiple: int = 1
    min_size: int = 32
    prediction: str = "depth"

    def check_input(self, x: torch.Tensor, focal: torch.Tensor | None = None) -> None:
        """Raise ``ValueError`` naming the problem when ``x`` (and ``focal``) cannot be fed to this network."""
        name = type(self).__name__
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"{name}: input x has shape {tuple(x.shape)}; expected [B, {self.in_chans}, H, W]"
                             + (" (normalised RGB + sparse depth in metres)" if self.in_chans == 4 else ""))
        height, width = x.shape[-2:]
        if min(height, width) < self.min_size or height % self.size_multiple or width % self.size_multiple:
            raise ValueError(f"{name}: input size (H, W)=({height}, {width}) is not valid; expected H and W "
                             f">= {self.min_size} and multiples of {self.size_multiple} "
                             f"(standard size {self.input_size})")
        if focal is not None and (focal.ndim != 1 or focal.shape[0] != x.shape[0]):
            raise ValueError(f"{name}: focal has shape {tuple(focal.shape)}; expected [B] with B={x.shape[0]}")
        if self.uses_focal and focal is None:
            raise ValueError(f"{name}: this network scales its output by the camera focal length; pass "
                             f"focal=Tensor[B] (pixels), e.g. model(x, focal=batch['focal'])")
