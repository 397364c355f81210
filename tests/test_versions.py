"""Old pickles, version stamps, and classifiers checked before any feature is computed."""

from __future__ import annotations

import importlib.metadata
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.svm import SVR
from torch import nn

import skhyper
from skhyper import (
    GridLocationClassifier,
    HypercolumnKeypointLocator,
    HypercolumnSegmenter,
    HypercolumnTransformer,
)
from skhyper.exceptions import InconsistentVersionWarning
from skhyper.features import EngineSettings, FeatureInfo

DATA = Path(__file__).parent / "data"


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1)
    )


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    images = [rng.random((24, 24, 3)).astype(np.float32) for _ in range(2)]
    masks = [(im[..., 0] > 0.5).astype(np.int64) for im in images]
    hc = HypercolumnTransformer(_tiny_net(), layers=["1", "2"], device="cpu")
    seg = HypercolumnSegmenter(hc, classifier=LogisticRegression(), n_pixels_per_image=100,
                               random_state=0).fit(images, masks)
    return seg, images


def test_version_matches_the_installed_metadata():
    assert skhyper.__version__ == importlib.metadata.version("skhyper")


@pytest.mark.filterwarnings("ignore::skhyper.exceptions.InconsistentVersionWarning")
def test_a_pickle_of_the_first_release_fails_clearly():
    # tests/data/round1_segmenter.pkl: a fitted segmenter pickled by the first release
    # (commit d75897c), whose transformer held a skhyper.backbones.Backbone
    data = (DATA / "round1_segmenter.pkl").read_bytes()
    with pytest.raises(ModuleNotFoundError) as err:
        pickle.loads(data)
    msg = str(err.value)
    assert "skhyper.backbones" in msg and "skhyper.features" in msg and "fit it again" in msg
    with pytest.raises(ModuleNotFoundError, match="skhyper.heads now"):
        import skhyper.folding  # noqa: F401


def test_same_version_pickle_loads_silently_and_predicts_the_same(fitted):
    seg, images = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = pickle.loads(pickle.dumps(seg))
    np.testing.assert_array_equal(loaded.predict(images[0]), seg.predict(images[0]))


def _load_as(est, version: str | None, drop: tuple[str, ...] = (), **add):
    state = {**est.__getstate__(), **add}
    if version is None:
        del state["_skhyper_version"]
    else:
        state["_skhyper_version"] = version
    for key in drop:
        del state[key]
    new = type(est).__new__(type(est))
    new.__setstate__(state)
    return new


def test_another_version_with_every_fitted_attribute_warns_and_works(fitted):
    seg, images = fitted
    with pytest.warns(InconsistentVersionWarning, match="from skhyper 9.9 when using") as rec:
        loaded = _load_as(seg, "9.9")
    assert rec[0].message.original_skhyper_version == "9.9"
    assert rec[0].message.current_skhyper_version == skhyper.__version__
    np.testing.assert_array_equal(loaded.predict(images[0]), seg.predict(images[0]))


def test_an_old_pickle_missing_fitted_attributes_loads_unfitted_with_a_warning(fitted):
    seg, images = fitted
    # an unstamped transformer with the fitted attributes of the first release, no engine_
    old = {"backbone_": None, "feature_info_": [], "device_": "cpu"}
    with pytest.warns(InconsistentVersionWarning, match=r"unstamped.*engine_.*fit again"):
        hc = _load_as(seg.hypercolumns_, None, drop=("engine_",), **old)
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(hc))
    assert hc.get_params()["layers"] == ["1", "2"]
    with pytest.raises(NotFittedError):
        hc.transform(None)
    # a segmenter holding it: loaded unfitted too, its parameters kept
    state = seg.__getstate__()
    state["hypercolumns_"] = hc
    del state["_skhyper_version"]
    new = HypercolumnSegmenter.__new__(HypercolumnSegmenter)
    with pytest.warns(InconsistentVersionWarning, match="hypercolumns_"):
        new.__setstate__(state)
    with pytest.raises(NotFittedError):
        new.predict(images[0])
    assert isinstance(new.get_params()["classifier"], LogisticRegression)


