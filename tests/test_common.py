"""scikit-learn's own estimator checks, where they apply.

HypercolumnTransformer takes pixels of images (a PixelSet) and HypercolumnSegmenter
images and masks, not 2-D tables, so ``parametrize_with_checks`` only runs the checks
that need no table (their tags say ``two_d_array=False``); the table-free parameter
checks are run one by one below.

GridLocationClassifier is a plain classifier on 2-D tables and runs every check. Its X
must hold two location columns in [0, 1] besides at least one feature; sklearn's
generated data does not, so some checks are expected to fail, each for a stated
reason, and those checks are run again on data of the right form (a pipeline that
appends location columns in (0, 1) to the generated X).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils import check_array
from sklearn.utils import estimator_checks as ec
from sklearn.utils.estimator_checks import parametrize_with_checks

from skhyper import GridLocationClassifier, HypercolumnSegmenter, HypercolumnTransformer, MapCache

from .conftest import make_tiny_net


def _estimators():
    return [
        HypercolumnTransformer(make_tiny_net(), device="cpu"),
        HypercolumnTransformer("resnet18", layers=["layer1", "fc"], weights=None, device="cpu"),
        HypercolumnSegmenter(
            HypercolumnTransformer("resnet18", layers=["layer1"], weights=None, device="cpu",
                                   cache=MapCache()),
            n_pixels_per_image=50,
        ),
    ]


@parametrize_with_checks(_estimators())
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


TABLE_FREE_CHECKS = [
    ec.check_no_attributes_set_in_init,
    ec.check_parameters_default_constructible,
    ec.check_get_params_invariance,
    ec.check_set_params,
    ec.check_estimator_repr,
    ec.check_estimator_tags_renamed,
    ec.check_valid_tag_types,
    ec.check_estimator_cloneable,
]


@pytest.mark.parametrize("check", TABLE_FREE_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("estimator", _estimators(), ids=["tiny", "resnet18", "segmenter"])
def test_table_free_sklearn_checks(estimator, check):
    check(type(estimator).__name__, estimator)


# --- GridLocationClassifier --------------------------------------------------------------------

TWO_COLUMNS = (
    "X has 2 columns (make_blobs' default): the two location columns leave no feature for the "
    "cells; run on X with location columns appended in test_grid_checks_on_located_data"
)
OUT_OF_RANGE = (
    "the location columns of generated X lie outside [0, 1], which raises a ValueError by "
    "design (see the clip_locations=True instances, which pass this check)"
)
NEEDS_3_COLUMNS = [
    "check_estimators_overwrite_params", "check_estimators_fit_returns_self",
    "check_readonly_memmap_input", "check_classifier_data_not_an_array",
    "check_classifiers_classes", "check_classifiers_train", "check_decision_proba_consistency",
    "check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in",
]
NEEDS_UNIT_RANGE = [
    "check_dont_overwrite_parameters", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_pipeline_consistency",
    "check_estimators_pickle", "check_f_contiguous_array_estimator",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_dict_unchanged", "check_fit2d_predict1d",
]


def _grid_estimators():
    return [
        GridLocationClassifier(LogisticRegression()),  # the default: strict [0, 1] locations
        GridLocationClassifier(LogisticRegression(), clip_locations=True),
        GridLocationClassifier(
            make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)),
            grid_size=2, assignment="cell", clip_locations=True,
        ),
        GridLocationClassifier(RandomForestClassifier(n_estimators=5, random_state=0),
                               grid_size=3, clip_locations=True),
    ]


def _grid_expected_failures(estimator):
    failures = dict.fromkeys(NEEDS_3_COLUMNS, TWO_COLUMNS)
    if not hasattr(estimator.estimator, "decision_function"):
        del failures["check_decision_proba_consistency"]  # nothing to compare: passes
    if not estimator.clip_locations:
        failures.update(dict.fromkeys(NEEDS_UNIT_RANGE, OUT_OF_RANGE))
    return failures


@parametrize_with_checks(_grid_estimators(), expected_failed_checks=_grid_expected_failures)
def test_grid_sklearn_compatible(estimator, check):
    check(estimator)


def _append_locations(X):
    """The generated features, then two location columns in (0, 1) derived from them."""
    X = check_array(X, dtype=np.float64)
    return np.hstack([X, 1.0 / (1.0 + np.exp(-X[:, :2]))])


# checks of the Pipeline wrapper itself, which a Pipeline fails (its fitted steps are its
# parameters): check_estimators_overwrite_params is test_grid.py::test_fit_leaves_params_alone
PIPELINE_ITSELF = ("check_estimators_overwrite_params", "check_dont_overwrite_parameters",
                   "check_n_features_in_after_fitting")


@pytest.mark.parametrize(
    "check_name", [c for c in NEEDS_3_COLUMNS + NEEDS_UNIT_RANGE if c not in PIPELINE_ITSELF]
)
def test_grid_checks_on_located_data(check_name):
    """The checks above that cannot use sklearn's generated X, on X with location columns."""
    pipe = make_pipeline(FunctionTransformer(_append_locations),
                         GridLocationClassifier(LogisticRegression(), grid_size=2))
    getattr(ec, check_name)("GridLocationClassifier", pipe)
