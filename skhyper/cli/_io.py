"""Files of the command line: finding and matching inputs, reading images and label images,
writing label maps and probabilities (PNG, TIFF, NumPy, OME-Zarr) so that a killed run resumes.

Reading keeps what a microscope wrote: 8/16-bit grayscale, RGB, and multi-channel (e.g. 2-channel
``uint16``) TIFFs read with ``tifffile`` (channels moved last: ``(height, width, channels)``).
Every file is written under a temporary name and renamed when complete, so an output that
exists is whole.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ._args import CommandError

__all__ = [
    "IMAGE_SUFFIXES",
    "INPUT_SUFFIXES",
    "FORMATS",
    "find_inputs",
    "label_dtype",
    "match_labels",
    "output_names",
    "read_image",
    "read_labels",
    "stem_of",
    "write_output",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
INPUT_SUFFIXES = IMAGE_SUFFIXES + (".npy", ".zarr")
FORMATS = {"png": ".png", "tif": ".tif", "npy": ".npy", "zarr": ".ome.zarr"}
_MAX_CHANNELS = 32  # a leading / trailing axis longer than this is not taken for channels


def stem_of(path: Path) -> str:
    """The name without its format suffix (``a.ome.tif`` and ``a.tif`` both give ``a``)."""
    name = path.name
    for suffix in (".ome.zarr", ".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.suffix else name


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def find_inputs(specs: Iterable[str], option: str, suffixes: tuple[str, ...]) -> list[Path]:
    """Files named by ``specs``: files, folders (their files with ``suffixes``) or globs."""
    found: list[Path] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if glob.has_magic(spec) and not path.exists():
            hits = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec)))
            hits = [p for p in hits if _suffix(p) in suffixes and (p.is_file() or
                                                                   _suffix(p) == ".zarr")]
            if not hits:
                raise CommandError(
                    f"{option} {spec!r} matches no {'/'.join(s[1:] for s in suffixes)} file.")
            found += hits
        elif path.is_dir() and _suffix(path) != ".zarr":
            hits = sorted(p for p in path.iterdir() if _suffix(p) in suffixes
                          and not p.name.startswith(".") and (p.is_file() or
                                                              _suffix(p) == ".zarr"))
            if not hits:
                raise CommandError(
                    f"{option} {spec!r} is a folder without "
                    f"{'/'.join(s[1:] for s in suffixes)} files.")
            found += hits
        elif path.exists():
            if _suffix(path) not in suffixes:
                raise CommandError(
                    f"{option} {spec!r} is not a supported file: expected "
                    f"{', '.join(suffixes)}.")
            found.append(path)
        else:
            raise CommandError(
                f"{option} {spec!r} does not exist: give a file, a folder or a glob.")
    return [p.resolve() for p in found]


def by_unique_stem(paths: list[Path], option: str, why: str) -> dict[str, Path]:
    """``{name: path}``, refusing two files of one name (``why`` says what it would break)."""
    seen: dict[str, Path] = {}
    for path in paths:
        stem = stem_of(path)
        if stem in seen:
            raise CommandError(
                f"{option} has two images named {stem!r} ({str(seen[stem])!r} and "
                f"{str(path)!r}): {why}.")
        seen[stem] = path
    return seen


def match_labels(images: list[Path], labels: list[Path], label_suffix: str) -> list[tuple[Path,
                                                                                        Path]]:
    """Pair every image with the label image of the same name (plus ``label_suffix``)."""
    by_stem: dict[str, Path] = {}
    for path in labels:
        stem = stem_of(path)
        if label_suffix:
            if not stem.endswith(label_suffix):
                continue
            stem = stem[: -len(label_suffix)]
        if stem in by_stem:
            raise CommandError(
                f"LABELS has two label images for {stem!r}: {by_stem[stem].name!r} and "
                f"{path.name!r}; keep one.")
        by_stem[stem] = path
    seen = by_unique_stem(images, "IMAGES", "names must be unique to match labels")
    missing = [s for s in seen if s not in by_stem]
    extra = [s for s in by_stem if s not in seen]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} image(s) without a label image "
                         f"(e.g. {seen[missing[0]].name!r}, looked for "
                         f"'{missing[0]}{label_suffix}.png/.tif')")
        if extra:
            parts.append(f"{len(extra)} label image(s) without an image "
                         f"(e.g. {by_stem[extra[0]].name!r})")
        raise CommandError(
            f"IMAGES and LABELS do not match by name: {'; '.join(parts)}. Give each image a "
            "label image of the same name (unlabelled pixels 0), or set --label-suffix "
            "(e.g. '_labels' for a_labels.png).")
    return [(seen[s], by_stem[s]) for s in seen]


# ----------------------------------------------------------------------------- reading


def _channels_last(arr: Any, axes: str, path: Path) -> Any:
    """``(height, width[, channels])`` from an array with tifffile-style ``axes``."""
    keep = [i for i, (a, n) in enumerate(zip(axes, arr.shape)) if n > 1 or a in "YX"]
    if len(keep) != arr.ndim:
        arr = arr.squeeze(axis=tuple(i for i in range(arr.ndim) if i not in keep))
        axes = "".join(axes[i] for i in keep)
    if (len(axes) == 3 and axes[0] in "QI" and arr.shape[0] > _MAX_CHANNELS
            and arr.shape[2] <= 4 < arr.shape[1]):  # (height, width, channels) saved as pages
        axes = "YXS"
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"{path.name} has axes {axes!r} without Y and X: not an image.")
    others = [i for i, a in enumerate(axes) if a not in "YX"]
    if len(others) > 1 or (others and arr.shape[others[0]] > _MAX_CHANNELS):
        raise ValueError(
            f"{path.name} has shape {tuple(arr.shape)} (axes {axes!r}); skhyper reads 2-D images "
            "with at most one channel axis: save one plane per file (see skhyper.split_planes).")
    order = [axes.index("Y"), axes.index("X")] + others
    return arr.transpose(order) if order != list(range(arr.ndim)) else arr


def _read_tiff(path: Path, large_pixels: int | None) -> tuple[Any, bool]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape, axes = series.shape, series.axes
        big = large_pixels is not None and _plane_pixels(shape, axes) > large_pixels
        if not big:
            return _channels_last(series.asarray(), axes, path), False
    try:  # a huge TIFF: read lazily, window by window
        import dask.array as da
        import zarr

        store = tifffile.imread(path, aszarr=True)
        z = zarr.open(store, mode="r")
        if not hasattr(z, "shape"):
            z = z["0"]
        return _channels_last(da.from_zarr(z), axes, path), True
    except Exception:  # noqa: BLE001 - no zarr / dask, or a layout they cannot window
        return _channels_last(tifffile.imread(path), axes, path), True


def _plane_pixels(shape: tuple[int, ...], axes: str) -> int:
    if "Y" in axes and "X" in axes:
        return int(shape[axes.index("Y")]) * int(shape[axes.index("X")])
    return int(np.prod(sorted(shape)[-2:]))


def _read_zarr(path: Path) -> Any:
    try:
        import dask.array as da
        import zarr
    except ImportError:
        raise ValueError(f"{path.name}: reading Zarr needs 'pip install zarr dask'.") from None
    z = zarr.open(path, mode="r")
    axes = None
    if not hasattr(z, "shape"):  # a group: OME-Zarr, take the full-resolution level
        attrs = dict(z.attrs)
        ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        level = ms[0]["datasets"][0]["path"] if ms else "0"
        if ms and ms[0].get("axes"):
            axes = "".join(a["name"] if isinstance(a, str) else a["name"]
                           for a in ms[0]["axes"]).upper()
        z = z[level]
    arr = da.from_zarr(z)
    if axes is None:
        axes = "YX" if arr.ndim == 2 else ("CYX" if arr.shape[0] <= _MAX_CHANNELS
                                          and arr.shape[-1] > _MAX_CHANNELS else "YXC")
    return _channels_last(arr, axes, path)


_PIL_KEPT = {"L", "RGB", "I", "F", "I;16", "I;16L", "I;16B"}


def read_image(path: Path, large_pixels: int | None = None) -> tuple[Any, bool]:
    """An image and whether it is large (more than ``large_pixels`` pixels).

    Small images come back as numpy arrays ``(height, width[, channels])`` in their own
    dtype; large ones as lazy (dask) arrays or memory maps when the format allows.
    """
    suffix = _suffix(path)
    if suffix in (".tif", ".tiff"):
        return _read_tiff(path, large_pixels)
    if suffix == ".npy":
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        arr = _channels_last(arr, "YX" if arr.ndim == 2 else "YXS", path)
        big = large_pixels is not None and arr.shape[0] * arr.shape[1] > large_pixels
        return (arr if big else np.array(arr)), big
    if suffix == ".zarr":
        arr = _read_zarr(path)
        big = large_pixels is not None and arr.shape[0] * arr.shape[1] > large_pixels
        return (arr if big else arr.compute()), big
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in _PIL_KEPT:
            im = im.convert("L" if im.mode in ("1", "LA") else "RGB")
        arr = np.asarray(im)
    big = large_pixels is not None and arr.shape[0] * arr.shape[1] > large_pixels
    return arr, big


def read_labels(path: Path) -> np.ndarray:
    """A label image as a 2-D integer array (palette PNGs give their indices)."""
    if _suffix(path) in (".tif", ".tiff", ".npy", ".zarr"):
        arr, _ = read_image(path)
        arr = np.asarray(arr)
    else:
        from PIL import Image

        with Image.open(path) as im:
            if im.mode == "1":
                im = im.convert("L")
            arr = np.asarray(im)
    if arr.ndim == 3:
        if all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, arr.shape[2])):
            arr = arr[..., 0]
        else:
            raise ValueError(
                f"{path.name} is a colour image of shape {arr.shape}; label images must have one "
                "channel of integer labels (0 = unlabelled), e.g. a napari Labels layer saved "
                "as PNG or TIFF.")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{path.name} holds non-integer values; labels must be integers.")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{path.name} has pixel type {arr.dtype}; labels must be integers.")
    return arr


# ----------------------------------------------------------------------------- writing


def label_dtype(classes: np.ndarray, fmt: str) -> np.dtype:
    """The dtype of written label maps, or a CommandError when ``fmt`` cannot hold the classes."""
    classes = np.asarray(classes)
    if classes.dtype.kind not in "iub":
        raise CommandError(
            f"The model's classes {classes.tolist()[:5]} are not integers: label images cannot "
            "hold them. Write probabilities only: --proba --no-labels.")
    low, high = int(classes.min()), int(classes.max())
    for dt in (np.uint8, np.uint16, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= low and high <= info.max:
            break
    if fmt == "png" and dt not in (np.uint8, np.uint16):
        raise CommandError(
            f"--format png holds labels 0..65535; the model's classes span {low}..{high}. Use "
            "--format tif, npy or zarr.")
    return np.dtype(dt)


def output_names(stem: str, fmt: str, *, labels: bool, proba: bool) -> list[str]:
    """File names of one image's outputs."""
    ext = FORMATS[fmt]
    return ([f"{stem}{ext}"] if labels else []) + ([f"{stem}_proba{ext}"] if proba else [])


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_output(path: Path, data: Any, fmt: str, *, kind: str) -> None:
    """Write ``data`` (labels ``(h, w)`` or probabilities ``(h, w, c)``, numpy or dask) whole.

    The file is written under a temporary name and renamed when complete.
    """
    tmp = _partial(path)
    if fmt == "zarr":
        _remove(tmp)
        _write_ome_zarr(tmp, data, kind=kind, name=path.name)
        if path.is_dir():
            _remove(path)
    else:  # a file: writing truncates a stale partial one, os.replace swaps it in
        data = np.asarray(data)
        if fmt == "png":
            from PIL import Image

            Image.fromarray(data).save(tmp, format="PNG", compress_level=1)
        elif fmt == "tif":
            import tifffile

            if kind == "proba":
                tifffile.imwrite(tmp, np.ascontiguousarray(data.transpose(2, 0, 1)),
                                 photometric="minisblack", metadata={"axes": "CYX"})
            else:
                tifffile.imwrite(tmp, data, photometric="minisblack", compression="zlib",
                                 metadata={"axes": "YX"})
        else:
            with open(tmp, "wb") as f:
                np.save(f, data, allow_pickle=False)
    os.replace(tmp, path)


