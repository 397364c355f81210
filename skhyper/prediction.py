"""Dense prediction: every pixel of whole images, folded when the head is linear.

Two paths, one result:

* :func:`folded_predict` -- a linear head folded to per-layer 1x1 weights
  (:func:`skhyper.folding.fold_classifier`) is applied to each native map,
  and only the ``k`` score maps are upsampled. Cost: one forward pass plus
  ``k`` bilinear upsamples per layer; the hypercolumn is never built.
* :func:`chunked_predict` -- any classifier (random forest, boosting, ...)
  sees the dense hypercolumn in bands of ``chunk_pixels`` pixels, so memory
  stays bounded by the band, not the image.

Both take the forward-pass settings of :func:`skhyper.extraction.iter_maps`
(device, batch size, dtype, ``image_size``, ``cache``, ``tile_size``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .backbones import Backbone
from .extraction import iter_maps, row_bands, sample_maps
from .folding import FoldedHead, project_maps, upsample_sum
from .location import FoldedGrid, axis_locations, frame_of, grid_scores, location_scores

__all__ = ["folded_predict", "chunked_predict", "OUTPUTS"]

OUTPUTS = ("predict", "predict_proba", "decision_function")
_FLOAT32_SAFE = 64.0


def _check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise ValueError(f"The 'output' parameter must be one of {OUTPUTS}; got {output!r}.")


def _finish(values: np.ndarray) -> np.ndarray:
    """``(k, H, W)`` -> ``(H, W, k)``, or ``(H, W)`` for a single output."""
    return values[0] if values.shape[0] == 1 else np.ascontiguousarray(np.moveaxis(values, 0, -1))


def folded_predict(
    images: Sequence[np.ndarray],
    backbone: Backbone,
    layers: Sequence[str],
    head: FoldedHead,
    *,
    output: str = "predict",
    boxes: np.ndarray | None = None,
    **forward: Any,
) -> list[np.ndarray]:
    """Dense labels, probabilities or scores of checked images through a folded head.

    A :class:`~skhyper.location.FoldedGrid` (location-specific classifiers)
    blends its cells' scores by each pixel's location in its frame
    (:func:`skhyper.location.grid_scores`); a head with location weights adds
    them (:func:`skhyper.location.location_scores`).

    Parameters
    ----------
    images : list of ndarray
        Checked ``(height, width, channels)`` images.
    backbone : Backbone
    layers : list of str
        The layers the head was folded for, in order.
    head : FoldedHead
    output : {"predict", "predict_proba", "decision_function"}, default="predict"
    boxes : ndarray of shape (n_images, 4), default=None
        Frames ``(x0, y0, x1, y1)`` of the pixel locations; None: whole images.
    **forward
        Settings for :func:`skhyper.extraction.iter_maps` (``device``,
        ``batch_size``, ``dtype``, ``image_size``, ``cache``, ``tile_size``,
        ``verbose``, ``intensity_range``).

    Returns
    -------
    list of ndarray
        Per image: labels ``(height, width)``; probabilities ``(height, width,
        n_classes)``; scores ``(height, width)`` for one output (binary) or
        ``(height, width, n_outputs)``. Scores are float32, or float64 for
        images whose scores may exceed 64 in magnitude (so that they stay
        exact to 1e-4).
    """
    _check_output(output)
    device = forward["device"]
    blocks = [torch.from_numpy(np.asarray(b, dtype=np.float64)).to(device) for b in head.blocks]
    bias = torch.from_numpy(np.asarray(head.bias, dtype=np.float64)).to(device)
    loc_w = None if head.location is None else torch.from_numpy(
        np.asarray(head.location, dtype=np.float64)).to(device)
    by_name = dict(zip(layers, blocks))

    def project(maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # 1x1 heads in float64: cheap at native resolution, and exact for large scores
        return dict(zip(maps, project_maps(maps, [by_name[name] for name in maps])))

    results: list[np.ndarray | None] = [None] * len(images)
    for i, scores in iter_maps(backbone, images, layers, project=project, **forward):
        H, W = images[i].shape[:2]
        frame = frame_of(None if boxes is None else boxes[i], (H, W))
        parts = [scores[name] for name in layers]
        # Upsampling dominates the cost after the forward pass; float32 is exact to 1e-5
        # while scores stay below 64 in magnitude, beyond that it runs in float64.
        bound = float(bias.abs().max()) + sum(float(p.abs().amax()) for p in parts)
        if loc_w is not None:
            bound += float(loc_w.abs().sum(0).max())
        dtype = torch.float32 if bound <= _FLOAT32_SAFE else torch.float64
        parts = [p.to(dtype) for p in parts]
        if isinstance(head, FoldedGrid):
            total = grid_scores(parts, bias.to(dtype), head.grid_size, (H, W), frame)
        else:
            total = upsample_sum(parts, bias.to(dtype), (H, W))
            if loc_w is not None:
                total += location_scores(loc_w.to(dtype), frame, (H, W))
        if output == "predict":
            results[i] = head.classes[head.labels(total).cpu().numpy()]
        elif output == "predict_proba":
            results[i] = _finish(head.proba(total.double()).float().cpu().numpy())  # as sklearn
        else:
            results[i] = _finish(total.cpu().numpy())
    return results


def chunked_predict(
    images: Sequence[np.ndarray],
    backbone: Backbone,
    layers: Sequence[str],
    classifier: Any,
    *,
    output: str = "predict",
    chunk_pixels: int = 65536,
    boxes: np.ndarray | None = None,
    append_location: bool = False,
    **forward: Any,
) -> list[np.ndarray]:
    """Dense prediction of any fitted classifier on hypercolumns, in bands of pixels.

    Each image's native maps are computed once; bands of about
    ``chunk_pixels`` pixels are sampled to hypercolumns (with the location
    columns ``(u, v)`` in the frames ``boxes`` when ``append_location``),
    passed to ``getattr(classifier, output)`` and written into the result, so
    the full hypercolumn of an image never exists. Parameters and returns as
    in :func:`folded_predict`.
    """
    _check_output(output)
    method = getattr(classifier, output)
    results: list[np.ndarray | None] = [None] * len(images)
    for i, maps in iter_maps(backbone, images, layers, **forward):
        H, W = images[i].shape[:2]
        out = None
        if append_location:
            x0, y0, x1, y1 = frame_of(None if boxes is None else boxes[i], (H, W))
            u, v = axis_locations(W, x0, x1), axis_locations(H, y0, y1)
        for r0, r1, rows, cols in row_bands((H, W), chunk_pixels):
            feats = sample_maps(maps, rows, cols, (H, W)).cpu().numpy()
            if append_location:
                loc = np.column_stack([u[cols.numpy()], v[rows.numpy()]]).astype(np.float32)
                feats = np.hstack([feats, loc])
            values = np.asarray(method(feats))
            if out is None:
                out = np.empty((H * W, *values.shape[1:]), dtype=values.dtype)
            out[r0 * W : r1 * W] = values
        results[i] = out.reshape(H, W, *out.shape[1:])
    return results
