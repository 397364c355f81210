"""``skhyper train IMAGES LABELS -o MODEL``: fit a segmenter on image files and label images."""

from __future__ import annotations

import argparse
import re
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..estimators import (
    GridLocationClassifier,
    HypercolumnSegmenter,
    HypercolumnTransformer,
    default_classifier,
)
from ..export import save
from ..features import MapCache
from ..io import ImageData, read_image, read_labels
from ..sampling import sample_pixels
from ._args import (
    CommandError,
    axes_letters,
    check_out_file,
    describe,
    intensity_range,
    layer_list,
    nonnegative_int,
    optional_int,
    positive_int,
    scale_list,
    to_option,
)
from ._io import IMAGE_SUFFIXES, find_inputs, match_labels

__all__ = ["add_train_parser", "build_segmenter", "cross_validate_images", "run_train"]

CLASSIFIERS = ("logistic", "sgd", "forest")
STRATEGIES = ("auto", "none", "replicate", "per_channel", "first_conv")
OPTION_NAMES = {
    "backbone": "--backbone", "layers": "--layers", "weights": "--weights",
    "device": "--device", "scales": "--scales", "channel_strategy": "--channel-strategy",
    "intensity_range": "--intensity-range", "image_size": "--image-size",
    "batch_size": "--batch-size", "n_pixels_per_image": "--pixels-per-image",
    "ignore_label": "--ignore-label", "grid_size": "--grid-size", "masks": "LABELS",
    "images": "IMAGES",
}


def add_train_parser(sub: Any, parents: list) -> None:
    """The ``train`` subcommand and its options."""
    p = sub.add_parser(
        "train", parents=parents, help="fit a segmenter on images and label images",
        description="Fit a HypercolumnSegmenter on images and label images matched by name "
        "(PNG/JPEG/TIFF, e.g. napari or ilastik scribbles: label 0 = unlabelled) and save it "
        "as a model file (skhyper.save; no pickle).")
    p.add_argument("images", metavar="IMAGES", help="folder (or glob) of images")
    p.add_argument("labels", metavar="LABELS",
                   help="folder (or glob) of label images with the images' names")
    p.add_argument("-o", "--output", required=True, metavar="MODEL",
                   help="model file to write (e.g. model.skhyper)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing MODEL")
    p.add_argument("--label-suffix", default="", metavar="TEXT",
                   help="label images are named IMAGE_NAME + TEXT (e.g. '_labels')")
    p.add_argument("--axes", type=axes_letters, default=None, metavar="LETTERS",
                   help="axes of the image files, one letter per stored axis (e.g. ZYX, YXC, "
                   "CYX), for files without axis names (default: the files' own; pages of a "
                   "TIFF without them are planes, labelled by a label stack)")
    p.add_argument("--label-axes", type=axes_letters, default=None, metavar="LETTERS",
                   help="axes of the label files (e.g. ZYX), as --axes")
    p.add_argument("--ignore-label", type=optional_int("none"), default=0, metavar="N|none",
                   help="label value of unlabelled pixels (default: 0, the scribble "
                   "convention); 'none' when every value is a class (full masks)")
    g = p.add_argument_group("features")
    g.add_argument("--backbone", default="efficientnet_lite0",
                   help="backbone name (default: %(default)s, bundled weights, offline); "
                   "'skhyper layers BACKBONE' lists its layers")
    g.add_argument("--layers", type=layer_list, default=None, metavar="L1,L2",
                   help="comma-separated layer names or stage indices (default: all stages)")
    g.add_argument("--weights", default="imagenet", metavar="imagenet|none|PATH",
                   help="pretrained weights, random ones (none) or a state-dict file")
    g.add_argument("--scales", type=scale_list, default="auto", metavar="auto|none|S1,S2",
                   help="image scales of multi-scale hypercolumns, e.g. 1,0.5; auto: small "
                   "images fed up to 2x larger (default, as the Python API's segmenter)")
    g.add_argument("--channel-strategy", choices=STRATEGIES, default="auto",
                   help="how channels other than RGB are fed; auto: as they are for 1 or 3 "
                   "channels, per_channel otherwise (default: auto)")
    g.add_argument("--intensity-range", type=intensity_range, default=None,
                   metavar="dtype|LOW,HIGH|percentile,P1,P2",
                   help="pixel values mapped to black and white (default: the dtype's range)")
    g.add_argument("--image-size", type=positive_int, default=None, metavar="N",
                   help="resize the longer side to N pixels for the forward pass")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                   help="images per forward pass (default: 8)")
    c = p.add_argument_group("classifier")
    c.add_argument("--classifier", choices=CLASSIFIERS, default="logistic",
                   help="logistic: StandardScaler + LogisticRegression(C=0.01) (default); "
                   "sgd: StandardScaler + PCA(32) + SGD; forest: a random forest "
                   "(does not fold: slower dense prediction)")
    c.add_argument("--upsampling", choices=("edge_aware", "bilinear"), default="edge_aware",
                   help="how coarse score maps are upsampled: edge_aware (default, tighter "
                   "outlines) or bilinear (the exact hypercolumn)")
    c.add_argument("--pixels-per-image", type=optional_int("all", positive=True), default=1000,
                   metavar="N|all", help="training pixels drawn per image (default: 1000)")
    c.add_argument("--class-balance", action="store_true",
                   help="draw the same number of pixels per class in each image")
    c.add_argument("--grid-size", type=positive_int, default=1, metavar="K",
                   help="K x K location-specific classifiers over the image (default: 1)")
    c.add_argument("--seed", type=int, default=0, help="seed of the pixel draw (default: 0)")
    c.add_argument("--cv-folds", type=nonnegative_int, default=3, metavar="N",
                   help="folds of the cross-validated score over images, with >= 3 images "
                   "(default: 3; 0: none)")
    p.set_defaults(run=run_train)


