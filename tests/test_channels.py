"""Microscopy input: channel strategies, intensity ranges, z-stacks (issue "Beyond RGB photos")."""

from __future__ import annotations

import warnings

import joblib
import numpy as np
import pytest
import torch

from skhyper import HypercolumnSegmenter, HypercolumnTransformer, MapCache, sample_pixels
from skhyper._param_validation import InvalidParameterError
from skhyper._validation import check_images
from skhyper.exceptions import IntensityWarning
from skhyper.features import (
    PerChannelBackbone,
    adapt_first_conv,
    build_backbone,
    receptive_field,
    rescale_intensity,
    to_float_image,
)
from skhyper.features._channels import find_first_conv
from skhyper.features._intensity import check_intensity_range
from skhyper.features._tiling import plan_axis
from skhyper.stacks import split_planes, stack_planes

LAYERS = ["relu", "layer1"]  # 64 + 64 channels, strides 2 and 4
RANGE = (100, 4000)
# (strategy, channel counts it takes)
VALID = [(None, 1), ("replicate", 1)] + [
    (s, c) for s in ("per_channel", "first_conv") for c in (1, 2, 4)
]


def tiny(**kw):
    return HypercolumnTransformer("resnet18", weights=None, layers=LAYERS, device="cpu", **kw)


def cells(rng, n_channels, n=3, size=48, hot=None):
    """uint16 images on noise in 100..1200, a bright 16 px square in channel ``hot`` (the last
    one by default) reaching up to 4000; the square's mask."""
    hot = n_channels - 1 if hot is None else hot
    images, masks = [], []
    for _ in range(n):
        img = rng.integers(100, 1200, size=(size, size, n_channels)).astype(np.uint16)
        mask = np.zeros((size, size), dtype=np.int64)
        r, c = rng.integers(4, size - 20, 2)
        mask[r : r + 16, c : c + 16] = 1
        img[mask == 1, hot] += 2800
        images.append(img)
        masks.append(mask)
    return images, masks


# --- transform: shapes and names ------------------------------------------------------------


@pytest.mark.parametrize("strategy, n_channels", VALID)
def test_transform_shapes_and_names(strategy, n_channels, rng):
    images, masks = cells(rng, n_channels, n=2)
    X, _ = sample_pixels(images, masks, n_per_image=30, random_state=0)
    hc = tiny(channel_strategy=strategy, intensity_range=RANGE).fit(X)
    Xt = hc.transform(X)
    names = hc.get_feature_names_out()
    per = n_channels if strategy == "per_channel" else 1
    assert Xt.shape == (60, 128 * per) == (len(X), hc.n_features_out_) and len(names) == 128 * per
    assert Xt.dtype == np.float32 and np.isfinite(Xt).all()
    assert hc.n_channels_in_ == (3 if strategy is None else n_channels)  # None: RGB or gray
    if strategy == "per_channel":
        # per layer, channel-major: relu of ch0, relu of ch1, ..., then layer1 of ch0 ...
        assert names[0] == "ch0.relu.c000" and names[64 * per - 1] == f"ch{per - 1}.relu.c063"
        assert names[64] == ("ch1.relu.c000" if per > 1 else "ch0.layer1.c000")
        assert names[-1] == f"ch{per - 1}.layer1.c063"
        assert [d["num_chs"] for d in hc.feature_info_] == [64 * per, 64 * per]
    else:
        assert names[0] == "relu.c000" and names[-1] == "layer1.c063"
    if strategy == "first_conv":
        assert hc.backbone_.in_chans == n_channels
        assert tuple(hc.backbone_.model.conv1.weight.shape) == (64, n_channels, 7, 7)
    dense = hc.transform_dense(images[0])
    assert dense.shape == (48, 48, 128 * per)
    r, c = X.coords[0, 1:]
    np.testing.assert_allclose(dense[r, c], Xt[0], rtol=0, atol=1e-5)


