"""IoU metrics over label maps and the segmentation scorers; see :mod:`skhyper.metrics`."""

from __future__ import annotations

import copy
import numbers
from typing import Any

import numpy as np
import sklearn.metrics
from sklearn.metrics import make_scorer

from .._validation import as_labels

__all__ = [
    "confusion_matrix",
    "iou_per_class",
    "mean_iou",
    "foreground_iou",
    "mean_iou_scorer",
    "foreground_iou_scorer",
    "get_scorer",
]

# Label spans up to this size are mapped with a lookup table, larger ones with searchsorted.
_MAX_LUT_SPAN = 1 << 20


def _check_maps(y: Any, param: str) -> tuple[list[np.ndarray], bool]:
    """Return ``y`` as a list of 2-D integer maps and whether it was a batch."""
    if isinstance(y, (list, tuple)):
        if len(y) == 0:
            raise ValueError(
                f"The parameter `{param}` must hold at least one label map; got an empty "
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
                    f"The parameter `{param}` must hold at least one label map; got shape "
                    f"{arr.shape}."
                )
            raw, batched = list(arr), True
        else:
            raise ValueError(
                f"The parameter `{param}` must be a (height, width) label map, a list of them "
                f"or a (n_images, height, width) stack; got an array of shape {arr.shape}."
            )
    out = []
    for i, m in enumerate(raw):
        where = f"{param}[{i}]" if batched else param
        try:
            m = np.asarray(m)
        except Exception as err:  # ragged nested lists and the like
            raise TypeError(
                f"The parameter `{where}` must be a (height, width) label map; got "
                f"{type(m).__name__} that numpy cannot convert ({err})."
            ) from err
        if m.ndim != 2:
            hint = (
                " For one map given as nested lists, pass np.asarray(...) instead of a list."
                if m.ndim < 2
                else ""
            )
            raise ValueError(
                f"The parameter `{where}` must be a 2-D (height, width) label map; got shape "
                f"{m.shape}.{hint}"
            )
        if m.size == 0:
            raise ValueError(f"The parameter `{where}` is an empty label map of shape {m.shape}.")
        out.append(as_labels(m, where))
    return out, batched


