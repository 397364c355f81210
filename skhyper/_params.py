"""Checks of single parameters: devices, positive ints, keypoint arrays."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from ._validation import as_array

__all__ = ["check_keypoint_array", "check_positive_int", "resolve_device"]


def resolve_device(device: Any, *, param: str = "device") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a torch.device into a device.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("tpu")
    Traceback (most recent call last):
    ...
    ValueError: The 'device' parameter must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'tpu'.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(
            f"The '{param}' parameter must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}."
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"The '{param}' parameter is {device!r} but CUDA is not available on this "
                "machine; use device='auto' or 'cpu'."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"The '{param}' parameter is {device!r} but only {torch.cuda.device_count()} "
                "CUDA devices are visible."
            )
    return dev


def check_positive_int(value: Any, param: str, *, allow_none: bool = False) -> int | None:
    """Check that ``value`` is a positive integer (or None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        expected = "a positive integer" + (" or None" if allow_none else "")
        raise ValueError(f"The '{param}' parameter must be {expected}; got {value!r}.")
    return int(value)


def check_keypoint_array(
    y: Any, param: str, func: str | None = None, *, allow_inf: bool = False
) -> np.ndarray:
    """Return ``y`` as a float64 ``(n_images, n_keypoints, 2)`` array of (x, y) coordinates.

    NaN marks a keypoint that is not annotated; infinite values raise unless ``allow_inf``.
    Errors name ``param`` (and the function ``func`` when given).

    Examples
    --------
    >>> check_keypoint_array([[[1.0, 2.0], [float("nan"), 3.0]]], "keypoints").shape
    (1, 2, 2)
    """
    where = (f"The '{param}' parameter of {func}" if func is not None
             else f"The '{param}' parameter")
    arr = as_array(y, where, "a numeric array of shape (n_images, n_keypoints, 2)")
    if arr.dtype == bool or arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{where} must be a numeric array of shape (n_images, n_keypoints, 2) holding real "
            f"(x, y) pixel coordinates; got {type(y).__name__} of dtype {arr.dtype}."
        )
    if arr.ndim != 3 or arr.shape[-1] != 2:
        hint = (f" For a single image, pass {param}[np.newaxis]."
                if arr.ndim == 2 and arr.shape[-1] == 2 else "")
        raise ValueError(
            f"{where} must have shape (n_images, n_keypoints, 2) holding (x, y) pixel "
            f"coordinates per keypoint; got shape {arr.shape}.{hint}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"{where} must hold at least one image and one keypoint; got shape {arr.shape}."
        )
    arr = arr.astype(np.float64, copy=False)
    if not allow_inf and np.isinf(arr).any():
        raise ValueError(
            f"{where} holds infinite coordinates; use NaN to mark a keypoint that is not "
            "annotated."
        )
    return arr
