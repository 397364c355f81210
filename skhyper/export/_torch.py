"""A fitted segmenter as a plain PyTorch network: :func:`to_torch`.

A segmenter whose classifier folds (:func:`skhyper.heads.fold_head`) *is* a feed-forward
network: the backbone cut at its deepest chosen layer (per scale), one 1x1 convolution per
map (the folded head's blocks), upsampling of the score maps to the image (bilinear, or for
the coarse layers of an ``upsampling="edge_aware"`` segmenter joint bilateral upsampling
guided by the input image, ``edge_aware_upsample_batch``), their sum plus
the bias, the location terms or the K x K grid blend, and the link (sigmoid, softmax or
one-vs-rest). :class:`HypercolumnNet` is that network; it takes a float batch ``(n, channels,
height, width)`` in ``[0, 1]`` (the images after the engine's intensity step, see
:func:`skhyper.export.prepare_images`) and returns ``(n, n_classes, height, width)``
probabilities (or scores), equal to ``seg.predict_proba`` within float32 rounding.

What is not part of the network, because it is not a fixed function of the pixels:
``image_size`` (a resize to the longer side, refused), frames (``boxes``: the whole image is the
frame), tiling of huge images (the runtime's job; the network sees whole images), and the
intensity range (a step before the network, described in the exported metadata).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..estimators import HypercolumnSegmenter
from ..features import Backbone
from ..features._scales import split_scaled
from ..heads import LINKS, FoldedGrid, HeadModule

__all__ = ["HypercolumnNet", "check_exportable", "export_config", "to_torch"]

_OUTPUTS = ("predict_proba", "decision_function")
_MAX_DENOMINATOR = 1024
_PROBE_SHAPE = (97, 131)  # an image size no patch size divides


def check_exportable(model: Any, output: str = "predict_proba") -> None:
    """Raise a clear error unless ``model`` is a fitted segmenter that exports as a network.

    Parameters
    ----------
    model : HypercolumnSegmenter
        Fitted, with a classifier that folds (a chain of ``StandardScaler`` / ``PCA`` / a linear
        model, or a :class:`~skhyper.GridLocationClassifier` of such chains).
    output : {"predict_proba", "decision_function"}, default="predict_proba"

    Raises
    ------
    TypeError
        ``model`` is not a :class:`~skhyper.HypercolumnSegmenter`.
    ValueError
        The classifier does not fold (forests, boosting), ``output`` needs a link the
        classifier lacks, the features resize images (``image_size``), or a scale is not a
        multiple of 1/1024.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from skhyper import HypercolumnSegmenter, HypercolumnTransformer
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((2, 40, 52, 3)).astype(np.float32)
    >>> masks = (images[..., 0] > 0.5).astype(int)
    >>> hc = HypercolumnTransformer("resnet18", layers=["relu"], weights=None, device="cpu")
    >>> forest = HypercolumnSegmenter(hc, RandomForestClassifier(n_estimators=2),
    ...                               n_pixels_per_image=50).fit(images, masks)
    >>> check_exportable(forest)
    Traceback (most recent call last):
    ...
    ValueError: The 'model' parameter has a classifier that does not fold ...
    """
    if not isinstance(model, HypercolumnSegmenter):
        raise TypeError(
            "The 'model' parameter must be a fitted skhyper.HypercolumnSegmenter; got "
            f"{type(model).__name__}."
        )
    check_is_fitted(model)
    if output not in _OUTPUTS:
        raise ValueError(
            f"The 'output' parameter must be one of {_OUTPUTS}. Got {output!r} instead."
        )
    head = model.folded_
    if head is None:
        raise ValueError(
            "The 'model' parameter has a classifier that does not fold "
            f"({type(model.classifier_).__name__}), so it is not a feed-forward network and "
            "cannot be exported. Only chains of affine steps ending in a linear model "
            "(StandardScaler, PCA, LogisticRegression, SGDClassifier, ...) or a "
            "GridLocationClassifier of them fold; refit with one, or keep predicting with "
            "model.predict (which runs forests and boosting in bands of pixels)."
        )
    if output == "predict_proba" and head.link is None:
        raise ValueError(
            "The 'model' parameter has a classifier whose predict_proba does not fold "
            f"({type(model.classifier_).__name__}); export output='decision_function' (the "
            "scores) instead."
        )
    engine = model.hypercolumns_.engine_
    canvases = getattr(engine, "canvases", None)  # maps of images padded for the backbone
    if canvases is not None and any(c is not None for c in canvases(_PROBE_SHAPE)):
        raise ValueError(
            f"The 'model' parameter has a backbone ({engine.backbone.name!r}) whose maps cover "
            "the image padded to whole patches (a transformer), which the exported network "
            "does not reproduce yet. Export a segmenter on a CNN backbone, or predict with "
            "model.predict."
        )
    odd = [s for s in engine.scales or () if float(s).as_integer_ratio()[1] > _MAX_DENOMINATOR]
    if odd:
        raise ValueError(
            f"The 'model' parameter has scales {odd} that are not multiples of "
            f"1/{_MAX_DENOMINATOR}; an exported network computes each fed size round(n * scale) "
            "exactly only for such (dyadic) scales, e.g. 0.5, 0.25, 0.75, 1.5, 2.0. Refit with "
            "those, or predict with model.predict."
        )
    if engine.image_size is not None:
        raise ValueError(
            f"The 'model' parameter resizes every image to image_size={engine.image_size} "
            "(longer side) before the backbone, which an exported network cannot do for any "
            "input size. Refit with image_size=None and resize images before prediction, or "
            "predict with model.predict."
        )


def export_config(model: HypercolumnSegmenter, output: str = "predict_proba") -> dict[str, Any]:
    """What a runtime needs besides the network: classes, input channels, intensity step.

    Plain JSON types only (it is stored in the ONNX metadata). ``n_channels`` is the
    network's input channel count (1 for ``channel_strategy="replicate"``: the network
    replicates), ``intensity_range`` the step before it (:func:`prepare_image`).

    Parameters
    ----------
    model : HypercolumnSegmenter
        A fitted segmenter whose classifier folds (:func:`check_exportable` conditions).
    output : {"predict_proba", "decision_function"}, default="predict_proba"
        What the exported network returns: class probabilities or classifier scores.

    Returns
    -------
    config : dict
        ``format``, ``skhyper_version``, ``output``, ``classes``, ``link``, ``n_channels``,
        ``intensity_range``, ``channel_strategy``, ``backbone``, ``maps``, ``scales``,
        ``grid_size``, ``upsampling`` and ``min_size`` (the smallest image side the network
        is checked for).

    Raises
    ------
    ValueError
        If the segmenter cannot be exported (see :func:`check_exportable`).

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper import HypercolumnSegmenter, HypercolumnTransformer
    >>> rng = np.random.default_rng(0)
    >>> images = list(rng.integers(100, 4000, (2, 40, 52)).astype(np.uint16))
    >>> seg = HypercolumnSegmenter(HypercolumnTransformer(
    ...     "resnet18", layers=["relu"], weights=None, device="cpu",
    ...     channel_strategy="replicate", intensity_range=(100, 4000)),
    ...     n_pixels_per_image=50).fit(images, [(i > 2000).astype(int) for i in images])
    >>> config = export_config(seg)
    >>> config["classes"], config["n_channels"], config["intensity_range"]
    ([0, 1], 1, [100.0, 4000.0])
    """
    from .._version import __version__

    check_exportable(model, output)
    engine = model.hypercolumns_.engine_
    head = model.folded_
    n_in = 1 if engine.channel_strategy == "replicate" else engine.backbone.in_chans
    rng = engine.intensity_range
    return {
        "format": "skhyper.export/1",
        "skhyper_version": __version__,
        "output": output,
        "classes": [c.item() if hasattr(c, "item") else c for c in head.classes],
        "link": head.link,
        "n_channels": int(n_in),
        "intensity_range": None if rng is None else list(rng),
        "channel_strategy": engine.channel_strategy,
        "backbone": engine.backbone.name,
        "maps": list(engine.map_names),
        "scales": None if engine.scales is None else list(engine.scales),
        "grid_size": head.grid_size if isinstance(head, FoldedGrid) else 1,
        "upsampling": getattr(model, "upsampling", "bilinear"),
        "min_size": min_size(model),
    }


def min_size(model: HypercolumnSegmenter) -> int:
    """The smallest image side the exported network is checked for: every map at least 2 cells
    (about twice the largest stride in image pixels), at least 32."""
    red = [d["reduction"] for d in model.hypercolumns_.engine_.feature_info
           if d.get("reduction") is not None]
    return int(max(32, 2 * round(max(red, default=16.0))))


class HypercolumnNet(nn.Module):
    """A folded segmenter as a network: ``(n, c, h, w)`` in ``[0, 1]`` -> ``(n, k, h, w)``.

    Built by :func:`to_torch` (see there for an example), which is how to get one; the
    constructor takes the parts that function collects from a fitted segmenter.

    Parameters
    ----------
    backbone : skhyper.features.Backbone
        A copy of the segmenter's backbone (its ``forward`` normalizes the input).
    plan : list of (float, list of str)
        Per scale, the layers read at that scale, in the order of the maps the head takes.
    head : skhyper.heads.HeadModule
        The folded head (float32).
    link : {"sigmoid", "softmax", "ovr"} or None
        The link from scores to probabilities; None: the network returns scores.
    n_inputs : int
        Input channels of the network (1 when grayscale is replicated to the backbone).
    config : dict
        :func:`export_config` of the segmenter, stored with the exported model.

    Attributes
    ----------
    backbone : skhyper.features.Backbone
        A copy of the segmenter's backbone (its ``forward`` normalizes the input).
    plan : list of (float, list of str)
        Per scale, the layers read at that scale, in the order of the maps
        (``split_scaled``).
    head : skhyper.heads.HeadModule
        The folded head (float32), the same module ``predict`` and
        :func:`skhyper.parallel.predict_large` use: 1x1 projections, bilinear or edge-aware
        upsampling (guided by the input image), location terms or the K x K grid blend.
    link : {"sigmoid", "softmax", "ovr"} or None
        None: the network returns scores.
    n_inputs : int
        Input channels.
    config : dict
        :func:`export_config` of the segmenter.
    edges : list of bool
        Per map, whether its score map is upsampled edge-aware.
    grid_size : int
        K of a K x K grid head (1: a plain head).

    See Also
    --------
    to_torch : Build the network of a fitted segmenter.
    to_onnx : Write it as an ONNX model.
    """

    def __init__(self, backbone: Backbone, plan: list[tuple[float, list[str]]],
                 head: HeadModule, *, link: str | None, n_inputs: int,
                 config: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = backbone
        self.plan = [(float(s), list(names)) for s, names in plan]
        self.head = head
        self.link = link
        self.n_inputs = int(n_inputs)
        self.config = config

    @property
    def edges(self) -> list[bool]:
        """Per map, whether its score map is upsampled edge-aware (``head.coarse``)."""
        return list(self.head.coarse)

    @property
    def grid_size(self) -> int:
        """K of a K x K grid head (1: a plain head)."""
        return self.head.grid_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (or scores) of a batch of images.

        Parameters
        ----------
        x : torch.Tensor of shape (n, n_inputs, h, w)
            float32 images in ``[0, 1]``, as :func:`prepare_image` gives them; any ``h`` and
            ``w`` (the network is checked for sides of at least ``config["min_size"]``).

        Returns
        -------
        out : torch.Tensor of shape (n, k, h, w)
            Class probabilities (through ``link``), or scores when ``link`` is None; ``k`` is
            1 for the scores of a binary classifier.
        """
        H, W = x.shape[-2], x.shape[-1]
        guide = x  # the image's own channels guide edge-aware upsampling (image_guide)
        if self.n_inputs != self.backbone.in_chans:  # grayscale replicated to the backbone
            x = x.expand(-1, self.backbone.in_chans, -1, -1)
        maps = []
        for scale, layers in self.plan:
            fed = x if scale == 1.0 else F.interpolate(
                x, size=(_scaled(H, scale), _scaled(W, scale)), mode="bilinear",
                align_corners=False, antialias=True)
            out = self.backbone(fed, layers)
            maps.extend(out[layer] for layer in layers)
        total = self.head(maps, guide)
        if self.link is None:
            return total
        return LINKS[self.link](total, 1)


