"""The K x K grid of location-specific classifiers, folded: cells side by side, blended densely.

Each cell's linear classifier folds to per-layer 1x1 weights
(:func:`~skhyper.heads.fold_classifier`), so the grid folds too
(:func:`fold_grid`): K^2 x k score maps at native resolution, interpolated and
blended per pixel by its location in the frame (:func:`grid_scores`), only
where each cell has weight. Several single-output heads stack into one
(:func:`stack_heads`), so one pass scores every keypoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..features import interp_weights
from ..location import axis_cell_weights, axis_locations
from ._folding import FoldedHead, NotFoldableError, fold_classifier

__all__ = ["FoldedGrid", "fold_grid", "grid_scores", "location_scores", "stack_heads"]


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
    cell (and the global fallback) must fold (:func:`~skhyper.heads.fold_classifier`).
    A 1 x 1 grid folds to its single cell's :class:`~skhyper.heads.FoldedHead`.
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
    canvases: Sequence[tuple[float, float] | None] | None = None,
) -> torch.Tensor:
    """Blended dense scores ``(k, H, W)`` of a folded grid.

    ``parts`` are the per-layer 1x1 scores ``(K*K*k, h_l, w_l)`` of all cells
    at native resolution (:func:`~skhyper.heads.project_maps` with the
    :class:`FoldedGrid` blocks), ``bias`` ``(K*K*k,)``. Equals upsampling
    every cell's scores to the image (``F.interpolate``, bilinear,
    ``align_corners=False``) and blending them with the bilinear cell weights
    of each pixel's location, without doing either in full: pixel rows are
    taken in runs that share their (1 or 2) cell rows; for each run and layer
    the cells of those rows are interpolated along columns at the native rows
    the run needs and blended by ``u``, then one weighted gather
    (``embedding_bag``) interpolates along rows and blends by ``v``. A part
    with a canvas (``FeatureEngine.canvases``) is interpolated over it.
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
    canvases = [*([None] * len(parts) if canvases is None else canvases), None]
    out = torch.empty((k, H, W), dtype=dt, device=dev)
    for r0, r1, rcells in _runs(axis_locations(H, y0, y1), K):
        rows = torch.arange(r0, r1, device=dev)
        acc = None
        for m, canvas in zip(maps, canvases):
            _, h, w = m.shape
            y_0, y_1, wy0, wy1 = interp_weights(rows, h, H if canvas is None else canvas[0])
            lo, hi = int(y_0.min()), int(y_1.max()) + 1
            n = hi - lo
            tables, idx, wts = [], [], []
            for t, (i, wr) in enumerate(rcells):
                cells = m.reshape(K, K * k, h, w)[i, :, lo:hi]
                # along columns only (same height: the rows are copied as they are)
                if canvas is None:
                    xs = F.interpolate(cells[None], size=(n, W), mode="bilinear",
                                       align_corners=False)[0].reshape(K, k, n, W)
                else:
                    xs = _canvas_cols(cells, W, canvas[1]).reshape(K, k, n, W)
                tables.append(_blend_cols(xs, col_w).transpose(0, 1).reshape(n, k * W))
                wr_t = torch.from_numpy(wr).to(dev, dt)
                idx += [y_0 - lo + t * n, y_1 - lo + t * n]
                wts += [wr_t * wy0.to(dt), wr_t * wy1.to(dt)]
            contrib = F.embedding_bag(torch.stack(idx, 1), torch.cat(tables),
                                      per_sample_weights=torch.stack(wts, 1), mode="sum")
            acc = contrib if acc is None else acc.add_(contrib)
        out[:, r0:r1] = acc.reshape(r1 - r0, k, W).transpose(0, 1)
    return out


def _canvas_cols(cells: torch.Tensor, W: int, canvas_w: float) -> torch.Tensor:
    """``(c, n, w)`` cells interpolated along columns over a canvas, cropped to ``W``."""
    j0, j1, b0, b1 = (t.to(cells.device) for t in interp_weights(torch.arange(W), cells.shape[-1],
                                                                  canvas_w))
    return cells[..., j0] * b0.to(cells.dtype) + cells[..., j1] * b1.to(cells.dtype)


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


def stack_heads(heads: Sequence[FoldedHead]) -> FoldedHead:
    """Stack single-output folded heads (one binary classifier each) into one head.

    Output ``j`` of the stacked head is the score of ``heads[j]``, so one pass over the native
    maps scores every keypoint. Grids must share their ``grid_size``; the stacked grid orders
    its columns cell by cell, as :class:`FoldedGrid` expects.
    """
    if any(h.n_outputs != 1 for h in heads):
        raise ValueError("stack_heads takes single-output (binary) heads.")
    sizes = {h.grid_size if isinstance(h, FoldedGrid) else 1 for h in heads}
    if len(sizes) != 1:
        raise ValueError(f"Heads with different grid sizes cannot be stacked: {sorted(sizes)}.")
    K = sizes.pop()
    k = len(heads)
    n_layers = len(heads[0].blocks)
    # cell c of head j is column c of its blocks; the stack puts it at column c * k + j
    blocks = [np.stack([h.blocks[layer] for h in heads], axis=-1).reshape(
        heads[0].blocks[layer].shape[0], K * K * k) for layer in range(n_layers)]
    bias = np.stack([h.bias for h in heads], axis=-1).reshape(K * K * k)
    classes = np.arange(k)
    if K > 1:
        return FoldedGrid(blocks, bias, classes, None, grid_size=K)
    locations = [h.location for h in heads]
    location = None if locations[0] is None else np.hstack(locations)
    return FoldedHead(blocks, bias, classes, None, location)
