"""Typed records: FeatureInfo (read as before: a read-only mapping with the old dict's keys) and
the engine's frozen EngineSettings (validated, replaced with dataclasses.replace)."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import numpy as np
import pytest
import torch

from skhyper import HypercolumnTransformer
from skhyper.features import EngineSettings, FeatureInfo, MapCache, build_engine, list_layers
from skhyper.features._backbone import resolve_layers
from skhyper.features._engine import LOCATION_INFO
from skhyper.features._scales import scaled_info
from skhyper.location import LOCATION

from .conftest import make_tiny_net

# the dicts these records replace, as the code before the records built them
OLD_LAYER1 = {"name": "layer1", "num_chs": 64, "reduction": 4.0, "kind": "map"}
OLD_SCALED = {"name": "s0.5.layer1", "num_chs": 64, "reduction": 8.0, "kind": "map",
              "layer": "layer1", "scale": 0.5}


@pytest.fixture(scope="module")
def engine():
    return build_engine("resnet18", layers=["layer1", "fc"], weights=None, device="cpu",
                        scales=(1.0, 0.5), append_location=True, tile_size=None)


# --- FeatureInfo ------------------------------------------------------------------------------


def test_mapping_access_equals_the_old_dict():
    info = FeatureInfo.from_mapping(OLD_SCALED)
    assert dict(info) == OLD_SCALED and info == OLD_SCALED and OLD_SCALED == info
    assert list(info) == list(OLD_SCALED) and len(info) == len(OLD_SCALED)
    assert {**info} == OLD_SCALED and dict(info.items()) == OLD_SCALED
    for key, value in OLD_SCALED.items():
        assert info[key] == value and info.get(key) == value and key in info
    assert info.get("pad_to") is None and "pad_to" not in info
    assert info.get("pad_to", 7) == 7 and info.get("layer", "x") == "layer1"
    with pytest.raises(KeyError):
        info["pad_to"]
    plain = FeatureInfo.from_mapping(OLD_LAYER1)
    assert list(plain) == ["name", "num_chs", "reduction", "kind"]  # unset optionals: no keys
    assert plain.get("layer", plain["name"]) == "layer1" == plain.source_layer
    assert info.source_layer == "layer1" and not info.is_vector and not info.is_location


def test_records_are_immutable_hashable_and_pickle():
    info = FeatureInfo("fc", 1000, kind="vector")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.num_chs = 3
    with pytest.raises(TypeError):
        info["num_chs"] = 3  # a read-only mapping
    assert info.is_vector and info.reduction is None and info["reduction"] is None
    again = pickle.loads(pickle.dumps(info))
    assert again == info and type(again) is FeatureInfo and hash(again) == hash(info)
    assert copy.deepcopy(info) == info and {info: 1}[again] == 1
    assert info.replace(num_chs=10).num_chs == 10 and info.num_chs == 1000
    assert repr(FeatureInfo.from_mapping(OLD_LAYER1)) == (
        "FeatureInfo(name='layer1', num_chs=64, reduction=4.0, kind='map')")


def test_bad_records_are_refused_by_name():
    with pytest.raises(ValueError, match=r"keys \['strides'\] that are not FeatureInfo"):
        FeatureInfo.from_mapping({**OLD_LAYER1, "strides": 4})
    with pytest.raises(ValueError, match="'num_chs' must be an int >= 1; got 0"):
        FeatureInfo("a", 0)
    with pytest.raises(ValueError, match="'kind' must be one of"):
        FeatureInfo("a", 3, kind="tensor")
    with pytest.raises(ValueError, match="'reduction' must be a positive number"):
        FeatureInfo("a", 3, reduction=-2)
    with pytest.raises(TypeError, match="must be a dict or FeatureInfo"):
        FeatureInfo.from_mapping(["name"])
    assert FeatureInfo("a", np.int64(3), reduction=np.float32(2)).num_chs == 3  # numpy scalars


def test_tables_and_engines_hold_records(engine):
    table = list_layers("resnet18")
    assert all(type(d) is FeatureInfo for d in table)
    assert table[0] == {"name": "conv1", "num_chs": 64, "reduction": 2.0, "kind": "map",
                        "stage": False}
    info = resolve_layers(engine.backbone, ["layer1"])
    assert info == [OLD_LAYER1]
    assert scaled_info([OLD_LAYER1], (1.0, 0.5))[1] == OLD_SCALED  # dicts in, records out
    assert all(type(d) is FeatureInfo for d in engine.feature_info + engine.blocks)
    assert [d.name for d in engine.feature_info] == engine.map_names
    assert engine.blocks[-1] is LOCATION_INFO and LOCATION_INFO == LOCATION
    # what the heads ask (mapping access, as before) and the records' attributes agree
    assert [b.get("kind") != LOCATION["kind"] for b in engine.blocks] == [
        not b.is_location for b in engine.blocks]
    assert [d.get("kind") == "vector" for d in engine.feature_info] == [
        d.is_vector for d in engine.feature_info] == [False, True, False, True]
    assert engine.n_features == sum(d["num_chs"] for d in engine.blocks) == 2 * 1064 + 2


def test_transformer_feature_info_is_records_readable_as_dicts():
    hc = HypercolumnTransformer(make_tiny_net(), layers=["conv1", "conv2"], device="cpu").fit()
    old_style = [{k: d[k] for k in ("name", "num_chs", "reduction", "kind")}
                 for d in hc.feature_info_]
    assert hc.feature_info_ == old_style
    assert [dict(d) for d in hc.feature_info_] == old_style


# --- EngineSettings ------------------------------------------------------------------------------


def test_settings_are_frozen_validated_and_replaced():
    s = EngineSettings(device="cpu", scales=[1, 0.5], intensity_range=[0, 4095])
    assert s.device == torch.device("cpu") and s.scales == (1.0, 0.5)
    assert s.intensity_range == (0.0, 4095.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.batch_size = 2
    t = dataclasses.replace(s, batch_size=2)
    assert t.batch_size == 2 and s.batch_size == 8 and t.scales == s.scales
    assert pickle.loads(pickle.dumps(t)) == t
    assert dataclasses.replace(s) == s  # replacing nothing: equal (validation idempotent)
    for bad, match in [({"batch_size": 0}, "'batch_size' setting of EngineSettings must be"),
                       ({"tile_size": 2.5}, "'tile_size' setting .* an int >= 1 or None"),
                       ({"dtype": "float64"}, "'dtype' setting"),
                       ({"cache": {}}, "'cache' setting .*MapCache or None"),
                       ({"channel_strategy": "stack"}, "'channel_strategy' setting"),
                       ({"scales": (1.0, 1.0)}, "'scales' parameter of EngineSettings"),
                       ({"device": "tpu"}, "'device' parameter")]:
        with pytest.raises(ValueError, match=match):
            EngineSettings(**bad)


def test_build_engine_takes_settings_and_overrides():
    s = EngineSettings(device="cpu", tile_size=None, batch_size=3)
    net = make_tiny_net()
    engine = build_engine(net, layers=["conv1"], settings=s)
    assert engine.settings is s and engine.batch_size == 3 and engine.tile_size is None
    over = build_engine(net, layers=["conv1"], settings=s, batch_size=5)
    assert over.settings == dataclasses.replace(s, batch_size=5)
    assert build_engine(net, layers=["conv1"], device="cpu").settings == EngineSettings(
        device="cpu")
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['batchsize'\]"):
        build_engine(net, layers=["conv1"], device="cpu", batchsize=2)
    with pytest.raises(ValueError, match="'batch_size' setting"):
        build_engine(net, layers=["conv1"], device="cpu", batch_size=0)


def test_engine_replace_and_attributes(engine):
    cache = MapCache()
    fast = engine.replace(batch_size=2, cache=cache)
    assert fast.settings == dataclasses.replace(engine.settings, batch_size=2, cache=cache)
    assert fast.backbone is engine.backbone and engine.batch_size == 8 and fast.cache is cache
    with pytest.raises(ValueError, match="build a new engine"):
        engine.replace(scales=None)
    with pytest.raises(ValueError, match="'batch_size' setting"):
        engine.replace(batch_size=-1)
    images = fast.check_images([np.random.default_rng(0).random((30, 34, 3))])
    (_, a), = engine.iter_maps(images)
    (_, b), = fast.iter_maps(images)
    assert a.keys() == b.keys()
    for k in a:  # the same maps, whatever the batch size and cache
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    copied = copy.deepcopy(fast)
    copied.tile_size = 64  # assigning a setting replaces the settings object
    assert copied.settings.tile_size == 64 and fast.tile_size is None


def test_engine_pickles_with_its_settings(engine):
    again = pickle.loads(pickle.dumps(engine))
    assert again.settings == engine.settings and again.feature_info == engine.feature_info
    assert all(type(d) is FeatureInfo for d in again.feature_info)
