"""skhyper.parallel: predict_collection (in-process and on a LocalCluster) and predict_large."""

from __future__ import annotations

import copy
import importlib.util
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError

from skhyper import HypercolumnSegmenter, HypercolumnTransformer, MapCache
from skhyper.datasets import load_horses
from skhyper.exceptions import CollectionError
from skhyper.parallel import (
    SlowWorkerWarning,
    predict_collection,
    predict_large,
    steady_allocator,
)
from skhyper.parallel._common import (
    _cluster_threads,
    _Shipped,
    _threads_here,
    _torch_threads,
    _without_cache,
    _worker_facts,
)
from tests.conftest import make_tiny_net

HAS_DASK = importlib.util.find_spec("dask") is not None
HAS_DISTRIBUTED = importlib.util.find_spec("distributed") is not None
HAS_ZARR = importlib.util.find_spec("zarr") is not None
needs_dask = pytest.mark.skipif(not HAS_DASK, reason="needs dask: pip install 'skhyper[dask]'")
needs_distributed = pytest.mark.skipif(
    not HAS_DISTRIBUTED, reason="needs distributed: pip install 'skhyper[dask]'")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def horses():
    return load_horses(split="train"), load_horses(split="test")


@pytest.fixture(scope="module")
def seg(horses):
    train, _ = horses
    return HypercolumnSegmenter(HypercolumnTransformer(device="cpu"), n_pixels_per_image=200,
                                random_state=0).fit(train.images, train.masks)


@pytest.fixture(scope="module")
def reference(seg, horses):
    return seg.predict(horses[1].images)


@pytest.fixture(scope="module")
def client():
    """Two worker processes with one thread each, for the whole module (startup is slow)."""
    if not HAS_DISTRIBUTED:
        pytest.skip("needs distributed: pip install 'skhyper[dask]'")
    import dask
    from distributed import Client, LocalCluster

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # inherited by the workers
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    env.pop("MALLOC_TRIM_THRESHOLD_", None)  # see skhyper.parallel: slows torch 2-3x
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=None, silence_logs=40) as cluster, \
            Client(cluster) as c:
        yield c


def _tiny_data(n=6, shape=(60, 76)):
    rng = np.random.default_rng(0)
    images = (rng.random((n, *shape, 3)) * 80).astype(np.uint8)
    masks = np.zeros((n, *shape), dtype=np.uint8)
    masks[:, 15:45, 20:60] = 1
    images[masks == 1] += 150
    return images, masks


@pytest.fixture(scope="module")
def tiny():
    """A segmenter on a 3-conv backbone: small receptive field, so chunks have real halos."""
    images, masks = _tiny_data()
    hc = HypercolumnTransformer(make_tiny_net(), layers=["conv1", "conv2", "conv3"],
                                device="cpu")
    return HypercolumnSegmenter(hc, n_pixels_per_image=300, random_state=0).fit(images, masks)


