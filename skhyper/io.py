"""Image files as arrays: one reader, one axis policy, for every part of skhyper.

:func:`read_image` reads PNG, JPEG, BMP, TIFF (1/8/16/32-bit, float, RGB(A), multi-channel,
multi-page, ImageJ and OME-TIFF), OME-Zarr / Zarr and ``.npy`` files; :func:`read_labels`
reads label images with the same rules. Both return an :class:`ImageData`: the pixels and the
name of each axis, so that a z-stack is never taken for the channels of one image.

Axis policy
-----------
The file's own metadata names the axes (tifffile's ``series.axes``, which covers ImageJ and
OME-TIFF, and the OME-Zarr ``multiscales`` axes):

* ``Y`` and ``X`` span a plane; ``C`` (channels) and ``S`` (samples, e.g. RGB) are the
  channels of every plane (both present: merged into one channel axis, ``C`` major);
* every other letter -- ``Z``, ``T``, ``I`` (a sequence of pages), ``Q`` (an axis tifffile
  could not name) and the rarer ones -- indexes planes. A multi-page TIFF without metadata
  is therefore a stack of planes, never one multi-channel image;
* axes of length 1 are dropped (a one-plane OME-TIFF ``TCZYX`` of one channel reads ``YX``).

Files without axis metadata follow fixed rules: PNG / JPEG / BMP are ``YX`` or ``YXC``; a
plain Zarr array or ``.npy`` file follows skhyper's array convention, ``YX`` (2-D), ``YXC``
(3-D: one image with channels last) or ``IYXC`` (4-D: a stack of images). ``axes=``
overrides all of this with one letter per axis of the stored array (e.g. ``"CYX"`` for a
channel-first array, ``"ZYX"`` for a z-stack, ``"YXC"`` for pixels saved as pages).

Pixel types are kept: 8/16-bit stay ``uint8`` / ``uint16``, 1-bit images become ``bool``
(``False`` / ``True``, read as 0 and 1 by :func:`skhyper.features.to_float_image`), floats
stay floats. PNG / JPEG alpha is dropped (``RGBA`` reads as ``RGB``, ``LA`` as ``L``) and a
palette image reads as its colours (:func:`read_labels` keeps the palette indices).

The result is put in a fixed order, plane axes (in the file's order), ``Y``, ``X``, then ``C``
when there are channels, so ``ImageData.axes`` is e.g. ``"YX"``, ``"YXC"``, ``"ZYX"`` or
``"TZYXC"``; :meth:`ImageData.planes` splits a stack with :func:`skhyper.split_planes` and
:meth:`ImageData.stack` puts per-plane results back with :func:`skhyper.stack_planes`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .stacks import check_axes, split_planes, stack_planes

__all__ = ["IMAGE_SUFFIXES", "ImageData", "read_image", "read_labels"]

#: File suffixes :func:`read_image` reads (a ``.zarr`` is a folder).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy", ".zarr")
"""File suffixes :func:`read_image` reads (Zarr: a folder)."""

_CHANNELS = "CS"
_TIFF = (".tif", ".tiff")
# PIL modes kept as they are; others are converted (alpha dropped, palettes to colours)
_PIL_KEPT = {"1", "L", "RGB", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_PIL_CONVERT = {"LA": "L", "La": "L", "PA": "RGB", "P": "RGB"}


@dataclass(frozen=True)
class ImageData:
    """Pixels read from a file and the name of each of their axes.

    Keeping the axis names with the pixels lets a stack be split into the 2-D planes the
    estimators take and their per-plane results be stacked back in the file's layout.

    Parameters
    ----------
    data : ndarray or dask array
        The pixels, axes in the order of ``axes``; a dask array (or a memory map) when read
        lazily (``lazy_above``).
    axes : str
        One letter per axis of ``data``: plane axes first (``Z``, ``T``, ``I``, ...), then
        ``Y``, ``X``, then ``C`` when there are channels, e.g. ``"YX"``, ``"YXC"``,
        ``"ZYX"``.
    path : str or None, default=None
        The file read.

    Attributes
    ----------
    data : ndarray or dask array
        The pixels, as given.
    axes : str
        The axis letters, as given.
    path : str or None
        The file read.
    plane_axes : str
        The axes that index planes (``""`` for a single 2-D image).
    is_stack : bool
        Whether the file holds more than one plane.
    n_planes : int
        The number of 2-D planes.
    plane_shape : tuple of int
        ``(height, width)`` of each plane.
    lazy : bool
        Whether ``data`` is read on demand (a dask array or a memory map).
    name : str
        The file name (or ``"image"``), for messages.

    See Also
    --------
    read_image : Read an image or an image stack.
    read_labels : Read a label image or a label stack.

    Examples
    --------
    >>> import numpy as np
    >>> data = ImageData(np.zeros((3, 4, 5), dtype=np.uint16), "ZYX")
    >>> data.is_stack, data.n_planes, data.plane_axes, [p.shape for p in data.planes()]
    (True, 3, 'Z', [(4, 5), (4, 5), (4, 5)])
    >>> data.stack([p > 0 for p in data.planes()]).shape
    (3, 4, 5)
    """

    data: Any
    axes: str
    path: str | None = None

    @property
    def plane_axes(self) -> str:
        """The axes that index planes (``""`` for a single 2-D image)."""
        return "".join(a for a in self.axes if a not in "YXC")

    @property
    def is_stack(self) -> bool:
        """Whether the file holds more than one plane."""
        return bool(self.plane_axes)

    @property
    def n_planes(self) -> int:
        """The number of 2-D planes (``(Y, X)`` or ``(Y, X, C)`` images)."""
        return int(np.prod([self.data.shape[self.axes.index(a)] for a in self.plane_axes]))

    @property
    def plane_shape(self) -> tuple[int, int]:
        """``(height, width)`` of each plane."""
        return (int(self.data.shape[self.axes.index("Y")]),
                int(self.data.shape[self.axes.index("X")]))

    @property
    def lazy(self) -> bool:
        """Whether ``data`` is read on demand (a dask array or a memory map)."""
        return hasattr(self.data, "dask") or isinstance(self.data, np.memmap)

    @property
    def name(self) -> str:
        """The file name (or ``"image"``), for messages."""
        return Path(self.path).name if self.path else "image"

    def planes(self) -> list[Any]:
        """The 2-D planes, ``(Y, X)`` or ``(Y, X, C)``, in row-major order of the plane axes.

        Returns
        -------
        planes : list of array
            The planes of ``data`` (one for a single image), as :func:`skhyper.split_planes`
            gives them; views (or lazy slices), not copies.
        """
        return split_planes(self.data, self.axes)

    def stack(self, results: list[Any]) -> np.ndarray:
        """Per-plane results as one array with the plane axes first.

        Parameters
        ----------
        results : list of array-like
            One result per plane of :meth:`planes`, in the same order, all of one shape
            (e.g. label maps ``(Y, X)`` or probabilities ``(Y, X, n_classes)``).

        Returns
        -------
        stacked : ndarray
            The results stacked with the plane axes of ``data`` first
            (:func:`skhyper.stack_planes`), its axes :meth:`result_axes`; the single result
            of a 2-D image as it is.
        """
        if not self.is_stack:
            (only,) = results
            return np.asarray(only)
        return stack_planes(list(results), self.axes, self.data.shape)

    def result_axes(self, trailing: str = "") -> str:
        """The axes of :meth:`stack`'s result: ``axes`` without ``C``, plus ``trailing``.

        Parameters
        ----------
        trailing : str, default=""
            Letters of the result's own trailing axes, e.g. ``"C"`` for probabilities.

        Returns
        -------
        axes : str
            One letter per axis of the stacked result, e.g. ``"ZYX"`` for label maps of a
            ``"ZYXC"`` stack.

        Examples
        --------
        >>> import numpy as np
        >>> data = ImageData(np.zeros((2, 4, 5, 3)), "ZYXC")
        >>> data.result_axes(), data.result_axes("C")
        ('ZYX', 'ZYXC')
        """
        return self.axes.replace("C", "") + trailing


# ----------------------------------------------------------------------------- axes


def _order(arr: Any, axes: str, where: str) -> tuple[Any, str]:
    """``arr`` with channels merged into one ``C``, length-1 axes dropped, and its axes put
    in the order planes, ``Y``, ``X``, ``C``."""
    letters = check_axes(axes, arr.ndim, where=where)
    chans = [a for a in letters if a in _CHANNELS]
    planes = [a for a in letters if a not in "YX" and a not in _CHANNELS]
    order = [*planes, "Y", "X", *sorted(chans)]  # C before S: C major when merged
    arr = arr.transpose([letters.index(a) for a in order])
    shape = arr.shape
    if len(chans) == 2:
        arr = arr.reshape(*shape[:-2], shape[-2] * shape[-1])
        order = order[:-1]
        shape = arr.shape
    if chans:
        order[-1] = "C"
    drop = tuple(i for i, (a, n) in enumerate(zip(order, shape)) if n == 1 and a not in "YX")
    if drop:
        arr = arr.reshape([n for i, n in enumerate(shape) if i not in drop])
        order = [a for i, a in enumerate(order) if i not in drop]
    return arr, "".join(order)


def _default_axes(ndim: int, where: str) -> str:
    """skhyper's array convention for files without axis names (``.npy``, plain Zarr)."""
    if ndim in (2, 3, 4):
        return ("YX", "YXC", "IYXC")[ndim - 2]
    raise ValueError(
        f"{where.strip()} holds a {ndim}-D array without axis names: pass axes= with one letter "
        "per axis, e.g. axes='TZYX' or 'CZYX'."
    )


