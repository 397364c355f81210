"""A folded head's weights on the engine's device, and the dense scores of one image from its
projected maps: the coarse maps edge-aware (or the labels only, :func:`edge_aware_labels`), the
rest bilinear, summed or blended by a location grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ._bilateral import WHOLE_PIXELS, edge_aware_labels
from ._edges import coarse_sum, coarse_target, edge_aware_upsample, is_coarse
from ._folding import FoldedHead, project_maps, upsample_sum
from ._grid import FoldedGrid, grid_scores, location_scores

__all__ = ["FoldedWeights"]

_FLOAT32_SAFE = 64.0


class FoldedWeights:
    """A folded head's weights on the engine's device (float64), and its 1x1 projection."""

    def __init__(self, head: FoldedHead, names: Sequence[str], device: torch.device,
                 reductions: Sequence[float] | None = None) -> None:
        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(device)

        self.head = head
        self.reductions = [1.0] * len(names) if reductions is None else list(reductions)
        self.by_name = {name: t(b) for name, b in zip(names, head.blocks)}
        self.bias = t(head.bias)
        self.location = None if head.location is None else t(head.location)

    def project(self, maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # 1x1 heads in float64: cheap at native resolution, and exact for large scores
        return dict(zip(maps, project_maps(maps, [self.by_name[name] for name in maps])))

    def scores(self, parts: list[torch.Tensor], shape: tuple[int, int],
               frame: tuple[float, ...], canvases: list | None = None,
               guide: torch.Tensor | None = None, labels_only: bool = False) -> torch.Tensor:
        """Dense ``(k, H, W)`` scores of one image from its projected maps (``canvases``:
        ``FeatureEngine.canvases``); with a ``guide`` (:func:`image_guide`) the coarse maps
        are upsampled edge-aware, then summed or blended as full-resolution maps.
        ``labels_only``: scores with the right labels only (:func:`edge_aware_labels`, whole
        images of a plain head)."""
        # Upsampling dominates the cost after the forward pass; float32 is exact to 1e-5
        # while scores stay below 64 in magnitude, beyond that it runs in float64.
        bound = float(self.bias.abs().max()) + sum(float(p.abs().amax()) for p in parts)
        if self.location is not None:
            bound += float(self.location.abs().sum(0).max())
        dtype = torch.float32 if bound <= _FLOAT32_SAFE else torch.float64
        parts = [p.to(dtype) for p in parts]
        canvases = [None] * len(parts) if canvases is None else list(canvases)
        grid = isinstance(self.head, FoldedGrid)
        if guide is not None:  # the coarse maps of each canvas: summed, then edge-aware
            groups: dict = {}
            for j, p in enumerate(parts):
                if is_coarse(self.reductions[j], p.shape[1:]):
                    groups.setdefault(canvases[j], []).append(j)
            coarse = {j for js in groups.values() for j in js}
            kept = [j for j in range(len(parts)) if j not in coarse]
            sums = {canvas: coarse_sum([parts[j] for j in js], target=coarse_target(
                [self.reductions[j] for j in js], [True] * len(js)))[1]
                for canvas, js in groups.items()}
            if (labels_only and not grid and list(sums) == [None]
                    and shape[0] * shape[1] <= WHOLE_PIXELS):
                rest = self._plain_sum([parts[j] for j in kept], shape, frame,
                                       [canvases[j] for j in kept], dtype)
                return edge_aware_labels(sums[None], guide.to(dtype), rest)[0]
            up = [edge_aware_upsample(acc, guide, shape if canvas is None else canvas,
                                      image_shape=shape) for canvas, acc in sums.items()]
            parts = [parts[j] for j in kept] + up
            canvases = [canvases[j] for j in kept] + [None] * len(up)
        if grid:
            return grid_scores(parts, self.bias.to(dtype), self.head.grid_size, shape, frame,
                               canvases)
        return self._plain_sum(parts, shape, frame, canvases, dtype)

    def _plain_sum(self, parts: list[torch.Tensor], shape: tuple[int, int],
                   frame: tuple[float, ...], canvases: list, dtype: torch.dtype
                   ) -> torch.Tensor:
        """Bias, upsampled maps and location scores of a plain head."""
        if not parts:  # a 1 x 1 map of zeros is broadcast
            parts = [torch.zeros((len(self.bias), 1, 1), dtype=dtype, device=self.bias.device)]
        total = upsample_sum(parts, self.bias.to(dtype), shape, canvases)
        if self.location is not None:
            total += location_scores(self.location.to(dtype), frame, shape)
        return total
