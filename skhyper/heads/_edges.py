"""Edge-aware upsampling of folded score maps: joint bilateral upsampling guided by the image.

Bilinear upsampling of coarse score maps (stride 8 to 32) spreads each cell's score across
object outlines: masks bleed past the boundary and fill narrow gaps. Joint bilateral
upsampling (Kopf et al., SIGGRAPH 2007) weights nearby cells by distance *and* by how much the
pixel's colour differs from the cell's mean colour, so a pixel takes its scores from its own
side of an edge. Only ``k`` score maps are upsampled so: the coarse layers' folded score maps
are summed on the finest coarse grid (:func:`coarse_sum`), and that one map goes through it.

For an output pixel ``p`` at position ``y(p)`` in the map's cell coordinates (the convention
of ``F.interpolate(mode="bilinear", align_corners=False)``) and the ``2 * radius`` cells ``q``
around it per axis::

    up(S)(p) = sum_q S(q) w(p, q) / sum_q w(p, q)
    w(p, q) = exp(-|y(p) - q|^2 / (2 sigma_spatial^2))
              * exp(-mean_c (I_c(p) - Ibar_c(q))^2 / (2 sigma_range^2))

``I`` is the image in ``[0, 1]`` (``skhyper.features.to_float_image``), ``Ibar(q)`` the mean of
the pixels whose nearest cell is ``q``. Every quantity is local, so a window of a large image
that holds the block plus a few cells of halo gives the whole image's values
(:func:`edge_aware_upsample` takes its offsets; bands of rows). :func:`edge_aware_upsample_batch`
is the batched, traceable form (the exported network's; whole images up to 2048^2 use it).
Layers finer than ``min_stride`` pixels (``reduction``) stay bilinear, as in the hypercolumn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..features import to_float_image
from ._bilateral import (
    EDGE_PARAMS,
    UPSAMPLINGS,
    WHOLE_PIXELS,
    EdgeKernel,
    cell_coords,
    edge_aware_upsample_batch,
)
from ._gather import bilinear_axis, gather_window

__all__ = ["EDGE_PARAMS", "UPSAMPLINGS", "coarse_sum", "coarse_target", "edge_aware_upsample",
           "edge_aware_upsample_batch", "image_guide", "is_coarse"]

_BAND_PIXELS = 1 << 19  # pixels per band of the banded path


def image_guide(image: np.ndarray, intensity_range=None, device=None) -> torch.Tensor:
    """``(c, H, W)`` float32 guide: a checked ``(H, W, c)`` image in ``[0, 1]``
    (:func:`~skhyper.features.to_float_image`, the one intensity step, as a tensor)."""
    return to_float_image(image, image.shape[2], intensity_range, as_tensor=True, device=device)


def is_coarse(reduction: float | None, map_shape: Sequence[int],
              min_stride: float = EDGE_PARAMS["min_stride"]) -> bool:
    """Whether a map of ``reduction`` (its stride in image pixels, ``feature_info``) and shape
    ``(h, w)`` is upsampled edge-aware: strides of ``min_stride`` and more, except 1 x 1 maps
    (vectors, broadcast as they are). Decided by the layer, alike in every image."""
    h, w = map_shape
    if reduction is None or (h == 1 and w == 1):
        return False
    return float(reduction) >= min_stride


def coarse_target(reductions: Sequence[float | None], coarse: Sequence[bool]) -> int | None:
    """Index of the map whose grid the coarse maps are summed on: the coarse map of smallest
    stride (the first of equals); None without coarse maps. Decided by the layers, so every
    image (and the exported network) uses the same grid.

    Examples
    --------
    >>> coarse_target([2.0, 8.0, 16.0, 8.0], [False, True, True, True])
    1
    """
    picks = [j for j, c in enumerate(coarse) if c]
    return min(picks, key=lambda j: float(reductions[j])) if picks else None


def coarse_sum(
    maps: Sequence[torch.Tensor],
    sizes: Sequence[tuple[int, int]] | None = None,
    origins: Sequence[tuple[int, int]] | None = None,
    target: int | None = None,
) -> tuple[int, torch.Tensor]:
    """The sum of ``(..., k, h, w)`` score maps on the grid of map ``target`` (None: the one with
    the most cells).

    Each other map is read bilinearly at that grid's cell centres (``F.interpolate``'s
    ``align_corners=False`` convention with its float32 weights, all maps covering the same
    image or canvas). With
    ``sizes`` (each whole map's cells) and ``origins`` (the whole-map cell of each map's first
    row and column) the maps may be windows of the whole maps: the result is the window of the
    whole sum that the finest map's window covers.

    Returns
    -------
    (index, Tensor)
        The index of the finest map and the sum, shaped like it.

    Examples
    --------
    >>> import torch
    >>> fine, coarse = torch.zeros(1, 4, 4), torch.ones(1, 2, 2)
    >>> i, total = coarse_sum([fine, coarse])
    >>> i, total.shape, float(total.mean())
    (0, torch.Size([1, 4, 4]), 1.0)
    """
    sizes = [tuple(m.shape[-2:]) for m in maps] if sizes is None else list(sizes)
    window = origins is not None
    origins = [(0, 0)] * len(maps) if origins is None else list(origins)
    t = max(range(len(maps)), key=lambda j: sizes[j][0] * sizes[j][1]) if target is None else (
        target)
    (ht, wt), (oy, ox) = sizes[t], origins[t]
    total = maps[t].clone()
    dev = total.device
    rows = torch.arange(maps[t].shape[-2], device=dev) + oy
    cols = torch.arange(maps[t].shape[-1], device=dev) + ox
    for j, m in enumerate(maps):
        if j == t:
            continue
        (hj, wj), (ojy, ojx) = sizes[j], origins[j]
        ry, cx = bilinear_axis(rows, hj, ht, ojy), bilinear_axis(cols, wj, wt, ojx)
        if window and (min(int(ry[0].min()), int(cx[0].min())) < 0 or int(ry[1].max())
                       >= m.shape[-2] or int(cx[1].max()) >= m.shape[-1]):
            raise RuntimeError("coarse_sum: a window does not hold the cells it reads.")
        total = total + gather_window(m, ry, cx)
    return t, total


def _axis(pos: torch.Tensor, n_cells: int, out_size: float
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`cell_coords` of whole-image pixels ``pos`` (float64; nearest cells clamped), also for
    a length that is not a whole number of pixels."""
    if float(out_size).is_integer():
        nearest, base, p = cell_coords(pos.long(), n_cells, int(out_size), torch.float64)
    else:  # pragma: no cover - canvases and images have whole sizes
        p = (pos.double() + 0.5) * (n_cells / out_size) - 0.5
        nearest, base = torch.floor(p + 0.5).long(), torch.floor(p).long()
    return nearest.clamp_(0, n_cells - 1), base, p


