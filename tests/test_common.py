"""scikit-learn's own estimator checks, where they apply.

HypercolumnTransformer takes pixels of images (a PixelSet) and HypercolumnSegmenter
images and masks, not 2-D tables, so ``parametrize_with_checks`` only runs the checks
that need no table (their tags say ``two_d_array=False``); the table-free parameter
checks are run one by one below.
"""

from __future__ import annotations

import pytest
from sklearn.utils import estimator_checks as ec
from sklearn.utils.estimator_checks import parametrize_with_checks

from skhyper import HypercolumnSegmenter, HypercolumnTransformer, MapCache

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
