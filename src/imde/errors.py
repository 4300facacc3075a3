"""Exceptions of imde that are not a ``ValueError`` or ``FileNotFoundError`` about an argument."""

from __future__ import annotations


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be had (offline, or in no cache); the message says how to get them."""


class RunFolderBusyError(RuntimeError):
    """Another process is writing the same run folder (it holds the folder's lock); the message names it."""
