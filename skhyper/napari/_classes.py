"""Class names and colours of a labels layer, as the metadata a model file carries.

A class's name is read from the labels layer's features table (napari's per-label table: a
``"name"`` column, rows matched to labels by an ``"index"`` column, else row ``i`` is label
``i``); its colour is the layer's colour for that label. Both are written to the model file
through :func:`skhyper.save`'s ``metadata`` and put back on the result layer when a model is
loaded. Scribble layers' data is never touched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["apply_class_info", "class_info"]


def _names(layer: Any) -> dict[int, str]:
    features = getattr(layer, "features", None)
    if features is None or "name" not in features:
        return {}
    index = features["index"] if "index" in features else range(len(features))
    return {int(i): str(n) for i, n in zip(index, features["name"], strict=True)}


def _hex(rgba: Any) -> str:
    values = np.clip(np.round(np.asarray(rgba, dtype=float).ravel()[:4] * 255), 0, 255)
    return "#" + "".join(f"{int(v):02x}" for v in values)


def class_info(layer: Any, classes: Any, n_channels: int | None) -> dict[str, Any]:
    """The metadata to save with a model: class names, colours and training channels.

    Parameters
    ----------
    layer : napari.layers.Labels or None
        The scribbles layer (None: colours and names are left out).
    classes : array-like of int
        The model's classes.
    n_channels : int or None
        Channel count of the training images (None: unknown, left out).

    Returns
    -------
    dict
        ``{"class_names": {label: name}, "class_colors": {label: "#rrggbbaa"},
        "n_image_channels": n}`` with labels as strings (JSON keys).
    """
    info: dict[str, Any] = {}
    if n_channels is not None:
        info["n_image_channels"] = int(n_channels)
    if layer is None:
        return info
    labels = [int(c) for c in classes]
    names = _names(layer)
    info["class_names"] = {str(c): names[c] for c in labels if c in names}
    colors = {c: layer.get_color(c) for c in labels}
    info["class_colors"] = {str(c): _hex(col) for c, col in colors.items() if col is not None}
    return info


def apply_class_info(layer: Any, metadata: dict[str, Any]) -> None:
    """Give a (result) labels layer the saved classes' colours and names.

    Parameters
    ----------
    layer : napari.layers.Labels
        The layer to colour; its data is not changed.
    metadata : dict
        A loaded model's ``metadata_`` (see :func:`class_info`); missing keys change nothing.
    """
    from napari.utils.colormaps import DirectLabelColormap

    colors = metadata.get("class_colors") or {}
    if colors:
        color_dict: dict[Any, Any] = {None: "transparent", 0: "transparent"}
        color_dict.update({int(k): v for k, v in colors.items()})
        layer.colormap = DirectLabelColormap(color_dict=color_dict)
    names = metadata.get("class_names") or {}
    if names:
        keys = sorted(int(k) for k in names)
        layer.features = {"index": np.asarray(keys),
                          "name": np.asarray([names[str(k)] for k in keys], dtype=object)}
