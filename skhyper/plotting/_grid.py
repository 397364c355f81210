"""plot_grid_cells: the cells of a GridLocationClassifier over its frame."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

from ._common import _axes, _check_image, _pyplot, _show_image


def plot_grid_cells(
    grid: Any,
    ax: Axes | None = None,
    *,
    values: str | Any = "n_samples",
    image: Any = None,
    box: Sequence[float] | None = None,
    cmap: str = "viridis",
) -> Axes:
    """Draw the K x K cells of a fitted :class:`~skhyper.GridLocationClassifier` over its frame.

    Cell ``(i, j)`` (estimator ``i * K + j``) covers locations ``v`` in row ``i`` and ``u`` in
    column ``j`` of the frame: row 0 at the top, column 0 at the left. Each cell shows its
    value as colour and as text; cells that use the global estimator (``fallback_``) are
    hatched.

    Parameters
    ----------
    grid : GridLocationClassifier or Pipeline
        A fitted grid classifier, or a fitted pipeline ending with one (its last step is
        drawn).
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    values : {"n_samples", "fallback"} or array-like of shape (K, K), default="n_samples"
        What to show: the training pixels of each cell (``n_samples_cell_``), the fallback
        flags as 0/1, or numbers of your own (e.g. a score per cell), row-major like the
        cells.
    image : array-like of shape (height, width[, 3]), optional
        An image to draw below the (then semi-transparent) cells.
    box : (x0, y0, x1, y1), optional
        The frame in pixel coordinates. Default: the whole ``image``, or the unit square
        (axes ``u`` and ``v``) without an image.
    cmap : str, default="viridis"
        Colormap of the values.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on, for further labels or saving.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skhyper import GridLocationClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = np.hstack([rng.normal(size=(300, 3)), rng.random((300, 2))])
    >>> grid = GridLocationClassifier(LogisticRegression(), grid_size=2).fit(X, X[:, 0] > 0)
    >>> fig, ax = plt.subplots()
    >>> ax = plot_grid_cells(grid, ax, box=(10, 5, 50, 45))
    >>> ax.images[0].get_extent(), len(ax.texts)
    ([10.0, 50.0, 45.0, 5.0], 4)
    >>> plt.close(fig)
    """
    plt = _pyplot()
    from matplotlib.colors import Normalize

    grid = _fitted_grid(grid)
    fallback = np.asarray(grid.fallback_, dtype=bool)
    vals, label = _cell_values(values, np.asarray(grid.n_samples_cell_), fallback)
    img = None if image is None else _check_image(image, "image")
    frame = _frame(box, img)
    x0, y0, x1, y1 = frame

    ax = _axes(ax, plt)
    if img is not None:
        _show_image(ax, img)
    finite = vals[np.isfinite(vals)] if np.issubdtype(vals.dtype, np.floating) else vals
    vmin = float(finite.min()) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size else 1.0
    norm = Normalize(vmin, vmax if vmax > vmin else vmin + 1.0)
    cells = ax.imshow(
        vals, cmap=cmap, norm=norm, extent=(x0, x1, y1, y0), interpolation="nearest",
        alpha=0.5 if img is not None else 1.0,
    )
    bar = ax.figure.colorbar(cells, ax=ax, fraction=0.046, pad=0.04, label=label)
    bar.solids.set_alpha(1.0)  # the scale in full colour even when the cells are see-through
    _draw_cells(ax, vals, fallback, frame, cells.get_cmap(), norm)
    if img is not None:
        H, W = img.shape[:2]
        ax.set_xlim(min(0.0, x0), max(float(W), x1))
        ax.set_ylim(max(float(H), y1), min(0.0, y0))
    else:
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
    if box is None and img is None:
        ax.set_xlabel("u")
        ax.set_ylabel("v")
    else:
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
    return ax


def _fitted_grid(grid: Any) -> Any:
    """The fitted GridLocationClassifier itself (the last step of a Pipeline)."""
    if hasattr(grid, "steps") and hasattr(grid, "__getitem__"):
        grid = grid[-1]
    if not hasattr(grid, "grid_size") or not hasattr(grid, "fit"):
        raise TypeError(
            "The 'grid' parameter must be a fitted GridLocationClassifier (or a Pipeline ending "
            f"with one); got {type(grid).__name__}."
        )
    check_is_fitted(grid, ["n_samples_cell_", "fallback_"])
    return grid


def _cell_values(values: str | Any, counts: np.ndarray,
                 fallback: np.ndarray) -> tuple[np.ndarray, str]:
    """The (K, K) values to show and the colour bar's label."""
    K = counts.shape[0]
    if isinstance(values, str):
        if values == "n_samples":
            return counts, "training pixels per cell"
        if values == "fallback":
            return fallback.astype(np.int64), "fallback to the global estimator (1)"
        raise ValueError(
            "The 'values' parameter must be 'n_samples', 'fallback' or a (K, K) array; got "
            f"{values!r}."
        )
    vals = np.asarray(values)
    if vals.dtype == object or not (
        vals.dtype == bool or np.issubdtype(vals.dtype, np.number)
    ):
        raise TypeError(
            f"The 'values' parameter must hold numbers; got dtype {vals.dtype}."
        )
    if vals.shape != (K, K):
        raise ValueError(
            f"The 'values' parameter must have shape ({K}, {K}), one value per cell of the "
            f"{K} x {K} grid (row-major: cell i * K + j is row i, column j); got shape "
            f"{vals.shape}."
        )
    if vals.dtype == bool:
        vals = vals.astype(np.int64)
    return vals, "value"


