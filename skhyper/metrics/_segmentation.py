"""IoU metrics over label maps and the segmentation scorers; see :mod:`skhyper.metrics`."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import sklearn.metrics
from sklearn.metrics import make_scorer

from ._label_maps import (
    check_label,
    check_labels,
    check_pairs,
    label_indexer,
    present_labels,
)

__all__ = [
    "confusion_matrix",
    "iou_per_class",
    "mean_iou",
    "foreground_iou",
    "mean_iou_scorer",
    "foreground_iou_scorer",
    "get_scorer",
]


def _confusion(
    y_true: Any, y_pred: Any, labels: Any, ignore_label: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of shape (n_labels, n_labels + 1); the last column is "predicted elsewhere"."""
    ignore_label = check_label(ignore_label, "ignore_label", allow_none=True)
    trues, preds = check_pairs(y_true, y_pred)
    if labels is None:
        present = np.unique(np.concatenate([present_labels(m) for m in trues + preds]))
        if ignore_label is not None:
            present = present[present != ignore_label]
        labels = present
    else:
        labels = check_labels(labels, ignore_label)
    n = labels.size
    counts = np.zeros((n + 1) * (n + 1), dtype=np.int64)
    if n == 0:
        return np.zeros((0, 1), dtype=np.int64), labels
    index = label_indexer(labels)
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
    background = check_label(background, "background", allow_none=False)
    ignore_label = check_label(ignore_label, "ignore_label", allow_none=True)
    if ignore_label is not None and ignore_label == background:
        raise ValueError(
            f"The 'ignore_label' parameter equals background={background}; that would leave "
            "out every background pixel. Use a different ignore_label."
        )
    trues, preds = check_pairs(y_true, y_pred)
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
