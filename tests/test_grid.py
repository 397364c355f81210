"""Location-specific classifiers: GridLocationClassifier, pixel locations, folded grids."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhyper import (
    GridLocationClassifier,
    HypercolumnSegmenter,
    HypercolumnTransformer,
    PixelSet,
    grid_pixels,
    sample_pixels,
)
from skhyper.datasets import load_horses
from skhyper.heads import FoldedGrid
from skhyper.location import (
    axis_locations,
    cell_weights,
    location_map,
    pixel_locations,
)

from . import test_segmenter as ts


def table(rng, n=800, n_feats=3, flip=True):
    """Features + (u, v); the label's relation to feature 0 flips across u = 0.5."""
    feats = rng.normal(size=(n, n_feats))
    uv = rng.random((n, 2))
    y = (feats[:, 0] > 0) == ((uv[:, 0] > 0.5) if flip else True)
    return np.hstack([feats, uv]), y.astype(int)


# --- the classifier on tables -------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: LogisticRegression(),
    lambda: make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0)),
    lambda: RandomForestClassifier(n_estimators=5, random_state=0),
])
def test_grid_size_one_equals_the_plain_estimator(make, rng):
    X, y = table(rng)
    y[::7] = 2  # three classes
    grid = GridLocationClassifier(make(), grid_size=1).fit(X, y)
    plain = make().fit(X[:, :-2], y)
    for method in ("predict", "predict_proba", "decision_function"):
        if hasattr(plain, method):
            np.testing.assert_array_equal(getattr(grid, method)(X),
                                          getattr(plain, method)(X[:, :-2]))
    assert not grid.fallback_.any() and grid.global_estimator_ is None


