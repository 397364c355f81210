"""Which layers matter? Cross-validated single-layer and leave-one-layer-out scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.utils import Bunch

from .features import MapCache

__all__ = ["layer_importance"]


def layer_importance(
    segmenter: Any,
    images: Any,
    masks: Any,
    *,
    layers: Sequence[str] | None = None,
    cv: Any = 3,
    scoring: Any = None,
    n_jobs: int | None = None,
) -> Bunch:
    """Cross-validated scores of a segmenter with each layer alone and with each layer left out.

    For the layers of ``segmenter.hypercolumns`` (or ``layers``), the
    segmenter is cross-validated (:func:`sklearn.model_selection.cross_val_score`,
    folds over images) with all of them, with each one alone and with each
    one left out. A layer's *importance* is how much the score drops without
    it; its single-layer score says what it carries on its own. Every image
    goes through the backbone once for all of these fits: the hypercolumns
    share a :class:`~skhyper.MapCache` (a new one unless the segmenter's
    transformer already has one), and prediction is folded.

    Parameters
    ----------
    segmenter : HypercolumnSegmenter
        Cloned; its ``hypercolumns`` give the backbone and the default layers.
    images : ndarray or list of ndarray
        ``(height, width[, channels])`` images, a list of them or a stack, as in
        :meth:`HypercolumnSegmenter.fit`; the folds split them.
    masks : ndarray or list of ndarray
        One ``(height, width)`` integer label mask per image.
    layers : list of str, default=None
        Layer names to analyse; None takes the transformer's layers (all
        stages when it has none).
    cv : int or cross-validation generator, default=3
        As in ``cross_val_score`` (an int gives ``KFold`` over images).
    scoring : str or callable, default=None
        None uses the segmenter's ``score`` (mean IoU); e.g.
        :data:`skhyper.metrics.foreground_iou_scorer`.
    n_jobs : int, default=None
        Passed to ``cross_val_score``.

    Returns
    -------
    Bunch
        ``layers`` (list of str); ``all_scores`` ``(n_splits,)``;
        ``single_scores`` and ``without_scores`` ``(n_layers, n_splits)``;
        their means ``all_mean``, ``single_mean``, ``without_mean``;
        ``importance`` = ``all_mean - without_mean`` (one per layer; 0 for a
        single layer); ``n_forward_images``: images run through the backbone.

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper import HypercolumnSegmenter, HypercolumnTransformer
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((4, 32, 32, 3)).astype(np.float32) * 0.3
    >>> masks = np.zeros((4, 32, 32), dtype=int)
    >>> masks[:, 8:24, 8:24] = 1
    >>> images[masks == 1] += 0.6
    >>> seg = HypercolumnSegmenter(
    ...     HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None,
    ...                            device="cpu"), n_pixels_per_image=100, random_state=0)
    >>> res = layer_importance(seg, images, masks, cv=2)
    >>> res.layers, res.single_scores.shape, res.n_forward_images
    (['relu', 'layer1'], (2, 2), 4)
    """
    from .estimators import HypercolumnSegmenter, HypercolumnTransformer

    if not isinstance(segmenter, HypercolumnSegmenter):
        raise TypeError(
            "The 'segmenter' parameter must be a HypercolumnSegmenter; got "
            f"{type(segmenter).__name__}."
        )
    hc = clone(segmenter.hypercolumns) if segmenter.hypercolumns is not None else (
        HypercolumnTransformer()
    )
    if hc.cache is None:
        hc.set_params(cache=MapCache())
    cache = hc.cache
    probe = clone(hc) if layers is None else clone(hc).set_params(layers=list(layers))
    names = probe.fit().engine_.layers  # unknown names raise, listing the valid ones
    start = cache.n_forward_images

    def run(subset: list[str]) -> np.ndarray:
        # clones share the MapCache instance (it is not copied)
        seg = clone(segmenter).set_params(hypercolumns=clone(hc).set_params(layers=subset))
        return cross_val_score(seg, images, masks, cv=cv, scoring=scoring, n_jobs=n_jobs)

    all_scores = run(names)
    single = np.array([run([name]) for name in names])
    without = np.array([
        run([n for n in names if n != name]) if len(names) > 1 else all_scores for name in names
    ])
    return Bunch(
        layers=names,
        all_scores=all_scores,
        single_scores=single,
        without_scores=without,
        all_mean=float(all_scores.mean()),
        single_mean=single.mean(1),
        without_mean=without.mean(1),
        importance=all_scores.mean() - without.mean(1),
        n_forward_images=cache.n_forward_images - start,
    )
