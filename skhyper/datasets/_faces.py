"""The face keypoint development set and simulated detector boxes."""

from __future__ import annotations

import csv
import numbers
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils import Bunch

from .._validation import as_array
from ..metrics import inter_ocular_distance
from ._images import StrPath, read_pil

_N_TRAIN_FACES, _N_FACES = 150, 200  # the project's standard split of the face keypoint set
_FACES_EYES = ("r_eye_outer", "l_eye_outer")  # the inter-ocular distance is between these

_FACES_DESCR = """\
Face keypoints: photos of (often disguised) faces with 14 facial keypoints each, (x, y) pixels.

{what}
Boxes: simulated face-detector boxes (see skhyper.datasets.simulate_detector_boxes), {boxes}.
Source: https://github.com/DevendraPatil/Face-Disguise-Dataset ("Complex Background" images).
Citation: A. Singh, D. Patil, G. M. Reddy, S. N. Omkar, "Disguised Face Identification (DFI)
with Facial KeyPoints using Spatial Fusion Convolutional Network", IEEE International Conference
on Computer Vision Workshops (ICCVW), 2017.
Terms: the source repository has no license file. Treat this data as for research and
evaluation use only; do not redistribute it.
"""


def _check_real(value: Any, param: str, func: str, *, low: float, low_open: bool,
                high: float | None = None) -> float:
    """Return ``value`` as a float, checking it is a finite real in the given range."""
    ok = (
        not isinstance(value, (bool, np.bool_))
        and isinstance(value, numbers.Real)
        and np.isfinite(value)
        and (value > low if low_open else value >= low)
        and (high is None or value < high)
    )
    if not ok:
        lo = f"> {low}" if low_open else f">= {low}"
        hi = "" if high is None else f" and < {high}"
        raise ValueError(
            f"The '{param}' parameter of {func} must be a finite number {lo}{hi}. Got {value!r} "
            "instead."
        )
    return float(value)


def _check_seed(random_state: Any, func: str) -> None:
    if not (
        random_state is None
        or isinstance(random_state, np.random.Generator)
        or (isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
            and random_state >= 0)
    ):
        raise ValueError(
            f"The 'random_state' parameter of {func} must be a non-negative int, a "
            f"numpy.random.Generator or None. Got {random_state!r} instead."
        )


