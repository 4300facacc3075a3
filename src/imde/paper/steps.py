"""The steps of ``imde study``, each reading what earlier steps wrote and writing its own files atomically.

Steps talk to each other only through the run directory (see :mod:`imde.paper.pipeline` for the layout), so
any step can be resumed or forced on its own. Models are loaded once per process and cached.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

import torch

from imde.paper.claims import claims_to_json, measure_claims
from imde.paper.config import StudyConfig
from imde.paper.parallel import ParallelTrainings, train_variant
from imde.paper.runner import Step, StepRunner
from imde.tasks import (
    Session,
    ablate_run,
    build_loader,
    build_model,
    correct_run,
    dissect_run,
    evaluate_run,
    explain_run,
)
from imde.training.config import TrainConfig, default_layers
from imde.utils.io import atomic_write_json

log = logging.getLogger("imde.paper")

#: Test-set metrics copied into ``results.json`` (the public schema), in Table 1's order.
PUBLIC_METRICS = ("delta1", "delta2", "delta3", "rms", "rel", "log10")
TRAIN, TEST = "train", "test"
#: Name of the random-weight control (the baseline's architecture, untrained) in ``dissect/`` and ``results.json``.
CONTROL = "control"
CLAIMS_OFF = "claims: false in the study config (a smoke-size run: its numbers support no claim)"


def meta_model(config: TrainConfig) -> torch.nn.Module:
    """The config's model on the meta device: its layers and declarations, without weights or memory.

    Raises:
        ValueError: an unregistered ``model.name`` or bad ``model.kwargs``, naming the key.
    """
    from imde.models import create, list_models

    if config.model.name not in list_models():
        raise ValueError(f"model.name={config.model.name!r}: not a registered model ({', '.join(list_models())})")
    with torch.device("meta"):
        try:
            return create(config.model.name, **config.model.kwargs)
        except TypeError as err:
            raise ValueError(f"model.kwargs={config.model.kwargs!r}: {err}") from None


def check_variant(variant: str, config: TrainConfig, layers: Iterable[str]) -> torch.nn.Module:
    """Check, before any work, that ``variant``'s model, dataset and ``layers`` (with its loss layers) exist.

    Returns:
        The variant's model on the meta device.

    Raises:
        ValueError: naming the variant and the offending value.
    """
    from imde.data import list_datasets
    from imde.hooks import resolve_layer

    try:
        if config.data.name not in list_datasets():
            raise ValueError(f"data.name={config.data.name!r}: not a dataset ({', '.join(list_datasets())})")
        model = meta_model(config)
        for name in (*config.loss.layers, *layers):
            resolve_layer(model, name)
    except ValueError as err:
        raise ValueError(f"variant {variant!r}: {err}") from None
    return model


class StudySteps:
    """Builds the step list of a study and implements each step.

    Args:
        config: the study.
        device: where every step runs (``auto``, ``cpu``, ``cuda``).
    """

    def __init__(self, config: StudyConfig, device: str = "auto") -> None:
        self.config = config
        self.device = device
        self.out = config.out
        self._models: dict[str, torch.nn.Module] = {}
        self._loaders: dict[tuple[str, int | None], Any] = {}
        self._dissections: dict[str, Any] = {}  # loaded once per variant (loading recomputes the significance)
        self._trainings: ParallelTrainings | None = None
        self.train_configs = {variant: self.train_config(variant) for variant in config.variants}
        reference = self.train_configs["assign"]
        probed = [*config.dissect.layers, *([config.explain.layer] if config.explain.layer else [])]
        models = {variant: check_variant(variant, cfg, probed) for variant, cfg in self.train_configs.items()}
        self.layers = default_layers(reference, models["assign"], config.dissect.layers)
        self.bins = config.bins(str(models["assign"].depth_preset))
        self.correction_layers = list(config.correction.layers or self.layers)
        self.ablation_layers = list(config.ablation.layers or self.layers)
        for key, names in (("correction.layers", self.correction_layers), ("ablation.layers", self.ablation_layers)):
            undissected = [name for name in names if name not in self.layers]
            if undissected:
                raise ValueError(f"{key}: {undissected} are not dissected (dissect.layers: {self.layers}); both "
                                 "experiments use the training-set dissection of their layers")
        self.explain_layer = config.explain.layer or self.layers[0]

    # ------------------------------------------------------------------ configuration and shared objects

    def train_config(self, variant: str) -> TrainConfig:
        """The resolved training config of ``variant``, writing into ``models/<variant>``."""
        return self.config.variant_train(variant, run_dir=str(self.out / "models" / variant), device=self.device)

    def model(self, variant: str) -> torch.nn.Module:
        """The trained model of ``variant`` (``best.pt``, else ``last.pt``), loaded once."""
        if variant not in self._models:
            self._models[variant] = build_model(self.train_configs[variant], "best")
        return self._models[variant]

    def loader(self, split: str, batch_size: int | None = None) -> Any:
        """Ordered evaluation loader of ``split`` (every variant shares the data and the transform)."""
        key = (split, batch_size)
        if key not in self._loaders:
            self._loaders[key] = build_loader(self.train_configs["baseline"], split, batch_size)
        return self._loaders[key]

    def session(self, variant: str) -> Session:
        """The trained ``variant`` as a :class:`imde.tasks.Session` (the tasks decide every default from it),
        sharing this study's loaders."""
        return Session(self.train_configs[variant], self.model(variant), self.device, loaders=self._loaders)

    def dissection(self, variant: str) -> Any:
        """The ``DissectResult`` of ``variant``, rebuilt from the raw responses its dissect step saved."""
        from imde.experiments.dissect import DissectResult

        if variant not in self._dissections:
            self._dissections[variant] = DissectResult.load(self.out / "dissect" / variant)
        return self._dissections[variant]

    # ------------------------------------------------------------------ the plan

    def plan(self) -> list[Step]:
        """Every step in run order with its dependencies."""
        cfg = self.config
        variants = list(cfg.variants)
        steps: list[Step] = []
        first: tuple[str, ...] = ()
        if cfg.render.enabled and self.train_configs["baseline"].data.name == "rendered":
            steps.append(Step("render", self.render))
            first = ("render",)
        steps += [Step(f"train_{v}", partial(self.train, v), first) for v in variants]
        steps += [Step(f"dissect_{v}", partial(self.dissect, v), (f"train_{v}",)) for v in variants]
        if cfg.stats.control:
            steps.append(Step(f"dissect_{CONTROL}", self.dissect_control, first))
        steps += [Step(f"eval_{v}", partial(self.evaluate, v), (f"train_{v}",)) for v in variants]
        measured = tuple(f"{kind}_{v}" for kind in ("dissect", "eval") for v in variants)
        measured += (f"dissect_{CONTROL}",) if cfg.stats.control else ()
        steps.append(Step("compare", self.compare, measured))
        steps += [Step(f"correct_{v}", partial(self.correct, v), (f"dissect_{v}",)) for v in cfg.correction.variants]
        steps += [Step(f"ablate_{v}", partial(self.ablate, v), (f"dissect_{v}",)) for v in cfg.ablation.variants]
        steps += [Step(f"explain_{v}", partial(self.explain, v), (f"dissect_{v}",)) for v in cfg.explain.variants]
        experiments = tuple(step.name for step in steps if step.name.split("_")[0] in ("correct", "ablate", "explain"))
        steps.append(Step("figures", self.figures, ("compare", *experiments)))
        steps.append(Step("results", self.results_step, ("compare", *experiments)))
        if cfg.report.enabled:
            steps += [Step(f"atlas_{v}", partial(self.atlas, v), (f"dissect_{v}",)) for v in cfg.explain.variants]
            atlases = tuple(f"atlas_{v}" for v in cfg.explain.variants)
            steps.append(Step("report", self.report, ("figures", "results", *atlases)))
        return steps

    # ------------------------------------------------------------------ steps

    def render(self) -> Mapping[str, Any]:
        """Render (or reuse) the rendered dataset and save a contact sheet of test samples."""
        from imde.data import create
        from imde.data.rendered import save_contact_sheet

        data = self.train_configs["baseline"].data
        sizes = {}
        for split in (TRAIN, TEST):
            dataset = create(data.name, data.root, split, **{**data.options, "generate": True})
            sizes[split] = len(dataset)  # type: ignore[arg-type]
        if self.config.render.contact_sheet:
            save_contact_sheet(dataset, self.out / "figures" / "contact_sheet.png",
                               n=min(self.config.render.contact_sheet, sizes[TEST]))
        return {"images": sizes, "root": data.root}

    def train(self, variant: str) -> Mapping[str, Any]:
        """Train ``variant`` (resuming from ``last.pt`` when an earlier attempt was interrupted).

        With ``train_workers`` > 1 the first training step starts every unfinished variant at once
        (:mod:`imde.paper.parallel`) and each step collects its own.
        """
        self.check_explain_index()  # before hours of training, not after them
        if self.config.train_workers > 1:
            summary = self._parallel_trainings().result(variant)
        else:
            summary = train_variant(variant, self.train_configs[variant])
        self._models.pop(variant, None)
        return summary

    def check_explain_index(self) -> None:
        """Raise unless ``explain.index`` names a test image."""
        size = len(self.loader(TEST).dataset)
        if not 0 <= self.config.explain.index < size:
            raise ValueError(f"explain.index={self.config.explain.index}: the test split has {size} images")

    def _parallel_trainings(self) -> ParallelTrainings:
        """The trainings of every variant whose ``train_<variant>`` step has not finished (started once)."""
        if self._trainings is None:
            runner = StepRunner(self.out)
            todo = {v: c for v, c in self.train_configs.items() if runner.record(f"train_{v}") is None}
            workers = self.config.train_workers
            self._trainings = ParallelTrainings(todo, workers, threads=max(1, torch.get_num_threads() // workers))
        return self._trainings

    def dissect(self, variant: str) -> Mapping[str, Any]:
        """Dissect ``variant`` on every split (Eq. 1-2): ``dissect.json``, per-unit CSVs and raw responses."""

        cfg = self.config.dissect
        folder = self.out / "dissect" / variant
        self._dissections.pop(variant, None)  # redone: the next reader loads the new files
        stats = self.config.stats
        result = dissect_run(self.session(variant), cfg.splits, self.layers, batch_size=cfg.batch_size,
                             max_batches=cfg.max_batches, out_dir=folder, bootstrap=stats.bootstrap,
                             permutations=stats.permutations, seed=stats.seed)
        return {"selectivity": {split: result.selectivity(split) for split in result.layers}}

    def dissect_control(self) -> Mapping[str, Any]:
        """The baseline's architecture with random weights (seeded by ``train.seed``), dissected like the variants."""
        from imde.experiments.dissect import run_random_control

        cfg, stats = self.config.dissect, self.config.stats
        baseline = self.train_configs["baseline"]
        result = run_random_control(
            partial(build_model, baseline, None), {s: self.loader(s, cfg.batch_size) for s in cfg.splits},
            self.layers, weight_seed=baseline.seed, bins=self.bins, device=self.device, max_batches=cfg.max_batches,
            out_dir=self.out / "dissect" / CONTROL, bootstrap=stats.bootstrap, permutations=stats.permutations,
            seed=stats.seed)
        return {"selectivity": {split: result.selectivity(split) for split in result.layers}}

    def evaluate(self, variant: str) -> Mapping[str, Any]:
        """Depth metrics of ``variant`` on the test split (Table 1)."""
        stats = self.config.stats
        result = evaluate_run(self.session(variant), TEST, bootstrap=stats.bootstrap, seed=stats.seed)
        result.save(self.out / "eval", variant)
        return {"delta1": result.metrics["delta1"], "rms": result.metrics["rms"]}

    def _metrics(self, variant: str) -> dict[str, float]:
        from imde.experiments.evaluate import EvalResult

        return {name: float(value) for name, value in EvalResult.load(self.out / "eval", variant).metrics.items()}

    def compare(self) -> Mapping[str, Any]:
        """Table 2: selectivity (train/test) and metrics of every variant."""
        from imde.experiments.compare import compare_reg_assign

        table = compare_reg_assign({v: (self.dissection(v), self._metrics(v)) for v in self.config.variants},
                                   splits=self.config.dissect.splits)
        table.save(self.out, "compare")
        return {"rows": len(table.rows)}

    def correct(self, variant: str) -> Mapping[str, Any]:
        """Table 3: test metrics before and after replacing responses by their training means (Sec. 5.2)."""
        stats = self.config.stats
        result = correct_run(self.session(variant), self.correction_layers, dissection=self.dissection(variant),
                             bootstrap=stats.bootstrap, seed=stats.seed)
        result.save(self.out / "correction", variant)
        return {"delta1": [result.before["delta1"], result.after["delta1"]]}

    def ablate(self, variant: str) -> Mapping[str, Any]:
        """Fig. 2: delta1 while ablating units most- and least-selective first (training-set DS order)."""
        cfg = self.config.ablation
        stats = self.config.stats
        result = ablate_run(self.session(variant), self.ablation_layers, step=cfg.step,
                            dissection=self.dissection(variant), eval_batches=cfg.max_batches,
                            bootstrap=stats.bootstrap, seed=stats.seed)
        result.save(self.out / "ablation", variant)
        return {"steps": len(result.units)}

    def explain(self, variant: str) -> Mapping[str, Any]:
        """Fig. 8: FGSM error analysis of one test image through the units of the top error bin."""
        from imde.viz.plots import plot_explain, save_figure

        cfg = self.config.explain
        self.check_explain_index()
        responses = None
        if self.train_configs[variant].loss.interp != "assign":  # no assignment: units go to their preferred bin
            responses = self.dissection(variant).layers[TRAIN][self.explain_layer]
        result = explain_run(self.session(variant), self.explain_layer, index=cfg.index, epsilon=cfg.epsilon,
                             responses=responses)
        result.save(self.out / "explain", variant)
        save_figure(plot_explain(result), self.out / "figures" / f"explain_{variant}.png")
        return {"layer": self.explain_layer}

    def figures(self) -> Mapping[str, Any]:
        """The paper's figures from the saved results (Fig. 2, 3/4 histogram, 5, 6)."""
        from imde.experiments.ablate import AblationResult
        from imde.paper.figures import FIGURE_IMAGE, make_figures

        variants = self.config.variants
        ablations = {v: AblationResult.load(self.out / "ablation", v) for v in self.config.ablation.variants}
        dissections = {v: self.dissection(v).layers[TEST] for v in variants}
        batch = torch.utils.data.default_collate([self.loader(TEST).dataset[FIGURE_IMAGE]])
        files = make_figures(self.out / "figures", self.layers, dissections, ablations,
                             {v: self.model(v) for v in variants}, batch, self.device)
        return {"files": [str(p.relative_to(self.out)) for p in files]}

    def atlas(self, variant: str) -> Mapping[str, Any]:
        """Unit-browser sprites of ``variant``'s dissected layers."""
        from imde.viz.atlas import export_unit_atlas

        dataset = self.loader(TEST).dataset
        count = min(self.config.report.atlas_images, len(dataset))
        samples = torch.utils.data.default_collate([dataset[i] for i in range(count)])
        folder = self.out / "atlas" / variant
        export_unit_atlas(self.model(variant), self.layers, samples, folder, device=self.device,
                          bins=self.bins)
        return {"folder": str(folder.relative_to(self.out))}

    def report(self) -> Mapping[str, Any]:
        """``report.html`` and ``results.md``."""
        from imde.paper.report import build_report

        return {"report": str(build_report(self.out))}

    def results_step(self) -> Mapping[str, Any]:
        """Write ``results.json`` with the measured claims."""
        results = self.results()
        atomic_write_json(self.out / "results.json", results)
        if not results["claims_evaluated"]:
            log.info("claims not evaluated: %s", CLAIMS_OFF)
            return {"claims_holding": "not evaluated"}
        held = sum(claim["holds"] for claim in results["claims"])
        for claim in results["claims"]:
            interval = "" if claim["verdict"] is None else (
                f", 95 % interval [{claim['ci_low']:.4f}, {claim['ci_high']:.4f}]: {claim['verdict']}")
            log.info("claim %s: %s (value %.4f%s)", "holds" if claim["holds"] else "FAILS", claim["claim"],
                     claim["value"], interval)
        return {"claims_holding": f"{held}/{len(results['claims'])}"}

    # ------------------------------------------------------------------ results.json

    def _control(self) -> dict[str, Any]:
        """The random-weight control's selectivity (and its interval) per split, for Table 1."""
        from imde.experiments.dissect import DissectResult

        dissect = DissectResult.load(self.out / "dissect" / CONTROL).to_dict()["splits"]
        out: dict[str, Any] = {"selectivity": {split: entry["selectivity"] for split, entry in dissect.items()}}
        if all("selectivity_ci" in entry for entry in dissect.values()):
            out["selectivity_ci"] = {split: entry["selectivity_ci"] for split, entry in dissect.items()}
        return out

    def _uncertainty(self, variant: str, dissect: Mapping[str, Any]) -> dict[str, Any]:
        """Intervals, significant units and replicates of ``variant`` (empty when the study kept no replicates)."""
        out: dict[str, Any] = {}
        if any("significance" in layer for split in dissect.values() for layer in split["layers"].values()):
            out["significance"] = {split: {name: layer["significance"] for name, layer in entry["layers"].items()}
                                   for split, entry in dissect.items()}
            for per_layer in out["significance"].values():
                for summary in per_layer.values():
                    summary.pop("units", None)  # per-unit values stay in dissect/<variant>/dissect.json
        if all("selectivity_ci" in entry for entry in dissect.values()):
            out["selectivity_ci"] = {split: entry["selectivity_ci"] for split, entry in dissect.items()}
        from imde.experiments.evaluate import EvalResult

        evaluation = EvalResult.load(self.out / "eval", variant).to_dict()
        if evaluation.get("intervals"):
            out["metrics_ci"] = {name: evaluation["intervals"][name] for name in PUBLIC_METRICS}
        replicates = {}
        if TEST in dissect and "selectivity_replicates" in dissect[TEST]:
            replicates["selectivity_test"] = dissect[TEST]["selectivity_replicates"]
        if evaluation.get("replicates"):
            replicates["delta1"] = evaluation["replicates"]["delta1"]
        if replicates:
            out["replicates"] = replicates
        return out

    def results(self) -> dict[str, Any]:
        """``results.json``: the public summary (its public schema plus details) assembled from the step files."""
        from imde.experiments.ablate import AblationResult
        from imde.experiments.correct import CorrectionResult

        cfg = self.config
        runner = StepRunner(self.out)
        models: dict[str, Any] = {}
        random_baselines = []
        for variant in cfg.variants:
            dissect = self.dissection(variant).to_dict()["splits"]
            metrics = self._metrics(variant)
            models[variant] = {
                "selectivity": {split: dissect[split]["selectivity"] for split in dissect},
                "layers": {split: {name: layer["selectivity"] for name, layer in dissect[split]["layers"].items()}
                           for split in dissect},
                "metrics": {name: metrics[name] for name in PUBLIC_METRICS},
                "all_metrics": metrics,
                **self._uncertainty(variant, dissect),
            }
            layers = dissect[TEST]["layers"].values()
            random_baselines.append(sum(lay["random_baseline"] * lay["num_units"] for lay in layers)
                                    / sum(lay["num_units"] for lay in layers))
        correction = {}
        for variant in cfg.correction.variants:
            fixed = CorrectionResult.load(self.out / "correction", variant)
            correction[variant] = {when: {"delta1": metrics["delta1"], "rms": metrics["rms"]}
                                   for when, metrics in (("before", fixed.before), ("after", fixed.after))}
            correction[variant]["layers"] = fixed.layers
            if fixed.replicates:  # delta1 before / after, paired bootstrap replicates
                correction[variant]["replicates"] = fixed.replicates
        ablation = {}
        for variant in cfg.ablation.variants:
            curve = AblationResult.load(self.out / "ablation", variant).to_dict()
            ablation[variant] = {key: curve[key] for key in
                                 ("layers", "units", "most_selective_first", "least_selective_first",
                                  "replicates_most", "replicates_least") if key in curve}
        results: dict[str, Any] = {
            "name": cfg.name,
            "random_baseline": random_baselines[0],
            **({CONTROL: self._control()} if cfg.stats.control else {}),
            "layers": self.layers,
            "models": models,
            "correction": correction,
            "ablation": ablation,
        }
        results["claims_evaluated"] = cfg.claims
        results["claims"] = claims_to_json(measure_claims(results)) if cfg.claims else []
        steps = {step.name: record.seconds for step in self.plan()
                 if (record := runner.record(step.name)) is not None}
        results["seconds"] = float(sum(steps.values()))
        results["step_seconds"] = steps
        results["device"] = self.device
        return results