def _frame(box: Sequence[float] | None, img: np.ndarray | None) -> tuple[float, ...]:
    """The frame ``(x0, y0, x1, y1)``: ``box``, else the whole image, else the unit square."""
    if box is None:
        if img is not None:
            return (0.0, 0.0, float(img.shape[1]), float(img.shape[0]))
        return (0.0, 0.0, 1.0, 1.0)
    try:
        frame = tuple(float(b) for b in box)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"The 'box' parameter must be 4 numbers (x0, y0, x1, y1); got {box!r}."
        ) from err
    if len(frame) != 4 or not np.all(np.isfinite(frame)):
        raise ValueError(
            f"The 'box' parameter must be 4 finite numbers (x0, y0, x1, y1); got {box!r}."
        )
    if not (frame[0] < frame[2] and frame[1] < frame[3]):
        raise ValueError(
            f"The 'box' parameter must have x0 < x1 and y0 < y1; got {box!r}."
        )
    return frame


def _draw_cells(ax: Axes, vals: np.ndarray, fallback: np.ndarray, frame: tuple[float, ...],
                colormap: Any, norm: Any) -> None:
    """Cell borders, each cell's value as text (ink readable on its colour), fallback hatches."""
    from matplotlib.patches import Patch, Rectangle

    x0, y0, x1, y1 = frame
    K = vals.shape[0]
    cw, ch = (x1 - x0) / K, (y1 - y0) / K
    for t in range(K + 1):
        ax.plot([x0 + t * cw] * 2, [y0, y1], color="white", linewidth=1.0)
        ax.plot([x0, x1], [y0 + t * ch] * 2, color="white", linewidth=1.0)
    for i in range(K):
        for j in range(K):
            v = vals[i, j]
            r, g, b, _ = colormap(norm(v)) if np.isfinite(v) else (1.0, 1.0, 1.0, 1.0)
            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            text = str(int(v)) if np.issubdtype(vals.dtype, np.integer) else f"{v:.3g}"
            ax.text(x0 + (j + 0.5) * cw, y0 + (i + 0.5) * ch, text, ha="center", va="center",
                    color=ink, fontsize="small")
            if fallback[i, j]:
                ax.add_patch(Rectangle(
                    (x0 + j * cw, y0 + i * ch), cw, ch, fill=False, hatch="//", edgecolor=ink,
                    linewidth=0.0, label="fallback",
                ))
    if fallback.any():
        ax.legend(
            handles=[Patch(fill=False, hatch="//", label="fallback: global estimator")],
            loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize="small",
        )
