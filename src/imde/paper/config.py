"""The study's configuration: one YAML file describing the whole paper pipeline, with inheritance.

A study config holds the training config shared by every model (``train``: an
:class:`imde.training.TrainConfig`, i.e. model, data, schedule and seed), the variants trained from it
(``variants``: overrides of that config, e.g. the selectivity loss, each checked as a ``TrainConfig``), and the
settings of each experiment. The depth bins of every step are the assign variant's ``loss`` bins
(:meth:`StudyConfig.bins`): the bins Eq. 6 assigned its units to.

Configuration layers one way, with YAML ``base:``: a study file may inherit from other study files
(``base: study/_paper.yaml``), and its ``train`` section from a training file (``train: {base:
../train/mff/_resnet50.yaml}``); paths are relative to the file that names them, and each file's own keys are
merged over its bases', section by section. Smoke settings are a config of their own that inherits the full
one (``configs/demo_smoke.yaml``: ``base: demo.yaml``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imde.core.bins import DepthBins
from imde.training.config import TrainConfig
from imde.utils.config import apply_overrides, check_positive, deep_merge, from_dict, load_yaml, to_dict

#: Variant names with a fixed role in ``results.json``.
REQUIRED_VARIANTS = ("baseline", "assign", "reg")
#: Keys holding a file name, resolved relative to the file that sets them.
_PATH_KEYS = ("train.base",)


@dataclass(frozen=True)
class RenderSection:
    """Generation of the embedded rendered dataset before training (ignored for other datasets).

    Attributes:
        enabled: render ``train.data`` when its dataset is ``rendered`` and the cache is missing.
        contact_sheet: number of samples shown in ``figures/contact_sheet.png`` (0: none).
    """

    enabled: bool = True
    contact_sheet: int = 16


@dataclass(frozen=True)
class DissectSection:
    """Dissection of every variant (Tables 1, 2).

    Attributes:
        layers: layer names; empty means the layers the variants were trained on (else the model's last two).
        splits: splits dissected.
        batch_size: images per forward pass.
        max_batches: per split, stop after this many batches (``None``: all).
    """

    layers: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("train", "test")
    batch_size: int = 32
    max_batches: int | None = None

    def __post_init__(self) -> None:
        check_positive("dissect.batch_size", self.batch_size)
        check_positive("dissect.max_batches", self.max_batches, allow_none=True)
        if "train" not in self.splits or "test" not in self.splits:
            raise ValueError(f"dissect.splits={list(self.splits)!r}: must include 'train' and 'test'")


@dataclass(frozen=True)
class StatsSection:
    """Uncertainty of the study's numbers (:mod:`imde.significance`).

    Attributes:
        bootstrap: Poisson-bootstrap replicates of every dissection and test evaluation (0: none); they give
            the intervals and the claims' three-way verdicts.
        permutations: permutation-null replicates of every dissection (0: none): p- and q-values per unit.
        seed: seed of the replicates (every variant uses it, so their replicates are paired).
        control: also dissect the baseline's architecture with random weights on the same data (step
            ``dissect_control``): the selectivity an untrained network already shows, a measured control
            next to Eq. 3's value.
    """

    bootstrap: int = 0
    permutations: int = 0
    seed: int = 0
    control: bool = False

    def __post_init__(self) -> None:
        check_positive("stats.bootstrap", self.bootstrap, allow_zero=True)
        check_positive("stats.permutations", self.permutations, allow_zero=True)
        check_positive("stats.seed", self.seed, allow_zero=True)


@dataclass(frozen=True)
class CorrectionSection:
    """Correction (Sec. 5.2, Table 3).

    Attributes:
        layers: the corrected layers, all at once; empty means every dissected layer.
        variants: models corrected.
    """

    layers: tuple[str, ...] = ()
    variants: tuple[str, ...] = ("baseline", "assign")


@dataclass(frozen=True)
class AblationSection:
    """Successive ablation by selectivity (Fig. 2).

    Attributes:
        layers: the ablated layers, their units ranked together (the paper's Fig. 2 ranks the 128 units of D
            and MFF as one list); empty means every dissected layer.
        step: units ablated between two evaluations.
        variants: models ablated.
        max_batches: test batches per evaluation (``None``: the whole test split).
    """

    layers: tuple[str, ...] = ()
    step: int = 4
    variants: tuple[str, ...] = ("baseline", "assign")
    max_batches: int | None = None

    def __post_init__(self) -> None:
        check_positive("ablation.step", self.step)
        check_positive("ablation.max_batches", self.max_batches, allow_none=True)


@dataclass(frozen=True)
class ExplainSection:
    """Adversarial error analysis of one test image (Fig. 8).

    Attributes:
        variants: models explained.
        layer: the layer whose units explain the errors; empty means the first dissected layer.
        index: test-split index of the image.
        epsilon: FGSM step in the normalised input space.
    """

    variants: tuple[str, ...] = ("baseline", "assign")
    layer: str = ""
    index: int = 0
    epsilon: float = 0.05

    def __post_init__(self) -> None:
        check_positive("explain.index", self.index, allow_zero=True)
        check_positive("explain.epsilon", self.epsilon)


@dataclass(frozen=True)
class ReportSection:
    """The HTML report and the unit atlas of the unit browser.

    Attributes:
        enabled: build ``report.html`` and ``results.md``.
        atlas_images: test images in each unit's feature-map sprite.
    """

    enabled: bool = True
    atlas_images: int = 6

    def __post_init__(self) -> None:
        check_positive("report.atlas_images", self.atlas_images)


@dataclass(frozen=True)
class StudyConfig:
    """Everything ``imde study`` does, in one tree.

    Attributes:
        name: the study's name (``runs/<name>`` by default).
        run_dir: output folder; empty means ``runs/<name>``.
        device: ``auto``, ``cpu`` or ``cuda`` for every step (``mps`` is refused: no float64).
        train: the training config shared by every variant (its ``run_dir`` and ``device`` are set per variant).
        variants: ``{variant: overrides of train}``; must define ``baseline``, ``assign`` and ``reg``.
        train_workers: train this many variants at once, each in its own process with an equal share of
            PyTorch's intra-op threads (at least one); 1 trains them one after the other in this process.
        render: generation of the rendered dataset.
        dissect: dissection settings.
        stats: bootstrap and permutation replicates (intervals, p/q-values, verdicts).
        correction: correction settings.
        ablation: ablation settings.
        explain: adversarial error analysis settings.
        report: report settings.
        claims: measure the paper's claims (``false`` for a smoke-size run: a handful of images and one epoch
            support no claim, so ``results.json`` lists none and says why instead of printing them as failed).
    """

    name: str = "study"
    run_dir: str = ""
    device: str = "auto"
    train: TrainConfig = field(default_factory=TrainConfig)
    variants: dict[str, Any] = field(default_factory=dict)
    train_workers: int = 1
    render: RenderSection = RenderSection()
    dissect: DissectSection = DissectSection()
    stats: StatsSection = StatsSection()
    correction: CorrectionSection = CorrectionSection()
    ablation: AblationSection = AblationSection()
    explain: ExplainSection = ExplainSection()
    report: ReportSection = ReportSection()
    claims: bool = True

    def __post_init__(self) -> None:
        check_positive("train_workers", self.train_workers)
        missing = [name for name in REQUIRED_VARIANTS if name not in self.variants]
        if missing:
            raise ValueError(f"variants: missing {missing}; a study trains {', '.join(REQUIRED_VARIANTS)}")
        for name, overrides in self.variants.items():
            if not isinstance(overrides, Mapping):
                raise ValueError(f"variants.{name}: expected a mapping of train overrides, got {overrides!r}")
        losses = {name: self.variant_train(name).loss for name in self.variants}  # each a valid TrainConfig
        bins = {name: (loss.preset, loss.num_bins) for name, loss in losses.items()}
        if len(set(bins.values())) > 1:
            listed = "; ".join(f"{name}: preset {p!r}, num_bins {n}" for name, (p, n) in bins.items())
            raise ValueError(f"variants: their loss bins differ ({listed}); the study dissects and compares every "
                             "variant over the same bins: set them in train.loss")
        for key, section in (("correction", self.correction), ("ablation", self.ablation), ("explain", self.explain)):
            unknown = [v for v in section.variants if v not in self.variants]
            if unknown:
                raise ValueError(f"{key}.variants: {unknown} are not among the variants {list(self.variants)}")
            if key != "explain" and not {"baseline", "assign"} <= set(section.variants):
                raise ValueError(f"{key}.variants={list(section.variants)}: must include baseline and assign "
                                 "(the claims compare them)")

    @property
    def out(self) -> Path:
        """The run directory."""
        return Path(self.run_dir or f"runs/{self.name}")

    def variant_train(self, variant: str, **top: Any) -> TrainConfig:
        """The training config of ``variant``: ``train`` with the variant's overrides (and ``top``) merged in.

        Raises:
            ValueError: the merged config is invalid, naming the variant and the key.
        """
        try:
            return from_dict(TrainConfig, deep_merge(to_dict(self.train), {**self.variants[variant], **top}))
        except ValueError as err:
            raise ValueError(f"train config of variant {variant!r}: {err}") from None

    def bins(self, model_preset: str | None = None) -> DepthBins:
        """The depth bins of every step: the assign variant's ``loss`` bins (``model_preset`` when it names none).

        Dissection, the error analysis and the unit atlas use the bins Eq. 6 assigned the units to.
        """
        return self.variant_train("assign").loss.bins(model_preset)


def smoke_path(path: str | os.PathLike[str]) -> Path:
    """The smoke config of a study file: ``<name>_smoke.yaml`` beside it (``demo.yaml`` -> ``demo_smoke.yaml``).

    >>> smoke_path("configs/demo.yaml").as_posix()
    'configs/demo_smoke.yaml'
    """
    path = Path(path)
    return path.with_name(f"{path.stem}_smoke{path.suffix}")


def load_study_config(
    path: str | os.PathLike[str], overrides: Iterable[str] = (), *, smoke: bool = False
) -> StudyConfig:
    """Load a study YAML (with ``base:`` inheritance) and apply ``key=value`` overrides.

    Args:
        path: the study file.
        overrides: ``key=value`` strings, applied after inheritance (``train.data.root=...``).
        smoke: load the study's smoke config instead (:func:`smoke_path`), the same pipeline at toy sizes.

    Raises:
        FileNotFoundError: the file or a base is missing.
        ValueError: an unknown key (with the closest valid one), or a value rejected by a section.
    """
    if smoke:
        if not smoke_path(path).is_file():
            raise FileNotFoundError(f"--smoke: {smoke_path(path)} not found (the smoke config of {path})")
        path = smoke_path(path)
    data = apply_overrides(load_yaml(path, path_keys=_PATH_KEYS), overrides)
    train = data.get("train")
    if isinstance(train, Mapping) and train.get("base"):
        data["train"] = deep_merge(load_yaml(train["base"]), {k: v for k, v in train.items() if k != "base"})
    return from_dict(StudyConfig, data)
