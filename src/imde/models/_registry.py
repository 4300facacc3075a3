"""The model registry: ``@register_model`` builders, ``create(name)`` and ``list_models()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from torch import nn

_Builder = TypeVar("_Builder", bound=Callable[..., nn.Module])
_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(builder: _Builder) -> _Builder:
    """Register a model builder under its function name; ``builder(pretrained=False, **kwargs)`` returns the model.

    Raises:
        ValueError: when the name is already registered.
    """
    name = builder.__name__
    if name in _MODELS:
        raise ValueError(f"register_model: a model named {name!r} is already registered")
    _MODELS[name] = builder
    return builder


def list_models() -> list[str]:
    """Return the names of all registered models, sorted.

    >>> "mff_resnet50" in list_models()
    True
    """
    return sorted(_MODELS)


def create(name: str, pretrained: bool = False, **kwargs: object) -> nn.Module:
    """Build a registered model.

    Args:
        name: A name from :func:`list_models`.
        pretrained: Load ImageNet weights into the encoder through timm (needs the network or timm's cache);
            pass ``pretrained_file=PATH`` to load a local encoder file instead.
        **kwargs: Builder-specific options (e.g. ``d_units`` for ``mff_tiny``).

    Raises:
        ValueError: when ``name`` is not registered.

    >>> model = create("mff_tiny")
    >>> model.output_stride
    2
    """
    if name not in _MODELS:
        raise ValueError(f"model name={name!r} is not registered; expected one of {', '.join(list_models())}")
    return _MODELS[name](pretrained=pretrained, **kwargs)


def model_options(name: str) -> dict[str, object]:
    """The options ``create(name, **kwargs)`` accepts besides ``pretrained``, with their defaults.

    >>> model_options("mff_tiny")["d_units"]
    16
    """
    if name not in _MODELS:
        raise ValueError(f"model name={name!r} is not registered; expected one of {', '.join(list_models())}")
    parameters = inspect.signature(_MODELS[name]).parameters.values()
    return {p.name: p.default for p in parameters
            if p.name != "pretrained" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
