"""One rule that turns whatever a model returns into the depth prediction ``[B, 1, H, W]``.

Models return a tensor, a tuple, a dict (torchvision's segmentation networks: ``{"out", "aux"}``) or a
Hugging Face ``ModelOutput`` (a dict too: ``predicted_depth`` ``[B, H, W]``). :func:`depth_from_output`
applies, in this order:

1. an explicit ``output``: a key (for dicts and ``ModelOutput``), an index (for tuples), or a callable
   ``output(raw) -> Tensor``;
2. a tensor is the prediction;
3. a tuple or list: its first element (then these rules again), as Hugging Face models return with
   ``return_dict=False``;
4. a dict: the one recognised key present (:data:`DEPTH_KEYS`); with none of them, the only tensor value;
   otherwise an error listing the keys;
5. the result must be ``[B, 1, H, W]``; ``[B, H, W]`` gets its channel axis.

The explicit choice is the ``output`` argument of :func:`imde.models.run_model` or, for a model passed to
every experiment and to training, the attribute ``model.depth_output`` (a key, index or callable).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

from torch import Tensor

DEPTH_KEYS = ("predicted_depth", "depth", "out")
"""Output keys recognised as the depth prediction: Hugging Face depth models, the common name, torchvision."""

OutputRule: TypeAlias = "str | int | Callable[[Any], Tensor] | None"
"""How to pick the prediction from a model's output: a key, an index, a callable, or ``None`` (the rules)."""


def depth_from_output(raw: Any, output: OutputRule = None) -> Tensor:
    """The depth prediction ``[B, 1, H, W]`` in a model's output (the rule of the module docstring).

    Args:
        raw: what the model returned.
        output: a key, an index, a callable, or ``None`` for the recognised cases.

    Raises:
        ValueError: the output holds no tensor where the rule looks, several candidates (the keys are listed),
            or a tensor that is not ``[B, 1, H, W]`` / ``[B, H, W]``.

    Example:
        >>> import torch
        >>> depth_from_output({"out": torch.ones(2, 1, 3, 4), "aux": torch.zeros(2, 1, 3, 4)}).shape
        torch.Size([2, 1, 3, 4])
        >>> depth_from_output((torch.ones(2, 3, 4), None)).shape  # first element, channel added
        torch.Size([2, 1, 3, 4])
    """
    if callable(output):
        return _as_prediction(output(raw), f"output={getattr(output, '__name__', output)!r}")
    if output is not None:
        return _as_prediction(_pick(raw, output), f"output[{output!r}]")
    found, where = _find(raw, "output")
    return _as_prediction(found, where)


def _pick(raw: Any, key: str | int) -> Any:
    if isinstance(raw, Mapping) and isinstance(key, str):
        if key not in raw:
            raise ValueError(f"output={key!r}: the model's output has keys {_keys(raw)}")
        return raw[key]
    if isinstance(raw, Sequence) and not isinstance(raw, str) and isinstance(key, int):
        if not -len(raw) <= key < len(raw):
            raise ValueError(f"output={key}: the model returned a {type(raw).__name__} of {len(raw)} elements")
        return raw[key]
    raise ValueError(f"output={key!r}: cannot index the model's output of type {type(raw).__name__} with it "
                     f"(a key for dicts, an index for tuples)")


def _find(raw: Any, where: str) -> tuple[Any, str]:
    if isinstance(raw, Tensor):
        return raw, where
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        if not raw:
            raise ValueError(f"{where}: the model returned an empty {type(raw).__name__}")
        return _find(raw[0], f"{where}[0]")
    if isinstance(raw, Mapping):
        present = [key for key in DEPTH_KEYS if raw.get(key) is not None]
        if len(present) == 1:
            return _find(raw[present[0]], f"{where}[{present[0]!r}]")
        tensors = [key for key, value in raw.items() if isinstance(value, Tensor)]
        if not present and len(tensors) == 1:
            return raw[tensors[0]], f"{where}[{tensors[0]!r}]"
        raise ValueError(
            f"{where}: cannot tell which entry of the model's {type(raw).__name__} is the depth (keys "
            f"{_keys(raw)}; recognised: {', '.join(DEPTH_KEYS)}); name it with run_model(..., output=KEY) or "
            f"set model.depth_output = KEY (a key, an index or a callable)"
        )
    raise ValueError(f"{where}: the model returned {type(raw).__name__}; expected a Tensor, tuple or dict")


def _keys(raw: Mapping[Any, Any]) -> str:
    return ", ".join(repr(key) for key in raw)


def _as_prediction(value: Any, where: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(f"{where}: expected the depth prediction as a Tensor, got {type(value).__name__}")
    if value.ndim == 3:
        return value.unsqueeze(1)
    if value.ndim != 4 or value.shape[1] != 1:
        raise ValueError(f"{where}: expected the depth prediction [B, 1, H, W] or [B, H, W], got {tuple(value.shape)}")
    return value
