"""Segment a folder of image files, and planes too large for memory (no Qt).

Files are read with :func:`skhyper.io.read_image` (every format and axis rule of the CLI);
each image's labels go to ``<output folder>/<stem>.tif`` (a TIFF with its axes, zlib), written
under a temporary name and renamed when complete, so an interrupted run leaves no half file
and a rerun resumes: outputs that exist are skipped. A file that fails is reported by name and
the others go on. A plane of more than ``large_above`` pixels goes through
:func:`skhyper.parallel.predict_large` (chunk by chunk), not ``model.predict``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LARGE_PLANE", "folder_files", "is_large", "predict_plane", "segment_files",
           "summary"]

LARGE_PLANE = 4096 * 4096  # pixels of a plane above which predict_large segments it


def is_large(plane: Any, large_above: int = LARGE_PLANE) -> bool:
    """Whether a plane has more pixels than ``large_above`` (then :func:`predict_plane`
    segments it chunk by chunk)."""
    return int(plane.shape[0]) * int(plane.shape[1]) > large_above


def large_confidence(model: Any, plane: Any, *, chunks: int = 1024) -> np.ndarray:
    """``predict_proba``'s maximum per pixel of a large plane, through ``predict_large``."""
    from ..parallel import predict_large

    proba = predict_large(model, plane, method="predict_proba", chunks=chunks)
    return np.asarray(proba.max(axis=-1).compute())


def predict_plane(model: Any, plane: Any, *, large_above: int = LARGE_PLANE,
                  chunks: int = 1024) -> np.ndarray:
    """Labels of one plane: ``model.predict``, or ``predict_large`` for a large plane.

    Parameters
    ----------
    model : HypercolumnSegmenter
        Fitted.
    plane : array-like of shape (height, width[, channels])
        numpy, dask or zarr; a large plane is read window by window.
    large_above : int, default=LARGE_PLANE
        Planes of more pixels than this go through :func:`skhyper.parallel.predict_large`.
    chunks : int, default=1024
        ``predict_large``'s output block size.

    Returns
    -------
    ndarray of shape (height, width)
        The labels.
    """
    if is_large(plane, large_above):
        from ..parallel import predict_large

        return np.asarray(predict_large(model, plane, chunks=chunks).compute())
    return model.predict(np.asarray(plane))


def folder_files(folder: str | os.PathLike) -> list[Path]:
    """The image files (and Zarr folders) of a folder that ``read_image`` reads, sorted."""
    from ..io import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"The input folder '{folder}' does not exist: pick a folder of images.")
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise ValueError(f"The input folder '{folder}' holds no image files "
                         f"({', '.join(IMAGE_SUFFIXES)}): pick another folder.")
    return files


def _segment_file(model: Any, path: Path, out: Path, n_channels: int | None,
                  large_above: int) -> None:
    import tifffile

    from ..io import read_image

    image = read_image(path, lazy_above=large_above)
    channels = int(image.data.shape[-1]) if image.axes.endswith("C") else 1
    if n_channels is not None and channels != n_channels:
        raise ValueError(f"it has {channels} channel(s), the model was trained on "
                         f"{n_channels}")
    labels = image.stack([predict_plane(model, p, large_above=large_above)
                          for p in image.planes()])
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    tmp = out.with_name(f".{out.name}.partial")
    tifffile.imwrite(tmp, np.ascontiguousarray(labels.astype(dtype)), photometric="minisblack",
                     metadata={"axes": image.result_axes()}, compression="zlib")
    os.replace(tmp, out)


def segment_files(model: Any, files: list[Path], out_dir: str | os.PathLike, *,
                  overwrite: bool = False, n_channels: int | None = None,
                  large_above: int = LARGE_PLANE) -> Iterator[tuple[Path, str]]:
    """Segment files one by one, yielding ``(file, outcome)`` after each.

    Parameters
    ----------
    model : HypercolumnSegmenter
        Fitted.
    files : list of Path
        Image files (:func:`folder_files`).
    out_dir : str or path-like
        Where ``<stem>.tif`` label files go (created if missing).
    overwrite : bool, default=False
        False resumes: a file whose output exists is skipped.
    n_channels : int, default=None
        The channels the model was trained on: a file with others fails by name.
    large_above : int, default=LARGE_PLANE
        See :func:`predict_plane`.

    Yields
    ------
    file : Path
        The file just handled.
    outcome : str
        ``"done"``, ``"skipped"`` (its output existed) or the reason it failed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    owners: dict[str, str] = {}
    for path in files:
        stem = path.name[:len(path.name) - len(path.suffix)].removesuffix(".ome")
        if owners.setdefault(stem, path.name) != path.name:
            yield path, (f"its output {stem}.tif is also that of {owners[stem]}: rename one "
                         "of them")
            continue
        out = out_dir / f"{stem}.tif"
        if out.exists() and not overwrite:
            yield path, "skipped"
            continue
        try:
            _segment_file(model, path, out, n_channels, large_above)
        except Exception as exc:  # noqa: BLE001 -- one bad file must not stop the folder
            yield path, f"{type(exc).__name__}: {exc}"
            continue
        yield path, "done"


def summary(outcomes: dict[str, str]) -> str:
    """One message for a folder run: counts, then each failed file with its reason."""
    done = sum(v == "done" for v in outcomes.values())
    skipped = sum(v == "skipped" for v in outcomes.values())
    failed = {k: v for k, v in outcomes.items() if v not in ("done", "skipped")}
    text = (f"Segmented {done} file(s), skipped {skipped} with existing output, "
            f"{len(failed)} failed")
    if failed:
        text += ": " + "; ".join(f"{k} ({v})" for k, v in failed.items())
        text += ". Fix or remove these files and run again (done files are skipped)"
    return text + "."
