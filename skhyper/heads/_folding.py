"""Folding: a linear head on upsampled hypercolumns is a sum of upsampled per-layer 1x1 heads.

Upsampling is linear, so ``w . up(h) + b = sum_l up(W_l * f_l) + b``. A chain of
affine steps (``StandardScaler``, ``PCA``, a linear model with ``coef_`` /
``intercept_``) composes into one matrix ``A`` (n_features, n_outputs) and a
bias; its rows split into one block per layer. Dense scores then cost a 1x1
convolution of each native map and an upsample of ``n_outputs`` score maps:
the full-resolution hypercolumn never exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..location import LOCATION
from ._gather import bilinear_axis, sum_window

__all__ = [
    "FoldedHead",
    "LINKS",
    "NotFoldableError",
    "affine_of",
    "fold_chain",
    "find_link",
    "fold_classifier",
    "folded_scores",
    "project_maps",
    "split_by_layer",
    "upsample_sum",
]

_BAND_VALUES = 1 << 18  # values per band of a converted map (1 MiB of float32)


class NotFoldableError(TypeError):
    """A step of the chain is not affine (or not fitted), so the chain cannot fold."""


def affine_of(step: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(M, v)`` with ``step.transform(x)`` (or ``decision_function``) ``== x @ M + v``.

    Supports fitted ``StandardScaler``, ``PCA`` (``whiten`` too), ``"passthrough"``
    and linear models with ``coef_`` and ``intercept_``.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if isinstance(step, StandardScaler):
        n = step.n_features_in_
        scale = step.scale_ if step.scale_ is not None else np.ones(n)
        mean = step.mean_ if step.mean_ is not None and step.with_mean else np.zeros(n)
        return np.diag(1.0 / scale), -mean / scale
    if isinstance(step, PCA):
        M = step.components_.T.copy()
        if step.whiten:
            M /= np.sqrt(step.explained_variance_)
        return M, -step.mean_ @ M
    if hasattr(step, "estimators_") and hasattr(step, "label_binarizer_"):
        # OneVsRestClassifier: one binary linear model per class, scores side by side
        parts = [affine_of(est) for est in step.estimators_]
        return np.hstack([M for M, _ in parts]), np.concatenate([v for _, v in parts])
    if hasattr(step, "coef_") and hasattr(step, "intercept_"):
        coef = np.atleast_2d(np.asarray(step.coef_, dtype=np.float64))
        intercept = np.broadcast_to(np.asarray(step.intercept_, dtype=np.float64), coef.shape[:1])
        return coef.T.copy(), intercept.copy()
    raise NotFoldableError(f"{type(step).__name__} is not an affine step and cannot be folded.")


def fold_chain(steps: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Compose fitted affine steps into ``(A, b)``: ``chain(x) == x @ A + b``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.preprocessing import StandardScaler
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.random((50, 6)), rng.integers(0, 2, 50)
    >>> sc, pca = StandardScaler().fit(X), PCA(3).fit(X)
    >>> Z = pca.fit_transform(sc.transform(X))
    >>> lr = LogisticRegression().fit(Z, y)
    >>> A, b = fold_chain([sc, pca, lr])
    >>> bool(np.allclose(X @ A + b, lr.decision_function(Z)[:, None]))
    True
    """
    A: np.ndarray | None = None
    b: np.ndarray | None = None
    for step in steps:
        if step is None or step == "passthrough":
            continue
        M, v = affine_of(step)
        if A is None:
            A, b = M, v
        else:
            A, b = A @ M, b @ M + v
    if A is None:
        raise NotFoldableError("The chain has no affine step to fold.")
    return A, b


def split_by_layer(A: np.ndarray, feature_info: Sequence[dict]) -> list[np.ndarray]:
    """Row blocks of ``A``, one ``(num_chs, n_outputs)`` block per layer of ``feature_info``."""
    sizes = [d["num_chs"] for d in feature_info]
    if sum(sizes) != A.shape[0]:
        raise ValueError(
            f"The folded head takes {A.shape[0]} features but the layers give {sum(sizes)}."
        )
    return np.split(A, np.cumsum(sizes)[:-1], axis=0)


def _steps_of(classifier: Any) -> list[Any]:
    """The chain of fitted steps of a (possibly nested) Pipeline, or ``[classifier]``."""
    from sklearn.pipeline import Pipeline

    if isinstance(classifier, Pipeline):
        return [s for _, step in classifier.steps for s in _steps_of(step)]
    return [classifier]


def _ovr(s: torch.Tensor, dim: int) -> torch.Tensor:
    p = torch.sigmoid(s)
    return p / p.sum(dim, keepdim=True)