def _check_axes_arg(axes: Any) -> None:
    if axes is not None and not isinstance(axes, str):
        raise TypeError(
            "The 'axes' parameter must be None (the file's own axes) or a string of axis "
            f"letters such as 'ZYX', 'YXC' or 'CYX'; got {type(axes).__name__}."
        )


# ----------------------------------------------------------------------------- formats


def _read_tiff(path: Path, axes: str | None, lazy_above: int | None) -> tuple[Any, str]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ValueError(f"{path.name} is a TIFF file without images.")
        if len(tif.series) > 1:
            shapes = ", ".join(f"{s.shape} ({s.axes})" for s in tif.series[:4])
            raise ValueError(
                f"{path.name} holds {len(tif.series)} image series of different shapes "
                f"({shapes}); skhyper reads files of one series: save each as its own file."
            )
        series = tif.series[0]
        shape, found = tuple(series.shape), (axes or series.axes).upper()
        check_axes(found, len(shape), where=f" for {path.name} (shape {shape})")
        if not _is_large(shape, found, lazy_above):
            return series.asarray(), found
    return _lazy_tiff(path), found


def _is_large(shape: tuple[int, ...], axes: str, lazy_above: int | None) -> bool:
    if lazy_above is None:
        return False
    return int(shape[axes.index("Y")]) * int(shape[axes.index("X")]) > lazy_above


