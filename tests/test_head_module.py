"""The one head module: its geometry equals the definitions, its sampled mode is differentiable
and equals the dense path, windows of grid and edge-aware models equal whole images, and
predict, predict_large and the exported network share it."""

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from skhyper import GridLocationClassifier, HypercolumnSegmenter, HypercolumnTransformer
from skhyper.features._bilinear import interp_weights
from skhyper.heads import FoldedGrid, FoldedHead, HeadModule, Window
from skhyper.heads._gather import (
    axis_locations_t,
    bilinear_axis,
    cell_axis,
    gather_points,
    gather_window,
)
from skhyper.location import axis_cell_weights, axis_locations

needs_dask = pytest.mark.skipif(importlib.util.find_spec("dask") is None, reason="needs dask")


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("h", "w", "H", "W"), [(5, 7, 37, 41), (3, 3, 3, 3), (1, 4, 9, 30),
                                                (12, 9, 47, 35)])
def test_gather_is_f_interpolate(dtype, h, w, H, W):
    """The one bilinear read of whole images is F.interpolate's (bilinear, align_corners=False):
    its weights computed in the map's dtype as F.interpolate's; the values differ only by the
    order of the two 1-D combinations (a few ulps)."""
    m = torch.randn(3, h, w, dtype=dtype, generator=torch.Generator().manual_seed(0))
    rows = bilinear_axis(torch.arange(H), h, H, dtype=dtype)
    cols = bilinear_axis(torch.arange(W), w, W, dtype=dtype)
    got = gather_window(m, rows, cols)
    ref = F.interpolate(m[None], size=(H, W), mode="bilinear", align_corners=False)[0]
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(got, ref, rtol=0, atol=8 * eps * float(m.abs().max()))
    # float32: the neighbours and weights of the hypercolumn's own reader, exactly
    for got_t, ref_t in zip(bilinear_axis(torch.arange(H), h, H), interp_weights(
            torch.arange(H), h, H)):
        assert torch.equal(got_t, ref_t)


def test_window_is_the_whole_image_read_at_an_offset():
    """A window of a map (offset cells), read with the whole map's weights == the whole read."""
    m = torch.randn(2, 11, 13, dtype=torch.float64)
    H, W = 88, 104
    rows, cols = bilinear_axis(torch.arange(H), 11, H), bilinear_axis(torch.arange(W), 13, W)
    whole = gather_window(m, rows, cols)
    r0, r1, c0, c1, oy, ox = 30, 61, 17, 70, 3, 1
    part = m[:, oy:, ox:]
    rows = bilinear_axis(torch.arange(r0, r1), 11, H, oy)
    cols = bilinear_axis(torch.arange(c0, c1), 13, W, ox)
    assert torch.equal(gather_window(part, rows, cols), whole[:, r0:r1, c0:c1])
    pr, pc = torch.tensor([r0, 40, r1 - 1]), torch.tensor([c0, 55, c1 - 1])
    pts = gather_points(m, bilinear_axis(pr, 11, H), bilinear_axis(pc, 13, W))
    assert torch.equal(pts, whole[:, pr, pc])


def test_locations_and_cells_are_the_geometry_module():
    pos = torch.arange(37)
    for lo, hi in [(0.0, 37.0), (5.5, 20.0)]:
        np.testing.assert_array_equal(axis_locations_t(pos, lo, hi).numpy(),
                                      axis_locations(37, lo, hi))
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    for K in (1, 2, 3, 4):
        j0, j1, w0, w1 = axis_cell_weights(t.numpy(), K)
        ref = np.zeros((K, len(t)))
        np.add.at(ref, (j0, np.arange(len(t))), w0)
        np.add.at(ref, (j1, np.arange(len(t))), w1)
        np.testing.assert_allclose(cell_axis(t, K, torch.float64).numpy(), ref, rtol=0,
                                   atol=1e-15)


# ----------------------------------------------------------------------------- sampled mode


def _heads(rng, chans=(3, 2), k=2):
    plain = FoldedHead([rng.normal(size=(c, k)) for c in chans], rng.normal(size=k),
                       np.arange(k), "softmax", rng.normal(size=(2, k)))
    K = 3
    grid = FoldedGrid([rng.normal(size=(c, K * K * k)) for c in chans],
                      rng.normal(size=K * K * k), np.arange(k), "softmax", grid_size=K)
    info = [{"name": f"m{i}", "reduction": r} for i, r in enumerate((2.0, 4.0))]
    return {"plain": plain, "grid": grid}, info


@pytest.mark.parametrize("kind", ["plain", "grid"])
def test_sampled_mode_passes_gradcheck(kind):
    rng = np.random.default_rng(0)
    heads, info = _heads(rng)
    module = HeadModule(heads[kind], info)
    module.requires_grad_()
    maps = [torch.randn(3, 5, 6, dtype=torch.float64, requires_grad=True),
            torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)]
    rows, cols, shape, frame = [0, 4, 7, 9], [1, 3, 10, 11], (10, 12), (1.0, 0.5, 11.0, 9.0)
    names = [n for n, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]
    assert len(params) == (4 if kind == "plain" else 3)  # 2 weights, bias (, location)

    def f(m0, m1, *ps):
        return _sample_with(module, names, ps, [m0, m1], rows, cols, shape, frame)

    assert torch.autograd.gradcheck(f, (*maps, *params), eps=1e-6, atol=1e-6)


