"""The tasks on a trained model (evaluate, dissect, correct, ablate, explain), called by the CLI and the study.

``open_session("runs/demo/models/assign")`` reads the run's resolved ``config.yaml``, builds the model it
trained, loads ``checkpoints/best.pt`` (or ``last.pt``, or any checkpoint / released weights file), and
makes evaluation loaders for its splits with the model's evaluation transform. The task functions below take
such a :class:`Session` and decide every default once, from its training config and its model:

- layers: the requested ones, else the training's ``loss.layers``, else every layer the model declares
  (:func:`imde.training.config.default_layers`);
- depth bins: the training's ``loss`` bins, the model's preset when the config names none
  (:meth:`imde.training.config.LossConfig.bins`): the bins Eq. 6 assigned the units to;
- evaluation protocol: the training's ``eval`` crop and caps (the model's ``max_depth`` when unset);
- batch size: the training's ``data.eval_batch_size``; checkpoint: ``best`` (else ``last``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from imde.core.bins import DepthBins
from imde.experiments.ablate import AblationResult, run_ablation
from imde.experiments.correct import CorrectionResult, run_correction
from imde.experiments.dissect import DissectResult, LayerDissection, run_dissect
from imde.experiments.evaluate import EvalResult, EvalSettings, evaluate_with
from imde.experiments.explain import ExplainResult, run_explain
from imde.training.config import TrainConfig, default_layers
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
    loaders: dict[tuple[str, int | None], DataLoader[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def loader(self, split: str, batch_size: int | None = None) -> DataLoader[dict[str, Any]]:
        """Evaluation loader of ``split`` (this process's shard of it under torchrun), built once per size."""
        key = (split, batch_size)
        if key not in self.loaders:
            if not self.info.distributed:
                self.loaders[key] = build_loader(self.config, split, batch_size)
            else:
                from imde.training.data import build_dataset, eval_loader

                data = replace(self.config.data, eval_batch_size=batch_size or self.config.data.eval_batch_size)
                self.loaders[key] = eval_loader(build_dataset(data, split, train=False), data, self.info)
        return self.loaders[key]

    def layers(self, requested: Iterable[str] | None = None) -> list[str]:
        """``requested``, else the training's ``loss.layers``, else every declared layer of the model."""
        return default_layers(self.config, self.model, requested)

    @property
    def bins(self) -> DepthBins:
        """The training's depth bins (the model's preset when the config names none)."""
        return self.config.loss.bins(getattr(self.model, "depth_preset", None))

    def settings(self, max_batches: int | None = None, progress: bool = False, bootstrap: int = 0,
                 seed: int = 0) -> EvalSettings:
        """The training's evaluation protocol: its crop and caps (the model's ``max_depth`` when unset), with
        ``bootstrap`` replicates of the metrics drawn from ``seed`` (0: none)."""
        ev = self.config.eval
        max_depth = ev.max_depth if ev.max_depth is not None else getattr(self.model, "max_depth", None)
        return EvalSettings(device=self.device, crop=ev.crop, min_depth=ev.min_depth, max_depth=max_depth,
                            max_batches=max_batches, progress=progress, bootstrap=bootstrap, seed=seed)


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


def evaluate_run(session: Session, split: str = "test", *, max_batches: int | None = None,
                 progress: bool = False, bootstrap: int = 0, seed: int = 0) -> EvalResult:
    """Depth metrics of the session's model on ``split`` (Table 1), under the training's protocol.

    ``bootstrap`` / ``seed``: per-image bootstrap replicates of the metrics (intervals, paired comparisons).
    """
    return evaluate_with(session.model, session.loader(split), session.settings(max_batches, progress, bootstrap, seed))


def dissect_run(session: Session, splits: Iterable[str] = ("train",), layers: Iterable[str] | None = None, *,
                batch_size: int | None = None, max_batches: int | None = None, progress: bool = False,
                out_dir: str | os.PathLike[str] | None = None, bootstrap: int = 0, permutations: int = 0,
                seed: int = 0) -> DissectResult:
    """Dissect the session's layers on every split (Eq. 1-2) over the training's depth bins.

    ``bootstrap`` / ``permutations`` / ``seed``: intervals and the permutation null (``run_dissect``).
    """
    loaders = {split: session.loader(split, batch_size) for split in splits}
    return run_dissect(session.model, loaders, session.layers(layers), bins=session.bins, device=session.device,
                       max_batches=max_batches, progress=progress, out_dir=out_dir, bootstrap=bootstrap,
                       permutations=permutations, seed=seed)


def correct_run(session: Session, layers: Iterable[str] | None = None, *, dissection: DissectResult | None = None,
                max_batches: int | None = None, progress: bool = False,
                out_dir: str | os.PathLike[str] | None = None, bootstrap: int = 0, seed: int = 0) -> CorrectionResult:
    """Correction (Sec. 5.2) of ``layers`` with their training-set dissection (computed when not given);
    ``bootstrap`` / ``seed``: paired replicates of delta1 before and after."""
    layers = session.layers(layers)
    dissection = dissection or dissect_run(session, ("train",), layers, max_batches=max_batches, progress=progress)
    return run_correction(session.model, dissection, session.loader("test"), layers, split="train",
                          settings=session.settings(max_batches, progress, bootstrap, seed), out_dir=out_dir)


def ablate_run(session: Session, layers: Iterable[str] | None = None, *, step: int = 1,
               dissection: DissectResult | None = None, max_batches: int | None = None,
               eval_batches: int | None = None, progress: bool = False,
               out_dir: str | os.PathLike[str] | None = None, bootstrap: int = 0, seed: int = 0) -> AblationResult:
    """Ablation (Fig. 2) of ``layers``' units ranked together by training-set selectivity.

    Args:
        max_batches: training batches of the dissection, when it is computed here.
        eval_batches: test batches per evaluation (``None``: ``max_batches``).
        bootstrap: paired replicates of delta1 at every step of both orders (0: none), drawn from ``seed``.

    Raises:
        ValueError: ``step`` not below the number of ranked units (no intermediate point on the curve).
    """
    layers = session.layers(layers)
    dissection = dissection or dissect_run(session, ("train",), layers, max_batches=max_batches, progress=progress)
    order_by = {layer: dissection.layers["train"][layer].selectivity for layer in layers}
    num_units = sum(values.numel() for values in order_by.values())
    if step >= num_units:
        raise ValueError(f"ablation step={step}: layers {layers} have {num_units} units; a step below that is "
                         "needed for a curve with intermediate points")
    batches = max_batches if eval_batches is None else eval_batches
    return run_ablation(session.model, session.loader("test"), order_by, step=step,
                        settings=session.settings(batches, progress, bootstrap, seed), out_dir=out_dir)


def explain_run(session: Session, layer: str | None = None, *, index: int = 0, epsilon: float = 0.05,
                responses: LayerDissection | None = None, max_batches: int | None = None,
                out_dir: str | os.PathLike[str] | None = None) -> ExplainResult:
    """FGSM error analysis (Fig. 8) of test image ``index`` through ``layer``'s units.

    An L_assign model's units stand for their assigned bins; any other model's for their preferred bins, from
    ``responses`` (a training-set dissection of ``layer``, computed when not given).

    Raises:
        ValueError: ``index`` outside the test split.
    """
    layer = layer or session.layers()[0]
    dataset = session.loader("test").dataset
    if not 0 <= index < len(dataset):  # type: ignore[arg-type]
        raise ValueError(f"index={index}: the test split has {len(dataset)} images")  # type: ignore[arg-type]
    batch = torch.utils.data.default_collate([dataset[index]])
    if session.config.loss.interp != "assign" and responses is None:
        responses = dissect_run(session, ("train",), [layer], max_batches=max_batches).layers["train"][layer]
    return run_explain(session.model, batch, layer=layer, epsilon=epsilon,
                       responses=responses if session.config.loss.interp != "assign" else None, bins=session.bins,
                       device=session.device, out_dir=out_dir)
