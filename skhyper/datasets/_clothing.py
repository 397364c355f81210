"""The clothing-parts set (Clothing Co-Parsing): street photos with 59-class part masks."""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from sklearn.utils import Bunch

from ._images import StrPath, _list_images, _split_names, read_pil, read_plane

_FOLDER = "clothing_parts"
_DATA_ENV = "SKHYPER_DATA"
# The development checkout sits next to the project's shared data: <checkout>/../shared/data.
_CHECKOUT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
_N_TRAIN_FULL, _N_FULL = 300, 502  # the standard split of the 502 pixel-annotated photos
_SOURCE = "https://github.com/bearpaw/clothing-co-parsing"

_DESCR = """\
Clothing parts: street-fashion photos of one person each with per-pixel labels of 59 classes
(clothing, accessories, skin, hair; 0 = background, also for other people in the photo).

{what}
Source: Clothing Co-Parsing (CCP), {source} (photos/ and annotations/pixel-level/).
Citation: W. Yang, P. Luo, L. Lin, "Clothing Co-Parsing by Joint Image Segmentation and
Labeling", CVPR 2014. License: Apache-2.0. The photos show identifiable people: use them for
research and evaluation only, and do not redistribute them or images derived from them.
"""


def _check_downsample(downsample: int) -> int:
    if (
        isinstance(downsample, (bool, np.bool_))
        or not isinstance(downsample, numbers.Integral)
        or downsample < 1
    ):
        raise ValueError(
            "The 'downsample' parameter of load_clothing_parts must be a positive int (1 keeps "
            f"the full resolution, 2 halves it). Got {downsample!r} instead."
        )
    return int(downsample)


def _default_root() -> Path:
    """``$SKHYPER_DATA/clothing_parts`` when the variable is set, else the checkout's data."""
    env = os.environ.get(_DATA_ENV)
    root = Path(env) / _FOLDER if env else _CHECKOUT_DATA / _FOLDER
    if not (root / "images").is_dir():
        where = (f"${_DATA_ENV}/{_FOLDER} = {str(root)!r}" if env
                 else f"{str(root)!r} ({_DATA_ENV} is not set)")
        raise FileNotFoundError(
            f"load_clothing_parts found no data at {where}. The photos are not bundled with "
            f"skhyper (they show identifiable people). Get them from {_SOURCE}: put photos/*.jpg "
            "in images/, save the 'groundtruth' of each annotations/pixel-level/*.mat as an "
            "8-bit PNG in masks/ and the names of label_list.mat in labels.json; then pass that "
            f"folder as path=, or set {_DATA_ENV} to the folder that holds {_FOLDER}/."
        )
    return root


def _read_names(root: Path) -> list[str]:
    label_file = root / "labels.json"
    if not label_file.is_file():
        raise ValueError(
            f"The 'path' parameter of load_clothing_parts points to {str(root)!r}, which has no "
            "labels.json (the class names: {\"0\": \"null\", \"1\": \"accessories\", ...})."
        )
    table = json.loads(label_file.read_text())
    if not isinstance(table, dict) or sorted(table, key=int) != [str(i) for i in range(len(table))]:
        raise ValueError(
            f"{str(label_file)!r} must map the class indices \"0\" .. \"n - 1\" to names; got "
            f"keys {sorted(table)[:5]}..."
        )
    return [str(table[str(i)]) for i in range(len(table))]