def _lazy_tiff(path: Path) -> Any:
    import tifffile

    try:  # window by window through zarr and dask
        import dask.array as da
        import zarr

        z = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
        return da.from_zarr(z if hasattr(z, "shape") else z["0"])
    except ImportError:
        return tifffile.imread(path)  # no zarr / dask: in memory


def _read_zarr(path: Path, axes: str | None, lazy_above: int | None) -> tuple[Any, str]:
    try:
        import zarr
    except ImportError:
        raise ImportError(
            f"{path.name}: reading Zarr needs the zarr package: pip install zarr (and dask "
            "to read large images window by window)."
        ) from None
    z = zarr.open(str(path), mode="r")
    found = None
    if not hasattr(z, "shape"):  # a group: OME-Zarr, its full-resolution level
        attrs = dict(z.attrs)
        ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        z = z[ms[0]["datasets"][0]["path"] if ms else "0"]
        if ms and ms[0].get("axes"):
            found = "".join(a if isinstance(a, str) else a["name"] for a in ms[0]["axes"])
    found = (axes or found or _default_axes(len(z.shape), f" {path.name}")).upper()
    check_axes(found, len(z.shape), where=f" for {path.name} (shape {tuple(z.shape)})")
    if _is_large(tuple(z.shape), found, lazy_above):
        try:
            import dask.array as da

            return da.from_zarr(z), found
        except ImportError:
            pass
    return np.asarray(z[...]), found


def _read_npy(path: Path, axes: str | None, lazy_above: int | None) -> tuple[Any, str]:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    found = (axes or _default_axes(arr.ndim, f" {path.name}")).upper()
    check_axes(found, arr.ndim, where=f" for {path.name} (shape {arr.shape})")
    return (arr if _is_large(arr.shape, found, lazy_above) else np.array(arr)), found


def _pil_array(im: Any, palette_indices: bool) -> np.ndarray:
    if im.mode == "P" and palette_indices:
        return np.asarray(im)
    if im.mode not in _PIL_KEPT:
        im = im.convert(_PIL_CONVERT.get(im.mode, "RGB"))
    arr = np.asarray(im)
    if arr.dtype.byteorder == ">":  # I;16B
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _read_pil(path: Path, axes: str | None, palette_indices: bool) -> tuple[Any, str]:
    from PIL import Image

    with Image.open(path) as im:
        n = getattr(im, "n_frames", 1)
        frames = []
        for i in range(n):  # an animated PNG / GIF: a sequence of planes
            im.seek(i)
            frames.append(_pil_array(im, palette_indices))
    arr = frames[0] if n == 1 else np.stack(frames)
    found = axes or ("I" if n > 1 else "") + ("YX" if frames[0].ndim == 2 else "YXC")
    return arr, found.upper()