def _write_ome_zarr(path: Path, data: Any, *, kind: str, name: str) -> None:
    """An OME-Zarr (NGFF 0.4, Zarr format 2) image: one full-resolution level ``0``."""
    try:
        import zarr
    except ImportError:
        raise CommandError("--format zarr needs the zarr package: pip install zarr.") from None
    if kind == "proba":
        data = data.transpose(2, 0, 1)
        axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
                {"name": "x", "type": "space"}]
    else:
        axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    chunks = tuple(1 if ax["type"] == "channel" else min(1024, n)
                   for ax, n in zip(axes, data.shape))
    if hasattr(data, "dask"):  # one task per Zarr chunk: no two tasks write the same chunk
        data = data.rechunk(tuple(1 if c == 1 else data.chunksize[i]
                                  for i, c in enumerate(chunks)))
        chunks = data.chunksize
    v3 = int(zarr.__version__.split(".")[0]) >= 3
    if v3:
        root = zarr.open_group(str(path), mode="w", zarr_format=2)
        arr = root.create_array("0", shape=data.shape, dtype=data.dtype, chunks=chunks,
                                chunk_key_encoding={"name": "v2", "separator": "/"})
    else:  # pragma: no cover - zarr 2
        root = zarr.open_group(str(path), mode="w")
        arr = root.create_dataset("0", shape=data.shape, dtype=data.dtype, chunks=chunks,
                                  dimension_separator="/")
    if hasattr(data, "dask"):
        import dask.array as da

        da.store(data, arr, lock=False)
    else:
        arr[...] = np.asarray(data)
    root.attrs["multiscales"] = json.loads(json.dumps([{
        "version": "0.4", "name": name, "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0] * len(axes)}]}],
    }]))