def test_per_channel_block_is_the_replicated_channel(rng):
    """Channel k's columns are exactly the hypercolumn of channel k alone, replicated."""
    images, masks = cells(rng, 2, n=2)
    X, _ = sample_pixels(images, masks, n_per_image=40, random_state=0)
    per = tiny(channel_strategy="per_channel", intensity_range=RANGE).fit(X).transform(X)
    blocks = per.reshape(len(X), 2, 2, 64)  # (pixel, layer, image channel, channel)
    for k in range(2):
        gray = [img[..., k] for img in images]
        Xk, _ = sample_pixels(gray, masks, n_per_image=40, random_state=0)
        np.testing.assert_array_equal(Xk.coords, X.coords)
        alone = tiny(channel_strategy="replicate", intensity_range=RANGE).fit(Xk).transform(Xk)
        np.testing.assert_allclose(blocks[:, :, k].reshape(len(X), 128), alone,
                                   rtol=0, atol=1e-5)


def test_first_conv_keeps_rgb_and_sums_for_gray():
    bb = build_backbone("resnet18", weights=None)
    same = adapt_first_conv(bb, 3)
    torch.testing.assert_close(same.model.conv1.weight, bb.model.conv1.weight)
    gray = adapt_first_conv(bb, 1)
    torch.testing.assert_close(gray.model.conv1.weight, bb.model.conv1.weight.sum(1, True))
    assert gray.in_chans == 1 and bb.in_chans == 3  # the original is left unchanged
    assert gray.mean.flatten().tolist() == pytest.approx([np.mean(bb.mean.tolist())])
    four = adapt_first_conv(bb, 4)
    torch.testing.assert_close(four.model.conv1.weight[:, 3], bb.model.conv1.weight[:, 0] * 0.75)
    # the default backbone (timm, offline weights) adapts its stem
    lite = build_backbone()
    assert find_first_conv(lite)[0] == "conv_stem"
    assert adapt_first_conv(lite, 2).model.conv_stem.in_channels == 2


def test_per_channel_backbone_wraps_only_backbones():
    with pytest.raises(TypeError, match="wraps a skhyper Backbone"):
        PerChannelBackbone(torch.nn.Conv2d(3, 4, 1), 2)


# --- segmenter: IoU and folded == naive -------------------------------------------------------


@pytest.mark.parametrize("strategy, n_channels", VALID)
def test_segmenter_each_strategy_folds_and_finds_the_square(strategy, n_channels, rng):
    images, masks = cells(rng, n_channels, n=4)
    hc = tiny(channel_strategy=strategy, intensity_range=RANGE)
    seg = HypercolumnSegmenter(hc, n_pixels_per_image=400, random_state=0)
    seg.fit(images[:3], masks[:3])
    assert seg.prediction_path_ == "folded"
    assert seg.score(images[3:], masks[3:]) > 0.85  # held-out image
    img = images[3]
    scores = seg.decision_function(img)
    dense = seg.hypercolumns_.transform_dense(img)
    naive = seg.classifier_.decision_function(dense.reshape(-1, dense.shape[-1])).reshape(48, 48)
    tol = 1e-4 * max(1.0, np.abs(naive).max() / 64)
    np.testing.assert_allclose(scores, naive, rtol=0, atol=tol)
    labels = seg.predict(img)
    agree = labels == seg.classifier_.predict(dense.reshape(-1, dense.shape[-1])).reshape(48, 48)
    assert np.all(agree | (np.abs(scores) < 1e-4))


@pytest.mark.parametrize("strategy", ["per_channel", "first_conv"])
def test_default_backbone_with_pretrained_weights(strategy, rng):
    """The offline EfficientNet-Lite0 (timm): realistic activations, folded == naive."""
    images, masks = cells(rng, 2, n=3, size=64)
    hc = HypercolumnTransformer(layers=["blocks.1", "blocks.2", "blocks.4"], device="cpu",
                                channel_strategy=strategy,
                                intensity_range=("percentile", 0.5, 99.5))
    seg = HypercolumnSegmenter(hc, n_pixels_per_image=400, random_state=0,
                               upsampling="bilinear")
    seg.fit(images[:2], masks[:2])
    assert seg.prediction_path_ == "folded" and seg.score(images[2:], masks[2:]) > 0.75
    scores = seg.decision_function(images[2])
    dense = seg.hypercolumns_.transform_dense(images[2])
    naive = seg.classifier_.decision_function(dense.reshape(-1, dense.shape[-1])).reshape(64, 64)
    np.testing.assert_allclose(scores, naive, rtol=0, atol=1e-4 * max(1, np.abs(naive).max() / 64))