def _sample_with(module, names, params, maps, rows, cols, shape, frame):
    """module.sample with its parameters replaced (functional_call of a method)."""
    return torch.func.functional_call(
        _Sampler(module), {f"m.{n}": p for n, p in zip(names, params)},
        args=(maps, rows, cols, shape, frame))


class _Sampler(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, maps, rows, cols, shape, frame):
        return self.m.sample(maps, rows, cols, shape, frame)


@pytest.mark.parametrize("kind", ["plain", "grid"])
def test_sampled_equals_dense_at_the_pixels(kind):
    rng = np.random.default_rng(1)
    heads, info = _heads(rng)
    module = HeadModule(heads[kind], info)
    maps = [torch.randn(3, 9, 11, dtype=torch.float64), torch.randn(2, 5, 6, dtype=torch.float64)]
    shape, frame = (35, 43), (3.0, 2.0, 40.0, 30.0)
    dense = module.scores(module.project([m[None] for m in maps]), Window.whole(shape),
                          frame=frame, dtype=torch.float64)[0]
    rows, cols = rng.integers(0, 35, 200), rng.integers(0, 43, 200)
    got = module.sample(maps, rows, cols, shape, frame)
    torch.testing.assert_close(got, dense[:, rows, cols], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- windows == whole


def _data(n=4, shape=(96, 112)):
    rng = np.random.default_rng(0)
    images = (rng.random((n, *shape, 3)) * 80).astype(np.uint8)
    masks = np.zeros((n, *shape), dtype=np.uint8)
    masks[:, 20:70, 25:90] = 1
    images[masks == 1] += 150
    return images, masks


_FITTED = {}


def _segmenter(kind, upsampling):
    """Fitted once per module run (never changed by a test)."""
    if (kind, upsampling) not in _FITTED:
        _FITTED[kind, upsampling] = _fit(kind, upsampling)
    return _FITTED[kind, upsampling]


def _fit(kind, upsampling):
    hc = HypercolumnTransformer("resnet18", layers=["relu", "layer1", "layer2"], weights=None,
                                device="cpu", append_location=kind == "grid")
    clf = GridLocationClassifier(LogisticRegression(C=0.1), 3) if kind == "grid" else None
    images, masks = _data()
    seg = HypercolumnSegmenter(hc, clf, upsampling=upsampling, n_pixels_per_image=300,
                               random_state=0)
    return seg.fit(images, masks)


def _big_image(shape=(230, 250)):
    images, _ = _data()
    return np.ascontiguousarray(np.tile(images[0], (3, 3, 1))[: shape[0], : shape[1]])


@needs_dask
@pytest.mark.parametrize("upsampling", ["bilinear", "edge_aware"])
@pytest.mark.parametrize("kind", ["plain", "grid"])
def test_large_equals_whole_for_plain_and_grid_models(kind, upsampling, recwarn):
    from skhyper.parallel import predict_large

    seg = _segmenter(kind, upsampling)
    assert isinstance(seg.folded_, FoldedGrid) == (kind == "grid")
    assert any(HeadModule(seg.folded_, seg.hypercolumns_.engine_.feature_info,
                          upsampling=upsampling).coarse) == (upsampling == "edge_aware")
    img = _big_image()
    labels = predict_large(seg, img, chunks=64)
    assert len(labels.chunks[0]) > 2 and len(labels.chunks[1]) > 2  # windows smaller
    np.testing.assert_array_equal(labels.compute(scheduler="sync"), seg.predict(img))
    proba = predict_large(seg, img, method="predict_proba", chunks=(64, 96))
    # windows run in float64, whole images in float32 while scores stay below 64: float32
    # rounding of a few terms (see tests/test_parallel.py::_folded_atol)
    np.testing.assert_allclose(proba.compute(scheduler="sync"), seg.predict_proba(img),
                               rtol=0, atol=1e-4)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


# ----------------------------------------------------------------------------- one module


def test_predict_windows_and_export_share_the_head_module(monkeypatch):
    pytest.importorskip("dask")
    from skhyper.export import to_torch
    from skhyper.parallel import predict_large

    seg = _segmenter("grid", "edge_aware")
    calls = []
    original = HeadModule.scores

    def spy(self, *args, **kwargs):
        calls.append(type(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(HeadModule, "scores", spy)
    img = _big_image((120, 130))
    seg.predict(img)
    assert calls, "predict_dense does not use HeadModule"
    calls.clear()
    labels = predict_large(seg, img, chunks=64)
    labels.compute(scheduler="sync")
    assert len(calls) == labels.npartitions > 1, "the window path does not use HeadModule"
    calls.clear()
    net = to_torch(seg)
    assert isinstance(net.head, HeadModule)
    with torch.no_grad():
        net(torch.rand(1, 3, 120, 130))
    assert calls, "the exported network does not use HeadModule"
