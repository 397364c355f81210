"""Edge-aware (joint bilateral) upsampling of folded score maps: equal to a straightforward
reference, local (windows equal the whole image), and through the segmenter equal to the
classifier on the edge-aware upsampled hypercolumn."""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhyper import GridLocationClassifier, HypercolumnSegmenter, HypercolumnTransformer
from skhyper.heads import EdgeKernel, edge_aware_labels, edge_aware_upsample
from skhyper.heads._edges import EDGE_PARAMS, coarse_sum, edge_aware_upsample_batch, image_guide
from skhyper.metrics import boundary_f_score, foreground_iou

LITE_LAYERS = ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"]


def reference_jbu(scores, guide, out_size, *, radius=EDGE_PARAMS["radius"],
                  sigma_spatial=EDGE_PARAMS["sigma_spatial"],
                  sigma_range=EDGE_PARAMS["sigma_range"]):
    """The definition, one pixel and one cell at a time (numpy, float64).

    Cell means: each image pixel belongs to its nearest cell, ``floor((y + 0.5) * h / L)``.
    Neighbours: the ``2 * radius`` cells per axis from ``floor(y_cell) - radius + 1``.
    """
    s, g = np.asarray(scores, np.float64), np.asarray(guide, np.float64)
    k, h, w = s.shape
    c, H, W = g.shape
    Lh, Lw = out_size
    cy = np.minimum(np.floor((np.arange(H) + 0.5) * h / Lh).astype(int), h - 1)
    cx = np.minimum(np.floor((np.arange(W) + 0.5) * w / Lw).astype(int), w - 1)
    means = np.zeros((c, h, w))
    for i in range(h):
        for j in range(w):
            means[:, i, j] = g[:, cy == i][:, :, cx == j].reshape(c, -1).mean(1)
    out = np.zeros((k, H, W))
    for y in range(H):
        py = (y + 0.5) * h / Lh - 0.5
        for x in range(W):
            px = (x + 0.5) * w / Lw - 0.5
            num, den, taps = np.zeros(k), 0.0, []
            for qy in range(math.floor(py) - radius + 1, math.floor(py) + radius + 1):
                for qx in range(math.floor(px) - radius + 1, math.floor(px) + radius + 1):
                    if 0 <= qy < h and 0 <= qx < w:
                        d2 = np.mean((g[:, y, x] - means[:, qy, qx]) ** 2)
                        ws = math.exp(-((py - qy) ** 2 + (px - qx) ** 2) / (2 * sigma_spatial**2))
                        taps.append((qy, qx, ws, d2))
            for qy, qx, ws, d2 in taps:
                wt = ws * math.exp(-d2 / (2 * sigma_range**2))
                num += wt * s[:, qy, qx]
                den += wt
            out[:, y, x] = num / den
    return out


