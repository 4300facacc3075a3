"""The study's configuration: one YAML file describing the whole paper pipeline, with inheritance.

A study config names a training config shared by every model (``train``: an :class:`imde.training.TrainConfig`
mapping, i.e. model, data, schedule and seed), the variants trained from it (``variants``: overrides of that
mapping, e.g. the selectivity loss), and the settings of each experiment. ``smoke`` holds overrides of the
study config itself, applied by ``imde study --smoke`` to run the same pipeline at toy sizes.

Config files may inherit: ``base: other.yaml`` (a path relative to the file, or a list of them) is loaded
first and the file's own keys are merged over it, section by section. ``train_config`` is likewise resolved
relative to the file that sets it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from imde.utils.config import apply_overrides, check_positive, deep_merge, from_dict, load_yaml

#: Variant names with a fixed role in ``results.json``.
REQUIRED_VARIANTS = ("baseline", "assign", "reg")
#: Keys holding a file name, resolved relative to the file that sets them.
_PATH_KEYS = ("train_config",)


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
        num_bins: requested ``N_b`` (each layer uses ``min(N_b, K)``); ``None``: the training's ``loss.num_bins``,
            the bins Eq. 6 assigned the units to (any other value is refused, see ``StudySteps``).
        batch_size: images per forward pass.
        max_batches: per split, stop after this many batches (``None``: all).
    """

    layers: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("train", "test")
    num_bins: int | None = None
    batch_size: int = 32
    max_batches: int | None = None

    def __post_init__(self) -> None:
        check_positive("dissect.num_bins", self.num_bins, allow_none=True)
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
        device: ``auto``, ``cpu``, ``cuda`` or ``mps`` for every step.
        train_config: a training YAML (relative to the study file) whose values ``train`` starts from.
        train: the :class:`imde.training.TrainConfig` mapping shared by every variant.
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
        smoke: overrides of this config applied by ``--smoke`` (toy sizes, same pipeline).
    """

    name: str = "study"
    run_dir: str = ""
    device: str = "auto"
    train_config: str = ""
    train: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, Any] = field(default_factory=dict)
    train_workers: int = 1
    render: RenderSection = RenderSection()
    dissect: DissectSection = DissectSection()
    stats: StatsSection = StatsSection()
    correction: CorrectionSection = CorrectionSection()
    ablation: AblationSection = AblationSection()
    explain: ExplainSection = ExplainSection()
    report: ReportSection = ReportSection()
    smoke: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_positive("train_workers", self.train_workers)
        missing = [name for name in REQUIRED_VARIANTS if name not in self.variants]
        if missing:
            raise ValueError(f"variants: missing {missing}; a study trains {', '.join(REQUIRED_VARIANTS)}")
        for name, overrides in self.variants.items():
            if not isinstance(overrides, Mapping):
                raise ValueError(f"variants.{name}: expected a mapping of train overrides, got {overrides!r}")
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

    def variant_train(self, variant: str) -> dict[str, Any]:
        """The training mapping of ``variant``: ``train`` with the variant's overrides merged in."""
        return deep_merge(self.train, self.variants[variant])


def load_study_config(
    path: str | os.PathLike[str], overrides: Iterable[str] = (), *, smoke: bool = False
) -> StudyConfig:
    """Load a study YAML (with ``base:`` inheritance), apply the smoke settings and ``key=value`` overrides.

    Overrides are applied last, so ``--smoke run_dir=runs/x`` puts the smoke run in ``runs/x``.

    Raises:
        FileNotFoundError: the file or a base is missing.
        ValueError: an unknown key (with the closest valid one), or a value rejected by a section.
    """
    data = load_yaml(path, path_keys=_PATH_KEYS)
    if smoke:
        data = deep_merge(data, data.get("smoke") or {})
    data = apply_overrides(data, overrides)
    if data.get("train_config"):
        data["train"] = deep_merge(load_yaml(data["train_config"]), data.get("train") or {})
    return resolve_bins(from_dict(StudyConfig, data))


def resolve_bins(config: StudyConfig) -> StudyConfig:
    """``config`` with an unset ``dissect.num_bins`` replaced by the assign variant's ``loss.num_bins``.

    The bins Eq. 6 assigned the units to are then the ones the run directory's ``config.yaml`` records.
    """
    if config.dissect.num_bins is not None:
        return config
    from imde.training import TrainConfig

    try:
        num_bins = TrainConfig.from_yaml_dict(config.variant_train("assign")).loss.num_bins
    except ValueError as err:
        raise ValueError(f"train config of variant 'assign': {err}") from None
    return replace(config, dissect=replace(config.dissect, num_bins=num_bins))
