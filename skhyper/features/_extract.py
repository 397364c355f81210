"""Hypercolumns as functions: :func:`extract_hypercolumns` (pixels) and :func:`extract_dense`.

The hypercolumn of a pixel is the concatenation, over the chosen layers, of
each layer's map bilinearly upsampled to the image (``F.interpolate(...,
mode="bilinear", align_corners=False)``) and read at the pixel. Nothing here
upsamples a whole map: the engine reads the 4 neighbours of each pixel on the
native-resolution map (:func:`~skhyper.features.sample_maps`), so sampled rows
equal the rows of the dense hypercolumn at a fraction of its cost. Both
functions validate their arguments, build a
:class:`~skhyper.features.FeatureEngine` and call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch

from .._param_validation import Interval, StrOptions, validate_params
from .._validation import check_images
from ..sampling import PixelSet
from ._backbone import Backbone
from ._cache import MapCache
from ._engine import FeatureEngine
from ._intensity import check_intensity_range
from ._maps import DTYPES
from ._scales import check_scales
from ._setup import build_engine

__all__ = ["extract_dense", "extract_hypercolumns"]

_COMMON = {
    "backbone": [str, torch.nn.Module],
    "layers": [list, tuple, None],
    "device": [str, torch.device],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "dtype": [StrOptions(set(DTYPES))],
    "image_size": [Interval(Integral, 1, None, closed="left"), None],
    "verbose": ["boolean"],
    "cache": [MapCache, None],
    "tile_size": [Interval(Integral, 1, None, closed="left"), None],
    "intensity_range": [tuple, list, None],
    "scales": [tuple, list, None],
}


def _engine(func: str, backbone: Any, layers: Any, images: Any, param: str,
            **settings: Any) -> tuple[FeatureEngine, Any]:
    intensity_range = check_intensity_range(settings.pop("intensity_range"), owner=func)
    scales = check_scales(settings.pop("scales"), owner=func)
    bb = backbone if isinstance(backbone, Backbone) else None
    checked, _ = check_images(images, param=param,
                              n_channels=None if bb is None else bb.in_chans)
    engine = build_engine(backbone, layers=layers, scales=scales,
                          intensity_range=intensity_range, images=checked, param=param,
                          **settings)
    return engine, engine.check_images(checked, param=param)


@validate_params({"X": [PixelSet], **_COMMON}, prefer_skip_nested_validation=True)
def extract_hypercolumns(  # noqa: PLR0913 (mirrors HypercolumnTransformer's parameters)
    X: PixelSet,
    backbone: Backbone | str | torch.nn.Module = "efficientnet_lite0",
    layers: Sequence[str | int] | None = None,
    *,
    device: Any = "cpu",
    batch_size: int = 8,
    dtype: str = "float32",
    image_size: int | None = None,
    verbose: bool = False,
    cache: MapCache | None = None,
    tile_size: int | None = None,
    intensity_range: Any = None,
    scales: Sequence[float] | None = None,
) -> np.ndarray:
    """Hypercolumns of the pixels of a :class:`~skhyper.sampling.PixelSet`.

    The hypercolumn of a pixel [1]_ is the concatenation, over the chosen
    layers, of each layer's map bilinearly upsampled to the image and read at
    the pixel. Each image with pixels in ``X`` goes through the backbone once;
    every layer's native map is sampled bilinearly at the pixels, so no map is
    upsampled in full.

    Parameters
    ----------
    X : PixelSet
        The images and the ``(image, row, col)`` pixels whose hypercolumns are
        computed (e.g. from :func:`~skhyper.sample_pixels`).
    backbone : Backbone, str or torch.nn.Module, default="efficientnet_lite0"
        A built :class:`~skhyper.features.Backbone` (used as is) or anything
        :func:`~skhyper.features.build_backbone` takes.
    layers : list of str or int, default=None
        Layer names or stage indices; None takes all stages.
    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        ``"auto"`` uses CUDA when available.
    batch_size : int, default=8
        Images per forward pass (images of one shape are batched together).
    dtype : {"float32", "bfloat16", "float16"}, default="float32"
        Forward-pass precision (autocast); results are float32.
    image_size : int, default=None
        If set, images are resized so their longer side has this many pixels
        before the forward pass; pixels stay in original image coordinates.
    verbose : bool, default=False
        Show a progress bar.
    cache : MapCache, default=None
        Serve and store native maps (see :class:`skhyper.features.MapCache`).
    tile_size : int, default=None
        Feed images larger than one window of ``tile_size`` pixels plus the
        receptive-field halo in tiles; the maps equal the whole-image maps
        (see :func:`skhyper.features.tiled_maps`). None never tiles.
    intensity_range : None, (low, high) or ("percentile", p_low, p_high), default=None
        Pixel values mapped to ``[0, 1]`` (values outside clipped); None: the
        dtype's range. See :func:`skhyper.features.rescale_intensity`.
    scales : sequence of float, default=None
        Multi-scale hypercolumns (``scaled_info``): every layer of
        ``layers`` at every scale, the image resized by the scale factor
        before the forward pass, scale-major. None: the image as fed.

    Returns
    -------
    ndarray of shape (n_pixels, n_features)
        float32 hypercolumns, one row per pixel of ``X`` in its order: the
        layers' channels in the order of ``layers`` (scale-major with
        ``scales``).

    See Also
    --------
    extract_dense : The hypercolumns of every pixel of whole images.
    skhyper.HypercolumnTransformer : The same as a scikit-learn transformer.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for
       object segmentation and fine-grained localization", CVPR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper import sample_pixels
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((2, 40, 50, 3))
    >>> X, y = sample_pixels(images, (images[..., 0] > 0.5).astype(int), n_per_image=7,
    ...                      random_state=0)
    >>> from skhyper.features import build_backbone
    >>> bb = build_backbone("resnet18", weights=None)
    >>> extract_hypercolumns(X, bb, ["layer1", "fc"]).shape
    (14, 1064)
    >>> extract_hypercolumns(X, bb, ["layer1", "fc"], scales=(1.0, 0.5)).shape
    (14, 2128)
    """
    engine, _ = _engine(
        "extract_hypercolumns", backbone, layers, X.images, "X.images", device=device,
        batch_size=batch_size, dtype=dtype, image_size=image_size, verbose=verbose, cache=cache,
        tile_size=tile_size, intensity_range=intensity_range, scales=scales,
    )
    return engine.sample(X)


@validate_params({"images": "no_validation", "chunk_pixels": [Interval(Integral, 1, None,
                  closed="left")], **_COMMON}, prefer_skip_nested_validation=True)
def extract_dense(  # noqa: PLR0913 (mirrors HypercolumnTransformer's parameters)
    images: Any,
    backbone: Backbone | str | torch.nn.Module = "efficientnet_lite0",
    layers: Sequence[str | int] | None = None,
    *,
    device: Any = "cpu",
    batch_size: int = 8,
    dtype: str = "float32",
    image_size: int | None = None,
    chunk_pixels: int = 65536,
    verbose: bool = False,
    cache: MapCache | None = None,
    tile_size: int | None = None,
    intensity_range: Any = None,
    scales: Sequence[float] | None = None,
) -> list[np.ndarray] | np.ndarray:
    """Dense hypercolumns ``(height, width, n_features)`` of whole images, for analysis.

    Each layer's map bilinearly upsampled to the image, concatenated over the
    layers at every pixel: the hypercolumns [1]_ of all pixels. Computed in
    bands of rows (about ``chunk_pixels`` pixels each) so that the only
    full-resolution array is the result itself; meant for analysis and
    visualization (a folded head predicts without it).

    Parameters
    ----------
    images : array-like or list of array-like
        One ``(height, width[, channels])`` image, a stack or a list of images
        (of any sizes).
    backbone : Backbone, str or torch.nn.Module, default="efficientnet_lite0"
        A built :class:`~skhyper.features.Backbone` (used as is) or anything
        :func:`~skhyper.features.build_backbone` takes.
    layers : list of str or int, default=None
        Layer names or stage indices; None takes all stages.
    device : {"cpu", "cuda", "auto"} or torch.device, default="cpu"
        ``"auto"`` uses CUDA when available.
    batch_size : int, default=8
        Images per forward pass (images of one shape are batched together).
    dtype : {"float32", "bfloat16", "float16"}, default="float32"
        Forward-pass precision (autocast); results are float32.
    image_size : int, default=None
        If set, images are resized so their longer side has this many pixels
        before the forward pass; pixels stay in original image coordinates.
    chunk_pixels : int, default=65536
        About how many pixels are read from the maps at once: bounds the
        temporary memory beside the result.
    verbose : bool, default=False
        Show a progress bar.
    cache : MapCache, default=None
        Serve and store native maps (see :class:`skhyper.features.MapCache`).
    tile_size : int, default=None
        Feed images larger than one window of ``tile_size`` pixels plus the
        receptive-field halo in tiles; the maps equal the whole-image maps
        (see :func:`skhyper.features.tiled_maps`). None never tiles.
    intensity_range : None, (low, high) or ("percentile", p_low, p_high), default=None
        Pixel values mapped to ``[0, 1]`` (values outside clipped); None: the
        dtype's range. See :func:`skhyper.features.rescale_intensity`.
    scales : sequence of float, default=None
        Multi-scale hypercolumns (``scaled_info``): every layer of
        ``layers`` at every scale, the image resized by the scale factor
        before the forward pass, scale-major. None: the image as fed.

    Returns
    -------
    ndarray of shape (height, width, n_features), or a list of them
        float32 dense hypercolumns; a list when a list or stack of images was
        passed.

    See Also
    --------
    extract_hypercolumns : The hypercolumns of chosen pixels only.
    FeatureEngine.dense : The same from a built engine.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for
       object segmentation and fine-grained localization", CVPR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper.features import build_backbone
    >>> bb = build_backbone("resnet18", weights=None)
    >>> extract_dense(np.zeros((33, 47, 3)), bb, ["layer2", "layer4"]).shape
    (33, 47, 640)
    >>> extract_dense(np.zeros((33, 47, 3)), bb, ["layer2"], scales=(2, 1)).shape
    (33, 47, 256)
    """
    engine, checked = _engine(
        "extract_dense", backbone, layers, images, "images", device=device,
        batch_size=batch_size, dtype=dtype, image_size=image_size, verbose=verbose, cache=cache,
        tile_size=tile_size, intensity_range=intensity_range, scales=scales,
    )
    results = engine.dense(checked, chunk_pixels=chunk_pixels)
    return results if checked.batched else results[0]
