"""Shared helpers of the plots: lazy matplotlib, axes, image checks."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

_MISSING_MPL = "skhyper.plotting needs matplotlib: pip install 'skhyper[plot]'"


def _pyplot() -> Any:
    """Import and return ``matplotlib.pyplot``, with an install hint when it is missing."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(_MISSING_MPL) from err
    return plt


def _axes(ax: Any, plt: Any) -> Axes:
    if ax is None:
        _, ax = plt.subplots()
        return ax
    if not hasattr(ax, "imshow") or not hasattr(ax, "figure"):
        raise TypeError(
            f"The 'ax' parameter must be a matplotlib Axes or None; got {type(ax).__name__}."
        )
    return ax


def _check_image(image: Any, param: str = "image") -> np.ndarray:
    """Return ``image`` as float in ``[0, 1]``, shape ``(H, W)`` or ``(H, W, 3|4)``."""
    arr = np.asarray(image)
    if arr.dtype == object or not (
        arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)
        or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(
            f"The '{param}' parameter must be a uint8 or float image; got dtype {arr.dtype}."
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(
            f"The '{param}' parameter must be an image of shape (height, width) or "
            f"(height, width, 3); got shape {arr.shape}."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"The '{param}' parameter is an empty image of shape {arr.shape}.")
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        return arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    if np.issubdtype(arr.dtype, np.signedinteger):
        raise TypeError(
            f"The '{param}' parameter must be a uint8 image or a float image in [0, 1]; got "
            f"dtype {arr.dtype} (convert it, e.g. `img.astype(np.uint8)`)."
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"The '{param}' parameter contains NaN or infinite values.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(
            f"The '{param}' parameter is a float image, so it must lie in [0, 1]; got values "
            f"in [{lo:g}, {hi:g}] (divide a 0-255 image by 255)."
        )
    return np.clip(arr, 0.0, 1.0)


def _show_image(ax: Axes, img: np.ndarray) -> None:
    H, W = img.shape[:2]
    gray = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0} if img.ndim == 2 else {}
    ax.imshow(img, extent=(0, W, H, 0), interpolation="nearest", **gray)


def _check_fraction(value: Any, param: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"The '{param}' parameter must be a number in [0, 1]; got {value!r}.")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"The '{param}' parameter must be a number in [0, 1]; got {value!r}.")
    return float(value)


