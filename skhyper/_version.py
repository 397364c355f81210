"""The package version, and clear errors for modules of earlier versions (old pickles)."""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

__all__ = ["__version__"]

__version__ = "0.1.0.dev0"

# Modules of the first release that the second one reorganised; a pickle made with the first
# refers to them (e.g. ``skhyper.backbones.Backbone`` inside a fitted transformer).
RETIRED_MODULES = {
    "skhyper.backbones": "skhyper.features",
    "skhyper.bilinear": "skhyper.features",
    "skhyper.cache": "skhyper.features",
    "skhyper.channels": "skhyper.features",
    "skhyper.extraction": "skhyper.features",
    "skhyper.intensity": "skhyper.features",
    "skhyper.scales": "skhyper.features",
    "skhyper.tiling": "skhyper.features",
    "skhyper.folding": "skhyper.heads",
    "skhyper.prediction": "skhyper.heads",
}


class _RetiredModuleFinder(importlib.abc.MetaPathFinder):
    """Import of a retired module: a clear error saying where it went and what to do."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname in RETIRED_MODULES:
            raise ModuleNotFoundError(
                f"{fullname} belonged to an earlier skhyper (0.1.0.dev0 before its "
                f"reorganisation); it is {RETIRED_MODULES[fullname]} now. A model pickled with "
                f"that version refers to it and cannot be loaded by skhyper {__version__}: fit "
                "it again with this version, or load it with the version that saved it.",
                name=fullname,
            )
        return None


def install_retired_module_finder() -> None:
    """Register the finder once (the package's ``__init__`` calls this)."""
    if not any(isinstance(f, _RetiredModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_RetiredModuleFinder())
