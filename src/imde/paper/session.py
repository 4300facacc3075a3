"""A trained model and its data, from a training run directory or a training config (shared by CLI and study).

``open_session("runs/demo/models/assign")`` reads the run's resolved ``config.yaml``, builds the model it
trained, loads ``checkpoints/best.pt`` (or ``last.pt``, or any checkpoint / released weights file), and
makes evaluation loaders for its splits with the model's evaluation transform.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from imde.training.config import TrainConfig
from imde.training.distributed import DistInfo
from imde.utils.config import load_yaml

CHECKPOINT_NAMES = ("best", "last")


def load_train_config(source: str | os.PathLike[str], overrides: Iterable[str] = ()) -> TrainConfig:
    """The training config of a run directory (its ``config.yaml``) or of a YAML file (``base:`` resolved).

    For a run directory, ``run_dir`` is that directory (absolute), not the ``run_dir`` its ``config.yaml``
    recorded: a copied or moved run reads and writes only its own files, from any working directory.

    Raises:
        FileNotFoundError: ``source`` does not exist, or is a folder without ``config.yaml``.
        ValueError: an invalid config (unknown key, bad value).
    """
    path = Path(source)
    if path.is_dir():
        path = path / "config.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"source={str(source)!r}: a run directory needs config.yaml, none found")
    elif not path.is_file():
        raise FileNotFoundError(f"source={str(source)!r}: no such run directory or config file")
    if "variants" in load_yaml(path):  # a study: its trained models are in models/<variant>
        where = "run directory" if Path(source).is_dir() else "config"
        raise ValueError(f"source={str(source)!r} is a study {where}, not a training run; point at one of its "
                         "trained models, <study run_dir>/models/<variant> (baseline, assign or reg)")
    config = TrainConfig.from_yaml(path, overrides)
    if Path(source).is_dir():  # the run is the folder passed, wherever its config says it was written
        config = replace(config, run_dir=str(Path(source).resolve()))
    return config


def checkpoint_path(config: TrainConfig, checkpoint: str) -> Path:
    """``best``/``last`` inside the run directory, else ``checkpoint`` as a file path.

    Raises:
        FileNotFoundError: the checkpoint does not exist (``best`` falls back to ``last`` first).
    """
    if checkpoint in CHECKPOINT_NAMES:
        folder = Path(config.run_dir) / "checkpoints"
        for name in (checkpoint, "last"):
            if (folder / f"{name}.pt").is_file():
                return folder / f"{name}.pt"
        raise FileNotFoundError(f"checkpoint={checkpoint!r}: {folder} holds no {checkpoint}.pt or last.pt; "
                                "train the model first (imde train ...)")
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint={checkpoint!r}: file not found")
    return path


def build_model(config: TrainConfig, checkpoint: str | None = "best") -> torch.nn.Module:
    """The config's model with weights from ``checkpoint`` (``None``: freshly initialised), in eval mode.

    An imde training checkpoint is loaded strictly (after checking it belongs to this model); any other file
    goes through ``imde.models.load_checkpoint`` (released weights of the original projects).
    """
    from imde.models import create
    from imde.training.checkpoint import load_model_state, read_checkpoint

    model = create(config.model.name, pretrained=False, **config.model.kwargs)
    if checkpoint is not None:
        path = checkpoint_path(config, checkpoint)
        if checkpoint in CHECKPOINT_NAMES:
            state = read_checkpoint(path)
            if state.get("model_name") != config.model.name:
                raise ValueError(f"checkpoint {str(path)!r} holds model {state.get('model_name')!r}, "
                                 f"but the config names model.name={config.model.name!r}")
            load_model_state(model, state, path)
        else:
            from imde.models import load_checkpoint as load_released

            load_released(model, path)
    return model.eval()


def build_loader(config: TrainConfig, split: str, batch_size: int | None = None) -> DataLoader[dict[str, Any]]:
    """An ordered evaluation loader of ``split`` (evaluation transform, ``eval_batch_size`` by default)."""
    from imde.training.data import build_dataset

    dataset = build_dataset(config.data, split, train=False)
    return DataLoader(dataset, batch_size=batch_size or config.data.eval_batch_size, shuffle=False,
                      num_workers=config.data.num_workers, pin_memory=torch.cuda.is_available())


@dataclass
class Session:
    """A trained model, its training config, the device to run it on, and this process's place under torchrun.

    Under ``torchrun`` (``info.distributed``) each process gets its own non-overlapping shard of a split, and
    evaluation and dissection all-reduce their sums, so every process ends with the single-process numbers.
    """

    config: TrainConfig
    model: torch.nn.Module
    device: str | torch.device
    info: DistInfo = field(default_factory=DistInfo)

    def loader(self, split: str, batch_size: int | None = None) -> DataLoader[dict[str, Any]]:
        """Evaluation loader of ``split`` (this process's shard of it under torchrun)."""
        if not self.info.distributed:
            return build_loader(self.config, split, batch_size)
        from imde.training.data import build_dataset, eval_loader

        data = replace(self.config.data, eval_batch_size=batch_size or self.config.data.eval_batch_size)
        return eval_loader(build_dataset(data, split, train=False), data, self.info)


def open_session(source: str | os.PathLike[str], overrides: Iterable[str] = (), *, checkpoint: str = "best",
                 device: str = "auto", distributed: bool = False) -> Session:
    """Load the model of a run directory or config (see the module docstring).

    Args:
        distributed: join the process group ``torchrun`` describes (``WORLD_SIZE > 1``), on ``device``.
    """
    config = load_train_config(source, overrides)
    info: DistInfo = DistInfo()
    if distributed:
        from imde.training.distributed import setup

        info, resolved = setup(device)
        device = resolved if info.distributed else device
    return Session(config=config, model=build_model(config, checkpoint), device=device, info=info)