@pytest.mark.parametrize("K", [2, 3, 5])
def test_blend_is_bilinear_interpolation_of_the_cell_scores(K, rng):
    """Pixels of an H x W frame: scores == F.interpolate of the K x K cell scores."""
    X, y = table(rng, n=3000)
    grid = GridLocationClassifier(LogisticRegression(), K).fit(X, y)
    H, W = 23, 37
    feat = rng.normal(size=3)
    uu, vv = np.meshgrid(axis_locations(W, 0, W), axis_locations(H, 0, H))
    uv = np.column_stack([uu.ravel(), vv.ravel()])
    rows = np.hstack([np.tile(feat, (H * W, 1)), uv])
    got = grid.decision_function(rows).reshape(H, W)
    cells = torch.tensor([e.decision_function(feat[None])[0] for e in grid.estimators_],
                         dtype=torch.float64)
    expected = F.interpolate(cells.view(1, 1, K, K), size=(H, W), mode="bilinear",
                             align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # at a cell centre, the score is that cell's own
    centre = np.array([[*feat, (1 + 0.5) / K, (0 + 0.5) / K]])  # row 0, column 1
    np.testing.assert_allclose(grid.decision_function(centre),
                               grid.estimators_[1].decision_function(feat[None]), atol=1e-12)


def test_grid_learns_what_the_global_classifier_cannot(rng):
    X, y = table(rng, n=2000)
    Xt, yt = table(rng, n=1000)
    glob = LogisticRegression().fit(X[:, :-2], y).score(Xt[:, :-2], yt)
    grid = GridLocationClassifier(LogisticRegression(), 2).fit(X, y).score(Xt, yt)
    assert glob < 0.65 and grid > 0.85


def test_cell_weights_sum_to_one_and_clamp(rng):
    loc = np.vstack([rng.random((500, 2)), [[0, 0], [1, 1], [0.05, 0.95]]])
    for K in (1, 2, 4):
        cells, w = cell_weights(loc, K)
        np.testing.assert_allclose(w.sum(1), 1.0)
        assert cells.min() >= 0 and cells.max() < K * K
    cells, w = cell_weights(np.array([[0.0, 0.0], [1.0, 1.0]]), 4)  # beyond the outer centres
    assert cells[0, np.argmax(w[0])] == 0 and w[0].max() == 1.0
    assert cells[1, np.argmax(w[1])] == 15 and w[1].max() == 1.0


def test_assignment_and_sample_weights(rng):
    X, y = table(rng, n=1000)
    cell = GridLocationClassifier(LogisticRegression(), 3, assignment="cell").fit(X, y)
    assert cell.n_samples_cell_.sum() == len(X)  # every pixel in exactly one cell
    bil = GridLocationClassifier(LogisticRegression(), 3).fit(X, y)
    assert bil.n_samples_cell_.sum() > len(X)  # supports overlap
    # the centre cell's support and weights, by hand
    cells, w = cell_weights(X[:, -2:], 3)
    wc = np.where(cells == 4, w, 0).sum(1)
    sel = wc > 0
    ref = LogisticRegression().fit(X[sel, :-2], y[sel], sample_weight=wc[sel])
    np.testing.assert_allclose(bil.estimators_[4].coef_, ref.coef_)


def test_fallback_to_the_global_estimator(rng):
    X, y = table(rng, n=1500, flip=False)
    y[(X[:, -2] < 0.34) & (X[:, -1] < 0.34)] = 0  # the top-left cell holds one class only
    grid = GridLocationClassifier(LogisticRegression(), 3, assignment="cell",
                                  min_samples_cell=100).fit(X, y)
    assert grid.fallback_[0, 0]
    assert grid.estimators_[0] is grid.global_estimator_
    corner = np.array([[1.0, 0, 0, 0.01, 0.01]])
    np.testing.assert_allclose(grid.decision_function(corner),
                               grid.global_estimator_.decision_function(corner[:, :3]))
    few = GridLocationClassifier(LogisticRegression(), 5, min_samples_cell=10**6).fit(X, y)
    assert few.fallback_.all()  # no cell has enough pixels: the global classifier everywhere
    np.testing.assert_allclose(few.decision_function(X),
                               few.global_estimator_.decision_function(X[:, :3]), atol=1e-12)


@pytest.mark.parametrize("make, link", [
    (lambda: LogisticRegression(), "softmax"),
    (lambda: SGDClassifier(loss="log_loss", random_state=0), "ovr"),
])
def test_probabilities_follow_the_blended_scores(make, link, rng):
    X, y = table(rng, n=1500)
    y[::5] = 2
    grid = GridLocationClassifier(make(), 3).fit(X, y)
    assert grid.link_ == link
    s, p = grid.decision_function(X), grid.predict_proba(X)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert np.array_equal(grid.classes_[s.argmax(1)], grid.predict(X))
    assert np.array_equal(p.argmax(1), s.argmax(1))


def test_estimator_without_scores_blends_probabilities(rng):
    X, y = table(rng, n=1200)
    grid = GridLocationClassifier(RandomForestClassifier(n_estimators=10, random_state=0), 2)
    grid.fit(X, y)
    assert not hasattr(grid, "decision_function")
    p = grid.predict_proba(X[:5])
    cells, w = cell_weights(X[:5, -2:], 2)
    expected = sum(w[:, [t]] * np.vstack([grid.estimators_[c].predict_proba(X[[n], :-2])
                                          for n, c in enumerate(cells[:, t])])
                   for t in range(4))
    np.testing.assert_allclose(p, expected)
    assert np.array_equal(grid.predict(X[:5]), grid.classes_[p.argmax(1)])


@pytest.mark.parametrize("kwargs, X, match", [
    ({}, np.array([[0.5, 0.5], [0.2, 0.3]]), r"2 feature\(s\).*location columns"),
    ({"location_columns": (0, 7)}, np.zeros((4, 5)), r"'location_columns' parameter \(0, 7\)"),
    ({"location_columns": (1, 1)}, np.zeros((4, 5)), r"must name two distinct columns"),
    ({"location_columns": (1,)}, np.zeros((4, 5)), r"'location_columns' parameter must be two"),
    ({}, np.array([[0.0, 0.5, 1.5], [0.0, 0.5, 0.5]]), r"\[0, 1\].*found 1\.5.*append_location"),
    ({}, np.array([[0.0, -3.0, 0.5], [0.0, 0.5, 0.5]]), r"location columns \(-2, -1\).*-3"),
    ({"grid_size": 0}, np.zeros((4, 3)), r"'grid_size' parameter .* range \[1, inf\)"),
    ({}, np.array([[np.nan, 0.5, 0.5], [0.0, 0.5, 0.5]]), r"NaN"),
])
def test_bad_input(kwargs, X, match):
    y = np.arange(len(X)) % 2
    with pytest.raises(ValueError, match=match):
        GridLocationClassifier(LogisticRegression(), **kwargs).fit(X, y)


def test_fit_leaves_params_alone(rng):
    """sklearn's check_estimators_overwrite_params, on data with location columns."""
    X, y = table(rng, n=300)
    grid = GridLocationClassifier(make_pipeline(StandardScaler(), LogisticRegression()), 2)
    before = joblib.hash(grid.get_params(deep=True))
    grid.fit(X, y)
    assert joblib.hash(grid.get_params(deep=True)) == before
    assert not hasattr(grid.estimator, "classes_")  # the cells are clones


def test_clip_locations_and_predict_time_checks(rng):
    X, y = table(rng, n=400)
    grid = GridLocationClassifier(LogisticRegression(), 2).fit(X, y)
    bad = X[:3].copy()
    bad[0, -1] = 1.2
    with pytest.raises(ValueError, match=r"\[0, 1\].*clip_locations=True"):
        grid.predict(bad)
    clipped = clone(grid).set_params(clip_locations=True).fit(X, y)
    edge = bad.copy()
    edge[0, -1] = 1.0
    np.testing.assert_array_equal(clipped.decision_function(bad), clipped.decision_function(edge))
    with pytest.raises(ValueError, match="expecting 5 features"):
        grid.predict(X[:, 1:])


# --- locations of pixels ----------------------------------------------------------------------


def test_transformer_appends_locations(rng):
    images = [rng.random((20, 30, 3)), rng.random((16, 12, 3))]
    boxes = np.array([[5, 2, 25, 12], [-4, 0, 8, 16]])  # the second reaches outside the image
    coords = np.array([[0, 0, 0], [0, 7, 14], [0, 19, 29], [1, 3, 2], [1, 15, 11]])
    hc = HypercolumnTransformer("resnet18", layers=["layer1"], weights=None, device="cpu",
                                append_location=True).fit()
    assert hc.get_feature_names_out()[-2:].tolist() == ["location.u", "location.v"]
    assert hc.n_features_out_ == 64 + 2
    plain = hc.transform(PixelSet(images, coords))
    u, v = plain[:, -2], plain[:, -1]
    np.testing.assert_allclose(u, (coords[:, 2] + 0.5) / np.array([30, 30, 30, 12, 12]))
    np.testing.assert_allclose(v, (coords[:, 1] + 0.5) / np.array([20, 20, 20, 16, 16]))
    boxed = hc.transform(PixelSet(images, coords, boxes))
    np.testing.assert_allclose(boxed[:, -2:], [[0, 0], [(14.5 - 5) / 20, (7.5 - 2) / 10],
                                               [1, 1], [(2.5 + 4) / 12, 3.5 / 16],
                                               [1, 15.5 / 16]], atol=1e-7)
    np.testing.assert_array_equal(boxed[:, :-2], plain[:, :-2])
    # dense == sampled, locations included
    dense = hc.transform_dense(images, boxes=boxes)
    every = hc.transform(grid_pixels(images, boxes=boxes))
    np.testing.assert_allclose(np.vstack([d.reshape(-1, 66) for d in dense]), every, atol=1e-6)


def test_pixel_locations_and_axis_locations():
    X = PixelSet([np.zeros((10, 10))], [[0, 0, 0], [0, 9, 9], [0, 5, 2]], [[2, 4, 6, 8]])
    np.testing.assert_allclose(pixel_locations(X), [[0, 0], [1, 1], [0.125, 0.375]])
    np.testing.assert_allclose(axis_locations(3, 0, 3), [1 / 6, 0.5, 5 / 6])


@pytest.mark.parametrize("boxes, match", [
    ([[10, 0, 10, 5]], r"'boxes' parameter has empty boxes \(x1 <= x0 or y1 <= y0\) at rows \[0\]"),
    ([[0, 6, 9, 2]], r"empty boxes"),
    ([[0, 0, 5]], r"'boxes' parameter must have shape \(n_images, 4\) = \(1, 4\)"),
    ([[0, 0, np.nan, 4]], r"'boxes' parameter contains NaN"),
])
def test_bad_boxes(boxes, match):
    img = np.zeros((8, 12, 3))
    with pytest.raises(ValueError, match=match):
        PixelSet([img], [[0, 0, 0]], boxes)
    with pytest.raises(ValueError, match=match):
        sample_pixels([img], [np.eye(8, 12, dtype=int)], boxes=boxes)


# --- in the segmenter: folded == naive -------------------------------------------------------


def naive_grid(seg, img, method, box=None, exact=True):
    """The definition: dense hypercolumn + locations -> the grid classifier (float64 when exact)."""
    H, W = img.shape[:2]
    if exact:
        frame = (0, 0, W, H) if box is None else tuple(box)
        rows = np.concatenate([ts.dense64(seg, img),
                               location_map((H, W), frame).astype(np.float64)], -1)
    else:
        rows = seg.hypercolumns_.transform_dense(img, boxes=None if box is None else [box])
    out = getattr(seg.classifier_, method)(rows.reshape(H * W, -1))
    return np.asarray(out).reshape(H, W, *np.shape(out)[1:])


@pytest.fixture(scope="module")
def lite_loc():
    return HypercolumnTransformer(layers=ts.LITE_LAYERS, device="cpu", append_location=True)


@pytest.mark.parametrize("K", [2, 3, 5])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("framing", ["image", "boxes"])
def test_folded_grid_equals_naive(lite_loc, K, n_classes, framing):
    rng = np.random.default_rng(10 * K + n_classes)
    images, masks = zip(*[ts.scene(rng, s, n_classes) for s in [(61, 83), (77, 59), (64, 64)]])
    boxes = None
    if framing == "boxes":  # one box reaching outside its image
        boxes = np.array([[5, 3, 70, 50], [-6.5, 10, 50, 90], [10.5, 12.2, 40.1, 60]])
    clf = GridLocationClassifier(make_pipeline(StandardScaler(), LogisticRegression(C=0.1)), K,
                                 min_samples_cell=10)
    # the exact (bilinear) path; edge-aware grids: test_edges.py
    seg = HypercolumnSegmenter(lite_loc, clf, n_pixels_per_image=400, random_state=0,
                               upsampling="bilinear")
    seg.fit(list(images), list(masks), boxes=boxes)
    assert seg.prediction_path_ == "folded" and isinstance(seg.folded_, FoldedGrid)
    # real location-specific cells (3 classes meet in the centre only: the rest fall back)
    assert (~seg.classifier_.fallback_).sum() >= (2 if n_classes == 2 else 1)
    for n in (0, 1):
        img, box = images[n], None if boxes is None else boxes[n]
        kw = {} if boxes is None else {"boxes": boxes[[n]]}
        scores = seg.decision_function([img], **kw)[0]
        expected = naive_grid(seg, img, "decision_function", box)
        assert scores.shape == expected.shape == img.shape[:2] + ((3,) if n_classes == 3 else ())
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-4)
        np.testing.assert_allclose(seg.predict_proba([img], **kw)[0],
                                   naive_grid(seg, img, "predict_proba", box), rtol=0, atol=1e-5)
        labels = seg.predict([img], **kw)[0]
        agree = labels == naive_grid(seg, img, "predict", box)
        margin = np.abs(scores) if n_classes == 2 else np.diff(
            np.sort(scores, -1)[..., -2:], axis=-1)[..., 0]
        assert np.all(agree | (margin < 1e-4))


