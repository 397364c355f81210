"""The head's geometry in tensor operations: bilinear reads of native maps, pixel locations and
the cells of a location grid, for whole images, windows and single pixels alike.

Every read of a native map at image pixels in :mod:`skhyper.heads` goes through
:func:`bilinear_axis` (the neighbours and weights of ``F.interpolate(mode="bilinear",
align_corners=False)``, float32 arithmetic as it computes them) and :func:`gather_window` (a
block of pixels: rows, then columns) or :func:`gather_points` (single pixels, the same
operations in the same order, so a pixel gets the value the block gives it). A whole image is
the window with offset 0. Sizes may be ints, traced sizes (``torch.jit.trace``: 0-d tensors)
or symbolic sizes (``torch.export``): only tensor operations, so exported networks keep their
sizes dynamic.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["axis_locations_t", "bilinear_axis", "cell_axis", "gather_points", "gather_window",
           "location_term", "sum_window"]

Axis = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _number(n: Any, dtype: torch.dtype) -> Any:
    """A size as a number for float arithmetic (traced sizes are 0-d int64 tensors)."""
    return n.to(dtype) if isinstance(n, torch.Tensor) else n


def bilinear_axis(pos: torch.Tensor, n_cells: Any, out_size: Any, offset: Any = 0,
                  dtype: torch.dtype = torch.float32) -> Axis:
    """Bilinear neighbours and weights of pixels ``pos`` of an axis of ``out_size`` pixels
    covered by ``n_cells`` cells: ``(i0, i1, w0, w1)``.

    As ``F.interpolate(mode="bilinear", align_corners=False)`` computes them for maps of
    ``dtype`` (its arithmetic: float32 for float32 maps, float64 for float64 maps). The
    indices count from cell ``offset`` (a window of the map that starts there). ``out_size``
    may be a canvas that is not a whole number of pixels.

    Examples
    --------
    >>> i0, i1, w0, w1 = bilinear_axis(torch.arange(4), 2, 4)
    >>> i0.tolist(), i1.tolist(), w1.tolist()
    ([0, 0, 0, 1], [1, 1, 1, 1], [0.0, 0.25, 0.75, 0.25])
    """
    scale = _number(n_cells, dtype) / _number(out_size, dtype)
    src = ((pos.to(dtype) + 0.5) * scale - 0.5).clamp(min=0.0)
    i0 = torch.clamp(src.to(torch.int64), max=n_cells - 1)
    i1 = torch.clamp(i0 + 1, max=n_cells - 1)
    lam1 = (src - i0.to(dtype)).clamp(0.0, 1.0)
    return i0 - offset, i1 - offset, 1.0 - lam1, lam1


def _interp(m: torch.Tensor, axis: Axis | None, dim: int) -> torch.Tensor:
    """``m`` interpolated along dimension ``dim`` (-2 or -1); None: as it is (a vector, or a
    map already at the pixels)."""
    if axis is None:
        return m
    i0, i1, w0, w1 = axis
    shape = (-1, 1) if dim == -2 else (-1,)
    w0, w1 = w0.to(m.dtype).reshape(shape), w1.to(m.dtype).reshape(shape)
    return m.index_select(dim, i0) * w0 + m.index_select(dim, i1) * w1


def gather_window(m: torch.Tensor, rows: Axis | None, cols: Axis | None) -> torch.Tensor:
    """A ``(..., h, w)`` map read bilinearly at a block of pixels: ``(..., ny, nx)``.

    ``rows`` / ``cols``: :func:`bilinear_axis` of the block's rows and columns (None: that axis
    is taken as it is). Rows first, then columns, in the map's dtype.

    Examples
    --------
    >>> m = torch.arange(4.0).view(1, 2, 2)
    >>> axis = bilinear_axis(torch.arange(4), 2, 4)
    >>> gather_window(m, axis, axis)[0, 1].tolist()
    [0.5, 0.75, 1.25, 1.5]
    """
    return _interp(_interp(m, rows, -2), cols, -1)


def sum_window(parts: list[torch.Tensor], axes: list[tuple], bias: torch.Tensor,
               shape: tuple[Any, Any]) -> torch.Tensor:
    """``bias + sum_l gather_window(parts[l], *axes[l])`` as ``(..., k, ny, nx)`` of a block of
    ``shape`` ``(ny, nx)`` pixels (a part with axes ``(None, None)`` is a vector broadcast, or a
    map already at the pixels)."""
    lead = parts[0].shape[:-3] if parts else ()
    total = bias.reshape(-1, 1, 1).expand(*lead, -1, *shape).clone()
    for m, (rows, cols) in zip(parts, axes):
        total += gather_window(m, rows, cols)
    return total


def gather_points(m: torch.Tensor, rows: Axis, cols: Axis) -> torch.Tensor:
    """A ``(c, h, w)`` map read bilinearly at single pixels: ``(c, n)``.

    ``rows`` / ``cols``: :func:`bilinear_axis` of the pixels' rows and columns, ``(n,)`` each.
    The operations of :func:`gather_window` in its order, so each pixel gets the value a block
    gives it; differentiable in ``m``.
    """
    i0, i1, a0, a1 = rows
    j0, j1, b0, b1 = cols
    a0, a1, b0, b1 = (t.to(m.dtype) for t in (a0, a1, b0, b1))
    left = m[:, i0, j0] * a0 + m[:, i1, j0] * a1
    right = m[:, i0, j1] * a0 + m[:, i1, j1] * a1
    return left * b0 + right * b1


def axis_locations_t(pos: torch.Tensor, lo: Any, hi: Any) -> torch.Tensor:
    """Locations in ``[0, 1]`` (float64) of pixels ``pos`` of an axis framed by ``[lo, hi)``:
    :func:`skhyper.location.axis_locations` in tensor operations (the same arithmetic)."""
    hi = _number(hi, torch.float64)
    return ((pos.to(torch.float64) + 0.5 - lo) / (hi - lo)).clamp(0.0, 1.0)


def location_term(weights: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The location scores ``w_u * u + w_v * v`` of a head's ``(2, k)`` location weights:
    ``(k, *shape)`` for locations ``u`` and ``v`` that broadcast to ``shape`` (a row and a
    column of a block, or the pixels of a sample)."""
    dims = (-1,) + (1,) * max(u.dim(), v.dim())
    return weights[0].reshape(dims) * u.to(weights.dtype) + weights[1].reshape(dims) * v.to(
        weights.dtype)


def cell_axis(t: torch.Tensor, grid_size: int, dtype: torch.dtype) -> torch.Tensor:
    """``(grid_size, n)`` bilinear weights of locations ``t`` (in ``[0, 1]``) on the cell centres
    of a grid axis, clamped beyond the outermost centres: as
    :func:`skhyper.location.axis_cell_weights`, one row per cell."""
    K = grid_size
    s = (t.to(torch.float64) * K - 0.5).clamp(0.0, K - 1)
    j0 = torch.clamp(torch.floor(s), max=max(K - 2, 0))
    w1 = s - j0
    j1 = torch.clamp(j0 + 1, max=K - 1)
    cells = torch.arange(K, device=t.device, dtype=torch.float64)[:, None]
    out = (cells == j0[None]).to(torch.float64) * (1.0 - w1) + (cells == j1[None]).to(
        torch.float64) * w1
    return out.to(dtype)
