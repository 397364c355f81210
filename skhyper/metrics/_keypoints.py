"""Keypoint localization metrics: PCK, NME and the inter-ocular distance."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .._params import check_keypoint_array
from .._validation import as_array

__all__ = ["pck", "nme", "inter_ocular_distance"]


def _check_pair(y_true: Any, y_pred: Any, func: str) -> tuple[np.ndarray, np.ndarray]:
    y_true = check_keypoint_array(y_true, "y_true", func)
    y_pred = check_keypoint_array(y_pred, "y_pred", func, allow_inf=True)
    if y_pred.shape != y_true.shape:
        raise ValueError(
            f"The 'y_pred' parameter of {func} has shape {y_pred.shape} but 'y_true' has shape "
            f"{y_true.shape}; give one predicted (x, y) per true keypoint."
        )
    return y_true, y_pred


def _annotated(keypoints: np.ndarray) -> np.ndarray:
    """Bool mask of shape (n_images, n_keypoints): both coordinates are finite."""
    return np.isfinite(keypoints).all(axis=-1)


def _bbox_longer_side(keypoints: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """Longer side of each image's bounding box of its annotated keypoints (NaN if none)."""
    masked = np.where(annotated[..., None], keypoints, np.nan)
    out = np.full(keypoints.shape[0], np.nan)
    has = annotated.any(axis=1)
    if has.any():
        extent = np.nanmax(masked[has], axis=1) - np.nanmin(masked[has], axis=1)
        out[has] = extent.max(axis=-1)
    return out


def _check_normalizer(
    normalizer: Any, y_true: np.ndarray, annotated: np.ndarray, func: str
) -> np.ndarray:
    """Return per-image reference distances, checked on the images that have annotations."""
    n_images = y_true.shape[0]
    has = annotated.any(axis=1)
    if normalizer is None:
        norm = _bbox_longer_side(y_true, annotated)
        bad = has & ~(norm > 0)
        if bad.any():
            raise ValueError(
                f"The 'normalizer' parameter of {func} is None, so each image's reference "
                "distance is the longer side of the bounding box of its annotated true "
                f"keypoints, but that is 0 for image(s) {np.flatnonzero(bad).tolist()} (a single "
                "annotated keypoint, or all in one place). Pass a normalizer of shape "
                "(n_images,) instead, e.g. the face box size."
            )
        return norm
    if isinstance(normalizer, (bool, np.bool_)):
        raise TypeError(
            f"The 'normalizer' parameter of {func} must be None, a positive number or an array "
            f"of shape (n_images,); got {normalizer!r}."
        )
    norm = as_array(normalizer, f"The 'normalizer' parameter of {func}",
                    "None, a positive number or an array of shape (n_images,)", dtype=np.float64)
    if norm.ndim == 0:
        norm = np.full(n_images, float(norm))
    elif norm.shape != (n_images,):
        raise ValueError(
            f"The 'normalizer' parameter of {func} must have shape (n_images,) = ({n_images},), "
            f"one reference distance per image of 'y_true'; got shape {norm.shape}."
        )
    bad = has & ~(np.isfinite(norm) & (norm > 0))
    if bad.any():
        idx = np.flatnonzero(bad)
        raise ValueError(
            f"The 'normalizer' parameter of {func} must be finite and > 0 for every image with "
            f"an annotated keypoint; got {norm[idx[:5]].tolist()} for image(s) "
            f"{idx[:5].tolist()}{' ...' if idx.size > 5 else ''}. Drop those images, or set "
            "their true keypoints to NaN to leave them out."
        )
    return norm


def _check_nonempty(annotated: np.ndarray, func: str) -> None:
    if not annotated.any():
        raise ValueError(
            f"{func} found no annotated keypoint: every keypoint of 'y_true' has a NaN "
            "coordinate, so there is nothing to score."
        )


