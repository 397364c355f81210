"""One intensity step: :func:`skhyper.features.to_float_image`, its tensor fast path (the guide
of edge-aware upsampling), and the ONNX runtime's torch-free copy, equal bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skhyper.export import prepare_image
from skhyper.features import to_float_image

RANGES = [None, (100, 4000), (0.1, 0.7), ("percentile", 1, 99.8)]
DTYPES = [np.uint8, np.uint16, np.int16, np.float32, np.float64, bool]


def _image(dtype, channels: int, seed: int = 0) -> np.ndarray:
    gen = np.random.default_rng(seed)
    raw = gen.random((9, 11, channels))
    kind = np.dtype(dtype).kind
    if kind == "b":
        return raw > 0.5
    if kind in "iu":
        return (raw * min(5000, np.iinfo(dtype).max)).astype(dtype)
    return raw.astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tensor_fast_path_equals_the_array_path_for_every_value(dtype):
    """8/16-bit without a range: one transposing conversion and one division on the device,
    the same float32 values as the ndarray path for every value of the dtype."""
    v = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)
    for img in (np.stack([v, v[::-1], v], -1).reshape(4, -1, 3), v.reshape(4, -1, 1)):
        img.flags.writeable = False  # as checked images are
        for n in {img.shape[2], 3}:
            got = to_float_image(img, n, as_tensor=True)
            assert got.dtype == torch.float32 and got.is_contiguous()
            assert got.shape == (n, *img.shape[:2])
            np.testing.assert_array_equal(got.numpy(),
                                          np.moveaxis(to_float_image(img, n), -1, 0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rng", RANGES)
def test_tensor_equals_array_for_every_dtype_and_range(dtype, rng):
    img = _image(dtype, 2)
    got = to_float_image(img, 2, rng, as_tensor=True, device="cpu")
    np.testing.assert_array_equal(got.numpy(), np.moveaxis(to_float_image(img, 2, rng), -1, 0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rng", RANGES)
def test_onnx_runtime_copy_equals_to_float_image(dtype, rng):
    """The torch-free copy in skhyper.export._runtime: 8-bit, 16-bit, float and bool images,
    with and without an intensity range, 2 channels, 1 channel replicated, and 2-D."""
    img = _image(dtype, 2)
    np.testing.assert_array_equal(prepare_image(img, 2, rng),
                                  to_float_image(img, 2, rng).transpose(2, 0, 1))
    gray = img[..., :1]
    np.testing.assert_array_equal(prepare_image(gray, 3, rng),
                                  to_float_image(gray, 3, rng).transpose(2, 0, 1))
    np.testing.assert_array_equal(prepare_image(gray[..., 0], 1, rng),
                                  to_float_image(gray, 1, rng).transpose(2, 0, 1))


def test_device_needs_as_tensor():
    with pytest.raises(ValueError, match="'device' parameter of to_float_image is 'cpu'"):
        to_float_image(np.zeros((2, 2, 1), np.uint8), 1, device="cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tensor_fast_path_on_cuda_equals_the_array_path(dtype):
    """On CUDA too: the divisor is a device tensor, not a CPU scalar (which CUDA turns into a
    multiplication by its reciprocal, off by one ulp for some values)."""
    v = np.arange(np.iinfo(dtype).max + 1, dtype=dtype).reshape(4, -1, 1)
    got = to_float_image(v, 1, as_tensor=True, device="cuda")
    assert got.device.type == "cuda"
    np.testing.assert_array_equal(got.cpu().numpy(), np.moveaxis(to_float_image(v, 1), -1, 0))
