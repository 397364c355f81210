"""Bundled demo sample, a loader for folders of images with masks, and a face keypoint loader."""

from __future__ import annotations

import csv
import numbers
import os
import warnings
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.utils import Bunch

from .metrics import inter_ocular_distance

__all__ = ["load_face_keypoints", "load_horses", "load_image_folder", "simulate_detector_boxes"]

StrPath = str | os.PathLike
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_N_TRAIN_FULL, _N_FULL = 200, 328  # the project's standard split of the Weizmann horse set

_HORSES_DESCR = """\
Weizmann horses: side-view photos of horses with binary figure-ground masks (1 = horse).

{what}
Citation: E. Borenstein and S. Ullman, "Class-specific, top-down segmentation", ECCV 2002.
Weizmann Horse Database; distributed by its authors for research use.
"""


def _check_max_size(max_size: int | None, func: str) -> int | None:
    if max_size is None:
        return None
    if isinstance(max_size, bool) or not isinstance(max_size, numbers.Integral) or max_size < 1:
        raise ValueError(
            f"The 'max_size' parameter of {func} must be None or a positive int (the longest side "
            f"in pixels). Got {max_size!r} instead."
        )
    return int(max_size)


def _read_pair(
    image_file: Path, mask_file: Path, max_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    image = Image.open(image_file).convert("RGB")
    mask = Image.open(mask_file).convert("L")
    if image.size != mask.size:
        raise ValueError(
            f"Image {image_file} has size {image.size} but its mask {mask_file} has size "
            f"{mask.size}; an image and its mask must have the same width and height."
        )
    if max_size is not None and max(image.size) > max_size:
        scale = max_size / max(image.size)
        size = tuple(max(1, round(s * scale)) for s in image.size)
        image = image.resize(size, Image.Resampling.BILINEAR)  # PIL antialiases when reducing
        mask = mask.resize(size, Image.Resampling.NEAREST)
    return np.asarray(image, dtype=np.uint8), (np.asarray(mask) > 127).astype(np.uint8)


def _list_images(
    path: StrPath, images: str, masks: str, func: str
) -> tuple[Path, dict[str, Path]]:
    """Check ``path`` and return it as a Path with a {stem: image file} dict."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"The 'path' parameter of {func} must be a str or a path. Got {path!r}.")
    root = Path(path)
    if not (root / images).is_dir():
        raise ValueError(
            f"The 'path' parameter of {func} must be an existing folder with an {images!r} "
            f"subfolder (and a {masks!r} one). Got {str(path)!r}, where "
            f"{'that subfolder' if root.is_dir() else 'the folder'} does not exist."
        )
    found = {p.stem: p for p in sorted((root / images).iterdir())
             if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES}
    if not found:
        raise ValueError(
            f"The 'path' parameter of {func} points to {str(path)!r}, whose {images!r} subfolder "
            f"holds no images (looked for {', '.join(_IMAGE_SUFFIXES)})."
        )
    return root, found


def _read_pairs(
    root: Path,
    found: dict[str, Path],
    names: list[str],
    *,
    images: str,
    masks: str,
    mask_suffix: str,
    max_size: int | None,
    func: str,
) -> Bunch:
    out = Bunch(images=[], masks=[], names=list(names))
    for name in out.names:
        mask_file = root / masks / f"{name}{mask_suffix}"
        if name not in found or not mask_file.is_file():
            missing = f"image {name!r}" if name not in found else f"mask {str(mask_file)!r}"
            raise ValueError(
                f"The 'path' parameter of {func} points to {str(root)!r}, where the {missing} is "
                f"missing. Every image in {images}/ needs a mask {masks}/<name>{mask_suffix}."
            )
        image, mask = _read_pair(found[name], mask_file, max_size)
        out.images.append(image)
        out.masks.append(mask)
    return out


def load_image_folder(
    path: StrPath,
    *,
    images: str = "images",
    masks: str = "masks",
    mask_suffix: str = ".png",
    max_size: int | None = None,
) -> Bunch:
    """Load a folder of RGB images and their binary masks.

    Parameters
    ----------
    path : str or path-like
        Folder holding the ``images`` and ``masks`` subfolders.
    images : str, default="images"
        Subfolder with the images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.tif``, ``.tiff``).
    masks : str, default="masks"
        Subfolder with one mask per image, named ``<image stem><mask_suffix>``.
    mask_suffix : str, default=".png"
        File name ending of the masks.
    max_size : int, default=None
        If given, downscale every pair so its longer side is at most ``max_size`` pixels (image
        bilinear with antialiasing, mask nearest). Smaller pairs are left as they are.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images``: list of uint8 ndarrays of shape (height, width, 3); ``masks``: list of uint8
        ndarrays of shape (height, width) with values 0/1 (mask value > 127 gives 1); ``names``:
        the image stems, sorted.

    Examples
    --------
    >>> from importlib.resources import files
    >>> from skhyper.datasets import load_image_folder
    >>> data = load_image_folder(files("skhyper") / "data" / "horses", max_size=64)
    >>> len(data.names), data.names[0]
    (24, 'horse006')
    >>> data.images[0].shape[:2] == data.masks[0].shape, max(data.masks[0].shape)
    (True, 64)
    """
    func = "load_image_folder"
    max_size = _check_max_size(max_size, func)
    root, found = _list_images(path, images, masks, func)
    return _read_pairs(root, found, sorted(found), images=images, masks=masks,
                       mask_suffix=mask_suffix, max_size=max_size, func=func)


def _split_names(root: Path, names: list[str], split: str) -> list[str]:
    """Return the stems of ``split`` in order: split.txt if present, else the standard rule."""
    split_file = root / "split.txt"
    if split_file.is_file():
        parts = [line.split() for line in split_file.read_text().splitlines()]
        return [p[0] for p in parts if len(p) == 2 and p[1] == split]
    perm = np.random.default_rng(0).permutation(len(names))
    n_train = round(len(names) * _N_TRAIN_FULL / _N_FULL)
    chosen = perm[:n_train] if split == "train" else perm[n_train:]
    return [names[i] for i in chosen]


def load_horses(
    path: StrPath | None = None, *, split: str | None = None, max_size: int | None = None
) -> Bunch:
    """Load the Weizmann horse images and figure-ground masks.

    Parameters
    ----------
    path : str or path-like, default=None
        ``None`` loads the bundled demo sample: 24 pairs downscaled to a longer side of at most
        160 pixels (16 train, 8 test, a subset of the standard train/test of the full set).
        Otherwise a folder with the same layout, ``images/<name>.jpg`` and ``masks/<name>.png``,
        such as the full 328-image set.
    split : {"train", "test"}, default=None
        ``None`` returns every pair, sorted by name. Otherwise the pairs of that part, in
        permutation order: from ``split.txt`` (lines ``<name> train|test``) when the folder has
        one, as the bundled sample does; else by the standard rule: names sorted,
        ``np.random.default_rng(0).permutation(n)``, the first ``round(n * 200 / 328)`` train
        (200 of the 328-image set), the rest test.
    max_size : int, default=None
        If given, downscale every pair so its longer side is at most ``max_size`` pixels (image
        bilinear with antialiasing, mask nearest).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images``: list of uint8 ndarrays of shape (height, width, 3), sizes vary; ``masks``: list
        of uint8 ndarrays of shape (height, width), 1 = horse, 0 = background; ``names``: list of
        the file stems; ``DESCR``: a description with the citation.

    Notes
    -----
    Source: the Weizmann Horse Database, distributed by its authors for research use. Cite
    E. Borenstein and S. Ullman, "Class-specific, top-down segmentation", ECCV 2002.

    Examples
    --------
    >>> import numpy as np
    >>> from skhyper.datasets import load_horses
    >>> data = load_horses()
    >>> len(data.images), len(data.masks), len(data.names)
    (24, 24, 24)
    >>> image, mask = data.images[0], data.masks[0]
    >>> image.dtype, image.shape[2], image.shape[:2] == mask.shape
    (dtype('uint8'), 3, True)
    >>> np.unique(mask).tolist(), max(image.shape[:2]) <= 160
    ([0, 1], True)
    >>> len(load_horses(split="train").names), len(load_horses(split="test").names)
    (16, 8)
    """
    if split not in (None, "train", "test"):
        raise ValueError(
            f"The 'split' parameter of load_horses must be None, 'train' or 'test'. Got {split!r} "
            "instead."
        )
    if path is None:
        with as_file(files("skhyper") / "data" / "horses") as root:
            data = load_horses(root, split=split, max_size=max_size)
        data.DESCR = _HORSES_DESCR.format(
            what=f"Bundled demo sample (longer side <= 160 px): {len(data.names)} pairs, "
            f"split={split!r}.\nSee skhyper/data/horses/README.md for how it was made."
        )
        return data
    max_size = _check_max_size(max_size, "load_horses")
    root, found = _list_images(path, "images", "masks", "load_horses")
    names = sorted(found) if split is None else _split_names(root, sorted(found), split)
    data = _read_pairs(root, found, names, images="images", masks="masks", mask_suffix=".png",
                       max_size=max_size, func="load_horses")
    data.DESCR = _HORSES_DESCR.format(
        what=f"{len(names)} pairs loaded from {str(path)!r}, split={split!r}."
    )
    return data


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
    try:
        kp = np.asarray(keypoints, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"The 'keypoints' parameter of {func} must be an array of shape "
            f"(n_images, n_keypoints, 2) of (x, y) coordinates; got {type(keypoints).__name__} "
            f"({err})."
        ) from err
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
        with Image.open(image_file) as im:
            image = np.asarray(im.convert("RGB"), dtype=np.uint8)
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
