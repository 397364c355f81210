"""Transformer backbones (issue 16): token maps equal timm's own intermediates; pixels map through
the padding to whole patches exactly; folding; several backbones in one hypercolumn; layers;
errors (offline weights, unknown blocks, tiling)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhyper import HypercolumnSegmenter, HypercolumnTransformer, sample_pixels
from skhyper.exceptions import WeightsUnavailableError
from skhyper.features import (
    NotTileableError,
    backbone_union,
    build_backbone,
    list_layers,
    transformer_backbone,
)
from skhyper.sampling import PixelSet
from tests import _vits
from tests.test_extraction import _bilinear_atol
from tests.test_segmenter import scene

ODD = (97, 131)


@pytest.fixture(scope="module", params=_vits.FAMILIES)
def family(request):
    return request.param, _vits.make(request.param)


def _image(shape=ODD, seed=0):
    return np.random.default_rng(seed).random((*shape, 3)).astype(np.float32)


def _blocks(bb):
    return [d["name"] for d in bb.layer_table() if d["kind"] == "map"]


def test_maps_equal_timm_forward_intermediates(family):
    name, model = family
    bb = build_backbone(model)
    x = torch.from_numpy(_image()).permute(2, 0, 1)[None]
    ours = bb(x, _blocks(bb))
    # timm's own API on the same weights and the same (normalized, zero-padded) input
    xn = _vits.padded((x - bb.mean) / bb.std, bb.model.pad_to)
    inner = bb.model.model
    with torch.inference_mode():
        if name == "swin":
            ref = inner.forward_intermediates(xn, intermediates_only=True)
            expected = {f"layers.{i}": r for i, r in enumerate(ref)}
            expected["norm"] = inner.forward_intermediates(xn, indices=[3], norm=True,
                                                           intermediates_only=True)[0]
        else:
            ref = inner.forward_intermediates(xn, output_fmt="NCHW", intermediates_only=True)
            expected = {f"blocks.{i}": r for i, r in enumerate(ref)}
            last = inner.forward_intermediates(xn, indices=[len(ref) - 1], norm=True,
                                               intermediates_only=True)[0]
            expected["neck" if name == "sam" else "norm"] = last
    for layer, ref_map in expected.items():
        assert ours[layer].shape == ref_map.shape
        # the same ops on the same input; float32 reductions may run in another order (a conv
        # neck, attention kernels), so equal to a few float32 ulps of the map's magnitude
        scale = float(ref_map.abs().max())
        torch.testing.assert_close(ours[layer], ref_map, rtol=0, atol=4e-7 * scale)
    # the patch grid of an odd image padded to whole pad_to patches (a Swin pads to 32)
    stride, pad = bb.layer_table()[0]["reduction"], bb.model.pad_to
    grid = tuple(int(np.ceil(s / pad) * pad / stride) for s in ODD)
    assert tuple(ours[_blocks(bb)[0]].shape[-2:]) == grid


@pytest.mark.parametrize("name", ["vit", "vit_reg"])
def test_padding_is_timms_dynamic_img_pad_and_class_token_is_a_1x1_layer(name):
    model = _vits.make(name)
    bb = build_backbone(model)
    x = torch.from_numpy(_image()).permute(2, 0, 1)[None]
    arch, kwargs = _vits._CONFIGS[name]
    with torch.random.fork_rng(devices=[]):
        twin = timm.create_model(arch, pretrained=False, dynamic_img_pad=True, **kwargs).eval()
    twin.load_state_dict(model.state_dict())
    xn = (x - bb.mean) / bb.std  # not padded: timm pads it itself
    with torch.inference_mode():
        out = twin.forward_intermediates(xn, indices=[1], return_prefix_tokens=True,
                                         intermediates_only=True)
    ref_map, ref_prefix = out[0]
    ours = bb(x, ["blocks.1", "blocks.1.cls"])
    torch.testing.assert_close(ours["blocks.1"], ref_map, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours["blocks.1.cls"][:, :, 0, 0], ref_prefix[:, 0], rtol=0,
                               atol=1e-6)
    assert model.num_prefix_tokens == (5 if name == "vit_reg" else 1)  # registers dropped


def test_sampled_rows_equal_dense_through_the_padding(family):
    name, model = family
    img = _image()
    H, W = ODD
    layers = _blocks(build_backbone(model))[-2:]
    if name in ("vit", "vit_reg", "dinov3"):
        layers.append("blocks.0.cls")
    hc = HypercolumnTransformer(model, layers=layers, device="cpu").fit()
    engine = hc.engine_
    (_, maps), = engine.iter_maps(engine.check_images([img]))
    canvases = engine.canvases((H, W))
    assert any(c is not None for c in canvases)  # 97 x 131 is not a whole number of patches
    expected = _vits.canvas_dense(maps, (H, W), canvases)
    dense = hc.transform_dense(img)
    # float32 precision: the source coordinate (y + 0.5) * h / canvas - 0.5 is computed in
    # float32 by both paths (F.interpolate and the engine), so weights may differ by ~eps32 *
    # |coordinate| and values by that times the map's range (test_extraction._bilinear_atol);
    # a real error (a shift by a pixel of padding) is of the order of the range itself.
    err = np.abs(dense - expected)
    assert (err <= _bilinear_atol(maps)).all(), err.max()
    scale = max(1.0, float(np.abs(expected).max()))
    rng = np.random.default_rng(1)
    coords = np.stack([np.zeros(500, int), rng.integers(0, H, 500), rng.integers(0, W, 500)], 1)
    coords[:4, 1:] = [[0, 0], [H - 1, W - 1], [0, W - 1], [H - 1, 0]]  # corners, next to padding
    rows = hc.transform(PixelSet([img], coords))
    # sampled rows and dense rows come from the same bilinear reads: equal to float32 rounding
    np.testing.assert_allclose(rows, dense[coords[:, 1], coords[:, 2]], rtol=0, atol=1e-7 * scale)


@pytest.mark.parametrize("kwargs", [{"image_size": 80}, {"scales": (0.5, 1.0)}])
def test_sampled_equals_dense_when_resized(kwargs):
    img = _image()
    hc = HypercolumnTransformer(_vits.make("vit_reg"), layers=["blocks.1", "norm.cls"],
                                device="cpu", **kwargs).fit()
    dense = hc.transform_dense(img)
    H, W = ODD
    rr, cc = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    coords = np.stack([np.zeros(H * W, int), rr.ravel(), cc.ravel()], 1)
    rows = hc.transform(PixelSet([img], coords))
    np.testing.assert_allclose(rows, dense.reshape(H * W, -1), rtol=0, atol=1e-6)
    # and both follow the definition: maps over the padded fed image, mapped back through the
    # resize (a canvas that is not a whole number of image pixels)
    engine = hc.engine_
    (_, maps), = engine.iter_maps(engine.check_images([img]))
    assert any(c is not None and c != tuple(map(int, c)) for c in engine.canvases((H, W)))
    err = np.abs(dense - _vits.canvas_dense(maps, (H, W), engine.canvases((H, W))))
    assert (err <= _bilinear_atol(maps)).all(), err.max()


def _naive(seg, img, method):
    """The definition: the float64 dense hypercolumn (maps over their padded canvases)."""
    engine = seg.hypercolumns_.engine_
    (_, maps), = engine.iter_maps(engine.check_images([img]))
    H, W = img.shape[:2]
    dense = _vits.canvas_dense(maps, (H, W), engine.canvases((H, W)))
    out = getattr(seg.classifier_, method)(dense.reshape(H * W, -1))
    return np.asarray(out).reshape(H, W, *np.shape(out)[1:])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_folded_equals_naive(family, n_classes):
    name, model = family
    rng = np.random.default_rng(n_classes)
    pairs = [scene(rng, s, n_classes) for s in [ODD, (64, 50)]]
    layers = _blocks(build_backbone(model))[-2:]
    if name == "vit":
        layers.append("norm.cls")
    hc = HypercolumnTransformer(model, layers=layers, device="cpu")
    seg = HypercolumnSegmenter(hc, make_pipeline(StandardScaler(), LogisticRegression(C=0.1)),
                               n_pixels_per_image=300, random_state=0, upsampling="bilinear")
    seg.fit([p[0] for p in pairs], [p[1] for p in pairs])
    assert seg.prediction_path_ == "folded"
    img = pairs[0][0]
    np.testing.assert_allclose(seg.decision_function(img), _naive(seg, img, "decision_function"),
                               rtol=0, atol=1e-4)
    np.testing.assert_allclose(seg.predict_proba(img), _naive(seg, img, "predict_proba"),
                               rtol=0, atol=1e-5)


def test_cnn_and_vit_in_one_hypercolumn_fold_and_equal_naive():
    rng = np.random.default_rng(0)
    pairs = [scene(rng, s, 2) for s in [ODD, (70, 58)]]
    images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
    backbone = {"cnn": "resnet18", "vit": _vits.make("vit_reg")}
    hc = HypercolumnTransformer(backbone, weights=None, device="cpu",
                                layers=["cnn.relu", "cnn.layer2", "vit.blocks.1", "vit.norm.cls"])
    seg = HypercolumnSegmenter(hc, make_pipeline(StandardScaler(), LogisticRegression(C=0.1)),
                               n_pixels_per_image=300, random_state=0,
                               upsampling="bilinear").fit(images, masks)
    assert seg.prediction_path_ == "folded"
    info = seg.hypercolumns_.feature_info_
    assert [d.get("pad_to") for d in info] == [None, None, 14, None]
    np.testing.assert_allclose(seg.decision_function(images[0]),
                               _naive(seg, images[0], "decision_function"), rtol=0, atol=1e-4)
    # each member's maps are its own backbone's maps
    X, y = sample_pixels(images, masks, n_per_image=50, random_state=0)
    alone = HypercolumnTransformer(_vits.make("vit_reg"), layers=["blocks.1"], device="cpu").fit()
    np.testing.assert_allclose(seg.hypercolumns_.transform(X)[:, -64:-32], alone.transform(X),
                               rtol=0, atol=1e-6)


def test_union_runs_only_members_with_requested_layers():
    calls = []
    bb = backbone_union({"cnn": "resnet18", "vit": _vits.make("vit")}, weights=None)
    bb.model.cnn.register_forward_hook(lambda *a: calls.append("cnn"))
    bb(torch.rand(1, 3, 32, 32), ["vit.blocks.0"])
    assert calls == []
    bb(torch.rand(1, 3, 32, 32), ["cnn.layer1", "vit.blocks.0"])
    assert calls == ["cnn"]
    with pytest.raises(ValueError, match="member names"):
        backbone_union({"a.b": "resnet18"}, weights=None)


def test_list_layers_of_each_family(family):
    name, model = family
    table = list_layers(model)
    names = [d["name"] for d in table]
    stride = {"vit": 16, "vit_reg": 14, "dinov3": 16, "sam": 16}.get(name)
    if name == "swin":
        assert [d["reduction"] for d in table if d["stage"]] == [4.0, 8.0, 16.0, 32.0]
        assert names[-1] == "norm" and "layers.2.blocks.0" in names
    else:
        blocks = [d for d in table if d["name"].startswith("blocks.") and d["kind"] == "map"]
        assert [d["reduction"] for d in blocks] == [float(stride)] * len(blocks)
        assert names[-1 if name == "sam" else -2] == ("neck" if name == "sam" else "norm")
    if name in ("vit", "vit_reg", "dinov3"):
        cls = [d for d in table if d["name"].endswith(".cls")]
        assert cls and all(d["kind"] == "vector" and d["reduction"] is None for d in cls)
    assert all(d.get("pad_to") for d in table if d["kind"] == "map")


def test_unknown_block_lists_valid_names():
    hc = HypercolumnTransformer(_vits.make("vit"), layers=["blocks.7"], device="cpu")
    with pytest.raises(ValueError, match=r"unknown layers \['blocks.7'\].*Valid names: \['blocks"):
        hc.fit()


def test_named_transformer_builds_for_any_size_and_offline_weights_fail_clearly(monkeypatch):
    bb = build_backbone("timm:vit_tiny_patch16_224", weights=None)
    assert bb.model.model.dynamic_img_size and bb.stages() == [
        "blocks.2", "blocks.5", "blocks.8", "blocks.11"]
    real_create = timm.create_model

    def offline_timm(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("cannot reach the hub")
        return real_create(name, pretrained=pretrained, **kw)

    monkeypatch.setattr(timm, "create_model", offline_timm)
    for name in ("timm:vit_small_patch14_dinov2", "timm:samvit_base_patch16"):
        with pytest.raises(WeightsUnavailableError,
                           match=f"'{name}'.*path/to/weights.pth.*weights=None"):
            build_backbone(name, weights="imagenet")


def test_fixed_size_module_is_refused_with_the_fix():
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1)
    with pytest.raises(ValueError, match="dynamic_img_size=True"):
        transformer_backbone(vit)


def test_tiling_is_refused_with_why_and_what_to_do():
    img, mask = scene(np.random.default_rng(0), (80, 80), 2)
    hc = HypercolumnTransformer(_vits.make("vit"), device="cpu", tile_size=64)
    seg = HypercolumnSegmenter(hc, n_pixels_per_image=50, random_state=0)
    with pytest.raises(NotTileableError, match="attention.*tile_size=None.*image_size"):
        seg.fit([img], [mask])
    # images within tile_size run whole
    seg.set_params(hypercolumns__tile_size=96).fit([img], [mask])
    from skhyper.parallel import predict_large

    with pytest.raises(ValueError, match="predict_large cannot chunk.*attention"):
        predict_large(seg, img, chunks=32)
