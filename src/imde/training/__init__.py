"""Training: one loop for every model, the original loss plus the interpretability term (Eq. 4-6).

>>> from imde.training import TrainConfig
>>> TrainConfig.from_yaml_dict({"recipe": "mff"}).optim.name
'adam'
"""

from __future__ import annotations

from imde.training.config import TrainConfig as TrainConfig
from imde.training.loop import NonFiniteLossError as NonFiniteLossError
from imde.training.loop import TrainResult as TrainResult
from imde.training.loop import train as train
from imde.training.recipes import recipe_names as recipe_names

__all__ = ["NonFiniteLossError", "TrainConfig", "TrainResult", "recipe_names", "train"]
