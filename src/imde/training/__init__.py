"""Training: one loop for every model, the original loss plus the interpretability term (Eq. 4-6).

>>> from imde.training import TrainConfig
>>> TrainConfig.from_yaml_dict({"optim": {"name": "sgd", "lr": 0.01}}).optim.name
'sgd'
"""

from __future__ import annotations

from imde.training.config import TrainConfig as TrainConfig
from imde.training.loop import NonFiniteLossError as NonFiniteLossError
from imde.training.loop import TrainResult as TrainResult
from imde.training.loop import train as train

__all__ = ["NonFiniteLossError", "TrainConfig", "TrainResult", "train"]
