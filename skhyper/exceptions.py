"""Warnings and errors raised by skhyper."""

from __future__ import annotations

__all__ = ["DeviceWarning", "WeightsUnavailableError"]


class DeviceWarning(UserWarning):
    """A model saved on one device was loaded on another (e.g. CUDA -> CPU)."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained (offline, missing or unfit file)."""
