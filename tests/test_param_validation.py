"""skhyper's own parameter validation (skhyper/_param_validation.py, vendored from scikit-learn).

The estimators validate ``_parameter_constraints`` with skhyper's rules, not scikit-learn's
private module: these tests run scikit-learn's ``check_param_validation`` procedure (which the
estimator checks of ``parametrize_with_checks`` do not include) on every estimator, and compare
the messages with scikit-learn's own where its private module still exists.
"""

from __future__ import annotations

import ast
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression

import skhyper
from skhyper import (
    GridLocationClassifier,
    HypercolumnKeypointLocator,
    HypercolumnSegmenter,
    HypercolumnTransformer,
    extract_dense,
)
from skhyper._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
    generate_invalid_param_val,
    make_constraint,
    validate_parameter_constraints,
    validate_params,
)

from .conftest import make_tiny_net

ESTIMATORS = [
    HypercolumnTransformer(make_tiny_net(), device="cpu"),
    HypercolumnSegmenter(),
    HypercolumnKeypointLocator(),
    GridLocationClassifier(LogisticRegression()),
]
# arguments of fit: validation comes first, so these never reach the data checks
FIT_ARGS = {
    "HypercolumnTransformer": (),
    "HypercolumnSegmenter": ([np.zeros((8, 8, 3))], [np.zeros((8, 8), int)]),
    "HypercolumnKeypointLocator": ([np.zeros((8, 8, 3))], np.zeros((1, 2, 2))),
    "GridLocationClassifier": (np.full((4, 3), 0.5), np.array([0, 1, 0, 1])),
}


def _ids(est):
    return type(est).__name__


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=_ids)
def test_constraints_cover_every_parameter(estimator):
    assert set(estimator._parameter_constraints) == set(estimator.get_params(deep=False))


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=_ids)
def test_fit_rejects_bad_types_and_values(estimator):
    """scikit-learn's check_param_validation, with skhyper's constraints and error type."""
    name = type(estimator).__name__
    bad_type = type("BadType", (), {})()
    n_checked = 0
    for param, constraints in estimator._parameter_constraints.items():
        if constraints == "no_validation":
            continue
        kinds = {c.type for c in constraints if isinstance(c, Interval)}
        assert kinds != {Integral, Real}, f"{name}.{param} mixes int and float intervals"
        bad_values = [bad_type]
        for constraint in map(make_constraint, constraints):
            try:
                bad_values.append(generate_invalid_param_val(constraint))
            except NotImplementedError:
                pass
        if object in constraints:  # any object is valid (e.g. the transformer's weights)
            continue
        for bad in bad_values:
            est = sklearn.clone(estimator).set_params(**{param: bad})
            match = rf"The '{param}' parameter of {name} must be .* Got .* instead\."
            with pytest.raises(InvalidParameterError, match=match):
                est.fit(*FIT_ARGS[name])
            n_checked += 1
    assert n_checked >= len(estimator._parameter_constraints)


def test_functions_reject_bad_values_naming_the_function():
    with pytest.raises(InvalidParameterError,
                       match=r"The 'chunk_pixels' parameter of extract_dense must be an int in "
                             r"the range \[1, inf\)\. Got 0 instead\."):
        extract_dense([np.zeros((8, 8, 3))], make_tiny_net(), ["conv1"], chunk_pixels=0)


def test_error_is_value_and_type_error():
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, TypeError)


def test_skip_parameter_validation_setting_is_honoured():
    @validate_params({"n": [Interval(Integral, 1, None, closed="left")]},
                     prefer_skip_nested_validation=True)
    def f(n):
        return n

    with pytest.raises(InvalidParameterError):
        f(0)
    with sklearn.config_context(skip_parameter_validation=True):
        assert f(0) == 0


def test_nested_estimator_errors_name_the_function():
    """A decorated function that lets an estimator validate shows its own name."""
    @validate_params({"n": "no_validation"}, prefer_skip_nested_validation=False)
    def outer(n):
        validate_parameter_constraints(
            {"n": [Interval(Integral, 1, None, closed="left")]}, {"n": n}, "Inner")

    with pytest.raises(InvalidParameterError, match=r"The 'n' parameter of \S*outer must be"):
        outer(0)


CONSTRAINT_LISTS = [
    ("Interval(Integral, 1, None, closed='left')", -3),
    ("Interval(Integral, 1, None, closed='left'), None", 0),
    ("Interval(Real, 0, 1, closed='both')", 1.5),
    ("Interval(Real, 0, 0.5, closed='neither')", 0.5),
    ("Interval(Real, 0, None, closed='neither')", float("nan")),
    ("StrOptions({'box'}), tuple, list", "cell"),
    ("HasMethods(['fit', 'predict']), None", 3),
    ("HasMethods('fit')", 3),
    ("'boolean'", 1),
    ("'random_state'", -1),
    ("Integral, None", 1.5),
    ("str, np.ndarray", 2),
]


@pytest.mark.parametrize("spec, value", CONSTRAINT_LISTS)
def test_messages_equal_scikit_learns(spec, value):
    """Same constraints, same value: the same message as scikit-learn's private module."""
    sk = pytest.importorskip("sklearn.utils._param_validation",
                             reason="scikit-learn no longer has the module to compare with")
    env = {"Integral": Integral, "Real": Real, "np": np}
    ours = eval(f"[{spec}]", {**env, "Interval": Interval, "StrOptions": StrOptions,  # noqa: S307
                               "HasMethods": HasMethods})
    theirs = eval(f"[{spec}]", {**env, "Interval": sk.Interval,  # noqa: S307
                                 "StrOptions": sk.StrOptions, "HasMethods": sk.HasMethods})
    messages = []
    for check, constraints in ((validate_parameter_constraints, ours),
                               (sk.validate_parameter_constraints, theirs)):
        with pytest.raises(ValueError) as info:
            check({"p": constraints}, {"p": value}, caller_name="Est")
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("The 'p' parameter of Est must be ")


def test_no_private_sklearn_import_in_package():
    """skhyper imports nothing from scikit-learn's private modules (``sklearn.x._y``)."""
    package = Path(skhyper.__file__).resolve().parent
    private = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sklearn"):
                names += [f"{node.module}.{a.name}" for a in node.names]
            private += [f"{path.name}:{node.lineno} {n}" for n in names
                        if n.startswith("sklearn") and any(p.startswith("_")
                                                           for p in n.split(".")[1:])]
    assert not private, private
