"""Object frames, pixel locations in them, and the K x K grid of location-specific classifiers.

A *frame* is a box ``(x0, y0, x1, y1)`` in pixel coordinates (the whole image,
``(0, 0, width, height)``, by default). The *location* of pixel ``(row, col)``
in its frame is ``u = (col + 0.5 - x0) / (x1 - x0)``, ``v = (row + 0.5 - y0) /
(y1 - y0)`` (pixel centres, the convention of ``F.interpolate(...,
align_corners=False)``), clipped to ``[0, 1]``: a pixel outside its frame takes
the location of the nearest frame point.

The grid (Hariharan et al. 2015, sec. 3.3) divides the frame into K x K cells
with centres at ``((j + 0.5) / K, (i + 0.5) / K)``; a pixel's score is the
bilinear interpolation of the scores of the classifiers at the (up to) 4
nearest cell centres -- exactly ``F.interpolate`` of a K x K map of scores to
the frame, with clamping beyond the outermost centres. Each cell's linear
classifier folds to per-layer 1x1 weights, so the grid folds too
(:func:`fold_grid`, :func:`grid_scores`): K^2 x k score maps at native
resolution, interpolated and blended only where each cell has weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .extraction import interp_weights
from .folding import FoldedHead, NotFoldableError, fold_classifier
from .sampling import PixelSet

__all__ = [
    "FoldedGrid",
    "axis_cell_weights",
    "axis_locations",
    "cell_weights",
    "check_locations",
    "fold_grid",
    "frame_of",
    "grid_scores",
    "location_map",
    "location_scores",
    "pixel_locations",
]


def frame_of(box: Any, image_shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` of ``box``, or of the whole image when ``box`` is None."""
    if box is None:
        return 0.0, 0.0, float(image_shape[1]), float(image_shape[0])
    x0, y0, x1, y1 = (float(b) for b in box)
    return x0, y0, x1, y1


def axis_locations(n: int, lo: float, hi: float) -> np.ndarray:
    """Locations in ``[0, 1]`` of pixels ``0 .. n-1`` along an axis framed by ``[lo, hi)``.

    Examples
    --------
    >>> axis_locations(4, 0, 4).tolist()
    [0.125, 0.375, 0.625, 0.875]
    >>> axis_locations(4, 1, 3).tolist()  # pixels outside the frame are clipped
    [0.0, 0.25, 0.75, 1.0]
    """
    return np.clip((np.arange(n) + 0.5 - lo) / (hi - lo), 0.0, 1.0)


def location_map(image_shape: tuple[int, int], frame: tuple[float, ...]) -> np.ndarray:
    """``(height, width, 2)`` float32 locations ``(u, v)`` of every pixel in ``frame``.

    Examples
    --------
    >>> location_map((2, 4), frame_of(None, (2, 4)))[1, 2].tolist()
    [0.625, 0.75]
    """
    H, W = image_shape
    x0, y0, x1, y1 = frame
    out = np.empty((H, W, 2), dtype=np.float32)
    out[..., 0] = axis_locations(W, x0, x1)[None, :]
    out[..., 1] = axis_locations(H, y0, y1)[:, None]
    return out


def pixel_locations(X: PixelSet) -> np.ndarray:
    """``(n_pixels, 2)`` locations ``(u, v)`` of the pixels of ``X`` in their frames.

    The frames are ``X.boxes`` (whole images when None).

    Examples
    --------
    >>> import numpy as np
    >>> X = PixelSet([np.zeros((4, 8))], [[0, 0, 0], [0, 3, 7]])
    >>> pixel_locations(X).tolist()
    [[0.0625, 0.125], [0.9375, 0.875]]
    """
    coords = X.coords
    out = np.empty((len(coords), 2), dtype=np.float64)
    sizes = np.array([img.shape[:2] for img in X.images], dtype=np.float64)
    if X.boxes is None:
        x0 = y0 = np.zeros(len(sizes))
        x1, y1 = sizes[:, 1], sizes[:, 0]
    else:
        x0, y0, x1, y1 = X.boxes.T
    i = coords[:, 0]
    out[:, 0] = (coords[:, 2] + 0.5 - x0[i]) / (x1[i] - x0[i])
    out[:, 1] = (coords[:, 1] + 0.5 - y0[i]) / (y1[i] - y0[i])
    return np.clip(out, 0.0, 1.0, out=out)


def check_locations(locations: np.ndarray, *, clip: bool, columns: Sequence[int]) -> np.ndarray:
    """Validate ``(n, 2)`` locations in ``[0, 1]`` (or clip them); return float64."""
    loc = np.asarray(locations, dtype=np.float64)
    if clip:
        return np.clip(loc, 0.0, 1.0)
    bad = (loc < 0.0) | (loc > 1.0)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"The location columns {tuple(columns)} of X must hold each pixel's normalized "
            f"position (u, v) in [0, 1] within its frame; found {float(loc[row, col])!r} "
            f"(row {row}; values span [{loc.min():.3g}, {loc.max():.3g}]). Use "
            "HypercolumnTransformer(append_location=True) to append them, or "
            "clip_locations=True to clip positions outside the frame."
        )
    return loc


