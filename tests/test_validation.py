"""Bad input gets a clear error that names the parameter (never a torch traceback)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skhyper import (
    HypercolumnSegmenter,
    HypercolumnTransformer,
    MapCache,
    PixelSet,
    extract_dense,
    sample_pixels,
)
from skhyper._params import resolve_device


@pytest.fixture
def fitted(tiny_net, images, masks):
    X, _ = sample_pixels(images, masks, n_per_image=10, random_state=0)
    return HypercolumnTransformer(tiny_net, device="cpu").fit(X)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((2, 3, 8, 8, 3)), "5 dimensions"),
        ([np.zeros((2, 8, 8, 3))], r"'images\[0\]' parameter must be an image of shape"),
        (np.zeros(5), "1 dimensions"),
    ],
)
def test_wrong_ndim(bad, match):
    with pytest.raises(ValueError, match=match):
        sample_pixels(bad, np.zeros((8, 8), int))


def test_empty_input(masks):
    with pytest.raises(ValueError, match="'images' parameter must hold at least one image"):
        sample_pixels([], [])
    with pytest.raises(ValueError, match="'images' parameter is an empty image"):
        sample_pixels(np.zeros((0, 4, 3)), np.zeros((0, 4)))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_and_inf(value, images, masks):
    bad = images[0].astype(np.float32) / 255
    bad[3, 4, 1] = value
    with pytest.raises(ValueError, match=r"'images\[1\]' parameter contains NaN or infinite"):
        sample_pixels([images[0], bad], masks[:2])
    with pytest.raises(ValueError, match="'images' parameter contains NaN or infinite"):
        extract_dense(bad, torch.nn.Conv2d(3, 2, 1))


def test_mask_shape_mismatch(images, masks):
    with pytest.raises(ValueError, match=r"'masks\[1\]' parameter "
                                         r"has shape \(28, 51\) but its image"):
        sample_pixels(images, [masks[0], masks[1][:-1], masks[2]])
    with pytest.raises(ValueError, match="'masks' parameter has 2 masks but there are 3 images"):
        sample_pixels(images, masks[:2])
    with pytest.raises(ValueError, match=r"'masks\[0\]' parameter holds non-integer labels"):
        sample_pixels(images[:1], [masks[0] + 0.5])


def test_coords_out_of_bounds(images):
    with pytest.raises(ValueError, match="'coords' parameter has pixels outside their image"):
        PixelSet(images, [[0, 37, 0]])


def test_unknown_layer_lists_valid_names(tiny_net, images, masks):
    X, _ = sample_pixels(images, masks, n_per_image=5, random_state=0)
    with pytest.raises(ValueError, match="unknown layers.*'conv9'.*Valid names:.*'conv1'"):
        HypercolumnTransformer(tiny_net, layers=["conv9"], device="cpu").fit(X)


def test_unknown_backbone(images, masks):
    X, _ = sample_pixels(images, masks, n_per_image=5, random_state=0)
    with pytest.raises(ValueError, match="'backbone' parameter got an unknown name 'vgg17'"):
        HypercolumnTransformer("vgg17", weights=None, device="cpu").fit(X)


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu"])
def test_bad_device(device, tiny_net):
    with pytest.raises(ValueError, match="'device' parameter must be 'auto', 'cpu', 'cuda'"):
        HypercolumnTransformer(tiny_net, device=device).fit()


def test_cuda_requested_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'device' parameter is 'cuda' but CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_two_channel_image_without_channel_strategy(fitted, rng):
    two = rng.random((20, 20, 2)).astype(np.float32)
    X, _ = sample_pixels([two], [np.zeros((20, 20), int)], n_per_image=5, random_state=0)
    with pytest.raises(ValueError, match=r"'X.images\[0\]' parameter "
                                         r"has 2 channels.*no channel strategy"):
        fitted.transform(X)
    with pytest.raises(ValueError, match="'images' parameter has 2 channels"):
        fitted.transform_dense(two)


def test_negative_n_per_image(images, masks):
    with pytest.raises(ValueError, match=r"'n_per_image' parameter of sample_pixels must be an "
                                         r"int in the range \[1, inf\) or None. Got -5"):
        sample_pixels(images, masks, n_per_image=-5)


def test_transform_needs_a_pixelset(fitted, images):
    with pytest.raises(TypeError, match="takes a PixelSet as X"):
        fitted.transform(images)
    with pytest.raises(TypeError, match="takes a PixelSet as X"):
        fitted.transform(np.zeros((10, 3)))


def test_bad_pixel_dtype(images, masks):
    with pytest.raises(TypeError, match=r"'images\[0\]' parameter must hold numbers"):
        sample_pixels([np.array([["a", "b"], ["c", "d"]])], [np.zeros((2, 2), int)])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"batch_size": 0}, "'batch_size' parameter of HypercolumnTransformer must be"),
        ({"dtype": "float64"}, "'dtype' parameter of HypercolumnTransformer must be"),
        ({"image_size": -3}, "'image_size' parameter of HypercolumnTransformer must be"),
        ({"layers": "layer1"}, "'layers' parameter of HypercolumnTransformer must be"),
    ],
)
def test_bad_parameters_named_in_sklearn_style(params, match, tiny_net):
    with pytest.raises(ValueError, match=match):
        HypercolumnTransformer(tiny_net, device="cpu", **params).fit()


def test_image_too_small_for_backbone():
    X = PixelSet([np.zeros((3, 3, 3))], [[0, 1, 1]])
    with pytest.raises(ValueError, match="too small for backbone 'vgg16'"):
        HypercolumnTransformer("vgg16", layers=["classifier.1"], weights=None,
                               device="cpu").fit_transform(X)


def test_generator_of_images_asks_for_a_list(images, masks):
    with pytest.raises(TypeError, match=r"'images' parameter must be an image array, a list "
                                        r"of images or a stack .* got a generator\. Pass a list"):
        sample_pixels((img for img in images), masks)


def test_float_view_with_negative_strides_is_read_like_its_copy(images, masks):
    """A mirrored float view (negative strides) is an image like any other, not a torch error."""
    img = np.asarray(images[0], dtype=np.float32) / 255
    seg = HypercolumnSegmenter(
        HypercolumnTransformer("resnet18", layers=["relu"], weights=None, device="cpu"),
        n_pixels_per_image=50, random_state=0).fit([img], [masks[0]])
    mirrored = img[:, ::-1]
    assert mirrored.strides[1] < 0
    np.testing.assert_array_equal(seg.predict(mirrored),
                                  seg.predict(np.ascontiguousarray(mirrored)))


def test_map_cache_budget_must_be_bytes():
    with pytest.raises(TypeError, match="'max_bytes' parameter of MapCache must be a "
                                        "non-negative int .* Got '1GB' instead"):
        MapCache(max_bytes="1GB")


def test_a_non_image_module_is_refused_as_backbone():
    with pytest.raises(ValueError, match=r"'backbone' parameter \('Linear'\) cannot be used as "
                                         r"an image backbone: it fails on an image batch"):
        HypercolumnTransformer(torch.nn.Linear(3, 4), device="cpu").fit()