def test_per_channel_tiled_and_cached_prediction_equal_the_plain_one(rng):
    images, masks = cells(rng, 2, n=2, size=48)
    big, _ = cells(rng, 2, n=1, size=160)
    cache = MapCache()
    hc = tiny(channel_strategy="per_channel", intensity_range=RANGE, tile_size=None, cache=cache)
    seg = HypercolumnSegmenter(hc, n_pixels_per_image=200, random_state=0).fit(images, masks)
    whole = seg.decision_function(big[0])
    hits = cache.hits
    np.testing.assert_array_equal(seg.decision_function(big[0]), whole)
    assert cache.hits == hits + 1  # served from the cache
    seg.hypercolumns_.engine_ = seg.hypercolumns_.engine_.replace(tile_size=32, cache=None)
    halo, stride = receptive_field(seg.hypercolumns_.backbone_, LAYERS)
    assert len(plan_axis(160, 32, halo, stride)) > 1  # real tiles
    np.testing.assert_allclose(seg.decision_function(big[0]), whole, rtol=0, atol=1e-4)


def test_cache_keeps_intensity_ranges_apart(rng):
    images, masks = cells(rng, 1, n=2)
    X, _ = sample_pixels(images, masks, n_per_image=20, random_state=0)
    cache = MapCache()
    a = tiny(intensity_range=RANGE, cache=cache).fit(X).transform(X)
    b = tiny(intensity_range=("percentile", 1, 99), cache=cache).fit(X).transform(X)
    assert cache.n_forward_images == 4 and np.abs(a - b).max() > 1e-3
    np.testing.assert_array_equal(tiny(intensity_range=RANGE, cache=cache).fit(X).transform(X), a)


# --- errors ------------------------------------------------------------------------------------


def test_two_channels_without_a_strategy_raise_a_clear_error(rng):
    images, masks = cells(rng, 2, n=2)
    seg = HypercolumnSegmenter(tiny(intensity_range=RANGE), n_pixels_per_image=50)
    with pytest.raises(ValueError, match=r"'images\[0\]' parameter "
                                         r"has 2 channels.*channel_strategy="
                                         "'per_channel'"):
        seg.fit(images, masks)
    X, _ = sample_pixels(images, masks, n_per_image=5, random_state=0)
    with pytest.raises(ValueError, match=r"'X.images\[0\]' parameter has 2 channels.*'first_conv'"):
        tiny().fit(X)


def test_replicate_refuses_multichannel_images(rng):
    gray, masks = cells(rng, 1, n=2)
    seg = HypercolumnSegmenter(tiny(channel_strategy="replicate", intensity_range=RANGE),
                               n_pixels_per_image=100, random_state=0).fit(gray, masks)
    two, _ = cells(rng, 2, n=1)
    with pytest.raises(ValueError, match="channel_strategy='replicate' takes grayscale"):
        seg.predict(two[0])
    with pytest.raises(ValueError, match=r"'images\[1\]' parameter "
                                         r"has 2 channels, but channel_strategy="):
        HypercolumnSegmenter(tiny(channel_strategy="replicate")).fit([gray[0], two[0]], masks)


@pytest.mark.parametrize("strategy", ["per_channel", "first_conv"])
def test_channel_count_is_fixed_at_fit(strategy, rng):
    images, masks = cells(rng, 2, n=2)
    seg = HypercolumnSegmenter(tiny(channel_strategy=strategy, intensity_range=RANGE),
                               n_pixels_per_image=100, random_state=0).fit(images, masks)
    three, _ = cells(rng, 3, n=1)
    with pytest.raises(ValueError, match=r"'images' parameter "
                                         r"has 3 channels.*fitted on images with 2"):
        seg.predict(three[0])
    gray, _ = cells(rng, 1, n=1)
    with pytest.raises(ValueError, match="fixed at fit"):
        seg.predict(gray)
    X, _ = sample_pixels(three, [masks[0]], n_per_image=5, random_state=0)
    with pytest.raises(ValueError, match=r"'X.images\[0\]' parameter has 3 channels"):
        seg.hypercolumns_.transform(X)
    with pytest.raises(ValueError, match=r"'images\[1\]' parameter "
                                         r"has 3 channels but `images\[0\]` has 2"):
        HypercolumnSegmenter(tiny(channel_strategy=strategy)).fit([images[0], three[0]], masks)