class _NoForward(nn.Module):
    """A backbone that fails the test if any image reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x):  # pragma: no cover - must not run
        raise AssertionError("features were computed before the classifier was checked")


@pytest.mark.parametrize("regressor", [LinearRegression(), SVR()])
def test_a_regressor_as_classifier_is_refused_before_any_feature(regressor):
    images = [np.zeros((16, 16, 3), np.float32)] * 2
    masks = [np.eye(16, dtype=np.int64)] * 2
    hc = HypercolumnTransformer(_NoForward(), layers=["conv"], device="cpu")
    with pytest.raises(ValueError, match=r"'classifier' parameter must be a classifier.*regressor"):
        HypercolumnSegmenter(hc, classifier=regressor).fit(images, masks)
    keypoints = np.full((2, 1, 2), 8.0)
    with pytest.raises(ValueError, match=r"'classifier' parameter must be a classifier"):
        HypercolumnKeypointLocator(hc, classifier=regressor).fit(images, keypoints)
    X, y = np.random.default_rng(0).random((40, 4)), np.arange(40) % 2
    with pytest.raises(ValueError, match=r"'estimator' parameter must be a classifier"):
        GridLocationClassifier(regressor, grid_size=2).fit(X, y)


class _DuckRegressor(BaseEstimator):
    """Declares no estimator type and has no classes_ once fitted."""

    def fit(self, X, y):
        self.coef_ = np.zeros(X.shape[1])
        return self

    def predict(self, X):
        return np.zeros(len(X))


def test_an_untyped_estimator_without_classes_is_named(fitted):
    seg, images = fitted
    masks = [(im[..., 0] > 0.5).astype(np.int64) for im in images]
    with pytest.raises(TypeError, match=r"'classifier' parameter.*no classes_"):
        HypercolumnSegmenter(seg.hypercolumns, classifier=_DuckRegressor(),
                             n_pixels_per_image=50).fit(images, masks)


def test_a_pickle_without_a_newer_parameter_gets_its_default(fitted):
    seg, images = fitted
    with pytest.warns(InconsistentVersionWarning):
        loaded = _load_as(seg, "0.0.9", drop=("min_pixels_per_class",))
    default = HypercolumnSegmenter().min_pixels_per_class
    assert loaded.min_pixels_per_class == default  # so get_params / clone / repr work
    assert clone(loaded).get_params()["min_pixels_per_class"] == default and repr(loaded)
    np.testing.assert_array_equal(loaded.predict(images[0]), seg.predict(images[0]))


def test_fitted_attributes_that_follow_from_others_are_restored(fitted):
    seg, images = fitted
    loaded = _load_as(seg, skhyper.__version__, drop=("classes_", "prediction_path_"))
    np.testing.assert_array_equal(loaded.classes_, seg.classes_)
    assert loaded.prediction_path_ == seg.prediction_path_
    np.testing.assert_array_equal(loaded.predict(images[0]), seg.predict(images[0]))


def test_a_pickle_with_dict_records_loads_as_records():
    # tests/data/dict_records_segmenter.pkl: a fitted segmenter (scales, a vector layer,
    # location columns) pickled by the code before FeatureInfo and EngineSettings (commit
    # 470be03): its engine held feature_info dicts and its settings as attributes, its
    # backbone a layer table of dicts; the pickle also holds what that code computed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same version: loads silently
        old = pickle.loads((DATA / "dict_records_segmenter.pkl").read_bytes())
    seg = old["model"]
    engine = seg.hypercolumns_.engine_
    assert all(type(d) is FeatureInfo for d in engine.feature_info + engine.blocks)
    assert all(type(d) is dict for d in old["feature_info"])
    assert engine.feature_info == old["feature_info"]  # the same entries, now records
    assert [dict(d) for d in engine.blocks] == old["blocks"]
    assert all(type(d) is FeatureInfo for d in engine.backbone.layer_table())
    assert isinstance(engine.settings, EngineSettings)
    assert engine.settings == EngineSettings(device="cpu", scales=(1.0, 0.5),
                                             append_location=True)
    assert seg.hypercolumns_.feature_info_[2].is_vector
    # the same computation as when it was pickled, on this machine's CPU: float32 equal up
    # to the order of accumulation (a few ulps of values of order 1)
    np.testing.assert_allclose(seg.predict_proba(old["image"]), old["proba"], rtol=0,
                               atol=1e-6)
    again = pickle.loads(pickle.dumps(seg))  # and pickled again in the new format
    assert "settings" in vars(again.hypercolumns_.engine_)
    assert again.hypercolumns_.feature_info_ == engine.feature_info
    np.testing.assert_array_equal(again.predict_proba(old["image"]),
                                  seg.predict_proba(old["image"]))
