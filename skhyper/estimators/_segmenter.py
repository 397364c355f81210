"""HypercolumnSegmenter: images + masks in, label maps out."""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .._param_validation import HasMethods, Interval, ParamValidationMixin, StrOptions
from .._validation import check_boxes, check_images, check_masks
from ..heads import UPSAMPLINGS, fold_head, predict_dense
from ..metrics import mean_iou
from ..sampling import sample_pixels
from ._checks import VersionedMixin, checked_clone, classes_of
from ._grid import GridLocationClassifier
from ._transformer import HypercolumnTransformer

__all__ = ["HypercolumnSegmenter", "default_classifier", "default_hypercolumns"]


def default_classifier() -> Any:
    """The classifier used when ``classifier=None``: a foldable linear chain.

    ``StandardScaler -> LogisticRegression(C=0.01, tol=3e-4)``: strongly regularized logistic
    regression on standardized hypercolumns. Hypercolumns have hundreds to thousands of
    strongly correlated columns, so a strong penalty generalizes better than a weak one, and
    the result is insensitive to ``C`` within a decade around 0.01. ``tol=3e-4`` stops lbfgs
    after about 2/3 of the iterations of scikit-learn's default at the same accuracy; a
    looser tolerance loses accuracy on dim images. Being a linear chain, it folds into
    per-layer 1x1 heads for dense prediction.

    Returns
    -------
    classifier : Pipeline
        A new, unfitted ``StandardScaler`` -> ``LogisticRegression`` pipeline.

    See Also
    --------
    default_hypercolumns : The features used when ``hypercolumns=None``.

    Examples
    --------
    >>> default_classifier()
    Pipeline(steps=[('standardscaler', StandardScaler()),
                    ('logisticregression',
                     LogisticRegression(C=0.01, max_iter=1000, tol=0.0003))])
    """
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=1000, tol=3e-4))


def default_hypercolumns() -> HypercolumnTransformer:
    """The features used when ``hypercolumns=None``: ``HypercolumnTransformer(scales="auto")``.

    EfficientNet-Lite0's five stages, with small images fed up to 2x larger
    (:func:`skhyper.features.auto_scales`): on images of a few hundred pixels the larger
    input gives the coarse layers more cells per object, which sharpens boundaries markedly,
    for about 4x the forward cost.

    Returns
    -------
    hypercolumns : HypercolumnTransformer
        A new, unfitted transformer (pretrained weights are loaded when it is fitted).

    See Also
    --------
    default_classifier : The classifier used when ``classifier=None``.

    Examples
    --------
    >>> default_hypercolumns()
    HypercolumnTransformer(scales='auto')
    """
    return HypercolumnTransformer(scales="auto")


def _has(method: str):
    def check(self: HypercolumnSegmenter) -> bool:
        clf = self.classifier_ if hasattr(self, "classifier_") else self.classifier
        clf = clf if clf is not None else default_classifier()
        return hasattr(clf, method)

    return check


