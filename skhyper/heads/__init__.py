"""Heads: a fitted classifier folded onto the hypercolumn's blocks, and the one head module.

Folding: upsampling is linear, so a linear classifier on upsampled hypercolumns equals the
upsampled sum of per-layer 1x1 classifiers (Hariharan et al. 2015, sec. 3.1).
:func:`fold_head` is the one function that decides how a fitted classifier folds (plain
linear chains, :func:`fold_classifier`; K x K location grids, :func:`fold_grid`; location
columns; probability links), each fold checked against the classifier itself.
:class:`HeadModule` is the folded head as one ``torch.nn.Module``: it maps native layer maps
(and the image, as the guide of edge-aware upsampling) to scores for whole images, for
windows of huge images (:class:`Window`), as the head of the exported network, and, with
gradients, at sampled pixels. :func:`predict_dense` (whole images) and
:func:`predict_window` (one block of a huge image) run it. :func:`edge_aware_upsample` is
the segmenter's default way to bring the coarse layers' score maps to the image (joint
bilateral upsampling guided by the image; :func:`edge_aware_labels` gives ``predict`` its
labels computing those weights only near changes of label); ``upsampling="bilinear"``
keeps the exact hypercolumn.
"""

from ._bilateral import EdgeKernel, edge_aware_labels
from ._dense import fold_head, predict_dense, predict_window
from ._edges import UPSAMPLINGS as _UPSAMPLINGS
from ._edges import edge_aware_upsample
from ._folding import LINKS as _LINKS
from ._folding import FoldedHead, NotFoldableError, fold_classifier
from ._grid import FoldedGrid, fold_grid
from ._module import HeadModule, Window

LINKS: dict = _LINKS
"""Links from a folded head's scores to probabilities, by name (``FoldedHead.link``):
``"sigmoid"`` (binary), ``"softmax"`` (multinomial), ``"ovr"`` (one-vs-rest); each takes
``(scores, dim)``."""

UPSAMPLINGS: tuple[str, ...] = _UPSAMPLINGS
"""The ``upsampling`` options of a segmenter: ``"edge_aware"`` (coarse score maps upsampled
guided by the image) and ``"bilinear"`` (the exact hypercolumn)."""

__all__ = [
    "LINKS",
    "UPSAMPLINGS",
    "EdgeKernel",
    "FoldedGrid",
    "FoldedHead",
    "HeadModule",
    "NotFoldableError",
    "Window",
    "edge_aware_labels",
    "edge_aware_upsample",
    "fold_classifier",
    "fold_grid",
    "fold_head",
    "predict_dense",
    "predict_window",
]
