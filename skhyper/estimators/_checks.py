"""Checks shared by the estimators: classifiers up front, version stamps on pickles."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from sklearn.base import clone

from .._version import __version__
from ..exceptions import InconsistentVersionWarning

__all__ = ["VersionedMixin", "check_classifier", "checked_clone", "classes_of"]

_NOT_CLASSIFIERS = {
    "regressor": "a regressor",
    "clusterer": "a clusterer",
    "transformer": "a transformer",
    "outlier_detector": "an outlier detector",
    "density_estimator": "a density estimator",
}


def _estimator_type(est: Any) -> str | None:
    try:
        from sklearn.utils import get_tags

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return get_tags(est).estimator_type
    except Exception:  # not a scikit-learn estimator: judged by its fitted classes_
        return getattr(est, "_estimator_type", None)


def check_classifier(est: Any, param: str = "classifier") -> None:
    """Refuse, before any feature is computed, an estimator that is not a classifier.

    Estimators that declare another type (a regressor, a clusterer, ...) are refused;
    those that declare no type are accepted and must have ``classes_`` once fitted
    (see :func:`classes_of`).
    """
    kind = _estimator_type(est)
    if kind in _NOT_CLASSIFIERS:
        raise ValueError(
            f"The '{param}' parameter must be a classifier (pixels get labels); got "
            f"{type(est).__name__}, {_NOT_CLASSIFIERS[kind]}. Pass a scikit-learn classifier "
            "such as LogisticRegression() or a pipeline ending in one, or None for the default."
        )


def checked_clone(est: Any, param: str = "classifier") -> Any:
    """``clone(est)`` after :func:`check_classifier`, with a clear error if it cannot be cloned."""
    check_classifier(est, param)
    try:
        return clone(est)
    except TypeError as err:
        raise TypeError(
            f"The '{param}' parameter cannot be cloned by scikit-learn ({err}); pass an "
            "estimator that implements get_params (a scikit-learn estimator)."
        ) from None


def classes_of(est: Any, param: str = "classifier") -> Any:
    """The fitted ``classes_`` of a classifier, or a clear error naming ``param``."""
    if not hasattr(est, "classes_"):
        raise TypeError(
            f"The '{param}' parameter gave {type(est).__name__}, which has no classes_ after "
            "fit: it is not a classifier. Pass a scikit-learn classifier or a pipeline ending "
            "in one."
        )
    return est.classes_


class VersionedMixin:
    """Stamp pickles with the skhyper version; check the stamp when one is loaded.

    Loading an estimator pickled by another skhyper version warns with
    :class:`~skhyper.exceptions.InconsistentVersionWarning` (as scikit-learn does for its own
    version). If it was fitted and lacks a fitted attribute this version needs
    (``_required_fitted``), its fitted state is dropped with that warning saying so: the
    estimator keeps its parameters and must be fitted again.
    """

    _required_fitted: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        return {**state, "_skhyper_version": __version__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = self._upgrade_state(dict(state))
        saved = state.pop("_skhyper_version", None)
        name = type(self).__name__
        fitted = [k for k in state if k.endswith("_") and not k.startswith("_")]
        missing = [k for k in self._required_fitted if k not in state]
        stale = [k for k in self._required_fitted if _unfitted(state.get(k))]
        if fitted and (missing or stale):
            for k in fitted:
                state.pop(k)
            warnings.warn(
                InconsistentVersionWarning(
                    name, saved, __version__,
                    f"It lacks fitted attributes this version needs ({', '.join(missing or stale)})"
                    "; its fitted state was dropped: call fit again (its parameters are kept).",
                ),
                stacklevel=2,
            )
        elif saved != __version__:
            warnings.warn(InconsistentVersionWarning(name, saved, __version__), stacklevel=2)
        for param in inspect.signature(type(self).__init__).parameters.values():
            if param.name != "self" and param.name not in state and (
                param.default is not inspect.Parameter.empty
            ):  # a parameter added after the pickle was made: its default
                state[param.name] = param.default
        super().__setstate__(state)  # type: ignore[misc]

    def _upgrade_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """Fill fitted attributes an older pickle lacks but that follow from the others."""
        return state


def _unfitted(value: Any) -> bool:
    """A nested skhyper estimator whose fitted state was dropped when it was loaded."""
    required = getattr(value, "_required_fitted", None)
    return bool(required) and not all(k in vars(value) for k in required)