def _scaled(n: Any, scale: float) -> Any:
    """``max(1, round(n * scale))`` (half to even), the fed size of an axis at ``scale`` as the
    engine resizes (:func:`skhyper.features.resized_shape`), in integer arithmetic so that it
    stays symbolic in ``torch.export`` and ONNX (exact for the dyadic scales
    :func:`check_exportable` allows)."""
    p, q = float(scale).as_integer_ratio()
    a2 = 2 * n * p + q
    g = a2 // (2 * q)
    if isinstance(n, torch.Tensor):  # a traced size (torch.jit.trace)
        tie = 1 - torch.clamp(a2 % (2 * q), max=1)
        return torch.clamp(g - tie * (g % 2), min=1)
    tie = 1 - torch.sym_min(1, a2 % (2 * q))
    return torch.sym_max(1, g - tie * (g % 2))


def to_torch(model: HypercolumnSegmenter, *, output: str = "predict_proba") -> HypercolumnNet:
    """A fitted segmenter as a plain :class:`torch.nn.Module` (CPU, float32, eval mode).

    The network takes an image batch ``(n, n_channels, height, width)``, float in ``[0, 1]``
    (any height and width; the backbone's input normalization is inside) and returns class
    probabilities ``(n, n_classes, height, width)``, equal to ``model.predict_proba`` within
    float32 rounding (1e-4), or the scores with ``output="decision_function"``. It is built
    from the model's folded head (its fitted ``folded_``) and a copy of its engine's
    backbone: the backbone pass (each scale), one 1x1 convolution per map, bilinear
    upsampling (edge-aware for the coarse layers of an ``upsampling="edge_aware"`` model,
    guided by the input), the sum, the grid blend or location terms, the link.
    ``torch.export`` works on it with dynamic height and width.

    Parameters
    ----------
    model : HypercolumnSegmenter
        Fitted, with a classifier that folds (see :func:`check_exportable`).
    output : {"predict_proba", "decision_function"}, default="predict_proba"
        What the network returns: class probabilities (through the classifier's link) or
        the classifier's scores.

    Returns
    -------
    HypercolumnNet
        ``net.config`` holds the classes, input channels and intensity range
        (:func:`export_config`).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skhyper import HypercolumnSegmenter, HypercolumnTransformer
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((2, 40, 52, 3)).astype(np.float32)
    >>> masks = (images[..., 0] > 0.5).astype(int)
    >>> seg = HypercolumnSegmenter(HypercolumnTransformer(
    ...     "resnet18", layers=["relu", "layer1"], weights=None, device="cpu"),
    ...     n_pixels_per_image=200, random_state=0).fit(images, masks)
    >>> net = to_torch(seg)
    >>> x = torch.from_numpy(images[:1]).permute(0, 3, 1, 2)
    >>> proba = net(x)[0].permute(1, 2, 0).numpy()
    >>> bool(np.abs(proba - seg.predict_proba(images[0])).max() < 1e-4)
    True
    """
    config = export_config(model, output)
    engine = model.hypercolumns_.engine_
    head = model.folded_
    # (scale, layers) in the order of the maps (scale-major), so head block i is map i
    plan = (split_scaled(engine.map_names, engine.scales) if engine.scales
            else [(1.0, list(engine.map_names))])
    module = HeadModule(head, engine.feature_info, upsampling=config["upsampling"],
                        device="cpu", dtype=torch.float32)
    backbone = copy.deepcopy(engine.backbone).cpu().eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    net = HypercolumnNet(backbone, plan, module,
                         link=head.link if output == "predict_proba" else None,
                         n_inputs=config["n_channels"], config=config)
    return net.eval()