def _per_keypoint_mean(values: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over annotated images, per keypoint; NaN where none is annotated."""
    counts = annotated.sum(axis=0)
    sums = np.where(annotated, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def pck(
    y_true: Any,
    y_pred: Any,
    *,
    threshold: float = 0.1,
    normalizer: Any = None,
    per_keypoint: bool = False,
) -> float | np.ndarray:
    """Percentage of correct keypoints (PCK), as a fraction in ``[0, 1]``.

    A predicted keypoint of image ``i`` is correct when its distance to the true keypoint is at
    most ``threshold * normalizer[i]``. The fraction is taken over all annotated (image,
    keypoint) pairs together.

    Parameters
    ----------
    y_true : array-like of shape (n_images, n_keypoints, 2)
        True ``(x, y)`` pixel coordinates. A keypoint with a NaN coordinate is not annotated:
        that keypoint of that image is left out of the numerator and the denominator.
    y_pred : array-like of shape (n_images, n_keypoints, 2)
        Predicted ``(x, y)`` pixel coordinates. A non-finite prediction (NaN or inf) for an
        annotated keypoint counts as a missing prediction, i.e. wrong.
    threshold : float, default=0.1
        Fraction of the reference distance within which a prediction is correct; > 0.
    normalizer : float or array-like of shape (n_images,), default=None
        Reference distance of each image, e.g. the inter-ocular distance
        (:func:`inter_ocular_distance`) or the face box size; a number applies to every image.
        It must be finite and > 0 for every image with an annotated keypoint (other images
        may hold anything, NaN included). ``None`` uses, per image, the longer side of the
        bounding box of its annotated true keypoints.
    per_keypoint : bool, default=False
        If True, return the fraction for each keypoint instead of the overall one.

    Returns
    -------
    score : float or ndarray of shape (n_keypoints,)
        The overall fraction of correct keypoints; with ``per_keypoint=True`` the fraction for
        each keypoint over the images where it is annotated, NaN for a keypoint that is never
        annotated.

    Raises
    ------
    ValueError
        On a shape mismatch, a bad ``threshold`` or ``normalizer``, or when no keypoint of
        ``y_true`` is annotated.

    See Also
    --------
    nme : the mean normalized error.
    inter_ocular_distance : a common ``normalizer`` for faces.

    Examples
    --------
    >>> import numpy as np
    >>> y_true = np.array([[[0.0, 0.0], [10.0, 0.0], [np.nan, np.nan]],
    ...                    [[0.0, 0.0], [20.0, 0.0], [10.0, 10.0]]])
    >>> y_pred = np.array([[[0.5, 0.0], [10.0, 2.0], [5.0, 5.0]],
    ...                    [[3.0, 4.0], [20.0, 1.0], [np.nan, np.nan]]])
    >>> # reference distances 10 and 20: correct within 1 and 2 px
    >>> pck(y_true, y_pred, threshold=0.1, normalizer=[10.0, 20.0])  # 2 of 5
    0.4
    >>> pck(y_true, y_pred, threshold=0.1, normalizer=[10.0, 20.0], per_keypoint=True)
    array([0.5, 0.5, 0. ])
    >>> pck(y_true, y_pred, threshold=0.3)  # normalizer None: bounding boxes, 10 and 20
    0.8
    """
    func = "pck"
    if (
        isinstance(threshold, (bool, np.bool_))
        or not isinstance(threshold, numbers.Real)
        or not np.isfinite(threshold)
        or threshold <= 0
    ):
        raise ValueError(
            f"The 'threshold' parameter of {func} must be a finite number > 0 (a fraction of "
            f"the reference distance, e.g. 0.1); got {threshold!r}."
        )
    y_true, y_pred = _check_pair(y_true, y_pred, func)
    annotated = _annotated(y_true)
    _check_nonempty(annotated, func)
    norm = _check_normalizer(normalizer, y_true, annotated, func)
    dist = np.linalg.norm(y_pred - y_true, axis=-1)
    with np.errstate(invalid="ignore"):
        correct = (dist <= threshold * norm[:, None]) & np.isfinite(dist)
    correct = correct.astype(np.float64)
    if per_keypoint:
        return _per_keypoint_mean(correct, annotated)
    return float(correct[annotated].mean())


def nme(
    y_true: Any,
    y_pred: Any,
    *,
    normalizer: Any = None,
    per_keypoint: bool = False,
) -> float | np.ndarray:
    """Mean normalized error (NME): the distance to the true keypoint over a reference distance.

    For each annotated (image ``i``, keypoint) pair the error is
    ``||y_pred - y_true|| / normalizer[i]``; the errors are averaged over all annotated pairs
    together (when every keypoint is annotated, this equals the mean over images of each
    image's mean error).

    Parameters
    ----------
    y_true : array-like of shape (n_images, n_keypoints, 2)
        True ``(x, y)`` pixel coordinates. A keypoint with a NaN coordinate is not annotated
        and is left out.
    y_pred : array-like of shape (n_images, n_keypoints, 2)
        Predicted ``(x, y)`` pixel coordinates. Every annotated keypoint needs a finite
        prediction, as no error can be computed for a missing one (use :func:`pck`, which
        counts missing predictions as wrong).
    normalizer : float or array-like of shape (n_images,), default=None
        Reference distance of each image, e.g. the inter-ocular distance
        (:func:`inter_ocular_distance`); a number applies to every image. It must be finite
        and > 0 for every image with an annotated keypoint. ``None`` uses, per image, the
        longer side of the bounding box of its annotated true keypoints.
    per_keypoint : bool, default=False
        If True, return the mean error of each keypoint instead of the overall one.

    Returns
    -------
    error : float or ndarray of shape (n_keypoints,)
        The mean normalized error, >= 0 (lower is better); with ``per_keypoint=True`` the mean
        for each keypoint over the images where it is annotated, NaN for a keypoint that is
        never annotated.

    Raises
    ------
    ValueError
        On a shape mismatch, a bad ``normalizer``, a non-finite prediction for an annotated
        keypoint, or when no keypoint of ``y_true`` is annotated.

    See Also
    --------
    pck : the fraction of keypoints within a distance threshold.

    Examples
    --------
    >>> import numpy as np
    >>> y_true = np.array([[[0.0, 0.0], [10.0, 0.0]], [[0.0, 0.0], [np.nan, np.nan]]])
    >>> y_pred = np.array([[[3.0, 4.0], [10.0, 0.0]], [[0.0, 2.0], [np.nan, np.nan]]])
    >>> nme(y_true, y_pred, normalizer=[10.0, 4.0])  # (0.5 + 0 + 0.5) / 3
    0.3333333333333333
    >>> nme(y_true, y_pred, normalizer=[10.0, 4.0], per_keypoint=True)
    array([0.5, 0. ])
    """
    func = "nme"
    y_true, y_pred = _check_pair(y_true, y_pred, func)
    annotated = _annotated(y_true)
    _check_nonempty(annotated, func)
    missing = annotated & ~np.isfinite(y_pred).all(axis=-1)
    if missing.any():
        img, kp = np.argwhere(missing)[0]
        raise ValueError(
            f"The 'y_pred' parameter of nme has {int(missing.sum())} non-finite prediction(s) "
            f"for annotated keypoints (first: image {img}, keypoint {kp}); the error of a "
            "missing prediction is undefined. Predict every annotated keypoint, or use pck, "
            "which counts a missing prediction as wrong."
        )
    norm = _check_normalizer(normalizer, y_true, annotated, func)
    with np.errstate(invalid="ignore"):
        err = np.linalg.norm(y_pred - y_true, axis=-1) / norm[:, None]
    if per_keypoint:
        return _per_keypoint_mean(err, annotated)
    return float(err[annotated].mean())


def inter_ocular_distance(keypoints: Any, *, left: int, right: int) -> np.ndarray:
    """Distance between two keypoints in each image, e.g. the outer eye corners.

    Parameters
    ----------
    keypoints : array-like of shape (n_images, n_keypoints, 2)
        ``(x, y)`` pixel coordinates; NaN marks a keypoint that is not annotated.
    left : int
        Index of the left eye keypoint (e.g. the subject's left outer eye corner).
    right : int
        Index of the right eye keypoint; must differ from ``left``.

    Returns
    -------
    iod : ndarray of shape (n_images,)
        Euclidean distance between the two keypoints of each image; NaN where either is not
        annotated.

    See Also
    --------
    pck, nme : take this as their ``normalizer``.

    Examples
    --------
    >>> import numpy as np
    >>> kp = np.array([[[10.0, 20.0], [40.0, 60.0], [25.0, 40.0]],
    ...                [[0.0, 0.0], [np.nan, np.nan], [5.0, 5.0]]])
    >>> inter_ocular_distance(kp, left=1, right=0)
    array([50., nan])
    """
    func = "inter_ocular_distance"
    keypoints = check_keypoint_array(keypoints, "keypoints", func)
    n_keypoints = keypoints.shape[1]
    for name, value in (("left", left), ("right", right)):
        if (
            isinstance(value, (bool, np.bool_))
            or not isinstance(value, numbers.Integral)
            or not 0 <= value < n_keypoints
        ):
            raise ValueError(
                f"The '{name}' parameter of {func} must be a keypoint index, an int in "
                f"[0, {n_keypoints}) for 'keypoints' with {n_keypoints} keypoints; got "
                f"{value!r}."
            )
    if left == right:
        raise ValueError(
            f"The 'left' and 'right' parameters of {func} must be two different keypoints; "
            f"both are {left}."
        )
    return np.linalg.norm(keypoints[:, int(left)] - keypoints[:, int(right)], axis=-1)
