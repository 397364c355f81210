"""Building a :class:`~skhyper.features.FeatureEngine` from settings: :func:`build_engine`."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch

from .._param_validation import Interval, StrOptions, validate_params
from .._params import resolve_device
from ._backbone import Backbone, resolve_layers
from ._build import DEFAULT_BACKBONE, build_backbone
from ._cache import MapCache
from ._channels import CHANNEL_STRATEGIES, fit_channels, prepare_backbone
from ._engine import FeatureEngine
from ._intensity import check_intensity_range
from ._maps import DTYPES
from ._optimize import optimize_for_inference
from ._scales import check_scales, scaled_info
from ._union import backbone_union

__all__ = ["build_engine"]


@validate_params(
    {
        "backbone": [str, torch.nn.Module, dict],
        "layers": [list, tuple, None],
        "weights": "no_validation",
        "device": [str, torch.device],
        "dtype": [StrOptions(set(DTYPES))],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "image_size": [Interval(Integral, 1, None, closed="left"), None],
        "tile_size": [Interval(Integral, 1, None, closed="left"), None],
        "cache": [MapCache, None],
        "scales": [tuple, list, None],
        "channel_strategy": [StrOptions(set(CHANNEL_STRATEGIES)), None],
        "intensity_range": [tuple, list, None],
        "append_location": ["boolean"],
        "verbose": ["boolean"],
        "optimize": ["boolean"],
        "images": "no_validation",
        "param": [str],
    },
    prefer_skip_nested_validation=True,
)
def build_engine(
    backbone: str | torch.nn.Module | dict = DEFAULT_BACKBONE,
    *,
    layers: Sequence[str | int] | None = None,
    weights: Any = "imagenet",
    device: Any = "auto",
    dtype: str = "float32",
    batch_size: int = 8,
    image_size: int | None = None,
    tile_size: int | None = 768,
    cache: MapCache | None = None,
    scales: tuple[float, ...] | None = None,
    channel_strategy: str | None = None,
    intensity_range: tuple | None = None,
    append_location: bool = False,
    verbose: bool = False,
    optimize: bool = True,
    images: Sequence[np.ndarray] | None = None,
    param: str = "images",
) -> FeatureEngine:
    """Build a :class:`FeatureEngine`: everything that runs the network, fixed once.

    The parameters are those of :class:`~skhyper.HypercolumnTransformer` (which calls this in
    ``fit``). ``backbone`` is built by :func:`~skhyper.features.build_backbone` (a copy) unless
    it is a :class:`~skhyper.features.Backbone`, which is used as it is. ``optimize`` folds
    batch norms into their convolutions in the copy built here
    (:func:`~skhyper.features.optimize_for_inference`; never in a ``Backbone`` used as it is,
    never into a convolution that is a captured layer or a stage). ``images`` (or None)
    teach the channel count to the ``"per_channel"`` / ``"first_conv"`` strategies; ``param``
    names them in messages.

    Examples
    --------
    >>> from skhyper.features import build_engine
    >>> build_engine("resnet18", layers=[1, 3], weights=None, device="cpu").map_names
    ['layer1', 'layer3']
    """
    intensity_range = check_intensity_range(intensity_range, owner="build_engine")
    scales = check_scales(scales, owner="build_engine")
    dev = resolve_device(device)
    own = not isinstance(backbone, Backbone)  # a Backbone instance is the caller's: as it is
    if not own:
        bb = backbone
    elif isinstance(backbone, dict):  # several backbones in one hypercolumn
        bb = backbone_union(backbone, weights=weights)
    else:
        bb = build_backbone(backbone, weights=weights)
    n_channels = fit_channels(images, channel_strategy, bb.in_chans, param=param)
    bb = prepare_backbone(bb, channel_strategy, n_channels)
    info = resolve_layers(bb, layers)
    if scales is not None:
        info = scaled_info(info, scales)
    if optimize and own:
        keep = {d.get("layer", d["name"]) for d in info} | set(bb.stages())
        if optimize_for_inference(bb.model, int(bb.mean.shape[1]), keep):
            bb.__dict__.pop("_fingerprint", None)  # a map cache key of the unfolded weights
    return FeatureEngine(
        bb.to(dev).eval(), info, device=dev, dtype=dtype, batch_size=batch_size,
        image_size=image_size, tile_size=tile_size, cache=cache, scales=scales,
        channel_strategy=channel_strategy, n_channels=n_channels,
        intensity_range=intensity_range, append_location=append_location, verbose=verbose,
    )
