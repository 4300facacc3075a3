"""Device selection: CPU or CUDA by name or ``"auto"``; Apple's MPS refused with the reason."""

from __future__ import annotations

import torch

_CHOICES = ("auto", "cpu", "cuda", "mps")


#: Why Apple's MPS backend is refused: PyTorch's MPS has no float64 (a known limitation of Metal), and imde keeps
#: the sums of Eq. 1, the metrics and the training losses' partial sums in float64.
MPS_REFUSAL = ("the MPS backend has no float64, which imde's sums of Eq. 1, metrics and selectivity losses need; "
               "use device=cpu")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return a usable ``torch.device``.

    Args:
        device: ``"auto"`` (CUDA, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. ``"mps"`` is a known name but
            is refused (:data:`MPS_REFUSAL`): ``"auto"`` never picks it.

    Raises:
        ValueError: when the name is unknown, the requested backend is not available here, or it is MPS.
    """
    if isinstance(device, torch.device):
        if device.type == "mps":
            raise ValueError(f"device={device!r}: {MPS_REFUSAL}")
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    kind = name.split(":", 1)[0]
    if kind not in _CHOICES:
        raise ValueError(f"device={device!r}: expected one of {', '.join(_CHOICES)} (or 'cuda:N')")
    if kind == "mps":
        raise ValueError(f"device={device!r}: {MPS_REFUSAL}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine; use device=cpu or auto")
    return torch.device(name)
