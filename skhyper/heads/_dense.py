"""The one head path: fold a fitted classifier, score every pixel of whole images or windows.

:func:`fold_head` decides, in one place, how a fitted classifier folds onto the
blocks of a hypercolumn: a chain of affine steps ending in a linear model
(:func:`~skhyper.heads.fold_classifier`, checked against the classifier on
probe inputs), a K x K :class:`~skhyper.GridLocationClassifier` of such chains
(:func:`~skhyper.heads.fold_grid`), location columns (weights of ``(u, v)``),
and the link that turns scores into probabilities. :func:`predict_dense` is
the one dense-scoring path, used by the segmenter, the keypoint locator, the
demo and :func:`skhyper.parallel.predict_large` (through :func:`predict_window`):

* folded -- each native map gets its 1x1 head (float64, cheap at native
  resolution), only the ``k`` score maps are upsampled (or blended by the
  grid), the link gives probabilities, the argmax labels; the hypercolumn is
  never built;
* chunked -- any other classifier (forests, boosting) sees the dense
  hypercolumn in bands of ``chunk_pixels`` pixels
  (:meth:`~skhyper.features.FeatureEngine.bands`), so memory stays bounded by
  the band.

Both equal the classifier applied to the full hypercolumn of every pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..features import FeatureEngine
from ..location import LOCATION, frame_of
from ._edges import UPSAMPLINGS, image_guide
from ._folding import FoldedHead, NotFoldableError, fold_classifier
from ._grid import fold_grid
from ._module import HeadModule, Window

__all__ = ["OUTPUTS", "fold_head", "predict_dense", "predict_window"]

OUTPUTS = ("predict", "predict_proba", "decision_function")


def _is_grid(classifier: Any) -> bool:
    """A fitted :class:`~skhyper.GridLocationClassifier` (duck-typed: heads sit below the
    estimators)."""
    return all(hasattr(classifier, a) for a in ("grid_size", "estimators_", "location_columns_"))


def fold_head(classifier: Any, blocks: Sequence[dict]) -> FoldedHead | None:
    """Fold a fitted classifier onto the blocks of a hypercolumn, or None when it does not fold.

    Parameters
    ----------
    classifier : fitted estimator
        A linear chain (``StandardScaler`` / ``PCA`` / a linear model, one-vs-rest too) or a
        :class:`~skhyper.GridLocationClassifier` of such chains.
    blocks : list of dict
        The hypercolumn's layout (``FeatureEngine.blocks``): one ``num_chs`` block per map,
        then :data:`skhyper.location.LOCATION` when location columns are appended.

    Returns
    -------
    FoldedHead, FoldedGrid or None
        Checked to equal the classifier (scores, labels, and probabilities through its
        ``link``); None for classifiers that do not fold (dense prediction is then chunked).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.random((60, 5)), rng.integers(0, 2, 60)
    >>> blocks = [{"num_chs": 2}, {"num_chs": 3}]
    >>> fold_head(LogisticRegression().fit(X, y), blocks).link
    'sigmoid'
    >>> fold_head(RandomForestClassifier(n_estimators=2).fit(X, y), blocks) is None
    True
    """
    try:
        if _is_grid(classifier):
            layers = [b for b in blocks if b.get("kind") != LOCATION["kind"]]
            if len(layers) == len(blocks):
                raise NotFoldableError("A location grid needs the location columns.")
            return fold_grid(classifier, layers)
        return fold_classifier(classifier, blocks)
    except NotFoldableError:
        return None


def _check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise ValueError(
            f"The 'output' parameter must be one of {OUTPUTS}. Got {output!r} instead."
        )


def _check_upsampling(upsampling: str) -> None:
    if upsampling not in UPSAMPLINGS:
        raise ValueError(
            f"The 'upsampling' parameter must be one of {UPSAMPLINGS}. Got {upsampling!r} "
            "instead."
        )


def _channels_last(values: np.ndarray) -> np.ndarray:
    """``(k, H, W)`` -> ``(H, W, k)``, or ``(H, W)`` for a single output."""
    return values[0] if values.shape[0] == 1 else np.ascontiguousarray(np.moveaxis(values, 0, -1))


def _finish(head: FoldedHead, total: torch.Tensor, output: str) -> np.ndarray:
    """Labels, probabilities (sklearn's float64 arithmetic, float32 result) or scores."""
    if output == "predict":
        return np.asarray(head.classes)[head.labels(total).cpu().numpy()]
    if output == "predict_proba":
        return _channels_last(head.proba(total.double()).float().cpu().numpy())
    return _channels_last(total.cpu().numpy())


def predict_dense(
    engine: FeatureEngine,
    images: Sequence[np.ndarray],
    *,
    head: FoldedHead | None = None,
    classifier: Any = None,
    output: str = "predict",
    boxes: np.ndarray | None = None,
    chunk_pixels: int = 65536,
    upsampling: str = "bilinear",
) -> list[np.ndarray]:
    """Dense labels, probabilities or scores of checked images.

    Folded through ``head`` when there is one (and, for probabilities, it has a link);
    otherwise ``getattr(classifier, output)`` on the hypercolumns in bands of rows.

    Parameters
    ----------
    engine : FeatureEngine
        The fitted feature engine whose hypercolumns the classifier was trained on
        (``HypercolumnTransformer.engine_``): it runs the backbone and, for the
        chunked path, builds the hypercolumns.
    images : list of ndarray
        Checked images (``engine.check_images``).
    head : FoldedHead, default=None
        From :func:`fold_head`.
    classifier : fitted estimator, default=None
        Used when ``head`` is None (or cannot give ``output``).
    output : {"predict", "predict_proba", "decision_function"}, default="predict"
        Which method of the classifier the result equals.
    boxes : ndarray of shape (n_images, 4), default=None
        Checked frames ``(x0, y0, x1, y1)`` of the pixel locations; None: whole images.
    chunk_pixels : int, default=65536
        Pixels per band of the chunked path.
    upsampling : {"bilinear", "edge_aware"}, default="bilinear"
        How the folded head's coarse score maps reach the image: bilinearly (the
        hypercolumn's own interpolation: equal to the classifier on full hypercolumns) or
        by joint bilateral upsampling guided by the image (``_edges``;
        layers of stride 8 and more). The chunked path always sees bilinear hypercolumns.

    Returns
    -------
    list of ndarray
        Per image: labels ``(height, width)``; probabilities ``(height, width, n_classes)``;
        scores ``(height, width)`` for one output (binary) or ``(height, width, n_outputs)``.
        Folded scores are float32, or float64 for images whose scores may exceed 64 in
        magnitude (so that they stay exact to 1e-4).

    See Also
    --------
    predict_window : The same for one block of a huge image.
    HeadModule : The folded head that scores the images.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skhyper.features import build_engine
    >>> engine = build_engine("resnet18", layers=["layer1", "layer2"], weights=None,
    ...                       device="cpu")
    >>> images = engine.check_images([np.random.default_rng(0).random((40, 52, 3))])
    >>> X = engine.dense(images)[0].reshape(-1, engine.n_features)
    >>> clf = LogisticRegression(max_iter=200).fit(X, X[:, 0] > np.median(X[:, 0]))
    >>> head = fold_head(clf, engine.blocks)
    >>> labels, = predict_dense(engine, images, head=head)
    >>> labels.shape, bool((labels.ravel() == clf.predict(X)).mean() > 0.999)
    ((40, 52), True)
    """
    _check_output(output)
    _check_upsampling(upsampling)
    results: list[np.ndarray | None] = [None] * len(images)
    if head is not None and (output != "predict_proba" or head.link is not None):
        module = HeadModule(head, engine.feature_info, upsampling=upsampling,
                            device=engine.device)
        for i, scores in engine.iter_maps(images, project=module.project_named):
            shape = images[i].shape[:2]
            frame = frame_of(None if boxes is None else boxes[i], shape)
            guide = None if not any(module.coarse) else image_guide(
                images[i], engine.intensity_range, engine.device)[None]
            total = module.scores([scores[name][None] for name in engine.map_names],
                                  Window.whole(shape), frame=frame, guide=guide,
                                  canvases=engine.canvases(shape),
                                  labels_only=output == "predict")[0]
            results[i] = _finish(head, total, output)
        return results
    if classifier is None:
        raise NotFoldableError(f"The head cannot give {output!r} and no classifier was given.")
    method = getattr(classifier, output)
    for i, maps in engine.iter_maps(images):
        H, W = images[i].shape[:2]
        frame = frame_of(None if boxes is None else boxes[i], (H, W))
        out = None
        for r0, r1, feats in engine.bands(maps, (H, W), chunk_pixels=chunk_pixels, frame=frame):
            values = np.asarray(method(feats))
            if out is None:
                out = np.empty((H * W, *values.shape[1:]), dtype=values.dtype)
            out[r0 * W : r1 * W] = values
        results[i] = out.reshape(H, W, *out.shape[1:])
    return results


def predict_window(
    engine: FeatureEngine,
    window: Sequence[np.ndarray],
    region: Window,
    *,
    head: FoldedHead | None = None,
    classifier: Any = None,
    output: str = "predict",
    chunk_pixels: int = 65536,
    upsampling: str = "bilinear",
) -> np.ndarray:
    """The outputs of one block of a large image, from a window of it.

    :func:`predict_dense` restricted to the block, so that a huge image can be
    predicted block by block with bounded memory.

    The window holds the block plus the receptive-field halo (see
    :mod:`skhyper.parallel`), so its native maps equal the whole image's around the block.
    They are read with the *whole image's* bilinear weights (float64) by the same
    :class:`~skhyper.heads.HeadModule` as whole images (plain heads and location grids,
    bilinear and edge-aware), so every pixel gets the value the whole-image prediction gives
    it. ``output="transform_dense"`` returns the hypercolumns.

    Parameters
    ----------
    engine : FeatureEngine
        Without cache and tiling (``engine.replace(cache=None, tile_size=None)``).
    window : list of one ndarray
        The checked window image.
    region : Window
        ``shape`` (H, W) of the whole image, ``core`` (r0, r1, c0, c1) of the block,
        ``origin`` (row, col) of the window in the image, ``native`` the whole image's map
        sizes ``(h, w)`` in the order of ``engine.map_names``.
    head : FoldedHead, default=None
        From :func:`fold_head`; as in :func:`predict_dense`.
    classifier : fitted estimator, default=None
        Used when ``head`` is None (or cannot give ``output``).
    output : {"predict", "predict_proba", "decision_function", "transform_dense"}, \
default="predict"
        Which method of the classifier the result equals; ``"transform_dense"``
        gives the block's hypercolumns.
    chunk_pixels : int, default=65536
        Pixels per band of the chunked path.
    upsampling : {"bilinear", "edge_aware"}, default="bilinear"
        As in :func:`predict_dense` (edge-aware upsampling is local: the halo holds every
        cell and pixel it reads, so windows give the whole image's values).

    Returns
    -------
    ndarray
        The block's ``(r1 - r0, c1 - c0[, k])`` outputs.
    """
    H, W = region.shape
    if any(c is not None for c in engine.canvases((H, W))):  # pragma: no cover - refused above
        raise NotImplementedError("predict_window: maps of padded images are not windowed.")
    _check_upsampling(upsampling)
    r0, r1, c0, c1 = region.core
    names = engine.map_names
    if output in OUTPUTS and head is not None and (output != "predict_proba"
                                                   or head.link is not None):
        module = HeadModule(head, engine.feature_info, upsampling=upsampling,
                            device=engine.device)
        (_, maps), = engine.iter_maps(window, project=module.project_named)
        guide = None if not any(module.coarse) else image_guide(
            window[0], engine.intensity_range, engine.device)[None]
        total = module.scores([maps[name][None] for name in names], region, guide=guide,
                              dtype=torch.float64, axis_dtype=torch.float32)[0]
        return _finish(head, total, output)
    (_, maps), = engine.iter_maps(window)
    red = {d["name"]: max(1, round(d["reduction"])) for d in engine.feature_info}
    ny, nx = r1 - r0, c1 - c0
    w0, v0 = region.origin
    offsets = {name: (w0 // red[name], v0 // red[name]) for name in names}
    windows = [(*offsets[name], *size) for name, size in zip(names, region.native)]
    band = max(1, chunk_pixels // nx)
    out = None
    cols = torch.arange(c0, c1)
    for a in range(r0, r1, band):
        b = min(r1, a + band)
        rows_px = torch.arange(a, b).repeat_interleave(nx)
        cols_px = cols.repeat(b - a)
        feats = np.empty(((b - a) * nx, engine.n_features), dtype=np.float32)
        engine.fill(maps, rows_px, cols_px, (H, W), feats, windows=windows)
        values = feats if output == "transform_dense" else np.asarray(
            getattr(classifier, output)(feats))
        if out is None:
            out = np.empty((ny, nx, *values.shape[1:]), dtype=values.dtype)
        out[a - r0 : b - r0] = values.reshape(b - a, nx, *values.shape[1:])
    return out
