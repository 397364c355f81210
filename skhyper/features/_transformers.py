"""Vision transformers as backbones: token maps of timm ViT, DINOv2/v3, EVA, SAM and Swin models.

A transformer block returns tokens, not maps. :class:`TokenMaps` wraps a timm
vision transformer in a module whose *readers* turn each block's output into a
``(n, channels, h, w)`` map (patch tokens; prefix tokens -- class, distillation,
registers -- are dropped) and the class token into an ``(n, channels)`` vector
(a 1x1 layer, as the paper treats fully connected layers). Readers are ordinary
modules named like the blocks they read (``blocks.3``, ``norm``,
``blocks.3.cls``), so the usual layer capture of :class:`~skhyper.features.Backbone`
(hooks registered once, per-call records, early stop) works unchanged, and so do
channel strategies, caching and multi-scale.

Any image size
--------------
The model runs at the image's own size through its own API (timm's
``dynamic_img_size``: position embeddings resampled to the token grid; Swin's
dynamic attention masks; SAM's resampled absolute and relative position
embeddings). The normalized image is zero-padded at the bottom and right to a
multiple of the largest patch stride ``P`` (the patch size of a ViT, 32 for a
Swin), as timm's ``dynamic_img_pad`` does: zero is the dataset-mean colour
after normalization, the patch grid stays anchored at pixel ``(0, 0)`` and no
pixel is resampled. A map with ``r``-pixel patches then covers the padded
canvas ``ceil(H / P) * P`` rather than the image: the layer table says so with
``pad_to=P``, and the feature engine reads every map over its canvas
(:meth:`~skhyper.features.FeatureEngine.canvases`), so pixel ``y`` falls at
patch coordinate ``(y + 0.5) / r - 0.5`` exactly, in sampled rows and dense
predictions alike.

Tiling is refused: with global attention every token depends on the whole
image, so windows cannot reproduce the whole-image maps.
"""

from __future__ import annotations

import contextvars
import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._backbone import IMAGENET_MEAN, IMAGENET_STD, Backbone
from ._scales import resized_shape

__all__ = [
    "TokenMaps", "canvas_size", "is_transformer", "map_canvases", "transformer_backbone",
    "transformer_kwargs",
]

_FAMILY_MODULES = {
    "vit": ("vision_transformer", "deit", "eva"),
    "swin": ("swin_transformer",),
    "sam": ("vision_transformer_sam",),
}
_FED: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "skhyper_token_grid", default=None
)

NOT_TILEABLE = (
    "Backbone {name!r} is a vision transformer: its attention mixes tokens from the whole "
    "image, so tiles cannot reproduce the whole-image maps and tiling is refused. Set "
    "tile_size=None to run every image whole (attention memory grows with the square of the "
    "number of patches; see the user guide's 'Transformer backbones' page), downscale the "
    "images with image_size=..., or use a CNN backbone, which tiles exactly, for very large images."
)


def _family(model: nn.Module) -> str | None:
    if not type(model).__module__.startswith("timm."):
        return None
    import timm  # already imported: the model is a timm model

    m = timm.models
    classes = {
        "vit": (m.vision_transformer.VisionTransformer, m.eva.Eva),
        "swin": (m.swin_transformer.SwinTransformer,),
        "sam": (m.vision_transformer_sam.VisionTransformerSAM,),
    }
    for family, types in classes.items():
        if isinstance(model, types):
            return family
    return None


def is_transformer(model: nn.Module) -> bool:
    """Whether ``model`` is a timm vision transformer that :class:`TokenMaps` reads.

    Examples
    --------
    >>> import timm
    >>> is_transformer(timm.create_model("vit_tiny_patch16_224", depth=1, pretrained=False))
    True
    """
    return _family(model) is not None


