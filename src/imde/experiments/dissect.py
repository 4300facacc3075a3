"""Network dissection by depth (Sec. 3, Eq. 1-2): per-unit mean responses over depth bins and their selectivity.

``compute_responses`` streams a loader through a model once and accumulates Eq. 1 for several layers;
``run_dissect`` turns the accumulated responses of one or more splits into per-unit tables (Tables 1, 4, 7).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from imde.accumulators import DepthResponse, update_responses
from imde.core.bins import DEFAULT_BINS, DepthBins, assign_bins
from imde.core.inference import bias_corrected_interval
from imde.core.selectivity import dead_units, depth_selectivity, preferred_bins, random_baseline
from imde.experiments._depth_check import DepthRangeCheck
from imde.experiments.results import (
    SavedResult,
    batch_keys,
    check_batch,
    count_batches,
    limit_batches,
    safe_name,
    write_csv,
    write_json,
)
from imde.models import run_with_features
from imde.significance import Significance, selectivity_significance
from imde.utils.device import resolve_device


def compute_responses(
    model: torch.nn.Module,
    loader: Iterable[Mapping[str, Any]],
    layers: Sequence[str],
    *,
    bins: DepthBins = DEFAULT_BINS,
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
    progress: bool = False,
    bootstrap: int = 0,
    permutations: int = 0,
    seed: int = 0,
    transforms: Mapping[str, Any] | None = None,
) -> dict[str, DepthResponse]:
    """Accumulate the mean response of every unit of ``layers`` over depth bins (Eq. 1).

    The model runs in eval mode without gradients (its training mode is restored afterwards); each layer gets
    ``bins.for_units(K)``: ``N_b = min(N_b, K)`` bins over the same range (Sec. 4.2). Work is per batch, on
    ``device``. When
    ``torch.distributed`` is initialised the sums are all-reduced, so every rank returns the whole dataset's
    responses (each rank must then see at least one batch).

    Args:
        model: any depth network; batches are turned into its input by ``imde.models.run_model``.
        loader: iterable of batch dicts with ``image`` and ``depth`` ``[B, 1, H, W]`` metres (0 = invalid).
        layers: declared layer names (``"D"``, ``"MFF"``) or dotted module names.
        bins: the depth bins (preset, spacing and requested ``N_b``).
        device: where the forward passes and the accumulation run.
        max_batches: stop after this many batches (``None``: the whole loader).
        progress: show a progress bar.
        bootstrap: Poisson-bootstrap replicates per layer (:class:`imde.DepthResponse`; 0: none).
        permutations: permutation-null replicates per layer (0: none; every batch needs 2 or more images).
        seed: seed of the replicates; the images' keys are their ``name`` (running indices without one).
        transforms: ``LayerTap`` transforms for layers that are not maps (``imde.tokens_to_map`` for ViT tokens);
            default: those of a Hugging Face ViT depth model's token layers (``imde.models.token_transforms``).

    Returns:
        ``{layer: DepthResponse}`` in the order of ``layers``.

    Raises:
        ValueError: no layers, a layer of fewer than 2 units, a batch without ``depth``, or a loader that yields
            nothing.
    """
    layers = list(layers)
    if not layers or len(set(layers)) != len(layers):
        raise ValueError(f"layers={layers!r}: expected a non-empty list of distinct layer names")
    if not isinstance(bins, DepthBins):
        raise ValueError(f"bins={bins!r}: expected an imde.core.bins.DepthBins")
    check_permutable(loader, permutations)
    depth_check = DepthRangeCheck(bins.beta, f"dissect (edges preset {bins.preset!r})")
    dev = resolve_device(device)
    model.to(dev)
    sink = _ResponseSink(bins, dev, bootstrap, permutations, seed)
    batches = limit_batches(loader, max_batches)
    for batch in tqdm(batches, desc="dissect", total=count_batches(loader, max_batches), disable=not progress):
        check_batch(batch)
        depth = batch["depth"].to(dev)
        depth_check.update(depth)
        _, features = run_with_features(model, batch, layers, device=dev, transforms=transforms)
        sink.push(features, depth, batch_keys(batch))
    sink.flush()
    responses = sink.responses
    if not responses:
        raise ValueError("loader: yielded no batch; nothing to dissect")
    depth_check.finish()
    if dist.is_available() and dist.is_initialized():
        for response in responses.values():
            response.all_reduce()
    return responses


Held = tuple[dict[str, torch.Tensor], torch.Tensor, list[str] | None]  # features per layer, depth, keys


class _ResponseSink:
    """Feeds batches to one :class:`DepthResponse` per layer (created at the first batch, N_b = min(N_b, K)).

    With the permutation null it holds one batch back, so that a lone last image joins the batch before it.
    """

    def __init__(self, bins: DepthBins, device: torch.device, bootstrap: int, permutations: int, seed: int) -> None:
        self.bins, self.device = bins, device
        self.resampling = {"bootstrap": bootstrap, "permutations": permutations, "seed": seed}
        self.responses: dict[str, DepthResponse] = {}
        self.held: Held | None = None

    def push(self, features: dict[str, torch.Tensor], depth: torch.Tensor, keys: list[str] | None) -> None:
        """Accumulate one batch (or hold it back for the permutation null)."""
        current = (features, depth, keys)
        if not self.resampling["permutations"]:
            self._add(current)
        elif self.held is not None and depth.shape[0] == 1:
            self.held = join_batches(self.held, current)
        else:
            self.flush()
            self.held = current

    def flush(self) -> None:
        """Accumulate the batch held back, if any."""
        if self.held is not None:
            self._add(self.held)
            self.held = None

    def _add(self, batch: Held) -> None:
        features, depth, keys = batch
        for name, maps in features.items():
            if name not in self.responses:
                edges = self.bins.for_units(maps.shape[1]).edges
                self.responses[name] = DepthResponse(maps.shape[1], edges, device=self.device, **self.resampling)
        # layers of one map size share one pass of Eq. 1 (a ViT's blocks: one splat for all of them)
        update_responses([self.responses[name] for name in features], list(features.values()), depth, keys=keys)


def check_permutable(loader: Iterable[Any], permutations: int) -> None:
    """Refuse, before any forward pass, a loader of batches of one image when the permutation null is asked for.

    (A single last batch of one is fine: :func:`compute_responses` permutes it together with the batch before.)
    """
    batch_size = getattr(loader, "batch_size", None)
    if permutations and batch_size is not None and batch_size < 2:
        raise ValueError(f"permutations={permutations}: the loader's batch_size={batch_size}; the permutation null "
                         "pairs images within a batch and needs batches of at least 2 images")


def join_batches(first: Held, second: Held) -> Held:
    """Two batches' ``(features per layer, depth, keys)`` as one batch (keys ``None`` unless both have them)."""
    features_a, depth_a, keys_a = first
    features_b, depth_b, keys_b = second
    if depth_a.shape[1:] != depth_b.shape[1:]:
        raise ValueError(f"a batch of one image ({tuple(depth_b.shape)}) cannot join the batch before it "
                         f"({tuple(depth_a.shape)}) for the permutation null: their depth maps differ in size")
    features = {name: torch.cat([maps, features_b[name]]) for name, maps in features_a.items()}
    keys = keys_a + keys_b if keys_a is not None and keys_b is not None else None
    return features, torch.cat([depth_a, depth_b]), keys


