"""Everything downstream of the engine works with a transformer backbone (issue 16): location
grids, keypoints, multi-scale, channel strategies, caching, GridSearchCV over blocks, joblib,
threads. Tiny random-init ViTs, odd image sizes (images padded to whole patches)."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhyper import (
    GridLocationClassifier,
    HypercolumnKeypointLocator,
    HypercolumnSegmenter,
    HypercolumnTransformer,
    MapCache,
    sample_pixels,
)
from skhyper.keypoints import clip_boxes, crop_frames
from skhyper.location import location_map
from tests import _vits
from tests.test_keypoints import dots
from tests.test_segmenter import scene
from tests.test_threads import _assert_same, _hammer

LAYERS = ["blocks.0", "blocks.2", "norm.cls"]


@pytest.fixture(scope="module")
def vit():
    return _vits.make("vit")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    pairs = [scene(rng, s, 2) for s in [(61, 83), (77, 59), (50, 50)]]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _linear():
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))


def _dense64(engine, img, box=None):
    """The float64 dense hypercolumn: maps over their padded canvases, cropped (+ locations)."""
    (_, maps), = engine.iter_maps(engine.check_images([img]))
    H, W = img.shape[:2]
    rows = _vits.canvas_dense(maps, (H, W), engine.canvases((H, W)))
    if engine.append_location:
        frame = (0, 0, W, H) if box is None else tuple(box)
        rows = np.concatenate([rows, location_map((H, W), frame).astype(np.float64)], -1)
    return rows


def _naive(seg, img, method, boxes=None):
    """The definition in float64: every map upsampled over the padded image it covers, cropped,
    concatenated (+ locations in the frame) -> the classifier."""
    H, W = img.shape[:2]
    rows = _dense64(seg.hypercolumns_.engine_, img, None if boxes is None else boxes[0])
    out = getattr(seg.classifier_, method)(rows.reshape(H * W, -1))
    return np.asarray(out).reshape(H, W, *np.shape(out)[1:])


def _naive_heatmaps(loc, images):
    """Keypoint heatmaps by the definition, in float64, over whole-image frames."""
    boxes = np.array([[0, 0, im.shape[1], im.shape[0]] for im in images], float)
    S = loc.frame_size
    out = []
    for frame in crop_frames(list(images), clip_boxes(boxes, [im.shape[:2] for im in images]), S):
        rows = _dense64(loc.hypercolumns_.engine_, frame).reshape(S * S, -1)
        if loc.strategy == "multiclass":
            p = loc.estimators_[0].predict_proba(rows)[:, 1:]
        else:
            p = np.stack([e.predict_proba(rows)[:, 1] for e in loc.estimators_], axis=1)
        out.append(p.T.reshape(-1, S, S))
    return out


def test_folded_location_grid_equals_naive(vit, data):
    images, masks = data
    hc = HypercolumnTransformer(vit, layers=LAYERS, device="cpu", append_location=True)
    clf = GridLocationClassifier(_linear(), 2, min_samples_cell=10)
    seg = HypercolumnSegmenter(hc, clf, n_pixels_per_image=400, random_state=0,
                               upsampling="bilinear").fit(images, masks)
    assert seg.prediction_path_ == "folded"
    boxes = np.array([[3.5, 2, 70, 50]])
    for kw in ({}, {"boxes": boxes}):
        got = seg.decision_function([images[0]], **kw)[0]
        np.testing.assert_allclose(got, _naive(seg, images[0], "decision_function", **kw),
                                   rtol=0, atol=1e-4)


@pytest.mark.parametrize("grid_size,strategy", [(1, "per_keypoint"), (2, "multiclass")])
def test_folded_keypoint_heatmaps_equal_naive(vit, grid_size, strategy):
    images, kp = dots(np.random.default_rng(0), n=5, size=(53, 67))
    hc = HypercolumnTransformer(vit, layers=LAYERS, device="cpu")
    loc = HypercolumnKeypointLocator(hc, grid_size=grid_size, strategy=strategy, frame_size=45,
                                     radius=0.1, n_negatives_per_image=100,
                                     random_state=0).fit(images, kp)
    assert loc.prediction_path_ == "folded"
    for f, n in zip(loc.predict_heatmaps(images[:2]), _naive_heatmaps(loc, images[:2])):
        assert f.shape == (2, 45, 45)
        np.testing.assert_allclose(f, n, rtol=0, atol=1e-4)


def test_multi_scale_folds_and_equals_naive(vit, data):
    images, masks = data
    hc = HypercolumnTransformer(vit, layers=LAYERS, device="cpu", scales=(0.5, 1.0))
    seg = HypercolumnSegmenter(hc, _linear(), n_pixels_per_image=300,
                               random_state=0, upsampling="bilinear").fit(images, masks)
    assert seg.prediction_path_ == "folded" and seg.hypercolumns_.n_features_out_ == 6 * 32
    np.testing.assert_allclose(seg.decision_function(images[1]),
                               _naive(seg, images[1], "decision_function"), rtol=0, atol=1e-4)


@pytest.mark.parametrize("strategy", ["per_channel", "first_conv"])
def test_channel_strategies(vit, data, strategy):
    images, masks = data
    two = [np.stack([im[..., 0], im[..., 2]], -1) for im in images]
    hc = HypercolumnTransformer(vit, layers=LAYERS, device="cpu", channel_strategy=strategy)
    seg = HypercolumnSegmenter(hc, _linear(), n_pixels_per_image=300,
                               random_state=0, upsampling="bilinear").fit(two, masks)
    width = 3 * 32 * (2 if strategy == "per_channel" else 1)
    assert seg.hypercolumns_.n_features_out_ == width
    np.testing.assert_allclose(seg.decision_function(two[0]),
                               _naive(seg, two[0], "decision_function"), rtol=0, atol=1e-4)


def test_cache_serves_the_same_rows(vit, data):
    images, masks = data
    X, _ = sample_pixels(images, masks, n_per_image=60, random_state=0)
    cache = MapCache()
    hc = HypercolumnTransformer(vit, layers=LAYERS, device="cpu", cache=cache).fit(X)
    first = hc.transform(X)
    np.testing.assert_array_equal(hc.transform(X), first)
    assert cache.n_forward_images == len(images) and cache.hits >= len(images)
    plain = HypercolumnTransformer(vit, layers=LAYERS, device="cpu").fit(X)
    np.testing.assert_allclose(plain.transform(X), first, rtol=0, atol=1e-6)


def test_grid_search_over_blocks_and_joblib(vit, data, tmp_path):
    images, masks = data
    hc = HypercolumnTransformer(vit, device="cpu", cache=MapCache())
    grid = {"hypercolumns__layers": [["blocks.0"], ["blocks.2", "norm.cls"], [0, 2]]}
    seg = HypercolumnSegmenter(hc, _linear(), n_pixels_per_image=100, random_state=0)
    search = GridSearchCV(seg, grid, cv=3).fit(images, masks)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    best = search.best_estimator_
    joblib.dump(best, tmp_path / "vit.joblib")
    loaded = joblib.load(tmp_path / "vit.joblib")
    np.testing.assert_array_equal(loaded.predict(images[0]), best.predict(images[0]))
    np.testing.assert_array_equal(loaded.decision_function(images[2]),
                                  best.decision_function(images[2]))


def test_concurrent_calls_equal_sequential(vit, data):
    images, masks = data
    backbone = {"cnn": "resnet18", "vit": vit}  # a union too: one capture for both members
    hc = HypercolumnTransformer(backbone, weights=None, device="cpu",
                                layers=["cnn.layer1", "vit.blocks.2", "vit.norm.cls"])
    seg = HypercolumnSegmenter(hc, _linear(), n_pixels_per_image=150,
                               random_state=0).fit(images, masks)
    sequential = [seg.predict_proba(img) for img in images]
    jobs, out = _hammer(seg.predict_proba, images)
    for img, got in zip(jobs, out):
        _assert_same(got, sequential[next(i for i, im in enumerate(images) if im is img)])
