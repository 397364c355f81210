"""Keypoint localization inside object frames: boxes, warped frames, targets, heatmap peaks.

The paper's second task: a detector gives a box around the object; the box is cropped and
warped to a fixed ``frame_size`` x ``frame_size`` frame; location-specific classifiers on the
frame's hypercolumns score, for every frame pixel, how likely it lies at each keypoint; the peak
of each heatmap, mapped back through the box, is the prediction.

Coordinates. Keypoints are ``(x, y)`` pixel coordinates: the centre of the pixel in column
``c`` and row ``r`` is ``(c, r)``. Boxes ``(x0, y0, x1, y1)`` are edges: the box ``(0, 0, W, H)``
is the whole ``W`` x ``H`` image (as for the location columns of
:class:`~skhyper.HypercolumnTransformer`). Frame pixels follow the same rules inside the frame.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchvision.ops import roi_align

from ._params import check_keypoint_array
from .features import to_float_image

__all__ = [
    "check_keypoints",
    "clip_boxes",
    "crop_frames",
    "to_frame",
    "from_frame",
    "keypoint_targets",
    "heatmap_peaks",
]


def check_keypoints(keypoints: Any, n_images: int, *, param: str = "keypoints") -> np.ndarray:
    """Validate keypoints of shape ``(n_images, n_keypoints, 2)``; NaN marks a missing one.

    Parameters
    ----------
    keypoints : array-like of shape (n_images, n_keypoints, 2)
        ``(x, y)`` pixel coordinates of each keypoint of each image; NaN for a keypoint that
        is not annotated.
    n_images : int
        The number of images the keypoints belong to (one row each).
    param : str, default="keypoints"
        The parameter name the error messages give.

    Returns
    -------
    keypoints : ndarray of shape (n_images, n_keypoints, 2)
        The keypoints as float64.

    Raises
    ------
    ValueError
        If the shape is wrong, the values are not numeric or infinite, or there is not one
        row per image.

    Examples
    --------
    >>> check_keypoints([[[1.0, 2.0], [float("nan"), float("nan")]]], 1).shape
    (1, 2, 2)
    """
    kp = check_keypoint_array(keypoints, param)
    if kp.shape[0] != n_images:
        raise ValueError(
            f"The '{param}' parameter has {kp.shape[0]} rows but there are {n_images} images; "
            "give one (n_keypoints, 2) array per image (NaN for a keypoint that is not annotated)."
        )
    return kp


def clip_boxes(boxes: np.ndarray, shapes: Sequence[tuple[int, int]], *,
               param: str = "boxes") -> np.ndarray:
    """Clip ``(n, 4)`` boxes to their images, warning when any box reached outside.

    Frames are cropped from inside their images only (:func:`crop_frames`), so a detector's
    box that reaches outside is clipped; the warning says which, since the clipped frame covers
    less than the detector meant.

    Parameters
    ----------
    boxes : ndarray of shape (n, 4)
        ``(x0, y0, x1, y1)`` of each box, in pixel edges.
    shapes : sequence of tuple of int
        ``(height, width)`` of the image of each box.
    param : str, default="boxes"
        The parameter name the error message gives.

    Returns
    -------
    boxes : ndarray of shape (n, 4)
        The float64 boxes, clipped to ``(0, 0, width, height)`` of their images.

    Raises
    ------
    ValueError
        If a box lies wholly outside its image.

    Warns
    -----
    UserWarning
        If any box reached outside its image and was clipped.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     clip_boxes(np.array([[-5.0, 2, 20, 8]]), [(10, 12)]).tolist(), len(w)
    ([[0.0, 2.0, 12.0, 8.0]], 1)
    """
    out = boxes.astype(np.float64, copy=True)
    limits = np.array([[0, 0, w, h] for h, w in shapes], dtype=np.float64)
    out[:, :2] = np.maximum(out[:, :2], 0)
    out[:, 2:] = np.minimum(out[:, 2:], limits[:, 2:])
    bad = np.flatnonzero((out[:, 2] <= out[:, 0]) | (out[:, 3] <= out[:, 1]))
    if bad.size:
        raise ValueError(
            f"The '{param}' parameter has boxes wholly outside their images (rows "
            f"{bad[:5].tolist()}, e.g. {boxes[bad[0]].tolist()} on an image of shape "
            f"{shapes[bad[0]]}); a box must overlap its image."
        )
    moved = np.flatnonzero(np.abs(out - boxes).max(axis=1) > 1e-9)
    if moved.size:
        warnings.warn(
            f"{moved.size} of {len(boxes)} boxes reach outside their images and were clipped to "
            f"them (rows {moved[:5].tolist()}{'...' if moved.size > 5 else ''}); their frames "
            "cover the clipped boxes.",
            UserWarning,
            stacklevel=3,
        )
    return out


def crop_frames(images: Sequence[np.ndarray], boxes: np.ndarray, frame_size: int,
                n_channels: int = 3, *, intensity_range: Any = None) -> list[np.ndarray]:
    """Crop every box and warp it to a ``frame_size`` x ``frame_size`` float32 frame.

    Bilinear sampling with averaging over each output pixel's footprint when shrinking
    (:func:`torchvision.ops.roi_align`, ``aligned=True``), so frame pixel centres map exactly to
    :func:`from_frame` of their coordinates. Boxes must lie inside their images
    (:func:`clip_boxes`). Pixel values are read as by :func:`skhyper.features.to_float_image`
    (``n_channels``, ``intensity_range``).

    Parameters
    ----------
    images : sequence of ndarray
        The images, ``(height, width)`` or ``(height, width, channels)``, one per box.
    boxes : ndarray of shape (n_images, 4)
        ``(x0, y0, x1, y1)`` of the box to crop from each image, inside the image.
    frame_size : int
        Side of the square frame each box is warped to, in pixels.
    n_channels : int, default=3
        Number of channels of the frames (as for :func:`skhyper.features.to_float_image`).
    intensity_range : None, (low, high) or ("percentile", p_low, p_high), default=None
        Which pixel values map to black and white; None: the dtype's range.

    Returns
    -------
    frames : list of ndarray
        One float32 ``(frame_size, frame_size, n_channels)`` frame per box.

    See Also
    --------
    to_frame : Map image coordinates into the frames.
    from_frame : Map frame coordinates back to the images.

    Examples
    --------
    >>> img = np.arange(16, dtype=np.float32).reshape(4, 4, 1) / 15
    >>> frame = crop_frames([img], np.array([[0.0, 0.0, 4.0, 4.0]]), 4, n_channels=1)[0]
    >>> np.allclose(frame[..., 0], img[..., 0])
    True
    """
    frame_size = _check_frame_size(frame_size)
    boxes = _check_frame_boxes(boxes, len(images))
    frames = []
    for img, box in zip(images, boxes):
        x = torch.from_numpy(np.ascontiguousarray(to_float_image(img, n_channels, intensity_range)))
        x = x.permute(2, 0, 1)[None]
        roi = torch.tensor([[0.0, *box]], dtype=torch.float32)
        f = roi_align(x, roi, output_size=(frame_size, frame_size), spatial_scale=1.0,
                      sampling_ratio=-1, aligned=True)
        frames.append(np.ascontiguousarray(f[0].permute(1, 2, 0).numpy()))
    return frames


def _check_frame_size(frame_size: Any) -> int:
    if isinstance(frame_size, bool) or not isinstance(frame_size, numbers.Integral) or (
        frame_size < 1
    ):
        raise ValueError(f"The 'frame_size' parameter must be an int >= 1; got {frame_size!r}.")
    return int(frame_size)


def _check_frame_boxes(boxes: Any, n: int | None = None) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or (n is not None and len(boxes) != n):
        want = "(n, 4)" if n is None else f"({n}, 4)"
        raise ValueError(f"The 'boxes' parameter must have shape {want}; got {boxes.shape}.")
    if not np.all(boxes[:, 2:] > boxes[:, :2]):
        raise ValueError(
            "The 'boxes' parameter must hold (x0, y0, x1, y1) boxes with x1 > x0 and y1 > y0."
        )
    return boxes


def _check_points(points: Any) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[2] != 2:
        raise ValueError(
            "The 'points' parameter must have shape (n_boxes, n_keypoints, 2); got "
            f"{points.shape}."
        )
    return points


def _scale(boxes: np.ndarray, frame_size: int) -> tuple[np.ndarray, np.ndarray]:
    origin = boxes[:, None, :2]
    size = (boxes[:, None, 2:] - boxes[:, None, :2]) / frame_size
    return origin, size


def to_frame(points: np.ndarray, boxes: np.ndarray, frame_size: int) -> np.ndarray:
    """Map ``(n, k, 2)`` image coordinates into the frames of ``boxes``.

    The frame of a box is the box warped to ``frame_size`` x ``frame_size`` pixels
    (:func:`crop_frames`); pixel centres map to pixel centres.

    Parameters
    ----------
    points : ndarray of shape (n, k, 2)
        ``(x, y)`` image coordinates of ``k`` points in each of ``n`` images.
    boxes : ndarray of shape (n, 4)
        ``(x0, y0, x1, y1)`` of the frame's box in each image.
    frame_size : int
        Side of the square frames, in pixels.

    Returns
    -------
    points : ndarray of shape (n, k, 2)
        ``(x, y)`` frame coordinates of the points (outside ``[-0.5, frame_size - 0.5]``
        for points outside their box).

    See Also
    --------
    from_frame : The inverse map.

    Examples
    --------
    >>> to_frame(np.array([[[10.5, 20.5]]]), np.array([[10.0, 20.0, 12.0, 24.0]]), 4).tolist()
    [[[1.5, 0.5]]]
    """
    points = _check_points(points)
    boxes = _check_frame_boxes(boxes, len(points))
    origin, size = _scale(boxes, _check_frame_size(frame_size))
    return (points + 0.5 - origin) / size - 0.5


def from_frame(points: np.ndarray, boxes: np.ndarray, frame_size: int) -> np.ndarray:
    """Map ``(n, k, 2)`` frame coordinates back to image coordinates.

    The inverse of :func:`to_frame`: a keypoint found in a frame (:func:`heatmap_peaks`) is
    mapped back through its box to the image.

    Parameters
    ----------
    points : ndarray of shape (n, k, 2)
        ``(x, y)`` frame coordinates of ``k`` points in each of ``n`` frames.
    boxes : ndarray of shape (n, 4)
        ``(x0, y0, x1, y1)`` of the box each frame was cropped from.
    frame_size : int
        Side of the square frames, in pixels.

    Returns
    -------
    points : ndarray of shape (n, k, 2)
        ``(x, y)`` image coordinates of the points.

    See Also
    --------
    to_frame : The inverse map.

    Examples
    --------
    >>> from_frame(np.array([[[1.5, 0.5]]]), np.array([[10.0, 20.0, 12.0, 24.0]]), 4).tolist()
    [[[10.5, 20.5]]]
    """
    points = _check_points(points)
    boxes = _check_frame_boxes(boxes, len(points))
    origin, size = _scale(boxes, _check_frame_size(frame_size))
    return (points + 0.5) * size + origin - 0.5


def keypoint_targets(
    points: np.ndarray,
    frame_size: int,
    radius: float,
    *,
    n_positives: int | None,
    n_negatives: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Training pixels of one frame: ``(rows, cols)`` and labels (0 background, j + 1 keypoint j).

    A pixel within ``radius`` frame pixels of an annotated keypoint is a positive of its nearest
    such keypoint; up to ``n_positives`` per keypoint are drawn (None: all). ``n_negatives``
    pixels are drawn among those farther than ``radius`` from every annotated keypoint.
    This is the training set of the keypoint classifiers of Hariharan et al. (2015, sec. 5):
    pixels near a keypoint are its positives, the rest of the frame is background.

    Parameters
    ----------
    points : ndarray of shape (n_keypoints, 2)
        ``(x, y)`` frame coordinates of the keypoints of the frame; NaN for one not annotated.
    frame_size : int
        Side of the square frame, in pixels.
    radius : float
        Distance in frame pixels within which a pixel is a positive of a keypoint.
    n_positives : int or None
        Most positives drawn per keypoint; None for all of them.
    n_negatives : int
        Number of background pixels drawn (fewer if the frame has fewer).
    rng : numpy.random.Generator
        The random generator the pixels are drawn with.

    Returns
    -------
    rows_cols : ndarray of int of shape (2, n_pixels)
        Row (first) and column (second) of each drawn pixel.
    labels : ndarray of int of shape (n_pixels,)
        0 for background, ``j + 1`` for a positive of keypoint ``j``.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for object
       segmentation and fine-grained localization", CVPR 2015.

    Examples
    --------
    >>> rc, y = keypoint_targets(np.array([[4.0, 4.0]]), 10, 1.5, n_positives=None,
    ...                          n_negatives=5, rng=np.random.default_rng(0))
    >>> rc.shape, int((y == 1).sum()), int((y == 0).sum())
    ((2, 14), 9, 5)
    """
    rows, cols = np.mgrid[:frame_size, :frame_size]
    annotated = np.flatnonzero(~np.isnan(points).any(axis=1))
    d = np.full((frame_size, frame_size), np.inf)
    nearest = np.full((frame_size, frame_size), -1)
    for j in annotated:
        dj = np.hypot(cols - points[j, 0], rows - points[j, 1])
        closer = dj < d
        d[closer], nearest[closer] = dj[closer], j
    picked_r, picked_c, labels = [], [], []
    for j in annotated:
        r, c = np.nonzero((nearest == j) & (d <= radius))
        if n_positives is not None and len(r) > n_positives:
            keep = rng.choice(len(r), n_positives, replace=False)
            r, c = r[keep], c[keep]
        picked_r.append(r), picked_c.append(c), labels.append(np.full(len(r), j + 1))
    r, c = np.nonzero(d > radius)
    keep = rng.choice(len(r), min(n_negatives, len(r)), replace=False)
    picked_r.append(r[keep]), picked_c.append(c[keep]), labels.append(np.zeros(len(keep), int))
    return np.stack([np.concatenate(picked_r), np.concatenate(picked_c)]), np.concatenate(labels)