@pytest.mark.parametrize("shape,cells,out_size", [
    ((19, 23), (3, 4), None),            # odd sizes, non-integer stride
    ((16, 24), (2, 3), None),            # whole cells
    ((13, 17), (2, 2), (16.0, 32.0)),    # a canvas larger than the image (padded patches)
    ((9, 40), (1, 5), None),             # one cell row
    ((23, 33), (13, 9), None),           # pixels on cell centres (float64 rounds them below)
])
def test_edge_aware_equals_reference(shape, cells, out_size):
    rng = np.random.default_rng(sum(shape))
    scores = torch.from_numpy(rng.normal(size=(2, *cells)) * 3)
    guide = torch.from_numpy(rng.random((3, *shape)).astype(np.float32))
    guide[:, :, shape[1] // 2:] += 0.5  # a strong vertical edge, so colour weights matter
    size = shape if out_size is None else out_size
    got = edge_aware_upsample(scores, guide, size)
    # the guide is float32, everything after it float64: agreement to float64 rounding
    np.testing.assert_allclose(got.numpy(), reference_jbu(scores, guide, size), rtol=0,
                               atol=1e-10)


@pytest.mark.parametrize("shape,cells", [((19, 23), (3, 4)), ((97, 131), (7, 9)),
                                         ((23, 33), (13, 9)), ((9, 40), (1, 5)),
                                         ((6, 5), (9, 11)), ((16, 24), (2, 3))])
@pytest.mark.parametrize("n_channels", [1, 3])
def test_batch_equals_per_image(shape, cells, n_channels):
    """The batched, traceable form (the exported network's, and edge_aware_upsample's for
    whole images of up to one band) equals the banded per-image one (explicit rows and
    columns select it)."""
    rng = np.random.default_rng(sum(shape) + n_channels)
    scores = torch.from_numpy(rng.normal(size=(2, 3, *cells)) * 3)
    guide = torch.from_numpy(rng.random((2, n_channels, *shape)).astype(np.float32))
    guide[..., shape[1] // 2:] += 0.5
    got = edge_aware_upsample_batch(scores, guide.double())
    assert got.shape == (2, 3, *shape) and got.dtype == torch.float64
    for i in range(2):
        banded = edge_aware_upsample(scores[i], guide[i], shape, rows=torch.arange(shape[0]),
                                     cols=torch.arange(shape[1]))
        np.testing.assert_allclose(got[i].numpy(), banded.numpy(), rtol=0, atol=1e-10)
        whole = edge_aware_upsample(scores[i], guide[i], shape)  # delegates to the batch
        np.testing.assert_allclose(whole.numpy(), banded.numpy(), rtol=0, atol=1e-10)
    # replicated grey channels weigh as one
    grey = edge_aware_upsample_batch(scores, guide[:, :1].double().expand(-1, 3, -1, -1))
    np.testing.assert_allclose(grey.numpy(), edge_aware_upsample_batch(
        scores, guide[:, :1].double()).numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape,cells", [((19, 23), (3, 4)), ((97, 131), (7, 9)),
                                         ((23, 33), (13, 9)), ((9, 40), (1, 5)),
                                         ((6, 5), (9, 11)), ((64, 48), (8, 6))])
@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_labels_equal_labels_of_full_upsampling(shape, cells, k, dtype):
    """Labels through the box of possible upsampled scores equal the labels of the full
    upsampling; the pixels it computes get the batched form's values. Both run the same
    float operations per pixel; a label may only differ where the full score is within
    rounding of the decision boundary (a tie), so pixels with a margin under 1e-4 of the
    scores' scale are left out (none in practice)."""
    rng = np.random.default_rng(sum(shape) + k)
    scores = torch.from_numpy(rng.normal(size=(k, *cells)) * 3).to(dtype)
    guide = torch.from_numpy(rng.random((3, *shape)).astype(np.float32))
    guide[:, :, shape[1] // 2:] += 0.5
    # the finer layers' part: smooth, so that the coarse map decides most labels
    rest = F.interpolate(torch.from_numpy(rng.normal(size=(1, k, 3, 3))).to(dtype), size=shape,
                         mode="bilinear", align_corners=False)[0]
    full = rest + edge_aware_upsample_batch(scores[None], guide[None].to(dtype))[0]
    total, exact = edge_aware_labels(scores, guide, rest)
    if k == 1:
        want, got, margin = full[0] > 0, total[0] > 0, full[0].abs()
    else:
        want, got = full.argmax(0), total.argmax(0)
        top2 = full.topk(2, dim=0).values
        margin = top2[0] - top2[1]
    clear = margin > 1e-4 * float(full.abs().max())
    assert clear.float().mean() > 0.99
    assert torch.equal(got[clear], want[clear])
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(total[:, exact], full[:, exact], rtol=0,
                               atol=16 * eps * float(full.abs().max()))
    assert 0 < int(exact.sum()) < exact.numel() or min(cells) == 1 or cells[0] > shape[0]


def test_dissimilar_colours_do_not_underflow():
    """Weights are relative to each pixel's closest colour: a pixel unlike every cell (all
    colour weights under float64's range) still gets a convex combination, not NaN."""
    guide = torch.zeros(1, 8, 8)
    guide[0, 3, 3] = 1e3
    scores = torch.arange(4.0, dtype=torch.float64).reshape(1, 2, 2)
    up = edge_aware_upsample(scores, guide, (8, 8), kernel=EdgeKernel(sigma_range=1e-3))
    assert torch.isfinite(up).all()
    # a convex combination of 0..3 (up to float64 rounding of the normalisation)
    assert float(up.min()) >= -1e-12 and float(up.max()) <= 3.0 + 1e-12


def test_window_equals_whole_image():
    """Every quantity is local: a window holding the block plus radius + 1 cells of halo
    (with the whole map's cells it covers) gives the whole image's values."""
    rng = np.random.default_rng(3)
    H, W, h, w = 70, 90, 9, 12  # stride ~7.6
    scores = torch.from_numpy(rng.normal(size=(3, h, w)))
    guide = torch.from_numpy(rng.random((3, H, W)).astype(np.float32))
    whole = edge_aware_upsample(scores, guide, (H, W))
    r0, r1, c0, c1 = 30, 45, 40, 61  # the block
    gy0, gy1, gx0, gx1 = 5, 70, 10, 90  # its window in the image
    cy0, cy1, cx0, cx1 = 0, 9, 1, 12  # the whole map's cells the window holds
    win = edge_aware_upsample(
        scores[:, cy0:cy1, cx0:cx1], guide[:, gy0:gy1, gx0:gx1], (H, W),
        rows=torch.arange(r0, r1), cols=torch.arange(c0, c1), guide_origin=(gy0, gx0),
        map_origin=(cy0, cx0), map_size=(h, w), image_shape=(H, W))
    np.testing.assert_allclose(win.numpy(), whole[:, r0:r1, c0:c1].numpy(), rtol=0, atol=1e-12)
    with pytest.raises(RuntimeError, match="halo"):  # a window too tight for its block
        edge_aware_upsample(
            scores[:, 3:6, 5:8], guide[:, 28:47, 38:63], (H, W), rows=torch.arange(r0, r1),
            cols=torch.arange(c0, c1), guide_origin=(28, 38), map_origin=(3, 5),
            map_size=(h, w), image_shape=(H, W))


def test_coarse_sum_is_the_bilinear_sum_on_the_finest_grid_and_windows_match():
    rng = np.random.default_rng(5)
    maps = [torch.from_numpy(rng.normal(size=(2, h, w))) for h, w in [(5, 6), (19, 23), (10, 12)]]
    t, total = coarse_sum(maps)
    expected = sum(F.interpolate(m[None], size=(19, 23), mode="bilinear",
                                 align_corners=False)[0] for m in maps)
    assert t == 1
    # interpolation weights come from skhyper.features._bilinear.interp_weights, in float32 as the
    # sampled hypercolumn's: positions up to 23 cells carry ~2e-6 of rounding, times values < 5
    np.testing.assert_allclose(total.numpy(), expected.numpy(), rtol=0, atol=1e-5)
    # windows of the three maps (as predict_window holds them): the window of the whole sum,
    # from the same weights (equal to float64 rounding)
    origins, stops = [(0, 1), (4, 8), (1, 3)], [(5, 6), (15, 20), (10, 12)]
    crops = [m[:, a:c, b:d] for m, (a, b), (c, d) in zip(maps, origins, stops)]
    t, win = coarse_sum(crops, [m.shape[1:] for m in maps], origins)
    np.testing.assert_allclose(win.numpy(), total[:, 4:15, 8:20].numpy(), rtol=0, atol=1e-12)
    with pytest.raises(RuntimeError, match="window"):
        coarse_sum([maps[0][:, 3:, 4:], crops[1]], [(5, 6), (19, 23)], [(3, 4), (4, 8)])


def scene(rng, shape):
    H, W = shape
    img = rng.random((H, W, 3)).astype(np.float32) * 0.3
    mask = np.zeros((H, W), dtype=np.int64)
    yy, xx = np.mgrid[:H, :W]
    mask[(yy - 0.5 * H) ** 2 + (xx - 0.45 * W) ** 2 < (0.3 * min(H, W)) ** 2] = 1
    img[mask == 1] += 0.6
    return img, mask


def edge_hypercolumn(seg, img):
    """The edge-aware hypercolumn in float64: coarse maps through the reference, the rest
    bilinear, as the definition (per map, all channels) rather than the folded path."""
    engine = seg.hypercolumns_.engine_.replace(tile_size=None, cache=None)
    (_, maps), = engine.iter_maps(engine.check_images([np.asarray(img)]))
    H, W = img.shape[:2]
    guide = image_guide(np.asarray(img)).numpy()
    coarse = [m.shape[1:] for m, info in zip(maps.values(), engine.feature_info)
              if info["reduction"] >= EDGE_PARAMS["min_stride"]]  # by the layer's stride
    finest = max(coarse, key=lambda s: s[0] * s[1])
    cols = []
    for m, info in zip(maps.values(), engine.feature_info):
        m = m.double()
        if info["reduction"] >= EDGE_PARAMS["min_stride"]:
            # on the finest coarse grid (bilinear), then the reference joint bilateral step
            on_grid = F.interpolate(m[None], size=finest, mode="bilinear",
                                    align_corners=False)[0]
            cols.append(torch.from_numpy(reference_jbu(on_grid.numpy(), guide, (H, W))))
        else:
            cols.append(F.interpolate(m[None], size=(H, W), mode="bilinear",
                                      align_corners=False)[0])
    return torch.cat(cols).permute(1, 2, 0).numpy()


def with_params(fitted_estimator, **params):
    """A copy of a shared fitted estimator with other parameters (the fixture stays as it is)."""
    return copy.deepcopy(fitted_estimator).set_params(**params)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    images, masks = zip(*[scene(rng, s) for s in [(37, 45), (40, 40), (33, 48)]])
    hc = HypercolumnTransformer(layers=LITE_LAYERS, device="cpu")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
    seg = HypercolumnSegmenter(hc, clf, n_pixels_per_image=300, random_state=0).fit(
        list(images), list(masks))
    return seg, images, masks


def test_segmenter_edge_aware_equals_classifier_on_edge_hypercolumn(fitted):
    """Folding commutes with edge-aware upsampling (a per-channel convex combination whose
    weights depend only on the image): the folded scores equal the classifier applied to
    the edge-aware upsampled hypercolumn of every pixel."""
    seg, images, _ = fitted
    assert seg.upsampling == "edge_aware" and seg.prediction_path_ == "folded"
    img = images[0]
    dense = edge_hypercolumn(seg, img)
    expected = seg.classifier_.decision_function(dense.reshape(-1, dense.shape[-1]))
    got = seg.decision_function(img)
    # float64 reference vs folded path: float32 native maps enter both; the folded path sums
    # in float32 while |scores| <= 64 (spacing <= 8e-6 per term, 6 terms)
    np.testing.assert_allclose(got.ravel(), expected, rtol=0, atol=1e-4)
    bilinear = with_params(seg, upsampling="bilinear").decision_function(img)
    assert np.abs(bilinear - got).max() > 1e-2  # the coarse maps did change


def test_edge_aware_grid_equals_grid_on_edge_hypercolumn(fitted):
    """The same for a K x K location grid: cells are blended after their edge-aware
    upsampling, as the grid classifier blends them on the edge-aware hypercolumn."""
    _, images, masks = fitted
    hc = HypercolumnTransformer(layers=LITE_LAYERS, device="cpu", append_location=True)
    grid = GridLocationClassifier(
        make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500)), grid_size=2)
    seg = HypercolumnSegmenter(hc, grid, n_pixels_per_image=300, random_state=0).fit(
        list(images), list(masks))
    img = images[1]
    H, W = img.shape[:2]
    dense = edge_hypercolumn(seg, img)
    u = (np.arange(W) + 0.5) / W
    v = (np.arange(H) + 0.5) / H
    loc = np.stack(np.broadcast_arrays(u[None, :], v[:, None]), -1)
    rows = np.concatenate([dense, loc], -1).reshape(H * W, -1)
    expected = seg.classifier_.decision_function(rows)
    np.testing.assert_allclose(seg.decision_function(img).ravel(), expected, rtol=0, atol=1e-4)