def _strategy(choice: str, n_channels: int) -> str | None:
    if choice == "auto":
        return None if n_channels in (1, 3) else "per_channel"
    return None if choice == "none" else choice


def build_segmenter(args: argparse.Namespace, *, channel_strategy: str | None,
                    cache: MapCache | None = None) -> HypercolumnSegmenter:
    """The unfitted segmenter the options describe."""
    weights = None if str(args.weights).lower() == "none" else args.weights
    hc = HypercolumnTransformer(
        args.backbone, layers=args.layers, weights=weights, device=args.device,
        batch_size=args.batch_size, image_size=args.image_size, scales=args.scales,
        channel_strategy=channel_strategy, intensity_range=args.intensity_range,
        append_location=args.grid_size > 1, cache=cache)
    if args.classifier == "logistic":
        clf = None if args.grid_size == 1 else default_classifier()
    elif args.classifier == "sgd":  # the first demo's: PCA(32) and a strongly penalized SGD
        from sklearn.decomposition import PCA
        from sklearn.linear_model import SGDClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        clf = make_pipeline(StandardScaler(), PCA(32, random_state=args.seed), SGDClassifier(
            loss="log_loss", alpha=1e-2, max_iter=200, tol=1e-4, random_state=args.seed))
    else:
        from sklearn.ensemble import RandomForestClassifier

        clf = RandomForestClassifier(n_estimators=100, min_samples_leaf=2, n_jobs=-1,
                                     random_state=args.seed)
    if args.grid_size > 1:
        clf = GridLocationClassifier(clf, grid_size=args.grid_size)
    return HypercolumnSegmenter(hc, clf, n_pixels_per_image=args.pixels_per_image,
                                class_balance=args.class_balance, ignore_label=args.ignore_label,
                                random_state=args.seed, upsampling=args.upsampling)


