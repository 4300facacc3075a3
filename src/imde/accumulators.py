"""Streaming, mergeable, all-reducible accumulators: :class:`DepthResponse` (Eq. 1) and :class:`DepthMetrics`.

Both declare their state once on :class:`Accumulator`: named tensors, each summed across batches, shards and
``torch.distributed`` processes (the model is torchmetrics' ``add_state``). ``reset``, ``merge``,
``all_reduce``, ``to``, ``state_dict`` and ``load_state_dict`` are written once, on the base, for every state.

With ``bootstrap=R`` an accumulator also keeps ``R`` Poisson-bootstrap replicates of its sums: every image
gets a Poisson(1) weight per replicate, drawn from the seed and the image's key
(:mod:`imde.core.resampling`), so the replicates are batch-, order-, merge- and process-invariant sums like
the others. :class:`DepthResponse` can also keep ``P`` permutation-null replicates (each image's activations
paired with another image's depth). :mod:`imde.significance` turns them into intervals, p- and q-values.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor

from imde.core.bins import check_edges, digitize
from imde.core.metrics import METRIC_NAMES, compute_depth_metrics
from imde.core.resampling import cyclic_derangements, key_checksum, key_hashes, permutation_groups, poisson_weights
from imde.core.response import image_counts, response_pair_sums, response_sums
from imde.utils.io import atomic_torch_save, read_torch_file

if TYPE_CHECKING:
    from imde.significance import Significance

Keys = Sequence[str | int] | None
#: The permutation null pairs images within groups of at most this many images of a batch (bounds its cost).
NULL_GROUP = 8


class Accumulator:
    """Base of the streaming accumulators: declared sums with their reduction, and everything written once.

    A subclass calls :meth:`add_state` in its ``__init__`` for every tensor it accumulates, names its
    configuration in :meth:`config` (what two accumulators must share to be merged) and checks it in
    :meth:`check_compatible`. States are read as attributes (``acc.sums``) and updated in place.
    Every state is reduced by ``"sum"``: that is what makes a merge of two halves, or an all-reduce over
    processes, equal the accumulator of the whole data set (up to floating-point rounding).

    Example:
        >>> class Count(Accumulator):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.add_state("total", torch.zeros((), dtype=torch.int64))
        >>> a, b = Count(), Count()
        >>> a.total += 2; b.total += 3
        >>> int(a.merge(b).total), a.state_dict()
        (5, {'total': tensor(5)})
    """

    REDUCTIONS = ("sum",)

    def __init__(self, device: torch.device | str | None = None) -> None:
        self._device = torch.device(device or "cpu")
        self._specs: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}  # each state's shape and dtype
        self._states: dict[str, Tensor] = {}

    def add_state(self, name: str, default: Tensor, reduction: str = "sum") -> None:
        """Declare a state tensor ``name`` with its zero value and its cross-batch/process reduction.

        Only the default's shape and dtype are kept (:meth:`reset` makes zeros again), so a large state costs its
        own memory once.
        """
        if reduction not in self.REDUCTIONS:
            raise ValueError(f"reduction={reduction!r} for state {name!r}: expected one of {self.REDUCTIONS}")
        if name in self._specs:
            raise ValueError(f"state {name!r}: declared twice")
        self._specs[name] = (tuple(default.shape), default.dtype)
        self._states[name] = default.detach().to(self._device).clone()

    def __getattr__(self, name: str) -> Tensor:
        states = self.__dict__.get("_states", {})
        if name in states:
            return states[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        states = self.__dict__.get("_states", {})
        if name in states:  # ``acc.sums += x`` rebinds the name: keep it a state
            states[name] = torch.as_tensor(value, dtype=self._specs[name][1], device=self._device)
        else:
            object.__setattr__(self, name, value)

    @property
    def device(self) -> torch.device:
        """Device of the accumulated state."""
        return self._device

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the declared states, in declaration order."""
        return tuple(self._specs)

    def config(self) -> dict[str, Any]:
        """What defines the accumulator (saved in :meth:`state_dict`); a subclass adds its arguments."""
        return {}

    def check_compatible(self, other: Accumulator) -> None:
        """Raise ``ValueError`` when ``other`` cannot be merged into this accumulator."""
        if type(other) is not type(self):
            raise ValueError(f"other: expected a {type(self).__name__}, got {type(other).__name__}")
        self.check_config(other.config())

    def check_config(self, config: dict[str, Any]) -> None:
        """Raise ``ValueError`` when states of the configuration ``config`` cannot be added to this one's."""

    def reset(self) -> None:
        """Set every state back to its declared zero value."""
        for name, (shape, dtype) in self._specs.items():
            self._states[name] = torch.zeros(shape, dtype=dtype, device=self._device)

    def merge(self, other: Accumulator) -> Any:
        """Add another accumulator's state (same configuration) into this one; returns ``self``."""
        self.check_compatible(other)
        for name, tensor in self._states.items():
            tensor += other._states[name].to(self._device)
        return self

    def all_reduce(self, group: dist.ProcessGroup | None = None) -> Any:
        """Sum every state over the ``torch.distributed`` processes (in place); a no-op when not initialised."""
        if not (dist.is_available() and dist.is_initialized()):
            return self
        on_nccl = dist.get_backend(group) == "nccl" and self._device.type != "cuda"
        for tensor in self._states.values():
            reduced = tensor.to(torch.device("cuda", torch.cuda.current_device())) if on_nccl else tensor
            dist.all_reduce(reduced, op=dist.ReduceOp.SUM, group=group)
            if on_nccl:
                tensor.copy_(reduced)
        return self

    def to(self, device: torch.device | str) -> Any:
        """Move the state to ``device`` (in place); returns ``self``."""
        self._device = torch.device(device)
        self._states = {name: tensor.to(self._device) for name, tensor in self._states.items()}
        return self

    def state_dict(self) -> dict[str, Any]:
        """Configuration and states (CPU copies), loadable with :meth:`load_state_dict`."""
        return {**self.config(), **{name: tensor.cpu() for name, tensor in self._states.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the states with those of ``state`` (from :meth:`state_dict`), checking configuration and shapes."""
        missing = (set(self._specs) | set(self.config())) - set(state)
        if missing:
            raise ValueError(f"state: missing keys {sorted(missing)}")
        self.check_config({key: state[key] for key in self.config()})
        for name, (shape, dtype) in self._specs.items():
            value = torch.as_tensor(state[name])
            if tuple(value.shape) != shape:
                raise ValueError(f"state: {name} has shape {tuple(value.shape)}, expected {shape}")
            self._states[name] = value.to(self._device, dtype)

    @classmethod
    def from_config(cls, config: dict[str, Any], device: torch.device | str | None = None) -> Any:
        """A fresh accumulator of the configuration in ``config`` (a :meth:`state_dict`)."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`state_dict` to ``path`` atomically (``torch.save``)."""
        return atomic_torch_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device | str | None = None) -> Any:
        """Read an accumulator written by :meth:`save` (``torch.load(weights_only=True)``)."""
        state = read_torch_file(path, f"{cls.__name__} state file")
        if not isinstance(state, dict) or not cls._looks_like_state(state):
            raise ValueError(f"{path}: not a {cls.__name__} state (expected a dict from {cls.__name__}.state_dict())")
        acc = cls.from_config(state, device=device)
        acc.load_state_dict(state)
        return acc

    @classmethod
    def _looks_like_state(cls, state: dict[str, Any]) -> bool:
        return True

    def _resampling_keys(self, keys: Keys, batch: int, first_index: int) -> Tensor:
        """Key hashes of a batch: its keys, or running indices ``first_index, ...`` when ``keys`` is ``None``."""
        if keys is None:
            keys = list(range(first_index, first_index + batch))
        elif isinstance(keys, str | int) or len(keys) != batch:
            raise ValueError(f"keys: expected one str/int per image ({batch}), got {keys!r}")
        return key_hashes(list(keys), device=self._device)


class Counter:
    """A 0-d int64 state read as a Python ``int`` (``acc.num_images += 3`` writes the state back)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Accumulator | None, owner: type) -> Any:
        return self if obj is None else int(obj._states[self.name])


def _check_resampling(bootstrap: int, permutations: int, seed: int) -> None:
    for name, value in (("bootstrap", bootstrap), ("permutations", permutations), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}={value!r}: expected a non-negative integer")


class DepthResponse(Accumulator):
    """Accumulates the per-unit, per-bin sums and per-bin pixel counts of Eq. 1 over a dataset.

    Args:
        num_units: ``K``, the layer's channel count.
        edges: ``N_b + 1`` increasing bin edges (:func:`imde.sid_edges`, :func:`imde.dataset_edges`).
        bootstrap: ``R`` Poisson-bootstrap replicates of the sums (0: none, today's cost).
        permutations: ``P`` permutation-null replicates (0: none); batches must then hold at least 2 images.
        seed: seed of the replicates' weights and derangements.
        replicate_dtype: dtype of the replicate sums (float32: ``4 (R + P) K N_b`` bytes, 0.5 GB for
            ``K = 1024, N_b = 64, R = P = 1000``; each replicate sum is then about 1e-7 relative off its
            float64 value, far below the bootstrap's own spread).
        device: where the state lives (default CPU); :meth:`to` moves it.

    Attributes:
        sums: float64 ``[K, N_b]`` sum of the upsampled signed activations over the valid pixels of each bin.
        counts: int64 ``[N_b]`` number of valid pixels of each bin.
        boot_sums, boot_counts: ``[R, K, N_b]`` and float64 ``[R, N_b]`` Poisson-weighted replicates of them.
        null_sums: ``[P, K, N_b]`` sums with each image's activations binned by another image's depth (the
            counts of a null replicate are ``counts``: a derangement within a batch moves no pixel out of it).
        num_updates: number of :meth:`update` calls (batches).
        num_empty_batches: batches whose depth had no valid pixel (they add nothing; not an error).
        num_images: images seen; ``num_empty_images``: images without any valid pixel.

    Example:
        >>> from imde.core.bins import sid_edges
        >>> acc = DepthResponse(2, sid_edges(2, 1.0, 2.0))
        >>> acc.update(torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]]]), torch.tensor([[[0.5, 1.5]]]))
        >>> acc.mean_response().tolist()
        [[1.0, 3.0], [2.0, 2.0]]
    """

    num_updates = Counter()
    num_empty_batches = Counter()
    num_images = Counter()
    num_empty_images = Counter()
    key_checksum = Counter()

    def __init__(
        self,
        num_units: int,
        edges: Tensor,
        bootstrap: int = 0,
        permutations: int = 0,
        seed: int = 0,
        replicate_dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        if isinstance(num_units, bool) or not isinstance(num_units, int) or num_units < 1:
            raise ValueError(f"num_units={num_units!r}: expected a positive integer")
        _check_resampling(bootstrap, permutations, seed)
        if not replicate_dtype.is_floating_point:
            raise ValueError(f"replicate_dtype={replicate_dtype}: expected a floating-point dtype")
        super().__init__(device)
        self.num_units, self.bootstrap, self.permutations, self.seed = num_units, bootstrap, permutations, seed
        self.replicate_dtype = replicate_dtype
        self.edges = check_edges(edges).to(self._device)
        self.num_bins = self.edges.numel() - 1
        shape = (num_units, self.num_bins)
        self.add_state("sums", torch.zeros(shape, dtype=torch.float64))
        self.add_state("counts", torch.zeros(self.num_bins, dtype=torch.int64))
        for name in ("num_updates", "num_empty_batches", "num_images", "num_empty_images", "key_checksum"):
            self.add_state(name, torch.zeros((), dtype=torch.int64))
        if bootstrap:
            self.add_state("boot_sums", torch.zeros(bootstrap, *shape, dtype=replicate_dtype))
            self.add_state("boot_counts", torch.zeros(bootstrap, self.num_bins, dtype=torch.float64))
        if permutations:
            self.add_state("null_sums", torch.zeros(permutations, *shape, dtype=replicate_dtype))

    def config(self) -> dict[str, Any]:
        """Units, edges, replicate counts and seed."""
        return {"num_units": self.num_units, "edges": self.edges.cpu(), "bootstrap": self.bootstrap,
                "permutations": self.permutations, "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: torch.device | str | None = None) -> DepthResponse:
        """A fresh accumulator of the configuration of a :meth:`state_dict` (files without replicates load too)."""
        boot, null = config.get("boot_sums"), config.get("null_sums")
        dtype = next((t.dtype for t in (boot, null) if isinstance(t, Tensor)), torch.float32)
        return cls(
            int(config["num_units"]), torch.as_tensor(config["edges"]), bootstrap=int(config.get("bootstrap", 0)),
            permutations=int(config.get("permutations", 0)), seed=int(config.get("seed", 0)),
            replicate_dtype=dtype, device=device,
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the state with ``state`` (from :meth:`state_dict`; older files without replicates load too)."""
        super().load_state_dict({"bootstrap": 0, "permutations": 0, "seed": 0, "key_checksum": 0, **state})

    @classmethod
    def _looks_like_state(cls, state: dict[str, Any]) -> bool:
        return "num_units" in state and "edges" in state

    def check_config(self, config: dict[str, Any]) -> None:
        """Same units, edges, replicate counts and seed (so that the replicates add up)."""
        if int(config["num_units"]) != self.num_units:
            raise ValueError(f"cannot merge: other has {int(config['num_units'])} units, this one {self.num_units}")
        edges = torch.as_tensor(config["edges"]).cpu()
        if edges.shape != self.edges.shape or not torch.equal(edges.to(self.edges.dtype), self.edges.cpu()):
            raise ValueError(f"cannot merge: different edges {edges.tolist()} vs {self.edges.tolist()}")
        mine = (self.bootstrap, self.permutations, self.seed)
        theirs = (int(config["bootstrap"]), int(config["permutations"]), int(config["seed"]))
        if mine != theirs:
            raise ValueError(f"cannot merge: (bootstrap, permutations, seed) {theirs} vs {mine}")

    def to(self, device: torch.device | str) -> DepthResponse:
        """Move the state to ``device`` (in place); returns ``self``."""
        self.edges = self.edges.to(device)
        return super().to(device)

    def _check_update(self, activations: Tensor, depth: Tensor) -> Tensor:
        if not isinstance(activations, Tensor) or activations.ndim != 4:
            shape = tuple(activations.shape) if isinstance(activations, Tensor) else type(activations).__name__
            raise ValueError(f"activations: expected [B, K, h, w], got {shape}")
        if activations.shape[1] != self.num_units:
            raise ValueError(
                f"activations have {activations.shape[1]} units (shape {tuple(activations.shape)}) but this "
                f"DepthResponse accumulates {self.num_units} units"
            )
        if not isinstance(depth, Tensor) or not (depth.ndim == 3 or (depth.ndim == 4 and depth.shape[1] == 1)):
            shape = tuple(depth.shape) if isinstance(depth, Tensor) else type(depth).__name__
            raise ValueError(f"depth: expected [B, H, W] or [B, 1, H, W], got {shape}")
        if depth.shape[0] != activations.shape[0]:
            raise ValueError(
                f"batch size mismatch: activations {tuple(activations.shape)} vs depth {tuple(depth.shape)}"
            )
        if self.permutations and depth.shape[0] < 2:
            raise ValueError(
                f"a batch of {depth.shape[0]} image cannot be permuted within itself (permutations="
                f"{self.permutations}): use batches of at least 2 images (a last batch of 1: drop_last or merge it)"
            )
        # the sum is finite unless an element is NaN/inf (or a finite sum overflows: then check element-wise);
        # one streaming reduction instead of a full-size boolean map
        if not bool(torch.isfinite(activations.sum())) and not bool(torch.isfinite(activations).all()):
            raise ValueError(f"activations {tuple(activations.shape)}: contain NaN or inf")
        return depth.reshape(depth.shape[0], *depth.shape[-2:])

    @torch.no_grad()
    def update(self, activations: Tensor, depth: Tensor, keys: Keys = None) -> None:
        """Add one batch (Eq. 1, steps 1-2): upsample, bin the depth with ``edges``, sum and count per bin.

        Args:
            activations: ``[B, K, h, w]`` (any float dtype, any device; moved to the state's device).
            depth: ``[B, H, W]`` or ``[B, 1, H, W]`` metres; invalid pixels (``<= 0``, non-finite,
                ``> edges[-1]``) are ignored.
            keys: one sample name (str) or index (int) per image: the replicates' weights are drawn from them,
                so the same image gets the same weights in any batch, order or process. ``None``: running
                indices, which are batch-size invariant but not order or process invariant.
        """
        update_responses([self], [activations], depth, keys)

    def _shares_pass_with(self) -> tuple[Any, ...]:
        """What accumulators must share for :func:`update_responses` to feed them from one pass of Eq. 1."""
        return (str(self.device), tuple(self.edges.tolist()), self.bootstrap, self.permutations, self.seed,
                self.replicate_dtype, self.num_images)

    def mean_response(self) -> Tensor:
        """float64 ``[K, N_b]`` mean response ``R`` of Eq. 1; NaN in bins that were never observed."""
        counts = self.counts.to(torch.float64)
        return torch.where(counts > 0, self.sums / counts.clamp_min(1), torch.full_like(self.sums, float("nan")))

    compute = mean_response

    def significance(self, assigned: Tensor | None = None, level: float = 0.95) -> Significance:
        """Per-unit and layer selectivity with bootstrap intervals, permutation p-values and BH q-values.

        See :func:`imde.significance.selectivity_significance` (what each field means and costs).
        """
        from imde.significance import selectivity_significance

        return selectivity_significance(self, assigned=assigned, level=level)

    def __repr__(self) -> str:
        return (
            f"DepthResponse(num_units={self.num_units}, num_bins={self.num_bins}, images={self.num_images}, "
            f"empty_images={self.num_empty_images}, bootstrap={self.bootstrap}, "
            f"permutations={self.permutations}, device={self.device})"
        )


