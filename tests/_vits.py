"""Tiny random-init timm vision transformers of every family, for the transformer tests."""

from __future__ import annotations

import numpy as np
import timm
import torch
import torch.nn.functional as F

FAMILIES = ("vit", "vit_reg", "dinov3", "swin", "sam")

_CONFIGS = {
    # plain ViT / DeiT: class token, patch 16
    "vit": ("vit_tiny_patch16_224", dict(depth=3, embed_dim=32, num_heads=2,
                                         dynamic_img_size=True)),
    # DINOv2 with 4 registers: patch 14, 5 prefix tokens
    "vit_reg": ("vit_small_patch14_reg4_dinov2", dict(depth=2, embed_dim=32, num_heads=2,
                                                       dynamic_img_size=True)),
    # DINOv3 (timm's Eva: rotary embeddings, registers), patch 16
    "dinov3": ("vit_small_patch16_dinov3", dict(depth=2, embed_dim=32, num_heads=2,
                                                 dynamic_img_size=True)),
    # Swin: windowed, hierarchical (strides 4..32), NHWC outputs
    "swin": ("swin_tiny_patch4_window7_224", dict(depths=(1, 1, 1, 1), embed_dim=16,
                                                  num_heads=(1, 1, 1, 1),
                                                  dynamic_img_size=True)),
    # SAM image encoder: windowed + global attention, relative positions, a conv neck
    "sam": ("samvit_base_patch16", dict(depth=2, embed_dim=32, num_heads=2, img_size=224,
                                        window_size=7, global_attn_indexes=(1,),
                                        neck_chans=16)),
}


def make(family: str) -> torch.nn.Module:
    """A tiny random-init model of ``family`` (seeded, eval mode)."""
    arch, kwargs = _CONFIGS[family]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model(arch, pretrained=False, **kwargs)
        # random LayerNorm / LayerScale weights, so that nothing is an identity by accident
        for p in model.parameters():
            if p.ndim == 1:
                p.data.normal_(0.5, 0.5)
    return model.eval()


def padded(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad a batch at the bottom and right to a multiple of ``multiple``."""
    return F.pad(x, (0, -x.shape[-1] % multiple, 0, -x.shape[-2] % multiple))


def _axis_matrix(n: int, cells: int, canvas: float) -> torch.Tensor:
    """``(n, cells)`` float64 bilinear weights of pixels ``0..n-1`` on a map of ``cells`` cells
    spread over ``canvas`` pixels (``align_corners=False``)."""
    src = ((np.arange(n) + 0.5) * cells / canvas - 0.5).clip(min=0)
    i0 = np.minimum(np.floor(src).astype(int), cells - 1)
    i1 = np.minimum(i0 + 1, cells - 1)
    lam = np.clip(src - i0, 0, 1)
    A = np.zeros((n, cells))
    np.add.at(A, (np.arange(n), i0), 1 - lam)
    np.add.at(A, (np.arange(n), i1), lam)
    return torch.from_numpy(A)


def canvas_dense(maps: dict, image_shape: tuple[int, int], canvases: list) -> np.ndarray:
    """The definition, in float64: each map upsampled to the padded image it covers, cropped to
    the image; ``(H, W, D)``. ``F.interpolate`` to whole-pixel canvases; a canvas of a resized
    image (not whole pixels) by the bilinear formula itself."""
    H, W = image_shape
    out = []
    for m, canvas in zip(maps.values(), canvases):
        size = (H, W) if canvas is None else (int(canvas[0]), int(canvas[1]))
        if canvas is None or canvas == size:
            up = F.interpolate(m[None].double(), size=size, mode="bilinear", align_corners=False)
            out.append(up[0, :, :H, :W])
        else:
            Ay, Ax = _axis_matrix(H, m.shape[1], canvas[0]), _axis_matrix(W, m.shape[2], canvas[1])
            out.append(torch.einsum("yi,cij,xj->cyx", Ay, m.double(), Ax))
    return torch.cat(out, 0).permute(1, 2, 0).numpy()