def test_fit_without_images_assumes_rgb():
    assert tiny(channel_strategy="first_conv").fit().n_channels_in_ == 3
    assert tiny(channel_strategy="per_channel").fit().n_features_out_ == 3 * 128
    assert tiny(channel_strategy="replicate").fit().n_channels_in_ == 1


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"channel_strategy": "stack"}, InvalidParameterError,
         "The 'channel_strategy' parameter of HypercolumnTransformer must be"),
        ({"intensity_range": "auto"}, InvalidParameterError,
         "The 'intensity_range' parameter of HypercolumnTransformer must be"),
        ({"intensity_range": (4000, 100)}, ValueError, r"low < high .*Got \(4000, 100\)"),
        ({"intensity_range": ("percentile", 1, 101)}, ValueError, "0 <= p_low < p_high <= 100"),
        ({"intensity_range": ("percent", 1, 99)}, ValueError, "must be None, a \\(low, high\\)"),
    ],
)
def test_bad_parameters(params, error, match):
    with pytest.raises(error, match=match):
        tiny(**params).fit()


def test_stack_hint_points_to_split_planes():
    with pytest.raises(ValueError, match="split_planes"):
        check_images(np.zeros((16, 16, 9), dtype=np.uint16))


# --- intensities --------------------------------------------------------------------------


def test_intensity_pair_rescales_and_clips():
    img = np.array([[0, 100, 2050], [4000, 5000, 65535]], dtype=np.uint16)[..., None]
    out = to_float_image(img, 1, (100, 4000))
    assert out.dtype == np.float32 and out.shape == (2, 3, 1)
    np.testing.assert_allclose(out[..., 0], [[0, 0, 0.5], [1, 1, 1]], atol=1e-7)
    # floats and signed integers use the same rule; grayscale is then replicated
    f = to_float_image(np.array([[[-0.5], [0.25], [2.0]]]), 3, [-1.0, 1.0])
    assert f.shape == (1, 3, 3)
    np.testing.assert_allclose(f[0, :, 0], [0.25, 0.625, 1.0])
    s = to_float_image(np.array([[[-300], [0], [300]]], dtype=np.int16), 1, (-300, 300))
    np.testing.assert_allclose(s.ravel(), [0, 0.5, 1])
    # wide integers are not rounded to float32 before the subtraction
    wide = np.array([[[2**40], [2**40 + 2]]], dtype=np.int64)
    np.testing.assert_allclose(rescale_intensity(wide, (2**40, 2**40 + 2)).ravel(), [0, 1])
    # the default is unchanged: dtype maximum
    np.testing.assert_allclose(to_float_image(img, 1).ravel()[-1], 1.0)


def test_intensity_percentiles_per_image_and_channel(rng):
    img = np.empty((50, 40, 2), dtype=np.uint16)
    img[..., 0] = rng.integers(100, 200, (50, 40))
    img[..., 1] = rng.integers(1000, 9000, (50, 40))
    img[0, 0, 1] = 60000  # a hot pixel
    out = to_float_image(img, 2, ("percentile", 1, 99))
    for k in range(2):
        lo, hi = np.percentile(img[..., k], [1, 99])
        np.testing.assert_allclose(out[..., k], np.clip((img[..., k] - lo) / (hi - lo), 0, 1),
                                   atol=1e-6)
        assert out[..., k].min() == 0 and out[..., k].max() == 1
    assert out[0, 0, 1] == 1  # clipped
    # a constant channel becomes 0 instead of dividing by zero
    flat = to_float_image(np.full((4, 4, 1), 7, dtype=np.uint16), 1, ("percentile", 1, 99))
    assert (flat == 0).all()
    assert check_intensity_range(["percentile", 0, 100]) == ("percentile", 0.0, 100.0)


def _intensity_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [w for w in caught if issubclass(w.category, IntensityWarning)]


def test_dark_uint16_warns_once_per_call(rng):
    images, masks = cells(rng, 1, n=3)
    X, _ = sample_pixels(images, masks, n_per_image=10, random_state=0)
    hc = tiny().fit(X)
    caught = _intensity_warnings(lambda: hc.transform(X))
    assert len(caught) == 1 and issubclass(caught[0].category, UserWarning)
    msg = str(caught[0].message)
    assert "3 of 3 images are uint16 with values up to 3999" in msg and "nearly black" in msg
    assert "intensity_range=('percentile', 1, 99.8)" in msg
    assert not _intensity_warnings(lambda: tiny(intensity_range=RANGE).fit(X).transform(X))
    assert not _intensity_warnings(lambda: hc.transform_dense([np.zeros((32, 32), np.uint16)]))
    bright = [(img.astype(np.uint32) * 16).astype(np.uint16) for img in images]
    assert not _intensity_warnings(lambda: hc.transform_dense(bright))
    seg = HypercolumnSegmenter(tiny(), n_pixels_per_image=50, random_state=0)
    assert len(_intensity_warnings(lambda: seg.fit(images, masks))) == 1
    assert len(_intensity_warnings(lambda: seg.predict(images))) == 1