def test_issue_chain_folds_with_pca_and_sgd(lite_loc, rng):
    images, masks = zip(*[ts.scene(rng, s, 2) for s in [(61, 83), (77, 59), (64, 64)]])
    clf = GridLocationClassifier(make_pipeline(StandardScaler(), PCA(16, random_state=0),
                                               SGDClassifier(loss="log_loss", random_state=0)), 3)
    seg = HypercolumnSegmenter(lite_loc, clf, n_pixels_per_image=600, random_state=0,
                               upsampling="bilinear")
    seg.fit(list(images), list(masks))
    assert seg.prediction_path_ == "folded" and seg.folded_.link == "sigmoid"
    scores = seg.decision_function(images[0])
    exact = naive_grid(seg, images[0], "decision_function")
    np.testing.assert_allclose(scores, exact, rtol=0, atol=1e-4 * max(1, np.abs(exact).max() / 64))


def test_grid_size_one_segmenter_equals_the_plain_segmenter(lite_loc, rng):
    images, masks = zip(*[ts.scene(rng, s, 3) for s in [(61, 83), (77, 59)]])
    chain = make_pipeline(StandardScaler(), LogisticRegression(C=0.1))
    plain = HypercolumnSegmenter(clone(lite_loc).set_params(append_location=False), chain,
                                 n_pixels_per_image=300, random_state=0).fit(images, masks)
    grid = HypercolumnSegmenter(lite_loc, GridLocationClassifier(chain, 1),
                                n_pixels_per_image=300, random_state=0).fit(images, masks)
    for method in ("decision_function", "predict_proba", "predict"):
        np.testing.assert_array_equal(getattr(grid, method)(images[0]),
                                      getattr(plain, method)(images[0]))


