"""Plots for pixel classifiers: overlays, hypercolumn colours, layer searches, location grids.

matplotlib is an optional dependency (``pip install 'skhyper[plot]'``); it is imported by
each function when called, never when this module is imported.

Images are drawn in pixel coordinates with pixel edges on integers: pixel ``(row, col)``
covers ``[col, col + 1) x [row, row + 1)``, so a frame ``(x0, y0, x1, y1)`` of
:mod:`skhyper.location` (and a box given to :class:`~skhyper.HypercolumnSegmenter`)
lands where it belongs on the image.

Every function draws on ``ax`` (a new figure and axes when ``ax`` is None) and returns it.
"""

from ._grid import plot_grid_cells
from ._overlay import plot_overlay
from ._rgb import hypercolumns_to_rgb
from ._search import plot_layer_scores

__all__ = [
    "hypercolumns_to_rgb",
    "plot_grid_cells",
    "plot_layer_scores",
    "plot_overlay",
]
