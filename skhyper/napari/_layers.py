"""From napari layer data to the segmenter's planes and masks, and the checks on the way.

Plain numpy (layers are passed as their ``data``, ``rgb`` and ``name``), so the checks read the
same from the widget, a script or a test. Every message names the layer and what to do.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ImageStack", "check_channels", "check_same_channels", "check_scribbles",
           "pairs_planes", "scribbled_planes"]


@dataclass(frozen=True)
class ImageStack:
    """An image layer seen as planes: leading axes (Z, T, ...) then ``(y, x[, rgb])``.

    Parameters
    ----------
    data : array-like
        The layer's data (numpy, dask or zarr): planes are read one at a time.
    rgb : bool
        Whether the last axis holds colour channels (napari's ``layer.rgb``).
    name : str
        The layer's name, for messages.
    """

    data: Any
    rgb: bool
    name: str

    @property
    def lead_shape(self) -> tuple[int, ...]:
        """Shape of the leading (plane) axes; ``()`` for one 2-D image."""
        return tuple(self.data.shape[:-3] if self.rgb else self.data.shape[:-2])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The ``(height, width)`` of every plane."""
        return tuple(self.data.shape[-3:-1] if self.rgb else self.data.shape[-2:])

    @property
    def n_channels(self) -> int:
        """Channels a plane hands to the segmenter (RGBA's alpha is dropped)."""
        return min(int(self.data.shape[-1]), 3) if self.rgb else 1

    def indices(self) -> list[tuple[int, ...]]:
        """Index of every plane, in order."""
        return list(itertools.product(*(range(n) for n in self.lead_shape)))

    def lazy_plane(self, index: tuple[int, ...]) -> Any:
        """One plane as the layer holds it (a dask / zarr plane stays unread)."""
        plane = self.data[tuple(index)]
        return plane[..., :3] if self.rgb else plane

    def plane(self, index: tuple[int, ...]) -> np.ndarray:
        """One plane as a numpy array: ``(height, width)`` or ``(height, width, 3)``."""
        plane = np.asarray(self.data[tuple(index)])
        return plane[..., :3] if self.rgb else plane


def check_same_shape(image: ImageStack, labels: Any, labels_name: str) -> None:
    """Refuse a labels layer that does not cover the image pixel for pixel."""
    want = image.lead_shape + image.spatial_shape
    if tuple(labels.shape) != want:
        raise ValueError(
            f"The image layer '{image.name}' has shape {want} (planes x height x width) but the "
            f"labels layer '{labels_name}' has shape {tuple(labels.shape)}: pick a labels layer "
            "made for this image, or press 'New labels layer' to create one.")


def check_scribbles(masks: list[np.ndarray], labels_name: str) -> None:
    """Refuse scribbles that cannot train a segmenter: none, or a single class."""
    classes = np.unique(np.concatenate([np.unique(m) for m in masks])) if masks else []
    classes = [int(c) for c in classes if c != 0]
    if not classes:
        raise ValueError(
            f"The labels layer '{labels_name}' has no scribbles on the plane(s) to train on: "
            "paint a few strokes of at least two classes (label 0 is 'unlabelled').")
    if len(classes) < 2:
        raise ValueError(
            f"The labels layer '{labels_name}' has scribbles of class {classes[0]} only: paint "
            "strokes of a second class too (e.g. background), a segmenter needs two.")


def scribbled_planes(image: ImageStack, labels: Any, labels_name: str, *,
                     planes: list[tuple[int, ...]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Planes of ``image`` with scribbles among ``planes``, and copies of their scribbles.

    The scribbles are copied (a snapshot): the widget never writes to the labels layer, and a
    stroke painted while a model trains does not change what it trains on.
    """
    images, masks = _scribbled(image, labels, labels_name, planes)
    check_scribbles(masks, labels_name)
    return images, masks


def _scribbled(image: ImageStack, labels: Any, labels_name: str,
               planes: list[tuple[int, ...]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    check_same_shape(image, labels, labels_name)
    masks = [np.array(labels[tuple(i)], copy=True) for i in planes]
    kept = [k for k, m in enumerate(masks) if m.any()]
    return [image.plane(planes[k]) for k in kept], [masks[k] for k in kept]


def check_same_channels(images: list[ImageStack]) -> None:
    """Refuse image layers that differ in channels: one model takes one channel count."""
    counts = {im.name: im.n_channels for im in images}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"'{k}' has {v}" for k, v in counts.items())
        raise ValueError(
            f"The image layers to train on differ in channels ({listed}): a stack whose planes "
            "differ in channels cannot train one model. Remove the pairs whose image has "
            "other channels, or convert the images to the same channels (all grey or all RGB).")


def pairs_planes(pairs: list[tuple[ImageStack, Any, str]]
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The scribbled planes of several (image, labels data, labels name) pairs, every plane.

    Each pair must cover its image pixel for pixel and all images must have the same
    channels; the scribbles of all pairs together must hold two classes (a pair without
    scribbles adds nothing). The scribbles are copied, as in :func:`scribbled_planes`.
    """
    if not pairs:
        raise ValueError("There are no image/labels pairs to train on: pick an image and its "
                         "scribbles and press 'Add pair'.")
    check_same_channels([image for image, _, _ in pairs])
    planes: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for image, labels, name in pairs:
        p, m = _scribbled(image, labels, name, image.indices())
        planes += p
        masks += m
    check_scribbles(masks, ", ".join(f"{name}" for _, _, name in pairs))
    return planes, masks


def check_channels(image: ImageStack, expected: int | None) -> None:
    """Refuse an image whose channels differ from those the model was trained on."""
    if expected is not None and image.n_channels != expected:
        raise ValueError(
            f"The model was trained on {expected}-channel images but the image layer "
            f"'{image.name}' has {image.n_channels} channel(s): pick an image layer with "
            f"{expected} channel(s), or train a new model on this one (Train).")
