"""Files of the command line: finding and matching inputs, writing label maps and
probabilities (PNG, TIFF, NumPy, OME-Zarr) so that a killed run resumes.

Images and label images are read by :func:`skhyper.read_image` / :func:`skhyper.read_labels`
(one reader and one axis policy for the command line, :mod:`skhyper.parallel` and the
datasets). A stack (a multi-page TIFF, a z-stack OME-Zarr) gives a label stack with the same
plane axes. Every file is written under a temporary name and renamed when complete, so an
output that exists is whole.
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

from ..io import IMAGE_SUFFIXES as READABLE
from ._args import CommandError

__all__ = [
    "IMAGE_SUFFIXES",
    "INPUT_SUFFIXES",
    "FORMATS",
    "find_inputs",
    "label_dtype",
    "match_labels",
    "output_names",
    "stem_of",
    "write_output",
]

INPUT_SUFFIXES = READABLE  # what skhyper.read_image reads
IMAGE_SUFFIXES = tuple(s for s in READABLE if s not in (".npy", ".zarr"))
FORMATS = {"png": ".png", "tif": ".tif", "npy": ".npy", "zarr": ".ome.zarr"}


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


def _reorder(data: Any, axes: str, order: str) -> Any:
    """``data`` (axes ``axes``) transposed to the axes order ``order``."""
    return data.transpose([axes.index(a) for a in order]) if order != axes else data


def write_output(path: Path, data: Any, fmt: str, *, kind: str, axes: str | None = None
                 ) -> None:
    """Write ``data`` (labels, or probabilities with classes last; numpy or dask) whole.

    ``axes`` names the axes of ``data`` (plane axes first, ``C`` last for probabilities,
    :meth:`skhyper.io.ImageData.result_axes`); None: ``"YX"`` for labels, ``"YXC"`` for
    probabilities. PNG holds one label plane. The file is written under a temporary name and
    renamed when complete.
    """
    axes = axes or ("YXC" if kind == "proba" else "YX")
    if fmt == "png" and axes != "YX":
        raise CommandError(
            f"--format png holds one label plane; {path.name} would be a stack with axes "
            f"{axes!r}: use --format tif, npy or zarr (or auto).")
    tmp = _partial(path)
    if fmt == "zarr":
        _remove(tmp)
        _write_ome_zarr(tmp, data, axes, name=path.name)
        if path.is_dir():
            _remove(path)
    else:  # a file: writing truncates a stale partial one, os.replace swaps it in
        data = np.asarray(data)
        if fmt == "png":
            from PIL import Image

            Image.fromarray(data).save(tmp, format="PNG", compress_level=1)
        elif fmt == "tif":
            import tifffile

            planes = "".join(a for a in axes if a not in "CYX")
            order = planes + ("C" if "C" in axes else "") + "YX"  # channels before the plane
            tifffile.imwrite(tmp, np.ascontiguousarray(_reorder(data, axes, order)),
                             photometric="minisblack", metadata={"axes": order},
                             compression=None if kind == "proba" else "zlib")
        else:
            with open(tmp, "wb") as f:
                np.save(f, data, allow_pickle=False)
    os.replace(tmp, path)


_OME_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


def _write_ome_zarr(path: Path, data: Any, axes: str, *, name: str) -> None:
    """An OME-Zarr (NGFF 0.4, Zarr format 2) image: one full-resolution level ``0``, axes in
    the order NGFF asks (time and other plane axes, channels, then space)."""
    try:
        import zarr
    except ImportError:
        raise CommandError("--format zarr needs the zarr package: pip install zarr.") from None
    order = "".join(a for a in axes if a not in "CZYX") + "".join(a for a in "CZYX" if a in axes)
    data = _reorder(data, axes, order)
    meta = [{"name": a.lower(), **({"type": _OME_TYPES[a]} if a in _OME_TYPES else {})}
            for a in order]
    chunks = tuple(min(1024, n) if a in "YX" else 1 for a, n in zip(order, data.shape))
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
        "version": "0.4", "name": name, "axes": meta,
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0] * len(order)}]}],
    }]))
