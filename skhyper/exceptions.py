"""Warnings and errors raised by skhyper."""

from __future__ import annotations

__all__ = [
    "CollectionError",
    "DeviceWarning",
    "InconsistentVersionWarning",
    "IntensityWarning",
    "WeightsUnavailableError",
]


class DeviceWarning(UserWarning):
    """A model saved on one device was loaded on another (e.g. CUDA -> CPU)."""


class IntensityWarning(UserWarning):
    """Images would reach the backbone nearly black or outside [0, 1]; set ``intensity_range``."""


class WeightsUnavailableError(RuntimeError, ValueError):
    """Pretrained weights could not be obtained (offline, missing, corrupt or unfit file).

    A ``ValueError`` as well: a bad ``weights`` value is bad input.
    """


class InconsistentVersionWarning(UserWarning):
    """An estimator pickled by another skhyper version was loaded.

    Like scikit-learn's ``InconsistentVersionWarning`` (which covers scikit-learn's own
    version): the model may behave differently or, when it lacks fitted attributes this
    version needs, was loaded unfitted.

    Parameters
    ----------
    estimator_name : str
        The class name of the estimator loaded, for the message.
    original_skhyper_version : str or None
        The skhyper version that pickled it; None for a version that did not stamp its
        pickles.
    current_skhyper_version : str
        The skhyper version loading it.
    detail : str, default=""
        What differs and what to do; empty for the generic advice to fit it again.

    Attributes
    ----------
    estimator_name : str
        The class name of the estimator loaded.
    original_skhyper_version : str or None
        The version that pickled it; None: saved by a version that did not stamp its pickles.
    current_skhyper_version : str
        The version loading it.
    detail : str
        What differs and what to do (empty: the generic advice).

    Examples
    --------
    >>> w = InconsistentVersionWarning("HypercolumnSegmenter", "0.1.0", "0.2.0")
    >>> print(w)  # doctest: +NORMALIZE_WHITESPACE
    Trying to unpickle HypercolumnSegmenter from skhyper 0.1.0 when using skhyper 0.2.0.
    It might not work or give other results; fit it again with this version to be sure.
    """

    def __init__(
        self,
        estimator_name: str,
        original_skhyper_version: str | None,
        current_skhyper_version: str,
        detail: str = "",
    ) -> None:
        self.estimator_name = estimator_name
        self.original_skhyper_version = original_skhyper_version
        self.current_skhyper_version = current_skhyper_version
        self.detail = detail

    def __str__(self) -> str:
        saved = self.original_skhyper_version or "an earlier version (unstamped)"
        detail = self.detail or (
            "It might not work or give other results; fit it again with this version to be sure."
        )
        if saved == self.current_skhyper_version:
            return f"Unpickling {self.estimator_name} (skhyper {saved}): {detail}"
        return (
            f"Trying to unpickle {self.estimator_name} from skhyper {saved} when using "
            f"skhyper {self.current_skhyper_version}. {detail}"
        )


class CollectionError(ValueError):
    """Some images of a collection failed; the results of the others are kept.

    Raised by :func:`skhyper.parallel.predict_collection` once every image was tried, so that
    one bad file does not cost the results of the others.

    Parameters
    ----------
    message : str
        The error message (how many images failed, and the first failures).
    results : list
        One result per image, in order; None for the images that failed.
    failures : dict
        Index of each failed image -> ``"ExceptionType: message"``.

    Attributes
    ----------
    results : list
        One result per image, in order; None for the images that failed.
    failures : dict
        Index of each failed image -> ``"ExceptionType: message"`` (with the file path for
        a path).

    Examples
    --------
    A caller keeps what succeeded and reports the rest:

    >>> try:
    ...     raise CollectionError("1 of 2 images failed", ["labels of image 0", None],
    ...                           {1: "ValueError: empty image"})
    ... except CollectionError as err:
    ...     done = [r for r in err.results if r is not None]
    ...     print(len(done), err.failures)
    1 {1: 'ValueError: empty image'}
    """

    def __init__(self, message: str, results: list, failures: dict) -> None:
        super().__init__(message)
        self.results = results
        self.failures = failures
