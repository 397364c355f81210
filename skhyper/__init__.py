"""skhyper: hypercolumn pixel descriptors from CNN backbones, for scikit-learn.

Hariharan, Arbelaez, Girshick, Malik, *Hypercolumns for object segmentation
and fine-grained localization*, CVPR 2015.

The public names below are imported on first use (PEP 562 ``__getattr__``): ``import
skhyper`` or a subpackage that needs no network (the napari plugin's manifest and widget
shell, ``skhyper.io``) does not import torch, so napari starts fast with the plugin
installed. ``from skhyper import HypercolumnSegmenter`` works as always.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__, install_retired_module_finder

if TYPE_CHECKING:  # what static tools see; at run time __getattr__ imports on first use
    from .estimators import (
        GridLocationClassifier,
        HypercolumnKeypointLocator,
        HypercolumnSegmenter,
        HypercolumnTransformer,
    )
    from .export import load, save
    from .features import (
        Backbone,
        FeatureEngine,
        MapCache,
        build_backbone,
        extract_dense,
        extract_hypercolumns,
        list_layers,
    )
    from .io import read_image, read_labels
    from .sampling import PixelSet, grid_pixels, sample_pixels
    from .stacks import split_planes, stack_planes

install_retired_module_finder()

# public name -> the subpackage that defines it
_EXPORTS = {
    **dict.fromkeys(["GridLocationClassifier", "HypercolumnKeypointLocator",
                     "HypercolumnSegmenter", "HypercolumnTransformer"], ".estimators"),
    **dict.fromkeys(["load", "save"], ".export"),
    **dict.fromkeys(["Backbone", "FeatureEngine", "MapCache", "build_backbone", "extract_dense",
                     "extract_hypercolumns", "list_layers"], ".features"),
    **dict.fromkeys(["read_image", "read_labels"], ".io"),
    **dict.fromkeys(["PixelSet", "grid_pixels", "sample_pixels"], ".sampling"),
    **dict.fromkeys(["split_planes", "stack_planes"], ".stacks"),
}

__all__ = [
    "__version__",
    "Backbone",
    "FeatureEngine",
    "GridLocationClassifier",
    "HypercolumnKeypointLocator",
    "HypercolumnSegmenter",
    "HypercolumnTransformer",
    "MapCache",
    "PixelSet",
    "build_backbone",
    "extract_dense",
    "extract_hypercolumns",
    "grid_pixels",
    "load",
    "read_image",
    "read_labels",
    "list_layers",
    "sample_pixels",
    "save",
    "split_planes",
    "stack_planes",
]


def __getattr__(name: str) -> Any:
    """Import a public name (or a subpackage) on first use and keep it."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
