"""hypercolumns_to_rgb: a dense hypercolumn to 3 colour channels by PCA."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.random import sample_without_replacement
from sklearn.utils.validation import check_is_fitted

if TYPE_CHECKING:  # pragma: no cover
    pass


def _check_hypercolumns(hypercolumns: Any) -> tuple[list[np.ndarray], bool]:
    single = not isinstance(hypercolumns, (list, tuple))
    maps = [hypercolumns] if single else list(hypercolumns)
    if not maps:
        raise ValueError("The 'hypercolumns' parameter must hold at least one map; got [].")
    out = []
    for i, m in enumerate(maps):
        where = "hypercolumns" if single else f"hypercolumns[{i}]"
        arr = np.asarray(m)
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(
                f"The '{where}' parameter must be a numeric (height, width, n_features) array; "
                f"got dtype {arr.dtype}."
            )
        if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(
                f"The '{where}' parameter must be a dense (height, width, n_features) array as "
                f"returned by `transform_dense`; got shape {arr.shape}."
            )
        if arr.shape[2] < 3:
            raise ValueError(
                f"The '{where}' parameter has {arr.shape[2]} features per pixel; at least 3 are "
                "needed for 3 principal components."
            )
        if arr.shape[2] != np.shape(maps[0])[2]:
            raise ValueError(
                f"The '{where}' parameter has {arr.shape[2]} features per pixel but "
                f"`hypercolumns[0]` has {np.shape(maps[0])[2]}; all maps must come from the same "
                "transformer."
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"The '{where}' parameter contains NaN or infinite values.")
        out.append(arr)
    return out, single


def hypercolumns_to_rgb(
    hypercolumns: Any,
    *,
    pca: Any = None,
    random_state: int | np.random.RandomState | None = 0,
    max_fit_pixels: int = 20000,
    return_pca: bool = False,
) -> np.ndarray | list[np.ndarray] | tuple[Any, Any]:
    """Colour each pixel by the first 3 principal components of its hypercolumn.

    One PCA is fitted on the pixels of all the given maps together, so colours are comparable
    across the set: equal hypercolumns get equal colours in every image.

    Parameters
    ----------
    hypercolumns : ndarray of shape (height, width, n_features) or list of them
        Dense hypercolumns, as returned by
        :meth:`~skhyper.HypercolumnTransformer.transform_dense`.
    pca : fitted transformer, optional
        A fitted :class:`~sklearn.decomposition.PCA` (or any fitted transformer with 3 output
        columns) to use instead of fitting one. When it has the attribute ``rgb_limits_`` (as
        the PCA returned with ``return_pca=True`` has), those limits map the components to
        colours, so the colours reproduce exactly; otherwise the limits are computed from the
        given maps.
    random_state : int, RandomState or None, default=0
        Seeds the pixel subsample and the PCA solver.
    max_fit_pixels : int, default=20000
        The PCA and the colour limits are fitted on at most this many pixels, drawn at random
        from all maps.
    return_pca : bool, default=False
        Also return the PCA, with the attribute ``rgb_limits_``: an array of shape (2, 3) of the
        1st and 99th percentiles of each component over the fit pixels.

    Returns
    -------
    rgb : float32 ndarray of shape (height, width, 3) or list of them
        Component ``c`` of each pixel mapped linearly from ``rgb_limits_[:, c]`` to ``[0, 1]``
        and clipped. A list for a list input.
    pca : PCA
        Only with ``return_pca=True``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> maps = [rng.normal(size=(8, 10, 16)), rng.normal(size=(6, 5, 16))]
    >>> rgb, pca = hypercolumns_to_rgb(maps, return_pca=True)
    >>> [c.shape for c in rgb], rgb[0].dtype, float(rgb[0].min()) >= 0.0
    ([(8, 10, 3), (6, 5, 3)], dtype('float32'), True)
    >>> again = hypercolumns_to_rgb(maps[1], pca=pca)  # same colours, PCA not refitted
    >>> bool(np.array_equal(again, rgb[1]))
    True
    """
    from sklearn.decomposition import PCA

    maps, single = _check_hypercolumns(hypercolumns)
    if (
        isinstance(max_fit_pixels, bool) or not isinstance(max_fit_pixels, numbers.Integral)
        or max_fit_pixels < 3
    ):
        raise ValueError(
            f"The 'max_fit_pixels' parameter must be an integer >= 3; got {max_fit_pixels!r}."
        )
    if not isinstance(return_pca, (bool, np.bool_)):
        raise TypeError(f"The 'return_pca' parameter must be a bool; got {return_pca!r}.")
    D = maps[0].shape[2]
    flat = [m.reshape(-1, D) for m in maps]
    sizes = np.array([len(f) for f in flat])
    n_total = int(sizes.sum())
    rng = check_random_state(random_state)

    def fit_pixels() -> np.ndarray:
        if n_total < 3:
            raise ValueError(
                f"The 'hypercolumns' parameter has {n_total} pixels in all; at least 3 are "
                "needed to fit 3 principal components."
            )
        if n_total <= max_fit_pixels:
            return np.concatenate(flat)
        idx = np.sort(sample_without_replacement(n_total, max_fit_pixels, random_state=rng))
        starts = np.concatenate([[0], np.cumsum(sizes)])
        return np.concatenate([
            f[idx[(idx >= s) & (idx < e)] - s] for f, s, e in zip(flat, starts[:-1], starts[1:])
        ])

    limits = None
    if pca is None:
        X = fit_pixels()
        pca = PCA(n_components=3, random_state=rng).fit(X)
        limits = np.percentile(pca.transform(X), [1, 99], axis=0)
        pca.rgb_limits_ = limits
    else:
        _check_pca(pca, D)
        limits = getattr(pca, "rgb_limits_", None)
        if limits is None:
            limits = np.percentile(pca.transform(fit_pixels()), [1, 99], axis=0)
        limits = np.asarray(limits, dtype=np.float64)
        if limits.shape != (2, 3):
            raise ValueError(
                "The 'pca' parameter must give 3 components (its `rgb_limits_` has shape "
                f"{limits.shape}, expected (2, 3))."
            )
    lo, hi = limits
    span = np.where(hi > lo, hi - lo, 1.0)
    out = []
    for m, f in zip(maps, flat):
        proj = np.asarray(pca.transform(f))
        if proj.ndim != 2 or proj.shape[1] != 3:
            raise ValueError(
                "The 'pca' parameter must transform hypercolumns to 3 components; it gives shape "
                f"{proj.shape}."
            )
        rgb = np.clip((proj - lo) / span, 0.0, 1.0).astype(np.float32)
        out.append(rgb.reshape(m.shape[0], m.shape[1], 3))
    rgb_out: Any = out[0] if single else out
    return (rgb_out, pca) if return_pca else rgb_out


def _check_pca(pca: Any, n_features: int) -> None:
    """A fitted transformer of ``n_features`` columns, or a clear error naming ``pca``."""
    if not hasattr(pca, "transform"):
        raise TypeError(
            "The 'pca' parameter must be a fitted PCA (or transformer) or None; got "
            f"{type(pca).__name__}, which has no `transform`."
        )
    check_is_fitted(pca)
    n_in = getattr(pca, "n_features_in_", n_features)
    if n_in != n_features:
        raise ValueError(
            f"The 'pca' parameter was fitted on {n_in} features, but the hypercolumns have "
            f"{n_features} per pixel."
        )
