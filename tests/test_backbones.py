"""Backbones: names, layers, weights, normalization."""

from __future__ import annotations

import os
import urllib.error

import pytest
import torch

from skhyper import Backbone, build_backbone, list_layers
from skhyper.exceptions import WeightsUnavailableError
from skhyper.features._backbone import resolve_layers


def test_list_layers_gives_channels_stride_and_stages():
    table = {d["name"]: d for d in list_layers("vgg16")}
    assert table["features.29"]["num_chs"] == 512 and table["features.29"]["reduction"] == 16
    assert table["classifier.4"]["kind"] == "vector" and table["classifier.4"]["num_chs"] == 4096
    assert [n for n, d in table.items() if d["stage"]] == [
        "features.3", "features.8", "features.15", "features.22", "features.29"
    ]
    lite = list_layers("efficientnet_lite0")
    stages = [(d["name"], d["num_chs"], d["reduction"]) for d in lite if d["stage"]]
    assert stages == [("blocks.0", 16, 2), ("blocks.1", 24, 4), ("blocks.2", 40, 8),
                      ("blocks.4", 112, 16), ("blocks.6", 320, 32)]


def test_modules_called_twice_are_not_valid_layers():
    # torchvision's BasicBlock uses one ReLU module twice: its output is ambiguous
    names = {d["name"] for d in list_layers("resnet18")}
    assert "layer1.0" in names and "layer1.0.relu" not in names


def test_unknown_layer_lists_valid_names():
    bb = build_backbone("resnet18", weights=None)
    with pytest.raises(ValueError, match="'layers' parameter") as err:
        resolve_layers(bb, ["layer9", "layer1"])
    msg = str(err.value)
    assert "layer9" in msg and "'layer4'" in msg and "list_layers" in msg
    assert "Did you mean" in msg


def test_stage_indices_and_none_select_stages():
    bb = build_backbone("resnet18", weights=None)
    assert [d["name"] for d in resolve_layers(bb, [0, -1])] == ["relu", "layer4"]
    assert [d["name"] for d in resolve_layers(bb, None)] == bb.stages()
    with pytest.raises(ValueError, match="stage index 7"):
        resolve_layers(bb, [7])
    with pytest.raises(ValueError, match="at least one layer"):
        resolve_layers(bb, [])
    with pytest.raises(ValueError, match="more than once"):
        resolve_layers(bb, ["layer1", 1])
    with pytest.raises(TypeError, match="list or tuple"):
        resolve_layers(bb, "layer1")


def test_unknown_backbone_names_the_parameter():
    with pytest.raises(ValueError, match="'backbone' parameter.*'resnet181'.*Did you mean"):
        build_backbone("resnet181")
    with pytest.raises(TypeError, match="'backbone' parameter"):
        build_backbone(42)


def test_random_init_is_reproducible_and_a_copy():
    a, b = build_backbone("resnet18", weights=None), build_backbone("resnet18", weights=None)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    with torch.no_grad():
        next(a.parameters()).add_(1.0)
    assert not torch.equal(next(a.parameters()), next(b.parameters()))


def test_module_backbone_is_copied_and_inplace_is_disabled(tiny_net):
    bb = build_backbone(tiny_net)
    assert bb.model is not tiny_net
    assert tiny_net.act1.inplace and not bb.model.act1.inplace
    maps = bb(torch.rand(2, 3, 16, 16), ["conv1", "act1", "fc"])
    # conv1's map is kept as it was, not overwritten by the ReLU after it
    assert (maps["conv1"] < 0).any() and (maps["act1"] >= 0).all()
    assert tuple(maps["fc"].shape) == (2, 5, 1, 1)


def test_backbone_wrapper_sets_normalization(tiny_net):
    bb = build_backbone(Backbone(tiny_net, mean=(0.5,) * 3, std=(0.25,) * 3, stages=["act2"]))
    assert bb.stages() == ["act2"]
    x = torch.full((1, 3, 8, 8), 0.5)
    plain = Backbone(tiny_net, mean=(0.0,) * 3, std=(1.0,) * 3)
    torch.testing.assert_close(bb(x, ["conv1"])["conv1"],
                               plain(torch.zeros_like(x), ["conv1"])["conv1"])


def test_default_weights_classify_chelsea_as_tabby_cat():
    skimage_data = pytest.importorskip("skimage.data")
    bb = build_backbone()  # efficientnet_lite0 with the bundled ImageNet weights
    assert torch.allclose(bb.mean, torch.tensor(0.5)) and torch.allclose(bb.std, torch.tensor(0.5))
    img = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)[None].float() / 255
    img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    with torch.inference_mode():
        logits = bb(img, ["classifier"])["classifier"].ravel()
    top3 = torch.topk(logits, 3).indices.tolist()
    assert top3[0] == 285  # ImageNet 285: Egyptian cat
    assert set(top3) <= {281, 282, 285, 287}