def test_edge_aware_tightens_boundaries(fitted):
    """On held-out scenes with a sharp outline the edge-aware masks hug it better."""
    seg, _, _ = fitted
    rng = np.random.default_rng(7)
    test_images, test_masks = zip(*[scene(rng, s) for s in [(41, 43), (36, 50)]])
    edge = seg.predict(list(test_images))
    flat = with_params(seg, upsampling="bilinear").predict(list(test_images))
    f_edge = boundary_f_score(list(test_masks), edge, tolerance=1, labels=[1])
    f_flat = boundary_f_score(list(test_masks), flat, tolerance=1, labels=[1])
    assert f_edge > f_flat
    assert foreground_iou(list(test_masks), edge) >= foreground_iou(list(test_masks), flat)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_segmenter_labels_are_the_labels_of_its_scores(fitted, n_classes):
    """``predict`` (edge-aware labels through the box of possible scores) gives the labels of
    ``decision_function`` (the full edge-aware upsampling), for a binary and a 3-class head;
    pixels within 1e-4 of a tie are left out (see test_labels_equal_labels_of_full_upsampling)."""
    seg, images, masks = fitted
    if n_classes == 3:
        masks = [np.where((m == 0) & (np.arange(m.shape[1]) > m.shape[1] * 0.7), 2, m)
                 for m in masks]
        seg = HypercolumnSegmenter(seg.hypercolumns, seg.classifier, n_pixels_per_image=300,
                                   random_state=0).fit(list(images), masks)
    rng = np.random.default_rng(11)
    test_images = [scene(rng, s)[0] for s in [(41, 43), (36, 50)]]
    for img in test_images:
        labels, scores = seg.predict(img), seg.decision_function(img)
        if n_classes == 2:
            want, clear = seg.classes_[(scores > 0).astype(int)], np.abs(scores) > 1e-4
        else:
            top2 = np.sort(scores, axis=-1)[..., -2:]
            want, clear = seg.classes_[scores.argmax(-1)], top2[..., 1] - top2[..., 0] > 1e-4
        assert clear.mean() > 0.99 and len(np.unique(want)) == n_classes
        np.testing.assert_array_equal(labels[clear], want[clear])