# predict_proba as a function of decision_function scores (outputs along ``dim``), per
# sklearn linear model family: binary sigmoid, multinomial softmax, one-vs-rest normalized
LINKS = {
    "sigmoid": lambda s, dim: torch.cat([1.0 - torch.sigmoid(s), torch.sigmoid(s)], dim),
    "softmax": lambda s, dim: torch.softmax(s, dim),
    "ovr": _ovr,
}


@dataclass
class FoldedHead:
    """A linear classifier chain folded into one 1x1 weight block per layer.

    Upsampling is linear, so the classifier's scores on upsampled hypercolumns
    equal the upsampled sum of per-layer 1x1 heads [1]_: each block scores one
    layer's native map, and only ``n_outputs`` score maps are upsampled. The
    fields are also the instance's attributes; :func:`fold_classifier` makes
    one from a fitted classifier and checks it against it.

    Parameters
    ----------
    blocks : list of ndarray of shape (num_chs, n_outputs)
        Weights per layer, in the order of ``feature_info``.
    bias : ndarray of shape (n_outputs,)
        The composed intercept of the chain, added once after the layers' scores
        are summed.
    classes : ndarray of shape (n_classes,)
        The classifier's ``classes_``: what the score indices of
        :meth:`labels` stand for.
    link : {"sigmoid", "softmax", "ovr"} or None
        How ``predict_proba`` follows from the scores; None when the chain
        has no ``predict_proba`` or it is not one of these links.
    location : ndarray of shape (2, n_outputs) or None, default=None
        Weights of the location columns ``(u, v)`` when the classifier takes
        them (``HypercolumnTransformer(append_location=True)``).

    Attributes
    ----------
    n_outputs : int
        Scores per pixel: 1 for a binary classifier, else ``n_classes``.

    See Also
    --------
    fold_classifier : Fold a fitted classifier into a ``FoldedHead``.
    HeadModule : The folded head as a ``torch.nn.Module``.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for
       object segmentation and fine-grained localization", CVPR 2015, sec. 3.1.

    Examples
    --------
    >>> import numpy as np, torch
    >>> head = FoldedHead([np.ones((2, 1)), np.ones((3, 1))], np.array([-1.0]),
    ...                   np.array([0, 1]), "sigmoid")
    >>> head.n_outputs
    1
    >>> scores = torch.tensor([[[-2.0, 0.5]]], dtype=torch.float64)  # (n_outputs, h, w)
    >>> head.labels(scores).tolist(), head.proba(scores)[1].round(decimals=3).tolist()
    ([[0, 1]], [[0.119, 0.622]])
    """

    blocks: list[np.ndarray]
    bias: np.ndarray
    classes: np.ndarray
    link: str | None
    location: np.ndarray | None = None

    @property
    def n_outputs(self) -> int:
        return self.bias.shape[0]

    def labels(self, scores: torch.Tensor) -> torch.Tensor:
        """Class indices from ``(n_outputs, ...)`` scores, as the chain's ``predict``.

        Parameters
        ----------
        scores : torch.Tensor of shape (n_outputs, ...)
            Folded scores, e.g. ``(n_outputs, height, width)`` for an image.

        Returns
        -------
        labels : torch.Tensor of shape (...)
            Indices into ``classes``: uint8 for one output (positive score: class
            1; an eighth of the memory of int64 indices on a huge image), else the
            int64 argmax over outputs.
        """
        if self.n_outputs == 1:
            return (scores[0] > 0).to(torch.uint8)
        return scores.argmax(0)

    def proba(self, scores: torch.Tensor) -> torch.Tensor:
        """``(n_classes, ...)`` probabilities from ``(n_outputs, ...)`` scores.

        Parameters
        ----------
        scores : torch.Tensor of shape (n_outputs, ...)
            Folded scores, e.g. ``(n_outputs, height, width)`` for an image.

        Returns
        -------
        proba : torch.Tensor of shape (n_classes, ...)
            The chain's ``predict_proba`` through ``link``, classes along the first
            axis.

        Raises
        ------
        NotFoldableError
            When the classifier's probabilities do not fold (``link`` is None).
        """
        if self.link is None:
            raise NotFoldableError("The classifier's predict_proba does not fold.")
        return LINKS[self.link](scores, 0)


