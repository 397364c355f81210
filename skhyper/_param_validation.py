"""Parameter constraints and their validation, the subset of scikit-learn's that skhyper uses.

scikit-learn validates estimator parameters against ``_parameter_constraints`` and public
functions with ``@validate_params``, but both live in its private module
``sklearn.utils._param_validation``, which may change in any release. This module holds the
parts skhyper uses (adapted from scikit-learn 1.9, BSD-3-Clause, © the scikit-learn
developers), with the same constraint objects, the same error messages and the same error
type (:class:`InvalidParameterError`, a ``ValueError`` and a ``TypeError``), so that
skhyper keeps working whatever scikit-learn does with its private modules.

scikit-learn's own ``BaseEstimator._validate_params`` only knows scikit-learn's constraint
objects: estimators validate with :class:`ParamValidationMixin` (before ``BaseEstimator``
in the bases), which reads the same ``_parameter_constraints`` with this module's rules.
scikit-learn's public ``skip_parameter_validation`` setting (``sklearn.set_config``,
``sklearn.config_context``) is honoured by :func:`validate_params` as by scikit-learn's.
"""

from __future__ import annotations

import functools
import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from inspect import signature
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn import config_context, get_config

__all__ = [
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "Options",
    "ParamValidationMixin",
    "StrOptions",
    "generate_invalid_param_val",
    "make_constraint",
    "validate_parameter_constraints",
    "validate_params",
]


class InvalidParameterError(ValueError, TypeError):
    """A parameter of a class, method or function has an invalid type or value.

    A ``ValueError`` and a ``TypeError`` at once, as scikit-learn's error of the same name,
    so code catching either keeps working.
    """


def validate_parameter_constraints(
    parameter_constraints: Mapping[str, Any] | str, params: Mapping[str, Any], caller_name: str
) -> None:
    """Check each parameter against its list of constraints; raise on the first failure.

    Parameters
    ----------
    parameter_constraints : dict or "no_validation"
        ``{param_name: list of constraints}``; a parameter is valid when it satisfies one of
        its constraints. A constraint is an :class:`Interval`, :class:`Options` /
        :class:`StrOptions`, :class:`HasMethods`, a type (instances of it are valid),
        ``None`` (``None`` is valid), ``"boolean"`` (``bool`` or ``numpy.bool_``) or
        ``"random_state"`` (an int in [0, 2**32 - 1], a ``RandomState`` or ``None``). The
        list may be replaced by ``"no_validation"``; parameters without an entry are not
        checked.
    params : dict
        ``{param_name: value}``, the values to check.
    caller_name : str
        The estimator, function or method named in the error message.

    Raises
    ------
    InvalidParameterError
        ``The 'p' parameter of caller must be <constraints>. Got <value> instead.``

    Examples
    --------
    >>> validate_parameter_constraints(
    ...     {"n": [Interval(Integral, 1, None, closed="left")]}, {"n": 0}, "f")
    Traceback (most recent call last):
    ...
    skhyper._param_validation.InvalidParameterError: The 'n' parameter of f must be an int in \
the range [1, inf). Got 0 instead.
    """
    if parameter_constraints == "no_validation":
        return
    for param_name, param_val in params.items():
        constraints = parameter_constraints.get(param_name, "no_validation")
        if constraints == "no_validation":
            continue
        constraints = [make_constraint(constraint) for constraint in constraints]
        if any(constraint.is_satisfied_by(param_val) for constraint in constraints):
            continue
        shown = [str(constraint) for constraint in constraints]
        constraints_str = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
        raise InvalidParameterError(
            f"The {param_name!r} parameter of {caller_name} must be"
            f" {constraints_str}. Got {param_val!r} instead."
        )


