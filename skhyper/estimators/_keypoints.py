"""HypercolumnKeypointLocator: keypoints inside object boxes from location-specific heatmaps."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .._param_validation import HasMethods, Interval, ParamValidationMixin, StrOptions
from .._validation import CheckedImages, check_boxes, check_images
from ..heads import LINKS, fold_head, predict_dense
from ..heads._grid import stack_heads
from ..keypoints import (
    check_keypoints,
    clip_boxes,
    crop_frames,
    from_frame,
    heatmap_peaks,
    keypoint_targets,
    to_frame,
)
from ..metrics import inter_ocular_distance, pck
from ..sampling import PixelSet
from ._checks import VersionedMixin, check_classifier
from ._grid import GridLocationClassifier
from ._segmenter import default_classifier
from ._transformer import HypercolumnTransformer

__all__ = ["HypercolumnKeypointLocator"]

_LOCATOR_TOL = 1e-3


def _default_classifier() -> Any:
    """:func:`default_classifier` with its lbfgs logistic regression stopped at ``tol=1e-3``.

    The locator's problem (15 classes, ~1e5 pixels per grid cell) took ~150 lbfgs iterations
    per cell at sklearn's ``tol=1e-4`` and 43-90 at 1e-3, with PCK@0.1 0.709 vs 0.693 on the
    face dev set (``benchmarks/bench_fit.py``): the fit's classifier part is nearly all of it.
    """
    clf = default_classifier()
    final = clf.steps[-1][1] if isinstance(clf, Pipeline) else clf
    if isinstance(final, LogisticRegression) and final.solver == "lbfgs":
        final.set_params(tol=max(final.tol, _LOCATOR_TOL))
    return clf


class HypercolumnKeypointLocator(ParamValidationMixin, VersionedMixin, BaseEstimator):
    """Keypoints inside object boxes from hypercolumn heatmaps (Hariharan et al., sec. 5).

    Each box (e.g. a detection) is cropped and warped to a ``frame_size`` x ``frame_size``
    frame. Frame pixels within ``radius`` of a keypoint are its positives, pixels far from every
    keypoint are negatives. With ``strategy="multiclass"`` one classifier over a background class
    and the keypoints, with ``"per_keypoint"`` (the paper's) one binary classifier each; either
    way the classifier is made location-specific with a ``grid_size`` x ``grid_size``
    :class:`~skhyper.GridLocationClassifier` over the frame. Linear classifiers fold
    (:func:`skhyper.heads.fold_grid`): the heatmaps of all keypoints come from one pass of 1x1
    heads over each frame's native maps, never from the full hypercolumn. A keypoint's
    prediction is the peak of its heatmap (sub-pixel refined), mapped back to the image.

    Parameters
    ----------
    hypercolumns : HypercolumnTransformer, default=None
        The features of the frames; None uses ``HypercolumnTransformer()``. Cloned; its
        ``append_location`` is set to ``grid_size > 1`` (the frame is the location frame).
    classifier : estimator, default=None
        Classifier of the frame pixels (cloned per keypoint, per grid cell); None uses
        :func:`~skhyper.estimators.default_classifier` with its logistic regression's ``tol``
        at 1e-3: a third of the solver iterations of the default 1e-4, for the same keypoint
        accuracy.
    grid_size : int, default=3
        K of the K x K grid of location-specific classifiers; 1: one classifier per keypoint.
    radius : float, default=0.05
        Positives: pixels within ``radius * frame_size`` of a keypoint (nearest keypoint wins).
    frame_size : int, default=160
        Side of the warped frame in pixels; the heatmaps have this size.
    n_positives_per_keypoint : int or None, default=40
        Positive pixels drawn per keypoint and image (None: all within the radius).
    n_negatives_per_image : int, default=400
        Background pixels drawn per image.
    strategy : {"multiclass", "per_keypoint"}, default="multiclass"
        One classifier over background + keypoints (each pixel is one keypoint's or none), or
        one binary classifier per keypoint (the paper's). The multiclass classifier learns
        to tell nearby keypoints apart, is usually at least as accurate and fits in about half
        the time.
    refine : bool, default=True
        Sub-pixel refinement of the heatmap peaks.
    score_threshold : float, default=0.1
        ``score`` is PCK at this fraction of the normalizer.
    score_normalizer : "box" or (int, int), default="box"
        The PCK normalizer: the longer side of each box, or the distance between two keypoints
        of the true keypoints (e.g. the outer eye corners: the inter-ocular distance).
    random_state : int, RandomState instance or None, default=None
        Controls the pixel draw.
    n_jobs : int, default=None
        Grid cells fitted in parallel (joblib).

    Attributes
    ----------
    hypercolumns_ : HypercolumnTransformer
        The fitted feature transformer of the frames.
    estimators_ : list of estimator
        The fitted classifier of each keypoint (``per_keypoint``) or the one classifier.
    folded_ : FoldedHead or None
        All keypoints' heads stacked, or None when the classifier does not fold.
    n_keypoints_ : int
        Number of keypoints per image.
    n_features_in_ : int
        Length of the hypercolumns of the frame pixels the classifiers were fitted on
        (location columns included).
    prediction_path_ : {"folded", "chunked"}
        How the heatmaps are computed: folded 1x1 heads on the native maps, or the
        classifier on bands of full hypercolumns.

    See Also
    --------
    GridLocationClassifier : The location-specific classifiers.
    skhyper.keypoints.crop_frames : How the frames are cropped.
    skhyper.metrics.pck : The ``score``.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for object
       segmentation and fine-grained localization", CVPR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper import HypercolumnKeypointLocator, HypercolumnTransformer
    >>> rng = np.random.default_rng(0)
    >>> images = (rng.random((6, 48, 48, 3)) * 60).astype(np.uint8)
    >>> keypoints = rng.uniform(12, 36, (6, 2, 2))
    >>> for img, kp in zip(images, keypoints):  # a bright dot and a dark-ringed dot
    ...     x, y = kp[0].round().astype(int); img[y - 2:y + 3, x - 2:x + 3] = 255
    ...     x, y = kp[1].round().astype(int); img[y - 3:y + 4, x - 3:x + 4, 1] = 200
    >>> loc = HypercolumnKeypointLocator(
    ...     HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None,
    ...                            device="cpu"),
    ...     grid_size=1, frame_size=48, radius=0.05, random_state=0,
    ... ).fit(images, keypoints)
    >>> loc.predict(images).shape, loc.predict_heatmaps(images)[0].shape
    ((6, 2, 2), (2, 48, 48))
    >>> bool(loc.score(images, keypoints) > 0.8)
    True
    """

    _required_fitted = ("estimators_", "hypercolumns_", "n_keypoints_", "folded_")

    def _upgrade_state(self, state: dict[str, Any]) -> dict[str, Any]:
        ests = state.get("estimators_")
        if "n_keypoints_" not in state and ests:
            if state.get("strategy") == "per_keypoint":
                state["n_keypoints_"] = len(ests)
            elif hasattr(ests[0], "classes_"):
                state["n_keypoints_"] = len(ests[0].classes_) - 1  # background + keypoints
        return state

    _parameter_constraints: dict = {
        "hypercolumns": [HypercolumnTransformer, None],
        "classifier": [HasMethods(["fit", "predict"]), None],
        "grid_size": [Interval(Integral, 1, None, closed="left")],
        "radius": [Interval(Real, 0, 0.5, closed="neither")],
        "frame_size": [Interval(Integral, 8, None, closed="left")],
        "n_positives_per_keypoint": [Interval(Integral, 1, None, closed="left"), None],
        "n_negatives_per_image": [Interval(Integral, 1, None, closed="left")],
        "strategy": [StrOptions({"per_keypoint", "multiclass"})],
        "refine": ["boolean"],
        "score_threshold": [Interval(Real, 0, None, closed="neither")],
        "score_normalizer": [StrOptions({"box"}), tuple, list],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    }

    def __init__(  # noqa: PLR0913 (an estimator's settings are its constructor parameters)
        self,
        hypercolumns: HypercolumnTransformer | None = None,
        classifier: Any = None,
        *,
        grid_size: int = 3,
        radius: float = 0.05,
        frame_size: int = 160,
        n_positives_per_keypoint: int | None = 40,
        n_negatives_per_image: int = 400,
        strategy: str = "multiclass",
        refine: bool = True,
        score_threshold: float = 0.1,
        score_normalizer: Any = "box",
        random_state: Any = None,
        n_jobs: int | None = None,
    ) -> None:
        self.hypercolumns = hypercolumns
        self.classifier = classifier
        self.grid_size = grid_size
        self.radius = radius
        self.frame_size = frame_size
        self.n_positives_per_keypoint = n_positives_per_keypoint
        self.n_negatives_per_image = n_negatives_per_image
        self.strategy = strategy
        self.refine = refine
        self.score_threshold = score_threshold
        self.score_normalizer = score_normalizer
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- frames ---------------------------------------------------------------------------

    def _frames(self, hc: HypercolumnTransformer, checked: list,
                boxes: Any) -> tuple[list, np.ndarray]:
        """Frames of ``boxes`` (clipped to the checked images), float32 in [0, 1] with the
        image's channels read by ``hc``'s channel strategy and intensity range."""
        shapes = [img.shape[:2] for img in checked]
        boxes = check_boxes(boxes, checked)
        if boxes is None:
            boxes = np.array([[0, 0, w, h] for h, w in shapes], dtype=np.float64)
        boxes = clip_boxes(boxes, shapes)
        engine = hc.engine_
        frames = crop_frames(checked, boxes, self.frame_size, engine.n_channels,
                             intensity_range=engine.intensity_range)
        return CheckedImages(frames), boxes  # made here: float32 in [0, 1], finite

    @staticmethod
    def _frame_engine(hc: HypercolumnTransformer) -> Any:
        """The engine for frames: already read into [0, 1] (no intensity range), new arrays
        on every call (no cache)."""
        return hc.engine_.replace(cache=None, intensity_range=None)

    def _classifier(self) -> Any:
        clf = clone(self.classifier) if self.classifier is not None else _default_classifier()
        if self.grid_size > 1:
            clf = GridLocationClassifier(clf, grid_size=self.grid_size, n_jobs=self.n_jobs)
        return clf

    # -- fit ------------------------------------------------------------------------------

    def fit(self, images: Any, keypoints: Any, boxes: Any = None) -> HypercolumnKeypointLocator:
        """Fit the keypoint classifiers on the frames of ``boxes``.

        Parameters
        ----------
        images : ndarray or list of ndarray
            ``(height, width[, channels])`` images (any sizes) or a stack of them.
        keypoints : array-like of shape (n_images, n_keypoints, 2)
            ``(x, y)`` pixel coordinates; NaN for a keypoint that is not annotated (it is then
            neither a positive nor excluded from the negatives of that image).
        boxes : array-like of shape (n_images, 4), default=None
            ``(x0, y0, x1, y1)`` object boxes; None: whole images. Boxes reaching outside
            their image are clipped to it (with a warning).

        Returns
        -------
        self : HypercolumnKeypointLocator
            The fitted locator.

        Raises
        ------
        ValueError
            If a keypoint is annotated in no image, or lies outside every frame.
        """
        self._validate_params()
        if self.classifier is not None:
            check_classifier(self.classifier)
        self._check_normalizer(None)
        hc = clone(self.hypercolumns) if self.hypercolumns is not None else (
            HypercolumnTransformer()
        )
        hc.set_params(append_location=self.grid_size > 1)
        checked, _ = check_images(images, param="images", n_channels=None)
        hc.fit_images(checked, param="images")  # channel strategies learn the channel count
        checked = hc.engine_.check_images(checked, param="images")
        kp = check_keypoints(keypoints, len(checked))
        missing = np.flatnonzero(np.isnan(kp).any(axis=2).all(axis=0))
        if missing.size:
            raise ValueError(
                f"The 'keypoints' parameter has keypoints annotated in no image (indices "
                f"{missing.tolist()}); every keypoint needs examples to be learnt."
            )
        frames, boxes = self._frames(hc, checked, boxes)
        fk = to_frame(kp, boxes, self.frame_size)
        rng = np.random.default_rng(
            self.random_state if not isinstance(self.random_state, np.random.RandomState)
            else self.random_state.randint(2**31))
        coords, labels = [], []
        for i, pts in enumerate(fk):
            rc, y = keypoint_targets(pts, self.frame_size, self.radius * self.frame_size,
                                     n_positives=self.n_positives_per_keypoint,
                                     n_negatives=self.n_negatives_per_image, rng=rng)
            coords.append(np.column_stack([np.full(rc.shape[1], i), rc.T]))
            labels.append(y)
        X = self._frame_engine(hc).sample(PixelSet(frames, np.concatenate(coords)))
        y = np.concatenate(labels)
        n_kp = kp.shape[1]
        unseen = np.setdiff1d(np.arange(1, n_kp + 1), y) - 1
        if unseen.size:
            raise ValueError(
                f"The 'keypoints' parameter has keypoints {unseen.tolist()} that lie outside "
                "every frame (their image or box), so no frame pixel is a positive of them and "
                "they cannot be learnt. Check their (x, y) order and the boxes, or pass boxes "
                "that contain them."
            )
        if self.strategy == "multiclass":
            self.estimators_ = [self._classifier().fit(X, y)]
        else:
            self.estimators_ = [self._classifier().fit(X, (y == j + 1).astype(int))
                                for j in range(n_kp)]
        self.hypercolumns_ = hc
        self.n_keypoints_ = n_kp
        self.n_features_in_ = X.shape[1]
        self.folded_ = self._fold()
        self.prediction_path_ = "folded" if self.folded_ is not None else "chunked"
        return self

    def _fold(self) -> Any:
        heads = [fold_head(est, self.hypercolumns_.engine_.blocks) for est in self.estimators_]
        if any(h is None for h in heads):
            return None
        return heads[0] if self.strategy == "multiclass" else stack_heads(heads)

    # -- predict --------------------------------------------------------------------------

    def _scores(self, frames: list) -> list[np.ndarray]:
        """Per frame ``(n_keypoints, S, S)`` log-probabilities (or scores) of the keypoints."""
        engine = self._frame_engine(self.hypercolumns_)
        if self.folded_ is not None:
            raw = predict_dense(engine, frames, head=self.folded_,
                                output="decision_function")
            out = []
            for r in raw:
                s = np.asarray(r, dtype=np.float64).reshape(self.frame_size, self.frame_size, -1)
                s = np.moveaxis(s, -1, 0)
                if self.strategy == "multiclass":
                    link = self.folded_.link
                    if link is None:
                        out.append(s[1:] if s.shape[0] > 1 else s)
                        continue
                    p = LINKS[link](torch.from_numpy(s), 0).numpy()
                    out.append(np.log(np.maximum(p[1:], 1e-300)))
                else:
                    out.append(-np.logaddexp(0, -s))  # log-sigmoid of each keypoint's score
            return out
        per_est = []
        for est in self.estimators_:
            method = "predict_proba" if hasattr(est, "predict_proba") else "decision_function"
            per_est.append(predict_dense(engine, frames, classifier=est, output=method))
        out = []
        for i in range(len(frames)):
            if self.strategy == "multiclass":
                r = np.moveaxis(np.asarray(per_est[0][i], dtype=np.float64), -1, 0)
                out.append(np.log(np.maximum(r[1:], 1e-300)))
            else:
                maps = [np.asarray(res[i], dtype=np.float64) for res in per_est]
                maps = [m[..., 1] if m.ndim == 3 else m for m in maps]
                out.append(np.log(np.maximum(np.stack(maps), 1e-300)))
        return out

    def predict_heatmaps(self, images: Any, boxes: Any = None) -> list[np.ndarray]:
        """Per image, ``(n_keypoints, frame_size, frame_size)`` keypoint probabilities.

        Heatmap ``j`` is the probability that a frame pixel lies within ``radius`` of keypoint
        ``j`` (the sigmoid of its classifier's score, or the class probability of the
        multiclass classifier); for classifiers without probabilities, their scores. Frame
        pixel ``(r, c)`` lies at :func:`skhyper.keypoints.from_frame` of ``(c, r)`` in the image.

        Parameters
        ----------
        images : ndarray or list of ndarray
            ``(height, width[, channels])`` images (any sizes) or a stack of them.
        boxes : array-like of shape (n_images, 4), default=None
            ``(x0, y0, x1, y1)`` object box of each image (e.g. detections); None: whole
            images. Boxes reaching outside their image are clipped to it (with a warning).

        Returns
        -------
        heatmaps : list of ndarray
            One float32 ``(n_keypoints, frame_size, frame_size)`` array per image.
        """
        check_is_fitted(self)
        checked = self.hypercolumns_.engine_.check_images(images, param="images")
        frames, _ = self._frames(self.hypercolumns_, checked, boxes)
        return [np.exp(s).astype(np.float32) for s in self._scores(frames)]

    def predict(self, images: Any, boxes: Any = None) -> np.ndarray:
        """Predicted keypoints of every image, in image pixel coordinates.

        A keypoint is the peak of its heatmap (:meth:`predict_heatmaps`), refined to a
        sub-pixel position with ``refine``, mapped from the frame back to the image.

        Parameters
        ----------
        images : ndarray or list of ndarray
            ``(height, width[, channels])`` images (any sizes) or a stack of them.
        boxes : array-like of shape (n_images, 4), default=None
            ``(x0, y0, x1, y1)`` object box of each image (e.g. detections); None: whole
            images. Boxes reaching outside their image are clipped to it (with a warning).

        Returns
        -------
        keypoints : ndarray of shape (n_images, n_keypoints, 2)
            ``(x, y)`` of each keypoint of each image.
        """
        check_is_fitted(self)
        checked = self.hypercolumns_.engine_.check_images(images, param="images")
        frames, boxes = self._frames(self.hypercolumns_, checked, boxes)
        peaks = np.stack([heatmap_peaks(s, refine=self.refine) for s in self._scores(frames)])
        return from_frame(peaks, boxes, self.frame_size)

    def _check_normalizer(self, keypoints: np.ndarray | None) -> None:
        norm = self.score_normalizer
        if isinstance(norm, str):
            return
        if (len(norm) != 2 or not all(isinstance(i, Integral) for i in norm)
                or (keypoints is not None
                    and not all(-keypoints.shape[1] <= i < keypoints.shape[1] for i in norm))):
            raise ValueError(
                "The 'score_normalizer' parameter must be 'box' or a pair of keypoint indices "
                f"(e.g. the outer eye corners); got {norm!r}."
            )

    def score(self, images: Any, keypoints: Any, boxes: Any = None) -> float:
        """PCK at ``score_threshold`` of the normalizer (:func:`skhyper.metrics.pck`).

        Keypoints given as NaN are not scored.

        Parameters
        ----------
        images : ndarray or list of ndarray
            ``(height, width[, channels])`` images (any sizes) or a stack of them.
        keypoints : array-like of shape (n_images, n_keypoints, 2)
            The true ``(x, y)`` of each keypoint; NaN for one that is not annotated.
        boxes : array-like of shape (n_images, 4), default=None
            ``(x0, y0, x1, y1)`` object box of each image; None: whole images.

        Returns
        -------
        score : float
            The fraction of annotated keypoints predicted within ``score_threshold`` times
            the normalizer of their true position, in ``[0, 1]``.

        Raises
        ------
        ValueError
            If ``keypoints`` has another number of keypoints than the model was fitted on.
        """
        check_is_fitted(self)
        checked = self.hypercolumns_.engine_.check_images(images, param="images")
        kp = check_keypoints(keypoints, len(checked))
        if kp.shape[1] != self.n_keypoints_:
            raise ValueError(
                f"The 'keypoints' parameter has {kp.shape[1]} keypoints per image; the model "
                f"was fitted on {self.n_keypoints_}. Pass all {self.n_keypoints_} (NaN for "
                "those not annotated)."
            )
        self._check_normalizer(kp)
        pred = self.predict(checked, boxes)
        if isinstance(self.score_normalizer, str):
            shapes = [img.shape[:2] for img in checked]
            b = check_boxes(boxes, checked)
            if b is None:
                b = np.array([[0, 0, w, h] for h, w in shapes], dtype=np.float64)
            norm = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
        else:
            left, right = self.score_normalizer
            norm = inter_ocular_distance(kp, left=left, right=right)
        return pck(kp, pred, threshold=self.score_threshold, normalizer=norm)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # images and keypoints, not a table
        tags.non_deterministic = False
        return tags
