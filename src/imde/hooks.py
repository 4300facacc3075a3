"""Forward hooks with a lifetime: capture layer outputs (:class:`LayerTap`) or replace them (:func:`edit_layers`).

A layer is named either by a model's declared layer name (``model.unit_info``: objects with ``.name``
and ``.module``, the dotted path of the module whose output *is* that layer) or by any dotted module
name of ``model.named_modules()``. Hooks exist only inside a ``with`` block and are removed in ``finally``,
also when the forward pass raises.

A tap hands out a *copy* of each layer's output, taken when the layer returns. Many networks change a
layer's output in place later in the forward pass (torchvision's ResNet bottleneck adds the shortcut to its
last BatchNorm's output with ``out += identity`` and then applies ``ReLU(inplace=True)``); without the copy
the tap would hold those later values. Detecting the change afterwards (``tensor._version``) could only
raise, since the original values are gone by then, so the copy is always taken: it costs one memory copy of
each tapped layer per forward pass (``docs/benchmarks.md``, "Layer taps"). With autograd on, the copy is a
``clone`` in the graph, so a loss on the tapped features still trains the layer.

:func:`run_with_features` is the one way the experiments run a model for its prediction and features: eval
mode, no gradients, a tap, the model's output through :func:`imde.models.run_model`, every mode restored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside ``DistributedDataParallel`` / ``DataParallel`` wrappers (the model itself otherwise)."""
    while isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        model = model.module
    return model


def declared_layers(model: nn.Module) -> dict[str, str]:
    """``{declared layer name: dotted module path}`` from ``model.unit_info`` (empty when not declared)."""
    return {info.name: info.module for info in getattr(unwrap_model(model), "unit_info", ())}