def make_constraint(constraint: Any) -> _Constraint:
    """Turn one entry of a constraint list into its constraint object.

    Parameters
    ----------
    constraint : object
        A constraint object, a type, ``None``, ``"boolean"`` or ``"random_state"``.

    Returns
    -------
    constraint : _Constraint

    Raises
    ------
    ValueError
        For anything else (e.g. scikit-learn's own constraint objects).
    """
    if isinstance(constraint, _Constraint):
        return constraint
    if constraint is None:
        return _NoneConstraint()
    if isinstance(constraint, type):
        return _InstancesOf(constraint)
    if isinstance(constraint, str) and constraint == "boolean":
        return _Booleans()
    if isinstance(constraint, str) and constraint == "random_state":
        return _RandomStates()
    raise ValueError(f"Unknown constraint type: {constraint}")


def validate_params(
    parameter_constraints: dict[str, Any], *, prefer_skip_nested_validation: bool
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: check a function's arguments against constraints before it runs.

    Parameters
    ----------
    parameter_constraints : dict
        ``{param_name: list of constraints}`` (see :func:`validate_parameter_constraints`);
        ``*args`` and ``**kwargs`` are not checked.
    prefer_skip_nested_validation : bool
        If True, the functions and estimators the decorated function calls skip their own
        validation (scikit-learn's ``skip_parameter_validation`` setting, for the duration of
        the call): the arguments were checked once, here.

    Returns
    -------
    decorator : callable
        Wraps a function; the constraints are also its ``_skl_parameter_constraints``
        attribute, as scikit-learn sets it.

    Examples
    --------
    >>> @validate_params({"k": [StrOptions({"a", "b"})]}, prefer_skip_nested_validation=True)
    ... def pick(k):
    ...     return k
    >>> pick("a")
    'a'
    >>> pick("c")
    Traceback (most recent call last):
    ...
    skhyper._param_validation.InvalidParameterError: The 'k' parameter of pick must be a str \
among {...}. Got 'c' instead.
    """

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        func._skl_parameter_constraints = parameter_constraints  # type: ignore[attr-defined]
        func_sig = signature(func)
        to_ignore = {"self", "cls"} | {
            p.name for p in func_sig.parameters.values()
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            global_skip_validation = get_config()["skip_parameter_validation"]
            if global_skip_validation:
                return func(*args, **kwargs)
            bound = func_sig.bind(*args, **kwargs)
            bound.apply_defaults()
            params = {k: v for k, v in bound.arguments.items() if k not in to_ignore}
            validate_parameter_constraints(
                parameter_constraints, params, caller_name=func.__qualname__
            )
            try:
                with config_context(skip_parameter_validation=prefer_skip_nested_validation):
                    return func(*args, **kwargs)
            except InvalidParameterError as e:
                # a function wrapping an estimator lets the estimator validate; the message
                # then names the function the user called, not the estimator
                msg = re.sub(r"parameter of \w+ must be",
                             f"parameter of {func.__qualname__} must be", str(e))
                raise InvalidParameterError(msg) from e

        return wrapper

    return decorator


class ParamValidationMixin:
    """Estimator mixin: ``_validate_params`` with this module's constraints.

    Put it before ``BaseEstimator`` in the bases. It replaces
    ``BaseEstimator._validate_params``, which only accepts scikit-learn's constraint objects,
    and checks the estimator's ``get_params(deep=False)`` against its
    ``_parameter_constraints`` (same messages).
    """

    _parameter_constraints: dict[str, Any] = {}

    def _validate_params(self) -> None:
        """Raise :class:`InvalidParameterError` for the first parameter that fits no constraint."""
        validate_parameter_constraints(
            self._parameter_constraints,
            self.get_params(deep=False),  # type: ignore[attr-defined]
            caller_name=type(self).__name__,
        )


def _type_name(t: type) -> str:
    """A type's name as the messages show it (``int``, ``float``, ``module.Class``)."""
    if t.__module__ == "builtins":
        return t.__qualname__
    if t == Real:
        return "float"
    if t == Integral:
        return "int"
    return f"{t.__module__}.{t.__qualname__}"


class _Constraint(ABC):
    """A rule a parameter value satisfies or not, with the text an error message shows."""

    @abstractmethod
    def is_satisfied_by(self, val: Any) -> bool:
        """Whether ``val`` satisfies the constraint."""

    @abstractmethod
    def __str__(self) -> str:
        """The constraint in words, for error messages."""


class _InstancesOf(_Constraint):
    """Instances of ``type``."""

    def __init__(self, type: type) -> None:
        self.type = type

    def is_satisfied_by(self, val: Any) -> bool:
        return isinstance(val, self.type)

    def __str__(self) -> str:
        return f"an instance of {_type_name(self.type)!r}"


class _NoneConstraint(_Constraint):
    """The ``None`` singleton."""

    def is_satisfied_by(self, val: Any) -> bool:
        return val is None

    def __str__(self) -> str:
        return "None"


class _AnyOf(_Constraint):
    """A named union of constraints (``"boolean"``, ``"random_state"``)."""

    _constraints: list[_Constraint]

    def is_satisfied_by(self, val: Any) -> bool:
        return any(c.is_satisfied_by(val) for c in self._constraints)

    def __str__(self) -> str:
        shown = [str(c) for c in self._constraints]
        return f"{', '.join(shown[:-1])} or {shown[-1]}"


class _Booleans(_AnyOf):
    """``bool`` or ``numpy.bool_``."""

    def __init__(self) -> None:
        self._constraints = [_InstancesOf(bool), _InstancesOf(np.bool_)]


class _RandomStates(_AnyOf):
    """An int in [0, 2**32 - 1], a ``numpy.random.RandomState`` or ``None``."""

    def __init__(self) -> None:
        self._constraints = [
            Interval(Integral, 0, 2**32 - 1, closed="both"),
            _InstancesOf(np.random.RandomState),
            _NoneConstraint(),
        ]


class Options(_Constraint):
    """A finite set of values of one type.

    Parameters
    ----------
    type : type
        The type of the values.
    options : set
        The valid values.
    deprecated : set or None, default=None
        Options marked "(deprecated)" in messages; a subset of ``options``.
    """

    def __init__(self, type: type, options: set, *, deprecated: set | None = None) -> None:
        self.type = type
        self.options = options
        self.deprecated = deprecated or set()
        if self.deprecated - self.options:
            raise ValueError("The deprecated options must be a subset of the options.")

    def is_satisfied_by(self, val: Any) -> bool:
        return isinstance(val, self.type) and val in self.options

    def _mark_if_deprecated(self, option: Any) -> str:
        return f"{option!r} (deprecated)" if option in self.deprecated else f"{option!r}"

    def __str__(self) -> str:
        options_str = ", ".join(self._mark_if_deprecated(o) for o in self.options)
        return f"a {_type_name(self.type)} among {{{options_str}}}"


class StrOptions(Options):
    """A finite set of strings.

    Parameters
    ----------
    options : set of str
        The valid strings.
    deprecated : set of str or None, default=None
        Options marked "(deprecated)" in messages; a subset of ``options``.

    Examples
    --------
    >>> str(StrOptions({"cell"}))
    "a str among {'cell'}"
    """

    def __init__(self, options: set[str], *, deprecated: set[str] | None = None) -> None:
        super().__init__(type=str, options=options, deprecated=deprecated)


class Interval(_Constraint):
    """Numbers of one type in an interval.

    Parameters
    ----------
    type : {numbers.Integral, numbers.Real}
        Integers or reals (an int is a valid ``Real``).
    left, right : int, float or None
        The bounds; ``None`` is -inf / +inf.
    closed : {"left", "right", "both", "neither"}
        Which bounds belong to the interval.

    Examples
    --------
    >>> str(Interval(Real, 0, 1, closed="both"))
    'a float in the range [0.0, 1.0]'
    >>> Interval(Integral, 1, None, closed="left").is_satisfied_by(0)
    False
    """

    def __init__(self, type: type, left: float | None, right: float | None, *,
                 closed: str) -> None:
        self.type = type
        self.left = left
        self.right = right
        self.closed = closed
        self._check_params()

    def _check_params(self) -> None:
        if self.type not in (Integral, Real):
            raise ValueError(
                f"type must be either numbers.Integral or numbers.Real. Got {self.type} instead."
            )
        if self.closed not in ("left", "right", "both", "neither"):
            raise ValueError(
                "closed must be either 'left', 'right', 'both' or 'neither'. "
                f"Got {self.closed} instead."
            )
        integral = self.type is Integral
        expected = "an int" if integral else "a real number"
        for name, bound in (("left", self.left), ("right", self.right)):
            if bound is not None and not isinstance(bound, Integral if integral else Real):
                raise TypeError(f"Expecting {name} to be {expected}.")
            if integral and bound is None and self.closed in (name, "both"):
                raise ValueError(f"{name} can't be None when closed == {self.closed} for an "
                                 "interval over the integers.")
        if self.right is not None and self.left is not None and self.right <= self.left:
            raise ValueError(
                f"right can't be less than left. Got left={self.left} and right={self.right}"
            )

    def __contains__(self, val: Any) -> bool:
        if not isinstance(val, Integral) and np.isnan(val):
            return False
        left_cmp = operator.lt if self.closed in ("left", "both") else operator.le
        right_cmp = operator.gt if self.closed in ("right", "both") else operator.ge
        left = -np.inf if self.left is None else self.left
        right = np.inf if self.right is None else self.right
        return not (left_cmp(val, left) or right_cmp(val, right))

    def is_satisfied_by(self, val: Any) -> bool:
        return isinstance(val, self.type) and val in self

    def __str__(self) -> str:
        type_str = "an int" if self.type is Integral else "a float"
        left_bracket = "[" if self.closed in ("left", "both") else "("
        right_bracket = "]" if self.closed in ("right", "both") else ")"
        left_bound: Any = "-inf" if self.left is None else self.left
        right_bound: Any = "inf" if self.right is None else self.right
        if self.type is not Integral:  # show real bounds given as ints as floats
            left_bound = float(left_bound) if self.left is not None else left_bound
            right_bound = float(right_bound) if self.right is not None else right_bound
        return f"{type_str} in the range {left_bracket}{left_bound}, {right_bound}{right_bracket}"


class HasMethods(_Constraint):
    """Objects with the given callable methods (e.g. ``["fit", "predict"]``).

    Parameters
    ----------
    methods : str or list of str
        The method names.

    Examples
    --------
    >>> str(HasMethods(["fit", "predict"]))
    "an object implementing 'fit' and 'predict'"
    """

    def __init__(self, methods: str | list[str]) -> None:
        if not isinstance(methods, (str, list)):
            raise InvalidParameterError(
                "The 'methods' parameter of HasMethods.__init__ must be an instance of 'str' "
                f"or an instance of 'list'. Got {methods!r} instead."
            )
        self.methods = [methods] if isinstance(methods, str) else methods

    def is_satisfied_by(self, val: Any) -> bool:
        return all(callable(getattr(val, method, None)) for method in self.methods)

    def __str__(self) -> str:
        shown = [repr(m) for m in self.methods]
        methods = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"
        return f"an object implementing {methods}"


def generate_invalid_param_val(constraint: _Constraint) -> Any:
    """A value of the constraint's type that the constraint rejects (for tests).

    Parameters
    ----------
    constraint : _Constraint
        An :class:`Interval`, :class:`StrOptions` or :class:`HasMethods`.

    Returns
    -------
    val : object

    Raises
    ------
    NotImplementedError
        When there is no such value (e.g. a type, or an unbounded interval of integers).

    Examples
    --------
    >>> generate_invalid_param_val(Interval(Integral, 1, None, closed="left"))
    0
    """
    if isinstance(constraint, StrOptions):
        return f"not {' or '.join(constraint.options)}"
    if isinstance(constraint, HasMethods):
        return type("HasNotMethods", (), {})()
    if isinstance(constraint, Interval):
        step = 1 if constraint.type is Integral else 1e-6
        if constraint.left is not None:
            return constraint.left - step
        if constraint.right is not None:
            return constraint.right + step
    raise NotImplementedError
