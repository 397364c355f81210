"""Multi-scale hypercolumns: names, the default unchanged, folded == naive (global and grid),
transform == transform_dense, tiled == whole, cache keys by scale, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhyper import (
    GridLocationClassifier,
    HypercolumnSegmenter,
    HypercolumnTransformer,
    MapCache,
    PixelSet,
    extract_hypercolumns,
    grid_pixels,
    sample_pixels,
)
from skhyper.features._scales import check_scales, split_scaled
from skhyper.location import location_map

from . import test_segmenter as ts

LAYERS = ["blocks.0", "blocks.2", "blocks.4", "blocks.6"]


def dense64(hc, img):
    """The definition in float64: every (scale, layer) map upsampled to the image."""
    engine = hc.engine_.replace(tile_size=None, cache=None)
    (_, maps), = engine.iter_maps(engine.check_images([np.asarray(img)]))
    H, W = img.shape[:2]
    up = [F.interpolate(m[None].double(), size=(H, W), mode="bilinear", align_corners=False)
          for m in maps.values()]
    return torch.cat(up, 1)[0].permute(1, 2, 0).numpy()


def three_scenes(seed, n_classes=2):
    rng = np.random.default_rng(seed)
    images, masks = zip(*[ts.scene(rng, s, n_classes) for s in [(61, 83), (77, 59), (64, 64)]])
    return list(images), list(masks)


def test_names_blocks_and_default_unchanged(rng):
    images = [rng.random((48, 64, 3)).astype(np.float32) for _ in range(2)]
    X, _ = sample_pixels(images, [(im[..., 0] > 0.5).astype(int) for im in images],
                         n_per_image=30, random_state=0)
    kw = dict(backbone="resnet18", layers=["layer1", "layer3"], weights=None, device="cpu")
    plain = HypercolumnTransformer(**kw).fit(X)
    assert plain.scales_ is None and [d["name"] for d in plain.feature_info_] == ["layer1",
                                                                                   "layer3"]
    one = HypercolumnTransformer(**kw, scales=(1.0,)).fit(X)
    np.testing.assert_array_equal(one.transform(X), plain.transform(X))  # bit-identical
    hc = HypercolumnTransformer(**kw, scales=[2, 0.5]).fit(X)  # 1.0 need not be there
    assert hc.scales_ == (2.0, 0.5)
    assert [(d["name"], d["layer"], d["scale"], d["reduction"]) for d in hc.feature_info_] == [
        ("s2.0.layer1", "layer1", 2.0, 2.0), ("s2.0.layer3", "layer3", 2.0, 8.0),
        ("s0.5.layer1", "layer1", 0.5, 8.0), ("s0.5.layer3", "layer3", 0.5, 32.0),
    ]
    assert hc.engine_.layers == ["layer1", "layer3"]
    names = hc.get_feature_names_out()
    assert hc.n_features_out_ == len(names) == 2 * (64 + 256)
    assert names[[0, 64, 320, 384]].tolist() == [
        "s2.0.layer1.c000", "s2.0.layer3.c000", "s0.5.layer1.c000", "s0.5.layer3.c000"]
    out = hc.transform(X)
    # each scale's block is the single-scale hypercolumn of the resized image, read in
    # original coordinates: scale 2 of a 48 x 64 image == image_size=128
    big = HypercolumnTransformer(**kw, image_size=128).fit(X).transform(X)
    np.testing.assert_allclose(out[:, :320], big, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        out, extract_hypercolumns(X, hc.backbone_, ["layer1", "layer3"], scales=(2, 0.5)),
        rtol=0, atol=0)


@pytest.mark.parametrize(
    "scales, clf",
    [
        ((1.0, 0.5, 0.25), lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.1))),
        ((2.0, 0.5), lambda: make_pipeline(StandardScaler(),
                                           SGDClassifier(loss="log_loss", random_state=0))),
    ],
    ids=["1-0.5-0.25 logreg", "2-0.5 sgd"],
)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_folded_equals_naive(scales, clf, n_classes):
    images, masks = three_scenes(n_classes, n_classes)
    hc = HypercolumnTransformer(layers=LAYERS, device="cpu", scales=scales)
    seg = HypercolumnSegmenter(hc, clf(), n_pixels_per_image=150, random_state=0,
                               upsampling="bilinear")
    seg.fit(images, masks)
    assert seg.prediction_path_ == "folded"
    assert len(seg.folded_.blocks) == len(scales) * len(LAYERS)  # one 1x1 head per map
    img = images[0]  # odd size 61 x 83
    H, W = img.shape[:2]
    dense = dense64(seg.hypercolumns_, img)
    expected = seg.classifier_.decision_function(dense.reshape(H * W, -1)).reshape(H, W, -1)
    scores = seg.decision_function(img)
    np.testing.assert_allclose(scores.reshape(H, W, -1), expected, rtol=0, atol=1e-4)
    # the float32 naive path: transform_dense -> classifier
    dense32 = seg.hypercolumns_.transform_dense(img)
    naive32 = seg.classifier_.decision_function(dense32.reshape(H * W, -1)).reshape(H, W, -1)
    tol = 1e-4 * max(1.0, np.abs(expected).max() / 64)
    np.testing.assert_allclose(scores.reshape(H, W, -1), naive32, rtol=0, atol=tol)
    np.testing.assert_allclose(
        seg.predict_proba(img),
        seg.classifier_.predict_proba(dense.reshape(H * W, -1)).reshape(H, W, -1),
        rtol=0, atol=1e-5)
    assert np.abs(scores).max() > 0.1


def test_transform_equals_dense_at_pixels_with_locations(rng):
    images, masks = three_scenes(5)
    boxes = np.array([[5, 3, 70, 50], [-6.5, 10, 50, 90], [10.5, 12.2, 40.1, 60]])
    X, _ = sample_pixels(images, masks, n_per_image=200, boxes=boxes, random_state=0)
    hc = HypercolumnTransformer(layers=LAYERS, device="cpu", scales=(1.0, 0.5, 0.25),
                                append_location=True).fit(X)
    rows = hc.transform(X)
    dense = hc.transform_dense(images, boxes=boxes)
    i, r, c = X.coords.T
    expected = np.stack([dense[k][rr, cc] for k, rr, cc in zip(i, r, c)])
    assert rows.shape == expected.shape == (len(X), hc.n_features_out_)
    np.testing.assert_allclose(rows, expected, rtol=0, atol=1e-6)
    # every pixel of one image, in raster order
    full = hc.transform(grid_pixels(images[1]))
    np.testing.assert_allclose(full, hc.transform_dense(images[1]).reshape(len(full), -1),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("framing", ["image", "boxes"])
def test_folded_grid_equals_naive(framing):
    images, masks = three_scenes(7, 2)
    boxes = None if framing == "image" else np.array(
        [[5, 3, 70, 50], [-6.5, 10, 50, 90], [10.5, 12.2, 40.1, 60]])
    hc = HypercolumnTransformer(layers=LAYERS, device="cpu", scales=(1.0, 0.5),
                                append_location=True)
    clf = GridLocationClassifier(make_pipeline(StandardScaler(), LogisticRegression(C=0.1)), 2,
                                 min_samples_cell=10)
    seg = HypercolumnSegmenter(hc, clf, n_pixels_per_image=300, random_state=0,
                               upsampling="bilinear")
    seg.fit(images, masks, boxes=boxes)
    assert seg.prediction_path_ == "folded" and (~seg.classifier_.fallback_).sum() >= 2
    for n in (0, 1):
        img = images[n]
        H, W = img.shape[:2]
        frame = (0, 0, W, H) if boxes is None else tuple(boxes[n])
        kw = {} if boxes is None else {"boxes": boxes[[n]]}
        rows = np.concatenate([dense64(seg.hypercolumns_, img),
                               location_map((H, W), frame).astype(np.float64)], -1)
        expected = seg.classifier_.decision_function(rows.reshape(H * W, -1)).reshape(H, W)
        np.testing.assert_allclose(seg.decision_function([img], **kw)[0], expected,
                                   rtol=0, atol=1e-4)
        np.testing.assert_allclose(
            seg.predict_proba([img], **kw)[0],
            seg.classifier_.predict_proba(rows.reshape(H * W, -1)).reshape(H, W, -1),
            rtol=0, atol=1e-5)


def test_chunked_path_equals_naive():
    images, masks = three_scenes(3, 3)
    hc = HypercolumnTransformer("resnet18", layers=["layer1", "layer2"], weights=None,
                                device="cpu", scales=(1.0, 0.5))
    seg = HypercolumnSegmenter(hc, RandomForestClassifier(n_estimators=10, random_state=0),
                               n_pixels_per_image=100, random_state=0, chunk_pixels=700)
    seg.fit(images, masks)
    assert seg.prediction_path_ == "chunked"
    img = images[1]
    dense = seg.hypercolumns_.transform_dense(img)
    expected = seg.classifier_.predict_proba(dense.reshape(-1, dense.shape[-1]))
    np.testing.assert_allclose(seg.predict_proba(img).reshape(expected.shape), expected)


def test_tiled_equals_whole_700x900(rng):
    """Each resized image is tiled on its own: tiles reproduce the whole-image scores."""
    from skhyper.features import receptive_field
    from skhyper.features._tiling import plan_axis

    layers = ["blocks.0", "blocks.1", "blocks.2"]
    img, _ = ts.scene(rng, (700, 900), 3)
    small, small_mask = ts.scene(rng, (96, 128), 3)
    hc = HypercolumnTransformer(layers=layers, device="cpu", tile_size=None, scales=(1.0, 0.5))
    seg = HypercolumnSegmenter(hc, n_pixels_per_image=300, random_state=0)
    seg.fit([small], [small_mask])
    whole = seg.decision_function(img)
    tile = 128
    seg.hypercolumns_.engine_ = seg.hypercolumns_.engine_.replace(tile_size=tile)
    halo, stride = receptive_field(seg.hypercolumns_.backbone_, layers)
    for n in (350, 450, 700, 900):  # real tiles at both scales
        assert len(plan_axis(n, tile, halo, stride)) > 1
    tiled = seg.decision_function(img)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-4)
    assert np.abs(whole).max() > 0.1


def test_cache_keys_hold_the_scale(rng):
    images = [rng.random((40 + 4 * k, 52, 3)).astype(np.float32) for k in range(3)]
    X, _ = sample_pixels(images, [(im[..., 0] > 0.5).astype(int) for im in images],
                         n_per_image=25, random_state=0)
    kw = dict(backbone="resnet18", layers=["layer1", "layer2"], weights=None, device="cpu")
    cache = MapCache()
    ref = HypercolumnTransformer(**kw, scales=(1.0, 0.5)).fit(X).transform(X)
    hc = HypercolumnTransformer(**kw, scales=(1.0, 0.5), cache=cache).fit(X)
    np.testing.assert_array_equal(hc.transform(X), ref)
    assert len(cache) == 6 and cache.n_forward_images == 6  # one entry per image and scale
    np.testing.assert_array_equal(hc.transform(X), ref)  # served from the cache
    assert cache.n_forward_images == 6
    # scale 1.0 is shared with the single-scale transformer; scale 0.25 is new
    single = HypercolumnTransformer(**kw, cache=cache).fit(X).transform(X)
    np.testing.assert_array_equal(single, ref[:, :192])
    assert cache.n_forward_images == 6
    HypercolumnTransformer(**kw, scales=(0.5, 0.25), cache=cache).fit(X).transform(X)
    assert cache.n_forward_images == 9 and len(cache) == 9


def test_per_channel_names_and_layer_importance(rng):
    from skhyper.inspection import layer_importance

    cells = rng.integers(0, 255, size=(2, 40, 48, 2), dtype=np.uint8)
    X, _ = sample_pixels(cells, cells[..., 0] > 127, n_per_image=20, random_state=0)
    hc = HypercolumnTransformer("resnet18", layers=["layer1"], weights=None, device="cpu",
                                channel_strategy="per_channel", scales=(1.0, 0.5)).fit(X)
    assert hc.transform(X).shape == (40, 256)
    assert hc.get_feature_names_out()[[0, 64, 128, 192]].tolist() == [
        "ch0.s1.0.layer1.c000", "ch1.s1.0.layer1.c000", "ch0.s0.5.layer1.c000",
        "ch1.s0.5.layer1.c000"]
    images = rng.random((4, 32, 32, 3)).astype(np.float32)
    masks = (images[..., 0] > 0.5).astype(int)
    seg = HypercolumnSegmenter(
        HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None,
                               device="cpu", scales=(1.0, 2.0)),
        n_pixels_per_image=50, random_state=0)
    res = layer_importance(seg, images, masks, cv=2)  # layers across all scales
    assert res.layers == ["relu", "layer1"] and res.single_scores.shape == (2, 2)


@pytest.mark.parametrize(
    "scales", [(), [0.5, 0], (1.0, -1), (1, 1.0), ("a",), (True,), (float("nan"),),
               (float("inf"),), 0.5],
)
def test_bad_scales_raise(scales, rng):
    images = [rng.random((32, 32, 3)).astype(np.float32)]
    X = PixelSet(images, np.array([[0, 1, 2]]))
    hc = HypercolumnTransformer("resnet18", layers=["layer1"], weights=None, device="cpu",
                                scales=scales)
    with pytest.raises(ValueError, match="'scales' parameter of HypercolumnTransformer must"):
        hc.fit(X)
    with pytest.raises(ValueError, match="'scales' parameter of extract_hypercolumns must"):
        extract_hypercolumns(X, "resnet18", ["layer1"], scales=scales)


def test_scale_helpers():
    assert check_scales(np.array([1, 0.5])) == (1.0, 0.5)
    with pytest.raises(ValueError, match="none of the scales"):
        split_scaled(["layer1"], (1.0,))
