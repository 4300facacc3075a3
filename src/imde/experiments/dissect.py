"""Network dissection by depth (Sec. 3, Eq. 1-2): per-unit mean responses over depth bins and their selectivity.

``compute_responses`` streams a loader through a model once and accumulates Eq. 1 for several layers;
``run_dissect`` turns the accumulated responses of one or more splits into per-unit tables (Tables 1, 4, 7).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from imde.accumulators import DepthResponse
from imde.core.bins import assign_bins, dataset_edges
from imde.core.selectivity import dead_units, depth_selectivity, preferred_bins, random_baseline
from imde.experiments.results import check_batch, count_batches, limit_batches, safe_name, write_csv, write_json
from imde.hooks import LayerTap
from imde.utils.device import resolve_device


def layer_edges(edges_preset: str, num_bins: int, num_units: int) -> torch.Tensor:
    """SID edges of one layer: ``N_b = min(num_bins, K)`` bins over the preset's range (Sec. 4.2, Eq. 6)."""
    if num_bins < 2:
        raise ValueError(f"num_bins={num_bins}: expected at least 2 depth bins")
    if num_units < 2:
        raise ValueError(f"num_units={num_units}: a dissected layer needs at least 2 units")
    return dataset_edges(edges_preset, min(num_bins, num_units))