def test_global_classifier_with_location_features_folds(lite_loc, rng):
    images, masks = zip(*[ts.scene(rng, s, 2) for s in [(61, 83), (64, 64)]])
    boxes = np.array([[5, 3, 70, 50], [0, 10, 40, 60]])
    seg = HypercolumnSegmenter(lite_loc, make_pipeline(StandardScaler(), LogisticRegression()),
                               n_pixels_per_image=300, random_state=0, upsampling="bilinear")
    seg.fit(images, masks, boxes=boxes)
    assert seg.prediction_path_ == "folded" and seg.folded_.location.shape == (2, 1)
    np.testing.assert_allclose(seg.decision_function([images[0]], boxes=boxes[:1])[0],
                               naive_grid(seg, images[0], "decision_function", boxes[0]),
                               rtol=0, atol=1e-4)


def test_non_linear_cells_take_the_chunked_path(lite_loc, rng):
    images, masks = zip(*[ts.scene(rng, s, 2) for s in [(40, 52), (36, 44)]])
    clf = GridLocationClassifier(RandomForestClassifier(n_estimators=5, random_state=0), 2)
    seg = HypercolumnSegmenter(lite_loc, clf, n_pixels_per_image=300, random_state=0,
                               chunk_pixels=500).fit(images, masks)
    assert seg.prediction_path_ == "chunked"
    # trees split float32 features: compare with the float32 dense hypercolumn
    np.testing.assert_allclose(seg.predict_proba(images[0]),
                               naive_grid(seg, images[0], "predict_proba", exact=False),
                               atol=1e-6)


