"""Label maps: validation of true / predicted maps and of label lists, label indexing."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .._validation import as_array, as_labels

__all__ = ["check_label", "check_labels", "check_maps", "check_pairs", "label_indexer",
           "present_labels"]

# Label spans up to this size are mapped with a lookup table, larger ones with searchsorted.
_MAX_LUT_SPAN = 1 << 20


def check_maps(y: Any, param: str) -> tuple[list[np.ndarray], bool]:
    """Return ``y`` as a list of 2-D integer maps and whether it was a batch."""
    if isinstance(y, (list, tuple)):
        if len(y) == 0:
            raise ValueError(
                f"The '{param}' parameter must hold at least one label map; got an empty "
                f"{type(y).__name__}."
            )
        raw = list(y)
        batched = True
    else:
        arr = np.asarray(y)
        if arr.ndim == 2:
            raw, batched = [arr], False
        elif arr.ndim == 3:
            if arr.shape[0] == 0:
                raise ValueError(
                    f"The '{param}' parameter must hold at least one label map; got shape "
                    f"{arr.shape}."
                )
            raw, batched = list(arr), True
        else:
            raise ValueError(
                f"The '{param}' parameter must be a (height, width) label map, a list of them "
                f"or a (n_images, height, width) stack; got an array of shape {arr.shape}."
            )
    out = []
    for i, m in enumerate(raw):
        where = f"{param}[{i}]" if batched else param
        m = as_array(m, f"The '{where}' parameter", "a (height, width) label map")
        if m.ndim != 2:
            hint = (
                " For one map given as nested lists, pass np.asarray(...) instead of a list."
                if m.ndim < 2
                else ""
            )
            raise ValueError(
                f"The '{where}' parameter must be a 2-D (height, width) label map; got shape "
                f"{m.shape}.{hint}"
            )
        if m.size == 0:
            raise ValueError(f"The '{where}' parameter is an empty label map of shape {m.shape}.")
        out.append(as_labels(m, where))
    return out, batched


def check_pairs(y_true: Any, y_pred: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    trues, true_batched = check_maps(y_true, "y_true")
    preds, pred_batched = check_maps(y_pred, "y_pred")
    if len(trues) != len(preds):
        raise ValueError(
            f"The 'y_pred' parameter has {len(preds)} label maps but `y_true` has "
            f"{len(trues)}; give one predicted map per true map."
        )
    indexed = true_batched or pred_batched
    for i, (t, p) in enumerate(zip(trues, preds)):
        if t.shape != p.shape:
            suffix = f"[{i}]" if indexed else ""
            raise ValueError(
                f"The 'y_pred{suffix}' parameter has shape {p.shape} but `y_true{suffix}` has "
                f"shape {t.shape}; each predicted map must have the shape of its true map."
            )
    return trues, preds


def check_label(value: Any, param: str, *, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        expected = "an integer" + (" or None" if allow_none else "")
        raise ValueError(f"The '{param}' parameter must be {expected}; got {value!r}.")
    return int(value)


def check_labels(labels: Any, ignore_label: int | None) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            "The 'labels' parameter must be a non-empty 1-D list of integer class labels; got "
            f"{labels!r}."
        )
    if (
        arr.dtype == bool
        or arr.dtype.kind not in "iuf"
        or (
            arr.dtype.kind == "f"
            and not (np.isfinite(arr).all() and np.array_equal(arr, np.round(arr)))
        )
    ):
        raise ValueError(f"The 'labels' parameter must hold integer class labels; got {labels!r}.")
    arr = arr.astype(np.int64)
    if np.unique(arr).size != arr.size:
        raise ValueError(f"The 'labels' parameter must not repeat a label; got {labels!r}.")
    if ignore_label is not None and np.any(arr == ignore_label):
        raise ValueError(
            f"The 'labels' parameter contains ignore_label={ignore_label}; pixels with that "
            "label are left out, so remove it from labels (or set ignore_label=None)."
        )
    return arr


def present_labels(m: np.ndarray) -> np.ndarray:
    """Sorted distinct labels of one integer map."""
    lo, hi = int(m.min()), int(m.max())
    if hi - lo <= _MAX_LUT_SPAN:
        counts = np.bincount((m.astype(np.int64, copy=False) - lo).ravel(), minlength=1)
        return np.flatnonzero(counts).astype(np.int64) + lo
    return np.unique(m).astype(np.int64)


def label_indexer(labels: np.ndarray):
    """Return a function mapping a label map to positions in ``labels`` (``n`` if absent)."""
    n = labels.size
    order = np.argsort(labels, kind="stable")
    srt = labels[order]
    lo, hi = int(srt[0]), int(srt[-1])
    if hi - lo <= _MAX_LUT_SPAN:
        # Slots 0 and span + 2 catch everything below and above the label range.
        lut = np.full(hi - lo + 3, n, dtype=np.int64)
        lut[srt - lo + 1] = order

        def index(m: np.ndarray) -> np.ndarray:
            v = np.clip(m.astype(np.int64, copy=False).ravel() - (lo - 1), 0, hi - lo + 2)
            return lut[v]

    else:

        def index(m: np.ndarray) -> np.ndarray:
            v = m.astype(np.int64, copy=False).ravel()
            pos = np.minimum(np.searchsorted(srt, v), n - 1)
            return np.where(srt[pos] == v, order[pos], n)

    return index
