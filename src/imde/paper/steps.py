"""The steps of ``imde study``, each reading what earlier steps wrote and writing its own files atomically.

Steps talk to each other only through the run directory (see :mod:`imde.paper.pipeline` for the layout), so
any step can be resumed or forced on its own. Models are loaded once per process and cached.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch

from imde.experiments.evaluate import EvalSettings
from imde.experiments.results import safe_name, to_jsonable, write_json
from imde.paper.claims import claims_to_json, measure_claims
from imde.paper.config import StudyConfig
from imde.paper.parallel import ParallelTrainings, train_variant
from imde.paper.runner import Step, StepRunner
from imde.paper.session import build_loader, build_model
from imde.training.config import TrainConfig
from imde.utils.config import deep_merge
from imde.utils.io import atomic_write_json

log = logging.getLogger("imde.paper")

#: Test-set metrics copied into ``results.json`` (the public schema), in Table 1's order.
PUBLIC_METRICS = ("delta1", "delta2", "delta3", "rms", "rel", "log10")
TRAIN, TEST = "train", "test"
#: Name of the random-weight control (the baseline's architecture, untrained) in ``dissect/`` and ``results.json``.
CONTROL = "control"


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the step that writes it has not run (try --force on it)")
    return json.loads(path.read_text(encoding="utf-8"))


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


def report_layer_json(layer: Any, split: str) -> dict[str, Any]:
    """One layer's dissection in the per-layer form the report reads (``dissect/<variant>/<split>/<layer>.json``).

    Args:
        layer: an :class:`imde.experiments.dissect.LayerDissection`.
        split: the split it was computed on.
    """
    return to_jsonable({
        "layer": layer.layer,
        "split": split,
        "response": layer.mean_response,
        "ds": layer.selectivity,
        "ds_assigned": layer.selectivity_assigned,
        "edges": layer.edges,
        "count": layer.counts,
        "preferred_bin": layer.preferred_bin,
        "assigned_bin": layer.assigned_bin,
        "dead": layer.dead,
        "selectivity": layer.mean_selectivity,
        "random_baseline": layer.random_baseline,
        **({} if layer.significance is None else {"significance": layer.significance.to_dict()}),
    })


class StudySteps:
    """Builds the step list of a study and implements each step.

    Args:
        config: the study.
        device: where every step runs (``auto``, ``cpu``, ``cuda``, ``mps``).
    """

    def __init__(self, config: StudyConfig, device: str = "auto") -> None:
        self.config = config
        self.device = device
        self.out = config.out
        self._models: dict[str, torch.nn.Module] = {}
        self._loaders: dict[str, Any] = {}
        self._trainings: ParallelTrainings | None = None
        self.train_configs = {variant: self.train_config(variant) for variant in config.variants}
        reference = self.train_configs["assign"]
        self.layers = list(config.dissect.layers or reference.loss.layers)
        if not self.layers:
            raise ValueError("dissect.layers: empty, and the assign variant names no loss.layers to fall back on")
        probed = [*self.layers, *([config.explain.layer] if config.explain.layer else [])]
        models = {variant: check_variant(variant, cfg, probed) for variant, cfg in self.train_configs.items()}
        self.preset = reference.loss.preset or str(models["assign"].depth_preset)
        self.num_bins = config.dissect.num_bins or reference.loss.num_bins
        if self.num_bins != reference.loss.num_bins:
            raise ValueError(f"dissect.num_bins={self.num_bins}: the assign variant was trained with loss.num_bins="
                             f"{reference.loss.num_bins}, the bins Eq. 6 assigns its units to; leave dissect.num_bins "
                             "unset (or set train.loss.num_bins) so that both use the same bins")
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
        data = deep_merge(self.config.variant_train(variant),
                          {"run_dir": str(self.out / "models" / variant), "device": self.device})
        try:
            return TrainConfig.from_yaml_dict(data)
        except ValueError as err:
            raise ValueError(f"train config of variant {variant!r}: {err}") from None

    def model(self, variant: str) -> torch.nn.Module:
        """The trained model of ``variant`` (``best.pt``, else ``last.pt``), loaded once."""
        if variant not in self._models:
            self._models[variant] = build_model(self.train_configs[variant], "best")
        return self._models[variant]

    def loader(self, split: str, batch_size: int | None = None) -> Any:
        """Ordered evaluation loader of ``split`` (every variant shares the data and the transform)."""
        key = f"{split}:{batch_size}"
        if key not in self._loaders:
            self._loaders[key] = build_loader(self.train_configs["baseline"], split, batch_size)
        return self._loaders[key]

    def settings(self, max_batches: int | None = None) -> EvalSettings:
        """The evaluation protocol of the study (the training config's crop and caps)."""
        ev, stats = self.train_configs["baseline"].eval, self.config.stats
        return EvalSettings(device=self.device, crop=ev.crop, min_depth=ev.min_depth, max_depth=ev.max_depth,
                            max_batches=max_batches, bootstrap=stats.bootstrap, seed=stats.seed)

    def read_json(self, *parts: str) -> Any:
        """A JSON file an earlier step wrote inside the run directory."""
        return _read_json(self.out.joinpath(*parts))

    def dissection(self, variant: str) -> Any:
        """The ``DissectResult`` of ``variant`` rebuilt from the raw responses its dissect step saved."""
        from imde.accumulators import DepthResponse
        from imde.experiments.dissect import DissectResult

        folder = self.out / "dissect" / variant
        responses = {}
        for split in self.config.dissect.splits:
            responses[split] = {}
            for layer in self.layers:
                path = folder / f"dissect_{safe_name(split)}_{safe_name(layer)}.pt"
                if not path.is_file():
                    raise FileNotFoundError(f"{path} not found: run (or --force) step dissect_{variant}")
                responses[split][layer] = DepthResponse.load(path)
        return DissectResult.from_responses(responses)

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
            dataset = create(data.name, data.root, split, **data.options)
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
        """Dissect ``variant`` on every split (Eq. 1-2) and write the per-layer files the report reads."""
        from imde.experiments.dissect import run_dissect

        cfg = self.config.dissect
        folder = self.out / "dissect" / variant
        stats = self.config.stats
        result = run_dissect(self.model(variant), {s: self.loader(s, cfg.batch_size) for s in cfg.splits},
                             self.layers, edges_preset=self.preset, num_bins=self.num_bins, device=self.device,
                             max_batches=cfg.max_batches, out_dir=folder, bootstrap=stats.bootstrap,
                             permutations=stats.permutations, seed=stats.seed)
        for split, layers in result.layers.items():
            for name, layer in layers.items():
                atomic_write_json(folder / split / f"{safe_name(name)}.json", report_layer_json(layer, split))
        return {"selectivity": {split: result.selectivity(split) for split in result.layers}}

    def dissect_control(self) -> Mapping[str, Any]:
        """The baseline's architecture with random weights (seeded by ``train.seed``), dissected like the variants."""
        from imde.experiments.dissect import run_random_control
        from imde.paper.session import build_model

        cfg, stats = self.config.dissect, self.config.stats
        folder = self.out / "dissect" / CONTROL
        result = run_random_control(
            partial(build_model, self.train_configs["baseline"], None), {s: self.loader(s, cfg.batch_size)
                                                                         for s in cfg.splits},
            self.layers, weight_seed=self.train_configs["baseline"].seed, edges_preset=self.preset,
            num_bins=self.num_bins, device=self.device, max_batches=cfg.max_batches, out_dir=folder,
            bootstrap=stats.bootstrap, permutations=stats.permutations, seed=stats.seed)
        for split, layers in result.layers.items():
            for name, layer in layers.items():
                atomic_write_json(folder / split / f"{safe_name(name)}.json", report_layer_json(layer, split))
        return {"selectivity": {split: result.selectivity(split) for split in result.layers}}

    def evaluate(self, variant: str) -> Mapping[str, Any]:
        """Depth metrics of ``variant`` on the test split (Table 1)."""
        from imde.experiments.evaluate import evaluate_with

        result = evaluate_with(self.model(variant), self.loader(TEST), self.settings())
        metrics = dict(result.metrics)
        entry: dict[str, Any] = {"variant": variant, "split": TEST, "metrics": metrics}
        if result.replicates:
            entry.update(intervals=result.intervals, replicates=result.replicates)
        write_json(self.out / "eval", f"{variant}.json", entry)
        return {"delta1": metrics["delta1"], "rms": metrics["rms"]}

    def _metrics(self, variant: str) -> dict[str, float]:
        return self.read_json("eval", f"{variant}.json")["metrics"]

    def compare(self) -> Mapping[str, Any]:
        """Table 2: selectivity (train/test) and metrics of every variant."""
        from imde.experiments.compare import compare_reg_assign

        table = compare_reg_assign({v: (self.dissection(v), self._metrics(v)) for v in self.config.variants},
                                   splits=self.config.dissect.splits)
        write_json(self.out, "compare.json", table)
        return {"rows": len(table.rows)}

    def correct(self, variant: str) -> Mapping[str, Any]:
        """Table 3: test metrics before and after replacing responses by their training means (Sec. 5.2)."""
        from imde.experiments.correct import run_correction

        result = run_correction(self.model(variant), self.dissection(variant), self.loader(TEST),
                                self.correction_layers, split=TRAIN, settings=self.settings())
        write_json(self.out / "correction", f"{variant}.json", result)
        return {"delta1": [result.before["delta1"], result.after["delta1"]]}

    def ablate(self, variant: str) -> Mapping[str, Any]:
        """Fig. 2: delta1 while ablating units most- and least-selective first (training-set DS order)."""
        from imde.experiments.ablate import run_ablation

        cfg = self.config.ablation
        dissected = self.dissection(variant).layers[TRAIN]
        order_by = {layer: dissected[layer].selectivity for layer in self.ablation_layers}
        num_units = sum(values.numel() for values in order_by.values())
        if cfg.step >= num_units:
            raise ValueError(f"ablation.step={cfg.step}: layers {self.ablation_layers} have {num_units} units; "
                             "a step below that is needed for a curve with intermediate points")
        result = run_ablation(self.model(variant), self.loader(TEST), order_by,
                              step=cfg.step, settings=self.settings(cfg.max_batches))
        write_json(self.out / "ablation", f"{variant}.json", result)
        return {"steps": len(result.units)}

    def explain(self, variant: str) -> Mapping[str, Any]:
        """Fig. 8: FGSM error analysis of one test image through the units of the top error bin."""
        from imde.experiments.explain import run_explain
        from imde.viz.plots import plot_explain, save_figure

        cfg = self.config.explain
        self.check_explain_index()
        batch = torch.utils.data.default_collate([self.loader(TEST).dataset[cfg.index]])
        responses = None
        if self.train_configs[variant].loss.interp != "assign":  # no assignment: units go to their preferred bin
            responses = self.dissection(variant).layers[TRAIN][self.explain_layer]
        result = run_explain(self.model(variant), batch, layer=self.explain_layer, epsilon=cfg.epsilon,
                             responses=responses, edges_preset=self.preset, num_bins=self.num_bins,
                             device=self.device, out_dir=self.out / "explain" / variant)
        write_json(self.out / "explain", f"{variant}.json", result)
        save_figure(plot_explain(result), self.out / "figures" / f"explain_{variant}.png")
        return {"layer": self.explain_layer}

    def figures(self) -> Mapping[str, Any]:
        """The paper's figures from the saved results (Fig. 2, 3/4 histogram, 5, 6)."""
        from imde.paper.figures import make_figures

        return {"files": [str(p.relative_to(self.out)) for p in make_figures(self)]}

    def atlas(self, variant: str) -> Mapping[str, Any]:
        """Unit-browser sprites of ``variant``'s dissected layers."""
        from imde.viz.atlas import export_unit_atlas

        dataset = self.loader(TEST).dataset
        count = min(self.config.report.atlas_images, len(dataset))
        samples = torch.utils.data.default_collate([dataset[i] for i in range(count)])
        folder = self.out / "atlas" / variant
        export_unit_atlas(self.model(variant), self.layers, samples, folder, device=self.device,
                          edges_preset=self.preset, num_bins=self.num_bins)
        return {"folder": str(folder.relative_to(self.out))}

    def report(self) -> Mapping[str, Any]:
        """``report.html`` and ``results.md``."""
        from imde.paper.report import build_report

        return {"report": str(build_report(self.out))}

    def results_step(self) -> Mapping[str, Any]:
        """Write ``results.json`` with the measured claims."""
        results = self.results()
        atomic_write_json(self.out / "results.json", results)
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
        dissect = _read_json(self.out / "dissect" / CONTROL / "dissect.json")["splits"]
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
                    summary.pop("units", None)  # per-unit values stay in dissect/<variant>/<split>/<layer>.json
        if all("selectivity_ci" in entry for entry in dissect.values()):
            out["selectivity_ci"] = {split: entry["selectivity_ci"] for split, entry in dissect.items()}
        evaluation = self.read_json("eval", f"{variant}.json")
        if "intervals" in evaluation:
            out["metrics_ci"] = {name: evaluation["intervals"][name] for name in PUBLIC_METRICS}
        replicates = {}
        if TEST in dissect and "selectivity_replicates" in dissect[TEST]:
            replicates["selectivity_test"] = dissect[TEST]["selectivity_replicates"]
        if "replicates" in evaluation:
            replicates["delta1"] = evaluation["replicates"]["delta1"]
        if replicates:
            out["replicates"] = replicates
        return out

    def results(self) -> dict[str, Any]:
        """``results.json``: the public summary (issue 6's schema plus details) assembled from the step files."""
        cfg = self.config
        runner = StepRunner(self.out)
        models: dict[str, Any] = {}
        random_baselines = []
        for variant in cfg.variants:
            dissect = _read_json(self.out / "dissect" / variant / "dissect.json")["splits"]
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
            entry = _read_json(self.out / "correction" / f"{variant}.json")
            correction[variant] = {when: {"delta1": entry[when]["delta1"], "rms": entry[when]["rms"]}
                                   for when in ("before", "after")}
            correction[variant]["layers"] = entry["layers"]
            if "replicates" in entry:  # delta1 before / after, paired bootstrap replicates
                correction[variant]["replicates"] = entry["replicates"]
        ablation = {}
        for variant in cfg.ablation.variants:
            entry = _read_json(self.out / "ablation" / f"{variant}.json")
            ablation[variant] = {key: entry[key] for key in
                                 ("layers", "units", "most_selective_first", "least_selective_first",
                                  "replicates_most", "replicates_least") if key in entry}
        results: dict[str, Any] = {
            "name": cfg.name,
            "random_baseline": random_baselines[0],
            **({CONTROL: self._control()} if cfg.stats.control else {}),
            "layers": self.layers,
            "models": models,
            "correction": correction,
            "ablation": ablation,
        }
        results["claims"] = claims_to_json(measure_claims(results))
        steps = {step.name: record.seconds for step in self.plan()
                 if (record := runner.record(step.name)) is not None}
        results["seconds"] = float(sum(steps.values()))
        results["step_seconds"] = steps
        results["device"] = self.device
        return results

