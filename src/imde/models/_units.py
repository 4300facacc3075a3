"""Declarations of a model's dissectable layers (the paper's layer names, e.g. ``D`` and ``MFF``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UnitInfo:
    """One dissectable layer of a depth network.

    Attributes:
        name: The paper's name for the layer (``"D"``, ``"MFF"``, ``"Rconv0"``, ``"upconv3"``, ...).
        num_units: Number of units (channels) of the layer's activation.
        stride: Spatial stride of the activation with respect to the network input (its size is
            ``ceil(H / stride) x ceil(W / stride)``); fractional for ViT decoders (3.5 = four times a 14-pixel
            patch grid).
        signed: ``True`` when the activation can be negative (BN or ELU outputs); ``False`` after a ReLU.
        module: Dotted path in ``model.named_modules()`` whose forward output *is* the layer.

    >>> UnitInfo("D", 64, 2, False, "D").num_units
    64
    """

    name: str
    num_units: int
    stride: int | float
    signed: bool
    module: str

    def __post_init__(self) -> None:
        if self.num_units <= 0 or self.stride <= 0:
            raise ValueError(f"UnitInfo {self.name!r}: num_units and stride must be positive, got "
                             f"num_units={self.num_units}, stride={self.stride}")