def axis_cell_weights(t: np.ndarray, grid_size: int) -> tuple[np.ndarray, ...]:
    """Bilinear weights of locations ``t`` in ``[0, 1]`` on ``grid_size`` cell centres.

    Returns ``(j0, j1, w0, w1)``: the two neighbouring cells and their weights
    (``w0 + w1 == 1``), clamped beyond the outermost centres.

    Examples
    --------
    >>> j0, j1, w0, w1 = axis_cell_weights(np.array([0.0, 0.25, 0.5, 1.0]), 2)
    >>> j0.tolist(), j1.tolist(), w1.tolist()
    ([0, 0, 0, 0], [1, 1, 1, 1], [0.0, 0.0, 0.5, 1.0])
    """
    s = np.clip(np.asarray(t, dtype=np.float64) * grid_size - 0.5, 0.0, grid_size - 1)
    j0 = np.minimum(np.floor(s), max(grid_size - 2, 0)).astype(np.int64)
    w1 = s - j0
    j1 = np.minimum(j0 + 1, grid_size - 1)
    return j0, j1, 1.0 - w1, w1


def cell_weights(locations: np.ndarray, grid_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells and bilinear weights of ``(n, 2)`` locations ``(u, v)`` on a K x K grid.

    Returns ``cells`` ``(n, 4)`` (cell index ``i * K + j`` for row ``i`` (v)
    and column ``j`` (u)) and ``weights`` ``(n, 4)``, summing to 1 per row.

    Examples
    --------
    >>> cells, w = cell_weights(np.array([[0.5, 0.5]]), 3)  # the centre of cell 4
    >>> cells[0, np.argmax(w[0])], w.sum()
    (np.int64(4), np.float64(1.0))
    """
    ju0, ju1, wu0, wu1 = axis_cell_weights(locations[:, 0], grid_size)
    iv0, iv1, wv0, wv1 = axis_cell_weights(locations[:, 1], grid_size)
    K = grid_size
    cells = np.stack([iv0 * K + ju0, iv0 * K + ju1, iv1 * K + ju0, iv1 * K + ju1], 1)
    weights = np.stack([wv0 * wu0, wv0 * wu1, wv1 * wu0, wv1 * wu1], 1)
    return cells, weights


@dataclass
class FoldedGrid(FoldedHead):
    """A K x K grid of linear classifiers folded to 1x1 weights, all cells side by side.

    ``blocks[l]`` is ``(num_chs_l, K * K * k)``: cell ``c`` (row-major) owns
    columns ``c * k : (c + 1) * k``; ``bias`` likewise. ``labels`` and
    ``proba`` act on the blended ``(k, ...)`` scores.
    """

    grid_size: int = 1

    @property
    def n_outputs(self) -> int:
        return self.bias.shape[0] // (self.grid_size * self.grid_size)


def fold_grid(grid: Any, feature_info: Sequence[dict]) -> FoldedHead:
    """Fold a fitted :class:`~skhyper.estimators.GridLocationClassifier`.

    ``feature_info`` describes the hypercolumn without the location columns,
    which must be the last two columns of the grid's input, ``(u, v)``. Every
    cell (and the global fallback) must fold (:func:`skhyper.folding.fold_classifier`).
    A 1 x 1 grid folds to its single cell's :class:`~skhyper.folding.FoldedHead`.
    """
    n = grid.n_features_in_
    if tuple(grid.location_columns_) != (n - 2, n - 1):
        raise NotFoldableError(
            "The grid's location columns are not the last two columns (u, v) of its input."
        )
    if grid.grid_size == 1:  # one cell: the plain classifier
        return fold_classifier(grid.estimators_[0], feature_info)
    heads: dict[int, FoldedHead] = {}
    cells = []
    for est in grid.estimators_:
        if id(est) not in heads:
            heads[id(est)] = fold_classifier(est, feature_info)
        cells.append(heads[id(est)])
    links = {h.link for h in cells}
    blocks = [np.hstack([h.blocks[layer] for h in cells]) for layer in range(len(feature_info))]
    return FoldedGrid(blocks, np.concatenate([h.bias for h in cells]), np.asarray(grid.classes_),
                      links.pop() if len(links) == 1 else None, grid_size=grid.grid_size)


def location_scores(weights: torch.Tensor, frame: tuple[float, ...],
                    image_shape: tuple[int, int]) -> torch.Tensor:
    """``(k, H, W)`` scores ``w_u * u + w_v * v`` of a linear head's two location weights."""
    H, W = image_shape
    x0, y0, x1, y1 = frame
    dev, dt = weights.device, weights.dtype
    u = torch.from_numpy(axis_locations(W, x0, x1)).to(dev, dt)
    v = torch.from_numpy(axis_locations(H, y0, y1)).to(dev, dt)
    return weights[0][:, None, None] * u + weights[1][:, None, None] * v[:, None]


def _runs(t: np.ndarray, grid_size: int) -> list[tuple[int, int, list[tuple[int, np.ndarray]]]]:
    """Runs of pixels along an axis sharing their cells: ``(start, stop, [(cell, weights)])``."""
    j0, j1, w0, w1 = axis_cell_weights(t, grid_size)
    key = j0 * 4 + (w0 > 0) * 2 + (w1 > 0)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    out = []
    for a, b in zip(starts, [*starts[1:], len(t)]):
        cells = [(int(j0[a]), w0[a:b])] if w0[a] > 0 else []
        if w1[a] > 0:
            cells.append((int(j1[a]), w1[a:b]))
        out.append((int(a), int(b), cells))
    return out


def grid_scores(
    parts: Sequence[torch.Tensor],
    bias: torch.Tensor,
    grid_size: int,
    image_shape: tuple[int, int],
    frame: tuple[float, float, float, float],
) -> torch.Tensor:
    """Blended dense scores ``(k, H, W)`` of a folded grid.

    ``parts`` are the per-layer 1x1 scores ``(K*K*k, h_l, w_l)`` of all cells
    at native resolution (:func:`skhyper.folding.project_maps` with the
    :class:`FoldedGrid` blocks), ``bias`` ``(K*K*k,)``. Equals upsampling
    every cell's scores to the image (``F.interpolate``, bilinear,
    ``align_corners=False``) and blending them with the bilinear cell weights
    of each pixel's location, without doing either in full: pixel rows are
    taken in runs that share their (1 or 2) cell rows; for each run and layer
    the cells of those rows are interpolated along columns at the native rows
    the run needs and blended by ``u``, then one weighted gather
    (``embedding_bag``) interpolates along rows and blends by ``v``.
    """
    H, W = image_shape
    K = grid_size
    k = bias.shape[0] // (K * K)
    dev, dt = bias.device, bias.dtype
    x0, y0, x1, y1 = frame
    col_runs = _runs(axis_locations(W, x0, x1), K)
    col_w = [(c0, c1, [(j, torch.from_numpy(w).to(dev, dt)) for j, w in cells])
             for c0, c1, cells in col_runs]
    maps = [*parts, bias.reshape(-1, 1, 1)]  # the bias is a 1x1 map
    out = torch.empty((k, H, W), dtype=dt, device=dev)
    for r0, r1, rcells in _runs(axis_locations(H, y0, y1), K):
        rows = torch.arange(r0, r1, device=dev)
        acc = None
        for m in maps:
            _, h, w = m.shape
            y_0, y_1, wy0, wy1 = interp_weights(rows, h, H)
            lo, hi = int(y_0.min()), int(y_1.max()) + 1
            n = hi - lo
            tables, idx, wts = [], [], []
            for t, (i, wr) in enumerate(rcells):
                cells = m.reshape(K, K * k, h, w)[i, :, lo:hi]
                # along columns only (same height: the rows are copied as they are)
                xs = F.interpolate(cells[None], size=(n, W), mode="bilinear",
                                   align_corners=False)[0].reshape(K, k, n, W)
                tables.append(_blend_cols(xs, col_w).transpose(0, 1).reshape(n, k * W))
                wr_t = torch.from_numpy(wr).to(dev, dt)
                idx += [y_0 - lo + t * n, y_1 - lo + t * n]
                wts += [wr_t * wy0.to(dt), wr_t * wy1.to(dt)]
            contrib = F.embedding_bag(torch.stack(idx, 1), torch.cat(tables),
                                      per_sample_weights=torch.stack(wts, 1), mode="sum")
            acc = contrib if acc is None else acc.add_(contrib)
        out[:, r0:r1] = acc.reshape(r1 - r0, k, W).transpose(0, 1)
    return out


def _blend_cols(xs: torch.Tensor, col_w: list) -> torch.Tensor:
    """Blend ``(K, k, n, W)`` column-interpolated cell maps by ``u``: ``(k, n, W)``."""
    _, k, n, W = xs.shape
    out = torch.empty((k, n, W), dtype=xs.dtype, device=xs.device)
    for c0, c1, cells in col_w:
        seg = out[:, :, c0:c1]
        for t, (j, wc) in enumerate(cells):
            if t == 0:
                torch.mul(xs[j, :, :, c0:c1], wc, out=seg)
            else:
                seg.addcmul_(xs[j, :, :, c0:c1], wc.expand_as(seg))
    return out
