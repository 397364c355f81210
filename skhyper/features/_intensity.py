"""Pixel intensities: which values of an image map to black and white for the backbone.

Backbones take images in ``[0, 1]``. By default the dtype implies the range
(as ``skimage.util.img_as_float32``): ``uint8`` 0..255 and ``uint16``
0..65535 map to ``[0, 1]``, floats are taken as they are. Microscopy images
rarely use their dtype's range (a ``uint16`` camera image often lies in
100..4000, nearly black once divided by 65535), so ``intensity_range`` sets
it explicitly:

* ``None`` -- the dtype's range; a warning (:class:`IntensityWarning`) says
  when an integer image uses less than 1/16 of it, or a float image lies
  outside ``[0, 1]``;
* ``(low, high)`` -- a linear rescale of ``low..high`` to ``[0, 1]`` for every
  image and channel, values outside clipped;
* ``("percentile", p_low, p_high)`` -- the same with ``low``/``high`` the
  ``p_low``/``p_high`` percentiles of each image and each of its channels
  (e.g. ``("percentile", 1, 99.8)``, robust to a few hot pixels).

:func:`normalize` then maps ``[0, 1]`` to the backbone's input statistics.

Used through ``HypercolumnTransformer(intensity_range=...)`` and the
``intensity_range`` argument of :func:`skhyper.features.extract_hypercolumns` /
:func:`skhyper.features.extract_dense`.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ..exceptions import IntensityWarning

__all__ = [
    "IntensityWarning",
    "check_intensity_range",
    "normalize",
    "rescale_intensity",
    "to_float_image",
    "warn_intensity",
]

# an integer image whose maximum is below this fraction of its dtype's range is "dark"
DARK_FRACTION = 1 / 16
# float images may overshoot [0, 1] by rounding (resizing, filtering) without a warning
_FLOAT_SLACK = 0.01


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and np.isfinite(x)


def check_intensity_range(
    value: Any, *, param: str = "intensity_range", owner: str = "HypercolumnTransformer"
) -> tuple | None:
    """Validate an ``intensity_range``; return it as a tuple (hashable) or None.

    Examples
    --------
    >>> check_intensity_range([100, 4000])
    (100.0, 4000.0)
    >>> check_intensity_range(("percentile", 1, 99.8))
    ('percentile', 1.0, 99.8)
    >>> check_intensity_range((5, 5))
    Traceback (most recent call last):
    ...
    ValueError: The 'intensity_range' parameter of HypercolumnTransformer must be None, ...
    """
    if value is None:
        return None
    expected = (
        f"The '{param}' parameter of {owner} must be None, a (low, high) pair of numbers with "
        "low < high (rescaled to [0, 1], values outside clipped) or ('percentile', p_low, "
        "p_high) with 0 <= p_low < p_high <= 100, e.g. ('percentile', 1, 99.8)"
    )
    items = tuple(value) if isinstance(value, (tuple, list)) else None
    if items is not None and len(items) == 3 and items[0] == "percentile":
        lo, hi = items[1:]
        if _is_number(lo) and _is_number(hi) and 0 <= lo < hi <= 100:
            return ("percentile", float(lo), float(hi))
    elif items is not None and len(items) == 2:
        lo, hi = items
        if _is_number(lo) and _is_number(hi) and lo < hi:
            return (float(lo), float(hi))
    raise ValueError(f"{expected}. Got {value!r} instead.")


def _bounds(img: np.ndarray, intensity_range: tuple) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` per channel, shape ``(channels,)`` each, for an ``(h, w, c)`` image."""
    c = img.shape[-1]
    if intensity_range[0] == "percentile":
        flat = img.reshape(-1, c)
        if flat.dtype == bool:
            flat = flat.view(np.uint8)
        lo, hi = np.percentile(flat, intensity_range[1:], axis=0)
        return lo.astype(np.float64), hi.astype(np.float64)
    lo, hi = intensity_range
    return np.full(c, lo), np.full(c, hi)