def _shrink_image(image: np.ndarray, step: int) -> np.ndarray:
    """Antialiased subsampling that keeps pixel ``[i, j]`` at ``[i * step, j * step]``.

    A Gaussian blur of sigma ``(step - 1) / 2`` (scikit-image's anti-aliasing default for
    ``rescale``; edges repeated) read at every ``step``-th pixel: the image pixels lie exactly
    where the mask pixels ``mask[::step, ::step]`` do, unlike a box or bilinear resize, which
    shifts the grid by half an original pixel.
    """
    sigma = (step - 1) / 2
    out = image.astype(np.float32)  # values stay 0..255
    # Separable: blur the rows and keep every step-th, then the same for the columns.
    out = gaussian_filter1d(out, sigma, axis=0, mode="nearest")[::step]
    out = gaussian_filter1d(out, sigma, axis=1, mode="nearest")[:, ::step]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _read_pair(
    image_file: Path, mask_file: Path, n_classes: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(read_pil(image_file, "RGB"), dtype=np.uint8)
    try:  # class indices: palette PNGs give their indices
        mask = read_plane(mask_file, labels=True)
    except ValueError as err:
        raise ValueError(f"Mask {str(mask_file)!r} must be an 8-bit single-channel PNG of "
                         f"class indices; {err}") from err
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(
            f"Mask {str(mask_file)!r} must be an 8-bit single-channel PNG of class indices; "
            f"got an array of shape {mask.shape} and dtype {mask.dtype}."
        )
    if mask.shape != image.shape[:2]:
        raise ValueError(
            f"Image {str(image_file)!r} has shape {image.shape[:2]} but its mask "
            f"{str(mask_file)!r} has shape {mask.shape}; they must have the same size."
        )
    if int(mask.max()) >= n_classes:
        raise ValueError(
            f"Mask {str(mask_file)!r} holds class {int(mask.max())}, but labels.json names "
            f"only classes 0 .. {n_classes - 1}."
        )
    if step > 1:
        image, mask = _shrink_image(image, step), mask[::step, ::step].copy()
    return image, mask


def load_clothing_parts(
    path: StrPath | None = None, *, split: str | None = None, downsample: int = 1
) -> Bunch:
    """Load the clothing-parts photos and their 59-class part masks (Clothing Co-Parsing).

    502 street-fashion photos, 550 pixels wide and about 800 to 870 high, each of one
    person, labelled per pixel with 59 classes: background (0, also other people), clothing
    items, accessories, skin and hair. About 3/4 of the pixels are background and many
    classes occur in a few images only. ``mask > 0`` gives a figure-ground mask.

    The photos are not bundled (they show identifiable people).

    Parameters
    ----------
    path : str or path-like, default=None
        Folder with ``images/<name>.jpg``, ``masks/<name>.png`` (8-bit class indices, the size
        of the image) and ``labels.json`` (``{"0": "null", "1": "accessories", ...}``).
        ``None`` looks in ``$SKHYPER_DATA/clothing_parts`` when the environment variable
        ``SKHYPER_DATA`` is set, else in ``../shared/data/clothing_parts`` next to a
        development checkout of skhyper.
    split : {"train", "test"}, default=None
        ``None`` returns every pair, sorted by name. Otherwise the pairs of that part, in
        permutation order: from ``split.txt`` (lines ``<name> train|test``) when the folder
        has one; else by the standard rule: names sorted,
        ``np.random.default_rng(0).permutation(n)``, the first ``round(n * 300 / 502)`` train
        (300 of the 502 photos), the rest test (202).
    downsample : int, default=1
        Keep every ``downsample``-th row and column. Masks: exactly
        ``mask[::downsample, ::downsample]`` (nearest, no new labels). Images: a Gaussian
        anti-aliasing blur (sigma ``(downsample - 1) / 2``) then the same pixels, so image
        and mask stay aligned pixel for pixel. ``downsample=2`` (half resolution) keeps
        experiments fast.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images``: list of uint8 ndarrays of shape (height, width, 3), sizes vary; ``masks``:
        list of uint8 ndarrays of shape (height, width) with class indices; ``names``: list of
        the file stems; ``target_names``: list of the class names, ``target_names[k]`` for
        class ``k``; ``DESCR``: a description with the source, citation and license.

    Raises
    ------
    FileNotFoundError
        With ``path=None``, when the data is not where it is looked for; the message says
        where to get it.
    ValueError
        When ``path`` is not such a folder, or a mask does not match its image or
        ``labels.json``.

    Notes
    -----
    Source: Clothing Co-Parsing, https://github.com/bearpaw/clothing-co-parsing (the
    pixel-annotated photos; the ``groundtruth`` of ``annotations/pixel-level/*.mat`` as PNG).
    Cite W. Yang, P. Luo, L. Lin, "Clothing Co-Parsing by Joint Image Segmentation and
    Labeling", CVPR 2014.

    Examples
    --------
    >>> from skhyper.datasets import load_clothing_parts
    >>> data = load_clothing_parts(split="test", downsample=2)  # doctest: +SKIP
    >>> len(data.images), data.target_names[:3]  # doctest: +SKIP
    (202, ['null', 'accessories', 'bag'])
    >>> data.images[0].shape[:2] == data.masks[0].shape  # doctest: +SKIP
    True
    """
    func = "load_clothing_parts"
    if split not in (None, "train", "test"):
        raise ValueError(
            f"The 'split' parameter of {func} must be None, 'train' or 'test'. Got {split!r} "
            "instead."
        )
    step = _check_downsample(downsample)
    root, found = _list_images(_default_root() if path is None else path, "images", "masks",
                               func)
    target_names = _read_names(root)
    names = sorted(found)
    if split is not None:
        names = _split_names(root, names, split, _N_TRAIN_FULL, _N_FULL)
    data = Bunch(images=[], masks=[], names=names, target_names=target_names)
    for name in names:
        mask_file = root / "masks" / f"{name}.png"
        if name not in found or not mask_file.is_file():
            missing = f"image {name!r}" if name not in found else f"mask {str(mask_file)!r}"
            raise ValueError(
                f"The 'path' parameter of {func} points to {str(root)!r}, where the {missing} "
                "is missing. Every image in images/ needs a mask masks/<name>.png."
            )
        image, mask = _read_pair(found[name], mask_file, len(target_names), step)
        data.images.append(image)
        data.masks.append(mask)
    data.DESCR = _DESCR.format(
        source=_SOURCE,
        what=f"{len(names)} pairs loaded from {str(root)!r}, split={split!r}, "
        f"downsample={step}.",
    )
    return data