def _check_settings(args: argparse.Namespace) -> None:
    """Build the features once: an unknown backbone, layer, weights file or device fails here,
    before any image is read."""
    seg = build_segmenter(args, channel_strategy=None)
    try:
        seg.hypercolumns.fit_images(None)
    except (ValueError, TypeError, OSError, KeyError, RuntimeError) as err:
        msg = re.sub(r" Valid names: \[.*?\]\.", "", str(err).strip().splitlines()[0])
        msg = re.sub(r" See skhyper\.features\.list_layers\(\)[^.]*\.",
                     f" 'skhyper layers {args.backbone}' lists them.", msg)
        raise CommandError(to_option(msg, OPTION_NAMES)) from err


def _read_pair(pair: tuple[Path, Path], axes: tuple[str | None, str | None] = (None, None)
               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The planes of an image and of its label image (a stack and its label stack: one label
    plane per image plane); ``axes``: the --axes and --label-axes."""
    image_file, label_file = pair
    try:
        image = read_image(image_file, axes[0])
    except (OSError, ValueError, ImportError) as err:
        raise CommandError(f"IMAGES: cannot read {str(image_file)!r}: {err}") from err
    try:
        labels = read_labels(label_file, axes[1])
    except (OSError, ValueError, ImportError) as err:
        raise CommandError(f"LABELS: cannot read {str(label_file)!r}: {err}") from err
    _check_pair(image, labels)
    return image.planes(), labels.planes()


def _check_pair(image: ImageData, labels: ImageData) -> None:
    """A CommandError unless ``labels`` has the planes and the plane shape of ``image``."""
    shape = image.data.shape[:-1] if image.axes.endswith("C") else image.data.shape
    if tuple(labels.data.shape) == tuple(shape):
        return
    if image.is_stack or labels.is_stack:
        raise CommandError(
            f"label image {labels.name!r} holds {labels.n_planes} plane(s) of "
            f"{labels.plane_shape} (axes {labels.axes!r}) but image {image.name!r} holds "
            f"{image.n_planes} plane(s) of {image.plane_shape} (axes {image.axes!r}); a stack "
            "needs a label stack with one label plane per image plane (e.g. a multi-page "
            "TIFF, unlabelled planes all 0).")
    raise CommandError(
        f"label image {labels.name!r} has shape {tuple(labels.data.shape)} but image "
        f"{image.name!r} has {tuple(shape)}; they must have the same height and width.")


def cross_validate_images(seg: HypercolumnSegmenter, classifier: Any, images: list,
                          masks: list, n_folds: int) -> dict[str, tuple[float, float]]:
    """Cross-validated pixel accuracy and mean IoU over images, cheaply.

    The pixels ``seg.fit`` drew are drawn again (same seed), their hypercolumns read from the
    map cache that ``fit`` filled, and only ``classifier`` is refitted in ``GroupKFold``
    folds of whole images: no image gives pixels to both sides of a split.
    """
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold, cross_validate

    X, y = sample_pixels(images, masks, n_per_image=seg.n_pixels_per_image,
                         class_balance=seg.class_balance, ignore_label=seg.ignore_label,
                         min_per_class=seg.min_pixels_per_class, random_state=seg.random_state)
    features = seg.hypercolumns_.transform(X)
    clf = clone(classifier) if classifier is not None else default_classifier()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cross_validate(clf, features, y, groups=X.groups, cv=GroupKFold(n_folds),
                             scoring={"accuracy": "accuracy", "iou": "jaccard_macro"},
                             error_score=np.nan)
    return {k: (float(np.mean(res[f"test_{k}"])), float(np.std(res[f"test_{k}"])))
            for k in ("accuracy", "iou")}


def _name(est: Any) -> str:
    steps = getattr(est, "steps", None)
    if steps is not None:
        return " + ".join(_name(step) for _, step in steps)
    if isinstance(est, GridLocationClassifier):
        return f"GridLocationClassifier({_name(est.estimator)}, grid_size={est.grid_size})"
    return type(est).__name__


def run_train(args: argparse.Namespace) -> int:
    """Check everything, read the pairs, fit, cross-validate, save, report."""
    start = time.perf_counter()
    out = check_out_file(args.output, "-o/--output", overwrite=args.overwrite)
    images = find_inputs([args.images], "IMAGES", IMAGE_SUFFIXES)
    labels = find_inputs([args.labels], "LABELS", IMAGE_SUFFIXES + (".npy",))
    pairs = match_labels(images, labels, args.label_suffix)
    _check_settings(args)

    with ThreadPoolExecutor(max_workers=2) as pool:
        data = list(pool.map(_read_pair, pairs, [(args.axes, args.label_axes)] * len(pairs)))
    read_s = time.perf_counter() - start
    arrays = [plane for d in data for plane in d[0]]  # every plane of every stack
    masks = [plane for d in data for plane in d[1]]
    channels = {1 if a.ndim == 2 else a.shape[2] for a in arrays}
    if len(channels) > 1:
        raise CommandError(f"IMAGES have different channel counts {sorted(channels)}; every "
                           "image must have the same channels.")
    values, counts = np.unique(np.concatenate([m.ravel() for m in masks]), return_counts=True)
    keep = values != args.ignore_label if args.ignore_label is not None else values == values
    if keep.sum() < 2:
        hint = (" If 0 is a class (full masks, not scribbles), pass --ignore-label none."
                if args.ignore_label == 0 and 0 in values else "")
        raise CommandError(
            f"LABELS hold {keep.sum()} class(es) {values[keep].tolist()} besides --ignore-label "
            f"{args.ignore_label}; a segmenter needs labelled pixels of at least two classes."
            + hint)

    strategy = _strategy(args.channel_strategy, channels.pop())
    cache = MapCache(max_bytes=2**30) if args.cv_folds and len(arrays) >= 3 else None
    seg = build_segmenter(args, channel_strategy=strategy, cache=cache)
    t0 = time.perf_counter()
    try:
        seg.fit(arrays, masks)
    except (ValueError, TypeError) as err:
        raise CommandError(to_option(str(err).strip().splitlines()[0], OPTION_NAMES)) from err
    fit_s = time.perf_counter() - t0
    scores = None
    if cache is not None:
        t0 = time.perf_counter()
        scores = cross_validate_images(seg, seg.classifier, arrays, masks,
                                       min(args.cv_folds, len(arrays)))
        cv_s = time.perf_counter() - t0
    save(seg, out)

    hc = seg.hypercolumns_
    planes = f" ({len(arrays)} planes)" if len(arrays) != len(pairs) else ""
    print(f"trained on {len(pairs)} images{planes} ({read_s:.1f} s to check and read)")
    print("classes (labelled pixels): " + ", ".join(
        f"{v} ({c:,})" for v, c in zip(values[keep], counts[keep])))
    print(f"features: {hc.n_features_out_} per pixel from {hc.backbone_.name} "
          f"[{describe([m['name'] for m in hc.feature_info_])}]"
          f"{'; channels: ' + strategy if strategy else ''}")
    print(f"classifier: {_name(seg.classifier_)} on "
          f"{'all labelled' if args.pixels_per_image is None else args.pixels_per_image} "
          f"pixels per image; prediction path: {seg.prediction_path_}; fit {fit_s:.1f} s")
    if scores is not None:
        acc, iou = scores["accuracy"], scores["iou"]
        print(f"cross-validated over images ({min(args.cv_folds, len(arrays))} folds, sampled "
              f"pixels, classifier refit): pixel accuracy {acc[0]:.3f} +/- {acc[1]:.3f}, "
              f"mean IoU {iou[0]:.3f} +/- {iou[1]:.3f} ({cv_s:.1f} s)")
    elif args.cv_folds:
        print("cross-validated score: needs at least 3 images")
    print(f"model: {out} ({out.stat().st_size / 2**20:.1f} MiB); total "
          f"{time.perf_counter() - start:.1f} s")
    return 0