def resolve_layer(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module whose forward output is layer ``name``, and the layer's declared name.

    Args:
        model: the model (DDP / DataParallel wrappers are unwrapped).
        name: a declared layer name (``model.unit_info``) or a dotted module name.

    Returns:
        ``(module, declared_name)``; ``declared_name`` is the declared layer name when ``name`` is one or
        is the module path of one, else ``name`` itself.

    Raises:
        ValueError: when ``name`` is neither, listing the declared names.
    """
    inner = unwrap_model(model)
    declared = declared_layers(inner)
    if not isinstance(name, str):
        raise ValueError(f"layer name: expected a string, got {type(name).__name__} {name!r}")
    if name in declared:
        return inner.get_submodule(declared[name]), name
    try:
        module = inner.get_submodule(name)
    except AttributeError:
        listed = ", ".join(declared) if declared else "none (this model has no unit_info)"
        examples = ", ".join(repr(path) for path, _ in list(inner.named_modules())[1:4])
        raise ValueError(
            f"unknown layer {name!r} for {type(inner).__name__}: declared layers are {listed}; "
            f"any dotted module name from model.named_modules() works too (e.g. {examples})"
        ) from None
    for layer, path in declared.items():
        if inner.get_submodule(path) is module:
            return module, layer
    return module, name


def check_single_device(model: nn.Module, what: str) -> None:
    """Refuse ``nn.DataParallel`` over several devices, whose replicas would each overwrite a tap's features.

    ``DataParallel`` copies the model, hooks included, to every device and runs the copies in threads on
    slices of the batch, so a hook that stores "the layer's output" keeps one slice chosen by timing.
    ``DistributedDataParallel`` (one process per device, each with its own tap) has no such problem.

    Raises:
        ValueError: ``model`` is an ``nn.DataParallel`` with more than one device.
    """
    if isinstance(model, nn.DataParallel) and len(model.device_ids) > 1:
        raise ValueError(
            f"{what}: nn.DataParallel over {len(model.device_ids)} devices {list(model.device_ids)} is not "
            f"supported: each device's replica runs the hooks on its slice of the batch and would overwrite the "
            f"others'. Use DistributedDataParallel (one process per GPU, e.g. torchrun; imde train, eval and "
            f"dissect support it), or pass the model on one device (model.module)"
        )


def _as_names(layers: str | Sequence[str]) -> list[str]:
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ValueError("layers: expected at least one layer name")
    if len(set(names)) != len(names):
        raise ValueError(f"layers: duplicate names in {names}")
    return names


LayerTransform = Callable[[Any, tuple[int, int]], Tensor]


def _check_transforms(transforms: Mapping[str, LayerTransform] | None,
                      layers: list[str]) -> dict[str, LayerTransform]:
    if transforms is None:
        return {}
    if not isinstance(transforms, Mapping):
        raise ValueError(f"transforms: expected a mapping {{layer name: fn(output, image_size)}}, got "
                         f"{type(transforms).__name__}")
    for name, fn in transforms.items():
        if name not in layers:
            raise ValueError(f"transforms[{name!r}]: not one of the tapped layers {layers}")
        if not callable(fn):
            raise ValueError(f"transforms[{name!r}]: expected a callable fn(output, image_size), got "
                             f"{type(fn).__name__}")
    return dict(transforms)


def _input_size(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, int] | None:
    """``(H, W)`` of a model call's image: ``pixel_values=``, else the first 4-D tensor argument."""
    candidates = [kwargs.get("pixel_values"), *args, *kwargs.values()]
    for value in candidates:
        if isinstance(value, Tensor) and value.ndim == 4:
            return int(value.shape[-2]), int(value.shape[-1])
    return None


class _InputSize:
    """The ``(H, W)`` of the model's input in the current forward pass, for the layer transforms."""

    def __init__(self) -> None:
        self.size: tuple[int, int] | None = None

    def register(self, model: nn.Module) -> RemovableHandle:
        """Record the size at every forward of ``model`` (a pre-hook on the unwrapped model)."""

        def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            self.size = _input_size(args, kwargs)

        return unwrap_model(model).register_forward_pre_hook(record, with_kwargs=True)

    def get(self, layer: str) -> tuple[int, int]:
        """The recorded size, or a ``ValueError`` naming ``layer`` when the model's input was no image batch."""
        if self.size is None:
            raise ValueError(f"layer {layer!r} has a transform, but the model's input size is unknown: expected the "
                             "model to be called with a [B, C, H, W] tensor (positional, or pixel_values=)")
        return self.size


class LayerTap:
    """Context manager that captures the outputs of named layers through forward hooks.

    ``tap.features[name]`` is a copy of the layer's output of the most recent forward pass inside the block,
    as the layer returned it, whatever the model does to that tensor afterwards (in-place ops: see the module
    docstring). It stays in the autograd graph (so the selectivity losses can use it) unless ``detach=True``
    or grad is off.

    Layers whose output is not a ``[B, K, h, w]`` map, such as a ViT block's tokens ``[B, P + N, C]``, take a
    transform: ``transforms={name: fn}`` stores ``fn(output, image_size)`` instead, where ``image_size`` is the
    ``(H, W)`` of the model's input in that forward pass (its first 4-D tensor argument, or ``pixel_values``);
    ``imde.tokens_to_map(patch_size, num_prefix)`` is the transform for token layers. The transform runs inside
    the autograd graph, so losses on the stored map reach the tokens.

    Args:
        model: any ``nn.Module`` (DDP / DataParallel are unwrapped).
        layers: one name or a sequence of names (declared layer names or dotted module names).
        detach: store detached outputs.
        transforms: ``{layer name: fn(output, image_size) -> Tensor}`` for some of ``layers``.

    Raises:
        ValueError: an unknown layer name, or ``nn.DataParallel`` over several devices
            (:func:`check_single_device`).

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
        >>> with LayerTap(net, ["1"]) as tap:
        ...     out = net(torch.rand(2, 3, 5, 5))
        >>> torch.equal(tap.features["1"], out), len(net[1]._forward_hooks)
        (True, 0)
    """

    def __init__(self, model: nn.Module, layers: str | Sequence[str], detach: bool = False,
                 transforms: Mapping[str, LayerTransform] | None = None) -> None:
        check_single_device(model, "LayerTap")
        self.model = model
        self.layers = _as_names(layers)
        self.modules = {name: resolve_layer(model, name)[0] for name in self.layers}  # fail before any hook
        self.transforms = _check_transforms(transforms, self.layers)
        self.detach = detach
        self.features: dict[str, Tensor] = {}
        self._input_size = _InputSize()
        self._handles: list[RemovableHandle] = []

    def _hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        transform = self.transforms.get(name)

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if transform is not None:
                output = transform(output, self._input_size.get(name))
            if not isinstance(output, Tensor):
                kind = type(output).__name__
                raise ValueError(f"layer {name!r} ({type(module).__name__}) returned {kind}, not a Tensor; "
                                 f"pass transforms={{{name!r}: fn}} to turn it into one (e.g. "
                                 f"imde.tokens_to_map(patch_size, num_prefix) for ViT tokens)")
            self.features[name] = (output.detach() if self.detach else output).clone()

        return hook

    def __enter__(self) -> LayerTap:
        self.features = {}
        self._input_size.size = None
        try:
            if self.transforms:
                self._handles.append(self._input_size.register(self.model))
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Remove every hook this tap added (idempotent)."""
        while self._handles:
            self._handles.pop().remove()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()


def _check_edits(model: nn.Module, edits: Mapping[str, Callable[[Tensor], Tensor]],
                 transforms: Mapping[str, LayerTransform] | None) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """The modules of ``edits``' layers and the checked transforms, or a ValueError before any hook."""
    if not isinstance(edits, Mapping) or not edits:
        raise ValueError("edits: expected a non-empty mapping {layer name: function(output) -> output}")
    for name, fn in edits.items():
        if not callable(fn):
            raise ValueError(f"edits[{name!r}]: expected a callable, got {type(fn).__name__}")
    targets = {name: resolve_layer(model, name)[0] for name in _as_names(list(edits))}
    checked = _check_transforms(transforms, list(targets))
    for name, transform in checked.items():
        if not callable(getattr(transform, "restore", None)):
            raise ValueError(f"transforms[{name!r}]: edit_layers needs an invertible transform with a "
                             f"restore(output, edited_map, image_size) method, such as imde.tokens_to_map(...)")
    return targets, checked


def _edit_hook(name: str, fn: Callable[[Tensor], Tensor], transform: Any,
               input_size: _InputSize) -> Callable[[nn.Module, Any, Any], Any]:
    """The forward hook that edits layer ``name``'s output (through ``transform``'s map when there is one)."""
    if transform is None:
        return lambda module, inputs, output: fn(output)

    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        size = input_size.get(name)
        return transform.restore(output, fn(transform(output, size)), size)

    return hook


@contextmanager
def edit_layers(model: nn.Module, edits: Mapping[str, Callable[[Tensor], Tensor]],
                transforms: Mapping[str, LayerTransform] | None = None) -> Iterator[nn.Module]:
    """Replace layer outputs inside the block: layer ``name``'s output ``y`` becomes ``edits[name](y)``.

    Used for unit ablation and for correcting a layer with its dissected responses. Hooks are removed on
    exit, also when the forward pass raises. A layer with a transform (``transforms``, as for
    :class:`LayerTap`: a ViT token layer and ``imde.tokens_to_map``) is edited as the map the transform makes:
    the edit receives ``transform(y, image_size)`` and its result is put back into the tokens with the
    transform's ``restore(y, edited, image_size)`` (the class and register tokens are kept).

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Identity(), nn.ReLU())
        >>> with edit_layers(net, {"0": lambda y: -y}):
        ...     net(torch.tensor([1.0, -2.0])).tolist()
        [0.0, 2.0]
    """
    targets, transforms = _check_edits(model, edits, transforms)
    input_size = _InputSize()

    handles: list[RemovableHandle] = []
    try:
        if transforms:
            handles.append(input_size.register(model))
        for name, module in targets.items():
            handles.append(module.register_forward_hook(_edit_hook(name, edits[name], transforms.get(name),
                                                                   input_size)))
        yield model
    finally:
        for handle in handles:
            handle.remove()
