"""Joint bilateral upsampling of whole images: the batched, traceable form, and labels.

:func:`edge_aware_upsample_batch` is :func:`~skhyper.heads.edge_aware_upsample` for score maps
that cover their whole images, written with tensor operations only (the exported network's
form; whole images up to ``WHOLE_PIXELS`` pixels take it in :func:`predict_dense` too).

:func:`edge_aware_labels` serves ``predict``: a label needs the upsampled score only where it
can change the label. Each upsampled value is a convex combination of the ``2 radius`` x
``2 radius`` cells around the pixel, so it lies between their minimum and maximum (two
pooled coarse maps read at each pixel). Where that box of possible scores, plus the other
terms of the pixel's score, does not cross the decision boundary (the sign of a binary score,
the argmax of several), the label is decided without the joint bilateral weights; only the
other pixels, those near a change of label, get them. Labels equal those of the full upsampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["EDGE_PARAMS", "EdgeKernel", "UPSAMPLINGS", "WHOLE_PIXELS", "cell_coords", "cell_means",
           "edge_aware_labels", "edge_aware_upsample_batch"]

UPSAMPLINGS = ("edge_aware", "bilinear")
WHOLE_PIXELS = 1 << 22  # whole images up to 2048^2 take the batched form
# Chosen on held-out Weizmann horse *training* images (fit on 150, scored on 50; the test
# images were not used), foreground IoU at scale 2 / 1: bilinear 0.855 / 0.807; each coarse
# layer upsampled on its own with 4 x 4 cells 0.869 / 0.832; the coarse layers summed on the
# finest coarse grid, then 4 x 4 cells 0.872 / 0.836, 2 x 2 cells (this) 0.876 / 0.828, at a
# quarter of the cost. sigma_range 0.06-0.18 and sigma_spatial 0.7-1 changed IoU by < 0.01.
EDGE_PARAMS = {"radius": 1, "sigma_spatial": 1.0, "sigma_range": 0.12, "min_stride": 8.0}


@dataclass(frozen=True)
class EdgeKernel:
    """The joint bilateral kernel of edge-aware upsampling (defaults: ``EDGE_PARAMS``).

    Edge-aware upsampling weights the coarse cells around a pixel by their
    distance and by how much the pixel's colour differs from the cell's mean
    colour, so that a pixel takes its scores from its own side of an edge; this
    record holds the widths of both weights. The defaults were chosen on held-out
    training images; the result changes little within about half to twice them.

    Parameters
    ----------
    radius : int, default=1
        Cells on each side of a pixel's position (``2 * radius`` taps per axis):
        how far a score can travel.
    sigma_spatial : float, default=1.0
        Width of the spatial weight, in cells.
    sigma_range : float, default=0.12
        Width of the colour weight, in ``[0, 1]`` intensity units: smaller values
        stop scores at fainter edges.

    See Also
    --------
    edge_aware_upsample : The upsampling this kernel parameterizes.

    Examples
    --------
    >>> EdgeKernel()
    EdgeKernel(radius=1, sigma_spatial=1.0, sigma_range=0.12)
    >>> EdgeKernel(sigma_range=0.06).sigma_range
    0.06
    """

    radius: int = EDGE_PARAMS["radius"]
    sigma_spatial: float = EDGE_PARAMS["sigma_spatial"]
    sigma_range: float = EDGE_PARAMS["sigma_range"]


def _traced(n: object, dtype: torch.dtype) -> object:
    """A size as a number for float arithmetic: traced sizes (``torch.jit.trace``) are 0-d
    int64 tensors, cast explicitly; ints and symbolic ints (``torch.export``) stay as they are."""
    return n.to(dtype) if isinstance(n, torch.Tensor) else n


def cell_coords(pos: torch.Tensor, n_cells: object, length: object, dtype: torch.dtype
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixels ``pos`` (int64) of an axis of ``length`` pixels (an int, or a traced or
    symbolic size) and ``n_cells`` cells: their nearest cell ``floor((y + 0.5) n / L)``, the
    floor of their position and the position ``(y + 0.5) n / L - 0.5`` in cell coordinates
    (``align_corners=False``). Floors in integer arithmetic (``2 (y + 0.5) n`` is an integer):
    a pixel exactly on a cell centre (the middle row of an odd image over an odd map) gets
    its own cell, not the one before through rounding."""
    a = (2 * pos + 1) * n_cells
    nearest = a // (2 * length)
    base = (a + length) // (2 * length) - 1  # the numerator stays nonnegative
    return nearest, base, (a - length).to(dtype) / _traced(2 * length, dtype)


