"""GridLocationClassifier: one classifier per cell of a K x K grid over the object frame."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_is_fitted, has_fit_parameter, validate_data

from .._param_validation import HasMethods, Interval, ParamValidationMixin, StrOptions
from ..heads import LINKS
from ..heads._folding import find_link
from ..location import cell_weights, check_locations
from ._checks import VersionedMixin, check_classifier

__all__ = ["GridLocationClassifier"]


def _estimator_has(method: str):
    def check(self: GridLocationClassifier) -> bool:
        if not hasattr(self.estimator, method):
            return False
        if method == "predict_proba" and hasattr(self, "link_") and self.grid_size > 1:
            # probabilities follow from the blended scores through the cells' link,
            # or are blended themselves for estimators without scores
            return self.link_ is not None or not hasattr(self.estimator, "decision_function")
        return True

    return check


def _fit_cell(estimator: Any, X: np.ndarray, y: np.ndarray, weight: np.ndarray | None) -> Any:
    est = clone(estimator)
    if weight is None:
        return est.fit(X, y)
    if isinstance(est, Pipeline):
        return est.fit(X, y, **{f"{est.steps[-1][0]}__sample_weight": weight})
    return est.fit(X, y, sample_weight=weight)


def _takes_sample_weight(estimator: Any) -> bool:
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    return final not in (None, "passthrough") and has_fit_parameter(final, "sample_weight")


class GridLocationClassifier(
    ParamValidationMixin, VersionedMixin, MetaEstimatorMixin, ClassifierMixin, BaseEstimator
):
    """Location-specific classifiers on a K x K grid over the object frame, blended bilinearly.

    Hariharan et al. (CVPR 2015, sec. 3.3): what a pixel's features mean
    depends on where it lies in the object (a leg is below, a head above), so
    the frame is divided into ``grid_size x grid_size`` cells with one
    classifier each, and a pixel's score is the bilinear interpolation of the
    scores of the classifiers at the (up to 4) nearest cell centres, clamped
    beyond the outermost centres.

    ``X`` is a 2-D array whose ``location_columns`` hold each pixel's
    normalized position ``(u, v)`` in ``[0, 1]`` within its frame (``u``
    across, ``v`` down), as appended by
    ``HypercolumnTransformer(append_location=True)``. They are stripped: the
    cells' estimators see the other columns only.

    Training pixels (``assignment``):

    * ``"bilinear"`` (default): a cell is fitted on every pixel it has a
      bilinear weight on at prediction time (its support, up to 2 x 2 cells
      around it), with those weights as ``sample_weight`` of the last step
      when it takes one (unweighted otherwise). Neighbouring cells share
      pixels, so their classifiers agree where they are blended.
    * ``"cell"``: a cell is fitted on the pixels inside it only.

    A cell with fewer than ``min_samples_cell`` pixels, or without pixels of
    every class, uses the *global* estimator instead, fitted on all pixels
    (``global_estimator_``; ``fallback_`` marks those cells). With
    ``grid_size=1`` the single cell is the global estimator, fitted exactly
    like ``clone(estimator).fit(X_without_locations, y)``.

    Prediction: ``decision_function`` blends the cells' scores; ``predict``
    thresholds / takes the argmax of the blended scores; ``predict_proba`` is
    the cells' link (sigmoid, softmax or normalized one-vs-rest sigmoids,
    found at fit, ``link_``) applied to the blended scores, as in the paper,
    so that the three always agree. For estimators without
    ``decision_function`` (e.g. random forests) the cells' probabilities are
    blended and ``predict`` is their argmax.

    Parameters
    ----------
    estimator : classifier
        Cloned for every cell, e.g. ``make_pipeline(StandardScaler(), PCA(64),
        SGDClassifier(loss="log_loss"))``.
    grid_size : int, default=5
        K: the frame is divided into K x K cells (K=1 is the plain estimator).
    location_columns : tuple of two int, default=(-2, -1)
        Columns of ``X`` holding ``u`` and ``v``.
    assignment : {"bilinear", "cell"}, default="bilinear"
        Which pixels train each cell, see above.
    min_samples_cell : int, default=20
        Cells with fewer training pixels use the global estimator.
    clip_locations : bool, default=False
        Clip locations to ``[0, 1]`` (pixels outside the frame take the border
        cells) instead of raising a ValueError; values outside usually mean
        that pixel coordinates were passed instead of normalized positions.
    n_jobs : int, default=None
        Cells fitted in parallel (joblib).

    Attributes
    ----------
    estimators_ : list of estimator
        The K*K fitted cell estimators, row-major (cell ``i * K + j`` covers
        ``v`` in row ``i``, ``u`` in column ``j``); fallback cells hold
        ``global_estimator_`` itself.
    global_estimator_ : estimator or None
        The estimator fitted on all pixels, when some cell falls back to it.
    fallback_ : ndarray of bool, shape (K, K)
        Cells that use the global estimator.
    n_samples_cell_ : ndarray of int, shape (K, K)
        Training pixels of each cell.
    classes_ : ndarray of shape (n_classes,)
        The class labels seen in ``fit``, in the order of the columns of the scores and
        probabilities.
    link_ : {"sigmoid", "softmax", "ovr"} or None
        How probabilities follow from scores.
    location_columns_ : tuple of int
        ``location_columns`` as non-negative indices.
    n_features_in_ : int
        Columns of ``X`` including the location columns.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the columns of ``X``, defined only when ``X`` has string column names
        (a pandas DataFrame).

    See Also
    --------
    HypercolumnSegmenter : Takes this classifier as ``classifier`` and folds it for dense
        prediction.
    skhyper.location.cell_weights : The cells and bilinear weights of a location.
    skhyper.plotting.plot_grid_cells : Draw the fitted cells.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for object
       segmentation and fine-grained localization", CVPR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> feats, uv = rng.normal(size=(600, 3)), rng.random((600, 2))
    >>> y = ((feats[:, 0] > 0) == (uv[:, 0] > 0.5)).astype(int)  # meaning flips with u
    >>> X = np.hstack([feats, uv])
    >>> grid = GridLocationClassifier(LogisticRegression(), grid_size=2).fit(X, y)
    >>> glob = GridLocationClassifier(LogisticRegression(), grid_size=1).fit(X, y)
    >>> bool(grid.score(X, y) > 0.8 > glob.score(X, y))
    True
    >>> grid.predict_proba(X[:2]).shape, grid.link_
    ((2, 2), 'sigmoid')
    """

    _required_fitted = ("estimators_", "classes_", "location_columns_")

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict"])],
        "grid_size": [Interval(Integral, 1, None, closed="left")],
        "location_columns": [tuple, list],
        "assignment": [StrOptions({"bilinear", "cell"})],
        "min_samples_cell": [Interval(Integral, 1, None, closed="left")],
        "clip_locations": ["boolean"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        estimator: Any,
        grid_size: int = 5,
        *,
        location_columns: tuple[int, int] = (-2, -1),
        assignment: str = "bilinear",
        min_samples_cell: int = 20,
        clip_locations: bool = False,
        n_jobs: int | None = None,
    ) -> None:
        self.estimator = estimator
        self.grid_size = grid_size
        self.location_columns = location_columns
        self.assignment = assignment
        self.min_samples_cell = min_samples_cell
        self.clip_locations = clip_locations
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any) -> GridLocationClassifier:
        """Fit one clone of ``estimator`` per cell (and a global one if a cell needs it).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features with the two location columns.
        y : array-like of shape (n_samples,)
            The class of each sample; at least two classes.

        Returns
        -------
        self : GridLocationClassifier
            The fitted classifier.

        Raises
        ------
        ValueError
            If ``y`` holds a single class, or the location columns are missing or hold
            values outside ``[0, 1]`` (unless ``clip_locations``).
        """
        self._validate_params()
        check_classifier(self.estimator, "estimator")
        X, y = _validated(self, X, y)
        check_classification_targets(y)
        if len(np.unique(y)) < 2:
            raise ValueError(
                f"The 'y' parameter must hold at least two classes; got only class "
                f"{np.unique(y).tolist()}. A classifier can't train when only one class is "
                "present."
            )
        self.location_columns_ = self._resolve_columns(X.shape[1])
        feats, loc = self._split(X)
        self.classes_ = np.unique(y)
        K = self.grid_size
        cells, weights = cell_weights(loc, K)
        if self.assignment == "cell":
            own = np.minimum((loc * K).astype(np.int64), K - 1)
            members = [np.flatnonzero(own[:, 1] * K + own[:, 0] == c) for c in range(K * K)]
            cell_w = [None] * (K * K)
        else:
            members, cell_w = [], []
            weighted = K > 1 and _takes_sample_weight(self.estimator)
            for c in range(K * K):
                w = np.where(cells == c, weights, 0.0).sum(1)
                sel = np.flatnonzero(w > 0)
                members.append(sel)
                cell_w.append(w[sel] if weighted and not np.all(w[sel] == 1.0) else None)
        n_classes = len(self.classes_)
        ok = [
            len(sel) >= self.min_samples_cell and len(np.unique(y[sel])) == n_classes
            for sel in members
        ]
        jobs = [c for c in range(K * K) if ok[c]]
        fitted = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_cell)(self.estimator, feats[members[c]], y[members[c]], cell_w[c])
            for c in jobs
        )
        self.global_estimator_ = None
        if not all(ok):
            self.global_estimator_ = _fit_cell(self.estimator, feats, y, None)
        by_cell = dict(zip(jobs, fitted))
        self.estimators_ = [by_cell.get(c, self.global_estimator_) for c in range(K * K)]
        self.fallback_ = ~np.asarray(ok).reshape(K, K)
        self.n_samples_cell_ = np.array([len(m) for m in members]).reshape(K, K)
        self.link_ = None
        if hasattr(self.estimator, "decision_function"):
            links = {find_link(est, feats[:256]) for est in dict.fromkeys(self.estimators_)}
            self.link_ = links.pop() if len(links) == 1 else None
        return self

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        """Bilinear blend of the cells' ``decision_function`` at each sample's location.

        Returns
        -------
        ndarray of shape (n_samples,) for two classes, else (n_samples, n_classes)
        """
        return self._blend(X, "decision_function")

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities: the link of the blended scores (or blended probabilities)."""
        check_is_fitted(self)
        if self.link_ is None or self.grid_size == 1:
            return self._blend(X, "predict_proba")
        import torch

        scores = self._blend(X, "decision_function").reshape(len(X), -1)
        return LINKS[self.link_](torch.from_numpy(scores), 1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Class labels from the blended scores (or probabilities).

        The label is the sign (two classes) or the argmax of the blended
        :meth:`decision_function`, so that it agrees with the probabilities; for estimators
        without scores, the argmax of the blended probabilities. With ``grid_size=1``, the
        estimator's own ``predict``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features with the two location columns, as in ``fit``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The predicted class of each sample, one of ``classes_``.
        """
        if self.grid_size == 1:
            return self._blend(X, "predict")
        if hasattr(self.estimator, "decision_function"):
            scores = self._blend(X, "decision_function")
            idx = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(1)
        else:
            idx = self._blend(X, "predict_proba").argmax(1)
        return self.classes_[idx]

    def _resolve_columns(self, n_features: int) -> tuple[int, int]:
        cols = self.location_columns
        if (len(cols) != 2 or not all(isinstance(c, Integral) for c in cols)):
            raise ValueError(
                "The 'location_columns' parameter must be two column indices (u, v); got "
                f"{cols!r}."
            )
        if n_features < 3:
            raise ValueError(
                f"X has {n_features} feature(s), but GridLocationClassifier needs the two "
                f"location columns {tuple(cols)} and at least one feature besides them."
            )
        bad = [c for c in cols if not -n_features <= c < n_features]
        resolved = tuple(int(c) % n_features for c in cols)
        if bad or resolved[0] == resolved[1]:
            raise ValueError(
                f"The 'location_columns' parameter {tuple(cols)} must name two distinct columns "
                f"of X, which has {n_features} features."
            )
        return resolved

    def _split(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cols = list(self.location_columns_)
        loc = check_locations(X[:, cols], clip=self.clip_locations, columns=self.location_columns)
        return np.delete(X, cols, axis=1), loc

    def _blend(self, X: Any, method: str) -> np.ndarray:
        check_is_fitted(self)
        X = _validated(self, X, reset=False)
        feats, loc = self._split(X)
        if self.grid_size == 1:  # one cell, weight 1: the plain estimator
            return getattr(self.estimators_[0], method)(feats)
        cells, weights = cell_weights(loc, self.grid_size)
        out = None
        # one call per distinct estimator, on the samples it has weight on
        for est in dict.fromkeys(self.estimators_):
            ids = [c for c, e in enumerate(self.estimators_) if e is est]
            w = np.where(np.isin(cells, ids), weights, 0.0).sum(1)
            sel = np.flatnonzero(w > 0)
            if len(sel) == 0:
                continue
            values = np.asarray(getattr(est, method)(feats[sel]), dtype=np.float64)
            if out is None:
                out = np.zeros((len(X), *values.shape[1:]))
            out[sel] += w[sel].reshape(-1, *[1] * (values.ndim - 1)) * values
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


_NO_Y = object()


def _validated(est: GridLocationClassifier, X: Any, y: Any = _NO_Y, reset: bool = True) -> Any:
    """scikit-learn's ``validate_data``, its messages prefixed with the parameter they concern."""
    try:
        if y is _NO_Y:
            return validate_data(est, X, reset=reset)
        return validate_data(est, X, y, reset=reset)
    except ValueError as err:
        text = str(err)
        param = "'y' parameter" if y is not _NO_Y and " y " in f" {text} " else "'X' parameter"
        raise ValueError(f"The {param} of GridLocationClassifier: {text}") from err