def test_weights_from_a_local_file(tmp_path):
    src = build_backbone("resnet18", weights=None)
    with torch.no_grad():
        for p in src.model.parameters():
            p.mul_(0.5)
    path = tmp_path / "resnet18.pth"
    torch.save(src.model.state_dict(), path)
    loaded = build_backbone("resnet18", weights=str(path))
    for pa, pb in zip(src.model.parameters(), loaded.model.parameters()):
        assert torch.equal(pa, pb)
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_backbone("resnet18", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsUnavailableError, match="do not fit"):
        build_backbone("vgg16", weights=str(path))


def test_offline_download_fails_with_a_clear_message(monkeypatch):
    import timm
    import torch.hub

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as err:
        build_backbone("resnet50", weights="imagenet")
    msg = str(err.value)
    assert "resnet50" in msg and "weights='path/to/weights.pth'" in msg and "weights=None" in msg

    real_create = timm.create_model

    def offline_timm(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("cannot reach the hub")
        return real_create(name, pretrained=pretrained, **kw)

    monkeypatch.setattr(timm, "create_model", offline_timm)
    with pytest.raises(WeightsUnavailableError, match="'timm:resnet18'.*path/to/weights"):
        build_backbone("timm:resnet18", weights="imagenet")


def test_unknown_torchvision_weights_name():
    with pytest.raises(ValueError, match="'weights' parameter.*IMAGENET1K_V1"):
        build_backbone("resnet18", weights="NOPE")


def test_fc_vectors_broadcast_as_1x1_maps():
    bb = build_backbone("vgg16", weights=None)
    maps = bb(torch.rand(1, 3, 64, 80), ["features.29", "classifier.1"])
    assert tuple(maps["classifier.1"].shape) == (1, 4096, 1, 1)
    assert maps["features.29"].shape[-2:] == (4, 5)
    assert torch.isfinite(maps["classifier.1"]).all()


@pytest.fixture(scope="module")
def resnet18_state():
    return build_backbone("resnet18", weights=None).model.state_dict()


def _build_error(path) -> str:
    with pytest.raises(WeightsUnavailableError) as err:
        build_backbone("resnet18", weights=str(path))
    assert isinstance(err.value, ValueError)  # bad input, catchable as such
    msg = str(err.value)
    assert "'weights'" in msg and str(path) in msg
    return msg


def test_corrupt_and_truncated_weights_files_are_named(tmp_path, resnet18_state):
    good = tmp_path / "good.pth"
    torch.save(resnet18_state, good)
    data = good.read_bytes()
    (tmp_path / "half.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.pth").write_bytes(b"not a checkpoint" * 64)
    (tmp_path / "noise.safetensors").write_bytes(b"\x00" * 64)
    for name in ("half.pth", "noise.pth", "noise.safetensors"):
        msg = _build_error(tmp_path / name)
        assert "truncated or corrupt" in msg
        assert "weights_only=False" not in msg  # torch's advice would be unsafe here
    # a folder, a pickled whole model and a non-dict are named too
    assert "folder" in _build_error(tmp_path)
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pth")
    assert "state_dict" in _build_error(tmp_path / "model.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    assert "does not hold a state dict" in _build_error(tmp_path / "list.pth")


def test_fine_tuned_head_is_refused_and_a_missing_head_warns(tmp_path, resnet18_state):
    tuned = dict(resnet18_state)
    tuned["fc.weight"], tuned["fc.bias"] = torch.zeros(10, 512), torch.zeros(10)
    torch.save(tuned, tmp_path / "tuned.pth")
    msg = _build_error(tmp_path / "tuned.pth")
    assert "fc.weight (10, 512)" in msg and "backbone=model" in msg

    # without the head: loads by name, the head keeps its init and the user is told
    body = {k: v * 0.5 for k, v in resnet18_state.items() if not k.startswith("fc.")}
    torch.save(body, tmp_path / "body.pth")
    with pytest.warns(UserWarning, match="fc.weight, fc.bias"):
        bb = build_backbone("resnet18", weights=str(tmp_path / "body.pth"))
    assert torch.equal(bb.model.conv1.weight, body["conv1.weight"])

    # checkpoints wrapped in a dict and DataParallel "module." prefixes load exactly
    torch.save({"epoch": 3, "model_state_dict": body | {"fc.weight": tuned["fc.weight"][:0]}},
               tmp_path / "bad_ckpt.pth")
    assert "other shapes" in _build_error(tmp_path / "bad_ckpt.pth")
    torch.save({"module." + k: v for k, v in resnet18_state.items()}, tmp_path / "dp.pth")
    loaded = build_backbone("resnet18", weights=str(tmp_path / "dp.pth"))
    assert torch.equal(loaded.model.fc.weight, resnet18_state["fc.weight"])


def test_a_rewritten_weights_file_is_read_again(tmp_path, resnet18_state):
    path = tmp_path / "w.pth"
    torch.save(resnet18_state, path)
    first = build_backbone("resnet18", weights=str(path))
    torch.save({k: v + 1 if v.is_floating_point() else v for k, v in resnet18_state.items()},
               path)
    os.utime(path, ns=(1, 1))  # a new mtime even on coarse-clock file systems
    second = build_backbone("resnet18", weights=str(path))
    assert torch.equal(second.model.conv1.weight, first.model.conv1.weight + 1)