def _cell_sums(guide: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
               cells: tuple[torch.Tensor, torch.Tensor], n_local: tuple[int, int]
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of guide pixels per local cell ``(c, h, w)`` and their counts ``(h, w)``."""
    (ry, rx), (h, w) = cells, n_local
    iy = ((ry >= 0) & (ry < h)).nonzero()[:, 0]  # guide rows and columns in local cells
    ix = ((rx >= 0) & (rx < w)).nonzero()[:, 0]
    c, dev = guide.shape[0], guide.device
    by_row = torch.zeros((c, h, len(ix)), dtype=torch.float64, device=dev)
    band = max(1, _BAND_PIXELS // max(1, len(ix)))
    for a in range(0, len(iy), band):  # a band of rows in float64 at a time, rows in order
        sel = iy[a:a + band]
        by_row.index_add_(1, ry[sel], guide[:, sel][:, :, ix].double())
    sums = torch.zeros((c, h, w), dtype=torch.float64, device=dev)
    sums.index_add_(2, rx[ix], by_row)
    ny = torch.bincount(ry[iy], minlength=h).double()
    nx = torch.bincount(rx[ix], minlength=w).double()
    return sums, ny[:, None] * nx[None, :]


def edge_aware_upsample(
    scores: torch.Tensor,
    guide: torch.Tensor,
    out_size: tuple[float, float],
    *,
    rows: torch.Tensor | None = None,
    cols: torch.Tensor | None = None,
    guide_origin: tuple[int, int] = (0, 0),
    map_origin: tuple[int, int] = (0, 0),
    map_size: tuple[int, int] | None = None,
    image_shape: tuple[int, int] | None = None,
    kernel: EdgeKernel = EdgeKernel(),
) -> torch.Tensor:
    """Joint bilateral upsampling of a ``(k, h, w)`` score map, guided by an image.

    Parameters
    ----------
    scores : Tensor of shape (k, h, w)
        The map (or the part of it a window holds).
    guide : Tensor of shape (c, gh, gw)
        The image (or window) in ``[0, 1]`` (``image_guide``).
    out_size : (float, float)
        Length in pixels the whole map covers (the image, or its padded canvas).
    rows, cols : Tensor, default=None
        Image pixels to compute (``(ny,)`` and ``(nx,)``, whole-image coordinates); None:
        every pixel of the guide.
    guide_origin : (int, int), default=(0, 0)
        Image pixel of the guide's first row and column.
    map_origin : (int, int), default=(0, 0)
        Whole-map cell of ``scores``'s first row and column.
    map_size : (int, int), default=None
        Cells of the whole map; None: ``scores``'s.
    image_shape : (int, int), default=None
        The whole image's ``(H, W)``; None: the guide's.
    kernel : EdgeKernel, default=EdgeKernel()
        Taps and widths of the joint bilateral weights.

    Returns
    -------
    Tensor of shape (k, ny, nx)
        In the dtype of ``scores``.

    Examples
    --------
    >>> import torch
    >>> guide = torch.zeros(1, 1, 16)
    >>> guide[..., 8:] = 1.0  # an edge in the middle of the image
    >>> scores = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]])  # 4 cells of 4 pixels
    >>> up = edge_aware_upsample(scores, guide, (1.0, 16.0))
    >>> [round(v, 3) for v in up[0, 0, 6:10].tolist()]  # a step, not a ramp
    [0.0, 0.0, 1.0, 1.0]
    """
    k, h_loc, w_loc = scores.shape
    hn, wn = (h_loc, w_loc) if map_size is None else map_size
    gy, gx = guide_origin
    oy, ox = map_origin
    H, W = (gy + guide.shape[1], gx + guide.shape[2]) if image_shape is None else image_shape
    radius, sigma_spatial, sigma_range = kernel.radius, kernel.sigma_spatial, kernel.sigma_range
    dev = scores.device
    whole = (rows is None and cols is None and (gy, gx, oy, ox) == (0, 0, 0, 0)
             and (hn, wn) == (h_loc, w_loc) and (H, W) == tuple(guide.shape[1:])
             and tuple(map(float, out_size)) == (H, W))
    if whole and H * W <= WHOLE_PIXELS:  # the batched form (same math, faster)
        dt = torch.float64 if scores.dtype == torch.float64 else torch.float32
        return edge_aware_upsample_batch(
            scores[None].to(dt), guide[None].to(dev, dt), radius=radius,
            sigma_spatial=sigma_spatial, sigma_range=sigma_range)[0].to(scores.dtype)
    rows = torch.arange(gy, gy + guide.shape[1], device=dev) if rows is None else rows.to(dev)
    cols = torch.arange(gx, gx + guide.shape[2], device=dev) if cols is None else cols.to(dev)
    guide = guide.to(dev)
    # cell means of the guide: only cells whose every pixel lies in the guide are exact
    gr = torch.arange(gy, gy + guide.shape[1], device=dev)
    gc = torch.arange(gx, gx + guide.shape[2], device=dev)
    cells = (_axis(gr, hn, out_size[0])[0] - oy, _axis(gc, wn, out_size[1])[0] - ox)
    sums, counts = _cell_sums(guide, gr, gc, cells, (h_loc, w_loc))
    full_y = torch.bincount(_axis(torch.arange(H, device=dev), hn, out_size[0])[0],
                            minlength=hn)[oy:oy + h_loc]
    full_x = torch.bincount(_axis(torch.arange(W, device=dev), wn, out_size[1])[0],
                            minlength=wn)[ox:ox + w_loc]
    complete = (counts == full_y[:, None].double() * full_x[None, :].double())
    means = sums / counts.clamp_min(1.0)
    geometry = (hn, wn, oy, ox, out_size, complete, radius, sigma_spatial, sigma_range)
    band = max(1, _BAND_PIXELS // max(1, len(cols)))
    out = torch.empty((k, len(rows), len(cols)), dtype=scores.dtype, device=dev)
    for a in range(0, len(rows), band):  # each band straight into the result
        out[:, a:a + band] = _upsample_rows(scores, means, guide, rows[a:a + band], cols,
                                            (gy, gx), geometry)
    return out


def _upsample_rows(scores: torch.Tensor, means: torch.Tensor, guide: torch.Tensor,
                   rows: torch.Tensor, cols: torch.Tensor, guide_origin: tuple[int, int],
                   geometry: tuple) -> torch.Tensor:
    """:func:`edge_aware_upsample` for one band of rows (bounds the memory of the taps)."""
    hn, wn, oy, ox, out_size, complete, radius, sigma_spatial, sigma_range = geometry
    gy, gx = guide_origin
    k, h_loc, w_loc = scores.shape
    dev = scores.device
    pix = guide[:, rows - gy][:, :, cols - gx].double()  # (c, ny, nx)
    _, y0, py = _axis(rows, hn, out_size[0])
    _, x0, px = _axis(cols, wn, out_size[1])
    offsets = range(1 - radius, radius + 1)
    taps = []
    for dy in offsets:
        qy = y0 + dy
        vy = (qy >= 0) & (qy < hn)
        ly = (qy - oy).clamp(0, h_loc - 1)
        wy = torch.exp(-((py - qy) ** 2) / (2 * sigma_spatial**2)) * vy
        for dx in offsets:
            qx = x0 + dx
            vx = (qx >= 0) & (qx < wn)
            lx = (qx - ox).clamp(0, w_loc - 1)
            wx = torch.exp(-((px - qx) ** 2) / (2 * sigma_spatial**2)) * vx
            used = vy[:, None] & vx[None, :]
            inside = ((qy - oy >= 0) & (qy - oy < h_loc))[:, None] & (
                (qx - ox >= 0) & (qx - ox < w_loc))[None, :]
            if bool((used & ~(inside & complete[ly][:, lx])).any()):
                raise RuntimeError(
                    "edge_aware_upsample: the window does not hold every cell its pixels use; "
                    "give it a halo of at least radius + 1 cells."
                )
            d2 = ((pix - means[:, ly][:, :, lx]) ** 2).mean(0)
            d2 = torch.where(used, d2, torch.inf)  # cells off the map weigh nothing
            taps.append((ly, lx, wy[:, None] * wx[None, :], d2))
    # colour weights relative to the closest colour of each pixel: the normalisation cancels
    # the common factor, and no pixel's weights all underflow
    d2_min = torch.stack([t[3] for t in taps]).amin(0)
    num = torch.zeros((k, len(rows), len(cols)), dtype=torch.float64, device=dev)
    den = torch.zeros((len(rows), len(cols)), dtype=torch.float64, device=dev)
    s = scores.double()
    for ly, lx, ws, d2 in taps:
        wt = ws * torch.exp(-(d2 - d2_min) / (2 * sigma_range**2))
        num += s[:, ly][:, :, lx] * wt
        den += wt
    return (num / den).to(scores.dtype)