def heatmap_peaks(scores: np.ndarray, *, refine: bool = True) -> np.ndarray:
    """``(k, 2)`` frame coordinates ``(x, y)`` of the maximum of each ``(k, h, w)`` score map.

    With ``refine``, a parabola through the maximum and its two neighbours along each axis moves
    the peak by up to half a pixel, which locates a keypoint finer than the frame's pixels.

    Parameters
    ----------
    scores : ndarray of shape (k, h, w)
        One score map (heatmap) per keypoint.
    refine : bool, default=True
        Whether to refine each peak to a sub-pixel position.

    Returns
    -------
    peaks : ndarray of shape (k, 2)
        ``(x, y)`` frame coordinates of the peak of each map.

    Raises
    ------
    ValueError
        If ``scores`` is not a non-empty 3-d array.

    See Also
    --------
    from_frame : Map the peaks back to image coordinates.

    Examples
    --------
    >>> yy, xx = np.mgrid[:9, :9]
    >>> heat = -((xx - 3.3) ** 2 + (yy - 5.0) ** 2)[None].astype(float)
    >>> heatmap_peaks(heat).round(2).tolist(), heatmap_peaks(heat, refine=False).tolist()
    ([[3.3, 5.0]], [[3.0, 5.0]])
    """
    scores = np.asarray(scores)
    if scores.ndim != 3 or 0 in scores.shape:
        raise ValueError(
            "The 'scores' parameter must be (n_keypoints, height, width) score maps; got shape "
            f"{scores.shape}. For one map pass scores[None]."
        )
    k, h, w = scores.shape
    flat = scores.reshape(k, -1).argmax(axis=1)
    r, c = np.divmod(flat, w)
    peaks = np.stack([c, r], axis=1).astype(np.float64)
    if not refine:
        return peaks
    for j in range(k):
        s = scores[j]
        for axis, (i, lo_ok, hi_ok) in enumerate([(c[j], c[j] > 0, c[j] < w - 1),
                                                  (r[j], r[j] > 0, r[j] < h - 1)]):
            if not (lo_ok and hi_ok):
                continue
            if axis == 0:
                left, mid, right = s[r[j], i - 1], s[r[j], i], s[r[j], i + 1]
            else:
                left, mid, right = s[i - 1, c[j]], s[i, c[j]], s[i + 1, c[j]]
            curv = left - 2 * mid + right
            if np.isfinite(curv) and curv < 0:
                peaks[j, axis] += float(np.clip(0.5 * (left - right) / curv, -0.5, 0.5))
    return peaks
