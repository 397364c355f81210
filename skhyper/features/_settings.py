"""The run settings of a :class:`~skhyper.features.FeatureEngine`: :class:`EngineSettings`.

One frozen object holds how an engine runs its backbone (device, precision, batching,
resizing and scales, tiling, cache, channel strategy, intensities, location columns,
progress bars). It is validated when made, so the engine and the forward path below it
trust it; a changed copy is ``dataclasses.replace(settings, ...)`` (validated again).
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._params import resolve_device
from ._cache import MapCache
from ._channels import CHANNEL_STRATEGIES
from ._intensity import check_intensity_range
from ._scales import check_scales

__all__ = ["DTYPES", "EngineSettings"]

#: The precisions the backbone runs at (autocast below float32).
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class EngineSettings:
    """How a :class:`~skhyper.features.FeatureEngine` runs: validated, immutable.

    The parameters are those of :class:`~skhyper.HypercolumnTransformer` with the same names
    (see there); :func:`~skhyper.features.build_engine` takes an instance (``settings=``)
    and/or any of them by name.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, default="auto"
        Where the backbone runs; ``"auto"`` uses CUDA when available. Resolved to
        a ``torch.device`` when the settings are made.
    dtype : {"float32", "bfloat16", "float16"}, default="float32"
        Forward-pass precision (autocast below float32); maps and hypercolumns
        come back as float32.
    batch_size : int, default=8
        Images per forward pass: bounds memory, trades it for speed.
    image_size : int, default=None
        Resize images so that their longer side has this many pixels before the
        forward pass; pixels stay in original image coordinates. None feeds
        images at their size.
    tile_size : int, default=768
        Images larger than one window (``tile_size`` plus the receptive-field
        halo on both sides) go through the backbone in tiles whose maps equal
        the whole-image maps (:func:`~skhyper.features.tiled_maps`), which bounds
        memory for large images. None never tiles.
    cache : MapCache, default=None
        Native maps of images already seen are reused from this
        :class:`~skhyper.features.MapCache` (shared by clones, e.g. across a
        grid search over layers). None caches nothing.
    scales : tuple of float, default=None
        Multi-scale hypercolumns: each image is resized by every factor and the
        maps of all scales are read in original image coordinates, scale-major.
        Distinct positive numbers, stored as a tuple of float. None: one scale,
        the image as fed.
    channel_strategy : {"replicate", "per_channel", "first_conv"}, default=None
        How images whose channel count differs from the backbone's are fed (see
        :data:`~skhyper.features.CHANNEL_STRATEGIES`). None replicates 1-channel
        images and requires other counts to match.
    intensity_range : tuple, default=None
        Which pixel values map to black and white: ``(low, high)`` or
        ``("percentile", p_low, p_high)`` (see
        :func:`~skhyper.features.rescale_intensity`). None: the dtype's range.
    append_location : bool, default=False
        Append two columns ``location.u``, ``location.v``: each pixel's position
        in ``[0, 1]`` within its frame, the input of grid location heads.
    verbose : bool, default=False
        Show a tqdm progress bar while images run through the backbone.

    See Also
    --------
    skhyper.features.build_engine : An engine from a backbone and these settings.

    Examples
    --------
    >>> import dataclasses
    >>> s = EngineSettings(device="cpu", scales=[1, 0.5])
    >>> s.device, s.scales, s.tile_size
    (device(type='cpu'), (1.0, 0.5), 768)
    >>> dataclasses.replace(s, tile_size=None).tile_size is None
    True
    >>> EngineSettings(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: The 'batch_size' setting of EngineSettings must be an int >= 1; got 0.
    """

    device: Any = "auto"
    dtype: str = "float32"
    batch_size: int = 8
    image_size: int | None = None
    tile_size: int | None = 768
    cache: MapCache | None = None
    scales: tuple[float, ...] | None = None
    channel_strategy: str | None = None
    intensity_range: tuple | None = None
    append_location: bool = False
    verbose: bool = False

    def __post_init__(self) -> None:
        _set = object.__setattr__  # normalized values in a frozen object
        if not isinstance(self.device, torch.device):  # a device is kept (pickles, .to)
            _set(self, "device", resolve_device(self.device))
        if self.dtype not in DTYPES:
            _bad("dtype", self.dtype, f"one of {sorted(DTYPES)}")
        for name in ("batch_size", "image_size", "tile_size"):
            _set(self, name, _check_int(name, getattr(self, name), none=name != "batch_size"))
        if self.cache is not None and not isinstance(self.cache, MapCache):
            _bad("cache", self.cache, "a skhyper.features.MapCache or None")
        if self.channel_strategy is not None and self.channel_strategy not in CHANNEL_STRATEGIES:
            _bad("channel_strategy", self.channel_strategy, f"None or one of {CHANNEL_STRATEGIES}")
        for name in ("append_location", "verbose"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                _bad(name, getattr(self, name), "a bool")
            _set(self, name, bool(getattr(self, name)))
        _set(self, "scales", check_scales(self.scales, owner="EngineSettings"))
        _set(self, "intensity_range",
             check_intensity_range(self.intensity_range, owner="EngineSettings"))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings' names, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))


def _check_int(name: str, value: Any, *, none: bool) -> int | None:
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        _bad(name, value, "an int >= 1" + (" or None" if none else ""))
    return int(value)


def _bad(name: str, value: Any, what: str) -> None:
    raise ValueError(f"The {name!r} setting of EngineSettings must be {what}; got {value!r}.")