def cell_means(guide: torch.Tensor, axis_y: tuple, axis_x: tuple) -> torch.Tensor:
    """Mean ``(n, c, h, w)`` guide colour of the pixels whose nearest cell is each cell.

    ``axis_y`` / ``axis_x`` (:func:`_cells`): per cell, the indices of its pixels along the axis
    (as many as the largest cell holds) and which of them belong to it. The pixels of a cell are
    gathered and summed in that order (the same order in every path, a few pixels per cell: the
    work of one pass over the guide, where one-hot matrix products cost ``n_cells`` passes)."""
    (iy, my, ny), (ix, mx, nx) = axis_y, axis_x
    n, c, H, W = guide.shape
    h, w = iy.shape[0], ix.shape[0]
    # whole rows of each cell's pixels, summed with 0/1 weights (the padding weighs 0): one
    # small product per cell and channel on the gathered rows as they lie (no permuted copy)
    rows = torch.matmul(my[:, None, :], guide.index_select(2, iy.reshape(-1))
                        .reshape(n, c, h, -1, W))[:, :, :, 0]  # (n, c, h, W)
    cols = rows.transpose(2, 3).contiguous().index_select(2, ix.reshape(-1))
    cells = torch.matmul(mx[:, None, :], cols.reshape(n, c, w, -1, h))[:, :, :, 0]
    return cells.transpose(2, 3) / (ny[:, None] * nx[None, :])  # (n, c, h, w)


