"""plot_overlay: labels or probabilities over an image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

from ._common import _axes, _check_fraction, _check_image, _pyplot, _show_image


def _label_colors(labels: np.ndarray, class_colors: Any) -> dict[int, tuple[float, ...]]:
    """RGBA colour of each label in ``labels`` (transparent: alpha 0)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgba

    clear = (0.0, 0.0, 0.0, 0.0)
    if class_colors is None:
        cmap = colormaps["tab10" if labels.max(initial=0) <= 10 else "tab20"]
        return {
            int(k): clear if k <= 0 else tuple(cmap((int(k) - 1) % cmap.N)) for k in labels
        }
    out = {}
    for k in labels:
        k = int(k)
        if isinstance(class_colors, Mapping):
            if k not in class_colors:
                raise ValueError(
                    f"The 'class_colors' parameter has no colour for label {k}; it has colours "
                    f"for {sorted(class_colors)} (use None for a transparent label)."
                )
            colour = class_colors[k]
        elif isinstance(class_colors, Sequence) and not isinstance(class_colors, str):
            if k < 0:
                colour = None
            elif k >= len(class_colors):
                raise ValueError(
                    f"The 'class_colors' parameter holds {len(class_colors)} colours, indexed by "
                    f"label, but the labels go up to {int(labels.max())}."
                )
            else:
                colour = class_colors[k]
        else:
            raise TypeError(
                "The 'class_colors' parameter must be None, a dict {label: colour} or a list of "
                f"colours indexed by label; got {type(class_colors).__name__}."
            )
        try:
            out[k] = clear if colour is None else to_rgba(colour)
        except ValueError as err:
            raise ValueError(
                f"The 'class_colors' parameter gives label {k} the colour {colour!r}, which "
                f"matplotlib does not know ({err})."
            ) from err
    return out


def plot_overlay(
    image: Any,
    labels_or_proba: Any,
    ax: Axes | None = None,
    *,
    alpha: float = 0.5,
    contour: bool = True,
    class_colors: Mapping[int, Any] | Sequence[Any] | None = None,
    title: str | None = None,
) -> Axes:
    """Draw an image with predicted labels or foreground probabilities on top.

    Parameters
    ----------
    image : array-like of shape (height, width) or (height, width, 3)
        uint8 (or another unsigned integer type), bool, or float in ``[0, 1]``.
    labels_or_proba : array-like
        What to overlay, with the height and width of ``image``:

        - integer or bool ``(height, width)`` labels (``predict``): one colour per label.
          Label 0 (the background) and negative labels (ignored pixels) stay transparent;
          label ``k >= 1`` takes colour ``k - 1`` of the qualitative colormap ``"tab10"``
          (``"tab20"`` for labels above 10), so a label has the same colour in every image.
        - float ``(height, width)`` foreground probabilities, or ``(height, width, 2)``
          class probabilities (``predict_proba``; channel 1 is shown): a ``"magma"`` heat map
          with a colorbar.
        - float ``(height, width, n_classes)`` probabilities with ``n_classes > 2``: their
          ``argmax`` is drawn as labels (class index = label).
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    alpha : float, default=0.5
        Opacity of the overlay.
    contour : bool, default=True
        Draw the boundaries between labels (labels) or the 0.5 level (probabilities).
    class_colors : dict or sequence, optional
        Colours of the labels: ``{label: colour}`` for every label present, or a sequence
        indexed by label value; a colour of None is transparent.
    title : str, optional
        Axes title.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on, for further labels or saving.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> image = np.zeros((20, 30, 3), dtype=np.uint8)
    >>> labels = np.zeros((20, 30), dtype=int)
    >>> labels[5:15, 10:25] = 1
    >>> fig, ax = plt.subplots()
    >>> ax = plot_overlay(image, labels, ax, title="prediction")
    >>> len(ax.images), ax.images[1].get_array().shape, len(ax.collections)
    (2, (20, 30, 4), 1)
    >>> plt.close(fig)
    """
    plt = _pyplot()
    img = _check_image(image, "image")
    alpha = _check_fraction(alpha, "alpha")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"The 'title' parameter must be a str or None; got {title!r}.")
    over, is_float = _check_overlay(labels_or_proba, img.shape[:2], np.shape(image))
    ax = _axes(ax, plt)
    _show_image(ax, img)
    H, W = img.shape[:2]
    extent = (0, W, H, 0)
    xs, ys = np.arange(W) + 0.5, np.arange(H) + 0.5

    if is_float and (over.ndim == 2 or over.shape[2] <= 2):
        prob = over if over.ndim == 2 else over[:, :, over.shape[2] - 1]
        heat = ax.imshow(
            prob, cmap="magma", vmin=0.0, vmax=1.0, alpha=alpha, extent=extent,
            interpolation="nearest",
        )
        ax.figure.colorbar(heat, ax=ax, fraction=0.046, pad=0.04, label="foreground probability")
        if contour and prob.min() < 0.5 < prob.max():
            ax.contour(xs, ys, prob, levels=[0.5], colors="cyan", linewidths=1.0)
    else:
        labels = over.argmax(axis=2) if over.ndim == 3 else over.astype(np.int64)
        present = np.unique(labels)
        colours = _label_colors(present, class_colors)
        rgba = np.zeros((H, W, 4), dtype=np.float32)
        for k, colour in colours.items():
            rgba[labels == k] = colour
        rgba[:, :, 3] *= alpha
        ax.imshow(rgba, extent=extent, interpolation="nearest")
        if contour and len(present) > 1:
            levels = (present[:-1] + present[1:]) / 2.0
            ax.contour(xs, ys, labels.astype(np.float64), levels=levels, colors="white",
                       linewidths=1.0)
    ax.set_xlim(0, W)
    ax.set_ylim(H, 0)
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return ax


def _check_overlay(labels_or_proba: Any, size: tuple[int, ...],
                   image_shape: tuple[int, ...]) -> tuple[np.ndarray, bool]:
    """The labels (integers) or probabilities (floats in [0, 1]) to draw; whether floats."""
    over = np.asarray(labels_or_proba)
    if over.dtype == object or not (
        over.dtype == bool or np.issubdtype(over.dtype, np.integer)
        or np.issubdtype(over.dtype, np.floating)
    ):
        raise TypeError(
            "The 'labels_or_proba' parameter must be integer labels or float probabilities; "
            f"got dtype {over.dtype}."
        )
    if over.ndim not in (2, 3) or over.shape[:2] != size:
        raise ValueError(
            "The 'labels_or_proba' parameter must be (height, width) labels or probabilities, or "
            "(height, width, n_classes) probabilities, with the height and width of `image`; "
            f"got shape {over.shape} for image shape {image_shape}."
        )
    is_float = np.issubdtype(over.dtype, np.floating)
    if not is_float and over.ndim == 3:
        raise ValueError(
            "The 'labels_or_proba' parameter holds integers, so it must be a 2-D (height, width) "
            f"label map; got shape {over.shape}."
        )
    if is_float:
        if not np.isfinite(over).all():
            raise ValueError("The 'labels_or_proba' parameter contains NaN or infinite values.")
        lo, hi = float(over.min()), float(over.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                "The 'labels_or_proba' parameter is float, so it must hold probabilities in "
                f"[0, 1]; got values in [{lo:g}, {hi:g}] (pass `predict` labels as integers, "
                "or `predict_proba` instead of scores)."
            )
    return over, is_float
