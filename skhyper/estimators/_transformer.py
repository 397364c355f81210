"""HypercolumnTransformer: pixels (a PixelSet) -> hypercolumn descriptors."""

from __future__ import annotations

import os
from numbers import Integral
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._param_validation import Interval, ParamValidationMixin, StrOptions
from .._validation import check_boxes, check_images
from ..features import (
    CHANNEL_STRATEGIES,
    DEFAULT_BACKBONE,
    Backbone,
    EngineSettings,
    MapCache,
    auto_scales,
    build_engine,
)
from ..features._intensity import check_intensity_range
from ..features._scales import check_scales
from ..features._settings import DTYPES
from ..sampling import PixelSet
from ._checks import VersionedMixin

__all__ = ["HypercolumnTransformer"]


class HypercolumnTransformer(ParamValidationMixin, VersionedMixin, TransformerMixin, BaseEstimator):
    """Turn pixels into hypercolumns: CNN activations of several layers above each pixel.

    Each chosen layer's map is bilinearly upsampled to the image (fully
    connected layers count as 1x1 maps) and the layers are concatenated
    (Hariharan et al., CVPR 2015). The upsampling is never done in full: every
    image runs through the backbone once and each native-resolution map is
    sampled at the pixels, so a row of ``transform(X)`` equals the dense
    hypercolumn at that pixel.

    Parameters
    ----------
    backbone : str, torch.nn.Module or dict, default="efficientnet_lite0"
        A model name (``"efficientnet_lite0"``: timm ``tf_efficientnet_lite0``
        with bundled ImageNet weights, offline; torchvision ``"vgg16"``,
        ``"resnet18"``, ``"resnet50"``, ...; timm names, vision transformers
        included: ``"timm:vit_small_patch14_dinov2"``, Swin, SAM, EVA) or a
        module, see :func:`skhyper.features.build_backbone`. ``fit`` copies it.
        A dict ``{name: backbone}`` puts several backbones in one hypercolumn
        (:func:`skhyper.features.backbone_union`; layers ``"name.layer"``).
    layers : list of str or int, default=None
        Layer names (see :func:`skhyper.features.list_layers`) or indices
        into the backbone's stages. None takes all stages.
    weights : None, "imagenet" or str or path, default="imagenet"
        Weights for a named backbone: None for random (seeded) initialization,
        ``"imagenet"`` for pretrained ones (downloaded when needed, bundled
        for the default backbone), or a path to a state dict file.
    device : {"auto", "cpu", "cuda"} or str, default="auto"
        ``"auto"`` uses CUDA when available. ``"cuda:N"`` is accepted.
    batch_size : int, default=8
        Images per forward pass.
    dtype : {"float32", "bfloat16", "float16"}, default="float32"
        Forward-pass precision (``bfloat16`` is the fast choice on GPU); the
        output is float32.
    image_size : int, default=None
        Resize images so that their longer side has this many pixels before
        the forward pass. Pixels stay in original image coordinates.
    verbose : bool, default=False
        Show a tqdm progress bar.
    tile_size : int or None, default=768
        Images larger than one window (``tile_size`` plus the receptive-field
        halo on both sides) go through the backbone in tiles whose maps equal
        the whole-image maps (:func:`skhyper.features.tiled_maps`); this bounds memory for
        large images (a 4096 x 4096 ``predict`` with the default backbone
        stays near 2.6 GB on CPU; larger tiles are faster and use more).
        None never tiles (needed for image-level layers such as
        ``global_pool`` on large images).
    cache : MapCache or None, default=None
        A :class:`skhyper.features.MapCache` shared by all clones: native maps of
        images already seen are reused, e.g. across a GridSearchCV over
        ``layers``.
    append_location : bool, default=False
        Append two columns ``location.u``, ``location.v``: each pixel's
        position in ``[0, 1]`` within its frame (``X.boxes``, or the whole
        image), see :func:`skhyper.location.pixel_locations`. What
        :class:`~skhyper.GridLocationClassifier` needs.
    channel_strategy : {"replicate", "per_channel", "first_conv"} or None, default=None
        How images whose channels differ from the backbone's 3 are fed (see
        :mod:`skhyper.features`). None: a 1-channel image is replicated, other
        counts must match the backbone. ``"replicate"``: grayscale images only,
        replicated. ``"per_channel"``: each channel goes through the backbone
        as a replicated grayscale image and the hypercolumns of the channels
        are concatenated (per layer, channel-major: names
        ``ch0.layer1.c000``...; ``n_channels_in_`` times the features).
        ``"first_conv"``: the first convolution is adapted to the channel
        count from its pretrained RGB weights
        (:func:`skhyper.features.adapt_first_conv`). For the last two the
        channel count is learnt in ``fit`` from ``X.images`` (3 when ``fit``
        gets no ``X``) and images with another count raise.
    intensity_range : None, (low, high) or ("percentile", p_low, p_high), default=None
        Which pixel values map to black and white (see
        :func:`skhyper.features.rescale_intensity`). None: the dtype's range (integers divided
        by their dtype's maximum, floats taken as they are, expected in
        ``[0, 1]``), with an :class:`~skhyper.exceptions.IntensityWarning`
        when an integer image uses less than 1/16 of its range or a float
        image lies outside ``[0, 1]``. ``(low, high)``: ``low..high`` is
        rescaled to ``[0, 1]`` and values outside are clipped, e.g.
        ``(100, 4000)`` for a ``uint16`` camera. ``("percentile", 1, 99.8)``:
        the same with the 1st and 99.8th percentiles of each image and
        channel.
    scales : list or tuple of float, "auto" or None, default=None
        Multi-scale hypercolumns (see ``scaled_info``): each image is
        resized by every factor (antialiased bilinear; after ``image_size``)
        and goes through the backbone; every layer's map at every scale is
        read in original image coordinates and the blocks are concatenated,
        scale-major (names ``s0.5.layer3.c017``). Distinct positive numbers;
        1.0 need not be among them. None: one scale, the image as fed. Dense
        prediction still folds (one 1x1 head per scale and layer), tiling
        tiles each resized image, and the cache keys hold the scale.
        ``"auto"`` learns one level from the images given to ``fit``
        (:func:`skhyper.features.auto_scales`: small images are fed up to 2x
        larger so that their longer side nears 512 pixels; ``scales_`` holds
        the result; without images, the image as it is). The default of
        :class:`~skhyper.HypercolumnSegmenter`.
    optimize : bool, default=True
        Fold every batch normalization into the convolution before it in the
        fitted copy of the backbone
        (:func:`skhyper.features.optimize_for_inference`): the same maps to
        float32 rounding, from a faster pass (1.4-2.6x for EfficientNet-Lite0
        on CPU). Captured convolutions keep their own output; the module
        passed as ``backbone`` is never changed, and a
        :class:`skhyper.features.Backbone` instance is used as it is (not
        optimized). Activations run in place where no captured map can be
        overwritten, and timm's "same"-padded convolutions and ``ReLU6`` get
        faster kernels with the same output.

    Attributes
    ----------
    engine_ : skhyper.features.FeatureEngine
        The fitted feature engine: everything that runs the network, built
        once here and shared by every estimator that holds this transformer
        (native maps, sampled rows, dense hypercolumns). Safe to use from
        several threads at once. The attributes below read from it.
    backbone_ : skhyper.features.Backbone
        The fitted copy of the backbone, in eval mode on ``device_``.
    device_ : torch.device
        The device used.
    feature_info_ : list of FeatureInfo
        One record per layer (:class:`~skhyper.features.FeatureInfo`, readable as a
        read-only dict too): ``name``, ``num_chs``, ``reduction`` (stride at a
        224 px input; None for 1x1 vectors), ``kind``. With
        ``channel_strategy="per_channel"`` a layer's ``num_chs`` counts all
        image channels (``n_channels_in_`` times the layer's width): its block
        of the hypercolumn holds the layer for channel 0, then channel 1...
        With ``scales``, one dict per scale and layer (scale-major), named
        ``s<scale>.<layer>`` with the keys ``layer`` and ``scale`` added and
        ``reduction`` in original image pixels (the layer's divided by the
        scale).
    scales_ : tuple of float or None
        The validated ``scales``.
    n_features_out_ : int
        Length of a hypercolumn.
    n_channels_in_ : int
        Image channels taken: the count learnt at fit for ``"per_channel"`` /
        ``"first_conv"``, 1 for ``"replicate"``, the backbone's (3; 1 is
        accepted too) for None.

    See Also
    --------
    skhyper.sample_pixels : draw labelled pixels, the ``(X, y)`` for ``fit``.
    skhyper.features.extract_hypercolumns : the same as a function.
    HypercolumnSegmenter : images and masks in, label maps out.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for object
       segmentation and fine-grained localization", CVPR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skhyper import HypercolumnTransformer, sample_pixels
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((3, 48, 64, 3))
    >>> masks = (images[..., 0] > 0.5).astype(int)
    >>> X, y = sample_pixels(images, masks, n_per_image=50, random_state=0)
    >>> hc = HypercolumnTransformer("resnet18", layers=["layer1", "layer3"], weights=None,
    ...                             device="cpu")
    >>> hc.fit_transform(X).shape
    (150, 320)
    >>> hc.get_feature_names_out()[:2].tolist()
    ['layer1.c000', 'layer1.c001']
    >>> pipe = make_pipeline(hc, LogisticRegression(max_iter=50)).fit(X, y)
    >>> pipe.predict(X).shape
    (150,)

    Two-channel ``uint16`` microscopy, each channel through the backbone:

    >>> cells = rng.integers(100, 4000, size=(2, 48, 64, 2), dtype=np.uint16)
    >>> X, y = sample_pixels(cells, cells[..., 0] > 2000, n_per_image=50, random_state=0)
    >>> hc = HypercolumnTransformer("resnet18", layers=["layer1"], weights=None, device="cpu",
    ...                             channel_strategy="per_channel",
    ...                             intensity_range=("percentile", 1, 99.8))
    >>> hc.fit_transform(X).shape, hc.n_channels_in_
    ((100, 128), 2)
    >>> hc.get_feature_names_out()[[0, 64]].tolist()
    ['ch0.layer1.c000', 'ch1.layer1.c000']

    An image pyramid: each layer at full, half and quarter size:

    >>> hc = HypercolumnTransformer("resnet18", layers=["layer1"], weights=None, device="cpu",
    ...                             scales=(1.0, 0.5, 0.25))
    >>> X, y = sample_pixels(images, masks, n_per_image=20, random_state=0)
    >>> hc.fit_transform(X).shape
    (60, 192)
    >>> hc.get_feature_names_out()[[0, 64, 128]].tolist()
    ['s1.0.layer1.c000', 's0.5.layer1.c000', 's0.25.layer1.c000']
    """

    _required_fitted = ("engine_",)

    _parameter_constraints: dict = {
        "backbone": [str, torch.nn.Module, dict],
        "layers": [list, tuple, None],
        "weights": [None, str, os.PathLike, object],
        "device": [str, torch.device],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "dtype": [StrOptions(set(DTYPES))],
        "image_size": [Interval(Integral, 1, None, closed="left"), None],
        "verbose": ["boolean"],
        "tile_size": [Interval(Integral, 1, None, closed="left"), None],
        "cache": [MapCache, None],
        "append_location": ["boolean"],
        "channel_strategy": [StrOptions(set(CHANNEL_STRATEGIES)), None],
        "intensity_range": [tuple, list, None],
        "scales": [tuple, list, StrOptions({"auto"}), None],
        "optimize": ["boolean"],
    }

    def __init__(  # noqa: PLR0913 (an estimator's settings are its constructor parameters)
        self,
        backbone: str | torch.nn.Module = DEFAULT_BACKBONE,
        *,
        layers: list | tuple | None = None,
        weights: Any = "imagenet",
        device: str | torch.device = "auto",
        batch_size: int = 8,
        dtype: str = "float32",
        image_size: int | None = None,
        verbose: bool = False,
        tile_size: int | None = 768,
        cache: MapCache | None = None,
        append_location: bool = False,
        channel_strategy: str | None = None,
        intensity_range: tuple | list | None = None,
        scales: tuple | list | None = None,
        optimize: bool = True,
    ) -> None:
        self.backbone = backbone
        self.layers = layers
        self.weights = weights
        self.device = device
        self.batch_size = batch_size
        self.dtype = dtype
        self.image_size = image_size
        self.verbose = verbose
        self.tile_size = tile_size
        self.cache = cache
        self.append_location = append_location
        self.channel_strategy = channel_strategy
        self.intensity_range = intensity_range
        self.scales = scales
        self.optimize = optimize

    def fit(self, X: PixelSet | None = None, y: Any = None) -> HypercolumnTransformer:
        """Build the feature engine: copy the backbone, resolve the layers and settings.

        Parameters
        ----------
        X : PixelSet, optional
            Checked when given; the only thing learnt from it is the channel
            count of ``X.images`` for ``channel_strategy="per_channel"`` or
            ``"first_conv"`` (3 without ``X``).
        y : None
            Ignored; present for the scikit-learn API (a pipeline passes its ``y``).

        Returns
        -------
        self : HypercolumnTransformer
            The fitted transformer.
        """
        if X is not None:
            _check_pixelset(X)
        return self.fit_images(None if X is None else X.images, param="X.images")

    def fit_images(self, images: Any = None, *, param: str = "images") -> HypercolumnTransformer:
        """``fit`` from images (or None) instead of a PixelSet: what image-level estimators
        call with the images they are fitted on.

        Parameters
        ----------
        images : ndarray or list of ndarray, default=None
            Validated here (once: checked images pass through unscanned); only their channel
            count is learnt, for the ``"per_channel"`` / ``"first_conv"`` strategies.
        param : str, default="images"
            The name of ``images`` in error messages.

        Returns
        -------
        self : HypercolumnTransformer
            The fitted transformer.
        """
        self._validate_params()
        intensity_range = check_intensity_range(self.intensity_range)
        auto = isinstance(self.scales, str) and self.scales == "auto"
        scales = None if auto else check_scales(self.scales)
        checked = None
        if images is not None:
            in_chans = self.backbone.in_chans if isinstance(self.backbone, Backbone) else 3
            strict = self.channel_strategy is None
            checked, _ = check_images(images, param=param, n_channels=in_chans if strict else None)
        if auto:
            scales = auto_scales(None if checked is None else [im.shape for im in checked])
        settings = EngineSettings(
            device=self.device, dtype=self.dtype, batch_size=self.batch_size,
            image_size=self.image_size, tile_size=self.tile_size, cache=self.cache,
            scales=scales, channel_strategy=self.channel_strategy,
            intensity_range=intensity_range, append_location=self.append_location,
            verbose=self.verbose,
        )
        self.engine_ = build_engine(self.backbone, layers=self.layers, weights=self.weights,
                                    settings=settings, optimize=self.optimize, images=checked,
                                    param=param)
        return self

    # Fitted attributes, read from the engine (one source of truth, pickled once).
    backbone_ = property(lambda self: self.engine_.backbone,
                         doc="The fitted copy of the backbone (``engine_.backbone``).")
    device_ = property(lambda self: self.engine_.device, doc="The device used.")
    feature_info_ = property(lambda self: self.engine_.feature_info,
                             doc="One FeatureInfo record per map (``engine_.feature_info``).")
    scales_ = property(lambda self: self.engine_.scales, doc="The validated ``scales``.")
    n_features_out_ = property(lambda self: self.engine_.n_features,
                               doc="Length of a hypercolumn.")
    n_channels_in_ = property(lambda self: self.engine_.n_channels,
                              doc="Image channels taken.")

    def transform(self, X: PixelSet) -> np.ndarray:
        """Hypercolumns of the pixels in ``X``.

        Parameters
        ----------
        X : PixelSet
            Pixels, e.g. from :func:`skhyper.sample_pixels`.

        Returns
        -------
        ndarray of shape (n_pixels, n_features_out_), float32
            With ``append_location``, the last two columns are the pixels'
            locations ``(u, v)`` in their frames (``X.boxes``, or whole images).
        """
        check_is_fitted(self)
        _check_pixelset(X)
        self.engine_.check_images(X.images, param="X.images")
        return self.engine_.sample(X)

    def transform_dense(self, images: Any, boxes: Any = None) -> np.ndarray | list[np.ndarray]:
        """Dense hypercolumns ``(height, width, n_features_out_)`` of whole images.

        For analysis and small images: the result holds the full hypercolumn of every pixel
        (``n_features_out_`` float32 values each). Dense prediction does not need it: a
        segmenter's folded head reads the native maps.

        Parameters
        ----------
        images : ndarray or list of ndarray
            One image ``(height, width[, channels])``, a list of them (any sizes) or a stack
            ``(n_images, height, width[, channels])``.
        boxes : array-like of shape (n_images, 4), default=None
            ``(x0, y0, x1, y1)`` frame of each image for the location columns
            (``append_location``); None: the whole images.

        Returns
        -------
        hypercolumns : ndarray or list of ndarray
            ``(height, width, n_features_out_)`` float32 per image: an array for one image, a
            list for a list or stack of images.
        """
        check_is_fitted(self)
        checked = self.engine_.check_images(images, param="images")
        out = self.engine_.dense(checked, boxes=check_boxes(boxes, checked))
        return out if checked.batched else out[0]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names ``"<layer>.c<channel>"``, e.g. ``"layer3.c017"``, in output order.

        With ``channel_strategy="per_channel"`` the image channel comes first:
        ``"ch1.layer3.c017"``; with ``scales`` the layer carries its scale:
        ``"s0.5.layer3.c017"``; location columns are ``location.u``, ``location.v``.

        Parameters
        ----------
        input_features : None
            Ignored; present for the scikit-learn API (the output names do not derive from
            input columns: the input is pixels).

        Returns
        -------
        feature_names_out : ndarray of str objects of shape (n_features_out_,)
            The name of each column of :meth:`transform`.
        """
        check_is_fitted(self)
        return np.asarray(self.engine_.feature_names(), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # pixels of images, not a table
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


def _check_pixelset(X: Any) -> None:
    if not isinstance(X, PixelSet):
        raise TypeError(
            "HypercolumnTransformer takes a PixelSet as X (pixels of images), e.g. "
            "X, y = skhyper.sample_pixels(images, masks); got "
            f"{type(X).__name__}. For whole images use transform_dense(images)."
        )
