"""The plugin's sample data: a bundled Weizmann horse (File > Open Sample > skhyper)."""

from __future__ import annotations

from typing import Any

__all__ = ["horse_sample"]


def horse_sample() -> list[tuple[Any, dict, str]]:
    """The first bundled training horse as an RGB image layer (uint8, ~160 px; no torch).

    Weizmann Horse Database (Borenstein & Ullman, ECCV 2002), downscaled; see
    :func:`skhyper.datasets.load_horses`.

    Returns
    -------
    list of tuple
        One napari layer-data tuple ``(image, {"name", "rgb"}, "image")``.
    """
    from ..datasets import load_horses

    data = load_horses(split="train")
    return [(data.images[0], {"name": f"horse {data.names[0]}", "rgb": True}, "image")]