def transformer_kwargs(arch: str) -> dict[str, Any]:
    """What :func:`timm.create_model` needs for ``arch`` to take images of any size.

    Examples
    --------
    >>> transformer_kwargs("vit_small_patch14_dinov2"), transformer_kwargs("resnet18")
    ({'dynamic_img_size': True}, {})
    """
    import timm  # imported by the caller (skhyper.features.import_timm)

    for family in ("vit", "swin"):
        if timm.models.is_model_in_modules(arch, _FAMILY_MODULES[family]):
            return {"dynamic_img_size": True}
    return {}


class _Reader(nn.Module):
    """Turns the output of one block into a ``(n, c, h, w)`` map (or the class token vector)."""

    def __init__(self, layout: str, stride: int, prefix: int = 0) -> None:
        super().__init__()
        self.layout = layout  # "nlc" tokens, "nhwc", "nchw" or "cls"
        self.stride = stride
        self.prefix = prefix

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        if self.layout == "cls":
            return out[:, 0]
        if self.layout == "nhwc":
            return out.permute(0, 3, 1, 2)
        if self.layout == "nchw":
            return out
        fed = _FED.get()
        h, w = fed[0] // self.stride, fed[1] // self.stride
        n, _, c = out.shape
        return out[:, self.prefix :].reshape(n, h, w, c).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"layout={self.layout!r}, stride={self.stride}"


def _read(reader: _Reader, module: nn.Module, args: Any, output: torch.Tensor) -> None:
    """Forward hook on a transformer block: run its reader(s) on the block's output."""
    if _FED.get() is None:  # the model runs outside TokenMaps (e.g. forward_intermediates)
        return
    reader(output)
    cls = getattr(reader, "cls", None)
    if cls is not None:
        cls(output)


def _readable(model: nn.Module, family: str) -> list[tuple[str, str, int]]:
    """``(module name, layout, stride)`` of the modules a family exposes as layers."""
    found = dict(model.named_modules())
    out = []
    if family == "vit":
        p = int(model.patch_embed.patch_size[0])
        out += [(f"blocks.{i}", "nlc", p) for i in range(len(model.blocks))]
        if not isinstance(found.get("norm"), nn.Identity):
            out.append(("norm", "nlc", p))
    elif family == "sam":
        p = int(model.patch_embed.patch_size[0])
        out += [(f"blocks.{i}", "nhwc", p) for i in range(len(model.blocks))]
        neck = found.get("neck")
        if neck is not None and not isinstance(neck, nn.Identity):
            out.append(("neck", "nchw", p))
    else:  # swin
        for i, info in enumerate(model.feature_info):
            r = int(info["reduction"])
            out.append((f"layers.{i}", "nhwc", r))
            out += [(f"layers.{i}.blocks.{j}", "nhwc", r)
                    for j in range(len(model.layers[i].blocks))]
        out.append(("norm", "nhwc", int(model.feature_info[-1]["reduction"])))
    return out


def _check_dynamic(model: nn.Module, family: str, name: str) -> None:
    if family == "sam":
        return
    dynamic = getattr(model, "dynamic_img_size", False)
    if not dynamic:
        raise ValueError(
            f"The 'backbone' parameter ({name!r}) is a timm vision transformer built for one "
            "image size. Hypercolumns take images of any size: create it with "
            "timm.create_model(..., dynamic_img_size=True), or pass its name "
            f"(e.g. 'timm:{getattr(model, 'default_cfg', {}).get('architecture', 'vit_...')}') "
            "and skhyper builds it so."
        )


