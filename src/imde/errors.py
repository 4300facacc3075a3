"""Exceptions of imde that callers may want to tell apart from other errors."""

from __future__ import annotations


class NonFiniteFeaturesError(ValueError):
    """A layer's features hold NaN or inf values; the message names the layer and how many values are bad."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be had (offline, or in no cache); the message says how to get them."""


class RunFolderBusyError(RuntimeError):
    """Another process is writing the same run folder (it holds the folder's lock); the message names it."""
