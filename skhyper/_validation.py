"""Input checks at the public boundary, with messages that name the parameter.

A leaf module: it imports nothing from skhyper. Public functions and
estimators validate their inputs here, once per call, and pass the checked
values to cores that trust them. Checked images come back as a
``CheckedImages`` list: checking it again costs nothing (no second scan
of the pixels), so an image is scanned once however many layers of the
package it passes through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckedImages",
    "as_array",
    "check_boxes",
    "check_images",
    "check_masks",
]


class CheckedImages(list):
    """Validated images: a list of ``(height, width, channels)`` arrays.

    ``batched`` is False when a single image was passed. :func:`check_images`
    returns its input unchanged (after the cheap channel-count rule) when it
    is already a ``CheckedImages``.
    """

    def __init__(self, images: Sequence[np.ndarray] = (), batched: bool = True) -> None:
        super().__init__(images)
        self.batched = batched


def as_array(x: Any, where: str, expected: str, *, dtype: Any = None) -> np.ndarray:
    """``np.asarray(x, dtype)``, or a TypeError: "``where`` must be ``expected``; got ...".

    ``where`` names the parameter (``"The 'boxes' parameter"``). Ragged nested lists, strings
    for numbers and the like raise here, never deep inside numpy or torch.

    Examples
    --------
    >>> as_array([[1, 2], [3]], "The 'boxes' parameter", "an array of numbers")
    Traceback (most recent call last):
    ...
    TypeError: The 'boxes' parameter must be an array of numbers; got list that numpy cannot ...
    """
    try:
        return np.asarray(x, dtype=dtype)
    except Exception as err:  # ragged nested lists and the like
        raise TypeError(
            f"{where} must be {expected}; got {type(x).__name__} that numpy cannot convert "
            f"({err})."
        ) from err


def _check_finite(arr: np.ndarray, where: str) -> None:
    """The one scan of a float image's pixels: NaN and infinities raise."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(
            f"The '{where}' parameter contains NaN or infinite values; images must be finite."
        )


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape} and dtype {x.dtype}"
    return f"a {type(x).__name__}"


def _as_array(img: Any, param: str, i: int | None) -> np.ndarray:
    where = f"{param}[{i}]" if i is not None else param
    if isinstance(img, torch.Tensor):
        if img.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
            img = img.float()
        img = img.detach().cpu().numpy()
    arr = as_array(img, f"The '{where}' parameter", "an image array (height, width[, channels])")
    if arr.dtype == object or not (
        arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)
        or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(
            f"The '{where}' parameter must hold numbers (bool, integer or float pixels); "
            f"got dtype {arr.dtype}."
        )
    return arr


def check_images(
    images: Any, *, param: str = "images", n_channels: int | None = 3
) -> tuple[list[np.ndarray], bool]:
    """Validate images; return them as a list of ``(height, width, channels)`` arrays.

    Accepted: one ``(height, width)`` or ``(height, width, channels)`` array,
    a list of such arrays (any sizes), or a stacked
    ``(n_images, height, width[, channels])`` array. Grayscale (one channel)
    is accepted for an RGB backbone and replicated later by
    :func:`skhyper.features.to_float_image`. ``n_channels=None`` accepts any channel count.
    Pixels are not converted here (no copy). An already checked
    ``CheckedImages`` is returned as it is (only the channel count is
    checked). A 3-D array is always one ``(height, width, channels)`` image:
    split z-stacks, time series and channel-first arrays with
    :func:`skhyper.stacks.split_planes`.

    Returns
    -------
    images : list of ndarray of shape (height, width, channels)
    batched : bool
        False when a single image was passed.

    Examples
    --------
    >>> import numpy as np
    >>> imgs, batched = check_images(np.zeros((4, 5), dtype=np.uint8))
    >>> imgs[0].shape, batched
    ((4, 5, 1), False)
    >>> check_images([])
    Traceback (most recent call last):
    ...
    ValueError: The 'images' parameter must hold at least one image; got an empty list.
    """
    if isinstance(images, CheckedImages):
        for i, arr in enumerate(images):
            _check_channels(arr, n_channels, f"{param}[{i}]" if images.batched else param,
                            images.batched)
        return images, images.batched
    if isinstance(images, Iterator) or (
        isinstance(images, Iterable) and not isinstance(images, (list, tuple, np.ndarray, str))
        and not hasattr(images, "__array__")
    ):
        raise TypeError(
            f"The '{param}' parameter must be an image array, a list of images or a stack "
            f"(n_images, height, width[, channels]); got a {type(images).__name__}. Pass a "
            f"list, e.g. list({param})."
        )
    if isinstance(images, (list, tuple)):
        arrays, batched = _image_list(images, param), True
    else:
        arrays, batched = _image_stack(images, param)
    out = []
    for i, arr in enumerate(arrays):
        where = f"{param}[{i}]" if batched else param
        if arr.ndim == 2:
            arr = arr[:, :, None]
        h, w, c = arr.shape
        if h == 0 or w == 0:
            raise ValueError(f"The '{where}' parameter is an empty image of shape {arr.shape}.")
        _check_channels(arr, n_channels, where, batched)
        _check_finite(arr, where)
        out.append(arr)
    return CheckedImages(out, batched), batched