@torch.no_grad()
def update_responses(
    responses: Sequence[DepthResponse], activations: Sequence[Tensor], depth: Tensor, keys: Keys = None
) -> None:
    """Add one batch to several layers' accumulators: ``responses[i].update(activations[i], depth, keys)`` for all.

    The result is that of the separate updates (up to float64 rounding); the cost is lower when maps share a
    size: accumulators of maps of one size (with the same edges, device, replicates and images seen) are fed
    by one pass of Eq. 1 over their concatenated channels, so the depth's bins, the splat of every band and
    the replicates' weights are computed once for them all (a ViT's blocks share the patch grid). Every input
    is checked before any state changes.

    Example:
        >>> from imde.core.bins import sid_edges
        >>> a, b = DepthResponse(1, sid_edges(2, 1.0, 2.0)), DepthResponse(2, sid_edges(2, 1.0, 2.0))
        >>> depth = torch.tensor([[[0.5, 1.5]]])
        >>> update_responses([a, b], [torch.tensor([[[[1.0, 3.0]]]]), torch.ones(1, 2, 1, 2)], depth)
        >>> a.mean_response().tolist(), b.mean_response().tolist()
        ([[1.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]])
    """
    if len(responses) != len(activations):
        raise ValueError(f"update_responses: {len(responses)} accumulators but {len(activations)} activations")
    if len({id(response) for response in responses}) != len(responses):
        raise ValueError("update_responses: the same accumulator is given twice")
    if not responses:
        return
    groups: dict[tuple[Any, ...], list[tuple[DepthResponse, Tensor]]] = {}
    for response, maps in zip(responses, activations, strict=True):
        checked_depth = response._check_update(maps, depth)
        shared = (tuple(maps.shape[2:]), maps.dtype, *response._shares_pass_with())
        groups.setdefault(shared, []).append((response, maps))
    passes = []
    for members in groups.values():
        first = members[0][0]
        hashes = None
        if first.bootstrap or first.permutations:  # malformed keys fail here, before any state changes
            hashes = first._resampling_keys(keys, checked_depth.shape[0], first.num_images)
        passes.append((members, hashes))
    bins_of: dict[tuple[str, tuple[float, ...]], Tensor] = {}  # the depth is binned once per device and edges
    for members, hashes in passes:
        first = members[0][0]
        where = (str(first.device), tuple(first.edges.tolist()))
        if where not in bins_of:
            bins_of[where] = digitize(checked_depth.to(first.device), first.edges)
        _update_together(members, bins_of[where], hashes)