def test_float_images_outside_unit_range_warn(rng):
    img = rng.random((32, 32, 3)) * 300.0
    X, _ = sample_pixels([img], [np.zeros((32, 32), int)], n_per_image=5, random_state=0)
    hc = tiny().fit(X)
    caught = _intensity_warnings(lambda: hc.transform(X))
    assert len(caught) == 1 and "outside [0, 1]" in str(caught[0].message)
    assert not _intensity_warnings(lambda: hc.transform_dense(img / 300.0))


# --- pickling -------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["first_conv", "per_channel"])
def test_joblib_round_trip(strategy, rng, tmp_path):
    images, masks = cells(rng, 2, n=2)
    X, _ = sample_pixels(images, masks, n_per_image=30, random_state=0)
    hc = tiny(channel_strategy=strategy, intensity_range=("percentile", 1, 99.8)).fit(X)
    before = hc.transform(X)
    joblib.dump(hc, tmp_path / "hc.joblib")
    loaded = joblib.load(tmp_path / "hc.joblib")
    np.testing.assert_array_equal(loaded.transform(X), before)
    assert loaded.backbone_.in_chans == 2 and loaded.n_channels_in_ == 2


# --- stacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "axes, shape",
    [("ZYX", (4, 6, 7)), ("CZYX", (2, 3, 6, 7)), ("TZCYX", (2, 3, 2, 6, 7)), ("YXZ", (6, 7, 3)),
     ("CYX", (2, 6, 7))],
)
def test_split_and_stack_planes_round_trip(axes, shape, rng):
    stack = rng.integers(0, 1000, shape)
    planes = split_planes(stack, axes)
    n_planes = int(np.prod([n for a, n in zip(axes, shape) if a not in "YXC"]))
    assert len(planes) == n_planes and all(np.shares_memory(p, stack) for p in planes)
    assert planes[0].shape == ((6, 7, 2) if "C" in axes else (6, 7))
    if "C" not in axes:
        np.testing.assert_array_equal(stack_planes(planes, axes, shape), stack)
    else:  # per-plane results have no channels: C is dropped, the other axes keep their order
        first = stack_planes([p[..., 0] for p in planes], axes, shape)
        np.testing.assert_array_equal(first, np.take(stack, 0, axis=axes.index("C")))
    # results with trailing values (e.g. probabilities) keep them last
    proba = stack_planes([np.zeros((6, 7, 5)) for _ in planes], axes, shape)
    assert proba.shape == (*[n for a, n in zip(axes, shape) if a != "C"], 5)


def test_stack_planes_errors():
    planes = split_planes(np.zeros((2, 3, 4, 5)), "TZYX")
    with pytest.raises(ValueError, match="needs shape=stack.shape"):
        stack_planes(planes, "TZYX")
    with pytest.raises(ValueError, match="holds 6 planes but a stack with axes 'ZYX'"):
        stack_planes(planes, "ZYX", shape=(5, 4, 5))
    with pytest.raises(ValueError, match="must contain Y and X"):
        split_planes(np.zeros((2, 3, 4)), "ZYT")
    with pytest.raises(ValueError, match="each letter may appear once"):
        split_planes(np.zeros((2, 3, 4)), "YXY")


def test_segmenting_a_z_stack_plane_by_plane(rng):
    images, masks = cells(rng, 1, n=4)
    stack = np.stack([img[..., 0] for img in images])  # (Z, Y, X) uint16
    labels = np.stack(masks)
    seg = HypercolumnSegmenter(tiny(channel_strategy="replicate", intensity_range=RANGE),
                               n_pixels_per_image=300, random_state=0)
    seg.fit(split_planes(stack[:3], "ZYX"), split_planes(labels[:3], "ZYX"))
    pred = stack_planes(seg.predict(split_planes(stack, "ZYX")), "ZYX")
    assert pred.shape == stack.shape
    assert (pred == labels).mean() > 0.95
