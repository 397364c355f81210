"""Building a :class:`~skhyper.features.FeatureEngine` from settings: :func:`build_engine`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._param_validation import validate_params
from ._backbone import Backbone, resolve_layers
from ._build import DEFAULT_BACKBONE, build_backbone
from ._channels import fit_channels, prepare_backbone
from ._engine import FeatureEngine
from ._optimize import optimize_for_inference
from ._scales import scaled_info
from ._settings import EngineSettings
from ._union import backbone_union

__all__ = ["build_engine"]


@validate_params(
    {
        "backbone": [str, torch.nn.Module, dict],
        "layers": [list, tuple, None],
        "weights": "no_validation",
        "settings": [EngineSettings, None],
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
    settings: EngineSettings | None = None,
    optimize: bool = True,
    images: Sequence[np.ndarray] | None = None,
    param: str = "images",
    **overrides: Any,
) -> FeatureEngine:
    """Build a :class:`FeatureEngine`: everything that runs the network, fixed once.

    Parameters
    ----------
    backbone : str, torch.nn.Module or dict, default="efficientnet_lite0"
        Built by :func:`~skhyper.features.build_backbone` (a copy; a dict builds a
        :func:`~skhyper.features.backbone_union`) unless it is a
        :class:`~skhyper.features.Backbone`, which is used as it is.
    layers : list of str or int, default=None
        Layer names or stage indices (:func:`~skhyper.features.list_layers`); None: the stages.
    weights : None, "imagenet", str or path, default="imagenet"
        For a backbone given by name.
    settings : EngineSettings, default=None
        How the engine runs; None: the defaults of :class:`EngineSettings`.
    optimize : bool, default=True
        Fold batch norms into their convolutions in the copy built here
        (:func:`~skhyper.features.optimize_for_inference`; never in a ``Backbone`` used as it
        is, never into a convolution that is a captured layer or a stage).
    images : list of ndarray, default=None
        Teach the channel count to the ``"per_channel"`` / ``"first_conv"`` strategies.
    param : str, default="images"
        The name of ``images`` in messages.
    **overrides
        Any setting of :class:`EngineSettings` by name (``device="cpu"``, ``batch_size=4``,
        ...), over ``settings``: the parameters of :class:`~skhyper.HypercolumnTransformer`
        (which calls this in ``fit``) with the same names.

    Returns
    -------
    FeatureEngine
        The engine, its layers tapped and its receptive field computed, ready to
        be used from several threads; with ``scales``, one map per scale and layer.

    Raises
    ------
    TypeError
        For an override that is not a setting (the settings are named in the message).

    See Also
    --------
    skhyper.HypercolumnTransformer : The estimator that builds one in ``fit`` (``engine_``).

    Examples
    --------
    >>> from skhyper.features import EngineSettings, build_engine
    >>> build_engine("resnet18", layers=[1, 3], weights=None, device="cpu").map_names
    ['layer1', 'layer3']
    >>> settings = EngineSettings(device="cpu", tile_size=None)
    >>> build_engine("resnet18", weights=None, settings=settings, batch_size=2).settings == (
    ...     EngineSettings(device="cpu", tile_size=None, batch_size=2))
    True
    """
    settings = _merged_settings(settings, overrides)
    own = not isinstance(backbone, Backbone)  # a Backbone instance is the caller's: as it is
    if not own:
        bb = backbone
    elif isinstance(backbone, dict):  # several backbones in one hypercolumn
        bb = backbone_union(backbone, weights=weights)
    else:
        bb = build_backbone(backbone, weights=weights)
    n_channels = fit_channels(images, settings.channel_strategy, bb.in_chans, param=param)
    bb = prepare_backbone(bb, settings.channel_strategy, n_channels)
    info = resolve_layers(bb, layers)
    if settings.scales is not None:
        info = scaled_info(info, settings.scales)
    if optimize and own:
        keep = {d.source_layer for d in info} | set(bb.stages())
        if optimize_for_inference(bb.model, int(bb.mean.shape[1]), keep):
            bb.__dict__.pop("_fingerprint", None)  # a map cache key of the unfolded weights
    return FeatureEngine(bb.to(settings.device).eval(), info, settings, n_channels=n_channels)


def _merged_settings(settings: EngineSettings | None, overrides: dict[str, Any]) -> EngineSettings:
    """``settings`` (or the defaults) with ``overrides``, validated."""
    unknown = sorted(set(overrides) - set(EngineSettings.names()))
    if unknown:
        raise TypeError(
            f"build_engine got unexpected keyword arguments {unknown}: it takes backbone, "
            f"layers, weights, settings, optimize, images, param and the settings "
            f"{list(EngineSettings.names())}."
        )
    if settings is None:
        return EngineSettings(**overrides)
    return dataclasses.replace(settings, **overrides) if overrides else settings
