"""What runs the network: backbones, layer capture, the feature engine, and what it needs.

The stage of the package that turns images into native maps and hypercolumns.
Everything that runs a model goes through a :class:`FeatureEngine`: built once
(``HypercolumnTransformer.fit`` exposes it as ``engine_``), it owns the
backbone copy and every setting of the forward pass, and it is safe to use
from several threads at once.

* Backbones: :func:`build_backbone` (torchvision / timm names, modules,
  weights), :func:`list_layers`, :class:`Backbone` (thread-safe layer capture:
  hooks registered once, a per-call record in a context variable).
* Input: channel strategies (:class:`PerChannelBackbone`,
  :func:`adapt_first_conv`), intensities (:func:`rescale_intensity`,
  :func:`to_float_image`), multi-scale naming (:func:`scaled_info`).
* Speed: :func:`optimize_for_inference` (batch norms folded into convolutions, activations
  fused into them, in the engine's own copy; the modules it swaps in: :class:`FastConv2d`,
  :class:`SamePadConv2d`, :class:`FastReLU6`).
* Maps: :class:`MapCache`, exact tiling (:func:`receptive_field`,
  :func:`plan_axis`, :func:`tiled_maps`), bilinear reads (:func:`sample_maps`,
  :func:`interp_weights`, :func:`row_bands`).
* Functions: :func:`extract_hypercolumns`, :func:`extract_dense`.
"""

from ._backbone import Backbone, resolve_layers
from ._bilinear import interp_weights, row_bands, sample_maps, upsample_canvas
from ._build import DEFAULT_BACKBONE, build_backbone, list_layers
from ._cache import MapCache
from ._channels import (
    CHANNEL_STRATEGIES,
    PerChannelBackbone,
    adapt_first_conv,
    find_first_conv,
)
from ._engine import LOCATION_INFO, FeatureEngine
from ._extract import extract_dense, extract_hypercolumns
from ._fast_modules import FastConv2d, FastReLU6, SamePadConv2d
from ._intensity import check_intensity_range, rescale_intensity, to_float_image
from ._maps import DTYPES
from ._optimize import NormActRemainder, foldable_pairs, optimize_for_inference
from ._records import FeatureInfo
from ._scales import AUTO_SCALE, auto_scales, check_scales, scaled_info, split_scaled
from ._settings import EngineSettings
from ._setup import build_engine
from ._tiling import NotTileableError, needs_tiling, plan_axis, receptive_field, tiled_maps
from ._transformers import TokenMaps, is_transformer, map_canvases, transformer_backbone
from ._union import BackboneUnion, backbone_union

__all__ = [
    "CHANNEL_STRATEGIES",
    "DEFAULT_BACKBONE",
    "DTYPES",
    "Backbone",
    "BackboneUnion",
    "EngineSettings",
    "FeatureEngine",
    "FeatureInfo",
    "LOCATION_INFO",
    "MapCache",
    "FastConv2d",
    "FastReLU6",
    "NormActRemainder",
    "SamePadConv2d",
    "NotTileableError",
    "PerChannelBackbone",
    "TokenMaps",
    "adapt_first_conv",
    "backbone_union",
    "build_backbone",
    "build_engine",
    "check_intensity_range",
    "AUTO_SCALE",
    "auto_scales",
    "check_scales",
    "extract_dense",
    "extract_hypercolumns",
    "find_first_conv",
    "foldable_pairs",
    "interp_weights",
    "is_transformer",
    "list_layers",
    "map_canvases",
    "needs_tiling",
    "optimize_for_inference",
    "plan_axis",
    "receptive_field",
    "rescale_intensity",
    "resolve_layers",
    "row_bands",
    "sample_maps",
    "scaled_info",
    "split_scaled",
    "tiled_maps",
    "to_float_image",
    "transformer_backbone",
    "upsample_canvas",
]
