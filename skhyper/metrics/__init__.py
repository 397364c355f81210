"""Segmentation metrics over label maps, scorers for model selection, and keypoint metrics.

``y_true`` and ``y_pred`` are label maps: one ``(height, width)`` integer array, a list of them
(sizes may differ between images, a predicted map must have the shape of its true map), or a
stacked ``(n_images, height, width)`` array. Bool maps count as 0/1; float maps must hold
integer values.

Averaging
---------
*Pooled* (the default everywhere, and the PASCAL VOC convention): the pixels of all images are
counted together, as if the images were tiled into one big map, and one score is computed from
the totals. Large images weigh more than small ones, and an image with a tiny object barely
moves the score.

*Per image* (``foreground_iou(..., average="image")``): a score is computed for each image and
the scores are averaged, so every image weighs the same, and missing a small object in one
image costs as much as missing a large one in another.

On the same predictions the two usually differ; the pooled score is not the mean of the
per-image scores.

Boundaries
----------
:func:`boundary_f_score` (the DAVIS contour accuracy / BF score: precision and recall of
boundary pixels within a distance ``tolerance``, averaged per image by default) and
:func:`trimap_iou` (:func:`mean_iou` on the pixels within ``width`` of a true boundary) score
how sharp the predicted boundaries are, which the IoU over all pixels barely sees.

Scorers
-------
``mean_iou_scorer`` and ``foreground_iou_scorer`` (pooled) are ``make_scorer`` objects for
``scoring=`` in :class:`~sklearn.model_selection.GridSearchCV` or
:func:`~sklearn.model_selection.cross_val_score`, for an estimator whose ``predict(images)``
returns label maps and whose ``y`` is the list of true masks. :func:`get_scorer` also knows
``"foreground_iou_image"`` (the per-image average) and otherwise defers to scikit-learn.

Keypoints
---------
:func:`pck` (percentage of correct keypoints) and :func:`nme` (mean normalized error) compare
``(n_images, n_keypoints, 2)`` arrays of ``(x, y)`` pixel coordinates, NaN marking a keypoint
that is not annotated; distances are divided by a per-image reference distance such as
:func:`inter_ocular_distance`.
"""

from ._boundaries import boundary_f_score, trimap_iou
from ._keypoints import inter_ocular_distance, nme, pck
from ._segmentation import (
    confusion_matrix,
    foreground_iou,
    foreground_iou_scorer,
    get_scorer,
    iou_per_class,
    mean_iou,
    mean_iou_scorer,
)

__all__ = [
    "confusion_matrix",
    "iou_per_class",
    "mean_iou",
    "foreground_iou",
    "boundary_f_score",
    "trimap_iou",
    "mean_iou_scorer",
    "foreground_iou_scorer",
    "get_scorer",
    "pck",
    "nme",
    "inter_ocular_distance",
]