def test_tiled_grid_equals_whole(rng):
    img, _ = ts.scene(rng, (300, 420), 2)
    small, small_mask = ts.scene(rng, (96, 128), 2)
    hc = HypercolumnTransformer(layers=["blocks.0", "blocks.1", "blocks.2"], device="cpu",
                                tile_size=None, append_location=True)
    seg = HypercolumnSegmenter(hc, GridLocationClassifier(LogisticRegression(C=0.1), 3,
                                                          min_samples_cell=5),
                               n_pixels_per_image=1000, random_state=0)
    seg.fit([small], [small_mask])
    box = np.array([[20, 10, 400, 280]])
    whole = seg.decision_function(img, boxes=box)
    seg.hypercolumns_.engine_ = seg.hypercolumns_.engine_.replace(tile_size=96)
    tiled = seg.decision_function(img, boxes=box)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-4)
    assert np.abs(whole).max() > 0.1


def test_segmenter_errors_and_pickling(lite_loc, rng, tmp_path):
    images, masks = zip(*[ts.scene(rng, s, 2) for s in [(40, 52), (36, 44)]])
    no_loc = clone(lite_loc).set_params(append_location=False)
    with pytest.raises(ValueError, match=r"GridLocationClassifier.*append_location=True"):
        HypercolumnSegmenter(no_loc, GridLocationClassifier(LogisticRegression())).fit(
            images, masks)
    seg = HypercolumnSegmenter(lite_loc, GridLocationClassifier(LogisticRegression(C=0.1), 2),
                               n_pixels_per_image=200, random_state=0)
    with pytest.raises(ValueError, match=r"'boxes' parameter has empty boxes .* at rows \[1\]"):
        seg.fit(images, masks, boxes=[[0, 0, 10, 10], [30, 0, 20, 10]])
    with pytest.raises(ValueError, match=r"'boxes' parameter "
                                         r"must have shape \(n_images, 4\) = \(2, 4\)"):
        seg.fit(images, masks, boxes=[[0, 0, 10, 10]])
    seg.fit(images, masks)
    with pytest.raises(ValueError, match="empty boxes"):
        seg.predict(images[0], boxes=[5, 5, 5, 9])
    path = tmp_path / "grid.joblib"
    joblib.dump(seg, path)
    again = joblib.load(path)
    np.testing.assert_array_equal(again.decision_function(images[0]),
                                  seg.decision_function(images[0]))


