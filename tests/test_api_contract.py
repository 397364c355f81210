"""The transformer's contract with scikit-learn: clone, params, fit/transform, pickling."""

from __future__ import annotations

import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhyper import HypercolumnTransformer, sample_pixels
from skhyper.exceptions import DeviceWarning


@pytest.fixture
def data(images, masks):
    return sample_pixels(images, masks, n_per_image=40, class_balance=True, random_state=0)


def test_clone_and_params(tiny_net):
    est = HypercolumnTransformer(tiny_net, layers=["conv1", "fc"], device="cpu", batch_size=3)
    params = est.get_params()
    assert params["layers"] == ["conv1", "fc"] and params["batch_size"] == 3
    twin = clone(est)
    assert twin is not est and twin.get_params()["layers"] == ["conv1", "fc"]
    assert twin.backbone is not tiny_net  # clone deep-copies the module parameter
    assert est.set_params(layers=["act2"], image_size=32) is est
    assert est.layers == ["act2"] and est.image_size == 32
    with pytest.raises(ValueError, match="Invalid parameter 'nope'"):
        est.set_params(nope=1)


def test_fit_returns_self_and_not_fitted_before(tiny_net, data):
    X, y = data
    est = HypercolumnTransformer(tiny_net, device="cpu")
    with pytest.raises(NotFittedError):
        est.transform(X)
    with pytest.raises(NotFittedError):
        est.get_feature_names_out()
    assert est.fit(X, y) is est
    Xt = est.transform(X)
    names = est.get_feature_names_out()
    assert Xt.shape == (len(X), est.n_features_out_) and Xt.dtype == np.float32
    assert len(names) == Xt.shape[1] == sum(d["num_chs"] for d in est.feature_info_)
    assert names[0] == "conv1.c000" and names[-1] == "pool.c007"
    assert [d["name"] for d in est.feature_info_][:2] == ["conv1", "act1"]
    assert est.device_ == torch.device("cpu") and est.backbone_.model is not tiny_net
    # fit does not touch the parameter module
    assert tiny_net.act1.inplace


def test_feature_names_are_zero_padded_to_the_channel_count(data):
    X, y = data
    est = HypercolumnTransformer("resnet18", layers=["layer3"], weights=None, device="cpu").fit(X)
    names = est.get_feature_names_out()
    assert names[17] == "layer3.c017" and len(names) == 256


def test_pipeline_with_pca_and_sgd(data):
    X, y = data
    pipe = make_pipeline(
        HypercolumnTransformer("resnet18", layers=["layer1", "layer2"], weights=None,
                               device="cpu"),
        StandardScaler(),
        PCA(8, random_state=0),
        SGDClassifier(loss="log_loss", random_state=0),
    ).fit(X, y)
    proba = pipe.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(1), 1)
    assert pipe[:-1].get_feature_names_out().tolist()[:2] == ["pca0", "pca1"]


def test_verbose_shows_progress(tiny_net, data, capsys):
    X, _ = data
    HypercolumnTransformer(tiny_net, device="cpu", verbose=True).fit_transform(X)
    assert "hypercolumns" in capsys.readouterr().err


def test_joblib_round_trip_gives_identical_output(tmp_path, data):
    X, y = data
    pipe = make_pipeline(
        HypercolumnTransformer("resnet18", layers=[1, 4], weights=None, device="cpu"),
        StandardScaler(),
        SGDClassifier(loss="log_loss", random_state=0),
    ).fit(X, y)
    path = tmp_path / "pipe.joblib"
    joblib.dump(pipe, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.decision_function(X), pipe.decision_function(X))
    np.testing.assert_array_equal(loaded[0].transform(X), pipe[0].transform(X))


def test_model_fitted_on_cuda_loads_on_a_cpu_only_machine(tiny_net, data, monkeypatch):
    X, y = data
    est = HypercolumnTransformer(tiny_net, device="cpu").fit(X)
    expected = est.transform(X)
    # Simulate a CUDA fit: the fitted device (the engine's, which device_ reads) says cuda.
    est.engine_.device = torch.device("cuda")
    assert est.device_ == torch.device("cuda")
    blob = pickle.dumps(est)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(DeviceWarning, match="fitted on cuda but CUDA is not available"):
        loaded = pickle.loads(blob)
    assert loaded.device_ == torch.device("cpu")
    assert all(t.device.type == "cpu" for t in loaded.backbone_.state_dict().values())
    np.testing.assert_array_equal(loaded.transform(X), expected)


@pytest.mark.gpu
def test_cuda_fitted_model_loads_in_a_process_without_cuda(tmp_path, data):
    import os
    import subprocess
    import sys

    X, y = data
    est = HypercolumnTransformer("resnet18", layers=[1, 4], weights=None, device="cuda").fit(X)
    joblib.dump((est, X, est.transform(X)), tmp_path / "m.joblib")
    code = (
        "import joblib, numpy as np, warnings\n"
        f"est, X, ref = joblib.load({str(tmp_path / 'm.joblib')!r})\n"
        "assert str(est.device_) == 'cpu'\n"
        "np.testing.assert_allclose(est.transform(X), ref, rtol=1e-3, atol=1e-3)\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "DeviceWarning" in res.stderr or "CUDA is not available" in res.stderr


def test_fit_without_X_and_warnings_free(tiny_net):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = HypercolumnTransformer(tiny_net, device="cpu").fit()
    assert est.n_features_out_ == 4 + 4 + 6 + 6 + 8 + 8 + 8