def _image_list(images: list | tuple, param: str) -> list[np.ndarray]:
    """The arrays of a list of images, each 2-D or 3-D."""
    if len(images) == 0:
        raise ValueError(
            f"The '{param}' parameter must hold at least one image; got an empty list."
        )
    arrays = [_as_array(img, param, i) for i, img in enumerate(images)]
    for i, arr in enumerate(arrays):
        if arr.ndim not in (2, 3):
            raise ValueError(
                f"The '{param}[{i}]' parameter must be an image of shape (height, width) or "
                f"(height, width, channels); got {arr.ndim} dimensions, shape {arr.shape}."
            )
    return arrays


def _image_stack(images: Any, param: str) -> tuple[list[np.ndarray], bool]:
    """One image (2-D or 3-D array) or a stack of them (4-D); whether it was a stack."""
    arr = _as_array(images, param, None)
    if arr.ndim in (2, 3):
        return [arr], False
    if arr.ndim == 4:
        if arr.shape[0] == 0:
            raise ValueError(
                f"The '{param}' parameter must hold at least one image; got shape {arr.shape}."
            )
        return list(arr), True
    raise ValueError(
        f"The '{param}' parameter must be an image (height, width[, channels]), a list "
        "of images or a stack (n_images, height, width, channels); got an array with "
        f"{arr.ndim} dimensions, shape {arr.shape}."
    )


def _check_channels(arr: np.ndarray, n_channels: int | None, where: str, batched: bool) -> None:
    c = arr.shape[2]
    if n_channels is not None and c not in (1, n_channels):
        stack_hint = (
            " A 3-D array is read as one (height, width, channels) image: pass a stack of "
            "grayscale images as a list or with shape (n_images, height, width, 1), e.g. "
            "skhyper.stacks.split_planes(stack, axes='ZYX')."
            if not batched and c > 4
            else ""
        )
        raise ValueError(
            f"The '{where}' parameter has {c} channels, but the backbone takes {n_channels} "
            f"(or 1, replicated) and no channel strategy was given. Set "
            "HypercolumnTransformer(channel_strategy='per_channel') (each channel through "
            "the backbone as a grayscale image) or channel_strategy='first_conv' (the first "
            "convolution adapted to the channel count), or convert the image first (e.g. "
            f"`img[..., :3]` to drop alpha, or pick one channel).{stack_hint}"
        )


def check_masks(
    masks: Any, images: Sequence[np.ndarray], *, param: str = "masks", batched: bool = True
) -> list[np.ndarray]:
    """Validate label masks against checked images; return a list of 2-D integer arrays.

    Examples
    --------
    >>> import numpy as np
    >>> imgs, _ = check_images([np.zeros((4, 5, 3))])
    >>> check_masks([np.ones((4, 6), dtype=int)], imgs)
    Traceback (most recent call last):
    ...
    ValueError: The 'masks[0]' parameter has shape (4, 6) but its image has shape (4, 5); ...
    """
    if isinstance(masks, (list, tuple)):
        arrays = [_as_array(m, param, i) for i, m in enumerate(masks)]
    elif isinstance(masks, Iterator):
        raise TypeError(
            f"The '{param}' parameter got {type(masks).__name__} (an iterator); pass a list of "
            "masks (e.g. list(masks)), as they are read more than once."
        )
    else:
        arr = _as_array(masks, param, None)
        if not batched and arr.ndim == 2:
            arrays = [arr]
        elif arr.ndim == 3:
            arrays = list(arr)
        else:
            raise ValueError(
                f"The '{param}' parameter must be a list of (height, width) label masks or a "
                f"(n_images, height, width) array; got shape {arr.shape}."
            )
    if len(arrays) != len(images):
        if not batched and len(images) == 1 and images[0].ndim == 3 and (
            len(arrays) == images[0].shape[0]
        ):
            raise ValueError(
                f"The 'images' parameter, an array of shape {images[0].shape}, was read as one "
                f"(height, width, channels) image, but '{param}' has {len(arrays)} masks. For "
                "a stack of grayscale images pass a list of 2-D images or add a channel axis "
                "(images[..., None]); skhyper.stacks.split_planes splits named axes."
            )
        raise ValueError(
            f"The '{param}' parameter has {len(arrays)} masks but there are {len(images)} "
            "images; give one mask per image."
        )
    out = []
    for i, (mask, img) in enumerate(zip(arrays, images)):
        where = f"{param}[{i}]"
        if mask.ndim != 2:
            raise ValueError(
                f"The '{where}' parameter must be a 2-D (height, width) label mask; got shape "
                f"{mask.shape}."
            )
        if mask.shape != img.shape[:2]:
            raise ValueError(
                f"The '{where}' parameter has shape {mask.shape} but its image has shape "
                f"{img.shape[:2]}; each mask must be (height, width) like its image."
            )
        out.append(as_labels(mask, where))
    return out


