"""Bilinear reads of native-resolution maps at image pixels, as ``F.interpolate`` upsamples.

``interp_weights`` gives the neighbours and weights along one axis
(``align_corners=False``), ``sample_maps`` reads ``(c, h, w)`` maps at pixels
of the image without upsampling them, ``row_bands`` cuts an image into bands
of rows for dense work in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["interp_weights", "sample_maps", "row_bands", "upsample_canvas"]


def interp_weights(
    pos: torch.Tensor, in_size: int, out_size: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Neighbour indices and weights along one axis, as ``F.interpolate`` computes them.

    For output positions ``pos`` of an axis upsampled from ``in_size`` to
    ``out_size`` (bilinear, ``align_corners=False``): ``(i0, i1, w0, w1)``.
    ``out_size`` may be a canvas length that is not a whole number of pixels
    (a map of an image padded to whole patches, see
    :meth:`~skhyper.features.FeatureEngine.canvases`).
    """
    dev = pos.device if isinstance(pos, torch.Tensor) else None
    return tuple(torch.from_numpy(np.ascontiguousarray(t[0])).to(dev)
                 for t in _interp_many(pos, [in_size], [out_size]))


def _interp_many(pos: torch.Tensor | np.ndarray, in_sizes: Sequence[int],
                 out_sizes: Sequence[float]) -> tuple[np.ndarray, ...]:
    """:func:`interp_weights` for several axes at once, in numpy: ``(n_axes, n_pos)`` arrays
    (float32 arithmetic as ``F.interpolate``'s, the same operations per element, a fraction of
    the calls)."""
    pos = pos.detach().cpu().numpy() if isinstance(pos, torch.Tensor) else np.asarray(pos)
    scale = np.array([i / o for i, o in zip(in_sizes, out_sizes)], dtype=np.float32)[:, None]
    last = np.array([n - 1 for n in in_sizes], dtype=np.int64)[:, None]
    src = (pos.astype(np.float32) + np.float32(0.5))[None] * scale - np.float32(0.5)
    np.maximum(src, np.float32(0.0), out=src)
    i0 = np.minimum(src.astype(np.int64), last)
    i1 = np.minimum(i0 + 1, last)
    lam1 = np.clip(src - i0.astype(np.float32), np.float32(0.0), np.float32(1.0))
    return i0, i1, np.float32(1.0) - lam1, lam1


def _interp_at(pos: np.ndarray, in_sizes: Sequence[int], out_sizes: Sequence[float]
               ) -> tuple[np.ndarray, ...]:
    """:func:`_interp_many` at integer positions ``pos``, read from a table over their range when
    that is shorter than ``pos`` (the same values: each entry is computed as before)."""
    lo, hi = (int(pos.min()), int(pos.max())) if len(pos) else (0, -1)
    if pos.dtype.kind not in "iu" or hi - lo + 1 >= len(pos):
        return _interp_many(pos, in_sizes, out_sizes)
    at = pos - lo
    return tuple(np.take(t, at, axis=1) for t in _interp_many(np.arange(lo, hi + 1), in_sizes,
                                                              out_sizes))