def _cells(first: torch.Tensor, n_cells: object, n_pix: object, dtype: torch.dtype) -> tuple:
    """One axis of :func:`cell_means`: ``(n_cells, m)`` pixel indices of each cell (padded with
    its last pixel), a ``(n_cells, m)`` 0/1 mask of the real ones and the ``(n_cells,)`` counts
    (at least 1), from the first pixel of every cell and one past the last (``first``,
    ``(n_cells + 1,)``); ``m = ceil(n_pix / n_cells)``, the most pixels a cell can hold."""
    start, end = first[:-1], first[1:]
    size = end - start
    j = torch.arange((n_pix + n_cells - 1) // n_cells, device=start.device)  # >= every size
    mask = j[None, :] < size[:, None]
    idx = torch.minimum(start[:, None] + j[None, :], (end - 1).clamp(min=0)[:, None])
    return idx, mask.to(dtype), size.to(dtype).clamp(min=1)


def _batch_axis(n_cells: object, n_pix: object, device: torch.device, dtype: torch.dtype,
                radius: int, sigma_spatial: float) -> tuple:
    """One axis of :func:`edge_aware_upsample_batch`: the pixels of every cell
    (:func:`_cells`), and per tap the cell index ``(n_pix,)`` of every pixel (an on-map one for
    taps off it), whether the cell is on the map, and the spatial weight."""
    _, base, pos = cell_coords(torch.arange(n_pix, device=device), n_cells, n_pix, dtype)
    # the first pixel y of cell q: the least y with floor((2y + 1) n / 2L) >= q, in integers
    # (<= L for q <= n)
    q = torch.arange(n_cells + 1, device=device)
    cells = _cells((2 * n_pix * q + n_cells - 1) // (2 * n_cells), n_cells, n_pix, dtype)
    taps = []
    for d in range(1 - radius, radius + 1):
        q = base + d
        valid = (q >= 0) & (q < n_cells)
        weight = torch.exp(-((pos - q.to(dtype)) ** 2) / (2 * sigma_spatial**2)) * valid
        # off-map taps read a cell on the map (weight 0); no remainder by a symbolic size
        taps.append((torch.where(valid, q, base.clamp(min=0)), valid, weight))
    return cells, taps


def edge_aware_upsample_batch(
    scores: torch.Tensor,
    guide: torch.Tensor,
    *,
    radius: int = EDGE_PARAMS["radius"],
    sigma_spatial: float = EDGE_PARAMS["sigma_spatial"],
    sigma_range: float = EDGE_PARAMS["sigma_range"],
) -> torch.Tensor:
    """:func:`edge_aware_upsample` of whole images, batched and traceable.

    The same joint bilateral upsampling of score maps covering their whole images, written
    with tensor operations only (cell means through gathered pixels, taps through
    ``index_select``, floors in integer arithmetic) so that ``torch.jit.trace`` (traced sizes)
    and ``torch.export`` (symbolic sizes) keep batch, height and width dynamic: the exported
    network (:func:`skhyper.export.to_torch`) upsamples its coarse maps with it.

    Parameters
    ----------
    scores : Tensor of shape (n, k, h, w)
    guide : Tensor of shape (n, c, H, W)
        The images in ``[0, 1]`` (``image_guide``); replicated channels give the same
        weights as one (distances are means over channels).
    radius : int, default=1
        Cells on each side of a pixel's position (``2 * radius`` taps per axis), as
        :class:`EdgeKernel`.
    sigma_spatial : float, default=1.0
        Width of the spatial weight, in cells.
    sigma_range : float, default=0.12
        Width of the colour weight, in ``[0, 1]`` intensity units.

    Returns
    -------
    Tensor of shape (n, k, H, W)
        Computed in the dtype of ``scores`` (float64 in, float64 arithmetic).

    Examples
    --------
    >>> import torch
    >>> guide = torch.zeros(1, 1, 1, 16)
    >>> guide[..., 8:] = 1.0
    >>> scores = torch.tensor([[[[0.0, 0.0, 1.0, 1.0]]]])
    >>> up = edge_aware_upsample_batch(scores, guide)
    >>> [round(v, 3) for v in up[0, 0, 0, 6:10].tolist()]
    [0.0, 0.0, 1.0, 1.0]
    """
    h, w = scores.shape[2], scores.shape[3]
    H, W = guide.shape[2], guide.shape[3]
    dtype, dev = scores.dtype, scores.device
    g = guide.to(dtype)
    ay, taps_y = _batch_axis(h, H, dev, dtype, radius, sigma_spatial)
    ax, taps_x = _batch_axis(w, W, dev, dtype, radius, sigma_spatial)
    means = cell_means(g, ay, ax)
    taps = []
    # columns first, on the coarse rows (cheap); then whole rows (contiguous copies)
    for ix, vx, wx in taps_x:
        cols = means.index_select(3, ix)
        for iy, vy, wy in taps_y:
            d2 = ((g - cols.index_select(2, iy)) ** 2).mean(1)  # (n, H, W)
            used = vy[:, None] & vx[None, :]
            d2 = torch.where(used, d2, torch.inf)  # cells off the map weigh nothing
            taps.append((iy, ix, wy[:, None] * wx[None, :], d2))
    # colour weights relative to each pixel's closest colour (as the banded path)
    d2_min = torch.stack([t[3] for t in taps]).amin(0)
    num = den = None
    for iy, ix, ws, d2 in taps:
        wt = (ws * torch.exp(-(d2 - d2_min) / (2 * sigma_range**2)))[:, None]  # (n, 1, H, W)
        term = scores.index_select(3, ix).index_select(2, iy) * wt
        num = term if num is None else num + term
        den = wt if den is None else den + wt
    return num / den


def _label_tol(rest: torch.Tensor, scores: torch.Tensor) -> float:
    """Margin of a decided label: far above the rounding of the upsampled value (a convex
    combination computed in float32 or float64: a few ulp of the largest score) and of its sum
    with ``rest``; 1e-5 of the largest magnitudes (about 100 float32 ulp)."""
    def largest(t: torch.Tensor) -> float:  # max |t| from one pass (aminmax)
        lo, hi = torch.aminmax(t)
        return max(-float(lo), float(hi))

    return 1e-5 * (1.0 + largest(rest) + largest(scores))


def _decided(low: torch.Tensor, high: torch.Tensor, tol: float) -> torch.Tensor:
    """``(H, W)`` whether every score vector in the box ``[low, high]`` of several outputs has
    the same argmax, with a margin ``tol`` (one output: see :func:`edge_aware_labels`)."""
    best = low.argmax(0, keepdim=True)
    others = high.scatter(0, best, -torch.inf).amax(0)
    return low.gather(0, best)[0] - others > 2 * tol


def edge_aware_labels(
    scores: torch.Tensor,
    guide: torch.Tensor,
    rest: torch.Tensor,
    *,
    radius: int = EDGE_PARAMS["radius"],
    sigma_spatial: float = EDGE_PARAMS["sigma_spatial"],
    sigma_range: float = EDGE_PARAMS["sigma_range"],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores with the labels of ``rest + edge_aware_upsample_batch(scores, guide)``, upsampled
    edge-aware only where the label can depend on it.

    Parameters
    ----------
    scores : Tensor of shape (k, h, w)
        The coarse score map (covering the whole image).
    guide : Tensor of shape (c, H, W)
        The image in ``[0, 1]``.
    rest : Tensor of shape (k, H, W)
        The other terms of the image's scores (bias, the finer layers); not changed.
    radius : int, default=1
        Cells on each side of a pixel's position (``2 * radius`` taps per axis), as
        :class:`EdgeKernel`.
    sigma_spatial : float, default=1.0
        Width of the spatial weight, in cells.
    sigma_range : float, default=0.12
        Width of the colour weight, in ``[0, 1]`` intensity units.

    Returns
    -------
    total : Tensor of shape (k, H, W)
        Where ``exact``: ``rest`` plus the upsampled scores, as the batched form gives them.
        Elsewhere a score vector with the same label (twice the middle of the box of possible
        scores): labels only, not scores.
    exact : Tensor of shape (H, W), bool
        The pixels whose label needed the joint bilateral weights.

    Examples
    --------
    >>> import torch
    >>> guide = torch.zeros(1, 1, 16)
    >>> guide[..., 8:] = 1.0  # an edge in the middle of the image
    >>> scores = torch.tensor([[[-1.0, -1.0, 1.0, 1.0]]])  # 4 cells of 4 pixels
    >>> total, exact = edge_aware_labels(scores, guide, torch.zeros(1, 1, 16))
    >>> (total[0, 0] > 0).long().tolist()  # the labels change at the edge
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    >>> exact[0].long().tolist()  # only the pixels between the middle cells needed weights
    [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    """
    k, h, w = scores.shape
    H, W = guide.shape[1], guide.shape[2]
    dtype, dev = scores.dtype, scores.device
    # the cells of a pixel's taps: base + 1 - radius .. base + radius per axis (off-map taps
    # weigh nothing, and the replicated border repeats an on-map neighbour); the pooled map at
    # base + 1 is their minimum (maximum)
    _, by, _ = cell_coords(torch.arange(H, device=dev), h, H, dtype)
    _, bx, _ = cell_coords(torch.arange(W, device=dev), w, W, dtype)
    padded = F.pad(scores[None], (radius,) * 4, mode="replicate")
    shifted = [padded[0, :, a:a + h + 1, b:b + w + 1]  # the 2r x 2r window's cells
               for a in range(2 * radius) for b in range(2 * radius)]
    lo, hi = torch.stack(shifted).aminmax(dim=0)
    tol = _label_tol(rest, scores)

    def at_pixels(coarse: torch.Tensor) -> torch.Tensor:  # (k, h + 1, w + 1) -> (k, H, W)
        # whole rows are gathered (a gather along the innermost axis is ~3x slower)
        cols = coarse.transpose(1, 2).contiguous().index_select(1, bx + 1)
        return cols.transpose(1, 2).contiguous().index_select(1, by + 1)

    if k == 1:  # rest + lo > tol or rest + hi < -tol: |2 rest + lo + hi| > hi - lo + 2 tol
        total = torch.add(at_pixels(lo + hi), rest, alpha=2.0)
        exact = total.abs() <= at_pixels(hi - lo).add_(2 * tol)
        exact = exact[0]
    else:
        low, high = rest + at_pixels(lo), rest + at_pixels(hi)
        exact = ~_decided(low, high, tol)
        total = low.add_(high)
    ys, xs = exact.nonzero(as_tuple=True)
    if len(ys):  # flat pixel indices: index_select is several times faster than [:, ys, xs]
        at = ys * W + xs
        flat = total.view(k, H * W)
        flat.index_copy_(1, at, rest.reshape(k, H * W).index_select(1, at) + _upsample_at(
            scores, guide.to(dtype), ys, xs, radius, sigma_spatial, sigma_range))
    return total, exact


def _upsample_at(scores: torch.Tensor, guide: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor,
                 radius: int, sigma_spatial: float, sigma_range: float) -> torch.Tensor:
    """``(k, n)``: :func:`edge_aware_upsample_batch` of one image at pixels ``(ys, xs)``, the
    same operations in the same order on each pixel."""
    k, h, w = scores.shape
    c, H, W = guide.shape
    dtype, dev = scores.dtype, scores.device
    ay, taps_y = _batch_axis(h, H, dev, dtype, radius, sigma_spatial)
    ax, taps_x = _batch_axis(w, W, dev, dtype, radius, sigma_spatial)
    means = cell_means(guide[None], ay, ax)[0].reshape(c, h * w)
    g = guide.reshape(c, H * W).index_select(1, ys * W + xs)
    flat_scores = scores.reshape(k, h * w)
    by_y = [tuple(t.index_select(0, ys) for t in tap) for tap in taps_y]
    taps = []
    for ix, vx, wx in taps_x:
        ixp, vxp, wxp = (t.index_select(0, xs) for t in (ix, vx, wx))
        for iyp, vyp, wyp in by_y:
            cell = iyp * w + ixp
            d2 = ((g - means.index_select(1, cell)) ** 2).mean(0)
            d2 = torch.where(vyp & vxp, d2, torch.inf)
            taps.append((cell, wyp * wxp, d2))
    d2_min = torch.stack([t[2] for t in taps]).amin(0)
    num = den = None
    for cell, ws, d2 in taps:
        wt = ws * torch.exp(-(d2 - d2_min) / (2 * sigma_range**2))
        term = flat_scores.index_select(1, cell) * wt
        num = term if num is None else num + term
        den = wt if den is None else den + wt
    return num / den
