"""napari plugin: train a :class:`~skhyper.HypercolumnSegmenter` on scribbles, interactively.

``pip install "skhyper[napari]"`` registers it with napari (the npe2 manifest
``skhyper/napari/napari.yaml``, entry point ``napari.manifest``): *Plugins > skhyper >
Hypercolumn segmenter* docks :class:`SegmenterWidget`; *File > Open Sample > skhyper > Horse*
opens a bundled horse. Importing this package (and the widget module) does not import torch:
the model and its backbone load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["SegmenterWidget", "build_estimator", "horse_sample"]

_EXPORTS = {"SegmenterWidget": "._widget", "build_estimator": "._model",
            "horse_sample": "._sample"}


def __getattr__(name: str) -> Any:
    """Import the widget (Qt, napari) only when it is asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
