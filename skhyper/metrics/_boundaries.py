"""Boundary metrics over label maps: boundary F-measure and trimap IoU; see :mod:`skhyper.metrics`.

Boundaries are defined on the 4-neighbour grid of the *labelled* pixels (those whose true label
is not ``ignore_label``): a pixel is a boundary pixel of its class in a map when one of its up,
down, left or right neighbours is labelled and carries another label in that map. The image
border is not a boundary, and neither is the edge of an ignored region: ignored pixels are
treated like pixels outside the image, in both maps.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from scipy.ndimage import distance_transform_edt

from ._label_maps import check_label, check_labels, check_pairs, present_labels
from ._segmentation import mean_iou

__all__ = ["boundary_f_score", "trimap_iou"]


def _check_distance(value: Any, param: str, func: str) -> float:
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, numbers.Real)
        or not np.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"The '{param}' parameter of {func} must be a non-negative number of pixels "
            f"(a Euclidean distance, e.g. 2); got {value!r}."
        )
    return float(value)


def _edges(m: np.ndarray, labelled: np.ndarray | None) -> np.ndarray:
    """Pixels of ``m`` with a labelled 4-neighbour of another label (``labelled=None``: all)."""
    edge = np.zeros(m.shape, dtype=bool)
    for axis in (0, 1):
        lo = (slice(None, -1), slice(None)) if axis == 0 else (slice(None), slice(None, -1))
        hi = (slice(1, None), slice(None)) if axis == 0 else (slice(None), slice(1, None))
        differ = m[lo] != m[hi]
        if labelled is not None:
            differ &= labelled[lo] & labelled[hi]
        edge[lo] |= differ
        edge[hi] |= differ
    return edge


def _within(targets: np.ndarray, points: np.ndarray, tolerance: float) -> int:
    """Number of ``points`` within ``tolerance`` (Euclidean) of a ``targets`` pixel.

    Both are boolean maps, each with at least one pixel. The distance transform runs on the
    bounding box of the two: distances to pixels inside it are exact wherever it is cut.
    """
    rows = np.flatnonzero((targets | points).any(axis=1))
    cols = np.flatnonzero((targets | points).any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    dist = distance_transform_edt(~targets[box])
    return int(np.count_nonzero(dist[points[box]] <= tolerance))


def _boundary_counts(
    t: np.ndarray, p: np.ndarray, classes: np.ndarray, ignore_label: int | None, tolerance: float
) -> dict[int, tuple[int, int, int, int]]:
    """Per class present in ``t`` or ``p`` (labelled pixels only, among ``classes``):
    (predicted boundary pixels, matched ones, true boundary pixels, matched ones)."""
    labelled = None if ignore_label is None else t != ignore_label
    if labelled is not None and not labelled.any():
        return {}
    t_edge, p_edge = _edges(t, labelled), _edges(p, labelled)
    if labelled is None:
        present = np.union1d(present_labels(t), present_labels(p))
    else:
        present = np.union1d(present_labels(t[labelled]), present_labels(p[labelled]))
    out = {}
    for c in np.intersect1d(present, classes):
        bt = t_edge & (t == c)
        bp = p_edge & (p == c)
        n_t, n_p = int(np.count_nonzero(bt)), int(np.count_nonzero(bp))
        hit_p = _within(bt, bp, tolerance) if n_t and n_p else 0
        hit_t = _within(bp, bt, tolerance) if n_t and n_p else 0
        out[int(c)] = (n_p, hit_p, n_t, hit_t)
    return out


def _f_measure(n_p: int, hit_p: int, n_t: int, hit_t: int) -> float:
    # DAVIS conventions: no predicted boundary -> precision 1; no true boundary -> recall 1.
    precision = hit_p / n_p if n_p else 1.0
    recall = hit_t / n_t if n_t else 1.0
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def boundary_f_score(
    y_true: Any,
    y_pred: Any,
    *,
    tolerance: float = 2,
    labels: Any = None,
    ignore_label: int | None = None,
    average: str = "image",
) -> float:
    """Boundary F-measure: how well the predicted region boundaries match the true ones.

    The contour accuracy *F* of DAVIS (Perazzi et al., CVPR 2016, after Martin et al., PAMI
    2004) and the BF score of Csurka et al. (BMVC 2013). For each class, a pixel is a boundary
    pixel when one of its 4 neighbours has another label (the image border and the edge of
    ignored regions are not boundaries). *Precision* is the fraction of predicted boundary
    pixels within ``tolerance`` pixels (Euclidean distance) of a true boundary pixel of the
    same class, *recall* the fraction of true boundary pixels within ``tolerance`` of a
    predicted one, and ``F = 2 P R / (P + R)``.

    Parameters
    ----------
    y_true : ndarray or list of ndarray
        True label map of shape (height, width), a list of them (sizes may differ), or a
        stacked ndarray of shape (n_images, height, width).
    y_pred : ndarray or list of ndarray
        Predicted label maps, one per true map and of the same shape.
    tolerance : float, default=2
        Largest distance in pixels at which a boundary pixel still matches. 0 asks for the
        exact pixel. DAVIS uses 0.008 times the image diagonal (about 3 pixels at 480p).
    labels : array-like of int, default=None
        Classes to score. By default every label present in ``y_true`` or ``y_pred``, without
        ``ignore_label``. For figure-ground masks the DAVIS score is the foreground's alone:
        pass ``labels=[1]``; by default the background's boundary (the ring just outside the
        object) is scored too and averaged in, which gives nearly the same number.
    ignore_label : int, default=None
        True label of pixels to leave out (e.g. 255 for "void"). They are treated like pixels
        outside the image, in both maps: no boundary lies on them or along their edge, and a
        prediction there is not scored.
    average : {"image", "pooled"}, default="image"
        ``"image"`` (DAVIS): for each image, the mean over its scored classes of their F, then
        the mean over images; every image weighs the same. ``"pooled"``: boundary pixel counts
        summed over all images for each class (as in the BSDS benchmark), one F per class,
        then the mean over classes.

    Returns
    -------
    score : float
        In ``[0, 1]``; 1.0 for a perfect prediction.

    Raises
    ------
    ValueError
        When no pixel is left to score (every true pixel is ``ignore_label``, or no class of
        ``labels`` occurs).

    See Also
    --------
    trimap_iou : mean IoU in a band around the true boundaries.
    mean_iou : mean IoU over all pixels.

    Notes
    -----
    A class is scored in an image when it occurs on the labelled pixels of the true or the
    predicted map; classes absent from both are skipped (they would otherwise add free
    1.0s), and an image with every pixel ignored is skipped. When a scored class has no
    boundary in either map (it covers every labelled pixel in both), its F is 1.0; when it
    has a boundary in one map only, its F is 0.0. These are the DAVIS conventions
    (precision 1 without predicted boundary pixels, recall 1 without true ones).

    The score looks at boundaries only: a prediction with the right edges but swapped
    labels between two regions still scores high; report it next to an IoU.

    Examples
    --------
    >>> import numpy as np
    >>> y_true = np.zeros((6, 7), dtype=int)
    >>> y_true[1:5, 1:5] = 1
    >>> y_pred = np.roll(y_true, 1, axis=1)  # the square shifted one pixel to the right
    >>> boundary_f_score(y_true, y_pred, tolerance=1)
    1.0
    >>> round(boundary_f_score(y_true, y_pred, tolerance=0, labels=[1]), 4)  # 6 of 12 match
    0.5
    >>> boundary_f_score([y_true, y_true[:3]], [y_true, y_true[:3]])
    1.0
    """
    func = "boundary_f_score"
    tolerance = _check_distance(tolerance, "tolerance", func)
    if not isinstance(average, str) or average not in ("image", "pooled"):
        raise ValueError(
            f"The 'average' parameter of {func} must be 'image' or 'pooled'; got {average!r}."
        )
    ignore_label = check_label(ignore_label, "ignore_label", allow_none=True)
    trues, preds = check_pairs(y_true, y_pred)
    if labels is None:
        classes = np.unique(np.concatenate([present_labels(m) for m in trues + preds]))
        if ignore_label is not None:
            classes = classes[classes != ignore_label]
    else:
        classes = check_labels(labels, ignore_label)
    per_image = [_boundary_counts(t, p, classes, ignore_label, tolerance)
                 for t, p in zip(trues, preds)]
    if not any(per_image):
        raise ValueError(
            f"{func} found nothing to score: every pixel of `y_true` is "
            f"ignore_label={ignore_label} or no class of `labels` occurs in y_true or y_pred."
        )
    if average == "image":
        return float(np.mean([np.mean([_f_measure(*n) for n in counts.values()])
                              for counts in per_image if counts]))
    totals: dict[int, np.ndarray] = {}
    for counts in per_image:
        for c, n in counts.items():
            totals[c] = totals.get(c, 0) + np.asarray(n)
    return float(np.mean([_f_measure(*(int(v) for v in n)) for n in totals.values()]))


def trimap_iou(
    y_true: Any,
    y_pred: Any,
    *,
    width: float = 5,
    labels: Any = None,
    ignore_label: int | None = None,
) -> float:
    """Mean IoU on the pixels near a true boundary (the trimap band of Kohli et al.).

    The band of an image holds the labelled pixels within ``width`` pixels (Euclidean
    distance) of a true boundary pixel, as in :func:`boundary_f_score` (a pixel with a 4-neighbour
    of another true label; the image border and the edge of ignored regions are not
    boundaries). The score is :func:`mean_iou` on the band pixels of all images, pooled. It
    measures how sharp the predicted boundaries are, as in Kohli, Ladicky, Torr, IJCV 2009 and
    the DeepLab papers (Chen et al., ICLR 2015), which plot it against ``width``.

    Parameters
    ----------
    y_true : ndarray or list of ndarray
        True label map of shape (height, width), a list of them (sizes may differ), or a
        stacked ndarray of shape (n_images, height, width).
    y_pred : ndarray or list of ndarray
        Predicted label maps, one per true map and of the same shape.
    width : float, default=5
        Half-width of the band in pixels: a pixel belongs to it when its distance to the
        nearest true boundary pixel is at most ``width``. ``width=0`` keeps the true boundary
        pixels only (on both sides of each edge).
    labels : array-like of int, default=None
        Classes to average over, as in :func:`mean_iou`.
    ignore_label : int, default=None
        True label of pixels to leave out; they are never in the band.

    Returns
    -------
    score : float
        In ``[0, 1]``; 1.0 for a perfect prediction.

    Raises
    ------
    ValueError
        When no image has a true boundary with a labelled pixel in its band.

    See Also
    --------
    boundary_f_score : F-measure of the boundary pixels.
    mean_iou : the same IoU over all pixels.

    Examples
    --------
    >>> import numpy as np
    >>> y_true = np.zeros((8, 8), dtype=int)
    >>> y_true[:, 4:] = 1
    >>> y_pred = np.zeros((8, 8), dtype=int)
    >>> y_pred[:, 5:] = 1  # the edge one pixel off
    >>> round(trimap_iou(y_true, y_pred, width=1), 4)  # band: columns 2..5; column 4 wrong
    0.5833
    >>> round(mean_iou(y_true, y_pred), 4)  # over all pixels the error weighs less
    0.775
    """
    func = "trimap_iou"
    width = _check_distance(width, "width", func)
    ignore_label = check_label(ignore_label, "ignore_label", allow_none=True)
    trues, preds = check_pairs(y_true, y_pred)
    if labels is not None:
        check_labels(labels, ignore_label)
    if ignore_label is None:
        # A label no map and no class uses marks the pixels outside the band.
        used = [present_labels(m) for m in trues + preds]
        if labels is not None:
            used.append(np.asarray(labels, dtype=np.int64))
        used = np.concatenate(used)
        lo, hi = int(used.min()), int(used.max())
        sentinel = lo - 1 if lo > np.iinfo(np.int64).min else hi + 1
    else:
        sentinel = ignore_label
    banded = []
    for t in trues:
        labelled = None if ignore_label is None else t != ignore_label
        edge = _edges(t, labelled)
        band = distance_transform_edt(~edge) <= width if edge.any() else edge
        banded.append(np.where(band, t.astype(np.int64), sentinel))
    if not any(np.any(b != sentinel) for b in banded):
        raise ValueError(
            f"{func} found no true boundary to score: every `y_true` map holds one label "
            "on its labelled pixels. Use mean_iou for maps without boundaries."
        )
    return mean_iou(banded, preds, labels=labels, ignore_label=sentinel)