def _big_tiny_image(shape=(301, 411)):
    """A tiny-data image tiled up to ``shape`` (not a multiple of the stride)."""
    images, _ = _tiny_data()
    reps = (-(-shape[0] // images.shape[1]), -(-shape[1] // images.shape[2]), 1)
    return np.ascontiguousarray(np.tile(images[0], reps)[: shape[0], : shape[1]])


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_array_equal(g, e)


# ----------------------------------------------------------------------------- in-process


def test_in_process_equals_predict(seg, horses, reference):
    out = predict_collection(seg, horses[1].images, batch_size=3)
    assert isinstance(out, list)
    _assert_same(out, reference)


def test_in_process_stack_proba(seg, horses):
    same = [im for im in horses[1].images if im.shape == (120, 160, 3)]
    stack = np.stack(same)
    out = predict_collection(seg, stack, method="predict_proba", batch_size=2)
    assert isinstance(out, np.ndarray) and out.shape == (len(same), 120, 160, 2)
    np.testing.assert_allclose(out, seg.predict_proba(stack), rtol=0, atol=1e-6)


def test_in_process_transform_dense_and_threads(seg, horses):
    hc = seg.hypercolumns_
    img = horses[1].images[0]
    before = torch.get_num_threads()
    (dense,) = predict_collection(hc, [img], method="transform_dense", n_threads=1)
    assert torch.get_num_threads() == before  # restored after the task
    # 1 vs 2 torch threads: float32 convolutions sum in another order
    np.testing.assert_allclose(dense, hc.transform_dense(img), rtol=1e-5, atol=1e-4)


def test_in_process_paths(seg, horses, reference, tmp_path):
    paths = []
    for i, im in enumerate(horses[1].images):
        paths.append(tmp_path / f"im{i}.png")
        Image.fromarray(im).save(paths[-1])
    _assert_same(predict_collection(seg, paths), reference)


def test_model_travels_without_cache_contents(seg, horses):
    model = copy.deepcopy(seg)
    cache = MapCache()
    model.hypercolumns_.cache = cache  # as if fitted with this cache
    model.hypercolumns_.engine_ = model.hypercolumns_.engine_.replace(cache=cache)
    model.predict(horses[1].images)
    assert len(cache) == len(horses[1].images) and cache.nbytes > 10**6
    # a MapCache pickles its settings only ...
    assert abs(len(pickle.dumps(model)) - len(pickle.dumps(seg))) < 10**4
    # ... and the copy sent to workers runs without one; the caller's model is untouched
    sent = _without_cache(model)
    assert sent.hypercolumns_.cache is None and model.hypercolumns_.cache is cache
    assert sent.hypercolumns_.engine_.cache is None and model.hypercolumns_.engine_.cache is cache
    assert sent.hypercolumns_.backbone_ is model.hypercolumns_.backbone_  # nothing copied
    _assert_same(predict_collection(model, horses[1].images[:2]), seg.predict(horses[1].images[:2]))
    assert cache.hits == 0  # predict_collection did not use the cache


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"images": []}, ValueError, "at least one image"),
        ({"images": np.zeros((0, 8, 8, 3))}, ValueError, "at least one image"),
        ({"images": np.zeros((8, 8, 3))}, ValueError, "For one image"),
        ({"images": [np.zeros((8, 8, 3)), 3]}, TypeError, r"'images\[1\]' parameter"),
        ({"images": "a.png"}, TypeError, "list of file paths"),
        ({"method": "fit"}, ValueError, "'method' parameter of predict_collection must be one"),
        ({"method": "transform_dense"}, ValueError, "has no such method"),
        ({"batch_size": 0}, ValueError, "'batch_size' parameter"),
        ({"n_threads": 0}, ValueError, "'n_threads' parameter"),
        ({"device": "tpu"}, ValueError, "'device' parameter"),
    ],
)
def test_collection_errors(seg, horses, kwargs, error, match):
    args = {"images": horses[1].images[:2], **kwargs}
    images = args.pop("images")
    with pytest.raises(error, match=match):
        predict_collection(seg, images, **args)


def _with_bad_items(model, tmp_path):
    """Good images with a truncated PNG (index 2) and a 2-channel image (index 5) among them."""
    good, _ = _tiny_data(n=5)
    Image.fromarray(good[0]).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    images = [good[0], good[1], str(tmp_path / "cut.png"), good[2], str(tmp_path / "ok.png"),
              good[3][..., :2], good[4]]
    expected = model.predict([good[0], good[1], good[2], good[0], good[4]])
    return images, [2, 5], expected


def test_collection_one_bad_item_keeps_the_others(tiny, tmp_path):
    images, bad, expected = _with_bad_items(tiny, tmp_path)
    with pytest.raises(CollectionError, match=r"2 of 7 images failed.*cut\.png") as err:
        predict_collection(tiny, images, batch_size=2)
    assert sorted(err.value.failures) == bad and isinstance(err.value, ValueError)
    assert "has 2 channels" in err.value.failures[5]  # the model's own clear message
    assert [i for i, r in enumerate(err.value.results) if r is None] == bad
    _assert_same([r for r in err.value.results if r is not None], expected)
    with pytest.warns(UserWarning, match="2 of 7 images failed"):
        got = predict_collection(tiny, images, batch_size=3, errors="warn")
    assert [i for i, r in enumerate(got) if r is None] == bad
    _assert_same([r for r in got if r is not None], expected)
    with pytest.raises(ValueError, match="'errors' parameter"):
        predict_collection(tiny, images, errors="ignore")


