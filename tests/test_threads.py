"""One fitted model, many threads: concurrent calls return exactly the sequential results.

Before the feature engine, layer capture registered and removed hooks on the shared modules at
every call, so concurrent calls raised ("layer 'layer1' ran more than once", "did not run") or
mixed up maps. These tests run 4 threads x 3 calls that start together (a barrier) on one
fitted model and compare every result with the sequential one, exactly: the same arithmetic runs
on the same inputs, so the outputs must be bitwise equal.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from skhyper import (
    HypercolumnKeypointLocator,
    HypercolumnSegmenter,
    HypercolumnTransformer,
    MapCache,
    sample_pixels,
)

N_THREADS, N_CALLS = 4, 3


def _images(n, rng, sizes=((96, 120), (40, 40), (144, 112))):
    """Bright boxes on a dark ground, of several sizes (some under 64 px: the case whose race
    was once reported as "too small")."""
    images, masks = [], []
    for k in range(n):
        h, w = sizes[k % len(sizes)]
        img = (rng.random((h, w, 3)) * 0.3).astype(np.float32)
        m = np.zeros((h, w), dtype=np.int64)
        m[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
        img[m == 1] += 0.6
        images.append(img)
        masks.append(m)
    return images, masks


def _hammer(call, inputs):
    """Run ``call(x)`` for every input from ``N_THREADS`` threads started together; results in
    the order of ``inputs``."""
    barrier = threading.Barrier(N_THREADS)
    jobs = [inputs[k % len(inputs)] for k in range(N_THREADS * N_CALLS)]

    def worker(chunk):
        barrier.wait()
        return [call(x) for x in chunk]

    chunks = [jobs[t::N_THREADS] for t in range(N_THREADS)]
    with ThreadPoolExecutor(N_THREADS) as pool:
        per_thread = list(pool.map(worker, chunks))
    out = [None] * len(jobs)
    for t, results in enumerate(per_thread):
        for j, r in enumerate(results):
            out[t + j * N_THREADS] = r
    return jobs, out


def _assert_same(a, b):
    if isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a, b)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return _images(6, rng)


@pytest.fixture(scope="module")
def segmenter(data):
    images, masks = data
    # the default backbone (bundled weights): its many small ops interleave threads readily
    hc = HypercolumnTransformer(layers=[0, 1, 2], device="cpu", tile_size=96)
    return HypercolumnSegmenter(hc, n_pixels_per_image=150, random_state=0).fit(images, masks)


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_segmenter_concurrent_equals_sequential(segmenter, data, method):
    images, _ = data
    call = getattr(segmenter, method)
    inputs = [images[:3], images[3:], [images[1]]]  # lists: batched and tiled (144 > 96) images
    jobs, got = _hammer(call, inputs)
    for x, y in zip(jobs, got):
        _assert_same(y, call(x))
    assert segmenter.prediction_path_ == "folded"


def test_chunked_segmenter_concurrent_equals_sequential(data):
    from sklearn.ensemble import RandomForestClassifier

    images, masks = data
    hc = HypercolumnTransformer(layers=[0, 1, 2], device="cpu")
    seg = HypercolumnSegmenter(hc, RandomForestClassifier(n_estimators=5, random_state=0),
                               n_pixels_per_image=100, random_state=0).fit(images, masks)
    assert seg.prediction_path_ == "chunked"
    jobs, got = _hammer(seg.predict_proba, [images[:2], images[2:4]])
    for x, y in zip(jobs, got):
        _assert_same(y, seg.predict_proba(x))


@pytest.mark.parametrize("cache", [False, True])
def test_transformer_transform_concurrent_equals_sequential(data, cache):
    images, masks = data
    hc = HypercolumnTransformer(layers=[1, 3, "global_pool"], device="cpu", tile_size=None,
                                cache=MapCache() if cache else None).fit()
    sets = [sample_pixels(images, masks, n_per_image=50, random_state=s)[0] for s in range(3)]
    jobs, got = _hammer(hc.transform, sets)  # with a cache: concurrent misses fill it
    for x, y in zip(jobs, got):
        _assert_same(y, hc.transform(x))
    if cache:
        assert len(hc.cache) == len(images)
    dense = hc.transform_dense(images[0])
    _, got_dense = _hammer(hc.transform_dense, [images[0]])
    for y in got_dense:
        _assert_same(y, dense)


def test_keypoint_locator_concurrent_equals_sequential():
    rng = np.random.default_rng(0)
    images = (rng.random((6, 96, 96, 3)) * 60).astype(np.uint8)
    keypoints = rng.uniform(24, 72, (6, 2, 2))
    for img, kp in zip(images, keypoints):
        x, y = kp[0].round().astype(int)
        img[y - 2 : y + 3, x - 2 : x + 3] = 255
    loc = HypercolumnKeypointLocator(
        HypercolumnTransformer(layers=[0, 1, 2], device="cpu"),
        grid_size=2, frame_size=64, random_state=0,
    ).fit(images, keypoints)
    inputs = [images[:2], images[2:5], images[5:]]
    jobs, got = _hammer(loc.predict, inputs)
    for x, y in zip(jobs, got):
        _assert_same(y, loc.predict(x))


def test_concurrent_calls_never_serialize_on_a_lock(segmenter, data):
    """Two forward passes are in flight at once: a hook holds the first thread inside the
    backbone until the second thread has entered it too (with a lock this would time out)."""
    images, _ = data
    engine = segmenter.hypercolumns_.engine_.replace(cache=None)
    inside = threading.Barrier(2, timeout=20)
    module = dict(engine.backbone.model.named_modules())[engine.layers[0]]

    def meet(mod, args, out):
        inside.wait()

    handle = module.register_forward_hook(meet)
    try:
        checked = engine.check_images(images[:1])
        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(lambda: list(engine.iter_maps(checked))) for _ in range(2)]
            maps = [r.result(timeout=60) for r in runs]
    finally:
        handle.remove()
    for name in engine.map_names:
        assert torch.equal(maps[0][0][1][name], maps[1][0][1][name])
