"""Tiled forward passes that equal the whole-image pass: receptive-field-aware overlap.

An image too large for one forward pass is cut into tiles; each tile is fed
with a halo of context at least as wide as the receptive field of the deepest
requested layer, and only the tile's core is kept from each map. With zero
padding only at the image border, the core then sees exactly the input the
whole-image pass saw, so the assembled maps equal the whole-image maps (to
float rounding). Two more conditions make this exact:

* tile windows start at multiples of the network's total stride, so every
  map's grid lines up with the whole image's;
* window lengths are congruent to the image length modulo that stride, so
  size-dependent ("TF same") padding pads each tile like the whole image.

Layers that see the whole image (global pooling, fully connected layers,
squeeze-excitation inside the network) cannot be tiled and are refused.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ._backbone import Backbone

__all__ = ["receptive_field", "plan_axis", "needs_tiling", "tiled_maps", "NotTileableError"]

_PROBE = 224
_PROBING: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "skhyper_rf_probe", default=None
)


class NotTileableError(ValueError):
    """A requested layer depends on the whole image, so tiles cannot reproduce it."""


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def receptive_field(backbone: Backbone, layers: Sequence[str]) -> tuple[int, int]:
    """``(halo, stride)`` for tiling: context in pixels on each side, and the grid step.

    The receptive field is bounded by chaining every convolution and pooling
    that runs before the deepest of ``layers`` (in execution order, an upper
    bound for networks with parallel branches). ``stride`` is the largest
    reduction among ``layers``; ``halo`` is the radius plus one stride of
    slack for asymmetric padding, rounded up to a multiple of ``stride``.
    Windows of an image padded by ``halo`` and starting at multiples of
    ``stride`` then give maps equal to the whole image's maps on their core.

    Parameters
    ----------
    backbone : Backbone
        The backbone the layers belong to (probed once with hooks; the result is
        memoized on it).
    layers : sequence of str
        Names of the layers to tile for (all must be spatial maps).

    Returns
    -------
    halo : int
        Context in image pixels each tile needs on each side.
    stride : int
        The grid step in pixels that tiles start at (the largest reduction).

    Raises
    ------
    NotTileableError
        When a layer is a vector or something before it pools globally, or the backbone
        is a vision transformer (attention mixes the whole image).

    See Also
    --------
    tiled_maps : The maps of an image computed tile by tile with these values.

    Examples
    --------
    >>> from skhyper.features import build_backbone
    >>> receptive_field(build_backbone("vgg16", weights=None), ["features.8"])
    (8, 2)
    """
    refusal = next((r for m in backbone.model.modules()
                    if isinstance(r := getattr(m, "not_tileable", None), str)), None)
    if refusal is not None:  # attention backbones (features/_transformers.py)
        raise NotTileableError(refusal)
    key = tuple(layers)
    memo = backbone.__dict__.setdefault("_rf_memo", {})
    if key in memo:
        return memo[key]
    table = {d["name"]: d for d in backbone.layer_table()}
    vectors = [n for n in layers if table[n]["kind"] != "map"]
    if vectors:
        raise NotTileableError(
            f"Layers {vectors} are image-level vectors (they see the whole image), so an image "
            "cannot be cut into tiles for them. Drop them from 'layers' or set tile_size=None."
        )
    records: list[tuple[nn.Module, tuple, tuple]] = []
    global_ops: list[str] = []
    names = {m: n for n, m in backbone.model.named_modules()}
    owner = object()  # only this call's probe pass records (other threads may run the model)

    def hook(module, inputs, output):
        if _PROBING.get() is not owner:
            return
        x = inputs[0] if inputs else None
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            records.append((module, tuple(x.shape[-2:]), tuple(output.shape[-2:])))
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) or (
            isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[-2:] == (1, 1)
        ):
            global_ops.append(names.get(module, type(module).__name__))

    handles = [m.register_forward_hook(hook) for m in backbone.model.modules()
               if not list(m.children())]
    token = _PROBING.set(owner)
    try:
        device = backbone.mean.device
        with torch.inference_mode():
            backbone(torch.rand(1, backbone.in_chans, _PROBE, _PROBE, device=device), layers)
    finally:
        _PROBING.reset(token)
        for h in handles:
            h.remove()
    if global_ops:
        raise NotTileableError(
            f"Backbone {backbone.name!r} pools over the whole image before {list(layers)} "
            f"({global_ops[:3]}), so tiles cannot reproduce the whole-image maps. Set "
            "tile_size=None or choose earlier layers."
        )
    size = 1
    for module, in_shape, _ in records:
        k = _pair(module.kernel_size)[0]
        d = _pair(getattr(module, "dilation", 1))[0]
        jump_in = max(1, round(_PROBE / in_shape[0]))  # stride between input cells, in pixels
        size += (k - 1) * d * jump_in
    jump = max(max(1, round(table[n]["reduction"])) for n in layers)
    radius = (size - 1) // 2 + jump
    result = (math.ceil(radius / jump) * jump, jump)
    memo[key] = result
    return result


def plan_axis(n: int, core: int, halo: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: ``(window start, window end, core start, core end)``.

    Cores of ``core`` pixels cover ``[0, n)``; each window adds ``halo`` on
    both sides (clipped to the image), starts on a multiple of ``stride`` and
    has a length congruent to ``n`` modulo ``stride``. An axis no longer
    than ``core + 2 * halo`` (one full window) is not split.

    Examples
    --------
    >>> plan_axis(100, 32, 16, 8)
    [(0, 52, 0, 32), (16, 84, 32, 64), (48, 100, 64, 96), (80, 100, 96, 100)]
    >>> plan_axis(60, 32, 16, 8)
    [(0, 60, 0, 60)]
    """
    if n <= core + 2 * halo:
        return [(0, n, 0, n)]
    out = []
    for c0 in range(0, n, core):
        c1 = min(n, c0 + core)
        w0 = max(0, c0 - halo)
        w1 = c1 + halo
        w1 = n if w1 >= n else min(n, w1 + (n - w1) % stride)
        out.append((w0, w1, c0, c1))
    return out


