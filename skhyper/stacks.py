"""Z-stacks, time series and channel-first arrays: split into 2-D planes and put back.

skhyper's estimators work on 2-D images. The rule for arrays with more axes:
a 3-D array is always **one** ``(height, width, channels)`` image, and a 4-D
array a stack ``(n_images, height, width, channels)``. A ``(Z, Y, X)``
z-stack, a ``(T, Y, X)`` time series or a channel-first ``(C, Y, X)`` image
(as microscopy files store them) must be told apart explicitly, by naming
its axes:

* :func:`split_planes` turns it into a list of planes ``(Y, X)`` or
  ``(Y, X, C)`` -- the list of images that ``fit`` / ``predict`` take (the
  label stack splits the same way into the list of masks);
* :func:`stack_planes` puts per-plane results (label maps, probabilities)
  back into an array with the stack's axes.

Axis letters: ``Y`` and ``X`` span a plane (both required), ``C`` holds the
channels (moved last in every plane), any other letter (``Z``, ``T``, ``S``,
...) indexes planes; planes come in row-major order of those axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["split_planes", "stack_planes"]


def check_axes(axes: Any, ndim: int | None, param: str = "axes", where: str = "") -> list[str]:
    """The letters of an ``axes`` string, upper case; a TypeError / ValueError naming ``param``
    (and ``where``, e.g. the file) when it is not one letter per axis with ``Y`` and ``X``."""
    if not isinstance(axes, str):
        raise TypeError(
            f"The '{param}' parameter must be a string of axis letters such as 'ZYX', 'TYX', "
            f"'ZYXC' or 'CZYX'; got {type(axes).__name__}."
        )
    letters = list(axes.upper())
    problems = []
    if "Y" not in letters or "X" not in letters:
        problems.append("it must contain Y and X (the plane)")
    if len(set(letters)) != len(letters):
        problems.append("each letter may appear once")
    if not all(a.isalpha() for a in letters):
        problems.append("it must hold letters only")
    if ndim is not None and len(letters) != ndim:
        problems.append(f"it must name each of the {ndim} axes of the array")
    if problems:
        raise ValueError(
            f"The '{param}' parameter got {axes!r}{where}: {'; '.join(problems)}. Use e.g. "
            "'ZYX' for a z-stack, 'TYX' for a time series, 'ZYXC' or 'CZYX' with channels."
        )
    return letters


def split_planes(stack: Any, axes: str) -> list[np.ndarray]:
    """Split an array with named axes into its 2-D planes (views, not copies).

    Parameters
    ----------
    stack : array-like
        E.g. a ``(Z, Y, X)`` z-stack, ``(T, Z, C, Y, X)`` hyperstack or a
        channel-first ``(C, Y, X)`` image. A dask array gives lazy planes.
    axes : str
        One letter per axis of ``stack`` (case-insensitive): ``Y``, ``X`` (the
        plane), optionally ``C`` (channels), any other letters index planes.

    Returns
    -------
    list of ndarray of shape (Y, X) or (Y, X, C)
        In row-major order of the plane axes, in the order ``axes`` names them.

    See Also
    --------
    stack_planes : the inverse for per-plane results.

    Examples
    --------
    >>> import numpy as np
    >>> stack = np.zeros((5, 32, 40), dtype=np.uint16)           # Z, Y, X
    >>> planes = split_planes(stack, "ZYX")
    >>> len(planes), planes[0].shape
    (5, (32, 40))
    >>> hyper = np.zeros((3, 2, 32, 40), dtype=np.uint16)         # T, C, Y, X
    >>> [p.shape for p in split_planes(hyper, "TCYX")]
    [(32, 40, 2), (32, 40, 2), (32, 40, 2)]
    >>> split_planes(np.zeros((2, 8, 8)), "ZYXC")
    Traceback (most recent call last):
    ...
    ValueError: The 'axes' parameter got 'ZYXC': it must name each of the 3 axes of the array. ...
    """
    arr = stack if hasattr(stack, "dask") else np.asarray(stack)  # a dask array stays lazy
    letters = check_axes(axes, arr.ndim)
    lead = [a for a in letters if a not in "YXC"]
    order = [letters.index(a) for a in [*lead, "Y", "X"]]
    if "C" in letters:
        order.append(letters.index("C"))
    moved = arr.transpose(order)
    return [moved[idx] for idx in np.ndindex(*moved.shape[: len(lead)])]


def stack_planes(planes: Sequence[Any], axes: str, shape: Sequence[int] | None = None
                 ) -> np.ndarray:
    """Put per-plane results back into an array with the stack's axes (less ``C``).

    Parameters
    ----------
    planes : list of ndarray of shape (Y, X) or (Y, X, k)
        One result per plane of :func:`split_planes`, in its order: label maps,
        or probabilities / features with ``k`` trailing values.
    axes : str
        The axes of the stack the planes came from (as for
        :func:`split_planes`). ``C`` is dropped: a per-plane result has no
        image channels.
    shape : sequence of int, default=None
        The stack's shape; needed only when ``axes`` has more than one plane
        axis (e.g. ``"TZYX"``), to know how many planes each holds.

    Returns
    -------
    ndarray
        Axes as in ``axes`` without ``C``, then any trailing ``k`` of the
        results: a ``(Z, Y, X)`` label stack for ``"ZYX"`` or ``"CZYX"``,
        ``(Z, Y, X, n_classes)`` for probabilities.

    Examples
    --------
    >>> import numpy as np
    >>> stack = np.arange(2 * 3 * 4).reshape(2, 3, 4)           # Z, Y, X
    >>> labels = [plane > 5 for plane in split_planes(stack, "ZYX")]
    >>> stack_planes(labels, "ZYX").shape
    (2, 3, 4)
    >>> bool((stack_planes(labels, "ZYX") == (stack > 5)).all())
    True
    >>> hyper = np.zeros((2, 3, 8, 9, 2))                         # T, Z, Y, X, C
    >>> proba = [np.zeros((8, 9, 4)) for _ in split_planes(hyper, "TZYXC")]
    >>> stack_planes(proba, "TZYXC", shape=hyper.shape).shape
    (2, 3, 8, 9, 4)
    """
    letters = check_axes(axes, None if shape is None else len(shape))
    if isinstance(planes, np.ndarray) or not isinstance(planes, Sequence) or not len(planes):
        raise ValueError(
            "The 'planes' parameter must be a non-empty list of per-plane results (one per "
            f"plane of split_planes); got {type(planes).__name__} of length "
            f"{len(planes) if hasattr(planes, '__len__') else '?'}."
        )
    lead = [a for a in letters if a not in "YXC"]
    if shape is not None:
        sizes = [int(shape[letters.index(a)]) for a in lead]
    elif len(lead) <= 1:
        sizes = [len(planes)] * len(lead)
    else:
        raise ValueError(
            f"stack_planes needs shape=stack.shape for axes {axes!r}: with more than one plane "
            f"axis ({''.join(lead)}) the number of planes along each is not known."
        )
    if int(np.prod(sizes)) != len(planes):
        raise ValueError(
            f"The 'planes' parameter holds {len(planes)} planes but a stack with axes {axes!r}"
            f"{'' if shape is None else f' and shape {tuple(shape)}'} has {int(np.prod(sizes))}."
        )
    arrays = [np.asarray(p) for p in planes]
    if len({a.shape for a in arrays}) > 1:
        raise ValueError(
            "The 'planes' parameter must hold results of one shape; got shapes "
            f"{sorted({a.shape for a in arrays})}."
        )
    arr = np.stack(arrays)
    arr = arr.reshape(*sizes, *arr.shape[1:])  # (lead..., Y, X, extra...)
    current = [*lead, "Y", "X"]
    target = [a for a in letters if a != "C"]
    perm = [current.index(a) for a in target] + list(range(len(current), arr.ndim))
    return arr.transpose(perm)