class TokenMaps(nn.Module):
    """A timm vision transformer whose blocks are read as maps; pads images to whole patches.

    Parameters
    ----------
    model : torch.nn.Module
        A timm ``VisionTransformer`` (ViT, DeiT, DINOv2, with or without registers),
        ``Eva`` (EVA, EVA02, DINOv3), ``SwinTransformer`` or ``VisionTransformerSAM``,
        created with ``dynamic_img_size=True`` (SAM encoders take any size as they are).
    name : str, default=None
        Used in messages.

    Attributes
    ----------
    model : torch.nn.Module
        The transformer (``forward_features`` runs it; heads never run).
    family : {"vit", "swin", "sam"}
        The kind of transformer, which decides how its tokens become maps.
    pad_to : int
        Images are zero-padded at the bottom and right to a multiple of this many pixels.
    layer_names : list of str
        The layers: block outputs (maps), ``<block>.cls`` class tokens (vectors), the final norm.
    not_tileable : str
        Why windows of an image cannot reproduce its maps (read by
        :func:`~skhyper.features.receptive_field`).

    Examples
    --------
    >>> import timm, torch
    >>> vit = timm.create_model("vit_tiny_patch16_224", depth=2, dynamic_img_size=True)
    >>> tm = TokenMaps(vit)
    >>> tm.layer_names
    ['blocks.0', 'blocks.0.cls', 'blocks.1', 'blocks.1.cls', 'norm', 'norm.cls']
    >>> _ = tm.eval()(torch.rand(1, 3, 40, 50))  # padded to 48 x 64: a 3 x 4 token grid
    """

    def __init__(self, model: nn.Module, name: str | None = None) -> None:
        super().__init__()
        family = _family(model)
        name = name if name is not None else type(model).__name__
        if family is None:
            raise TypeError(
                f"TokenMaps reads timm vision transformers (ViT, DeiT, DINOv2, EVA, DINOv3, "
                f"SAM, Swin); got {type(model).__name__}."
            )
        _check_dynamic(model, family, name)
        self.model = model
        self.family = family
        self.name = name
        prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
        has_cls = family == "vit" and getattr(model, "cls_token", None) is not None
        self.layer_names: list[str] = []
        strides = []
        found = dict(model.named_modules())
        for module_name, layout, stride in _readable(model, family):
            reader = _Reader(layout, stride, prefix)
            if has_cls and layout == "nlc":
                reader.cls = _Reader("cls", stride)
            self._place(module_name, reader)
            found[module_name].register_forward_hook(functools.partial(_read, reader))
            self.layer_names.append(module_name)
            if has_cls and layout == "nlc":
                self.layer_names.append(f"{module_name}.cls")
            strides.append(stride)
        self.pad_to = max(strides)
        self.not_tileable = NOT_TILEABLE.format(name=name)

    def _place(self, dotted: str, reader: _Reader) -> None:
        parent: nn.Module = self
        *path, last = dotted.split(".")
        for part in path:
            child = dict(parent.named_children()).get(part)
            if child is None:
                child = nn.Module()
                parent.add_module(part, child)
            parent = child
        parent.add_module(last, reader)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the transformer on a normalized batch, zero-padded to whole ``pad_to`` patches.

        Padding at the bottom and right keeps any image size readable as a token
        grid; the maps then cover the padded canvas (see ``FeatureEngine.canvases``).
        The block maps are read by hooks during the pass.

        Parameters
        ----------
        x : torch.Tensor of shape (n, 3, h, w)
            A normalized image batch.

        Returns
        -------
        features : torch.Tensor
            The output of the model's ``forward_features`` (its final tokens); the
            layer maps themselves are captured by the backbone's hooks.
        """
        p = self.pad_to
        pad_h, pad_w = -x.shape[-2] % p, -x.shape[-1] % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        token = _FED.set((int(x.shape[-2]), int(x.shape[-1])))
        try:
            return self.model.forward_features(x)
        finally:
            _FED.reset(token)

    def default_layers(self) -> list[str]:
        """The layers read when none are chosen: the backbone's stages.

        A hypercolumn wants maps from shallow to deep; as DPT reads ViTs, these
        are four block outputs spread over the depth, ending at the last.

        Returns
        -------
        layers : list of str
            Four ``"blocks.<i>"`` names (fewer for transformers with under four
            blocks), or a Swin's stages ``"layers.<i>"``.
        """
        if self.family == "swin":
            return [f"layers.{i}" for i in range(len(self.model.layers))]
        n = len(self.model.blocks)
        picks = sorted({max(0, round((k + 1) * n / 4) - 1) for k in range(4)})
        return [f"blocks.{i}" for i in picks]


def transformer_backbone(
    model: nn.Module, *, name: str | None = None, mean: Any = None, std: Any = None
) -> Backbone:
    """A :class:`~skhyper.features.Backbone` reading a timm vision transformer's blocks as maps.

    Parameters
    ----------
    model : torch.nn.Module
        A timm vision transformer (see :class:`TokenMaps`); used as it is (not copied).
    name : str, default=None
        A label for messages.
    mean, std : sequence of float, default=None
        Normalization; None takes the model's ``pretrained_cfg`` (ImageNet statistics
        when it has none).

    Returns
    -------
    Backbone
        Its layer table lists block maps (``num_chs``, ``reduction`` = patch stride, and
        ``pad_to``), class tokens as vectors, and the final norm; its stages are four blocks
        spread over the depth (a Swin's four stages).

    Examples
    --------
    >>> import timm
    >>> vit = timm.create_model("vit_tiny_patch16_224", depth=2, dynamic_img_size=True)
    >>> bb = transformer_backbone(vit, name="tiny-vit")
    >>> [(d["name"], d["num_chs"], d["reduction"], d["kind"]) for d in bb.layer_table()][:2]
    [('blocks.0', 192, 16.0, 'map'), ('blocks.0.cls', 192, None, 'vector')]
    >>> bb.stages()
    ['blocks.0', 'blocks.1']
    """
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    name = name if name is not None else type(model).__name__
    wrapped = TokenMaps(model, name=name)
    probe = Backbone(
        wrapped,
        mean=cfg.get("mean", IMAGENET_MEAN) if mean is None else mean,
        std=cfg.get("std", IMAGENET_STD) if std is None else std,
        name=name,
    )
    keep = set(wrapped.layer_names)
    table = [d.replace(pad_to=wrapped.pad_to, reduction=float(round(d.reduction)))
             if d.kind == "map" else d
             for d in probe.layer_table() if d.name in keep]
    return Backbone(wrapped, mean=probe.mean.flatten().tolist(), std=probe.std.flatten().tolist(),
                    stages=wrapped.default_layers(), name=name, table=table)


def canvas_size(length: int, fed: int, pad_to: int) -> float:
    """The image length (in image pixels) that a map padded to ``pad_to`` covers.

    An image axis of ``length`` pixels fed at ``fed`` pixels and padded to whole patches
    covers ``ceil(fed / pad_to) * pad_to`` fed pixels, that is this many image pixels.

    Examples
    --------
    >>> canvas_size(131, 131, 16), canvas_size(100, 50, 16)
    (144.0, 128.0)
    """
    return length * (math.ceil(fed / pad_to) * pad_to) / fed


def map_canvases(
    feature_info: Sequence[dict], image_shape: tuple[int, int], image_size: int | None = None
) -> list[tuple[float, float] | None]:
    """Per map of ``feature_info``, the canvas it covers in an image of ``image_shape``.

    Transformer maps (``pad_to`` in their layer table) come from the fed image (resized by
    ``image_size`` and the map's ``scale``) zero-padded at the bottom and right to whole
    patches: they cover that padded canvas, measured in image pixels (:func:`canvas_size`),
    so pixel ``y`` falls at patch coordinate ``(y + 0.5) / r - 0.5`` (``r`` the patch stride in
    fed pixels). None: the map covers the image (CNN maps, vectors, whole patches).

    Examples
    --------
    >>> info = [{"kind": "map", "pad_to": 16}, {"kind": "map"}]
    >>> map_canvases(info, (97, 131))
    [(112.0, 144.0), None]
    """
    H, W = image_shape
    out: list[tuple[float, float] | None] = []
    for d in feature_info:
        pad = d.get("pad_to")
        if not pad or d["kind"] != "map":
            out.append(None)
            continue
        fh, fw = resized_shape((H, W), image_size, d.get("scale", 1.0))
        canvas = (canvas_size(H, fh, pad), canvas_size(W, fw, pad))
        out.append(None if canvas == (H, W) else canvas)
    return out
