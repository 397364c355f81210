"""Pixels as samples: :class:`PixelSet` and :func:`sample_pixels`.

For pixel labelling a sample is a pixel. A :class:`PixelSet` is a light
reference to pixels of a list of images: the images are shared, never copied;
each pixel is a row ``(image index, row, col)`` of ``coords``. It has a
``shape`` and supports the indexing scikit-learn needs, so a PixelSet is the
``X`` of Pipelines, ``cross_val_score`` and ``GridSearchCV``; ``groups`` keeps
an image's pixels on one side of a ``GroupKFold`` split.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from ._param_validation import Interval, validate_params
from ._validation import check_boxes, check_images, check_masks

__all__ = ["PixelSet", "boundary_band", "sample_pixels", "grid_pixels"]


class PixelSet:
    """Pixels of a list of images, usable as the ``X`` of scikit-learn estimators.

    Parameters
    ----------
    images : list of ndarray of shape (height, width[, channels])
        The images; kept by reference.
    coords : array-like of int, shape (n_pixels, 3)
        ``(image index, row, col)`` of each pixel.
    boxes : array-like of shape (n_images, 4), default=None
        Optional object frame per image, ``(x0, y0, x1, y1)`` in pixels.

    Attributes
    ----------
    shape : tuple of int
        ``(n_pixels, 3)``, like the coords array.
    groups : ndarray of shape (n_pixels,)
        The image index of each pixel, for ``GroupKFold``.

    Examples
    --------
    >>> import numpy as np
    >>> images = [np.zeros((4, 5, 3)), np.zeros((6, 2, 3))]
    >>> X = PixelSet(images, [[0, 0, 0], [0, 3, 4], [1, 5, 1]])
    >>> X.shape, X.groups.tolist()
    ((3, 3), [0, 0, 1])
    >>> X[np.array([False, True, True])].coords.tolist()
    [[0, 3, 4], [1, 5, 1]]
    >>> PixelSet(images, [[1, 6, 0]])
    Traceback (most recent call last):
    ...
    ValueError: The 'coords' parameter has pixels outside their image: row 6, col 0 in image 1 ...
    """

    def __init__(self, images: Sequence[Any], coords: Any, boxes: Any = None) -> None:
        checked, _ = check_images(images, param="images", n_channels=None)
        coords = np.asarray(coords)
        if coords.ndim != 2 or coords.shape[1] != 3:
            raise ValueError(
                "The 'coords' parameter must have shape (n_pixels, 3) holding "
                f"(image index, row, col); got shape {coords.shape}."
            )
        if coords.size and not np.issubdtype(coords.dtype, np.integer):
            raise TypeError(f"The 'coords' parameter must hold integers; got {coords.dtype}.")
        coords = coords.astype(np.int64, copy=False)
        if coords.size:
            idx = coords[:, 0]
            if idx.min() < 0 or idx.max() >= len(checked):
                raise ValueError(
                    f"The 'coords' parameter has image indices in [{idx.min()}, {idx.max()}] "
                    f"but there are {len(checked)} images."
                )
            sizes = np.array([img.shape[:2] for img in checked])
            hw = sizes[idx]
            bad = (coords[:, 1:] < 0).any(axis=1) | (coords[:, 1:] >= hw).any(axis=1)
            if bad.any():
                i, r, c = coords[np.argmax(bad)]
                raise ValueError(
                    "The 'coords' parameter has pixels outside their image: "
                    f"row {r}, col {c} in image {i} of shape {tuple(int(v) for v in sizes[i])}."
                )
        self._images = checked
        self._coords = coords
        self._boxes = check_boxes(boxes, self._images)

    @classmethod
    def _from_parts(cls, images: list, coords: np.ndarray, boxes: np.ndarray | None) -> PixelSet:
        new = cls.__new__(cls)
        new._images, new._coords, new._boxes = images, coords, boxes
        return new

    @property
    def images(self) -> list:
        """The images (shared with every slice of this set)."""
        return self._images

    @property
    def coords(self) -> np.ndarray:
        """``(n_pixels, 3)`` int array of ``(image index, row, col)``."""
        return self._coords

    @property
    def boxes(self) -> np.ndarray | None:
        """``(n_images, 4)`` frames ``(x0, y0, x1, y1)``, or None (whole images)."""
        return self._boxes

    @property
    def groups(self) -> np.ndarray:
        """Image index of each pixel (for ``GroupKFold``)."""
        return self._coords[:, 0]

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self._coords), 3)

    @property
    def n_images(self) -> int:
        return len(self._images)

    def __len__(self) -> int:
        return len(self._coords)

    def __getitem__(self, key: Any) -> PixelSet:
        if isinstance(key, tuple):  # sklearn's _safe_indexing does X[key, ...]
            rest = [k for k in key[1:] if k is not Ellipsis and k != slice(None)]
            if len(key) == 0 or rest:
                raise IndexError("PixelSet supports indexing along pixels only.")
            key = key[0]
        if isinstance(key, numbers.Integral):
            key = [key]
        return PixelSet._from_parts(self._images, self._coords[key], self._boxes)

    def __repr__(self) -> str:
        return f"PixelSet(n_pixels={len(self)}, n_images={self.n_images})"


def _top_up(masks: list[np.ndarray], picks: dict[int, np.ndarray], min_per_class: int,
            ignore_label: int | None, rng: np.random.RandomState) -> None:
    """Add pixels of every class drawn fewer than ``min_per_class`` times (from all images,
    at random, as far as the masks have them), so that no labelled class is left out."""
    drawn: dict[int, int] = {}
    for i, p in picks.items():
        for c, n in zip(*np.unique(masks[i].ravel()[p], return_counts=True)):
            drawn[int(c)] = drawn.get(int(c), 0) + int(n)
    present = np.unique(np.concatenate([np.unique(m) for m in masks]))
    for c in present.tolist():
        if c == ignore_label or drawn.get(c, 0) >= min_per_class:
            continue
        pool = []
        for i, mask in enumerate(masks):
            where = np.flatnonzero(mask.ravel() == c)
            if i in picks:
                where = np.setdiff1d(where, picks[i], assume_unique=True)
            pool.extend((i, w) for w in where.tolist())
        need = min(min_per_class - drawn.get(c, 0), len(pool))
        for k in rng.choice(len(pool), size=need, replace=False):
            i, w = pool[k]
            picks[i] = np.append(picks.get(i, np.empty(0, np.int64)), w)
    for i in picks:
        picks[i] = np.sort(picks[i])


def boundary_band(mask: np.ndarray, width: int, ignore_label: int | None = None
                  ) -> np.ndarray:
    """The labelled pixels within ``width`` pixels of a pixel of another labelled class.

    The band is where a segmenter errs most, so sampling draws part of its training pixels
    there (``boundary_fraction``). Unlabelled pixels (``ignore_label``) are neither in the band
    nor make one: the edge of a scribble is not a boundary between classes.

    Parameters
    ----------
    mask : ndarray of int of shape (height, width)
        The label image.
    width : int
        Half-side of the square window, in pixels: a pixel is in the band if the window of
        side ``2 * width + 1`` around it holds another labelled class.
    ignore_label : int or None, default=None
        The label of unlabelled pixels; None if every pixel is labelled.

    Returns
    -------
    band : ndarray of bool of shape (height, width)
        True for the labelled pixels in the band.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((1, 8), dtype=int)
    >>> mask[0, 4:] = 1
    >>> boundary_band(mask, 1).astype(int).tolist()
    [[0, 0, 0, 1, 1, 0, 0, 0]]
    """
    from scipy.ndimage import maximum_filter, minimum_filter

    m = np.asarray(mask, dtype=np.int64)
    size = 2 * int(width) + 1
    unlabelled = np.zeros(m.shape, bool) if ignore_label is None else m == ignore_label
    # unlabelled pixels can raise neither the window's maximum nor lower its minimum
    hi = np.where(unlabelled, np.iinfo(np.int64).min, m)
    lo = np.where(unlabelled, np.iinfo(np.int64).max, m)
    band = maximum_filter(hi, size=size, mode="nearest") != minimum_filter(
        lo, size=size, mode="nearest")
    return band & ~unlabelled


def _balanced_counts(counts: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` draws across classes as evenly as their pixel counts allow."""
    take = np.zeros_like(counts)
    left = n
    open_ = counts > 0
    while left > 0 and open_.any():
        k = int(open_.sum())
        share = np.zeros_like(counts)
        share[open_] = left // k
        extra = left - (left // k) * k
        share[np.flatnonzero(open_)[:extra]] += 1
        share = np.minimum(share, counts - take)
        take += share
        left = n - int(take.sum())
        open_ = take < counts
        if share.sum() == 0:
            break
    return take


@validate_params(
    {
        "images": "no_validation",
        "masks": "no_validation",
        "n_per_image": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "class_balance": ["boolean"],
        "ignore_label": [numbers.Integral, None],
        "boxes": "no_validation",
        "min_per_class": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "boundary_fraction": [Interval(numbers.Real, 0, 1, closed="both")],
        "boundary_width": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def sample_pixels(
    images: Any,
    masks: Any,
    *,
    n_per_image: int | None = 1000,
    class_balance: bool = False,
    ignore_label: int | None = None,
    boxes: Any = None,
    min_per_class: int | None = None,
    boundary_fraction: float = 0.0,
    boundary_width: int = 3,
    random_state: Any = None,
) -> tuple[PixelSet, np.ndarray]:
    """Draw labelled pixels from images and masks.

    Parameters
    ----------
    images : ndarray or list of ndarray
        ``(height, width[, channels])`` images, a list of them (any sizes) or a
        stack ``(n_images, height, width[, channels])``.
    masks : ndarray or list of ndarray
        One ``(height, width)`` integer label mask per image.
    n_per_image : int or None, default=1000
        Pixels drawn per image, without replacement (all of them when an image
        has fewer). None takes every labelled pixel.
    class_balance : bool, default=False
        If True, draw the same number of pixels from each class present in an
        image (as far as the image has them; the rest goes to the other
        classes). If False, draw uniformly over labelled pixels.
    ignore_label : int or None, default=None
        Label of unlabelled pixels (e.g. for scribbles), never drawn.
    boxes : array-like of shape (n_images, 4), default=None
        Object frame per image, carried by the PixelSet.
    min_per_class : int or None, default=None
        After the per-image draw, every class of the masks with fewer drawn
        pixels gets more (from any image, at random) up to this many, or all
        it has: a class that covers few pixels (a thin strap, a rare tissue)
        is not left out of the sample. None: no top-up.
    boundary_fraction : float in [0, 1], default=0.0
        Share of each image's ``n_per_image`` pixels drawn from the band of
        pixels within ``boundary_width`` of a boundary between two labelled
        classes (:func:`boundary_band`), where a classifier makes its mistakes;
        the rest is drawn as usual from the other pixels. An image with a
        thinner band gives all it has. 0 draws as if there were no band.
    boundary_width : int, default=3
        Half-width in pixels of that band (a pixel belongs to it when a
        ``2 * boundary_width + 1`` square around it holds two labelled classes).
    random_state : int, RandomState instance or None, default=None
        Controls the draw.

    Returns
    -------
    X : PixelSet
        The drawn pixels, ordered by image.
    y : ndarray of shape (n_pixels,)
        Their labels.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    >>> masks = np.zeros((2, 8, 8), dtype=int)
    >>> masks[:, :2] = 1
    >>> masks[:, 7] = 255
    >>> X, y = sample_pixels(images, masks, n_per_image=10, class_balance=True,
    ...                      ignore_label=255, random_state=0)
    >>> X.shape, np.bincount(y).tolist(), X.groups.tolist().count(1)
    ((20, 3), [10, 10], 10)
    """
    if isinstance(n_per_image, bool):  # an Integral to validate_params
        raise ValueError(
            "The 'n_per_image' parameter of sample_pixels must be an int in the range [1, inf) "
            f"or None. Got {n_per_image!r} instead."
        )
    checked, batched = check_images(images, param="images", n_channels=None)
    mask_list = check_masks(masks, checked, param="masks", batched=batched)
    rng = check_random_state(random_state)
    picks: dict[int, np.ndarray] = {}
    for i, mask in enumerate(mask_list):
        flat = mask.ravel()
        cand = np.flatnonzero(flat != ignore_label) if ignore_label is not None else None
        n_cand = flat.size if cand is None else cand.size
        if n_cand == 0:
            continue
        if n_per_image is None or (n_per_image >= n_cand):
            picks[i] = np.arange(flat.size) if cand is None else cand
            continue
        cand = np.arange(flat.size) if cand is None else cand
        near = np.empty(0, dtype=np.int64)
        if boundary_fraction > 0:
            band = cand[boundary_band(mask, boundary_width, ignore_label).ravel()[cand]]
            n_near = min(band.size, round(boundary_fraction * n_per_image))
            near = rng.choice(band, size=n_near, replace=False)
            cand = np.setdiff1d(cand, near, assume_unique=True)
        n_rest = n_per_image - near.size
        if class_balance:
            classes, inverse, counts = np.unique(flat[cand], return_inverse=True,
                                                 return_counts=True)
            take = _balanced_counts(counts, n_rest)
            parts = [
                rng.choice(np.flatnonzero(inverse == k), size=t, replace=False)
                for k, t in enumerate(take) if t > 0
            ]
            rest = cand[np.concatenate(parts)] if parts else near[:0]
        else:
            rest = cand[rng.choice(cand.size, size=n_rest, replace=False)]
        picks[i] = np.sort(np.concatenate([near, rest]))
    if not picks:
        raise ValueError(
            "The 'masks' parameter has no labelled pixels"
            + (f" (every pixel is ignore_label={ignore_label})." if ignore_label is not None
               else ".")
        )
    if min_per_class is not None:
        _top_up(mask_list, picks, min_per_class, ignore_label, rng)
    coords = [np.column_stack([np.full(p.size, i), *np.divmod(p, mask_list[i].shape[1])])
              for i, p in sorted(picks.items())]
    labels = [mask_list[i].ravel()[p] for i, p in sorted(picks.items())]
    X = PixelSet._from_parts(
        checked, np.concatenate(coords).astype(np.int64), check_boxes(boxes, checked)
    )
    return X, np.concatenate(labels)


@validate_params(
    {"images": "no_validation", "step": [Interval(numbers.Integral, 1, None, closed="left")],
     "boxes": "no_validation"},
    prefer_skip_nested_validation=True,
)
def grid_pixels(images: Any, *, step: int = 1, boxes: Any = None) -> PixelSet:
    """Every ``step``-th pixel of every image (all pixels by default), row-major.

    Useful to run a fitted pixel pipeline over whole images:
    ``pipe.predict(grid_pixels(img)).reshape(img.shape[:2])``.

    Parameters
    ----------
    images : ndarray or list of ndarray
        One image ``(height, width)`` or ``(height, width, channels)``, or a list of them.
    step : int, default=1
        Distance in pixels between the chosen pixels along each axis (1: every pixel).
    boxes : array-like of shape (n_images, 4) or None, default=None
        ``(x0, y0, x1, y1)`` frame of the object in each image, carried along for the
        location columns; None for the whole images.

    Returns
    -------
    X : PixelSet
        The images, the chosen pixels ``(image, row, col)`` in row-major order per image,
        and the boxes.

    See Also
    --------
    sample_pixels : Draw training pixels with their labels.

    Examples
    --------
    >>> import numpy as np
    >>> grid_pixels(np.zeros((4, 6)), step=2).coords.tolist()[:4]
    [[0, 0, 0], [0, 0, 2], [0, 0, 4], [0, 2, 0]]
    """
    checked, _ = check_images(images, param="images", n_channels=None)
    parts = []
    for i, img in enumerate(checked):
        rr, cc = np.mgrid[0 : img.shape[0] : step, 0 : img.shape[1] : step]
        parts.append(np.column_stack([np.full(rr.size, i), rr.ravel(), cc.ravel()]))
    return PixelSet._from_parts(checked, np.concatenate(parts).astype(np.int64),
                                check_boxes(boxes, checked))
