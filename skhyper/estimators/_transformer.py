"""HypercolumnTransformer: pixels (a PixelSet) -> hypercolumn descriptors."""

from __future__ import annotations

import copy
import os
import warnings
from numbers import Integral
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._validation import resolve_device
from ..backbones import DEFAULT_BACKBONE, build_backbone, resolve_layers
from ..cache import MapCache
from ..channels import CHANNEL_STRATEGIES, check_channels, fit_channels, prepare_backbone
from ..exceptions import DeviceWarning
from ..extraction import DTYPES, extract_dense, extract_hypercolumns
from ..folding import LOCATION
from ..intensity import check_intensity_range
from ..location import frame_of, location_map, pixel_locations
from ..sampling import PixelSet, check_boxes
from ..scales import check_scales, scaled_info

__all__ = ["HypercolumnTransformer"]


class HypercolumnTransformer(TransformerMixin, BaseEstimator):
    """Turn pixels into hypercolumns: CNN activations of several layers above each pixel.

    Each chosen layer's map is bilinearly upsampled to the image (fully
    connected layers count as 1x1 maps) and the layers are concatenated
    (Hariharan et al., CVPR 2015). The upsampling is never done in full: every
    image runs through the backbone once and each native-resolution map is
    sampled at the pixels, so a row of ``transform(X)`` equals the dense
    hypercolumn at that pixel.

    Parameters
    ----------
    backbone : str or torch.nn.Module, default="efficientnet_lite0"
        A model name (``"efficientnet_lite0"``: timm ``tf_efficientnet_lite0``
        with bundled ImageNet weights, offline; torchvision ``"vgg16"``,
        ``"resnet18"``, ``"resnet50"``, ...; timm names) or a module, see
        :func:`skhyper.backbones.build_backbone`. ``fit`` copies it.
    layers : list of str or int, default=None
        Layer names (see :func:`skhyper.backbones.list_layers`) or indices
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
        the whole-image maps (:mod:`skhyper.tiling`); this bounds memory for
        large images (a 4096 x 4096 ``predict`` with the default backbone
        stays near 2.6 GB on CPU; larger tiles are faster and use more).
        None never tiles (needed for image-level layers such as
        ``global_pool`` on large images).
    cache : MapCache or None, default=None
        A :class:`skhyper.cache.MapCache` shared by all clones: native maps of
        images already seen are reused, e.g. across a GridSearchCV over
        ``layers``.
    append_location : bool, default=False
        Append two columns ``location.u``, ``location.v``: each pixel's
        position in ``[0, 1]`` within its frame (``X.boxes``, or the whole
        image), see :func:`skhyper.location.pixel_locations`. What
        :class:`~skhyper.GridLocationClassifier` needs.
    channel_strategy : {"replicate", "per_channel", "first_conv"} or None, default=None
        How images whose channels differ from the backbone's 3 are fed (see
        :mod:`skhyper.channels`). None: a 1-channel image is replicated, other
        counts must match the backbone. ``"replicate"``: grayscale images only,
        replicated. ``"per_channel"``: each channel goes through the backbone
        as a replicated grayscale image and the hypercolumns of the channels
        are concatenated (per layer, channel-major: names
        ``ch0.layer1.c000``...; ``n_channels_in_`` times the features).
        ``"first_conv"``: the first convolution is adapted to the channel
        count from its pretrained RGB weights
        (:func:`skhyper.channels.adapt_first_conv`). For the last two the
        channel count is learnt in ``fit`` from ``X.images`` (3 when ``fit``
        gets no ``X``) and images with another count raise.
    intensity_range : None, (low, high) or ("percentile", p_low, p_high), default=None
        Which pixel values map to black and white (see
        :mod:`skhyper.intensity`). None: the dtype's range (integers divided
        by their dtype's maximum, floats taken as they are, expected in
        ``[0, 1]``), with an :class:`~skhyper.exceptions.IntensityWarning`
        when an integer image uses less than 1/16 of its range or a float
        image lies outside ``[0, 1]``. ``(low, high)``: ``low..high`` is
        rescaled to ``[0, 1]`` and values outside are clipped, e.g.
        ``(100, 4000)`` for a ``uint16`` camera. ``("percentile", 1, 99.8)``:
        the same with the 1st and 99.8th percentiles of each image and
        channel.
    scales : list or tuple of float, default=None
        Multi-scale hypercolumns (see :mod:`skhyper.scales`): each image is
        resized by every factor (antialiased bilinear; after ``image_size``)
        and goes through the backbone; every layer's map at every scale is
        read in original image coordinates and the blocks are concatenated,
        scale-major (names ``s0.5.layer3.c017``). Distinct positive numbers;
        1.0 need not be among them. None: one scale, the image as fed. Dense
        prediction still folds (one 1x1 head per scale and layer), tiling
        tiles each resized image, and the cache keys hold the scale.

    Attributes
    ----------
    backbone_ : skhyper.backbones.Backbone
        The fitted copy of the backbone, in eval mode on ``device_``.
    device_ : torch.device
        The device used.
    feature_info_ : list of dict
        One dict per layer: ``name``, ``num_chs``, ``reduction`` (stride at a
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
    skhyper.extract_hypercolumns : the function behind ``transform``.

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

    _parameter_constraints: dict = {
        "backbone": [str, torch.nn.Module],
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
        "scales": [tuple, list, None],
    }

    def __init__(
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

    def fit(self, X: PixelSet | None = None, y: Any = None) -> HypercolumnTransformer:
        """Build the backbone and validate the layers.

        Parameters
        ----------
        X : PixelSet, optional
            Checked when given; the only thing learnt from it is the channel
            count of ``X.images`` for ``channel_strategy="per_channel"`` or
            ``"first_conv"`` (3 without ``X``).
        y : ignored

        Returns
        -------
        self : HypercolumnTransformer
        """
        self._validate_params()
        if X is not None:
            _check_pixelset(X)
        return self._fit_images(None if X is None else X.images, param="X.images")

    def _fit_images(self, images: Any, param: str) -> HypercolumnTransformer:
        """``fit`` on images (or None): what HypercolumnSegmenter calls with its images."""
        self._validate_params()
        check_intensity_range(self.intensity_range)
        scales = check_scales(self.scales)
        self.device_ = resolve_device(self.device)
        bb = build_backbone(self.backbone, weights=self.weights)
        self.n_channels_in_ = fit_channels(images, self.channel_strategy, bb.in_chans,
                                           param=param)
        bb = prepare_backbone(bb, self.channel_strategy, self.n_channels_in_)
        info = resolve_layers(bb, self.layers)
        self.scales_ = scales
        self.feature_info_ = info if scales is None else scaled_info(info, scales)
        self.backbone_ = bb.to(self.device_)
        self.n_features_out_ = sum(d["num_chs"] for d in self._blocks())
        return self

    def _check_images(self, images: Any, param: str) -> tuple[list[np.ndarray], bool]:
        """Checked images that follow the fitted channel strategy, and whether batched."""
        return check_channels(images, self.channel_strategy, self.n_channels_in_, param=param)

    def transform(self, X: PixelSet) -> np.ndarray:
        """Hypercolumns of the pixels in ``X``.

        Parameters
        ----------
        X : PixelSet
            Pixels, e.g. from :func:`skhyper.sample_pixels`.

        Returns
        -------
        ndarray of shape (n_pixels, n_features_out_), float32
        """
        check_is_fitted(self)
        _check_pixelset(X)
        self._check_images(X.images, param="X.images")
        out = extract_hypercolumns(X, self.backbone_, self._base_layers(), **self._run_kwargs(),
                                   **self._image_kwargs())
        if self.append_location:
            out = np.hstack([out, pixel_locations(X).astype(np.float32)])
        return out

    def transform_dense(self, images: Any, boxes: Any = None) -> np.ndarray | list[np.ndarray]:
        """Dense hypercolumns ``(height, width, n_features_out_)`` of whole images.

        For analysis and small images: the result holds the full hypercolumn.
        Returns a list for a list or stack of images, an array for one image.
        ``boxes`` (``(n_images, 4)``) are the frames of the location columns.
        """
        check_is_fitted(self)
        self._check_images(images, param="images")
        out = extract_dense(images, self.backbone_, self._base_layers(), **self._run_kwargs(),
                            **self._image_kwargs())
        if not self.append_location:
            return out
        single = isinstance(out, np.ndarray)
        maps = [out] if single else out
        frames = check_boxes(boxes, maps)
        frames = [None] * len(maps) if frames is None else frames
        maps = [
            np.concatenate([m, location_map(m.shape[:2], frame_of(b, m.shape[:2]))], axis=-1)
            for m, b in zip(maps, frames)
        ]
        return maps[0] if single else maps

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names ``"<layer>.c<channel>"``, e.g. ``"layer3.c017"``, in output order.

        With ``channel_strategy="per_channel"`` the image channel comes first:
        ``"ch1.layer3.c017"``; with ``scales`` the layer carries its scale:
        ``"s0.5.layer3.c017"``.
        """
        check_is_fitted(self)
        names = []
        per_channel = self.channel_strategy == "per_channel"
        n_img = self.n_channels_in_ if per_channel else 1
        for d in self.feature_info_:
            n = d["num_chs"] // n_img
            width = max(3, len(str(n - 1)))
            for k in range(n_img):
                prefix = f"ch{k}." if per_channel else ""
                names.extend(f"{prefix}{d['name']}.c{j:0{width}d}" for j in range(n))
        if self.append_location:
            names.extend(["location.u", "location.v"])
        return np.asarray(names, dtype=object)

    def _blocks(self) -> list[dict]:
        """``feature_info_`` plus :data:`~skhyper.folding.LOCATION` when locations are appended."""
        return [*self.feature_info_, LOCATION] if self.append_location else list(self.feature_info_)

    def _layer_names(self) -> list[str]:
        """Names of the maps, one per block: ``s<scale>.<layer>`` with scales."""
        return [d["name"] for d in self.feature_info_]

    def _base_layers(self) -> list[str]:
        """The backbone layers, once each (what ``layers`` resolved to)."""
        return list(dict.fromkeys(d.get("layer", d["name"]) for d in self.feature_info_))

    def _image_kwargs(self) -> dict[str, Any]:
        """How pixel values are read (kept apart from ``_run_kwargs``, whose users may feed
        images already converted to float)."""
        return {"intensity_range": self.intensity_range}

    def _run_kwargs(self) -> dict[str, Any]:
        return {
            "device": self.device_,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "image_size": self.image_size,
            "verbose": self.verbose,
            "cache": self.cache,
            "tile_size": self.tile_size,
            "scales": getattr(self, "scales_", None),
        }

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        bb = state.get("backbone_")
        if bb is not None and bb.mean.device.type != "cpu":
            state["backbone_"] = copy.deepcopy(bb).cpu()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        dev = getattr(self, "device_", None)
        if dev is not None and dev.type == "cuda":
            if torch.cuda.is_available():
                self.backbone_.to(dev)
            else:
                warnings.warn(
                    f"This HypercolumnTransformer was fitted on {dev} but CUDA is not "
                    "available here; it runs on the CPU.",
                    DeviceWarning,
                    stacklevel=2,
                )
                self.device_ = torch.device("cpu")

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