def rescale_intensity(img: np.ndarray, intensity_range: Any) -> np.ndarray:
    """Rescale an ``(height, width, channels)`` image to float32 in ``[0, 1]``.

    ``low`` maps to 0 and ``high`` to 1 (per channel), values outside are
    clipped. A channel whose percentiles coincide (a constant channel)
    becomes 0. The arithmetic runs in float64 for integer dtypes wider than
    16 bits, so large values are not rounded before the subtraction.

    Parameters
    ----------
    img : ndarray of shape (height, width, channels)
        The image, of any integer or float dtype (e.g. a ``uint16`` camera
        image that uses a small part of its range).
    intensity_range : (low, high) or ("percentile", p_low, p_high)
        The values that map to 0 and 1: fixed numbers for every image, or the
        given percentiles of each image and channel (robust to a few hot
        pixels).

    Returns
    -------
    ndarray of shape (height, width, channels)
        The rescaled image, float32 in ``[0, 1]``.

    See Also
    --------
    to_float_image : The intensity step of every image fed to a backbone.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.array([[[100], [2050], [4000], [9000]]], dtype=np.uint16)
    >>> rescale_intensity(img, (100, 4000)).ravel().tolist()
    [0.0, 0.5, 1.0, 1.0]
    >>> img = np.arange(101, dtype=np.uint16).reshape(1, 101, 1)
    >>> rescale_intensity(img, ("percentile", 10, 90)).ravel()[[0, 10, 50, 90, 100]].tolist()
    [0.0, 0.0, 0.5, 1.0, 1.0]
    """
    rng = check_intensity_range(intensity_range)
    if rng is None:
        raise ValueError("rescale_intensity needs an intensity_range; got None.")
    lo, hi = _bounds(img, rng)
    span = np.where(hi > lo, hi - lo, np.inf)  # a constant channel becomes 0
    wide = img.dtype.itemsize > 2 and img.dtype.kind in "iu" or img.dtype == np.float64
    work = np.float64 if wide else np.float32
    out = img.astype(work)
    out -= lo.astype(work)
    out /= span.astype(work)
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def warn_intensity(images: Iterable[np.ndarray], intensity_range: Any = None) -> None:
    """Warn once when images would come out nearly black or out of range with ``None``.

    With ``intensity_range=None`` an integer image is divided by its dtype's
    maximum: one whose maximum is below 1/16 of that (a ``uint16`` image in
    100..4000) turns nearly black. A float image is taken as it is, so values
    outside ``[0, 1]`` are out of the range the backbone was trained on. Both
    get one :class:`IntensityWarning` per call that suggests
    ``intensity_range``. All-zero images and bools do not warn.

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_intensity([np.full((4, 4, 1), 4000, dtype=np.uint16)])
    >>> "intensity_range" in str(caught[0].message)
    True
    """
    if intensity_range is not None:
        return
    dark: list[tuple[np.dtype, float]] = []
    off: list[tuple[float, float]] = []
    n = 0
    for img in images:
        n += 1
        kind = img.dtype.kind
        if kind in "iu":
            top = float(img.max())
            if 0 < top < (np.iinfo(img.dtype).max + 1) * DARK_FRACTION:
                dark.append((img.dtype, top))
        elif kind == "f":
            lo, hi = float(img.min()), float(img.max())
            if lo < -_FLOAT_SLACK or hi > 1 + _FLOAT_SLACK:
                off.append((lo, hi))
    hint = (
        "Set intensity_range=(low, high) (rescaled to [0, 1], values outside clipped) or "
        "intensity_range=('percentile', 1, 99.8) (per image and channel) on "
        "HypercolumnTransformer (or extract_hypercolumns / extract_dense)."
    )
    if dark:
        dtype = dark[0][0]
        top = max(t for d, t in dark if d == dtype)
        warnings.warn(
            f"{len(dark)} of {n} images are {dtype} with values up to {top:g}, under 1/16 of "
            f"the {dtype} range: divided by the dtype maximum ({np.iinfo(dtype).max}) they are "
            f"nearly black for the backbone. {hint}",
            IntensityWarning,
            stacklevel=3,
        )
    if off:
        lo, hi = min(a for a, _ in off), max(b for _, b in off)
        warnings.warn(
            f"{len(off)} of {n} float images have values outside [0, 1] (from {lo:g} to "
            f"{hi:g}); float images are taken as they are and the backbone expects [0, 1]. "
            f"{hint}",
            IntensityWarning,
            stacklevel=3,
        )


