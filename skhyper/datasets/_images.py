"""Images with figure-ground masks: the bundled horse sample and a folder loader."""

from __future__ import annotations

import numbers
import os
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.utils import Bunch

from ..io import read_image, read_labels

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


def read_plane(path: Path, *, labels: bool = False) -> np.ndarray:
    """One 2-D image (or single-channel label image) read by :func:`skhyper.read_image` (or
    :func:`skhyper.read_labels`); a ValueError naming the file for a stack."""
    data = read_labels(path, single_channel=True) if labels else read_image(path)
    if data.is_stack:
        raise ValueError(
            f"{str(path)!r} is a stack of {data.n_planes} planes (axes {data.axes!r}); a data "
            "set holds one 2-D image per file."
        )
    return data.data


def read_pil(path: Path, mode: str) -> Image.Image:
    """:func:`read_plane` as a PIL image of ``mode`` (converted by PIL when it differs)."""
    im = Image.fromarray(read_plane(path))
    return im if im.mode == mode else im.convert(mode)


def _read_pair(
    image_file: Path, mask_file: Path, max_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    image = read_pil(image_file, "RGB")
    mask = read_pil(mask_file, "L")
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


def _split_names(
    root: Path, names: list[str], split: str, n_train_full: int = _N_TRAIN_FULL,
    n_full: int = _N_FULL,
) -> list[str]:
    """Return the stems of ``split`` in order: split.txt if present, else the standard rule
    (``names`` sorted, permuted with seed 0, the first ``round(n * n_train_full / n_full)``
    train)."""
    split_file = root / "split.txt"
    if split_file.is_file():
        parts = [line.split() for line in split_file.read_text().splitlines()]
        return [p[0] for p in parts if len(p) == 2 and p[1] == split]
    perm = np.random.default_rng(0).permutation(len(names))
    n_train = round(len(names) * n_train_full / n_full)
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