def compute_responses(
    model: torch.nn.Module,
    loader: Iterable[Mapping[str, Any]],
    layers: Sequence[str],
    *,
    edges_preset: str = "nyu",
    num_bins: int = 64,
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
    progress: bool = False,
    transforms: Mapping[str, Any] | None = None,
) -> dict[str, DepthResponse]:
    """Accumulate the mean response of every unit of ``layers`` over depth bins (Eq. 1).

    The model runs in eval mode without gradients (its training mode is restored afterwards); each layer gets
    ``N_b = min(num_bins, K)`` SID bins of the preset (Sec. 4.2). Work is per batch, on ``device``. When
    ``torch.distributed`` is initialised the sums are all-reduced, so every rank returns the whole dataset's
    responses (each rank must then see at least one batch).

    Args:
        model: any depth network; batches are turned into its input by ``imde.models.run_model``.
        loader: iterable of batch dicts with ``image`` and ``depth`` ``[B, 1, H, W]`` metres (0 = invalid).
        layers: declared layer names (``"D"``, ``"MFF"``) or dotted module names.
        edges_preset: depth-bin preset (``"nyu"`` or ``"kitti"``).
        num_bins: requested number of bins ``N_b``.
        device: where the forward passes and the accumulation run.
        max_batches: stop after this many batches (``None``: the whole loader).
        progress: show a progress bar.
        transforms: ``LayerTap`` transforms for layers that are not maps (``imde.tokens_to_map`` for ViT tokens);
            default: those of a Hugging Face ViT depth model's token layers (``imde.models.token_transforms``).

    Returns:
        ``{layer: DepthResponse}`` in the order of ``layers``.

    Raises:
        ValueError: no layers, ``num_bins < 2``, a batch without ``depth``, or a loader that yields nothing.
    """
    from imde.models import run_model, token_transforms

    layers = list(layers)
    if not layers or len(set(layers)) != len(layers):
        raise ValueError(f"layers={layers!r}: expected a non-empty list of distinct layer names")
    dataset_edges(edges_preset, max(num_bins, 2))  # an unknown preset fails here, before any forward pass
    if num_bins < 2:
        raise ValueError(f"num_bins={num_bins}: expected at least 2 depth bins")
    dev = resolve_device(device)
    model.to(dev)
    was_training = model.training
    model.eval()
    responses: dict[str, DepthResponse] = {}
    try:
        if transforms is None:
            transforms = token_transforms(model, layers)
        with torch.no_grad(), LayerTap(model, layers, transforms=transforms) as tap:
            batches = limit_batches(loader, max_batches)
            for batch in tqdm(batches, desc="dissect", total=count_batches(loader, max_batches), disable=not progress):
                check_batch(batch)
                run_model(model, batch, dev)
                depth = batch["depth"].to(dev)
                for name in layers:
                    features = tap.features[name]
                    if name not in responses:
                        edges = layer_edges(edges_preset, num_bins, features.shape[1])
                        responses[name] = DepthResponse(features.shape[1], edges, device=dev)
                    responses[name].update(features, depth)
    finally:
        model.train(was_training)
    if not responses:
        raise ValueError("loader: yielded no batch; nothing to dissect")
    if dist.is_available() and dist.is_initialized():
        for response in responses.values():
            response.all_reduce()
    return responses


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
        )

    def summary(self) -> dict[str, Any]:
        """Layer-level numbers (one row of Table 1)."""
        return {
            "num_units": self.num_units,
            "num_bins": self.num_bins,
            "selectivity": self.mean_selectivity,
            "selectivity_assigned": self.mean_selectivity_assigned,
            "random_baseline": self.random_baseline,
            "dead_units": int(self.dead.sum()),
            "num_images": self.num_images,
            "num_empty_images": self.num_empty_images,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary plus every per-unit field."""
        return {
            **self.summary(),
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


def units_to_bins(
    num_units: int,
    dissection: LayerDissection | None = None,
    *,
    edges_preset: str = "nyu",
    num_bins: int = 64,
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Which depth bin each unit of a layer stands for, and the edges of those bins.

    With a dissection (baseline models) a unit stands for its preferred (max-response) bin, over the
    dissection's edges; without one (interpretable models) for its assigned bin ``floor(k N_b / K)`` (Eq. 6)
    over the preset's ``N_b = min(num_bins, K)`` SID bins.

    Returns:
        ``(edges [N_b + 1], bin per unit [K] (-1 for dead units), "preferred" or "assigned")``.
    """
    if dissection is None:
        edges = layer_edges(edges_preset, num_bins, num_units)
        return edges, assign_bins(num_units, edges.numel() - 1), "assigned"
    if dissection.num_units != num_units:
        raise ValueError(f"dissection of layer {dissection.layer!r} has {dissection.num_units} units, but the layer "
                         f"outputs {num_units}; expected the dissection of this layer of this model")
    return dissection.edges, dissection.preferred_bin, "preferred"


@dataclass
class DissectResult:
    """Dissection of several layers on several splits (e.g. ``{"train": ..., "test": ...}``).

    Attributes:
        layers: ``{split: {layer: LayerDissection}}``.
        responses: the raw accumulators ``{split: {layer: DepthResponse}}`` (saved as ``.pt``, not in JSON).
        files: files written by ``run_dissect`` (empty without ``out_dir``).
    """

    layers: dict[str, dict[str, LayerDissection]]
    responses: dict[str, dict[str, DepthResponse]] = field(default_factory=dict, repr=False)
    files: list[Path] = field(default_factory=list)

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

    def to_dict(self) -> dict[str, Any]:
        """``{"splits": {split: {"selectivity": float, "layers": {layer: ...}}}}``."""
        return {
            "splits": {
                split: {
                    "selectivity": self.selectivity(split),
                    "layers": {name: layer.to_dict() for name, layer in per_layer.items()},
                }
                for split, per_layer in self.layers.items()
            }
        }

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write ``dissect.json``, one CSV per split and layer, and the raw responses (``.pt``), atomically."""
        out = Path(out_dir)
        files = [write_json(out, "dissect.json", self)]
        for split, per_layer in self.layers.items():
            for name, layer in per_layer.items():
                stem = f"dissect_{safe_name(split)}_{safe_name(name)}"
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
    edges_preset: str = "nyu",
    num_bins: int = 64,
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
    progress: bool = False,
    out_dir: str | Path | None = None,
) -> DissectResult:
    """Dissect ``layers`` on every split of ``loaders`` (Tables 1, 4, 7) and optionally write the results.

    Args:
        model: the network to dissect.
        loaders: ``{split name: loader}``, e.g. ``{"train": ..., "test": ...}``.
        layers: layer names, as for ``compute_responses``.
        edges_preset: depth-bin preset (``"nyu"`` or ``"kitti"``).
        num_bins: requested ``N_b`` (each layer uses ``min(N_b, K)``).
        device: where to run.
        max_batches: per split, stop after this many batches.
        progress: show progress bars.
        out_dir: when given, ``DissectResult.save(out_dir)`` is called.
    """
    if not loaders:
        raise ValueError("loaders: expected at least one {split: loader} entry")
    responses = {
        split: compute_responses(
            model,
            loader,
            layers,
            edges_preset=edges_preset,
            num_bins=num_bins,
            device=device,
            max_batches=max_batches,
            progress=progress,
        )
        for split, loader in loaders.items()
    }
    result = DissectResult.from_responses(responses)
    if out_dir is not None:
        result.save(out_dir)
    return result