def _core(tile_size: int, stride: int) -> int:
    return max(stride, tile_size // stride * stride)


def needs_tiling(shape: tuple[int, int], tile_size: int, halo: int, stride: int) -> bool:
    """Whether an image of ``shape`` splits into more than one window.

    Examples
    --------
    >>> needs_tiling((700, 900), 128, 56, 8), needs_tiling((200, 230), 128, 56, 8)
    (True, False)
    """
    core = _core(tile_size, stride)
    return any(len(plan_axis(n, core, halo, stride)) > 1 for n in shape)


def tiled_maps(
    forward: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    image: torch.Tensor,
    reductions: dict[str, int],
    *,
    tile_size: int,
    halo: int,
    stride: int,
    project: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> dict[str, torch.Tensor]:
    """Maps of one ``(channels, height, width)`` image, computed tile by tile.

    Each tile is a window of ``tile_size`` pixels plus ``halo`` on every side,
    so the backbone sees all the context its receptive field needs; the maps of
    the tiles' cores are assembled into maps equal to those of the whole image.
    Memory is then bounded by one tile, whatever the image size.

    Parameters
    ----------
    forward : callable
        ``forward(batch) -> {layer: (1, c, h, w) map}`` for a ``(1, channels,
        h, w)`` batch (the backbone pass).
    image : Tensor of shape (channels, height, width)
        The image, as ``forward`` takes it (without the batch axis).
    reductions : dict of str to int
        Each layer's stride in pixels (its ``reduction``, rounded), keyed by
        the names ``forward`` returns.
    tile_size : int
        Core size in pixels, rounded down to a multiple of ``stride``.
    halo, stride : int
        From :func:`receptive_field`.
    project : callable, optional
        Applied to each tile's ``{layer: (c, h, w)}`` maps before assembly
        (e.g. the per-layer 1x1 heads of a folded classifier), so that only
        the projected maps are ever held at full size.

    Returns
    -------
    dict of Tensor of shape (c, h_l, w_l)
        Equal to the maps of the whole image (projected if ``project``).

    See Also
    --------
    receptive_field : The ``halo`` and ``stride`` of a backbone's layers.

    Examples
    --------
    >>> import torch
    >>> from skhyper.features import build_backbone
    >>> bb = build_backbone("resnet18", weights=None).eval()
    >>> halo, stride = receptive_field(bb, ["layer2"])
    >>> image = torch.rand(3, 300, 260)
    >>> with torch.no_grad():
    ...     tiled = tiled_maps(lambda batch: bb(batch, ["layer2"]), image, {"layer2": 8},
    ...                        tile_size=96, halo=halo, stride=stride)
    ...     whole = bb(image[None], ["layer2"])["layer2"][0]
    >>> tuple(tiled["layer2"].shape), torch.allclose(tiled["layer2"], whole, atol=1e-5)
    ((128, 38, 33), True)
    """
    _, H, W = image.shape
    core = _core(tile_size, stride)
    rows = plan_axis(H, core, halo, stride)
    cols = plan_axis(W, core, halo, stride)
    red = reductions
    out: dict[str, torch.Tensor] = {}
    sizes: dict[str, list[int]] = {}
    for ri, (r0, r1, cr0, cr1) in enumerate(rows):
        for ci, (c0, c1, cc0, cc1) in enumerate(cols):
            maps = forward(image[None, :, r0:r1, c0:c1])
            maps = {k: v[0] for k, v in maps.items()}
            if project is not None:
                maps = project(maps)
            for name, m in maps.items():
                r = red[name]
                _, th, tw = m.shape
                if name not in out:
                    size = [math.ceil(H / r) + 1, math.ceil(W / r) + 1]
                    out[name] = m.new_zeros((m.shape[0], *size))
                    sizes[name] = size
                last_r, last_c = ri == len(rows) - 1, ci == len(cols) - 1
                if last_r:
                    sizes[name][0] = r0 // r + th
                if last_c:
                    sizes[name][1] = c0 // r + tw
                a0, a1 = cr0 // r, (r0 // r + th if last_r else cr1 // r)
                b0, b1 = cc0 // r, (c0 // r + tw if last_c else cc1 // r)
                out[name][:, a0:a1, b0:b1] = m[:, a0 - r0 // r : a1 - r0 // r,
                                               b0 - c0 // r : b1 - c0 // r]
    return {k: v[:, : sizes[k][0], : sizes[k][1]] for k, v in out.items()}
