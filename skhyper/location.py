"""Object frames, pixel locations in them, and the cells of a K x K grid over the frame.

A *frame* is a box ``(x0, y0, x1, y1)`` in pixel coordinates (the whole image,
``(0, 0, width, height)``, by default). The *location* of pixel ``(row, col)``
in its frame is ``u = (col + 0.5 - x0) / (x1 - x0)``, ``v = (row + 0.5 - y0) /
(y1 - y0)`` (pixel centres, the convention of ``F.interpolate(...,
align_corners=False)``), clipped to ``[0, 1]``: a pixel outside its frame takes
the location of the nearest frame point.

The grid (Hariharan et al. 2015, sec. 3.3) divides the frame into K x K cells
with centres at ``((j + 0.5) / K, (i + 0.5) / K)``; a pixel's score is the
bilinear interpolation of the scores of the classifiers at the (up to) 4
nearest cell centres -- exactly ``F.interpolate`` of a K x K map of scores to
the frame, with clamping beyond the outermost centres (:func:`cell_weights`).
Folding the grid and blending its dense scores is the heads' job
(:mod:`skhyper.heads`); this module is geometry only.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from .sampling import PixelSet

__all__ = [
    "LOCATION",
    "axis_cell_weights",
    "axis_locations",
    "cell_weights",
    "check_locations",
    "frame_of",
    "location_columns",
    "location_map",
    "pixel_locations",
]

# feature_info entry of the two location columns (u, v) appended to a hypercolumn
LOCATION = {"name": "location", "num_chs": 2, "reduction": None, "kind": "location"}
"""The block of a hypercolumn's two location columns ``(u, v)`` (``append_location=True``),
as a ``feature_info``-style description: name, channels, no stride, kind."""


def frame_of(box: Any, image_shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """The frame ``(x0, y0, x1, y1)`` of ``box``, or of the whole image when ``box`` is None.

    Parameters
    ----------
    box : array-like of 4 numbers or None
        The object's box ``(x0, y0, x1, y1)`` in pixel edges (``x1 > x0``, ``y1 > y0``), or
        None for the whole image.
    image_shape : tuple of int
        ``(height, width)`` of the image, used when ``box`` is None.

    Returns
    -------
    frame : tuple of float
        ``(x0, y0, x1, y1)`` as floats.

    Raises
    ------
    ValueError
        If ``box`` is not 4 finite numbers with a positive width and height.

    See Also
    --------
    location_map : The locations of every pixel in a frame.

    Examples
    --------
    >>> frame_of(None, (2, 4))
    (0.0, 0.0, 4.0, 2.0)
    >>> frame_of([1, 1, 3, 2], (2, 4))
    (1.0, 1.0, 3.0, 2.0)
    """
    if box is None:
        return 0.0, 0.0, float(image_shape[1]), float(image_shape[0])
    try:
        x0, y0, x1, y1 = (float(b) for b in box)
    except (TypeError, ValueError):
        raise ValueError(
            f"The 'box' parameter must be 4 numbers (x0, y0, x1, y1); got {box!r}."
        ) from None
    if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
        raise ValueError(
            f"The 'box' parameter must be finite (x0, y0, x1, y1) with x1 > x0 and y1 > y0; "
            f"got {box!r}."
        )
    return x0, y0, x1, y1


def axis_locations(n: int, lo: float, hi: float) -> np.ndarray:
    """Locations in ``[0, 1]`` of pixels ``0 .. n-1`` along an axis framed by ``[lo, hi)``.

    A pixel's location is that of its centre, ``(i + 0.5 - lo) / (hi - lo)``, clipped to
    ``[0, 1]`` so that a pixel outside the frame takes the location of the nearest frame edge.

    Parameters
    ----------
    n : int
        Number of pixels along the axis.
    lo : float
        The frame's first edge along the axis (``x0`` or ``y0``), in pixel edges.
    hi : float
        The frame's last edge along the axis (``x1`` or ``y1``), greater than ``lo``.

    Returns
    -------
    locations : ndarray of shape (n,)
        The float64 location of each pixel, in ``[0, 1]``.

    Examples
    --------
    >>> axis_locations(4, 0, 4).tolist()
    [0.125, 0.375, 0.625, 0.875]
    >>> axis_locations(4, 1, 3).tolist()  # pixels outside the frame are clipped
    [0.0, 0.25, 0.75, 1.0]
    """
    return np.clip((np.arange(n) + 0.5 - lo) / (hi - lo), 0.0, 1.0)


def location_map(image_shape: tuple[int, int], frame: tuple[float, ...]) -> np.ndarray:
    """The float32 locations ``(u, v)`` of every pixel of an image in ``frame``.

    These are the two location columns that a hypercolumn gets for the location-specific
    classifiers of Hariharan et al. (2015, sec. 3.3).

    Parameters
    ----------
    image_shape : tuple of int
        ``(height, width)`` of the image.
    frame : tuple of float
        ``(x0, y0, x1, y1)`` of the frame, as returned by :func:`frame_of`.

    Returns
    -------
    locations : ndarray of shape (height, width, 2)
        ``locations[row, col] == (u, v)``, each in ``[0, 1]``.

    See Also
    --------
    location_columns : The same for chosen pixels only.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for object
       segmentation and fine-grained localization", CVPR 2015.

    Examples
    --------
    >>> location_map((2, 4), frame_of(None, (2, 4)))[1, 2].tolist()
    [0.625, 0.75]
    """
    H, W = image_shape
    x0, y0, x1, y1 = frame
    out = np.empty((H, W, 2), dtype=np.float32)
    out[..., 0] = axis_locations(W, x0, x1)[None, :]
    out[..., 1] = axis_locations(H, y0, y1)[:, None]
    return out


def location_columns(rows: np.ndarray, cols: np.ndarray, image_shape: tuple[int, int],
                     frame: tuple[float, ...]) -> np.ndarray:
    """The float32 locations ``(u, v)`` of pixels ``(rows, cols)`` of an image in ``frame``.

    Parameters
    ----------
    rows : ndarray of int of shape (n,)
        Row of each pixel.
    cols : ndarray of int of shape (n,)
        Column of each pixel.
    image_shape : tuple of int
        ``(height, width)`` of the image.
    frame : tuple of float
        ``(x0, y0, x1, y1)`` of the frame, as returned by :func:`frame_of`.

    Returns
    -------
    locations : ndarray of shape (n, 2)
        ``(u, v)`` of each pixel, in ``[0, 1]``; equal to
        ``location_map(image_shape, frame)[rows, cols]``.

    See Also
    --------
    location_map : The locations of every pixel.

    Examples
    --------
    >>> location_columns(np.array([1]), np.array([2]), (2, 4), frame_of(None, (2, 4))).tolist()
    [[0.625, 0.75]]
    """
    H, W = image_shape
    x0, y0, x1, y1 = frame
    out = np.empty((len(rows), 2), dtype=np.float32)
    out[:, 0] = axis_locations(W, x0, x1)[np.asarray(cols)]
    out[:, 1] = axis_locations(H, y0, y1)[np.asarray(rows)]
    return out


def pixel_locations(X: PixelSet) -> np.ndarray:
    """The locations ``(u, v)`` of the pixels of a pixel set in their frames.

    The frames are ``X.boxes`` (the whole images when None).

    Parameters
    ----------
    X : PixelSet
        Images, the chosen pixels ``(image, row, col)`` and optionally one box per image.

    Returns
    -------
    locations : ndarray of shape (n_pixels, 2)
        The float64 ``(u, v)`` of each pixel of ``X``, in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> X = PixelSet([np.zeros((4, 8))], [[0, 0, 0], [0, 3, 7]])
    >>> pixel_locations(X).tolist()
    [[0.0625, 0.125], [0.9375, 0.875]]
    """
    coords = X.coords
    out = np.empty((len(coords), 2), dtype=np.float64)
    sizes = np.array([img.shape[:2] for img in X.images], dtype=np.float64)
    if X.boxes is None:
        x0 = y0 = np.zeros(len(sizes))
        x1, y1 = sizes[:, 1], sizes[:, 0]
    else:
        x0, y0, x1, y1 = X.boxes.T
    i = coords[:, 0]
    out[:, 0] = (coords[:, 2] + 0.5 - x0[i]) / (x1[i] - x0[i])
    out[:, 1] = (coords[:, 1] + 0.5 - y0[i]) / (y1[i] - y0[i])
    return np.clip(out, 0.0, 1.0, out=out)


def check_locations(locations: np.ndarray, *, clip: bool, columns: Sequence[int]) -> np.ndarray:
    """Validate locations ``(u, v)`` read from the columns of X, or clip them to ``[0, 1]``.

    Locations outside ``[0, 1]`` mean the columns do not hold what the grid classifiers
    expect (wrong columns, or no location columns at all), so they raise unless ``clip``.

    Parameters
    ----------
    locations : array-like of shape (n, 2)
        The ``(u, v)`` read from X.
    clip : bool
        Whether to clip the locations to ``[0, 1]`` instead of raising.
    columns : sequence of int
        The columns of X the locations were read from, named in the error message.

    Returns
    -------
    locations : ndarray of shape (n, 2)
        The locations as float64, clipped when ``clip``.

    Raises
    ------
    ValueError
        If a location lies outside ``[0, 1]`` and ``clip`` is False.

    Examples
    --------
    >>> check_locations([[0.5, 1.2]], clip=True, columns=(4, 5)).tolist()
    [[0.5, 1.0]]
    """
    loc = np.asarray(locations, dtype=np.float64)
    if clip:
        return np.clip(loc, 0.0, 1.0)
    bad = (loc < 0.0) | (loc > 1.0)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"The location columns {tuple(columns)} of X must hold each pixel's normalized "
            f"position (u, v) in [0, 1] within its frame; found {float(loc[row, col])!r} "
            f"(row {row}; values span [{loc.min():.3g}, {loc.max():.3g}]). Use "
            "HypercolumnTransformer(append_location=True) to append them, or "
            "clip_locations=True to clip positions outside the frame."
        )
    return loc


def axis_cell_weights(t: np.ndarray, grid_size: int) -> tuple[np.ndarray, ...]:
    """Bilinear weights of locations ``t`` in ``[0, 1]`` on ``grid_size`` cell centres.

    Along one axis of the grid, the cell centres lie at ``(j + 0.5) / grid_size``; a location
    between two centres is shared between them linearly, one beyond the outermost centres goes
    wholly to the outermost cell.

    Parameters
    ----------
    t : ndarray of shape (n,)
        Locations along the axis, in ``[0, 1]``.
    grid_size : int
        Number of cells K along the axis.

    Returns
    -------
    j0 : ndarray of int64 of shape (n,)
        The lower neighbouring cell of each location.
    j1 : ndarray of int64 of shape (n,)
        The upper neighbouring cell (``j0 + 1``, or ``j0`` when ``grid_size`` is 1).
    w0 : ndarray of shape (n,)
        Weight of ``j0``.
    w1 : ndarray of shape (n,)
        Weight of ``j1``; ``w0 + w1 == 1``.

    See Also
    --------
    cell_weights : The same on both axes of a K x K grid.

    Examples
    --------
    >>> j0, j1, w0, w1 = axis_cell_weights(np.array([0.0, 0.25, 0.5, 1.0]), 2)
    >>> j0.tolist(), j1.tolist(), w1.tolist()
    ([0, 0, 0, 0], [1, 1, 1, 1], [0.0, 0.0, 0.5, 1.0])
    """
    s = np.clip(np.asarray(t, dtype=np.float64) * grid_size - 0.5, 0.0, grid_size - 1)
    j0 = np.minimum(np.floor(s), max(grid_size - 2, 0)).astype(np.int64)
    w1 = s - j0
    j1 = np.minimum(j0 + 1, grid_size - 1)
    return j0, j1, 1.0 - w1, w1


def cell_weights(locations: np.ndarray, grid_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells and bilinear weights of locations ``(u, v)`` on a K x K grid.

    A pixel's grid score is the sum of the scores of the classifiers of its (up to) 4 nearest
    cell centres, weighted by these weights (Hariharan et al. 2015, sec. 3.3): exactly a
    bilinear upsampling of the K x K map of scores to the frame.

    Parameters
    ----------
    locations : ndarray of shape (n, 2)
        ``(u, v)`` of each pixel in its frame, in ``[0, 1]``.
    grid_size : int
        K, the number of cells along each side of the grid (``>= 1``).

    Returns
    -------
    cells : ndarray of int64 of shape (n, 4)
        Cell index ``i * K + j`` (row ``i`` from v, column ``j`` from u) of the 4 neighbours.
    weights : ndarray of shape (n, 4)
        Their bilinear weights, summing to 1 per row.

    Raises
    ------
    ValueError
        If ``locations`` is not ``(n, 2)`` or ``grid_size`` is not an int ``>= 1``.

    See Also
    --------
    axis_cell_weights : The weights along one axis.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for object
       segmentation and fine-grained localization", CVPR 2015.

    Examples
    --------
    >>> cells, w = cell_weights(np.array([[0.5, 0.5]]), 3)  # the centre of cell 4
    >>> cells[0, np.argmax(w[0])], w.sum()
    (np.int64(4), np.float64(1.0))
    """
    locations = np.asarray(locations)
    if locations.ndim != 2 or locations.shape[1] != 2:
        raise ValueError(
            f"The 'locations' parameter must have shape (n, 2), (u, v) per row; got "
            f"{locations.shape}."
        )
    if isinstance(grid_size, bool) or not isinstance(grid_size, numbers.Integral) or (
        grid_size < 1
    ):
        raise ValueError(f"The 'grid_size' parameter must be an int >= 1; got {grid_size!r}.")
    ju0, ju1, wu0, wu1 = axis_cell_weights(locations[:, 0], grid_size)
    iv0, iv1, wv0, wv1 = axis_cell_weights(locations[:, 1], grid_size)
    K = grid_size
    cells = np.stack([iv0 * K + ju0, iv0 * K + ju1, iv1 * K + ju0, iv1 * K + ju1], 1)
    weights = np.stack([wv0 * wu0, wv0 * wu1, wv1 * wu0, wv1 * wu1], 1)
    return cells, weights
