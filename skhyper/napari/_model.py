"""The widget's model work, free of Qt: build, fit, refit, segment, save, load, export.

Imports skhyper's estimators (and so torch) inside the functions: the plugin's manifest and
widget shell load without torch, the model on first use.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BACKBONES", "EXPORT_FORMATS", "build_estimator", "export_model", "fit_model",
           "load_model", "new_cache", "save_model", "torch_after_opengl"]

BACKBONES = ("efficientnet_lite0", "resnet18", "resnet50", "vgg16")
EXPORT_FORMATS = ("onnx", "bioimageio")


def torch_after_opengl() -> None:
    """Make torch importable in a process whose OpenGL driver loaded LLVM (napari on Mesa).

    The widget imports torch on first use, after napari's canvas made an OpenGL context. With
    Mesa's software rasterizer (llvmpipe: Xvfb, remote desktops, machines without a GPU driver)
    that context loads the system's ``libLLVM``; torch's import of ``triton`` (shipped with
    torch's Linux wheels for ``torch.compile`` on GPUs) then loads triton's own LLVM and the
    process dies with a segmentation fault. Only in that case (triton not yet imported,
    ``libLLVM`` mapped, triton installed) triton is marked unavailable for this process, as if
    it were not installed: skhyper never compiles, and torch runs without it.
    """
    if "triton" in sys.modules:
        return
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: no such clash known
        return
    if "libLLVM" in maps and importlib.util.find_spec("triton") is not None:
        sys.modules["triton"] = None  # `import triton` raises ImportError: "not installed"


def new_cache() -> Any:
    """An empty :class:`~skhyper.MapCache` (2 GiB) for the widget's planes."""
    torch_after_opengl()
    from .. import MapCache

    return MapCache()


def build_estimator(backbone: str = "efficientnet_lite0", *, layers: list | None = None,
                    device: str = "auto", upsampling: str = "edge_aware",
                    cache: Any = None) -> Any:
    """The package's default segmenter for scribbles: label 0 is unlabelled.

    ``HypercolumnTransformer(backbone, layers, device, scales="auto", cache=cache)`` and
    ``HypercolumnSegmenter(ignore_label=0, random_state=0)`` with every other setting at the
    package default, so the same estimator built in a notebook gives the same model.

    Parameters
    ----------
    backbone : str, default="efficientnet_lite0"
        The backbone's name (:func:`skhyper.list_layers` lists its layers).
    layers : list of str or int, default=None
        Layer names or stage indices; None: every stage.
    device : str, default="auto"
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    upsampling : {"edge_aware", "bilinear"}, default="edge_aware"
        How coarse score maps reach the image.
    cache : MapCache, default=None
        Where the backbone maps of the planes are kept between fits.

    Returns
    -------
    HypercolumnSegmenter
        Unfitted.
    """
    torch_after_opengl()
    from .. import HypercolumnSegmenter, HypercolumnTransformer

    hc = HypercolumnTransformer(backbone, layers=layers, device=device, scales="auto",
                                cache=cache)
    return HypercolumnSegmenter(hc, ignore_label=0, random_state=0, upsampling=upsampling)


def _for_scribbles(estimator: Any, cache: Any) -> Any:
    """A clone of ``estimator`` with label 0 unlabelled and ``cache`` (if it has none)."""
    from sklearn.base import clone

    torch_after_opengl()
    from .. import HypercolumnTransformer

    est = clone(estimator).set_params(ignore_label=0)
    hc = est.hypercolumns if est.hypercolumns is not None else HypercolumnTransformer(
        scales="auto")
    if hc.cache is None and cache is not None:
        est.set_params(hypercolumns=clone(hc).set_params(cache=cache))
    return est


def fit_model(estimator: Any, planes: list[np.ndarray], masks: list[np.ndarray], *,
              base: Any = None, cache: Any = None) -> Any:
    """A model fitted on ``planes`` / ``masks``, never changing ``base`` or ``estimator``.

    With ``base`` (a model fitted from the same ``estimator``), only its classifier is refitted
    on a shallow copy (:meth:`~skhyper.HypercolumnSegmenter.refit_classifier`: the engine and
    its map cache are reused, the result equals a full ``fit``); otherwise a clone is fitted.
    """
    if base is not None:
        return copy.copy(base).refit_classifier(planes, masks)
    return _for_scribbles(estimator, cache).fit(planes, masks)


def save_model(model: Any, path: str | Path, metadata: dict | None = None) -> Path:
    """``skhyper.save`` (no pickle), with the classes' display ``metadata``."""
    from .. import save

    return save(model, path, metadata=metadata)


def load_model(path: str | Path) -> Any:
    """``skhyper.load``; a file that is not a model file raises a ``ValueError`` naming it."""
    torch_after_opengl()
    from .. import load

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"The model file '{path}' does not exist: pick a file written by "
                         "Save model, skhyper.save or 'skhyper train'.")
    try:
        return load(path)
    except ValueError as exc:
        raise ValueError(f"'{path.name}' is not a model this widget can load ({exc}): pick a "
                         "file written by Save model, skhyper.save or 'skhyper train'.") from exc


def export_model(model: Any, path: str | Path, fmt: str, test_image: np.ndarray | None) -> Path:
    """``to_onnx`` or ``to_bioimageio`` (with ``test_image``, the current plane)."""
    from ..export import to_bioimageio, to_onnx

    if fmt == "onnx":
        return Path(to_onnx(model, path))
    if fmt == "bioimageio":
        return Path(to_bioimageio(model, path, test_image=test_image))
    raise ValueError(f"The export format {fmt!r} is unknown: use one of {list(EXPORT_FORMATS)}.")
