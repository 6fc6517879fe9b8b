"""Errors raised while importing a PyTorch checkpoint; every message names the file."""

from __future__ import annotations


class ConversionError(ValueError):
    """The checkpoint cannot be converted; the message says which file and why."""


class NotACheckpointError(ConversionError):
    """The file is missing, unreadable, or not a PyTorch checkpoint."""


class NotWaveGlowError(ConversionError):
    """The file is a PyTorch checkpoint, but not of a WaveGlow model."""


class MissingKeysError(ConversionError):
    """Weights the inferred architecture needs are not in the checkpoint."""


class UnusedKeysError(ConversionError):
    """The checkpoint holds weights that no part of the model takes."""


class ShapeMismatchError(ConversionError):
    """A weight's shape does not fit the architecture inferred from the others."""


class ParityError(ConversionError):
    """A converted layer does not compute what the PyTorch layer computes."""