def _read(path: Any, axes: Any, lazy_above: Any, palette_indices: bool) -> ImageData:
    _check_axes_arg(axes)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"The 'path' parameter must be a str or a path; got {type(path).__name__}.")
    if lazy_above is not None and (isinstance(lazy_above, bool) or not isinstance(
            lazy_above, (int, np.integer)) or lazy_above < 1):
        raise ValueError(
            f"The 'lazy_above' parameter must be None or a positive int; got {lazy_above!r}.")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such image file: {str(path)!r}.")
    suffix = path.suffix.lower()
    try:
        if suffix in _TIFF:
            arr, found = _read_tiff(path, axes, lazy_above)
        elif suffix == ".zarr":
            arr, found = _read_zarr(path, axes, lazy_above)
        elif suffix == ".npy":
            arr, found = _read_npy(path, axes, lazy_above)
        else:
            arr, found = _read_pil(path, axes, palette_indices)
    except (OSError, SyntaxError, ValueError, KeyError) as err:  # PIL: SyntaxError at times
        if isinstance(err, ValueError) and str(err).startswith((path.name, "The '")):
            raise  # ours, naming the file or the parameter already
        raise ValueError(f"cannot read {path.name!r} as an image: {err}") from err
    arr, order = _order(arr, found, f" for {path.name} (shape {tuple(arr.shape)})")
    return ImageData(arr, order, str(path))


def read_image(path: str | os.PathLike, axes: str | None = None, *,
               lazy_above: int | None = None) -> ImageData:
    """Read an image file (or a stack of them in one file) with its axes.

    Parameters
    ----------
    path : str or path-like
        A PNG, JPEG, BMP, TIFF / OME-TIFF, ``.npy`` file or a Zarr / OME-Zarr folder.
    axes : str, default=None
        One letter per axis of the stored array (e.g. ``"ZYX"``, ``"YXC"``, ``"CYX"``), for
        files whose metadata names no axes or names them wrongly. None: the file's own axes
        (see the module's axis policy).
    lazy_above : int, default=None
        Planes of more pixels than this come back lazily: TIFF and Zarr as dask arrays (when
        zarr and dask are installed), ``.npy`` as a memory map. None: always in memory.

    Returns
    -------
    ImageData
        ``data`` in the order planes, ``Y``, ``X``, ``C`` (the file's dtype; 1-bit as bool)
        and its ``axes``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file cannot be decoded or its axes lack ``Y`` / ``X``; a bad ``axes``.
    ImportError
        A Zarr file without the zarr package.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, tifffile
    >>> path = os.path.join(tempfile.mkdtemp(), "z.tif")
    >>> tifffile.imwrite(path, np.zeros((3, 8, 9), np.uint16), photometric="minisblack")
    >>> img = read_image(path)                                  # 3 pages, no axis names
    >>> img.axes, img.data.shape, len(img.planes())
    ('QYX', (3, 8, 9), 3)
    >>> read_image(path, axes="CYX").axes                       # told: 3 channels
    'YXC'
    """
    return _read(path, axes, lazy_above, palette_indices=False)


def read_labels(path: str | os.PathLike, axes: str | None = None, *,
                single_channel: bool = False) -> ImageData:
    """Read a label image (or a label stack) as integers, with the axis policy of
    :func:`read_image`.

    Palette PNGs give their indices, 1-bit images 0 / 1 (``uint8``), floats holding whole
    numbers ``int64``; a colour image whose channels are equal gives one of them. A label
    stack splits into the planes of the image stack it labels.

    Parameters
    ----------
    path : str or path-like
        A label image file (PNG, TIFF / OME-TIFF, ``.npy``, ...) or a Zarr / OME-Zarr folder.
    axes : str, default=None
        As for :func:`read_image`.
    single_channel : bool, default=False
        Refuse every file with channels, even equal ones (a data set's masks).

    Returns
    -------
    ImageData
        Integer ``data`` without a ``C`` axis.

    Raises
    ------
    ValueError
        Colour labels, non-integer values, or as :func:`read_image`.
    """
    img = _read(path, axes, None, palette_indices=True)
    arr, order = img.data, img.axes
    if order.endswith("C"):
        first = arr[..., 0]
        if single_channel or not all(np.array_equal(first, arr[..., c])
                                     for c in range(1, arr.shape[-1])):
            raise ValueError(
                f"{img.name} is a colour image of shape {arr.shape} (axes {order}); label "
                f"images must have one channel{'' if single_channel else ' (or equal ones)'} of "
                "integer labels (0 = unlabelled), e.g. a napari Labels layer saved as PNG or "
                "TIFF.")
        arr, order = first, order[:-1]
    return ImageData(_integer_labels(arr, img.name), order, img.path)


def _integer_labels(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} holds non-integer values; labels must be integers.")
        return arr.astype(np.int64)
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} has pixel type {arr.dtype}; labels must be integers.")
    return arr
