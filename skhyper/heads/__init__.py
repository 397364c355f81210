"""Heads: a fitted classifier folded onto the hypercolumn's blocks, and the one dense path.

Folding: upsampling is linear, so a linear classifier on upsampled
hypercolumns equals the upsampled sum of per-layer 1x1 classifiers
(Hariharan et al. 2015, sec. 3.1). :func:`fold_head` is the one function that
decides how a fitted classifier folds (plain linear chains, K x K location
grids, location columns, probability links), each fold checked against the
classifier itself; :func:`predict_dense` is the one dense-scoring path (1x1
projection at native resolution, upsampling or grid blend, link, labels), and
:func:`predict_window` the same restricted to one block of a huge image. The
building blocks (:func:`fold_classifier`, :func:`fold_grid`,
:func:`stack_heads`, :func:`project_maps`, :func:`upsample_sum`,
:func:`grid_blend`) are public for analysis and exporters. :class:`HeadModule` is the head
itself as one ``torch.nn.Module`` (whole images, windows (:class:`Window`), the exported
network, and a differentiable mode at sampled pixels).
:func:`edge_aware_upsample` is the segmenter's default way to bring the coarse
layers' score maps to the image (joint bilateral upsampling guided by the
image; :func:`edge_aware_upsample_batch` is its batched, traceable form for
exporters; :func:`edge_aware_labels` gives ``predict`` its labels computing the joint
bilateral weights only near changes of label); ``upsampling="bilinear"`` keeps the exact
hypercolumn.
"""

from ..location import LOCATION
from ._bilateral import edge_aware_labels
from ._dense import OUTPUTS, fold_head, predict_dense, predict_window
from ._edges import (
    EDGE_PARAMS,
    UPSAMPLINGS,
    coarse_sum,
    coarse_target,
    edge_aware_upsample,
    edge_aware_upsample_batch,
    image_guide,
    is_coarse,
)
from ._folding import (
    LINKS,
    FoldedHead,
    NotFoldableError,
    affine_of,
    find_link,
    fold_chain,
    fold_classifier,
    folded_scores,
    project_maps,
    split_by_layer,
    upsample_sum,
)
from ._grid import FoldedGrid, fold_grid, grid_blend, stack_heads
from ._module import HeadModule, Window

__all__ = [
    "EDGE_PARAMS",
    "LINKS",
    "LOCATION",
    "OUTPUTS",
    "UPSAMPLINGS",
    "FoldedGrid",
    "FoldedHead",
    "HeadModule",
    "NotFoldableError",
    "affine_of",
    "coarse_sum",
    "coarse_target",
    "edge_aware_labels",
    "edge_aware_upsample",
    "edge_aware_upsample_batch",
    "find_link",
    "fold_chain",
    "fold_classifier",
    "fold_grid",
    "fold_head",
    "folded_scores",
    "grid_blend",
    "image_guide",
    "is_coarse",
    "predict_dense",
    "predict_window",
    "project_maps",
    "split_by_layer",
    "stack_heads",
    "upsample_sum",
    "Window",
]