def _update_together(members: list[tuple[DepthResponse, Tensor]], bins: Tensor, hashes: Tensor | None) -> None:
    """One pass of Eq. 1 over the concatenated channels of accumulators that share a pass (checked inputs)."""
    responses = [response for response, _ in members]
    first = responses[0]
    batch, num_bins = bins.shape[0], first.num_bins
    valid_per_image = (bins >= 0).flatten(1).sum(1)
    empty = int(valid_per_image.sum()) == 0
    num_empty_images = int((valid_per_image == 0).sum())
    for response in responses:
        response.num_updates += 1
        response.num_images += batch
        response.num_empty_images += num_empty_images
        response.num_empty_batches += int(empty)
        if hashes is not None:
            response.key_checksum += key_checksum(hashes)
    if empty:
        return
    maps = [activations.detach().to(first.device) for _, activations in members]
    activations = maps[0] if len(maps) == 1 else torch.cat(maps, dim=1)
    units = [response.num_units for response in responses]
    if hashes is None:
        sums, counts = response_sums(activations, bins, num_bins)
        for response, part in zip(responses, sums.split(units), strict=True):
            response.sums += part
            response.counts += counts
        return
    if first.permutations:
        per_image = _add_null(responses, activations, bins, hashes)
        counts_per_image = image_counts(bins + 1, num_bins)
    else:
        per_image, counts_per_image = response_sums(activations, bins, num_bins, per_image=True)
    counts = counts_per_image.sum(0)
    weights = poisson_weights(first.seed, hashes, first.bootstrap) if first.bootstrap else None  # [R, B]
    for response, part in zip(responses, per_image.split(units, dim=1), strict=True):
        response.sums += part.sum(0)
        response.counts += counts
        if weights is not None:
            dtype = response.replicate_dtype
            response.boot_sums.view(response.bootstrap, -1).addmm_(weights.to(dtype), part.reshape(batch, -1).to(dtype))
            response.boot_counts.addmm_(weights.to(torch.float64), counts_per_image.to(torch.float64))


