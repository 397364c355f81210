"""Sampled hypercolumns equal the dense (upsampled and concatenated) hypercolumn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skhyper import build_backbone, extract_dense, extract_hypercolumns, grid_pixels
from skhyper.features import build_engine, sample_maps
from skhyper.features._backbone import resolve_layers
from skhyper.sampling import PixelSet, sample_pixels

# (backbone, layers): every family, each with a fully connected / pooled 1x1 layer.
FAMILIES = [
    ("vgg16", ["features.3", "features.15", "features.29", "classifier.4"]),
    ("resnet18", ["relu", "layer1", "layer2", "layer3", "layer4", "fc"]),
    ("resnet50", ["layer1", "layer3", "avgpool"]),
    ("efficientnet_lite0", [0, 1, 2, 3, 4, "global_pool"]),
    ("timm:resnet18", ["act1", "layer2", "layer4", "fc"]),
]


EPS32 = float(np.finfo(np.float32).eps)


def reference_dense(bb, names, image, image_size=None, *, tolerance=False):
    """The definition: upsample every native map to the image, concatenate (NCHW, F.interpolate).

    ``tolerance``: also return, per feature, how far another forward pass's sampled rows may
    lie from it (:func:`_bilinear_atol` plus :func:`_forward_atol`).
    """
    engine = build_engine(bb, layers=names, device="cpu", image_size=image_size, tile_size=None)
    (_, maps), = engine.iter_maps(engine.check_images([image]))
    h, w = image.shape[:2]
    up = [
        F.interpolate(m[None].contiguous(), size=(h, w), mode="bilinear", align_corners=False)
        for m in maps.values()
    ]
    ref = torch.cat(up, 1)[0].permute(1, 2, 0).numpy()
    return (ref, _bilinear_atol(maps) + _forward_atol(maps)) if tolerance else ref


def _forward_atol(maps):
    """Per feature, how far two forward passes of one image may differ: 1e-5 of each map's
    magnitude. Float32 convolutions are not bit-reproducible between passes (reductions split
    across threads in another order: ~ eps32 * sqrt(terms) relative per layer, compounded over
    depth); measured on a busy 2-core machine: 2.9e-5 in resnet50's pooled vector of magnitude
    ~10."""
    return np.concatenate([np.full(m.shape[0], 1e-5 * float(m.abs().max()))
                           for m in maps.values()])


def _bilinear_atol(maps):
    """Per feature, the float32 bound on how far two correct bilinear reads may differ.

    F.interpolate and sample_maps each compute the source coordinate ``(x + 0.5) * scale -
    0.5`` in float32 (one of them may fuse the multiply-add, depending on the CPU's vector
    kernels), so a coordinate -- and the interpolation weight -- may differ by ~2 eps32 *
    |coordinate| <= 2 eps32 * max(h, w) of the map; the value then differs by that times the
    difference of two neighbours, at most the map's range. Twice that bound, per map.
    (Measured on an AVX-512 CPU: 1.1e-4 at activations ~55 in efficientnet_lite0's stride-2
    map, within its bound 1.9e-3; a real error -- a shifted map, a wrong neighbour -- is of the
    order of the range itself.)
    """
    return np.concatenate([
        np.full(m.shape[0], 4 * EPS32 * max(m.shape[1:]) * float(m.max() - m.min()))
        for m in maps.values()
    ])


def assert_close_per_feature(actual, desired, atol, rtol):
    """``|actual - desired| <= max(atol_feature, 1e-5) + rtol |desired|`` for every value."""
    bound = np.maximum(atol, 1e-5) + rtol * np.abs(desired)
    excess = np.abs(actual - desired) - bound
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess[worst] <= 0, (
        f"{int((excess > 0).sum())} values out of tolerance; worst at {worst}: "
        f"{actual[worst]} vs {desired[worst]} (bound {bound[worst]})"
    )


@pytest.fixture(scope="module")
def odd_image():
    return (np.random.default_rng(1).random((97, 131, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("name,layers", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_sampled_rows_equal_dense_hypercolumn(name, layers, odd_image):
    weights = "imagenet" if name == "efficientnet_lite0" else None
    bb = build_backbone(name, weights=weights)
    names = [d["name"] for d in resolve_layers(bb, layers)]
    H, W = odd_image.shape[:2]

    # The claim is about the sampling arithmetic: compare over the SAME native maps (one
    # forward pass), the engine's bilinear reads against F.interpolate of every map.
    engine = build_engine(bb, layers=names, device="cpu", tile_size=None)
    (_, maps), = engine.iter_maps(engine.check_images([odd_image]))
    ref = torch.cat([F.interpolate(m[None].contiguous(), size=(H, W), mode="bilinear",
                                   align_corners=False) for m in maps.values()], 1)
    ref = ref[0].permute(1, 2, 0).numpy()
    atol = _bilinear_atol(maps)
    rr, cc = np.mgrid[0:H, 0:W]  # every pixel of the odd-sized image, borders in particular
    every = engine.fill(maps, torch.from_numpy(rr.ravel()), torch.from_numpy(cc.ravel()),
                        (H, W), np.empty((H * W, engine.n_features), np.float32))
    assert_close_per_feature(every.reshape(H, W, -1), ref, atol, 1e-6)

    rng = np.random.default_rng(0)
    coords = np.column_stack(
        [np.zeros(300, int), rng.integers(0, 97, 300), rng.integers(0, 131, 300)]
    )
    coords[:4, 1:] = [[0, 0], [96, 130], [0, 130], [96, 0]]
    rows = engine.sample(PixelSet(engine.check_images([odd_image]), coords))
    assert_close_per_feature(rows, ref[coords[:, 1], coords[:, 2]], atol, 1e-6)

    # End to end, the public functions run their own forward passes (see _forward_atol).
    forward = _forward_atol(maps)
    dense = extract_dense(odd_image, bb, names)
    assert dense.shape == ref.shape and dense.dtype == np.float32
    assert_close_per_feature(dense, ref, atol + forward, 1e-6)
    rows = extract_hypercolumns(PixelSet([odd_image], coords), bb, names)
    assert_close_per_feature(rows, ref[coords[:, 1], coords[:, 2]], atol + forward, 1e-6)

    # a 1x1 (fully connected / pooled) layer is the same vector at every pixel
    last = dense[..., -resolve_layers(bb, [names[-1]])[0]["num_chs"]:]
    np.testing.assert_array_equal(last, np.broadcast_to(last[:1, :1], last.shape))


def test_sample_maps_matches_interpolate_on_random_maps():
    gen = torch.Generator().manual_seed(0)
    maps = [torch.randn(c, h, w, generator=gen) for c, h, w in [(3, 5, 7), (2, 13, 2), (4, 1, 1)]]
    H, W = 23, 17
    rr, cc = np.mgrid[0:H, 0:W]
    got = sample_maps(maps, rr.ravel(), cc.ravel(), (H, W))
    ref = torch.cat(
        [F.interpolate(m[None], size=(H, W), mode="bilinear", align_corners=False) for m in maps], 1
    )[0].permute(1, 2, 0).reshape(H * W, -1)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=2e-6)


def test_image_size_maps_pixels_back_to_original_coordinates(odd_image):
    bb = build_backbone("resnet18", weights=None)
    names = ["layer1", "layer3"]
    ref, atol = reference_dense(bb, names, odd_image, image_size=64, tolerance=True)
    X = grid_pixels(odd_image, step=3)
    rows = extract_hypercolumns(X, bb, names, image_size=64)
    assert_close_per_feature(rows, ref[X.coords[:, 1], X.coords[:, 2]], atol, 1e-6)
    # resizing changes the features: the option is not a no-op
    assert np.abs(rows - extract_hypercolumns(X, bb, names)).max() > 1e-3


def test_batches_of_mixed_sizes_equal_one_image_at_a_time(images, masks, tiny_net):
    bb = build_backbone(tiny_net)
    X, _ = sample_pixels(images, masks, n_per_image=50, random_state=0)
    together = extract_hypercolumns(X, bb, None, batch_size=8)
    alone = extract_hypercolumns(X, bb, None, batch_size=1)
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)
    # rows keep the PixelSet's order, even when shuffled across images
    perm = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_array_equal(extract_hypercolumns(X[perm], bb, None, batch_size=8),
                                  together[perm])


def test_grayscale_is_replicated_and_dtypes_imply_range(tiny_net):
    bb = build_backbone(tiny_net)
    gray = (np.random.default_rng(0).random((20, 24)) * 255).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    as_float = rgb.astype(np.float32) / 255
    as_u16 = rgb.astype(np.uint16) * 257  # same intensities in 16 bit
    X = [grid_pixels(img) for img in (gray, rgb, as_float, as_u16)]
    feats = [extract_hypercolumns(x, bb, None) for x in X]
    for f in feats[1:]:
        np.testing.assert_allclose(f, feats[0], rtol=0, atol=1e-5)


def test_bfloat16_forward_is_close_to_float32(images, masks, tiny_net):
    bb = build_backbone(tiny_net)
    X, _ = sample_pixels(images, masks, n_per_image=30, random_state=0)
    f32 = extract_hypercolumns(X, bb, None)
    bf16 = extract_hypercolumns(X, bb, None, dtype="bfloat16")
    assert bf16.dtype == np.float32
    assert np.abs(bf16 - f32).max() < 0.05 * np.abs(f32).max()


def test_forward_stops_at_the_deepest_chosen_layer(tiny_net):
    bb = build_backbone(tiny_net)
    ran = []
    bb.model.fc.register_forward_hook(lambda *a: ran.append("fc"))
    bb.model.conv3.register_forward_hook(lambda *a: ran.append("conv3"))
    bb(torch.rand(1, 3, 16, 16), ["act1", "conv2"])
    assert ran == []
    bb(torch.rand(1, 3, 16, 16), ["conv3"])
    assert ran == ["conv3"]


@pytest.mark.gpu
def test_cuda_rows_match_cpu(images, masks):
    bb = build_backbone("resnet18", weights=None)
    X, _ = sample_pixels(images, masks, n_per_image=40, random_state=0)
    cpu = extract_hypercolumns(X, bb, None, device="cpu")
    gpu = extract_hypercolumns(X, bb, None, device="cuda")
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-3)
    bf16 = extract_hypercolumns(X, bb, None, device="cuda", dtype="bfloat16")
    assert np.abs(bf16 - cpu).max() < 0.05 * np.abs(cpu).max()


def test_sample_maps_of_a_batch_equal_each_image_on_its_own():
    """``images=``: one gather per map over the (n h w, c) table of a channels-last batch reads
    the same 4 weighted rows of each pixel as the image's own maps: bit-identical (vectors and
    canvases too)."""
    gen = torch.Generator().manual_seed(0)
    batch = [torch.randn(3, c, h, w, generator=gen).contiguous(memory_format=torch.channels_last)
             for c, h, w in [(3, 5, 7), (2, 13, 2), (4, 1, 1)]]
    H, W = 23, 17
    rng = np.random.default_rng(0)
    images, rows, cols = rng.integers(0, 3, 50), rng.integers(0, H, 50), rng.integers(0, W, 50)
    canvases = [None, (24.0, 18.5), None]
    for a in (images, rows, cols):
        a.flags.writeable = False  # read-only inputs reach torch without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = sample_maps(batch, rows, cols, (H, W), images=images, canvases=canvases)
    for k in range(3):
        at = images == k
        own = sample_maps([m[k] for m in batch], rows[at], cols[at], (H, W), canvases=canvases)
        assert torch.equal(got[torch.from_numpy(at)], own)
    with pytest.raises(ValueError, match="windows"):
        sample_maps(batch, rows, cols, (H, W), images=images, windows=[None] * 3)
    with pytest.raises(ValueError, match="must index the 3 maps"):
        sample_maps(batch, rows, cols, (H, W), images=images + 1)


def test_engine_reads_batches_as_it_reads_each_image(rng):
    """``FeatureEngine.sample`` reads the images of one forward batch together: pixels in any
    order, images of two shapes (two batches), location columns in per-image boxes and
    cache-served images give the rows that filling each image on its own gives."""
    from skhyper.features import MapCache

    bb = build_backbone("resnet18", weights=None)
    images = [rng.integers(0, 255, (40, 48, 3), dtype=np.uint8) for _ in range(3)]
    images.insert(1, rng.integers(0, 255, (33, 29, 3), dtype=np.uint8))
    masks = [np.zeros(im.shape[:2], dtype=int) for im in images]
    picked, _ = sample_pixels(images, masks, n_per_image=30, random_state=0)
    coords = np.concatenate([picked.coords, [[2, 0, 0], [0, 39, 47]]])[rng.permutation(122)]
    boxes = np.array([[2, 3, 30, 35], [0, 0, 29, 33], [5, 5, 40, 38], [0, 0, 48, 40]], float)
    X = PixelSet(images, coords, boxes=boxes)
    for cache in (None, MapCache()):
        engine = build_engine(bb, layers=["layer1", "layer3", "fc"], device="cpu",
                              append_location=True, batch_size=4, cache=cache)
        checked = engine.check_images(images)
        X = PixelSet(checked, coords, boxes=boxes)
        for _ in range(2 if cache is not None else 1):  # the second pass: served by the cache
            got = engine.sample(X)
        want = np.empty_like(got)
        for i, maps in engine.iter_maps(checked):
            at = np.flatnonzero(coords[:, 0] == i)
            want[at] = engine.fill(maps, coords[at, 1], coords[at, 2], images[i].shape[:2],
                                   np.empty((len(at), got.shape[1]), np.float32),
                                   frame=tuple(boxes[i]))
        np.testing.assert_array_equal(got, want)


def test_neighbour_tables_equal_the_per_pixel_computation():
    """Many pixels over a short range of rows read their neighbours and weights from a table
    over that range: the same values as computing each pixel's (each entry is computed as
    before), for maps covering the image or a wider canvas."""
    from skhyper.features._bilinear import _interp_at, _interp_many

    rng = np.random.default_rng(0)
    pos = rng.integers(3, 40, 500)
    sizes, lengths = [5, 17, 64, 1], [40.0, 40.0, 41.5, 40.0]
    for got, want in zip(_interp_at(pos, sizes, lengths), _interp_many(pos, sizes, lengths)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
