"""Model files without pickle (skhyper.save / skhyper.load): identical predictions, untrusted
types refused by name, no unpickling, version stamp checked, module backbones asked for."""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import joblib
import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

import skhyper
from skhyper import GridLocationClassifier, HypercolumnSegmenter, HypercolumnTransformer
from skhyper.exceptions import InconsistentVersionWarning
from skhyper.features import FeatureInfo

from .conftest import make_tiny_net


def _hc(**kw):
    kw.setdefault("layers", ["relu", "layer1"])
    return HypercolumnTransformer(kw.pop("backbone", "resnet18"), weights=None, device="cpu",
                                  **kw)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    images = [(rng.random((37, 45, 3)) * 255).astype(np.uint8) for _ in range(2)]
    return images, [(img[..., 0] > 127).astype(int) for img in images]


@pytest.fixture(scope="module")
def seg(data):
    return HypercolumnSegmenter(_hc(), n_pixels_per_image=200, random_state=0).fit(*data)


def _same(a, b, images):
    np.testing.assert_array_equal(a.predict(images[0]), b.predict(images[0]))
    np.testing.assert_array_equal(a.predict_proba(images[0]), b.predict_proba(images[0]))


@pytest.mark.parametrize("make", [
    lambda: HypercolumnSegmenter(n_pixels_per_image=100, random_state=0).set_params(
        hypercolumns=_hc(scales=(1.0, 0.5), intensity_range=("percentile", 1, 99))),
    lambda: HypercolumnSegmenter(_hc(append_location=True),
                                 GridLocationClassifier(LogisticRegression(), 2),
                                 n_pixels_per_image=100, random_state=0),
    lambda: HypercolumnSegmenter(_hc(channel_strategy="per_channel"), n_pixels_per_image=100,
                                 random_state=0),
    # scales learnt in fit (37 x 45 images: 2.0) and edge-aware upsampling of layer1's map
    lambda: HypercolumnSegmenter(_hc(scales="auto", layers=["relu", "layer3"]),
                                 n_pixels_per_image=100, random_state=0),
], ids=["scales-percentile", "grid", "per-channel", "scales-auto"])
def test_round_trip_identical(data, tmp_path, make):
    images, masks = data
    if "per_channel" in repr(make()):
        images = [img[..., :2] for img in images]
    seg = make().fit(images, masks)
    back = skhyper.load(skhyper.save(seg, tmp_path / "m.skhyper"))
    _same(seg, back, images)
    assert back.get_params()["n_pixels_per_image"] == seg.n_pixels_per_image
    assert back.hypercolumns_.get_params() == seg.hypercolumns_.get_params()
    assert back.hypercolumns_.scales_ == seg.hypercolumns_.scales_
    assert back.upsampling == seg.upsampling


def test_round_trip_default_and_no_pickle(seg, data, tmp_path, monkeypatch):
    path = skhyper.save(seg, tmp_path / "sub" / "m.skhyper")

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    back = skhyper.load(path)
    monkeypatch.undo()
    _same(seg, back, data[0])
    assert back.prediction_path_ == "folded"
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["backbone.safetensors", "classifier.skops",
                                         "config.json"]
        config = json.loads(zf.read("config.json"))
    assert config["hypercolumns"]["backbone"] == "resnet18"
    assert config["hypercolumns"]["layers"] == ["relu", "layer1"]
    assert config["skhyper_version"] == skhyper.__version__


def _tamper(path, out, **members):
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, members.get(name.split(".")[0], src.read(name)))
    return out


class Evil(LogisticRegression):
    pass


@pytest.mark.parametrize("head, name", [
    (FunctionTransformer(os.system), "system"),
    (FunctionTransformer(eval), "builtins.eval"),
    (Evil(), "test_files.Evil"),
])
def test_untrusted_head_refused(seg, tmp_path, head, name):
    path = skhyper.save(seg, tmp_path / "m.skhyper")
    bad = _tamper(path, tmp_path / "bad.skhyper", classifier=skops.io.dumps(head))
    with pytest.raises(ValueError, match=f"not trusted: .*{name}"):
        skhyper.load(bad)


def test_version_stamp_and_bad_files(seg, data, tmp_path):
    path = skhyper.save(seg, tmp_path / "m.skhyper")
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
    config["skhyper_version"] = "0.0.1"
    old = _tamper(path, tmp_path / "old.skhyper", config=json.dumps(config))
    with pytest.warns(InconsistentVersionWarning):
        back = skhyper.load(old)
    _same(seg, back, data[0])
    (tmp_path / "junk.skhyper").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="'path' parameter .* is not a skhyper model file"):
        skhyper.load(tmp_path / "junk.skhyper")
    with pytest.raises(TypeError, match="'model' parameter"):
        skhyper.save(seg.classifier_, tmp_path / "x.skhyper")
    joblib.dump(seg, tmp_path / "m.joblib")  # pickles keep working
    _same(seg, joblib.load(tmp_path / "m.joblib"), data[0])


def test_module_backbone_is_asked_for(data, tmp_path):
    images, masks = data
    seg = HypercolumnSegmenter(_hc(backbone=make_tiny_net(), layers=["conv1", "conv3"]),
                               n_pixels_per_image=100, random_state=0).fit(images, masks)
    path = skhyper.save(seg, tmp_path / "m.skhyper")
    with pytest.raises(ValueError, match="'backbone' parameter is needed.*Sequential"):
        skhyper.load(path)
    _same(seg, skhyper.load(path, backbone=make_tiny_net()), images)


def test_a_loaded_model_has_records(seg, tmp_path):
    # files hold no feature_info (the transformer is rebuilt from its parameters), so files
    # written before FeatureInfo load as any other: with records
    path = skhyper.save(seg, tmp_path / "m.skhyper")
    with zipfile.ZipFile(path) as zf:
        assert "feature_info" not in zf.read("config.json").decode()
    back = skhyper.load(path)
    engine = back.hypercolumns_.engine_
    assert all(type(d) is FeatureInfo for d in engine.blocks)
    assert engine.feature_info == seg.hypercolumns_.engine_.feature_info
    assert engine.settings == seg.hypercolumns_.engine_.settings


def test_metadata_round_trip_and_old_files(seg, data, tmp_path):
    meta = {"class_names": {1: "horse", 2: "grass"}, "class_colors": {"1": "#00ffff"},
            "n_image_channels": np.int64(3), "note": [1.5, None, True]}
    path = skhyper.save(seg, tmp_path / "m.skhyper", metadata=meta)
    back = skhyper.load(path)
    # JSON: int keys become strings, numpy scalars numbers
    assert back.metadata_ == {"class_names": {"1": "horse", "2": "grass"},
                              "class_colors": {"1": "#00ffff"}, "n_image_channels": 3,
                              "note": [1.5, None, True]}
    _same(seg, back, data[0])  # display metadata does not change predictions
    assert skhyper.load(skhyper.save(seg, tmp_path / "n.skhyper")).metadata_ == {}
    # a file written before the field existed loads with empty metadata
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
    del config["metadata"]
    assert skhyper.load(_tamper(path, tmp_path / "old.skhyper",
                                config=json.dumps(config))).metadata_ == {}
    with pytest.raises(ValueError, match="'metadata' parameter .* numbers, strings"):
        skhyper.save(seg, tmp_path / "x.skhyper", metadata={"f": object()})
    with pytest.raises(TypeError, match="'metadata' parameter must be a dict"):
        skhyper.save(seg, tmp_path / "x.skhyper", metadata=["a"])