@pytest.mark.parametrize("shape,cells", [((17, 23), (5, 3)), ((5, 7), (9, 11)), ((1, 9), (1, 2)),
                                         ((64, 64), (8, 8)), ((33, 31), (4, 16))])
def test_cell_means_are_the_means_of_each_cells_pixels(shape, cells):
    """The gathered cell means equal the definition: the mean guide colour of the pixels whose
    nearest cell is the cell (0 for a cell no pixel has, when cells outnumber pixels). Sums of
    a few float64 values in another order: 1e-12."""
    from skhyper.heads._bilateral import _batch_axis, cell_coords, cell_means

    (H, W), (h, w) = shape, cells
    guide = torch.rand(2, 3, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ny = cell_coords(torch.arange(H), h, H, torch.float64)[0]
    nx = cell_coords(torch.arange(W), w, W, torch.float64)[0]
    want = torch.zeros(2, 3, h, w, dtype=torch.float64)
    for q in range(h):
        for r in range(w):
            block = guide[:, :, ny == q][:, :, :, nx == r]
            if block.numel():
                want[:, :, q, r] = block.mean((2, 3))
    axis_y = _batch_axis(h, H, guide.device, guide.dtype, 1, 1.0)[0]
    axis_x = _batch_axis(w, W, guide.device, guide.dtype, 1, 1.0)[0]
    torch.testing.assert_close(cell_means(guide, axis_y, axis_x), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_guide_of_integer_images_equals_the_float_image(dtype):
    """The guide of an 8- or 16-bit image (one transposing conversion, then a division) holds
    the values of ``to_float_image`` bit for bit: every value of the dtype, 1 and 3 channels."""
    from skhyper.features import to_float_image
    from skhyper.heads._edges import image_guide

    v = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)
    for img in (np.stack([v, v[::-1], v], -1).reshape(4, -1, 3), v.reshape(4, -1, 1)):
        img.flags.writeable = False  # as checked images are: no warning from torch
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = image_guide(img)
        assert got.dtype == torch.float32 and got.is_contiguous()
        np.testing.assert_array_equal(got.numpy(), np.moveaxis(to_float_image(img, img.shape[2]),
                                                               -1, 0))


@pytest.mark.parametrize("band", [1, 7, 40, 1 << 19])
def test_banded_path_equals_one_band_and_reference(monkeypatch, band):
    # explicit rows take the banded path (cell sums and taps a band of rows at a time)
    import skhyper.heads._edges as edges

    rng = np.random.default_rng(3)
    shape, cells = (37, 29), (5, 4)
    scores = torch.from_numpy(rng.normal(size=(2, *cells)) * 3)
    guide = torch.from_numpy(rng.random((3, *shape)).astype(np.float32))
    guide[:, :, shape[1] // 2:] += 0.5
    rows, cols = torch.arange(shape[0]), torch.arange(shape[1])
    whole = edge_aware_upsample(scores, guide, shape, rows=rows, cols=cols)
    monkeypatch.setattr(edges, "_BAND_PIXELS", band)  # 1 row, a few rows, every row at once
    banded = edge_aware_upsample(scores, guide, shape, rows=rows, cols=cols)
    assert torch.equal(banded, whole)  # the same operations on the same rows, in order
    np.testing.assert_allclose(banded.numpy(), reference_jbu(scores, guide, shape), rtol=0,
                               atol=1e-10)