def as_labels(labels: np.ndarray, where: str) -> np.ndarray:
    """Class labels as an integer array: bools become 0/1, integer-valued floats int64.

    Examples
    --------
    >>> as_labels(np.array([[0.0, 2.0]]), "masks[0]").tolist()
    [[0, 2]]
    >>> as_labels(np.array([[0.5]]), "masks[0]")
    Traceback (most recent call last):
    ...
    ValueError: The 'masks[0]' parameter holds non-integer labels; ...
    """
    if labels.dtype == bool:
        return labels.view(np.uint8)
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise ValueError(f"The '{where}' parameter contains NaN or infinite labels.")
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError(
                f"The '{where}' parameter holds non-integer labels; labels are classes "
                "(integers, bools, or floats with integer values)."
            )
        if labels.size and (labels.min() < -(2.0**63) or labels.max() >= 2.0**63):
            raise ValueError(_LABEL_RANGE.format(where=where))
        return labels.astype(np.int64)
    if labels.dtype.kind not in "iu":
        raise TypeError(
            f"The '{where}' parameter must hold integer class labels; got dtype {labels.dtype}."
        )
    if labels.dtype == np.uint64:  # every mask becomes a signed type: no float mixing
        if labels.size and labels.max() > np.iinfo(np.int64).max:
            raise ValueError(_LABEL_RANGE.format(where=where))
        return labels.astype(np.int64)
    return labels


_LABEL_RANGE = (
    "The '{where}' parameter holds labels outside the int64 range; class labels must fit in "
    "int64 (e.g. 0 .. n_classes - 1)."
)


def check_boxes(boxes: Any, images: Sequence[Any], param: str = "boxes") -> np.ndarray | None:
    """Validate ``(n_images, 4)`` frames ``(x0, y0, x1, y1)``; None stays None.

    ``images`` (arrays or ``(height, width)`` shapes) give the expected count.

    Examples
    --------
    >>> check_boxes([[0, 0, 5, 4]], [(4, 5)]).tolist()
    [[0.0, 0.0, 5.0, 4.0]]
    >>> check_boxes([[3, 0, 3, 4]], [(4, 5)])
    Traceback (most recent call last):
    ...
    ValueError: The 'boxes' parameter has empty boxes (x1 <= x0 or y1 <= y0) at rows [0]: ...
    """
    if boxes is None:
        return None
    boxes = as_array(boxes, f"The '{param}' parameter", "an array of (x0, y0, x1, y1) numbers",
                     dtype=np.float64)
    if boxes.ndim == 1 and boxes.shape == (4,) and len(images) == 1:
        boxes = boxes[None]
    if boxes.shape != (len(images), 4):
        raise ValueError(
            f"The '{param}' parameter must have shape (n_images, 4) = ({len(images)}, 4) holding "
            f"(x0, y0, x1, y1); got shape {boxes.shape}."
        )
    if not np.isfinite(boxes).all():
        raise ValueError(f"The '{param}' parameter contains NaN or infinite values.")
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bad.any():
        first = boxes[np.argmax(bad)].tolist()
        raise ValueError(
            f"The '{param}' parameter has empty boxes (x1 <= x0 or y1 <= y0) at rows "
            f"{np.flatnonzero(bad).tolist()}: e.g. {first}; boxes are (x0, y0, x1, y1)."
        )
    return boxes