def test_search_over_grid_size(lite_loc, rng):
    images, masks = zip(*[ts.scene(rng, s, 2) for s in [(40, 52)] * 4])
    seg = HypercolumnSegmenter(lite_loc, GridLocationClassifier(LogisticRegression(C=0.1)),
                               n_pixels_per_image=200, random_state=0)
    search = GridSearchCV(seg, {"classifier__grid_size": [1, 2]}, cv=2).fit(list(images),
                                                                           list(masks))
    assert search.best_params_["classifier__grid_size"] in (1, 2)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_search_routes_boxes_to_fit_and_score(lite_loc, rng, monkeypatch):
    """With sklearn's metadata routing, GridSearchCV passes each split's boxes to score too."""
    import sklearn

    images, masks = zip(*[ts.scene(rng, s, 2) for s in [(40, 52)] * 4])
    boxes = np.array([[2, 2, 40, 30], [0, 0, 52, 40], [5, 1, 45, 39], [1, 3, 50, 33]], float)
    seen = []
    score = HypercolumnSegmenter.score

    def spy(self, images, masks, boxes=None):
        seen.append(None if boxes is None else np.asarray(boxes).tolist())
        return score(self, images, masks, boxes)

    monkeypatch.setattr(HypercolumnSegmenter, "score", spy)
    with sklearn.config_context(enable_metadata_routing=True):
        seg = HypercolumnSegmenter(lite_loc, GridLocationClassifier(LogisticRegression(C=0.1), 2),
                                   n_pixels_per_image=200, random_state=0)
        seg.set_fit_request(boxes=True).set_score_request(boxes=True)
        GridSearchCV(seg, {"classifier__min_samples_cell": [5, 50]}, cv=2).fit(
            list(images), list(masks), boxes=boxes)
    assert len(seen) == 4 and all(len(b) == 2 for b in seen)  # 2 test images per split
    assert sorted(map(tuple, sum(seen[:2], []))) == sorted(map(tuple, boxes.tolist()))


def test_the_issue_pipeline_on_sampled_pixels():
    """HypercolumnTransformer(append_location=True) -> grid of StandardScaler/PCA/SGD cells."""
    data = load_horses(split="train")
    X, y = sample_pixels(data.images, data.masks, n_per_image=300, random_state=0)
    pipe = make_pipeline(
        HypercolumnTransformer(device="cpu", append_location=True),
        GridLocationClassifier(make_pipeline(StandardScaler(), PCA(64, random_state=0),
                                             SGDClassifier(loss="log_loss", random_state=0)),
                               grid_size=5),
    )
    scores = cross_val_score(pipe, X, y, groups=X.groups, cv=GroupKFold(2))
    assert scores.min() > 0.8  # pixel accuracy on held-out images
    pipe.fit(X, y)
    assert pipe[-1].n_features_in_ == pipe[0].n_features_out_
    assert pipe.predict_proba(X[:10]).shape == (10, 2)


@pytest.mark.gpu
def test_folded_grid_on_cuda_equals_cpu(rng):
    images, masks = zip(*[ts.scene(rng, s, 3) for s in [(61, 83), (77, 59)]])
    boxes = np.array([[5, 3, 70, 50], [0, 10, 50, 70]])
    seg = HypercolumnSegmenter(
        HypercolumnTransformer(layers=ts.LITE_LAYERS, device="cuda", append_location=True),
        GridLocationClassifier(make_pipeline(StandardScaler(), LogisticRegression(C=0.1)), 3,
                               min_samples_cell=10),
        n_pixels_per_image=400, random_state=0,
    ).fit(images, masks, boxes=boxes)
    on_gpu = seg.decision_function(images, boxes=boxes)
    seg.hypercolumns_.engine_.to("cpu")
    assert seg.hypercolumns_.device_ == torch.device("cpu")
    on_cpu = seg.decision_function(images, boxes=boxes)
    for a, b in zip(on_gpu, on_cpu):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