def _add_null(responses: list[DepthResponse], activations: Tensor, bins: Tensor, hashes: Tensor) -> Tensor:
    """Add the null replicates of a batch, group by group (:data:`NULL_GROUP`); return its per-image sums.

    Within a group of ``G`` images, every (activation image, depth image) pair's sums come from one product;
    replicate ``r`` adds ``sum_i pairs[i, partner[r, i]]``, all replicates in one product ``[P, G^2] x [G^2,
    K N_b]`` per accumulator, written in place. ``activations`` holds the accumulators' channels one after another.
    """
    first = responses[0]
    permutations, num_bins, dtype = first.permutations, first.num_bins, first.replicate_dtype
    units = [response.num_units for response in responses]
    per_image = torch.empty(bins.shape[0], sum(units), num_bins, dtype=torch.float64, device=first.device)
    for group in permutation_groups(first.seed, hashes, NULL_GROUP):  # ceil(B / 8) groups, not images
        size = group.numel()
        pairs, _ = response_pair_sums(activations[group], bins[group], num_bins)
        per_image[group] = pairs.diagonal(dim1=0, dim2=1).permute(2, 0, 1)  # each image with its own depth
        partner = cyclic_derangements(first.seed, hashes[group], permutations)  # [P, G]
        flat_pair = torch.arange(size, device=first.device) * size + partner  # index of pair (i, partner[r, i])
        selection = torch.zeros(permutations, size * size, dtype=dtype, device=first.device)
        selection.scatter_(1, flat_pair, 1.0)
        for response, part in zip(responses, pairs.split(units, dim=2), strict=True):
            response.null_sums.view(permutations, -1).addmm_(selection, part.reshape(size * size, -1).to(dtype))
    return per_image