def test_collection_stops_when_every_image_of_the_first_batch_fails(tiny):
    class Broken:
        calls = 0

        def predict(self, images):
            Broken.calls += 1
            raise RuntimeError("broken model")

    images, _ = _tiny_data(n=6)
    with pytest.raises(CollectionError, match="every image of the first batch failed"):
        predict_collection(Broken(), list(images), batch_size=2)
    assert Broken.calls == 3  # the batch, then its two images; no other batch


def test_collection_unfitted():
    with pytest.raises(NotFittedError):
        predict_collection(HypercolumnSegmenter(), [np.zeros((8, 8, 3))])


# ----------------------------------------------------------------------------- cluster


@pytest.mark.slow
@needs_distributed
def test_cluster_equals_predict(seg, horses, reference, client):
    out = predict_collection(seg, horses[1].images, client=client, batch_size=3)
    _assert_same(out, reference)


@pytest.mark.slow
@needs_distributed
def test_cluster_paths_and_proba(seg, horses, client, tmp_path):
    paths = []
    for i, im in enumerate(horses[1].images):
        paths.append(str(tmp_path / f"im{i}.png"))
        Image.fromarray(im).save(paths[-1])
    out = predict_collection(seg, paths, client=client, method="predict_proba", batch_size=2)
    for got, expected in zip(out, seg.predict_proba(horses[1].images)):  # 1 vs 2 torch threads
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.slow
@needs_distributed
def test_cluster_dask_stack_and_futures(seg, horses, client):
    import dask.array as da

    same = np.stack([im for im in horses[1].images if im.shape == (120, 160, 3)])
    expected = seg.predict(same)
    stack = da.from_array(same, chunks=(1, 120, 160, 3))
    np.testing.assert_array_equal(predict_collection(seg, stack, client=client), expected)
    lazy = predict_collection(seg, stack, client=client, compute=False, batch_size=2)
    assert isinstance(lazy, da.Array) and lazy.shape == expected.shape
    np.testing.assert_array_equal(client.compute(lazy).result(), expected)
    futures = predict_collection(seg, list(same), client=client, compute=False)
    _assert_same(client.gather(futures), list(expected))