def sample_maps(
    maps: dict[str, torch.Tensor] | Sequence[torch.Tensor],
    rows: torch.Tensor | np.ndarray,
    cols: torch.Tensor | np.ndarray,
    image_shape: tuple[int, int],
    out: torch.Tensor | None = None,
    *,
    windows: Sequence[tuple[int, int, int, int] | None] | None = None,
    canvases: Sequence[tuple[float, float] | None] | None = None,
    images: np.ndarray | None = None,
) -> torch.Tensor:
    """Bilinearly sample ``(c, h, w)`` maps at pixels of an image of ``image_shape``.

    Equals ``F.interpolate(map[None], size=image_shape, mode="bilinear",
    align_corners=False)[0][:, rows, cols].T`` concatenated over maps, without
    ever building the upsampled maps: one fused gather of the 4 neighbours'
    rows (``embedding_bag``) on the channels-last view of each map. The
    concatenated rows are the pixels' hypercolumns [1]_.

    Parameters
    ----------
    maps : dict or sequence of Tensor of shape (c, h, w)
        The native maps of one image (dict values in order), e.g. a backbone's
        layers; ``(c, 1, 1)`` vectors are repeated at every pixel. With
        ``images``, ``(n, c, h, w)`` batches.
    rows, cols : integer arrays of shape (n_pixels,)
        Pixel coordinates in the image (row, then column), NumPy or torch.
    image_shape : tuple of int
        ``(height, width)`` of the image the pixels belong to: it fixes the
        scale from image pixels to map cells (half-pixel centres, as
        ``align_corners=False``).
    out : Tensor of shape (n_pixels, sum of c), optional
        Filled in place when given.
    windows : list of (row0, col0, full_h, full_w) or None, optional
        Per map: the map is a window of a larger map of ``(full_h, full_w)``
        cells that starts at cell ``(row0, col0)`` (the maps of an image
        window, see :func:`skhyper.parallel.predict_large`); the pixels are
        read with the larger map's bilinear weights, so that the result
        equals sampling the larger map. None: each map covers the image.
    canvases : list of (height, width) or None, optional
        Per map: the map covers a canvas of this size (in image pixels, from
        the top-left corner) rather than the image: the maps of an image
        padded to whole patches. Pixels are read as the map upsampled to the
        canvas. None: the image.
    images : integer array of shape (n_pixels,), optional
        The maps are ``(n, c, h, w)`` batches of maps of ``n`` images of ``image_shape``, and
        pixel ``p`` belongs to image ``images[p]`` (one gather per map for the whole batch).
        Not with ``windows``.

    Returns
    -------
    Tensor of shape (n_pixels, sum of c)
        The hypercolumn rows of the pixels, float32, on the maps' device
        (``out`` when given): the maps' channels in order.

    See Also
    --------
    FeatureEngine.fill : Hypercolumn rows from an engine's maps.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for
       object segmentation and fine-grained localization", CVPR 2015.

    Examples
    --------
    >>> import torch
    >>> m = torch.arange(4.0).view(1, 2, 2)
    >>> sample_maps([m], [0, 3], [0, 3], (4, 4)).ravel().tolist()
    [0.0, 3.0]
    >>> sample_maps([m], [1], [1], (4, 4)).item()  # 1/4 of the way to the next cells
    0.75
    """
    tensors = list(maps.values()) if isinstance(maps, dict) else list(maps)
    device = tensors[0].device
    rows = rows.detach().cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
    cols = cols.detach().cpu().numpy() if isinstance(cols, torch.Tensor) else np.asarray(cols)
    n = rows.shape[0]
    if images is None:
        tensors = [t[None] for t in tensors]
    else:
        _check_batch(tensors, images, windows, n)
    if out is None:
        out = torch.empty((n, sum(t.shape[1] for t in tensors)), dtype=torch.float32,
                          device=device)
    windows = [None] * len(tensors) if windows is None else list(windows)
    canvases = [None] * len(tensors) if canvases is None else list(canvases)
    # the 4 neighbours and weights of every pixel, for each distinct map geometry at once
    # (numpy: a few calls on small arrays, where torch's per-call cost dominates)
    keys = list(dict.fromkeys((t.shape[2], t.shape[3], win, canvas) for t, win, canvas in
                              zip(tensors, windows, canvases) if t.shape[2:] != (1, 1)
                              or win is not None))
    table = _neighbours(keys, rows, cols, image_shape, images, device) if keys else {}
    offsets = torch.arange(0, 4 * n, 4, device=device)  # bags of the 4 neighbours
    parts = []
    for m, win, canvas in zip(tensors, windows, canvases):
        b, c, h, w = m.shape
        if h == 1 and w == 1 and win is None:
            vec = m.reshape(b, c)
            parts.append(vec.expand(n, c) if images is None else vec.index_select(
                0, torch.tensor(images, dtype=torch.int64, device=device)))  # a copy: may be
            # read-only, and torch warns on read-only arrays it would share
            continue
        idx, wts = table[(h, w, win, canvas)]
        # One fused gather + weighted sum of the 4 neighbours' rows of the
        # (n h w, c) channels-last view (a view, not a copy, for channels-last maps).
        flat = m.permute(0, 2, 3, 1).reshape(b * h * w, c)
        parts.append(torch.embedding_bag(flat, idx, offsets, False, 0, False,
                                         wts.to(flat.dtype), False)[0])
    return _concat_into(parts, out)


def _check_batch(tensors: list[torch.Tensor], images: np.ndarray, windows: Any,
                 n: int) -> None:
    """Batches of maps (``images=``): no windows, and image indices within every batch."""
    if windows is not None:
        raise ValueError("sample_maps: batches of maps (images=...) do not take windows.")
    if n and not 0 <= int(np.min(images)) <= int(np.max(images)) < min(map(len, tensors)):
        raise ValueError(f"sample_maps: 'images' must index the {min(map(len, tensors))} maps "
                         f"of each batch; got values from {np.min(images)} to {np.max(images)}.")