def to_float_image(
    img: np.ndarray, n_channels: int = 3, intensity_range: Any = None, *,
    as_tensor: bool = False, device: Any = None,
) -> np.ndarray | torch.Tensor:
    """Convert a checked ``(h, w, c)`` image to float32 in ``[0, 1]`` with ``n_channels``.

    The one intensity step of skhyper: the backbone's input, the guide of edge-aware
    upsampling and the keypoint crops all go through it (the ONNX runtime's torch-free
    :func:`skhyper.export.prepare_image` is tested equal to it).

    With ``intensity_range=None`` the dtype implies the range (as
    ``skimage.util.img_as_float32``): unsigned integers are divided by their
    maximum, signed integers map to ``[-1, 1]``, floats are kept as they are
    (expected in ``[0, 1]``), bools become 0/1. A ``(low, high)`` pair or
    ``("percentile", p_low, p_high)`` rescales ``low..high`` to ``[0, 1]``
    and clips (:func:`rescale_intensity`). A 1-channel
    image is then replicated to ``n_channels``.

    Parameters
    ----------
    img : ndarray of shape (h, w, c)
        A checked image of any integer, float or bool dtype.
    n_channels : int, default=3
        Channels of the result; a 1-channel image is replicated to them.
    intensity_range : None, (low, high) or ("percentile", p_low, p_high), default=None
        Which values map to black and white (see :func:`rescale_intensity`);
        None: the dtype's range.
    as_tensor : bool, default=False
        False: an ``(h, w, n_channels)`` ndarray. True: a contiguous ``(n_channels, h, w)``
        float32 tensor on ``device``; an 8- or 16-bit image without ``intensity_range`` is
        then moved as it is and converted there in one transposing conversion and one
        division (a quarter / half of the bytes to move), with the same values bit for bit.
    device : torch.device or str, default=None
        With ``as_tensor``: where the tensor goes (None: the CPU).

    Returns
    -------
    ndarray of shape (h, w, n_channels) or Tensor of shape (n_channels, h, w)
        The image as float32 in ``[0, 1]`` (in ``[-1, 1]`` for signed integers
        without ``intensity_range``).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.array([[100, 4000]], dtype=np.uint16)[..., None]
    >>> to_float_image(img).shape
    (1, 2, 3)
    >>> to_float_image(img, 1, (100, 4000)).ravel().tolist()
    [0.0, 1.0]
    >>> t = to_float_image(img, 1, as_tensor=True)
    >>> t.shape, bool((t.numpy() == to_float_image(img, 1).transpose(2, 0, 1)).all())
    (torch.Size([1, 1, 2]), True)
    """
    if as_tensor:
        return _float_tensor(img, n_channels, intensity_range, device)
    if device is not None:
        raise ValueError(
            f"The 'device' parameter of to_float_image is {device!r}, but a device needs "
            "as_tensor=True (an ndarray lives on the CPU)."
        )
    if intensity_range is not None:
        out = rescale_intensity(img, intensity_range)
    elif img.dtype == bool:
        out = img.astype(np.float32)
    elif np.issubdtype(img.dtype, np.unsignedinteger):
        out = img.astype(np.float32)
        out /= np.float32(np.iinfo(img.dtype).max)  # in place: one float copy of the image
    elif np.issubdtype(img.dtype, np.signedinteger):
        out = img.astype(np.float32)
        out /= np.float32(np.iinfo(img.dtype).max)
        np.maximum(out, -1.0, out=out)
    else:
        # a view with negative strides (img[:, ::-1]) cannot become a tensor: copy it then
        out = np.ascontiguousarray(img, dtype=np.float32)
    if out.shape[2] == 1 and n_channels != 1:
        out = np.repeat(out, n_channels, axis=2)
    return out


def _float_tensor(img: np.ndarray, n_channels: int, intensity_range: Any, device: Any
                  ) -> torch.Tensor:
    """:func:`to_float_image` as a contiguous ``(n_channels, h, w)`` tensor on ``device``."""
    if intensity_range is None and img.dtype in (np.uint8, np.uint16):
        # a read-only image (as checked images are) is copied: torch takes writable arrays
        arr = img if img.flags.writeable else img.copy()
        t = torch.from_numpy(np.ascontiguousarray(arr)).to(device).permute(2, 0, 1)
        out = t.to(torch.float32, memory_format=torch.contiguous_format)
        # float32(value) / float32(dtype max), as the ndarray path: a divisor tensor on the
        # device, not a Python number (CUDA multiplies by the reciprocal of a CPU scalar)
        out.div_(torch.tensor(float(np.iinfo(img.dtype).max), dtype=torch.float32,
                              device=out.device))
        if out.shape[0] == 1 and n_channels != 1:
            out = out.repeat(n_channels, 1, 1)
        return out
    g = to_float_image(img, n_channels, intensity_range)
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(g, -1, 0))).to(device)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` for an ``(n, c, h, w)`` batch and ``(1, c, 1, 1)`` statistics.

    The same float operations per element; on a channels-last batch they run over rows of
    ``w * c`` values with the statistics repeated along the row (a broadcast over the innermost
    ``c`` values runs about 5x slower).

    Examples
    --------
    >>> x = torch.rand(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    >>> m, s = torch.rand(1, 3, 1, 1), torch.rand(1, 3, 1, 1) + 0.5
    >>> torch.equal(normalize(x, m, s), (x - m) / s)
    True
    """
    if (x.dim() != 4 or x.is_contiguous() or mean.numel() != x.shape[1]
            or std.numel() != x.shape[1]
            or not x.is_contiguous(memory_format=torch.channels_last)):
        return (x - mean) / std
    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(n * h, w * c)  # a view of the channels-last batch
    out = torch.sub(rows, mean.reshape(c).repeat(w))
    out.div_(std.reshape(c).repeat(w))
    return out.view(n, h, w, c).permute(0, 3, 1, 2)