@pytest.mark.slow
@needs_distributed
def test_cluster_threads_per_worker(client, seg):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowWorkerWarning)  # the fixture's workers are tuned
        threads = _cluster_threads(client, None, seg, None)
    assert len(threads) == 2
    cores = len(os.sched_getaffinity(0))
    assert set(threads.values()) == {max(1, cores // 2)}  # 2 single-thread workers per host

    def probe(spec):
        with _torch_threads(_threads_here(spec)):
            return torch.get_num_threads()

    assert client.submit(probe, threads, pure=False).result() == max(1, cores // 2)
    assert client.submit(probe, 1, pure=False).result() == 1


class _FakeClient:
    """Two single-thread workers on one 4-core host, with dask's default malloc setting (and
    ``steady``: the threshold steady_allocator set on them)."""

    def __init__(self, steady=None):
        self.steady = steady

    def run(self, fn):
        return {"tcp://a:1": [4, "65536", self.steady], "tcp://a:2": [4, "65536", self.steady]}

    def scheduler_info(self, n_workers=-1):
        return {"workers": {addr: {"host": "a", "nthreads": 1}
                            for addr in ("tcp://a:1", "tcp://a:2")}}


def test_cluster_threads_and_slow_worker_warning(seg):
    with pytest.warns(SlowWorkerWarning, match="MALLOC_TRIM_THRESHOLD_=65536"):
        threads = _cluster_threads(_FakeClient(), None, seg, None)
    assert threads == {"tcp://a:1": 2, "tcp://a:2": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowWorkerWarning)
        assert _cluster_threads(_FakeClient(), 3, None, None) == 3  # not a skhyper model
        # steady_allocator on the workers overrides the nanny's trim threshold: no warning
        assert _cluster_threads(_FakeClient(steady=2**30), 3, seg, None) == 3


@pytest.mark.slow
@needs_distributed
def test_steady_allocator_runs_on_the_workers(client):
    if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
        pytest.skip("mallopt thresholds are glibc's (Linux)")
    assert all(f[2] is None for f in client.run(_worker_facts).values())
    assert set(client.run(steady_allocator).values()) == {True}
    assert {f[2] for f in client.run(_worker_facts).values()} == {2**30}


@pytest.mark.slow
@needs_distributed
def test_cluster_errors_raise_on_the_client(seg, client, tmp_path):
    missing = str(tmp_path / "missing.png")
    with pytest.raises(CollectionError, match="FileNotFoundError") as err:
        predict_collection(seg, [missing], client=client)
    assert missing in str(err.value) and err.value.results == [None]


@pytest.mark.slow
@needs_distributed
def test_cluster_one_bad_item_keeps_the_others(tiny, client, tmp_path):
    images, bad, expected = _with_bad_items(tiny, tmp_path)
    with pytest.raises(CollectionError) as err:
        predict_collection(tiny, images, client=client, batch_size=2)
    assert sorted(err.value.failures) == bad
    _assert_same([r for r in err.value.results if r is not None], expected)


# ----------------------------------------------------------------------------- huge images


@needs_dask
def test_large_equals_whole_horse(seg, horses):
    """700 x 900 (not a multiple of the stride 32), default backbone, uneven last chunks."""
    img = np.asarray(Image.fromarray(horses[1].images[0]).resize((900, 700), Image.BILINEAR))
    labels = predict_large(seg, img, chunks=(352, 448))
    assert labels.chunks == ((352, 348), (448, 448, 4))
    np.testing.assert_array_equal(labels.compute(scheduler="threads"), seg.predict(img))
    scores = predict_large(seg, img, method="decision_function", chunks=(352, 448))
    scores = scores.compute(scheduler="threads")
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, seg.decision_function(img), rtol=0, atol=1e-4)


@needs_dask
@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function"])
def test_large_equals_whole_many_windows(tiny, method):
    img = _big_tiny_image()
    got = predict_large(tiny, img, method=method, chunks=64).compute(scheduler="threads")
    expected = getattr(tiny, method)(img)
    assert got.shape == expected.shape
    if method == "predict":
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=0, atol=_folded_atol(tiny))


def _folded_atol(seg):
    """How far whole-image folded scores may lie from predict_large's float64 ones.

    The whole-image path upsamples and sums the per-map score maps in float32 while their
    magnitudes stay below 64 (skhyper.heads.predict_dense): each of the (maps + bias) terms and
    each bilinear weight rounds at up to 64 * eps32 = 7.6e-6. Twice that per term. (Measured:
    2.4e-5 at scores ~8.6 with 3 maps, bound 7.6e-5; probabilities shrink it further.)
    """
    n_terms = len(seg.folded_.blocks) + 1
    return 2 * n_terms * 64 * float(np.finfo(np.float32).eps)


@needs_dask
def test_large_classifier_that_does_not_fold_and_locations():
    images, masks = _tiny_data()
    hc = HypercolumnTransformer(make_tiny_net(), layers=["conv2", "conv3"], device="cpu",
                                append_location=True)
    rf = HypercolumnSegmenter(hc, RandomForestClassifier(n_estimators=5, random_state=0),
                              n_pixels_per_image=300, random_state=0, chunk_pixels=3000)
    rf.fit(images, masks)
    assert rf.prediction_path_ == "chunked"
    img = _big_tiny_image((150, 170))
    np.testing.assert_array_equal(predict_large(rf, img, chunks=48).compute(scheduler="threads"),
                                  rf.predict(img))
    proba = predict_large(rf, img, method="predict_proba", chunks=48)
    np.testing.assert_allclose(proba.compute(scheduler="threads"), rf.predict_proba(img),
                               atol=1e-12)
    lin = HypercolumnSegmenter(hc, n_pixels_per_image=300, random_state=0).fit(images, masks)
    assert lin.folded_.location is not None
    np.testing.assert_allclose(
        predict_large(lin, img, method="decision_function", chunks=48).compute(scheduler="sync"),
        lin.decision_function(img), rtol=0, atol=1e-5)
    dense = predict_large(lin.hypercolumns_, img, method="transform_dense", chunks=(64, 96))
    np.testing.assert_allclose(dense.compute(scheduler="sync"),
                               lin.hypercolumns_.transform_dense(img),
                               rtol=0, atol=1e-5)


@needs_dask
@pytest.mark.skipif(not HAS_ZARR, reason="needs zarr (optional)")
def test_large_from_zarr_to_zarr(tiny, tmp_path):
    import zarr

    img = _big_tiny_image()
    z = zarr.open_array(str(tmp_path / "image.zarr"), mode="w", shape=img.shape,
                        chunks=(100, 100, 3), dtype=img.dtype)
    z[:] = img
    labels = predict_large(tiny, zarr.open_array(str(tmp_path / "image.zarr"), mode="r"),
                           chunks=128)
    labels.to_zarr(str(tmp_path / "labels.zarr"), compute=False).compute(scheduler="threads")
    out = zarr.open_array(str(tmp_path / "labels.zarr"), mode="r")[:]
    np.testing.assert_array_equal(out, tiny.predict(img))


@pytest.mark.slow
@needs_distributed
@pytest.mark.parametrize("scatter", [True, False])
def test_large_on_cluster(tiny, client, scatter):
    """The model scattered to the workers, or one key of the graph that workers pass around
    while they run it (it travels as bytes pickled once, never as the live model)."""
    img = _big_tiny_image()
    labels = predict_large(tiny, img, chunks=64, client=client if scatter else None)
    np.testing.assert_array_equal(client.compute(labels).result(), tiny.predict(img))


def test_shipped_model_pickles_once(tiny):
    holder = _Shipped(tiny)
    blob = pickle.dumps(holder)
    twin = pickle.loads(blob)
    assert twin._model is None  # unpickled lazily, once per process
    model = twin.get()
    assert model is twin.get() and model is not tiny
    assert pickle.dumps(twin) == blob  # copies of a copy send the same bytes
    np.testing.assert_array_equal(model.predict(_tiny_data()[0][0]),
                                  tiny.predict(_tiny_data()[0][0]))


@needs_dask
def test_large_errors(tiny, seg):
    img = _big_tiny_image((80, 90))
    with pytest.raises(ValueError, match="'chunks' parameter of predict_large"):
        predict_large(tiny, img, chunks=0)
    with pytest.raises(ValueError, match="one image"):
        predict_large(tiny, img[None])
    with pytest.raises(TypeError, match="must be a dask array, a zarr array"):
        predict_large(tiny, img.tolist())
    with pytest.raises(ValueError, match="'method' parameter of predict_large"):
        predict_large(tiny, img, method="transform")
    with pytest.raises(ValueError, match="has no such method"):
        predict_large(tiny.hypercolumns_, img, method="predict")
    with pytest.raises(NotFittedError):
        predict_large(HypercolumnSegmenter(), img)
    with pytest.raises(TypeError, match="needs a fitted HypercolumnSegmenter"):
        predict_large(tiny.classifier_, img)
    resized = copy.deepcopy(tiny)
    resized.hypercolumns_.image_size = 64  # as if fitted with image_size=64
    resized.hypercolumns_.engine_.image_size = 64
    with pytest.raises(ValueError, match="image_size"):
        predict_large(resized, img)
    multiscale = HypercolumnTransformer(make_tiny_net(), layers=["conv2"], device="cpu",
                                        scales=(1.0, 0.5)).fit()
    with pytest.raises(ValueError, match="multi-scale"):
        predict_large(multiscale, img, method="transform_dense")
    pooled = HypercolumnTransformer(make_tiny_net(), layers=["conv2", "fc"], device="cpu").fit()
    with pytest.raises(ValueError, match="cannot chunk layers"):
        predict_large(pooled, img, method="transform_dense")
    with pytest.raises(ValueError):  # 5 channels on an RGB backbone
        predict_large(tiny, np.zeros((80, 90, 5), dtype=np.uint8))
