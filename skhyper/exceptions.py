"""Warnings and errors raised by skhyper."""

from __future__ import annotations

__all__ = ["DeviceWarning", "IntensityWarning", "WeightsUnavailableError"]


class DeviceWarning(UserWarning):
    """A model saved on one device was loaded on another (e.g. CUDA -> CPU)."""


class IntensityWarning(UserWarning):
    """Images would reach the backbone nearly black or outside [0, 1]; set ``intensity_range``."""


class WeightsUnavailableError(RuntimeError, ValueError):
    """Pretrained weights could not be obtained (offline, missing, corrupt or unfit file).

    A ``ValueError`` as well: a bad ``weights`` value is bad input.
    """