def _neighbours(keys: list[tuple], rows: np.ndarray, cols: np.ndarray,
                image_shape: tuple[int, int], images: np.ndarray | None,
                device: torch.device) -> dict[tuple, tuple[torch.Tensor, torch.Tensor]]:
    """Per map geometry ``(h, w, window, canvas)``: the ``(4 n,)`` cell indices into the
    ``(b h w, c)`` view of its maps and their bilinear weights, on ``device``."""
    H, W = image_shape
    n = rows.shape[0]
    geo = [((0, 0, h, w) if win is None else win) + ((H, W) if canvas is None else canvas)
           for h, w, win, canvas in keys]
    y0, y1, wy0, wy1 = _interp_at(rows, [g[2] for g in geo], [g[4] for g in geo])
    x0, x1, wx0, wx1 = _interp_at(cols, [g[3] for g in geo], [g[5] for g in geo])
    if any(win is not None for _, _, win, _ in keys):  # cells of each window map
        r0 = np.array([g[0] for g in geo])[:, None]
        c0 = np.array([g[1] for g in geo])[:, None]
        y0, y1, x0, x1 = y0 - r0, y1 - r0, x0 - c0, x1 - c0
    width = np.array([k[1] for k in keys])[:, None]
    # each pixel's cell in the (n h w, c) table of its image's batch: image * h w + cell
    start = 0 if images is None else (np.asarray(images, dtype=np.int64)[None]
                                      * np.array([k[0] * k[1] for k in keys])[:, None])
    top, bottom = y0 * width + start, y1 * width + start
    idx = np.empty((len(keys), n, 4), dtype=np.int64)
    for t, (a, b) in enumerate([(top, x0), (top, x1), (bottom, x0), (bottom, x1)]):
        np.add(a, b, out=idx[..., t])
    wts = np.empty((len(keys), n, 4), dtype=np.float32)
    for t, (a, b) in enumerate([(wy0, wx0), (wy0, wx1), (wy1, wx0), (wy1, wx1)]):
        np.multiply(a, b, out=wts[..., t])
    idx_t = torch.from_numpy(idx.reshape(len(keys), 4 * n)).to(device)
    wts_t = torch.from_numpy(wts.reshape(len(keys), 4 * n)).to(device)
    table = {}
    for j, (h, w, win, _) in enumerate(keys):
        if win is not None and (int(y0[j].min()) < 0 or int(y1[j].max()) >= h
                                or int(x0[j].min()) < 0 or int(x1[j].max()) >= w):
            raise ValueError("sample_maps: a window map does not cover the pixels' neighbours.")
        table[keys[j]] = idx_t[j], wts_t[j]
    return table


def _concat_into(parts: list[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """``parts`` side by side in ``out`` ``(n, sum of widths)``."""
    if out.is_contiguous() and all(p.dtype == out.dtype for p in parts):
        torch.cat(parts, dim=1, out=out)  # one pass into the result
        return out
    start = 0
    for p in parts:
        out[:, start:start + p.shape[1]].copy_(p)
        start += p.shape[1]
    return out


def upsample_canvas(
    m: torch.Tensor, image_shape: tuple[int, int], canvas: tuple[float, float]
) -> torch.Tensor:
    """A ``(c, h, w)`` map that covers ``canvas`` upsampled to the image: ``(c, H, W)``.

    As ``F.interpolate`` (bilinear, ``align_corners=False``) to the canvas, cropped to the
    image, with the weights of :func:`sample_maps` (the canvas need not be whole pixels).

    Examples
    --------
    >>> import torch
    >>> m = torch.arange(2.0).view(1, 1, 2)  # two 16-pixel patches, an image of 20 pixels
    >>> upsample_canvas(m, (1, 20), (1.0, 32.0))[0, 0, [0, 8, 15, 19]].tolist()
    [0.0, 0.03125, 0.46875, 0.71875]
    """
    H, W = image_shape
    _, h, w = m.shape
    i0, i1, a0, a1 = (t.to(m.device) for t in interp_weights(torch.arange(H), h, canvas[0]))
    j0, j1, b0, b1 = (t.to(m.device) for t in interp_weights(torch.arange(W), w, canvas[1]))
    a0, a1, b0, b1 = (t.to(m.dtype) for t in (a0, a1, b0, b1))
    t = m[:, i0, :] * a0[:, None] + m[:, i1, :] * a1[:, None]
    return t[:, :, j0] * b0 + t[:, :, j1] * b1


def row_bands(
    shape: tuple[int, int], chunk_pixels: int
) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """Bands of whole rows of about ``chunk_pixels`` pixels: ``(r0, r1, rows, cols)``.

    ``rows``/``cols`` are the pixel coordinates of rows ``r0:r1`` in raster order.

    Examples
    --------
    >>> [(r0, r1, len(rows)) for r0, r1, rows, _ in row_bands((5, 4), 8)]
    [(0, 2, 8), (2, 4, 8), (4, 5, 4)]
    """
    H, W = shape
    band = max(1, chunk_pixels // W)
    cols = torch.arange(W)
    for r0 in range(0, H, band):
        r1 = min(H, r0 + band)
        yield r0, r1, torch.arange(r0, r1).repeat_interleave(W), cols.repeat(r1 - r0)
