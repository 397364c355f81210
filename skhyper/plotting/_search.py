"""plot_layer_scores: cross-validated scores of a search over layer subsets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

from ._common import _axes, _pyplot


def _format_value(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return "all"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "+".join(_format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _param_labels(results: Mapping[str, Any], key: str) -> list[str]:
    col = results[key]
    mask = np.ma.getmaskarray(col) if np.ma.isMaskedArray(col) else np.zeros(len(col), bool)
    data = np.ma.getdata(col) if np.ma.isMaskedArray(col) else col
    return ["(unset)" if m else _format_value(v) for v, m in zip(data, mask)]


def plot_layer_scores(
    search_or_results: Any,
    ax: Axes | None = None,
    *,
    param: str = "hypercolumns__layers",
    sort: bool = True,
) -> Axes:
    """Bar chart of cross-validated scores of the candidates of a search, e.g. over layers.

    Parameters
    ----------
    search_or_results : fitted GridSearchCV (or any search) or dict
        A fitted search (its ``cv_results_`` is used) or a ``cv_results_`` dict with the keys
        ``"param_<param>"``, ``"mean_test_score"`` and ``"std_test_score"``.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    param : str, default="hypercolumns__layers"
        The searched parameter that labels the bars: a list of layers is written joined by
        ``"+"``, None as ``"all"``. Other parameters that vary between candidates are appended
        in parentheses (``"blocks.6 (C=0.1)"``).
    sort : bool, default=True
        Sort the bars by mean score, best on top; otherwise candidates keep their order, the
        first on top.

    Returns
    -------
    ax : matplotlib Axes
        One horizontal bar per candidate, of length the mean test score, with the standard
        deviation over the CV folds as error bar; the best candidate (highest mean) is drawn in
        another colour.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> results = {
    ...     "param_hypercolumns__layers": [[4], [3, 4], None],
    ...     "mean_test_score": [0.71, 0.78, 0.80],
    ...     "std_test_score": [0.02, 0.01, 0.03],
    ... }
    >>> fig, ax = plt.subplots()
    >>> ax = plot_layer_scores(results, ax)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['all', '3+4', '4']
    >>> plt.close(fig)
    """
    plt = _pyplot()
    results = _results_of(search_or_results)
    if not isinstance(param, str):
        raise TypeError(f"The 'param' parameter must be a str; got {param!r}.")
    key = param if param.startswith("param_") else f"param_{param}"
    if key not in results:
        available = sorted(k for k in results if str(k).startswith("param_"))
        raise ValueError(
            f"The 'param' parameter is {param!r}, but the results have no key {key!r}; the "
            f"available parameter keys are {available}."
        )
    for need in ("mean_test_score", "std_test_score"):
        if need not in results:
            metrics = sorted(k for k in results if str(k).startswith("mean_test_"))
            raise ValueError(
                f"The 'search_or_results' parameter has no {need!r} (a multi-metric search? it "
                f"has {metrics}); pass a dict with 'mean_test_score' and 'std_test_score' set to "
                "the columns of one metric."
            )
    means = np.asarray(results["mean_test_score"], dtype=np.float64)
    stds = np.asarray(results["std_test_score"], dtype=np.float64)
    labels = _param_labels(results, key)
    n = len(means)
    if n == 0 or len(stds) != n or len(labels) != n:
        raise ValueError(
            "The 'search_or_results' parameter must hold at least one candidate, with as many "
            f"{key!r} ({len(labels)}) as 'mean_test_score' ({n}) and 'std_test_score' "
            f"({len(stds)}) entries."
        )
    labels = _with_other_params(results, key, labels)
    finite = np.isfinite(means)
    best = int(np.flatnonzero(finite)[np.argmax(means[finite])]) if finite.any() else None
    order = np.arange(n)
    if sort:
        order = np.argsort(np.where(finite, -means, np.inf), kind="stable")
    colours = ["tab:orange" if i == best else "tab:blue" for i in order]

    ax = _axes(ax, plt)
    y = np.arange(n)
    bars = ax.barh(
        y, means[order], xerr=stds[order], color=colours, capsize=3,
        error_kw={"ecolor": "0.2", "elinewidth": 1.0},
    )
    ax.bar_label(bars, labels=[f"{m:.3f}" for m in means[order]], label_type="center",
                 color="white", fontsize="small")
    ax.set_yticks(y, [labels[i] for i in order])
    ax.invert_yaxis()
    ax.set_xlabel("mean test score (± std over CV folds)")
    ax.set_ylabel(param[len("param_"):] if param.startswith("param_") else param)
    return ax


def _results_of(search_or_results: Any) -> Mapping[str, Any]:
    """The ``cv_results_`` of a fitted search, or the dict given."""
    if isinstance(search_or_results, Mapping):
        return search_or_results
    if hasattr(search_or_results, "cv_results_"):
        return search_or_results.cv_results_
    if hasattr(search_or_results, "get_params") and hasattr(search_or_results, "fit"):
        check_is_fitted(search_or_results, "cv_results_")  # an unfitted search: raises
    raise TypeError(
        "The 'search_or_results' parameter must be a fitted search (with `cv_results_`) or a "
        f"cv_results_ dict; got {type(search_or_results).__name__}."
    )


def _with_other_params(results: Mapping[str, Any], key: str, labels: list[str]) -> list[str]:
    """Each candidate's label followed by the other parameters that vary across candidates."""
    n = len(labels)
    others = []
    for k in results:
        if str(k).startswith("param_") and k != key and k != "params":
            vals = _param_labels(results, k)
            if len(vals) == n and len(set(vals)) > 1:
                others.append((str(k)[len("param_"):].split("__")[-1], vals))
    if not others:
        return labels
    return [
        f"{lab} (" + ", ".join(f"{name}={vals[i]}" for name, vals in others) + ")"
        for i, lab in enumerate(labels)
    ]
