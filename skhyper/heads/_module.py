"""The head as one module: native layer maps (+ the image as guide, + the frame) -> scores.

:class:`HeadModule` holds a folded head's weights (:class:`~skhyper.heads.FoldedHead` or
:class:`~skhyper.heads.FoldedGrid`) as parameters and computes, for a block of pixels of an
image (:class:`Window`: the whole image, or a window of a huge one), the 1x1 projection of
every native map, the edge-aware path of the coarse maps (summed on the finest coarse grid,
``coarse_sum``, then joint bilateral upsampling guided by the image),
the bilinear reads of the others (``gather_window``), their sum
plus the bias and the location term, or the K x K grid blend
(``grid_blend``). :func:`~skhyper.heads.predict_dense` (whole images),
:func:`~skhyper.heads.predict_window` (windows of :func:`skhyper.parallel.predict_large`)
and the exported network (:class:`skhyper.export.HypercolumnNet`) all call
:meth:`HeadModule.scores`; :meth:`HeadModule.sample` is its differentiable form at single
pixels (bilinear), for training through the head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..location import LOCATION
from ._bilateral import WHOLE_PIXELS, edge_aware_labels
from ._edges import (
    EDGE_PARAMS,
    UPSAMPLINGS,
    coarse_sum,
    coarse_target,
    edge_aware_upsample,
    edge_aware_upsample_batch,
    is_coarse,
)
from ._folding import FoldedHead, project_maps
from ._gather import (
    axis_locations_t,
    bilinear_axis,
    cell_axis,
    gather_points,
    location_term,
    sum_window,
)
from ._grid import FoldedGrid, grid_blend

__all__ = ["HeadModule", "Window"]

_FLOAT32_SAFE = 64.0  # scores below this magnitude stay exact to 1e-5 in float32


@dataclass(frozen=True)
class Window:
    """A block of pixels of an image, and where the maps it is computed from lie.

    Rows ``r0..r1 - 1`` and columns ``c0..c1 - 1`` (``core``) of an image of ``shape``
    ``(H, W)``. With ``native`` (each map's cells for the whole image, in the head's map
    order), the maps are those of a window of the image that starts at pixel ``origin``: each
    map's window starts at cell ``origin // stride``. Without, the maps cover the whole image
    (:meth:`whole`). A window lets a huge image be scored block by block with the weights of
    the whole image's bilinear upsampling, so the blocks equal the whole image's scores.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the whole image (sizes may be symbolic while exporting).
    core : tuple of int
        ``(r0, r1, c0, c1)``: the block of pixels to score.
    origin : tuple of int, default=(0, 0)
        The image pixel ``(row, col)`` the window's maps start at (multiples of
        the maps' strides); only with ``native``.
    native : tuple of tuple of int, default=None
        Per map, in the head's map order, its ``(rows, cols)`` of cells for the
        whole image; None: the maps are those of the whole image.

    Attributes
    ----------
    is_whole : bool
        Whether the maps cover the whole image (no native sizes).
    block_shape : tuple of int
        ``(r1 - r0, c1 - c0)``, the shape of the scored block.

    Examples
    --------
    >>> Window.whole((40, 52)).core
    (0, 40, 0, 52)
    >>> Window((400, 500), (64, 128, 0, 64), (32, 0), native=((100, 125),)).is_whole
    False
    """

    shape: tuple[Any, Any]
    core: tuple[Any, Any, Any, Any]
    origin: tuple[int, int] = (0, 0)
    native: tuple[tuple[int, int], ...] | None = None

    @classmethod
    def whole(cls, shape: tuple[Any, Any]) -> Window:
        """Every pixel of an image of ``shape``, from maps of the whole image.

        Parameters
        ----------
        shape : tuple of int
            ``(H, W)`` of the image.

        Returns
        -------
        Window
            The block ``(0, H, 0, W)`` with no native sizes.
        """
        H, W = shape
        return cls((H, W), (0, H, 0, W))

    @property
    def is_whole(self) -> bool:
        """Whether the maps cover the whole image (no native sizes)."""
        return self.native is None

    @property
    def block_shape(self) -> tuple[Any, Any]:
        """``(r1 - r0, c1 - c0)``."""
        r0, r1, c0, c1 = self.core
        return r1 - r0, c1 - c0


def _concrete(*sizes: Any) -> bool:
    """Plain ints (not traced or symbolic sizes of an export)."""
    return all(type(s) is int for s in sizes)


def _axis_pixels(start: Any, stop: Any, device: torch.device) -> torch.Tensor:
    return torch.arange(stop, device=device) if _concrete(start) and start == 0 else torch.arange(
        start, stop, device=device)


def _cells_read(start: int, stop: int, n_cells: int, n: int) -> tuple[int, int]:
    """The cells ``[a, b)`` of an axis of ``n_cells`` cells over ``n`` pixels that edge-aware
    upsampling reads for pixels ``start..stop-1`` (their taps, ``EDGE_PARAMS["radius"]``)."""
    radius = EDGE_PARAMS["radius"]

    def base(y: int) -> int:  # floor((y + 0.5) n_cells / n - 0.5), in integers
        return ((2 * y + 1) * n_cells + n) // (2 * n) - 1

    return max(0, base(start) - radius + 1), min(n_cells, base(stop - 1) + radius + 1)


class HeadModule(nn.Module):
    """A folded head as a module: native maps -> ``(n, k, ny, nx)`` scores of a block of pixels.

    A linear classifier on hypercolumns equals the upsampled sum of per-layer 1x1
    heads on the native maps [1]_: this module holds those heads and computes the
    scores of whole images, of windows of huge images (:class:`Window`), of the
    exported network and, differentiably, of single pixels, all with one code
    path.

    Parameters
    ----------
    head : FoldedHead or FoldedGrid
        From :func:`~skhyper.heads.fold_head`.
    feature_info : sequence of mappings
        The maps' descriptions (``FeatureEngine.feature_info``: ``name``, ``reduction``,
        ``kind``), in the order of ``head.blocks``; location entries are skipped.
    upsampling : {"bilinear", "edge_aware"}, default="bilinear"
        How coarse maps (``is_coarse``) reach the pixels.
    device : torch.device, default=None
        Where the weights are put; None: the CPU (or the default device).
    dtype : torch.dtype, default=torch.float64
        Of the weights (float64: exact for large scores; the exported network's float32).

    Attributes
    ----------
    weight0, weight1, ... : Parameter of shape (num_chs, K*K*k)
        Each map's 1x1 head; ``bias`` ``(K*K*k,)``, ``location`` ``(2, k)`` (or None) likewise.
        Frozen (``requires_grad=False``); ``module.requires_grad_()`` makes them trainable.
    names, reductions, vectors, coarse : list
        Per map: its name, stride, whether it is a vector (broadcast), whether it is upsampled
        edge-aware.
    grid_size : int
        K (1: a plain head).

    See Also
    --------
    predict_dense : Dense predictions of whole images through this module.
    predict_window : One block of a huge image.

    References
    ----------
    .. [1] B. Hariharan, P. Arbelaez, R. Girshick and J. Malik, "Hypercolumns for
       object segmentation and fine-grained localization", CVPR 2015, sec. 3.1.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skhyper.heads import FoldedHead
    >>> head = FoldedHead([np.ones((2, 1))], np.zeros(1), np.array([0, 1]), "sigmoid")
    >>> module = HeadModule(head, [{"name": "a", "reduction": 2.0}])
    >>> maps = [torch.ones(1, 2, 4, 4, dtype=torch.float64)]
    >>> module(maps, torch.zeros(1, 3, 8, 8)).shape
    torch.Size([1, 1, 8, 8])
    """

    def __init__(self, head: FoldedHead, feature_info: Sequence[Mapping[str, Any]], *,
                 upsampling: str = "bilinear", device: Any = None,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if upsampling not in UPSAMPLINGS:
            raise ValueError(f"The 'upsampling' parameter must be one of {UPSAMPLINGS}. Got "
                             f"{upsampling!r} instead.")
        info = [d for d in feature_info if d.get("kind") != LOCATION["kind"]]
        if len(info) != len(head.blocks):
            raise ValueError(f"The 'feature_info' parameter describes {len(info)} maps; the "
                             f"head has {len(head.blocks)} blocks.")

        def param(a: np.ndarray) -> nn.Parameter:
            t = torch.as_tensor(np.asarray(a, dtype=np.float64)).to(device, dtype)
            return nn.Parameter(t, requires_grad=False)

        for i, b in enumerate(head.blocks):
            self.register_parameter(f"weight{i}", param(b))
        self.bias = param(head.bias)
        self.location = None if head.location is None else param(head.location)
        self.n_maps = len(head.blocks)
        self.names = [d["name"] for d in info]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.reductions = [None if d.get("reduction") is None else float(d["reduction"])
                           for d in info]
        self.strides = [1 if r is None else max(1, round(r)) for r in self.reductions]
        self.vectors = [d.get("kind") == "vector" for d in info]
        self.coarse = [upsampling == "edge_aware" and not v and is_coarse(r, (2, 2))
                       for r, v in zip(self.reductions, self.vectors)]
        self.grid_size = head.grid_size if isinstance(head, FoldedGrid) else 1
        self.upsampling = upsampling

    @property
    def weights(self) -> list[torch.Tensor]:
        """The maps' 1x1 heads ``(num_chs, K*K*k)``, in map order."""
        return [getattr(self, f"weight{i}") for i in range(self.n_maps)]

    def project(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """1x1 scores of native maps in map order, in the weights' dtype.

        The first step of the folded head: each map times its block of weights,
        at native resolution.

        Parameters
        ----------
        maps : sequence of torch.Tensor
            One ``(c_l, h_l, w_l)`` map (or ``(n, c_l, h_l, w_l)`` batch) per map of
            the head, in its map order.

        Returns
        -------
        parts : list of torch.Tensor
            ``(K*K*k, h_l, w_l)`` score maps (``(n, K*K*k, h_l, w_l)`` for batches).
        """
        return project_maps(list(maps), self.weights)

    def project_named(self, maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """:meth:`project` of some of the maps, by name.

        What ``FeatureEngine.iter_maps(project=...)`` takes, so that each tile and
        scale is projected as it is computed and only score maps are kept.

        Parameters
        ----------
        maps : dict of str to torch.Tensor
            Native maps named as the head's maps (any subset of them).

        Returns
        -------
        parts : dict of str to torch.Tensor
            The 1x1 score maps under the same names.
        """
        weights = self.weights
        return dict(zip(maps, project_maps(maps, [weights[self.index[n]] for n in maps])))

    def forward(self, maps: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """Scores of whole images from their native maps, in the weights' dtype.

        The exported network's head (traceable, sizes stay dynamic).

        Parameters
        ----------
        maps : sequence of torch.Tensor
            The native maps ``(n, c_l, h_l, w_l)``, in the head's map order.
        image : torch.Tensor of shape (n, c, H, W)
            The images in ``[0, 1]``: their size is the output size, and they guide
            edge-aware upsampling.

        Returns
        -------
        scores : torch.Tensor of shape (n, k, H, W)
            The folded classifier's scores at every pixel.
        """
        H, W = image.shape[-2], image.shape[-1]
        return self.scores(self.project([m.to(self.bias.dtype) for m in maps]),
                           Window.whole((H, W)), guide=image, dtype=self.bias.dtype)

    def scores(self, parts: Sequence[torch.Tensor], window: Window, *,
               frame: tuple[Any, ...] | None = None, guide: torch.Tensor | None = None,
               canvases: Sequence[tuple[float, float] | None] | None = None,
               labels_only: bool = False, dtype: torch.dtype | None = None,
               axis_dtype: torch.dtype | None = None) -> torch.Tensor:
        """``(n, k, ny, nx)`` scores of the block ``window.core`` from projected maps.

        Parameters
        ----------
        parts : list of Tensor of shape (n, K*K*k, h, w)
            :meth:`project` of the maps (of the whole image, or of the window).
        window : Window
            The block of pixels to score, and where the maps lie.
        frame : (x0, y0, x1, y1), default=None
            Of the pixel locations (location terms, grid cells); None: the whole image.
        guide : Tensor of shape (n, c, gh, gw), default=None
            The image (or window, from ``window.origin``) in ``[0, 1]``; needed when coarse
            maps are upsampled edge-aware.
        canvases : list, default=None
            Per map, the canvas it covers (``FeatureEngine.canvases``; whole images only).
        labels_only : bool, default=False
            Scores with the right labels only where that is cheaper
            (:func:`~skhyper.heads.edge_aware_labels`: one whole image, plain head).
        dtype : torch.dtype, default=None
            None: float32 while scores stay below 64 in magnitude (exact to 1e-5), else
            float64.
        axis_dtype : torch.dtype, default=None
            The arithmetic of the bilinear weights (``bilinear_axis``);
            None: ``dtype``, as ``F.interpolate`` on maps of that dtype. Windows of huge images
            take float32 weights on float64 maps: the weights of the whole image's (float32)
            path.

        Returns
        -------
        scores : torch.Tensor of shape (n, k, ny, nx)
            The scores of the block (``k`` after blending a grid), in ``dtype``.
        """
        H, W = window.shape
        r0, r1, c0, c1 = window.core
        x0, y0, x1, y1 = (0.0, 0.0, W, H) if frame is None else frame
        dtype = self._dtype(parts) if dtype is None else dtype
        parts = [p.to(dtype) for p in parts]
        dev = self.bias.device if not parts else parts[0].device
        rows, cols = _axis_pixels(r0, r1, dev), _axis_pixels(c0, c1, dev)
        u, v = axis_locations_t(cols, x0, x1), axis_locations_t(rows, y0, y1)
        canvases = [None] * len(parts) if canvases is None else list(canvases)
        coarse = self._coarse(parts, window)
        if coarse and guide is None:
            raise ValueError("HeadModule.scores: edge-aware upsampling needs the 'guide' image.")
        groups: dict[Any, list[int]] = {}
        for j in coarse:
            groups.setdefault(canvases[j], []).append(j)
        kept = [j for j in range(len(parts)) if j not in coarse]
        maps = [parts[j] for j in kept]
        axis_dtype = dtype if axis_dtype is None else axis_dtype
        axes = [self._axes(j, parts[j], window, canvases[j], (rows, cols), axis_dtype)
                for j in kept]
        if (labels_only and self.grid_size == 1 and list(groups) == [None] and window.is_whole
                and len(guide) == 1 and _concrete(H, W) and H * W <= WHOLE_PIXELS):
            acc = self._coarse_sum(parts, groups[None], window)[0]
            rest = self._plain(maps, axes, dtype, (u, v), window)
            return edge_aware_labels(acc[0], guide[0].to(dtype), rest[0])[0][None]
        for canvas, js in groups.items():  # summed per canvas, then one edge-aware upsampling
            maps.append(self._edge_aware(self._coarse_sum(parts, js, window), guide, window,
                                         canvas, rows, cols))
            axes.append((None, None))
        if self.grid_size > 1:
            K = self.grid_size
            return grid_blend(maps, axes, self.bias.to(dtype),
                              (cell_axis(v, K, dtype), cell_axis(u, K, dtype)), K)
        return self._plain(maps, axes, dtype, (u, v), window)

    def sample(self, maps: Sequence[torch.Tensor], rows: Any, cols: Any,
               image_shape: tuple[int, int], frame: tuple[float, ...] | None = None
               ) -> torch.Tensor:
        """Differentiable ``(k, n_pixels)`` scores of pixels ``(rows, cols)`` of an image.

        The maps ``(c_l, h_l, w_l)`` (native, of the whole image) are projected and read
        bilinearly at the pixels (``gather_points``, the operations
        of the dense path in its order), plus the bias and the location term, or blended by the
        grid: equal to :meth:`scores` at those pixels with ``upsampling="bilinear"``. Gradients
        flow to the maps and to the parameters (after ``requires_grad_()``), for training
        through the head.

        Parameters
        ----------
        maps : sequence of torch.Tensor
            The native maps ``(c_l, h_l, w_l)`` of the whole image, in the head's map order.
        rows, cols : array-like of int of shape (n_pixels,)
            The pixels' coordinates.
        image_shape : tuple of int
            ``(H, W)`` of the image.
        frame : tuple of float, default=None
            ``(x0, y0, x1, y1)`` the pixel locations are measured in (location
            terms, grid cells); None: the whole image.

        Returns
        -------
        scores : torch.Tensor of shape (k, n_pixels)
            The scores of the pixels, in the weights' dtype.
        """
        if any(self.coarse):
            raise ValueError("HeadModule.sample reads maps bilinearly; build the module with "
                             "upsampling='bilinear'.")
        H, W = image_shape
        x0, y0, x1, y1 = (0.0, 0.0, W, H) if frame is None else frame
        dev = self.bias.device
        rows = torch.as_tensor(rows, dtype=torch.int64, device=dev)
        cols = torch.as_tensor(cols, dtype=torch.int64, device=dev)
        parts = self.project([m.to(self.bias.dtype) for m in maps])
        values = [p.reshape(p.shape[0], 1) if self.vectors[j] or p.shape[1:] == (1, 1) else
                  gather_points(p, bilinear_axis(rows, p.shape[1], H, dtype=p.dtype),
                                bilinear_axis(cols, p.shape[2], W, dtype=p.dtype))
                  for j, p in enumerate(parts)]
        u, v = axis_locations_t(cols, x0, x1), axis_locations_t(rows, y0, y1)
        if self.grid_size > 1:
            K = self.grid_size
            wy, wx = cell_axis(v, K, self.bias.dtype), cell_axis(u, K, self.bias.dtype)
            total = None
            for g in [*values, self.bias.reshape(-1, 1)]:
                t = (g.reshape(K, K, -1, g.shape[-1]) * wy.reshape(K, 1, 1, -1)).sum(0)
                t = (t * wx.reshape(K, 1, -1)).sum(0)
                total = t if total is None else total + t
            return total
        total = self.bias.reshape(-1, 1).expand(-1, len(rows)).clone()
        for g in values:
            total = total + g
        if self.location is not None:
            total = total + location_term(self.location, u, v)
        return total

    # ------------------------------------------------------------------ the steps

    def _dtype(self, parts: Sequence[torch.Tensor]) -> torch.dtype:
        """float32 while the scores are bounded by 64 in magnitude, else float64."""
        bound = float(self.bias.abs().max()) + sum(float(p.abs().amax()) for p in parts)
        if self.location is not None:
            bound += float(self.location.abs().sum(0).max())
        return torch.float32 if bound <= _FLOAT32_SAFE else torch.float64

    def _size(self, j: int, part: torch.Tensor, window: Window) -> tuple[Any, Any]:
        """Map ``j``'s cells for the whole image."""
        return tuple(part.shape[-2:]) if window.native is None else window.native[j]

    def _offset(self, j: int, window: Window) -> tuple[int, int]:
        """The whole-map cell of map ``j``'s first row and column in ``window``."""
        s = self.strides[j]
        return (0, 0) if window.native is None else (window.origin[0] // s,
                                                     window.origin[1] // s)

    def _vector(self, j: int, part: torch.Tensor, window: Window) -> bool:
        size = self._size(j, part, window)
        return self.vectors[j] or (_concrete(*size) and tuple(size) == (1, 1))

    def _coarse(self, parts: Sequence[torch.Tensor], window: Window) -> list[int]:
        """The maps upsampled edge-aware (coarse layers; not 1 x 1 maps)."""
        return [j for j, p in enumerate(parts)
                if self.coarse[j] and not self._vector(j, p, window)]

    def _axes(self, j: int, part: torch.Tensor, window: Window, canvas: Any,
              pixels: tuple[torch.Tensor, torch.Tensor], dt: torch.dtype) -> tuple:
        """The bilinear rows and columns of map ``j`` at the block's pixels (None: a vector)."""
        if self._vector(j, part, window):
            return None, None
        (hn, wn), (oy, ox) = self._size(j, part, window), self._offset(j, window)
        H, W = window.shape if canvas is None else canvas
        rows, cols = pixels
        ry, cx = bilinear_axis(rows, hn, H, oy, dt), bilinear_axis(cols, wn, W, ox, dt)
        if window.native is not None and (
                min(int(ry[0].min()), int(cx[0].min())) < 0 or int(ry[1].max()) >= part.shape[-2]
                or int(cx[1].max()) >= part.shape[-1]):
            raise RuntimeError("HeadModule: a window's maps do not cover its block's neighbours.")
        return ry, cx

    def _plain(self, maps: list[torch.Tensor], axes: list[tuple], dtype: torch.dtype,
               uv: tuple[torch.Tensor, torch.Tensor], window: Window) -> torch.Tensor:
        """Bias, bilinear reads and location term of a plain head."""
        if not maps:  # every map is coarse and there is no guide: a 1 x 1 map of zeros
            maps = [torch.zeros((1, len(self.bias), 1, 1), dtype=dtype, device=self.bias.device)]
            axes = [(None, None)]
        total = sum_window(maps, axes, self.bias.to(dtype), window.block_shape)
        if self.location is not None:
            u, v = uv
            total += location_term(self.location.to(dtype), u[None, :], v[:, None])
        return total

    def _coarse_sum(self, parts: Sequence[torch.Tensor], js: list[int], window: Window
                    ) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int] | None]:
        """The coarse maps ``js`` summed on the grid of the finest (whole images), or on the
        cells of it that the block's pixels read (windows): the sum, its first cell and the
        whole grid's cells (None: the sum's)."""
        t = coarse_target([self.reductions[j] for j in js], [True] * len(js))
        ps = [parts[j] for j in js]
        if window.native is None:
            return coarse_sum(ps, target=t)[1], (0, 0), None
        (H, W), (r0, r1, c0, c1) = window.shape, window.core
        (hn, wn), (oy, ox) = window.native[js[t]], self._offset(js[t], window)
        # only the grid cells the block's pixels read (the window's edge cells could not be
        # read from the coarser maps)
        (ya, yb), (xa, xb) = _cells_read(r0, r1, hn, H), _cells_read(c0, c1, wn, W)
        ps[t] = ps[t][..., ya - oy:yb - oy, xa - ox:xb - ox]
        origins = [self._offset(j, window) for j in js]
        origins[t] = (ya, xa)
        acc = coarse_sum(ps, [window.native[j] for j in js], origins, target=t)[1]
        return acc, (ya, xa), (hn, wn)

    def _edge_aware(self, coarse: tuple, guide: torch.Tensor, window: Window, canvas: Any,
                    rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """The summed coarse map ``(n, k, h, w)`` (:meth:`_coarse_sum`) upsampled edge-aware
        to the block's pixels."""
        acc, origin, size = coarse
        H, W = window.shape
        if window.native is None and canvas is None and (
                not _concrete(H, W) or H * W <= WHOLE_PIXELS):  # the batched, traceable form
            return edge_aware_upsample_batch(acc, guide.to(acc.device, acc.dtype))
        out_size = (H, W) if canvas is None else canvas
        if window.native is None:
            return torch.stack([edge_aware_upsample(a, g, out_size, image_shape=(H, W))
                                for a, g in zip(acc, guide)])
        return torch.stack([edge_aware_upsample(
            a, g, out_size, rows=rows, cols=cols, guide_origin=window.origin, map_origin=origin,
            map_size=size, image_shape=(H, W)) for a, g in zip(acc, guide)])