def simulate_detector_boxes(
    keypoints: Any,
    *,
    scale: float = 2.0,
    jitter: float = 0.15,
    size_jitter: float = 0.15,
    random_state: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Square boxes around keypoints, jittered like the output of an object detector.

    Each image's box is a square of side ``scale`` times the longer side of the extent of its
    annotated keypoints (max - min of x and of y), centred on the centre of that extent. Then
    the centre moves by ``uniform(-jitter, jitter) * side``, independently in x and y, and the
    side is multiplied by ``uniform(1 - size_jitter, 1 + size_jitter)``. The draws are made
    for all images in order, so an image's box depends on its position in ``keypoints``.
    Boxes are not clipped to the image and may extend beyond it.

    Parameters
    ----------
    keypoints : array-like of shape (n_images, n_keypoints, 2)
        ``(x, y)`` pixel coordinates; NaN marks a keypoint that is not annotated. Every image
        needs annotated keypoints with a non-zero extent.
    scale : float, default=2.0
        Side of the box over the longer side of the keypoints' extent; > 0.
    jitter : float, default=0.15
        Largest shift of the centre, in x and in y, as a fraction of the side; >= 0.
    size_jitter : float, default=0.15
        Largest relative change of the side; in ``[0, 1)``.
    random_state : int, numpy.random.Generator or None, default=0
        Seed of :func:`numpy.random.default_rng` for the jitter. With ``jitter=0`` and
        ``size_jitter=0`` the boxes do not depend on it.

    Returns
    -------
    boxes : ndarray of shape (n_images, 4), dtype float64
        ``(x0, y0, x1, y1)`` of each box, with ``x1 - x0 == y1 - y0``.

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper.datasets import simulate_detector_boxes
    >>> kp = np.array([[[10.0, 10.0], [30.0, 10.0], [20.0, 20.0]],
    ...                [[50.0, 40.0], [60.0, 60.0], [np.nan, np.nan]]])
    >>> simulate_detector_boxes(kp, jitter=0, size_jitter=0)  # extents 20 and 20
    array([[ 0., -5., 40., 35.],
           [35., 30., 75., 70.]])
    >>> boxes = simulate_detector_boxes(kp, random_state=0)
    >>> side = boxes[:, 2] - boxes[:, 0]
    >>> bool(np.allclose(side, boxes[:, 3] - boxes[:, 1])), bool(np.all(abs(side - 40) <= 6))
    (True, True)
    """
    func = "simulate_detector_boxes"
    scale = _check_real(scale, "scale", func, low=0.0, low_open=True)
    jitter = _check_real(jitter, "jitter", func, low=0.0, low_open=False)
    size_jitter = _check_real(size_jitter, "size_jitter", func, low=0.0, low_open=False, high=1.0)
    _check_seed(random_state, func)
    kp = as_array(keypoints, f"The 'keypoints' parameter of {func}",
                  "an array of shape (n_images, n_keypoints, 2) of (x, y) coordinates",
                  dtype=np.float64)
    if kp.ndim != 3 or kp.shape[-1] != 2 or kp.shape[0] == 0 or kp.shape[1] == 0:
        raise ValueError(
            f"The 'keypoints' parameter of {func} must be a non-empty array of shape "
            f"(n_images, n_keypoints, 2) of (x, y) coordinates; got shape {kp.shape}."
        )
    if np.isinf(kp).any():
        raise ValueError(
            f"The 'keypoints' parameter of {func} holds infinite coordinates; use NaN to mark "
            "a keypoint that is not annotated."
        )
    annotated = np.isfinite(kp).all(axis=-1)
    masked = np.where(annotated[..., None], kp, np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN images, reported below
        lo, hi = np.nanmin(masked, axis=1), np.nanmax(masked, axis=1)
    extent = (hi - lo).max(axis=-1)
    bad = ~(extent > 0)
    if bad.any():
        raise ValueError(
            f"The 'keypoints' parameter of {func} needs, in every image, annotated keypoints "
            f"with a non-zero extent to size the box; image(s) {np.flatnonzero(bad)[:5].tolist()} "
            "have no annotated keypoint, or all in one place."
        )
    rng = np.random.default_rng(random_state)
    shift = rng.uniform(-jitter, jitter, size=(kp.shape[0], 2))
    factor = rng.uniform(1.0 - size_jitter, 1.0 + size_jitter, size=kp.shape[0])
    side = scale * extent
    centre = (lo + hi) / 2 + shift * side[:, None]
    half = (side * factor / 2)[:, None]
    return np.concatenate([centre - half, centre + half], axis=1)


def _read_keypoint_csv(csv_file: Path, func: str) -> tuple[list[str], list[dict[str, str]]]:
    """Return the keypoint names and the rows of ``keypoints.csv``, checking its header."""
    with open(csv_file, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    coords = header[3:]
    ok = (
        header[:3] == ["stem", "width", "height"]
        and len(coords) > 0
        and len(coords) % 2 == 0
        and all(
            x.endswith("_x") and y.endswith("_y") and x[:-2] == y[:-2]
            for x, y in zip(coords[::2], coords[1::2])
        )
    )
    if not ok:
        raise ValueError(
            f"The 'path' parameter of {func} points to a folder whose keypoints.csv has the "
            f"header {header[:5]}{' ...' if len(header) > 5 else ''}; expected stem,width,height "
            "then <name>_x,<name>_y for each keypoint."
        )
    names = [x[:-2] for x in coords[::2]]
    missing = [e for e in _FACES_EYES if e not in names]
    if missing:
        raise ValueError(
            f"The 'path' parameter of {func} points to a folder whose keypoints.csv has no "
            f"keypoint(s) {missing}, needed for the inter-ocular distance. Got {names}."
        )
    if not rows:
        raise ValueError(
            f"The 'path' parameter of {func} points to a folder whose keypoints.csv has no rows."
        )
    return names, rows


def load_face_keypoints(
    path: StrPath,
    *,
    split: str | None = None,
    box_jitter: bool = True,
    random_state: int | np.random.Generator | None = 0,
) -> Bunch:
    """Load photos of faces with 14 facial keypoints and simulated face-detector boxes.

    The data are not bundled: ``path`` is a folder with ``images/<stem>.jpg`` and a
    ``keypoints.csv`` with columns ``stem,width,height`` then ``<name>_x,<name>_y`` per
    keypoint, such as the 200-image development set (640x360 photos) made from the
    Face Disguise Dataset.

    Parameters
    ----------
    path : str or path-like
        Folder holding ``images/`` and ``keypoints.csv``.
    split : {"train", "test"}, default=None
        ``None`` returns every image, sorted by stem. Otherwise the images of that part, in
        permutation order, by the standard rule: stems sorted,
        ``np.random.default_rng(0).permutation(n)``, the first ``round(n * 150 / 200)`` train
        (150 of the 200-image set), the rest test.
    box_jitter : bool, default=True
        If True, jitter the boxes like a face detector (centre shifts up to 15 % of the side
        in x and y, side scaled by 0.85 to 1.15); else each box is the unjittered square.
    random_state : int, numpy.random.Generator or None, default=0
        Seed of the box jitter. The jitter is drawn for every image of the full set in stem
        order before the split is taken, so an image gets the same box whatever ``split``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images``: list of uint8 ndarrays of shape (height, width, 3); ``keypoints``: float64
        ndarray of shape (n_images, n_keypoints, 2), ``(x, y)`` pixel coordinates (NaN where
        a cell of the CSV is empty); ``boxes``: float64 ndarray of shape (n_images, 4),
        ``(x0, y0, x1, y1)`` square boxes from :func:`simulate_detector_boxes` with
        ``scale=2.0`` (not clipped: a box may extend beyond its image); ``names``: list of the
        stems; ``keypoint_names``: list of the keypoint names, from the CSV header; ``iod``:
        float64 ndarray of shape (n_images,), the inter-ocular distance between
        ``r_eye_outer`` and ``l_eye_outer``; ``DESCR``: a description with the citation and
        the terms of use.

    Notes
    -----
    Source: https://github.com/DevendraPatil/Face-Disguise-Dataset. Cite A. Singh, D. Patil,
    G. M. Reddy, S. N. Omkar, "Disguised Face Identification (DFI) with Facial KeyPoints using
    Spatial Fusion Convolutional Network", ICCV Workshops 2017. The source has no license
    file: use the data for research and evaluation only, and do not redistribute it.

    Examples
    --------
    >>> from skhyper.datasets import load_face_keypoints
    >>> train = load_face_keypoints("shared/data/face_keypoints", split="train")  # doctest: +SKIP
    >>> len(train.images), train.keypoints.shape, train.boxes.shape  # doctest: +SKIP
    (150, (150, 14, 2), (150, 4))
    """
    func = "load_face_keypoints"
    if split not in (None, "train", "test"):
        raise ValueError(
            f"The 'split' parameter of {func} must be None, 'train' or 'test'. Got {split!r} "
            "instead."
        )
    if not isinstance(box_jitter, (bool, np.bool_)):
        raise ValueError(
            f"The 'box_jitter' parameter of {func} must be a bool. Got {box_jitter!r} instead."
        )
    _check_seed(random_state, func)
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"The 'path' parameter of {func} must be a str or a path. Got {path!r}.")
    root = Path(path)
    csv_file = root / "keypoints.csv"
    if not (root / "images").is_dir() or not csv_file.is_file():
        raise ValueError(
            f"The 'path' parameter of {func} must be an existing folder with an 'images' "
            f"subfolder and a 'keypoints.csv' file. Got {str(path)!r}, where "
            f"{'they do' if root.is_dir() else 'the folder does'} not exist."
        )
    keypoint_names, rows = _read_keypoint_csv(csv_file, func)
    rows = sorted(rows, key=lambda r: r["stem"])
    stems = [r["stem"] for r in rows]
    if len(set(stems)) != len(stems):
        raise ValueError(
            f"The 'path' parameter of {func} points to a folder whose keypoints.csv repeats a "
            "stem; give one row per image."
        )
    keypoints = np.empty((len(rows), len(keypoint_names), 2))
    sizes = []
    for i, row in enumerate(rows):
        try:
            sizes.append((int(row["width"]), int(row["height"])))
            keypoints[i] = [
                [float(row[f"{n}_{c}"] or "nan") for c in "xy"] for n in keypoint_names
            ]
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"The 'path' parameter of {func} points to a folder whose keypoints.csv has a "
                f"bad value in the row of {row['stem']!r} ({err}); expected an int width and "
                "height and float coordinates."
            ) from err
    eyes = [keypoint_names.index(e) for e in _FACES_EYES]
    boxes = simulate_detector_boxes(
        keypoints,
        jitter=0.15 if box_jitter else 0.0,
        size_jitter=0.15 if box_jitter else 0.0,
        random_state=random_state,
    )
    if split is None:
        chosen = np.arange(len(stems))
    else:
        perm = np.random.default_rng(0).permutation(len(stems))
        n_train = round(len(stems) * _N_TRAIN_FACES / _N_FACES)
        chosen = perm[:n_train] if split == "train" else perm[n_train:]
    images = []
    for i in chosen:
        image_file = root / "images" / f"{stems[i]}.jpg"
        if not image_file.is_file():
            raise ValueError(
                f"The 'path' parameter of {func} points to {str(root)!r}, where the image "
                f"{str(image_file)!r} of the keypoints.csv row {stems[i]!r} is missing."
            )
        image = np.asarray(read_pil(image_file, "RGB"), dtype=np.uint8)
        if (image.shape[1], image.shape[0]) != sizes[i]:
            raise ValueError(
                f"The 'path' parameter of {func} points to {str(root)!r}, where the image "
                f"{str(image_file)!r} is {image.shape[1]}x{image.shape[0]} but keypoints.csv "
                f"says {sizes[i][0]}x{sizes[i][1]}."
            )
        images.append(image)
    kp = keypoints[chosen]
    return Bunch(
        images=images,
        keypoints=kp,
        boxes=boxes[chosen],
        names=[stems[i] for i in chosen],
        keypoint_names=keypoint_names,
        iod=inter_ocular_distance(kp, left=eyes[1], right=eyes[0]),
        DESCR=_FACES_DESCR.format(
            what=f"{len(chosen)} images loaded from {str(path)!r}, split={split!r}.",
            boxes="jittered" if box_jitter else "not jittered",
        ),
    )