def _check_pairs(y_true: Any, y_pred: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    trues, true_batched = _check_maps(y_true, "y_true")
    preds, pred_batched = _check_maps(y_pred, "y_pred")
    if len(trues) != len(preds):
        raise ValueError(
            f"The parameter `y_pred` has {len(preds)} label maps but `y_true` has "
            f"{len(trues)}; give one predicted map per true map."
        )
    indexed = true_batched or pred_batched
    for i, (t, p) in enumerate(zip(trues, preds)):
        if t.shape != p.shape:
            suffix = f"[{i}]" if indexed else ""
            raise ValueError(
                f"The parameter `y_pred{suffix}` has shape {p.shape} but `y_true{suffix}` has "
                f"shape {t.shape}; each predicted map must have the shape of its true map."
            )
    return trues, preds


def _check_label(value: Any, param: str, *, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        expected = "an integer" + (" or None" if allow_none else "")
        raise ValueError(f"The '{param}' parameter must be {expected}; got {value!r}.")
    return int(value)


def _check_labels(labels: Any, ignore_label: int | None) -> np.ndarray:
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


def _present_labels(m: np.ndarray) -> np.ndarray:
    """Sorted distinct labels of one integer map."""
    lo, hi = int(m.min()), int(m.max())
    if hi - lo <= _MAX_LUT_SPAN:
        counts = np.bincount((m.astype(np.int64, copy=False) - lo).ravel(), minlength=1)
        return np.flatnonzero(counts).astype(np.int64) + lo
    return np.unique(m).astype(np.int64)


def _label_indexer(labels: np.ndarray):
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


def _confusion(
    y_true: Any, y_pred: Any, labels: Any, ignore_label: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of shape (n_labels, n_labels + 1); the last column is "predicted elsewhere"."""
    ignore_label = _check_label(ignore_label, "ignore_label", allow_none=True)
    trues, preds = _check_pairs(y_true, y_pred)
    if labels is None:
        present = np.unique(np.concatenate([_present_labels(m) for m in trues + preds]))
        if ignore_label is not None:
            present = present[present != ignore_label]
        labels = present
    else:
        labels = _check_labels(labels, ignore_label)
    n = labels.size
    counts = np.zeros((n + 1) * (n + 1), dtype=np.int64)
    if n == 0:
        return np.zeros((0, 1), dtype=np.int64), labels
    index = _label_indexer(labels)
    for t, p in zip(trues, preds):
        ti, pi = index(t), index(p)
        keep = ti < n  # drops ignore_label and true labels outside `labels`
        counts += np.bincount(ti[keep] * (n + 1) + pi[keep], minlength=(n + 1) * (n + 1))
    return counts.reshape(n + 1, n + 1)[:n], labels


def confusion_matrix(
    y_true: Any,
    y_pred: Any,
    *,
    labels: Any = None,
    ignore_label: int | None = None,
) -> np.ndarray:
    """Pixel confusion matrix of label maps, pooled over all pixels of all images.

    Parameters
    ----------
    y_true : ndarray or list of ndarray
        True label map of shape (height, width), a list of them (sizes may differ), or a
        stacked ndarray of shape (n_images, height, width).
    y_pred : ndarray or list of ndarray
        Predicted label maps, one per true map and of the same shape.
    labels : array-like of int, default=None
        Classes, in the order of the rows and columns. By default the sorted union of the
        labels present in ``y_true`` and ``y_pred``, without ``ignore_label``. When given,
        pixels whose true label is not in ``labels`` are left out, and a pixel whose predicted
        label is not in ``labels`` is a miss for its true class that shows in no column (its
        row then sums to less than the number of true pixels of that class).
    ignore_label : int, default=None
        True label of pixels to leave out (e.g. 255 for "void" borders). Must not be in
        ``labels``. A *predicted* ``ignore_label`` is an ordinary wrong label.

    Returns
    -------
    cm : ndarray of shape (n_labels, n_labels), dtype int64
        ``cm[i, j]`` is the number of pixels of true class ``labels[i]`` predicted as
        ``labels[j]``.

    See Also
    --------
    iou_per_class : intersection over union of each class, from these counts.
    sklearn.metrics.confusion_matrix : the same on flat label vectors.

    Examples
    --------
    >>> import numpy as np
    >>> y_true = np.array([[0, 0, 1], [1, 2, 2]])
    >>> y_pred = np.array([[0, 1, 1], [1, 2, 0]])
    >>> confusion_matrix(y_true, y_pred)
    array([[1, 1, 0],
           [0, 2, 0],
           [1, 0, 1]])
    >>> confusion_matrix(y_true, y_pred, labels=[1, 2])
    array([[2, 0],
           [0, 1]])
    """
    counts, _ = _confusion(y_true, y_pred, labels, ignore_label)
    return np.ascontiguousarray(counts[:, :-1])


def iou_per_class(
    y_true: Any,
    y_pred: Any,
    *,
    labels: Any = None,
    ignore_label: int | None = None,
) -> np.ndarray:
    """Intersection over union of each class, pooled over all pixels of all images.

    Parameters
    ----------
    y_true : ndarray or list of ndarray
        True label map of shape (height, width), a list of them (sizes may differ), or a
        stacked ndarray of shape (n_images, height, width).
    y_pred : ndarray or list of ndarray
        Predicted label maps, one per true map and of the same shape.
    labels : array-like of int, default=None
        Classes to score, as in :func:`confusion_matrix`. A predicted label outside
        ``labels`` counts as a false negative of the true class.
    ignore_label : int, default=None
        True label of pixels to leave out.

    Returns
    -------
    iou : ndarray of shape (n_labels,), dtype float64
        ``TP / (TP + FP + FN)`` for each class, in the order of ``labels``; NaN for a class
        with ``TP + FP + FN == 0`` (neither present nor predicted).

    See Also
    --------
    mean_iou : the mean over classes.

    Examples
    --------
    >>> import numpy as np
    >>> y_true = np.array([[0, 0, 1], [1, 2, 2]])
    >>> y_pred = np.array([[0, 1, 1], [1, 2, 0]])
    >>> iou_per_class(y_true, y_pred)
    array([0.33333333, 0.66666667, 0.5       ])
    >>> iou_per_class(y_true, y_pred, labels=[1, 2, 3])  # class 0 pixels left out
    array([1. , 0.5, nan])
    """
    counts, _ = _confusion(y_true, y_pred, labels, ignore_label)
    tp = np.diagonal(counts).astype(np.float64)
    fn = counts.sum(axis=1) - tp  # includes predictions outside `labels`
    fp = counts[:, :-1].sum(axis=0) - tp
    denom = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


def mean_iou(
    y_true: Any,
    y_pred: Any,
    *,
    labels: Any = None,
    ignore_label: int | None = None,
) -> float:
    """Mean over classes of the intersection over union, pooled over all pixels (PASCAL VOC).

    Each class's IoU is computed from the pixels of all images together (see
    :func:`iou_per_class`), then the IoUs are averaged over classes, skipping classes that
    are neither present nor predicted.

    Parameters
    ----------
    y_true : ndarray or list of ndarray
        True label map of shape (height, width), a list of them (sizes may differ), or a
        stacked ndarray of shape (n_images, height, width).
    y_pred : ndarray or list of ndarray
        Predicted label maps, one per true map and of the same shape.
    labels : array-like of int, default=None
        Classes to average over, as in :func:`confusion_matrix`.
    ignore_label : int, default=None
        True label of pixels to leave out.

    Returns
    -------
    score : float
        In ``[0, 1]``; 1.0 for a perfect prediction.

    Raises
    ------
    ValueError
        When no pixel is left to score (every true pixel is ``ignore_label`` or outside
        ``labels``).

    See Also
    --------
    foreground_iou : IoU of foreground against background.

    Examples
    --------
    >>> import numpy as np
    >>> y_true = np.array([[0, 0, 1], [1, 2, 2]])
    >>> y_pred = np.array([[0, 1, 1], [1, 2, 0]])
    >>> round(mean_iou(y_true, y_pred), 4)
    0.5
    >>> mean_iou([y_true, y_true[:, :2]], [y_true, y_true[:, :2]])
    1.0
    """
    iou = iou_per_class(y_true, y_pred, labels=labels, ignore_label=ignore_label)
    if np.isnan(iou).all():
        raise ValueError(
            "mean_iou found no labelled pixels: every pixel of `y_true` is ignore_label or "
            "outside `labels`, so there is nothing to score."
        )
    return float(np.nanmean(iou))


def foreground_iou(
    y_true: Any,
    y_pred: Any,
    *,
    background: int = 0,
    ignore_label: int | None = None,
    average: str = "pooled",
) -> float:
    """Intersection over union of the foreground, every label but ``background`` as one class.

    Parameters
    ----------
    y_true : ndarray or list of ndarray
        True label map of shape (height, width), a list of them (sizes may differ), or a
        stacked ndarray of shape (n_images, height, width).
    y_pred : ndarray or list of ndarray
        Predicted label maps, one per true map and of the same shape.
    background : int, default=0
        The background label; any other label (in ``y_true`` or ``y_pred``) is foreground.
    ignore_label : int, default=None
        True label of pixels to leave out. Must differ from ``background``.
    average : {"pooled", "image"}, default="pooled"
        ``"pooled"``: one IoU from the pixels of all images together. ``"image"``: the mean
        over images of each image's IoU, where an image with no true and no predicted
        foreground scores 1.0 and an image with every pixel ignored is skipped.

    Returns
    -------
    score : float
        In ``[0, 1]``; 1.0 when no image has true or predicted foreground.

    Raises
    ------
    ValueError
        When every pixel is ``ignore_label``.

    See Also
    --------
    mean_iou : mean IoU over all classes.

    Examples
    --------
    >>> import numpy as np
    >>> y_true = [np.array([[1, 1, 0, 0]]), np.array([[0, 2]])]
    >>> y_pred = [np.array([[1, 0, 0, 0]]), np.array([[0, 0]])]
    >>> foreground_iou(y_true, y_pred)  # 1 / 3 pooled
    0.3333333333333333
    >>> foreground_iou(y_true, y_pred, average="image")  # (1/2 + 0) / 2
    0.25
    """
    if not isinstance(average, str) or average not in ("pooled", "image"):
        raise ValueError(
            f"The 'average' parameter of foreground_iou must be 'pooled' or 'image'; got "
            f"{average!r}."
        )
    background = _check_label(background, "background", allow_none=False)
    ignore_label = _check_label(ignore_label, "ignore_label", allow_none=True)
    if ignore_label is not None and ignore_label == background:
        raise ValueError(
            f"The 'ignore_label' parameter equals background={background}; that would leave "
            "out every background pixel. Use a different ignore_label."
        )
    trues, preds = _check_pairs(y_true, y_pred)
    inters, unions, valid_images = [], [], []
    for t, p in zip(trues, preds):
        t_fg, p_fg = t != background, p != background
        if ignore_label is None:
            valid_images.append(True)
            inters.append(np.count_nonzero(t_fg & p_fg))
            unions.append(np.count_nonzero(t_fg | p_fg))
        else:
            valid = t != ignore_label
            valid_images.append(bool(valid.any()))
            inters.append(np.count_nonzero(t_fg & p_fg & valid))
            unions.append(np.count_nonzero((t_fg | p_fg) & valid))
    if not any(valid_images):
        raise ValueError(
            f"foreground_iou found no labelled pixels: every pixel of `y_true` is "
            f"ignore_label={ignore_label}, so there is nothing to score."
        )
    if average == "pooled":
        inter, union = sum(inters), sum(unions)
        return float(inter / union) if union > 0 else 1.0
    scores = [(i / u if u > 0 else 1.0) for i, u, ok in zip(inters, unions, valid_images) if ok]
    return float(np.mean(scores))


mean_iou_scorer = make_scorer(mean_iou)
foreground_iou_scorer = make_scorer(foreground_iou)

_SCORERS = {
    "mean_iou": mean_iou_scorer,
    "foreground_iou": foreground_iou_scorer,
    "foreground_iou_image": make_scorer(foreground_iou, average="image"),
}


def get_scorer(name: Any) -> Any:
    """Get a scorer by name: the segmentation scorers here, else scikit-learn's.

    Parameters
    ----------
    name : str, callable or None
        ``"mean_iou"`` (:func:`mean_iou`), ``"foreground_iou"`` (:func:`foreground_iou`,
        pooled) or ``"foreground_iou_image"`` (:func:`foreground_iou` with
        ``average="image"``); anything else goes to :func:`sklearn.metrics.get_scorer`
        (a scikit-learn scorer name, a callable, or None).

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y)``, greater is better; a fresh copy for a name.

    Examples
    --------
    >>> get_scorer("foreground_iou_image")
    make_scorer(foreground_iou, response_method='predict', average=image)
    >>> get_scorer("accuracy")
    make_scorer(accuracy_score, response_method='predict')
    """
    if isinstance(name, str) and name in _SCORERS:
        return copy.deepcopy(_SCORERS[name])
    try:
        return sklearn.metrics.get_scorer(name)
    except ValueError as err:
        if not isinstance(name, str):
            raise
        raise ValueError(
            f"{name!r} is not a valid scoring value. Use 'mean_iou', 'foreground_iou', "
            "'foreground_iou_image' or a scikit-learn scorer name "
            "(sklearn.metrics.get_scorer_names())."
        ) from err