class DepthMetrics(Accumulator):
    """Streaming accumulator of :func:`imde.core.metrics.compute_depth_metrics`: per-metric sums over images.

    Memory is independent of the number of images; two accumulators over disjoint data :meth:`merge`
    into the accumulator of the union, and :meth:`all_reduce` sums across ``torch.distributed`` processes.
    With ``bootstrap=R`` it also keeps ``R`` Poisson-weighted replicates of the per-image sums, with the same
    weights as a :class:`DepthResponse` of the same seed and keys: two models evaluated on the same images get
    paired replicates, hence an interval for the difference of their metrics
    (:func:`imde.significance.compare_metrics`).

    Args:
        min_depth: lower cap.
        max_depth: upper cap.
        crop: name of the evaluation crop (``imde.core.crops.crop_mask`` names: none, eigen_nyu, eigen_kitti, garg).
        bootstrap: ``R`` replicates (0: none).
        seed: seed of the replicates' weights.
        device: where the state lives.

    Example:
        >>> metrics = DepthMetrics(max_depth=10.0)
        >>> _ = metrics.update(torch.full((2, 1, 2, 2), 2.0), torch.full((2, 1, 2, 2), 2.0))
        >>> metrics.compute()["rms"], metrics.num_images
        (0.0, 2)
    """

    num_images = Counter()  # images with at least one valid pixel
    num_skipped = Counter()  # images without a valid pixel (left out of the means)
    key_checksum = Counter()

    def __init__(
        self,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        crop: str = "none",
        bootstrap: int = 0,
        seed: int = 0,
        device: torch.device | str | None = None,
    ) -> None:
        if not 0 <= min_depth < max_depth:
            raise ValueError(f"min_depth={min_depth}, max_depth={max_depth}: expected 0 <= min_depth < max_depth")
        if crop != "none":
            from imde.core.crops import crop_mask

            crop_mask(crop, 1, 1)  # validates the name now rather than at the first batch
        _check_resampling(bootstrap, 0, seed)
        super().__init__(device)
        self.min_depth, self.max_depth, self.crop = float(min_depth), float(max_depth), crop
        self.bootstrap, self.seed = bootstrap, seed
        self._crop_cache: dict[tuple[int, int, str], Tensor] = {}
        metrics = len(METRIC_NAMES)
        self.add_state("sums", torch.zeros(metrics, dtype=torch.float64))  # over images with a valid pixel
        self.add_state("num_images", torch.zeros((), dtype=torch.int64))
        self.add_state("num_skipped", torch.zeros((), dtype=torch.int64))
        self.add_state("key_checksum", torch.zeros((), dtype=torch.int64))
        if bootstrap:
            self.add_state("boot_sums", torch.zeros(bootstrap, metrics, dtype=torch.float64))
            self.add_state("boot_counts", torch.zeros(bootstrap, dtype=torch.float64))

    def config(self) -> dict[str, Any]:
        """Caps, crop, replicate count and seed."""
        return {"min_depth": self.min_depth, "max_depth": self.max_depth, "crop": self.crop,
                "bootstrap": self.bootstrap, "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: torch.device | str | None = None) -> DepthMetrics:
        """A fresh accumulator of the configuration of a :meth:`state_dict`."""
        return cls(float(config["min_depth"]), float(config["max_depth"]), str(config["crop"]),
                   bootstrap=int(config["bootstrap"]), seed=int(config["seed"]), device=device)

    def check_config(self, config: dict[str, Any]) -> None:
        """Same caps, crop, replicate count and seed."""
        theirs, mine = dict(config), self.config()
        if theirs != mine:
            raise ValueError(f"merge: protocols differ {tuple(theirs.values())} vs {tuple(mine.values())} "
                             f"(min_depth, max_depth, crop, bootstrap, seed)")

    def _crop_for(self, height: int, width: int, device: torch.device) -> Tensor | None:
        if self.crop == "none":
            return None
        key = (height, width, str(device))
        if key not in self._crop_cache:
            from imde.core.crops import crop_mask

            self._crop_cache[key] = crop_mask(self.crop, height, width, device=device)
        return self._crop_cache[key]

    def update(self, pred: Tensor, gt: Tensor, keys: Keys = None) -> dict[str, Tensor]:
        """Add a batch (pred at gt's resolution); returns its per-image values (see ``compute_depth_metrics``).

        Args:
            pred: predicted depth ``[B, 1, H, W]`` or ``[B, H, W]``.
            gt: ground truth of the same shape.
            keys: one sample name or index per image for the bootstrap weights (``None``: running indices).
        """
        crop = self._crop_for(gt.shape[-2], gt.shape[-1], gt.device)
        values, has_valid = compute_depth_metrics(pred, gt, min_depth=self.min_depth, max_depth=self.max_depth,
                                                  crop=crop)
        stacked = torch.stack([values[name] for name in METRIC_NAMES], dim=1).to(self.device)  # [B, M]
        has_valid = has_valid.to(self.device)
        per_image = torch.where(has_valid[:, None], stacked, 0.0)
        batch = has_valid.numel()
        if self.bootstrap:
            hashes = self._resampling_keys(keys, batch, self.num_images + self.num_skipped)
            weights = poisson_weights(self.seed, hashes, self.bootstrap).to(torch.float64) * has_valid  # [R, B]
            self.boot_sums.addmm_(weights, per_image)
            self.boot_counts += weights.sum(1)
            self.key_checksum += key_checksum(hashes)
        self.sums += per_image.sum(0)
        valid = int(has_valid.sum())
        self.num_images += valid
        self.num_skipped += batch - valid
        return values

    def compute(self) -> dict[str, float]:
        """Mean of each metric over the images with a valid pixel (NaN when there is none)."""
        count = self.num_images
        if count == 0:
            return {name: float("nan") for name in METRIC_NAMES}
        sums = self.sums.cpu()
        return {name: sums[i].item() / count for i, name in enumerate(METRIC_NAMES)}

    def replicates(self) -> Tensor:
        """float64 ``[R, M]`` bootstrap replicates of :meth:`compute` (columns in :data:`METRIC_NAMES` order)."""
        if not self.bootstrap:
            raise ValueError("DepthMetrics(bootstrap=0) keeps no replicates; create it with bootstrap=R")
        return (self.boot_sums / self.boot_counts.unsqueeze(1)).cpu()