class HypercolumnSegmenter(ParamValidationMixin, VersionedMixin, BaseEstimator):
    """Pixel labelling with hypercolumns: fit on images and masks, predict label maps.

    ``fit`` draws labelled pixels from every image (:func:`skhyper.sample_pixels`),
    computes their hypercolumns and fits ``classifier`` on them. Prediction is
    dense: when ``classifier`` is a chain of linear steps (``StandardScaler``,
    ``PCA``, any linear model with ``coef_``/``intercept_``, one-vs-rest too)
    it is folded into per-layer 1x1 heads and applied to the native maps, so
    only the class score maps are ever upsampled (Hariharan et al. 2015, sec.
    3.1); any other classifier predicts on the hypercolumns in bands of
    ``chunk_pixels`` pixels. Both give the same result as
    ``classifier.predict`` on the full hypercolumn of every pixel.

    With ``HypercolumnTransformer(append_location=True)`` the classifier also
    sees each pixel's location in its frame (``boxes=`` in ``fit`` /
    ``predict``, by default the whole image); a
    :class:`~skhyper.GridLocationClassifier` of linear chains folds too
    (:func:`skhyper.heads.fold_grid`).

    Parameters
    ----------
    hypercolumns : HypercolumnTransformer, default=None
        The features (backbone, ``layers``, device, ``image_size``,
        ``tile_size``, ``cache``, ``channel_strategy`` and ``intensity_range``
        for microscopy...). None uses ``HypercolumnTransformer()``. Cloned in
        ``fit`` (a channel strategy learns the channel count from ``images``);
        search over it as ``hypercolumns__layers``.
    classifier : estimator, default=None
        A scikit-learn classifier or pipeline taking hypercolumns. None uses
        :func:`default_classifier`. Cloned in ``fit``.
    n_pixels_per_image : int or None, default=1000
        Training pixels drawn per image; None takes every labelled pixel.
    min_pixels_per_class : int or None, default=1000
        Every class of the masks gets at least this many training pixels (or
        all it has), drawn from any image after the per-image draw, so that a
        class covering few pixels is learnt, not left out
        (:func:`skhyper.sample_pixels`, ``min_per_class``). None: no minimum.
        Classes with more pixels drawn are not touched (figure-ground masks
        never are); with many small classes (clothing parts, say) a larger
        minimum lifts their mean IoU.
    class_balance : bool, default=False
        If True, draw the same number of pixels per class in each image (as
        far as it has them), so that small objects are not drowned by
        background; False draws uniformly over labelled pixels, matching the
        class frequencies that IoU is measured on.
    boundary_fraction : float in [0, 1], default=0.0
        Share of each image's training pixels drawn from within
        ``boundary_width`` pixels of a boundary between classes, where masks
        bleed (:func:`skhyper.sample_pixels`).
    boundary_width : int, default=3
        Half-width in pixels of that boundary band.
    ignore_label : int, default=None
        Mask value of unlabelled pixels (scribbles): never drawn, not scored.
    random_state : int, RandomState instance or None, default=None
        Controls the pixel draw.
    batch_size : int, default=None
        Images per forward pass; None keeps ``hypercolumns.batch_size``.
    chunk_pixels : int, default=65536
        Pixels per band for classifiers that cannot fold.
    upsampling : {"edge_aware", "bilinear"}, default="edge_aware"
        How a folded head's coarse score maps reach the pixels. ``"edge_aware"`` upsamples
        the score maps of coarse layers (stride 8 and more) by joint bilateral upsampling
        guided by the image (:class:`skhyper.heads.EdgeKernel`), so that label boundaries
        follow the image's edges instead of the blur of the coarse cells;
        ``"bilinear"`` is the hypercolumn's own interpolation, exactly equal to the
        classifier on full hypercolumns. Classifiers that do not fold always see bilinear
        hypercolumns.

    Attributes
    ----------
    hypercolumns_ : HypercolumnTransformer
        The fitted feature transformer.
    classifier_ : estimator
        The fitted classifier.
    classes_ : ndarray of shape (n_classes,)
        Labels found in the masks (without ``ignore_label``).
    folded_ : FoldedHead or None
        The classifier folded to per-layer 1x1 weights, when it folds.
    prediction_path_ : {"folded", "chunked"}
        How dense prediction runs.

    See Also
    --------
    HypercolumnTransformer : The features, per pixel or dense.
    GridLocationClassifier : Location-specific classifiers on a K x K grid.
    skhyper.heads.fold_head : the folding and its checks.
    skhyper.metrics.mean_iou : the ``score``.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for object
       segmentation and fine-grained localization", CVPR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper import HypercolumnSegmenter, HypercolumnTransformer
    >>> rng = np.random.default_rng(0)
    >>> images = rng.random((4, 40, 52, 3)).astype(np.float32) * 0.3
    >>> masks = np.zeros((4, 40, 52), dtype=int)
    >>> masks[:, 10:30, 15:40] = 1  # a bright box on a dark background
    >>> images[masks == 1] += 0.6
    >>> seg = HypercolumnSegmenter(
    ...     HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None,
    ...                            device="cpu"),
    ...     n_pixels_per_image=200, random_state=0,
    ... ).fit(images, masks)
    >>> seg.prediction_path_, seg.predict(images).shape
    ('folded', (4, 40, 52))
    >>> seg.predict_proba(images[0]).shape
    (40, 52, 2)
    >>> bool(seg.score(images, masks) > 0.8)
    True
    """

    _required_fitted = ("hypercolumns_", "classifier_", "classes_", "folded_")

    def _upgrade_state(self, state: dict[str, Any]) -> dict[str, Any]:
        clf = state.get("classifier_")
        if "classes_" not in state and hasattr(clf, "classes_"):
            state["classes_"] = np.asarray(clf.classes_)
        if "prediction_path_" not in state and "folded_" in state:
            state["prediction_path_"] = "folded" if state["folded_"] is not None else "chunked"
        # parameters added in 0.2: models saved before keep predicting as they did
        state.setdefault("upsampling", "bilinear")
        state.setdefault("boundary_fraction", 0.0)
        state.setdefault("boundary_width", 3)
        return state

    _parameter_constraints: dict = {
        "hypercolumns": [HypercolumnTransformer, None],
        "classifier": [HasMethods(["fit", "predict"]), None],
        "n_pixels_per_image": [Interval(Integral, 1, None, closed="left"), None],
        "min_pixels_per_class": [Interval(Integral, 1, None, closed="left"), None],
        "class_balance": ["boolean"],
        "boundary_fraction": [Interval(Real, 0, 1, closed="both")],
        "boundary_width": [Interval(Integral, 1, None, closed="left")],
        "ignore_label": [Integral, None],
        "random_state": ["random_state"],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "chunk_pixels": [Interval(Integral, 1, None, closed="left")],
        "upsampling": [StrOptions(set(UPSAMPLINGS))],
    }

    def __init__(  # noqa: PLR0913 (an estimator's settings are its constructor parameters)
        self,
        hypercolumns: HypercolumnTransformer | None = None,
        classifier: Any = None,
        *,
        n_pixels_per_image: int | None = 1000,
        min_pixels_per_class: int | None = 1000,
        class_balance: bool = False,
        boundary_fraction: float = 0.0,
        boundary_width: int = 3,
        ignore_label: int | None = None,
        random_state: Any = None,
        batch_size: int | None = None,
        chunk_pixels: int = 65536,
        upsampling: str = "edge_aware",
    ) -> None:
        self.hypercolumns = hypercolumns
        self.classifier = classifier
        self.n_pixels_per_image = n_pixels_per_image
        self.min_pixels_per_class = min_pixels_per_class
        self.class_balance = class_balance
        self.boundary_fraction = boundary_fraction
        self.boundary_width = boundary_width
        self.ignore_label = ignore_label
        self.random_state = random_state
        self.batch_size = batch_size
        self.chunk_pixels = chunk_pixels
        self.upsampling = upsampling

    def fit(self, images: Any, masks: Any, boxes: Any = None) -> HypercolumnSegmenter:
        """Draw labelled pixels, compute their hypercolumns, fit the classifier.

        Parameters
        ----------
        images : ndarray or list of ndarray
            ``(height, width[, channels])`` images, a list of them (any sizes)
            or a stack ``(n_images, height, width[, channels])``.
        masks : ndarray or list of ndarray
            One ``(height, width)`` integer label mask per image.
        boxes : array-like of shape (n_images, 4), default=None
            Object frame ``(x0, y0, x1, y1)`` per image (e.g. detections), the
            frame of the location columns of
            ``HypercolumnTransformer(append_location=True)``; None: whole
            images. Unused without location columns.

        Returns
        -------
        self : HypercolumnSegmenter
            The fitted segmenter.

        Raises
        ------
        ValueError
            If the masks hold fewer than two classes (besides ``ignore_label``), or a
            ``GridLocationClassifier`` is given without location columns.
        """
        self._validate_params()
        clf = checked_clone(self.classifier) if self.classifier is not None else (
            default_classifier()
        )
        hc = clone(self.hypercolumns) if self.hypercolumns is not None else (
            default_hypercolumns()
        )
        if self.batch_size is not None:
            hc.set_params(batch_size=self.batch_size)
        checked, batched = check_images(images, param="images", n_channels=None)
        hc.fit_images(checked, param="images")  # channel strategies learn the channel count
        checked = hc.engine_.check_images(checked, param="images")
        checked_masks = check_masks(masks, checked, param="masks", batched=batched)
        boxes = check_boxes(boxes, checked)
        return self._fit_classifier(hc, clf, checked, checked_masks, boxes)

    def refit_classifier(self, images: Any, masks: Any, boxes: Any = None
                         ) -> HypercolumnSegmenter:
        """Refit only the classifier, keeping the fitted feature engine (``hypercolumns_``).

        The interactive path (scribble, refit, look, correct): ``fit`` builds the
        engine anew (a backbone copy, probes, a weights fingerprint) before drawing
        pixels; this draws the training pixels of ``images`` / ``masks`` exactly as
        ``fit`` does (same parameters, same ``random_state``), reads their
        hypercolumns through the fitted engine, whose ``MapCache`` (if
        ``hypercolumns.cache`` is set) already holds the maps of images seen
        before, and fits a fresh clone of ``classifier``. On images and masks
        that ``fit`` would build the same engine for (the same backbone weights,
        channel count and learnt ``scales_``), the result equals ``fit``'s.

        Parameters
        ----------
        images : ndarray or list of ndarray
            As in ``fit``, with the channel count the engine was fitted on.
        masks : ndarray or list of ndarray
            One ``(height, width)`` integer label mask per image, as in ``fit``.
        boxes : array-like of shape (n_images, 4), default=None
            Object frames of the location columns, as in ``fit``.

        Returns
        -------
        self : HypercolumnSegmenter
            This estimator, with a new ``classifier_``, ``classes_`` and ``folded_``
            and the same ``hypercolumns_``.
        """
        check_is_fitted(self, "hypercolumns_")
        self._validate_params()
        clf = checked_clone(self.classifier) if self.classifier is not None else (
            default_classifier()
        )
        hc = self.hypercolumns_
        checked = hc.engine_.check_images(images, param="images")
        checked_masks = check_masks(masks, checked, param="masks", batched=checked.batched)
        return self._fit_classifier(hc, clf, checked, checked_masks, check_boxes(boxes, checked))

    def _fit_classifier(self, hc: HypercolumnTransformer, clf: Any, checked: Any,
                        checked_masks: Any, boxes: Any) -> HypercolumnSegmenter:
        """Draw the training pixels, fit ``clf`` on their hypercolumns, fold it."""
        if isinstance(clf, GridLocationClassifier) and not hc.append_location:
            raise ValueError(
                "The classifier is a GridLocationClassifier, which needs each pixel's location: "
                "use hypercolumns=HypercolumnTransformer(..., append_location=True)."
            )
        classes = np.unique(np.concatenate([np.unique(m) for m in checked_masks]))
        if self.ignore_label is not None:
            classes = classes[classes != self.ignore_label]
        if len(classes) < 2:
            raise ValueError(
                "The 'masks' parameter must hold at least two classes (besides ignore_label="
                f"{self.ignore_label}); got only {classes.tolist()}. A segmenter needs examples "
                "of every label it should predict."
            )
        X, y = sample_pixels(
            checked, checked_masks, n_per_image=self.n_pixels_per_image,
            class_balance=self.class_balance, ignore_label=self.ignore_label,
            boxes=boxes, min_per_class=self.min_pixels_per_class,
            boundary_fraction=self.boundary_fraction, boundary_width=self.boundary_width,
            random_state=self.random_state,
        )
        unsampled = np.setdiff1d(classes, y)
        if unsampled.size:  # only possible with min_pixels_per_class=None
            warnings.warn(
                f"Classes {unsampled.tolist()} of 'masks' got no training pixel (they cover few "
                "pixels and min_pixels_per_class=None): the model will never predict them. Set "
                "min_pixels_per_class (e.g. 1000, the default) to learn every class.",
                UserWarning,
                stacklevel=3,  # the caller of fit / refit_classifier
            )
        clf.fit(hc.transform(X), y)
        self.hypercolumns_ = hc
        self.classifier_ = clf
        self.classes_ = np.asarray(classes_of(clf))
        self.folded_ = fold_head(clf, hc.engine_.blocks)
        self.prediction_path_ = "folded" if self.folded_ is not None else "chunked"
        return self

    def predict(self, images: Any, boxes: Any = None) -> np.ndarray | list[np.ndarray]:
        """Label map of every image.

        Parameters
        ----------
        images : ndarray or list of ndarray
            As in ``fit``; any sizes.
        boxes : array-like of shape (n_images, 4), default=None
            Frames of the location columns, as in ``fit``.

        Returns
        -------
        ndarray of shape (height, width), or a list / stack of them
            A list for a list of images, an ``(n_images, height, width)``
            array for a stacked array, one map for one image.
        """
        return self._dense(images, "predict", boxes)

    @available_if(_has("predict_proba"))
    def predict_proba(self, images: Any, boxes: Any = None) -> np.ndarray | list[np.ndarray]:
        """Class probabilities ``(height, width, n_classes)`` of every image."""
        return self._dense(images, "predict_proba", boxes)

    @available_if(_has("decision_function"))
    def decision_function(self, images: Any, boxes: Any = None) -> np.ndarray | list[np.ndarray]:
        """Classifier scores of every pixel.

        ``(height, width)`` per image for a binary classifier (the score of
        ``classes_[1]``, as in scikit-learn), else ``(height, width,
        n_classes)``.
        """
        return self._dense(images, "decision_function", boxes)

    def score(self, images: Any, masks: Any, boxes: Any = None) -> float:
        """Mean IoU over classes (pooled over all pixels), see :func:`skhyper.metrics.mean_iou`.

        Every label of ``masks`` and of the prediction counts (a true label the model never
        learnt scores 0, it is not dropped); pixels labelled ``ignore_label`` are not scored.

        Parameters
        ----------
        images : ndarray or list of ndarray
            As in ``fit``; any sizes.
        masks : ndarray or list of ndarray
            The true ``(height, width)`` integer label mask of each image.
        boxes : array-like of shape (n_images, 4), default=None
            Frames of the location columns, as in ``fit``.

        Returns
        -------
        score : float
            The mean over classes of the intersection over union of the predicted and true
            pixels of each class, in ``[0, 1]``.

        Raises
        ------
        ValueError
            If every pixel of ``masks`` is ``ignore_label``.
        """
        check_is_fitted(self)
        checked = self.hypercolumns_.engine_.check_images(images, param="images")
        truth = check_masks(masks, checked, param="masks", batched=checked.batched)
        if self.ignore_label is not None and all(np.all(m == self.ignore_label) for m in truth):
            raise ValueError(
                f"The 'masks' parameter has no labelled pixel: every pixel is ignore_label="
                f"{self.ignore_label}, so there is nothing to score."
            )
        pred = self._dense(checked, "predict", boxes)
        pred = pred if checked.batched else [pred]
        return mean_iou(list(truth), pred, ignore_label=self.ignore_label)

    def _dense(self, images: Any, output: str, boxes: Any) -> np.ndarray | list[np.ndarray]:
        check_is_fitted(self)
        engine = self.hypercolumns_.engine_
        checked = engine.check_images(images, param="images")
        out = predict_dense(engine, checked, head=self.folded_, classifier=self.classifier_,
                            output=output, boxes=check_boxes(boxes, checked),
                            chunk_pixels=self.chunk_pixels,
                            upsampling=self.upsampling)
        if not checked.batched:
            return out[0]
        if isinstance(images, np.ndarray):
            return np.stack(out)
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # images and masks, not a table
        tags.non_deterministic = False
        return tags
