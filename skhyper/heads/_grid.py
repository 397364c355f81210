"""The K x K grid of location-specific classifiers, folded: cells side by side, blended densely.

Each cell's linear classifier folds to per-layer 1x1 weights
(:func:`~skhyper.heads.fold_classifier`), so the grid folds too
(:func:`fold_grid`): K^2 x k score maps at native resolution, interpolated and
blended per pixel by its location in the frame (:func:`grid_blend`), only
where each cell has weight. Several single-output heads stack into one
(:func:`stack_heads`), so one pass scores every keypoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._folding import FoldedHead, NotFoldableError, fold_classifier
from ._gather import gather_window

__all__ = ["FoldedGrid", "fold_grid", "grid_blend", "stack_heads"]


@dataclass
class FoldedGrid(FoldedHead):
    """A K x K grid of linear classifiers folded to 1x1 weights, all cells side by side.

    A grid of location-specific classifiers, one per cell of a K x K grid over
    the object's frame, blended bilinearly by each pixel's location: the
    location-specific heads of Hariharan et al. [1]_. Each cell folds like a
    plain linear head (:class:`FoldedHead`), so the whole grid scores native
    maps with 1x1 weights and only score maps are upsampled. ``labels`` and
    ``proba`` act on the blended ``(k, ...)`` scores.

    Parameters
    ----------
    blocks : list of ndarray of shape (num_chs_l, K * K * k)
        Weights per layer; cell ``c`` (row-major) owns columns
        ``c * k : (c + 1) * k``.
    bias : ndarray of shape (K * K * k,)
        The cells' intercepts, laid out as the columns of ``blocks``.
    classes : ndarray of shape (n_classes,)
        The grid's ``classes_`` (shared by all cells).
    link : {"sigmoid", "softmax", "ovr"} or None
        How ``predict_proba`` follows from the blended scores; None when the
        cells do not share one link.
    location : None, default=None
        Unused: the location columns select and weight the cells instead of
        entering the scores.
    grid_size : int, default=1
        ``K``, the cells per side of the grid.

    Attributes
    ----------
    n_outputs : int
        Scores per pixel after blending: ``k``, 1 for a binary classifier.

    See Also
    --------
    fold_grid : Fold a fitted grid into a ``FoldedGrid``.
    skhyper.estimators.GridLocationClassifier : The grid of classifiers itself.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for
       object segmentation and fine-grained localization", CVPR 2015, sec. 3.
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
    Folded, the grid of location-specific classifiers [1]_ predicts whole images
    from native maps without building their hypercolumns.

    Parameters
    ----------
    grid : GridLocationClassifier
        A fitted grid whose cells are linear classifiers (or chains of affine
        steps ending in one) and whose location columns are its last two
        inputs.
    feature_info : list of dict
        The layers (``num_chs`` each) of the hypercolumn without the location
        columns, in column order.

    Returns
    -------
    FoldedHead
        A :class:`FoldedGrid` with every cell side by side, or for a 1 x 1 grid
        the single cell's :class:`FoldedHead`.

    Raises
    ------
    NotFoldableError
        When the location columns are not the last two, or a cell does not fold.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for
       object segmentation and fine-grained localization", CVPR 2015, sec. 3.
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


def grid_blend(parts: Sequence[torch.Tensor], axes: Sequence[tuple], bias: torch.Tensor,
               cells: tuple[torch.Tensor, torch.Tensor], grid_size: int) -> torch.Tensor:
    """Blended scores ``(..., k, ny, nx)`` of a folded grid at a block of pixels.

    ``parts`` are the per-layer 1x1 scores ``(..., K*K*k, h_l, w_l)`` of all cells
    (``project_maps`` with the :class:`FoldedGrid` blocks), ``axes`` their
    ``(rows, cols)`` (``bilinear_axis``, None: the axis as it is),
    ``bias`` ``(K*K*k,)`` and ``cells`` the ``(K, ny)`` and ``(K, nx)`` cell weights of the
    block's rows and columns (``cell_axis``). Equals upsampling every
    cell's scores to the pixels and blending them with the bilinear cell weights of each
    pixel's location; since both are separable, each map is read along rows, blended by ``v``
    over the cell rows, read along columns and blended by ``u``: the cell maps are never
    upsampled one by one.
    """
    K = grid_size
    wy, wx = cells
    total = None
    for m, (rows, cols) in [*zip(parts, axes), (bias.reshape(-1, 1, 1), (None, None))]:
        lead = m.shape[:-3]
        t = gather_window(m.reshape(*lead, K, K, -1, m.shape[-2], m.shape[-1]), rows, None)
        t = (t * wy.reshape(K, 1, 1, -1, 1)).sum(-5)  # (..., K, k, ny, w): rows blended by v
        t = (gather_window(t, None, cols) * wx.reshape(K, 1, 1, -1)).sum(-4)
        total = t if total is None else total + t
    return total


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
