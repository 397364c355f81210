"""Multi-scale hypercolumns: the hypercolumns of an image pyramid, concatenated.

``HypercolumnTransformer(scales=(1.0, 0.5, 0.25))`` feeds each image resized
by every scale factor (antialiased bilinear, on the ``[0, 1]`` float image,
before the backbone's normalization) through the backbone. Each chosen
layer's map at each scale is a block of the hypercolumn, read bilinearly in
original image coordinates, i.e. conceptually upsampled to the image, like
the maps of ``image_size``. A (scale, layer) pair is just another map, named
``s<scale>.<layer>`` (``s0.5.blocks.2``) in ``feature_info_`` (scale-major:
every layer at the first scale, then at the second...). So the rest of the
package needs nothing new:

* folding (:mod:`skhyper.heads`) gets one 1x1 head per (scale, layer)
  map, and dense prediction upsamples only score maps;
* tiling is exact: each resized image is tiled on its own
  (:func:`skhyper.features.tiled_maps`), so tiled maps equal the maps of the
  whole resized image;
* the :class:`~skhyper.features.MapCache` key holds the scale, so one cache
  serves searches over scale sets (scale 1.0 is shared with ``scales=None``).

``scales=None`` (the default) is the single-scale hypercolumn of the image as
fed (``image_size`` applies first, then each scale).

Measured (``benchmarks/bench_multiscale.py``, Weizmann horses of about
210 x 265 pixels, default segmenter): downscaled levels hurt (foreground IoU
0.814 at ``(1.0,)``, 0.808 at ``(1.0, 0.5)``, 0.787 at ``(1.0, 0.5, 0.25)``),
an upscaled level helps (0.857 at ``(2.0, 1.0)``), but no more than feeding
the image at twice its size alone (0.859 at ``(2.0,)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np

from ._records import FeatureInfo, as_records

__all__ = ["AUTO_SCALE", "auto_scales", "check_scales", "resized_shape", "scale_prefix",
           "scaled_info", "split_scaled"]

# ``scales="auto"``: images whose longer side is under ``target`` pixels are fed larger (at
# most ``max``x, in steps of ``step``). Measured on the horses (longer side ~250 px): the
# single level 2.0 gave foreground IoU 0.859 against 0.814 at 1.0 (see the module notes).
AUTO_SCALE = {"target": 512, "max": 2.0, "step": 0.25}


def auto_scales(shapes: Sequence[tuple[int, ...]] | None) -> tuple[float, ...] | None:
    """The ``scales`` that ``scales="auto"`` resolves to for images of these shapes.

    One level: ``target / median longer side`` (``AUTO_SCALE``), rounded to the nearest
    ``step`` and clipped to ``[1, max]``; None (the image as it is) when that is 1 or there
    are no images. Learnt once in ``fit`` and kept, so predictions, tiling and export see one
    fixed network input per image size. Small images gain from being fed larger:
    the backbone's strides leave too few map cells on a small object.

    Parameters
    ----------
    shapes : sequence of tuple of int or None
        The shapes ``(height, width[, channels])`` of the training images; None
        or empty when there are none.

    Returns
    -------
    scales : tuple of float or None
        ``(factor,)`` with ``1 < factor <= 2``, or None to feed images as they are.

    Examples
    --------
    >>> auto_scales([(200, 250, 3), (180, 260, 3)])
    (2.0,)
    >>> auto_scales([(300, 400)]), auto_scales([(1024, 1024)]), auto_scales(None)
    ((1.25,), None, None)
    """
    if not shapes:
        return None
    longer = float(np.median([max(s[0], s[1]) for s in shapes]))
    step = AUTO_SCALE["step"]
    scale = round(AUTO_SCALE["target"] / longer / step) * step
    scale = min(AUTO_SCALE["max"], max(1.0, scale))
    return None if scale == 1.0 else (float(scale),)


def check_scales(scales: Any, owner: str = "HypercolumnTransformer") -> tuple[float, ...] | None:
    """Validated ``scales``: None, or a tuple of distinct positive finite floats.

    Examples
    --------
    >>> check_scales([1, 0.5])
    (1.0, 0.5)
    >>> check_scales(None) is None
    True
    >>> check_scales((1.0, 0.5, 1))
    Traceback (most recent call last):
    ...
    ValueError: The 'scales' parameter of HypercolumnTransformer must be None or a non-empty ...
    """
    if scales is None:
        return None
    ok = isinstance(scales, (list, tuple, np.ndarray)) and len(scales) > 0
    values: list[float] = []
    if ok:
        for s in scales:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, Real):
                ok = False
                break
            values.append(float(s))
        ok = ok and all(math.isfinite(v) and v > 0 for v in values)
        ok = ok and len(set(values)) == len(values)
    if not ok:
        raise ValueError(
            f"The 'scales' parameter of {owner} must be None or a non-empty list or tuple of "
            f"distinct positive numbers (image resize factors, e.g. (1.0, 0.5, 0.25)). Got "
            f"{scales!r} instead."
        )
    return tuple(values)


def scale_prefix(scale: float) -> str:
    """The name prefix of a scale's maps.

    Examples
    --------
    >>> scale_prefix(0.5), scale_prefix(1), scale_prefix(2.0)
    ('s0.5.', 's1.0.', 's2.0.')
    """
    return f"s{float(scale)!r}."


def resized_shape(shape: tuple[int, int], image_size: int | None, scale: float = 1.0
                   ) -> tuple[int, int]:
    """The fed size: longer side ``image_size`` (if set), then times ``scale``."""
    h, w = shape
    if image_size is not None:
        s = image_size / max(h, w)
        h, w = max(1, round(h * s)), max(1, round(w * s))
    if scale != 1.0:
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
    return h, w


def scaled_info(info: Sequence[Mapping], scales: Sequence[float]) -> list[FeatureInfo]:
    """``feature_info`` of every (scale, layer) map, scale-major.

    Each entry keeps the layer's ``num_chs`` and ``kind``; ``name`` gets the
    scale prefix, ``reduction`` is the stride in original image pixels
    (the layer's divided by the scale), and ``layer`` / ``scale`` say where
    the map comes from.

    Examples
    --------
    >>> info = [{"name": "layer1", "num_chs": 64, "reduction": 4.0, "kind": "map"}]
    >>> [(d["name"], d["reduction"]) for d in scaled_info(info, (1.0, 0.5))]
    [('s1.0.layer1', 4.0), ('s0.5.layer1', 8.0)]
    """
    records = as_records(info)
    return [
        d.replace(name=scale_prefix(s) + d.name,
                  reduction=None if d.reduction is None else d.reduction / s,
                  layer=d.name, scale=float(s))
        for s in scales
        for d in records
    ]


def split_scaled(layers: Sequence[str], scales: Sequence[float]) -> list[tuple[float, list[str]]]:
    """Group scaled map names by scale: ``[(scale, [layer, ...]), ...]`` in ``scales`` order.

    Scales without any requested map are left out.

    Examples
    --------
    >>> split_scaled(["s1.0.layer1", "s0.5.layer1", "s0.5.fc"], (1.0, 0.5))
    [(1.0, ['layer1']), (0.5, ['layer1', 'fc'])]
    """
    by_scale: dict[float, list[str]] = {float(s): [] for s in scales}
    for name in layers:
        for s in by_scale:
            prefix = scale_prefix(s)
            if name.startswith(prefix):
                by_scale[s].append(name[len(prefix):])
                break
        else:
            raise ValueError(
                f"Map {name!r} carries none of the scales {list(by_scale)}: with scales, maps "
                "are named '<scale prefix><layer>', e.g. 's0.5.layer1' (see "
                "skhyper.features.scaled_info)."
            )
    return [(s, names) for s, names in by_scale.items() if names]