@dataclass
class LayerDissection:
    """Per-unit dissection of one layer on one split.

    Attributes:
        layer: layer name.
        edges: bin edges ``[N_b + 1]`` (metres).
        counts: valid pixels per bin ``[N_b]``.
        mean_response: signed mean response ``R[K, N_b]`` (Eq. 1); NaN for bins never observed.
        selectivity: DS with the free maximum over observed bins (Eq. 2), as in the paper's tables.
        selectivity_assigned: DS at each unit's assigned bin (Eq. 5 form); NaN when that bin was never observed.
        preferred_bin: bin of the largest ``|R|`` per unit (-1 for dead units).
        assigned_bin: the unit's assigned bin ``floor(k N_b / K)`` (Eq. 6).
        dead: units whose ``|R|`` is 0 in every observed bin.
        random_baseline: the expected DS of random responses over ``N_b`` bins (Eq. 3, finite ``N_b``).
        num_images: images accumulated.
        num_empty_images: images without any valid depth pixel (they contributed nothing).
        significance: intervals, p- and q-values of the Eq. 2 DS when the response kept replicates, else None.
    """

    layer: str
    edges: torch.Tensor
    counts: torch.Tensor
    mean_response: torch.Tensor
    selectivity: torch.Tensor
    selectivity_assigned: torch.Tensor
    preferred_bin: torch.Tensor
    assigned_bin: torch.Tensor
    dead: torch.Tensor
    random_baseline: float
    num_images: int = 0
    num_empty_images: int = 0
    significance: Significance | None = field(default=None, repr=False)

    @property
    def num_units(self) -> int:
        """Number of units ``K``."""
        return int(self.mean_response.shape[0])

    @property
    def num_bins(self) -> int:
        """Number of depth bins ``N_b``."""
        return int(self.mean_response.shape[1])

    @property
    def mean_selectivity(self) -> float:
        """Layer selectivity: mean Eq. 2 DS over the layer's units (Tables 1, 4, 7)."""
        return float(self.selectivity.mean())

    @property
    def mean_selectivity_assigned(self) -> float:
        """Mean DS at the assigned bins (Eq. 5 form), over units whose assigned bin was observed."""
        return float(self.selectivity_assigned.nanmean())

    @classmethod
    def from_response(cls, layer: str, response: DepthResponse) -> LayerDissection:
        """Score an accumulated ``DepthResponse`` (Eq. 2, Eq. 5 form, Eq. 3 baseline)."""
        mean = response.mean_response().detach().cpu().to(torch.float64)
        num_units, num_bins = mean.shape
        assigned = assign_bins(num_units, num_bins)
        try:
            selectivity = depth_selectivity(mean)
        except ValueError as err:  # fewer than 2 observed bins: say which layer and how many images
            raise ValueError(f"layer {layer!r} ({response.num_images} images, {response.num_empty_images} without "
                             f"valid depth): {err}") from err
        return cls(
            layer=layer,
            edges=response.edges.detach().cpu().to(torch.float64),
            counts=response.counts.detach().cpu().to(torch.int64),
            mean_response=mean,
            selectivity=selectivity,
            selectivity_assigned=depth_selectivity(mean, assigned=assigned),
            preferred_bin=preferred_bins(mean),
            assigned_bin=assigned,
            dead=dead_units(mean),
            random_baseline=float(random_baseline(num_bins)),
            num_images=int(response.num_images),
            num_empty_images=int(response.num_empty_images),
            significance=selectivity_significance(response) if response.bootstrap or response.permutations else None,
        )

    def summary(self) -> dict[str, Any]:
        """Layer-level numbers (one row of Table 1); with replicates also its interval and significant units."""
        extra = {} if self.significance is None else {"significance": self.significance.summary()}
        return {
            "num_units": self.num_units,
            "num_bins": self.num_bins,
            "selectivity": self.mean_selectivity,
            "selectivity_assigned": self.mean_selectivity_assigned,
            "random_baseline": self.random_baseline,
            "dead_units": int(self.dead.sum()),
            "num_images": self.num_images,
            "num_empty_images": self.num_empty_images,
            **extra,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary plus every per-unit field."""
        extra = {} if self.significance is None else {"significance": self.significance.to_dict()}
        return {
            **self.summary(),
            **extra,
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "units": {
                "selectivity": self.selectivity.tolist(),
                "selectivity_assigned": self.selectivity_assigned.tolist(),
                "preferred_bin": self.preferred_bin.tolist(),
                "assigned_bin": self.assigned_bin.tolist(),
                "dead": self.dead.tolist(),
                "mean_response": self.mean_response.tolist(),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], layer: str) -> LayerDissection:
        """The inverse of :meth:`to_dict` (what ``dissect.json`` holds for ``layer``), shapes checked.

        Raises:
            ValueError: ``layer 'name': <key> ...``: a missing key, or a length that disagrees with the
                ``[K, N_b]`` of ``units.mean_response``.
        """
        where = f"layer {layer!r}"
        units = data.get("units") if isinstance(data, Mapping) else None
        response = units.get("mean_response") if isinstance(units, Mapping) else None
        if not isinstance(response, list) or not response or not isinstance(response[0], list) or not response[0]:
            raise ValueError(f"{where}: expected units.mean_response, a non-empty [units][bins] list of lists")
        num_units, num_bins = len(response), len(response[0])
        if any(not isinstance(row, list) or len(row) != num_bins for row in response):
            raise ValueError(f"{where}: units.mean_response must have {num_bins} bins in every row")
        lengths = {**{f"units.{key}": (units.get(key), num_units) for key in _PER_UNIT},
                   "counts": (data.get("counts"), num_bins), "edges": (data.get("edges"), num_bins + 1)}
        for key, (value, length) in lengths.items():
            if value is None:
                continue
            if not isinstance(value, list) or len(value) != length:
                got = len(value) if isinstance(value, list) else type(value).__name__
                raise ValueError(f"{where}: {key} has length {got}; expected {length} ({num_units} units, "
                                 f"{num_bins} bins)")
        absent = [key for key, (value, _) in lengths.items() if value is None]
        absent += [key for key in ("random_baseline",) if not isinstance(data.get(key), int | float)]
        if absent:
            raise ValueError(f"{where}: missing {', '.join(absent)} (as LayerDissection.to_dict writes them)")

        def floats(values: Any) -> torch.Tensor:  # JSON null (a browser's NaN) back to NaN
            return torch.tensor(_nan_for_none(values), dtype=torch.float64)

        return cls(
            layer=layer,
            edges=floats(data["edges"]),
            counts=torch.tensor(data["counts"], dtype=torch.int64),
            mean_response=floats(response),
            selectivity=floats(units["selectivity"]),
            selectivity_assigned=floats(units["selectivity_assigned"]),
            preferred_bin=torch.tensor(units["preferred_bin"], dtype=torch.int64),
            assigned_bin=torch.tensor(units["assigned_bin"], dtype=torch.int64),
            dead=torch.tensor(units["dead"], dtype=torch.bool),
            random_baseline=float(data["random_baseline"]),
            num_images=int(data.get("num_images", 0)),
            num_empty_images=int(data.get("num_empty_images", 0)),
        )

    def write_csv(self, path: Path) -> Path:
        """One row per unit: DS (both forms), preferred/assigned bin, dead flag, ``R[k, :]``; a last row of counts."""
        header = ["unit", "selectivity", "selectivity_assigned", "preferred_bin", "assigned_bin", "dead"]
        header += [f"r{d}" for d in range(self.num_bins)]
        rows: list[list[Any]] = [
            [k, ds, dsa, pref, asg, int(dead), *resp]
            for k, (ds, dsa, pref, asg, dead, resp) in enumerate(
                zip(
                    self.selectivity.tolist(),
                    self.selectivity_assigned.tolist(),
                    self.preferred_bin.tolist(),
                    self.assigned_bin.tolist(),
                    self.dead.tolist(),
                    self.mean_response.tolist(),
                    strict=True,
                )
            )
        ]
        rows.append(["count", "", "", "", "", "", *self.counts.tolist()])
        return write_csv(path, header, rows)


_PER_UNIT = ("selectivity", "selectivity_assigned", "preferred_bin", "assigned_bin", "dead")


def _nan_for_none(values: Any) -> Any:
    if isinstance(values, list):
        return [_nan_for_none(value) for value in values]
    return math.nan if values is None else values


def units_to_bins(
    num_units: int,
    dissection: LayerDissection | None = None,
    *,
    bins: DepthBins = DEFAULT_BINS,
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Which depth bin each unit of a layer stands for, and the edges of those bins.

    With a dissection (baseline models) a unit stands for its preferred (max-response) bin, over the
    dissection's edges; without one (interpretable models) for its assigned bin ``floor(k N_b / K)`` (Eq. 6)
    over ``bins.for_units(K)``.

    Returns:
        ``(edges [N_b + 1], bin per unit [K] (-1 for dead units), "preferred" or "assigned")``.
    """
    if dissection is None:
        layer_bins = bins.for_units(num_units)
        return layer_bins.edges, assign_bins(num_units, layer_bins.num_bins), "assigned"
    if dissection.num_units != num_units:
        raise ValueError(f"dissection of layer {dissection.layer!r} has {dissection.num_units} units, but the layer "
                         f"outputs {num_units}; expected the dissection of this layer of this model")
    return dissection.edges, dissection.preferred_bin, "preferred"


@dataclass
class DissectResult(SavedResult):
    """Dissection of several layers on several splits (e.g. ``{"train": ..., "test": ...}``).

    Attributes:
        layers: ``{split: {layer: LayerDissection}}``.
        responses: the raw accumulators ``{split: {layer: DepthResponse}}`` (saved as ``.pt``, not in JSON).
        files: files written by ``run_dissect`` (empty without ``out_dir``).
    """

    layers: dict[str, dict[str, LayerDissection]]
    responses: dict[str, dict[str, DepthResponse]] = field(default_factory=dict, repr=False)
    files: list[Path] = field(default_factory=list)
    FILE = "dissect"

    @classmethod
    def from_responses(cls, responses: Mapping[str, Mapping[str, DepthResponse]]) -> DissectResult:
        """Score accumulated responses ``{split: {layer: DepthResponse}}``."""
        return cls(
            layers={
                split: {name: LayerDissection.from_response(name, resp) for name, resp in per_layer.items()}
                for split, per_layer in responses.items()
            },
            responses={split: dict(per_layer) for split, per_layer in responses.items()},
        )

    def selectivity(self, split: str) -> float:
        """Mean Eq. 2 selectivity over all units of all dissected layers on ``split`` (Table 2's column)."""
        if split not in self.layers:
            raise ValueError(f"split={split!r}: not dissected; available: {sorted(self.layers)}")
        values = torch.cat([layer.selectivity for layer in self.layers[split].values()])
        return float(values.mean())

    def selectivity_interval(self, split: str, level: float = 0.95) -> tuple[float, float]:
        """Bootstrap interval of :meth:`selectivity`: the layers come from one pass over the same images, so
        replicate ``r`` of every layer has the same image weights and their pooled mean is a replicate."""
        low, high = bias_corrected_interval(self.selectivity_replicates(split), self.selectivity(split), level)
        return float(low), float(high)

    def selectivity_replicates(self, split: str) -> torch.Tensor:
        """float64 ``[R]`` bootstrap replicates of :meth:`selectivity` (every layer's units pooled)."""
        parts = [layer.significance.replicates for layer in self.layers[split].values()
                 if layer.significance is not None and layer.significance.replicates is not None]
        if len(parts) != len(self.layers[split]):
            raise ValueError(f"split {split!r}: not every layer kept bootstrap replicates")
        return torch.cat(parts, 1).nanmean(1)

    def to_dict(self) -> dict[str, Any]:
        """``{"splits": {split: {"selectivity": float, "layers": {layer: ...}}}}`` (plus ``selectivity_ci``)."""
        splits: dict[str, Any] = {}
        for split, per_layer in self.layers.items():
            entry: dict[str, Any] = {"selectivity": self.selectivity(split)}
            if all(layer.significance is not None and layer.significance.bootstrap for layer in per_layer.values()):
                entry["selectivity_ci"] = list(self.selectivity_interval(split))
                entry["selectivity_replicates"] = self.selectivity_replicates(split).tolist()
            entry["layers"] = {name: layer.to_dict() for name, layer in per_layer.items()}
            splits[split] = entry
        return {"splits": splits}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DissectResult:
        """The inverse of :meth:`to_dict` (``dissect.json``); the raw accumulators are not in it.

        Raises:
            ValueError: a malformed split or layer, naming it (see :meth:`LayerDissection.from_dict`).
        """
        splits = data.get("splits") if isinstance(data, Mapping) else None
        if not isinstance(splits, Mapping) or not all(isinstance(entry, Mapping) for entry in splits.values()):
            raise ValueError(f"expected {{'splits': {{split: {{'layers': {{...}}}}}}}}, got {str(data):.80}")
        return cls(layers={split: {name: LayerDissection.from_dict(layer, name)
                                   for name, layer in (entry.get("layers") or {}).items()}
                           for split, entry in splits.items()})

    @staticmethod
    def _stem(split: str, layer: str) -> str:
        return f"dissect_{safe_name(split)}_{safe_name(layer)}"

    @classmethod
    def load(cls, out_dir: str | Path, name: str | None = None) -> DissectResult:
        """Read what :meth:`save` wrote; layers whose raw responses (``.pt``) are there are rebuilt from them,
        so their bootstrap / permutation significance comes back exactly as it was computed."""
        result = super().load(out_dir, name)
        for split, per_layer in result.layers.items():
            for layer in per_layer:
                path = Path(out_dir) / f"{cls._stem(split, layer)}.pt"
                if path.is_file():
                    response = DepthResponse.load(path)
                    result.responses.setdefault(split, {})[layer] = response
                    per_layer[layer] = LayerDissection.from_response(layer, response)
        return result

    def save(self, out_dir: str | Path, name: str | None = None) -> list[Path]:  # type: ignore[override]
        """Write ``dissect.json``, one CSV per split and layer, and the raw responses (``.pt``), atomically."""
        out = Path(out_dir)
        files = [write_json(out, f"{name or self.FILE}.json", self)]
        for split, per_layer in self.layers.items():
            for name, layer in per_layer.items():
                stem = self._stem(split, name)
                files.append(layer.write_csv(out / f"{stem}.csv"))
                if name in self.responses.get(split, {}):
                    files.append(self.responses[split][name].save(out / f"{stem}.pt"))
        self.files = files
        return files


def run_dissect(
    model: torch.nn.Module,
    loaders: Mapping[str, Iterable[Mapping[str, Any]]],
    layers: Sequence[str],
    *,
    bins: DepthBins = DEFAULT_BINS,
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
    progress: bool = False,
    out_dir: str | Path | None = None,
    bootstrap: int = 0,
    permutations: int = 0,
    seed: int = 0,
) -> DissectResult:
    """Dissect ``layers`` on every split of ``loaders`` (Tables 1, 4, 7) and optionally write the results.

    Args:
        model: the network to dissect.
        loaders: ``{split name: loader}``, e.g. ``{"train": ..., "test": ...}``.
        layers: layer names, as for ``compute_responses``.
        bins: the depth bins (each layer uses ``bins.for_units(K)``).
        device: where to run.
        max_batches: per split, stop after this many batches.
        progress: show progress bars.
        out_dir: when given, ``DissectResult.save(out_dir)`` is called.
        bootstrap: bootstrap replicates per layer (intervals; see :mod:`imde.significance`).
        permutations: permutation-null replicates per layer (p- and q-values).
        seed: seed of the replicates (the same seed and images pair two models' replicates).
    """
    if not loaders:
        raise ValueError("loaders: expected at least one {split: loader} entry")
    responses = {
        split: compute_responses(
            model,
            loader,
            layers,
            bins=bins,
            device=device,
            max_batches=max_batches,
            progress=progress,
            bootstrap=bootstrap,
            permutations=permutations,
            seed=seed,
        )
        for split, loader in loaders.items()
    }
    result = DissectResult.from_responses(responses)
    if out_dir is not None:
        result.save(out_dir)
    return result


def run_random_control(
    create_model: Callable[[], torch.nn.Module],
    loaders: Mapping[str, Iterable[Mapping[str, Any]]],
    layers: Sequence[str],
    *,
    weight_seed: int = 0,
    **dissect_kwargs: Any,
) -> DissectResult:
    """Dissect the same architecture with random weights on the same data: the selectivity it shows untrained.

    Eq. 3's ``1/3`` assumes i.i.d. responses; a random network's units are smooth functions of the image, so
    their DS is measured instead, as a control for the trained model of the same architecture. The model is
    created under ``torch.manual_seed(weight_seed)`` (the global random state is restored afterwards) and
    dissected with :func:`run_dissect`'s arguments (pass the trained run's ``seed`` and loaders to pair the
    replicates, then :func:`imde.compare_selectivity` gives the interval of trained minus control).

    Args:
        create_model: builds the untrained architecture (e.g. ``lambda: imde.models.create(name, pretrained=False)``).
        loaders: ``{split: loader}`` as for :func:`run_dissect`.
        layers: layer names.
        weight_seed: seed of the random initialisation.
        **dissect_kwargs: forwarded to :func:`run_dissect`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(weight_seed)
        model = create_model()
    return run_dissect(model, loaders, layers, **dissect_kwargs)