def fold_classifier(
    classifier: Any, feature_info: Sequence[dict], *, n_probe: int = 64, random_state: int = 0
) -> FoldedHead:
    """Fold a fitted linear classifier (or Pipeline of affine steps ending in one).

    Upsampling is linear, so a linear classifier on upsampled hypercolumns
    equals the upsampled sum of per-layer 1x1 classifiers [1]_. The chain folds
    to per-layer 1x1 weights (``fold_chain``, ``split_by_layer``); the result is
    then checked on random probe inputs: its scores must equal
    ``decision_function``, its labels
    ``predict``, and the link (sigmoid, softmax or one-vs-rest normalized
    sigmoids) ``predict_proba``. Anything that does not hold raises
    :class:`NotFoldableError` (or leaves ``link=None`` for probabilities), so a
    folded head never silently differs from the classifier.

    Parameters
    ----------
    classifier : fitted estimator
        E.g. ``make_pipeline(StandardScaler(), PCA(32), LogisticRegression())``.
    feature_info : list of dict
        The layers (``num_chs`` each) of the hypercolumns the classifier takes;
        a last entry :data:`LOCATION` stands for the two location columns.
    n_probe : int, default=64
        Number of random probe inputs for the checks.
    random_state : int, default=0
        Seed of the random probe inputs, so that folding is reproducible.

    Returns
    -------
    FoldedHead
        The per-layer weight blocks, bias, classes, probability link and
        location weights, checked to reproduce the classifier.

    Raises
    ------
    NotFoldableError
        When the classifier is not a fitted chain of affine steps whose
        ``decision_function`` and ``predict`` the folded head reproduces.

    See Also
    --------
    fold_head : Folds any supported classifier (location grids included).

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for
       object segmentation and fine-grained localization", CVPR 2015, sec. 3.1.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.random((60, 5)), rng.integers(0, 3, 60)
    >>> head = fold_classifier(LogisticRegression().fit(X, y), [{"num_chs": 2}, {"num_chs": 3}])
    >>> [b.shape for b in head.blocks], head.link
    ([(2, 3), (3, 3)], 'softmax')
    """
    steps = _steps_of(classifier)
    final = steps[-1]
    classes = getattr(final, "classes_", None)
    if classes is None:
        raise NotFoldableError(f"{type(final).__name__} is not a fitted classifier.")
    A, b = fold_chain(steps)
    n_in = A.shape[0]
    rng = np.random.default_rng(random_state)
    X = rng.standard_normal((n_probe, n_in))
    if not hasattr(classifier, "decision_function"):
        raise NotFoldableError(f"{type(final).__name__} has no decision_function.")
    try:
        expected = np.asarray(classifier.decision_function(X), dtype=np.float64)
    except AttributeError as err:  # available_if on a pipeline step
        raise NotFoldableError(str(err)) from err
    got = X @ A + b
    expected = expected.reshape(got.shape) if expected.size == got.size else expected
    scale = max(1.0, float(np.abs(expected).max()))
    if expected.shape != got.shape or not np.allclose(got, expected, rtol=0, atol=1e-7 * scale):
        raise NotFoldableError(
            f"{type(final).__name__}'s decision_function is not the affine map of its coef_ "
            "and intercept_."
        )
    labels = classes[(got[:, 0] > 0).astype(int)] if got.shape[1] == 1 else classes[got.argmax(1)]
    if not np.array_equal(np.asarray(classifier.predict(X)), labels):
        raise NotFoldableError(f"{type(final).__name__}'s predict is not the argmax of its scores.")
    layers = [d for d in feature_info if d.get("kind") != LOCATION["kind"]]
    location = None
    if len(layers) < len(feature_info):  # the location columns (u, v) come last
        A, location = A[:-2], A[-2:]
    return FoldedHead(split_by_layer(A, layers), b, np.asarray(classes),
                      find_link(classifier, random_state=random_state), location)


def find_link(estimator: Any, X: Any = None, *, random_state: int = 0) -> str | None:
    """Which of :data:`LINKS` turns ``estimator``'s scores into its ``predict_proba``, if any.

    When the last step of ``estimator`` is affine (:func:`affine_of`), it is
    probed at inputs solved to give scores of order 1, where the links differ;
    otherwise at the rows of ``X`` (e.g. training rows). Returns None when no
    link reproduces ``predict_proba`` (or there is none).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression, SGDClassifier
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.random((60, 4)), rng.integers(0, 3, 60)
    >>> find_link(LogisticRegression().fit(X, y)), find_link(
    ...     SGDClassifier(loss="log_loss", random_state=0).fit(X, y))
    ('softmax', 'ovr')
    """
    final = _steps_of(estimator)[-1]
    if not (hasattr(estimator, "predict_proba") and hasattr(estimator, "decision_function")):
        return None
    n_classes = len(getattr(final, "classes_", ()))
    try:
        M, v = affine_of(final)
    except NotFoldableError:
        if X is None:
            return None
        model, probes = estimator, X
    else:
        rng = np.random.default_rng(random_state)
        S = rng.normal(0.0, 2.0, size=(64, M.shape[1]))
        model, probes = final, (S - v) @ np.linalg.pinv(M)
    try:
        s = np.asarray(model.decision_function(probes), dtype=np.float64)
        proba = np.asarray(model.predict_proba(probes), dtype=np.float64)
    except (AttributeError, NotImplementedError, ValueError):
        return None
    s = s.reshape(len(proba), -1)
    candidates = ["sigmoid"] if s.shape[1] == 1 and n_classes == 2 else ["softmax", "ovr"]
    for name in candidates:
        if np.allclose(LINKS[name](torch.from_numpy(s), 1).numpy(), proba, rtol=1e-5, atol=1e-7):
            return name
    return None


def project_maps(
    maps: dict[str, torch.Tensor] | Sequence[torch.Tensor], blocks: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Per-layer 1x1 scores: ``(c_l, h_l, w_l)`` maps times ``(c_l, k)`` -> ``(k, h_l, w_l)``
    (or batches ``(n, c_l, h_l, w_l)`` -> ``(n, k, h_l, w_l)``).

    Computed in the dtype of the blocks; channels-last maps need no copy, and a map of
    another dtype is converted a band of pixels at a time (each band's copy stays in cache).
    """
    tensors = list(maps.values()) if isinstance(maps, dict) else list(maps)
    out = []
    for m, w in zip(tensors, blocks):
        if m.dim() == 4:  # a batch (n, c, h, w), same dtype: the same product per pixel
            out.append((m.permute(0, 2, 3, 1) @ w).permute(0, 3, 1, 2))
            continue
        c, h, wd = m.shape
        flat = m.permute(1, 2, 0).reshape(h * wd, c)
        if m.dtype == w.dtype:
            scores = flat @ w
        else:
            scores = torch.empty((h * wd, w.shape[1]), dtype=w.dtype, device=m.device)
            step = max(1, _BAND_VALUES // c)
            for a in range(0, h * wd, step):
                torch.mm(flat[a:a + step].to(w.dtype), w, out=scores[a:a + step])
        out.append(scores.T.reshape(w.shape[1], h, wd))
    return out


def upsample_sum(
    scores: Sequence[torch.Tensor], bias: torch.Tensor, image_shape: tuple[int, int],
    canvases: Sequence[tuple[float, float] | None] | None = None,
) -> torch.Tensor:
    """``sum_l up(scores_l) + bias`` as ``(k, height, width)``.

    Each ``(k, h_l, w_l)`` score map is upsampled bilinearly as ``F.interpolate(mode="bilinear",
    align_corners=False)``, the convention of the hypercolumn itself
    (``gather_window``); 1x1 maps (vectors) are broadcast. A map with
    a canvas (``FeatureEngine.canvases``) is upsampled over it.
    """
    H, W = image_shape
    canvases = [None] * len(scores) if canvases is None else canvases
    dev = scores[0].device
    rows, cols = torch.arange(H, device=dev), torch.arange(W, device=dev)
    axes = [(None, None) if s.shape[1:] == (1, 1) else
            (bilinear_axis(rows, s.shape[1], H if c is None else c[0], dtype=s.dtype),
             bilinear_axis(cols, s.shape[2], W if c is None else c[1], dtype=s.dtype))
            for s, c in zip(scores, canvases)]
    return sum_window(scores, axes, bias.to(scores[0].dtype), (H, W))


def folded_scores(
    maps: dict[str, torch.Tensor] | Sequence[torch.Tensor],
    blocks: Sequence[torch.Tensor],
    bias: torch.Tensor,
    image_shape: tuple[int, int],
    canvases: Sequence[tuple[float, float] | None] | None = None,
) -> torch.Tensor:
    """Dense ``(n_outputs, height, width)`` scores: ``sum_l up(W_l^T f_l) + b``.

    ``maps`` are ``(c_l, h_l, w_l)`` native maps of one image, ``blocks`` the
    matching ``(c_l, n_outputs)`` weights. Equals the linear head applied to
    the dense hypercolumn (:func:`project_maps` then :func:`upsample_sum`).
    Computed in the dtype of ``bias`` (float64 keeps large scores exact to
    float32 rounding of the features). ``canvases``: as
    ``FeatureEngine.canvases(image_shape)`` for maps of images padded to whole patches.
    """
    dtype = bias.dtype if bias.dtype in (torch.float32, torch.float64) else torch.float32
    scores = project_maps(maps, [w.to(dtype) for w in blocks])
    return upsample_sum(scores, bias.to(dtype), image_shape, canvases)
