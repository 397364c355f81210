"""HypercolumnSegmenter: folded dense prediction equals the naive path; chunked fallback;
tiling; cache; search over layers; errors; pickling."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from skhyper import HypercolumnSegmenter, HypercolumnTransformer, MapCache
from skhyper.metrics import foreground_iou_scorer, mean_iou

HEADS = {
    "sgd": lambda: SGDClassifier(loss="log_loss", random_state=0),
    "logreg": lambda: LogisticRegression(max_iter=300),
    "ovr-logreg": lambda: OneVsRestClassifier(LogisticRegression(max_iter=300)),
    "linearsvc": lambda: LinearSVC(),
    "ridge": lambda: RidgeClassifier(),
}
PREPS = {
    "none": lambda: [],
    "scaler": lambda: [StandardScaler()],
    "scaler+pca": lambda: [StandardScaler(), PCA(16, random_state=0)],
}
LITE_LAYERS = ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"]


def scene(rng, shape, n_classes):
    """An image with a bright box and a mid-grey disc (class 2) on noise, and its mask."""
    H, W = shape
    img = rng.random((H, W, 3)).astype(np.float32) * 0.3
    mask = np.zeros((H, W), dtype=np.int64)
    mask[H // 5 : H // 2, W // 6 : W // 2] = 1
    if n_classes > 2:
        yy, xx = np.mgrid[:H, :W]
        mask[(yy - 0.7 * H) ** 2 + (xx - 0.7 * W) ** 2 < (0.2 * min(H, W)) ** 2] = 2
    img[mask == 1] += 0.6
    img[mask == 2] += [0.3, 0.1, 0.5]
    return img, mask


@pytest.fixture(scope="module")
def lite():
    # pretrained (bundled, offline) weights: realistic activation ranges
    return HypercolumnTransformer(layers=LITE_LAYERS, device="cpu")


def dense64(seg, img):
    """The dense hypercolumn in float64: every native map upsampled, concatenated."""
    engine = seg.hypercolumns_.engine_.replace(tile_size=None, cache=None)
    (_, maps), = engine.iter_maps(engine.check_images([np.asarray(img)]))
    H, W = img.shape[:2]
    up = [F.interpolate(m[None].double(), size=(H, W), mode="bilinear", align_corners=False)
          for m in maps.values()]
    return torch.cat(up, 1)[0].permute(1, 2, 0).numpy()


def naive(seg, img, method, exact=False):
    """The definition: full upsampled hypercolumn of every pixel -> classifier."""
    dense = dense64(seg, img) if exact else seg.hypercolumns_.transform_dense(img)
    H, W, D = dense.shape
    out = getattr(seg.classifier_, method)(dense.reshape(H * W, D))
    return np.asarray(out).reshape(H, W, *np.shape(out)[1:])


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("prep", list(PREPS))
def test_folded_equals_naive(lite, head, prep, n_classes):
    rng = np.random.default_rng(n_classes)
    images, masks = zip(*[scene(rng, s, n_classes) for s in [(61, 83), (77, 59), (64, 64)]])
    clf = make_pipeline(*PREPS[prep](), HEADS[head]())
    # the exact path: bilinear upsampling is the hypercolumn's own (edge-aware upsampling has
    # its own reference test in test_edges.py)
    seg = HypercolumnSegmenter(lite, clf, n_pixels_per_image=150, random_state=0,
                               upsampling="bilinear")
    seg.fit(list(images), list(masks))
    assert seg.prediction_path_ == "folded"
    assert seg.classes_.tolist() == list(range(n_classes))
    img = images[0]  # odd size 61 x 83
    scores = seg.decision_function(img)
    expected = naive(seg, img, "decision_function", exact=True)
    assert scores.shape == expected.shape == ((61, 83) if n_classes == 2 else (61, 83, 3))
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-4)
    if prep != "none":
        # The float32 naive path (transform_dense -> classifier) carries float32 rounding of
        # the features times the head's weights: with standardized features it agrees to 1e-4
        # while |scores| <= 64 (float32 spacing there is 8e-6), proportionally beyond (this
        # separable toy task drives SGD's scores to ~300). Heads on raw activations have
        # weights large enough that float32 features alone are off by ~1e-3, so there only
        # the exact path is the bar.
        naive32 = naive(seg, img, "decision_function")
        # float32 bound of the naive path: the chain standardizes float32 features, x_i - m_i
        # and each product and sum round to 2**-24 relative; summed over D features (a
        # pairwise sum of depth log2 D) the error is at most ~(4 + log2 D) * 2**-24 *
        # sum_i (|x_i| + |m_i|) |w_i| per pixel (w: the chain's effective weights on the raw
        # features, m: the scaler's means); plus the folded path's own 1e-4
        dense = seg.hypercolumns_.transform_dense(img).astype(np.float64)
        dense = dense.reshape(-1, dense.shape[-1])
        weights = np.abs(np.concatenate(seg.folded_.blocks))  # (D, n_outputs)
        means = np.abs(seg.classifier_[0].mean_)
        depth = 4 + np.log2(dense.shape[1])
        bound = ((np.abs(dense) + means) @ weights) * depth * 2.0**-24
        bound = bound.reshape(*img.shape[:2], -1).squeeze(-1 if n_classes == 2 else ())
        assert np.all(np.abs(scores - naive32) <= bound + 1e-4)
    labels = seg.predict(img)
    agree = labels == naive(seg, img, "predict", exact=True)
    margin = np.abs(scores) if n_classes == 2 else np.diff(np.sort(scores, -1)[..., -2:], axis=-1)[
        ..., 0]
    assert np.all(agree | (margin < 1e-4))  # only exact ties could differ
    if hasattr(seg.classifier_, "predict_proba"):
        assert seg.folded_.link is not None
        # probabilities move at most half the scores' error (sigmoid / softmax slopes <= 1/4
        # per score, two scores): 1e-4 / 2
        np.testing.assert_allclose(seg.predict_proba(img),
                                   naive(seg, img, "predict_proba", exact=True),
                                   rtol=0, atol=5e-5)


def test_link_detection_per_family(lite, rng):
    images, masks = zip(*[scene(rng, (48, 56), 3) for _ in range(2)])
    links = {}
    for name, clf in {"multinomial": LogisticRegression(max_iter=300),
                      "ovr": OneVsRestClassifier(LogisticRegression(max_iter=300)),
                      "sgd-ovr": SGDClassifier(loss="log_loss", random_state=0)}.items():
        seg = HypercolumnSegmenter(lite, make_pipeline(StandardScaler(), clf),
                                   n_pixels_per_image=100, random_state=0).fit(images, masks)
        links[name] = seg.folded_.link
    assert links == {"multinomial": "softmax", "ovr": "ovr", "sgd-ovr": "ovr"}


def test_non_linear_classifier_takes_the_chunked_path(lite, rng):
    images, masks = zip(*[scene(rng, (45, 52), 3) for _ in range(2)])
    seg = HypercolumnSegmenter(
        lite, RandomForestClassifier(n_estimators=10, random_state=0), n_pixels_per_image=100,
        random_state=0, chunk_pixels=500,  # several bands per image
    ).fit(images, masks)
    assert seg.prediction_path_ == "chunked" and seg.folded_ is None
    img = images[1]
    np.testing.assert_array_equal(seg.predict(img), naive(seg, img, "predict"))
    np.testing.assert_allclose(seg.predict_proba(img), naive(seg, img, "predict_proba"))
    assert not hasattr(seg, "decision_function")


def test_images_in_images_out(lite, rng):
    pairs = [scene(rng, s, 2) for s in [(40, 50), (40, 50), (33, 47)]]
    images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
    seg = HypercolumnSegmenter(lite, n_pixels_per_image=100, random_state=0).fit(images, masks)
    out = seg.predict(images)
    assert isinstance(out, list) and [o.shape for o in out] == [m.shape for m in masks]
    stacked = seg.predict(np.stack(images[:2]))
    assert isinstance(stacked, np.ndarray) and stacked.shape == (2, 40, 50)
    np.testing.assert_array_equal(stacked[1], out[1])
    single = seg.predict(images[2])
    assert isinstance(single, np.ndarray) and single.shape == (33, 47)
    np.testing.assert_array_equal(single, out[2])
    proba = seg.predict_proba(images)
    assert [p.shape for p in proba] == [(40, 50, 2), (40, 50, 2), (33, 47, 2)]
    np.testing.assert_allclose(proba[2].sum(-1), 1.0, atol=1e-6)
    assert seg.score(images, masks) == pytest.approx(mean_iou(masks, out))
    assert seg.score(images, masks) > 0.8


def test_ignore_label_and_multiclass_labels(lite, rng):
    pairs = [scene(rng, (48, 60), 3) for _ in range(2)]
    images = [p[0] for p in pairs]
    masks = [np.where(p[1] == 0, 7, p[1] * 10) for p in pairs]  # labels 7, 10, 20
    for m in masks:
        m[:5] = 255  # unlabelled rows
    seg = HypercolumnSegmenter(lite, n_pixels_per_image=150, ignore_label=255,
                               random_state=0).fit(images, masks)
    assert seg.classes_.tolist() == [7, 10, 20]
    pred = seg.predict(images[0])
    assert set(np.unique(pred)) <= {7, 10, 20}
    assert seg.predict_proba(images[0]).shape == (48, 60, 3)
    assert 0.5 < seg.score(images, masks) <= 1.0


@pytest.mark.parametrize(
    "backbone, weights, layers, tile",
    [
        ("efficientnet_lite0", "imagenet", ["blocks.0", "blocks.1", "blocks.2"], 128),
        ("resnet18", None, ["relu", "layer1", "layer2", "layer3", "layer4"], 64),
    ],
)
def test_tiled_equals_whole_700x900(backbone, weights, layers, tile, rng):
    """Tiles with receptive-field halos reproduce the whole-image scores."""
    img, mask = scene(rng, (700, 900), 3)
    small, small_mask = scene(rng, (96, 128), 3)
    hc = HypercolumnTransformer(backbone, layers=layers, weights=weights, device="cpu",
                                tile_size=None)
    seg = HypercolumnSegmenter(hc, n_pixels_per_image=300, random_state=0)
    seg.fit([small], [small_mask])
    whole = seg.decision_function(img)
    seg.hypercolumns_.engine_ = seg.hypercolumns_.engine_.replace(tile_size=tile)
    from skhyper.features import receptive_field
    from skhyper.features._tiling import plan_axis

    halo, stride = receptive_field(seg.hypercolumns_.backbone_, layers)
    assert all(len(plan_axis(n, tile, halo, stride)) > 1 for n in (700, 900))  # real tiles
    tiled = seg.decision_function(img)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-4)
    assert np.abs(whole).max() > 0.1  # scores are not trivially zero


def test_tiling_refuses_image_level_layers(rng):
    img, mask = scene(rng, (64, 64), 2)
    hc = HypercolumnTransformer("resnet18", layers=["layer1", "fc"], weights=None, device="cpu",
                                tile_size=32)
    seg = HypercolumnSegmenter(hc, n_pixels_per_image=50, random_state=0)
    with pytest.raises(ValueError, match=r"\['fc'\].*tile_size=None"):
        seg.fit([img], [mask])


def test_grid_search_over_layers_shares_the_cache(rng):
    pairs = [scene(rng, (40 + 4 * i, 52), 2) for i in range(6)]
    images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
    grid = {"hypercolumns__layers": [["relu"], ["layer2"], ["relu", "layer2"]]}

    def search(cache):
        hc = HypercolumnTransformer("resnet18", weights=None, device="cpu", cache=cache)
        seg = HypercolumnSegmenter(hc, n_pixels_per_image=80, random_state=0)
        return GridSearchCV(seg, grid, cv=3).fit(images, masks)

    cache = MapCache()
    cached, plain = search(cache), search(None)
    # every image went through the backbone once for 3 x 3 fits, 9 scorings and the refit
    assert cache.n_forward_images == len(images)
    assert cache.hits > 3 * len(images)
    np.testing.assert_allclose(cached.cv_results_["mean_test_score"],
                               plain.cv_results_["mean_test_score"], atol=1e-12)
    assert cached.best_params_ == plain.best_params_
    assert cached.best_estimator_.hypercolumns_.cache is cache
    # a skhyper scorer works as `scoring=`
    hc = HypercolumnTransformer("resnet18", weights=None, device="cpu", cache=cache)
    gs = GridSearchCV(HypercolumnSegmenter(hc, n_pixels_per_image=80, random_state=0),
                      grid, cv=2, scoring=foreground_iou_scorer).fit(images, masks)
    assert 0 < gs.best_score_ <= 1


def test_joblib_round_trip(lite, rng, tmp_path):
    images, masks = zip(*[scene(rng, (41, 57), 2) for _ in range(2)])
    seg = HypercolumnSegmenter(lite, n_pixels_per_image=100, random_state=0).fit(images, masks)
    joblib.dump(seg, tmp_path / "seg.joblib")
    loaded = joblib.load(tmp_path / "seg.joblib")
    np.testing.assert_array_equal(loaded.predict(images[0]), seg.predict(images[0]))
    np.testing.assert_allclose(loaded.decision_function(images[0]),
                               seg.decision_function(images[0]))
    assert loaded.prediction_path_ == "folded"


def test_clone_and_params(lite):
    seg = HypercolumnSegmenter(lite, LogisticRegression(), n_pixels_per_image=10)
    c = clone(seg)
    assert c.get_params()["hypercolumns__layers"] == LITE_LAYERS
    c.set_params(hypercolumns__layers=["blocks.0"])
    assert seg.hypercolumns.layers == LITE_LAYERS  # the original is untouched


class NoFit:
    def predict(self, X):
        return X


@pytest.mark.parametrize(
    "kwargs, images, masks, match",
    [
        ({}, "count", None, r"'masks' parameter has 1 masks but there are 2 images"),
        ({}, "shape", None, r"'masks\[0\]' parameter has shape \(20, 30\) but its image has shape"),
        ({}, "single", None, r"'masks' parameter must hold at least two classes"),
        ({"classifier": NoFit()}, None, None, r"'classifier' parameter .* 'fit'"),
        ({"hypercolumns": HypercolumnTransformer("resnet18", layers=[], weights=None)}, None,
         None, r"'layers' parameter must name at least one layer"),
        ({"n_pixels_per_image": 0}, None, None, r"'n_pixels_per_image' parameter"),
    ],
)
def test_bad_input(kwargs, images, masks, match, rng):
    imgs = [rng.random((24, 32, 3)) for _ in range(2)]
    msks = [(im[..., 0] > 0.5).astype(int) for im in imgs]
    if images == "count":
        msks = msks[:1]
    elif images == "shape":
        msks = [np.zeros((20, 30), int), msks[1]]
    elif images == "single":
        msks = [np.ones((24, 32), int)] * 2
    hc = HypercolumnTransformer("resnet18", layers=["layer1"], weights=None, device="cpu")
    kw = {"hypercolumns": hc, "n_pixels_per_image": 50, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        HypercolumnSegmenter(**kw).fit(imgs, msks)


def test_predict_checks_images(lite, rng):
    images, masks = zip(*[scene(rng, (40, 48), 2) for _ in range(2)])
    seg = HypercolumnSegmenter(lite, n_pixels_per_image=50, random_state=0).fit(images, masks)
    bad = np.full((40, 48, 3), np.nan)
    with pytest.raises(ValueError, match=r"'images.*NaN"):
        seg.predict(bad)
    with pytest.raises(ValueError, match=r"'images"):
        seg.predict(np.zeros((2, 3, 4, 5, 6)))


def test_rare_class_is_learnt_and_score_counts_every_true_label():
    """A class covering a few pixels of one image is sampled (min_pixels_per_class) and learnt;
    score counts every true label, so a label the model lacks costs IoU instead of vanishing."""
    rng = np.random.default_rng(0)
    images = (rng.random((3, 40, 48, 3)) * 0.3).astype(np.float32)
    masks = np.zeros((3, 40, 48), dtype=np.int64)
    masks[:, 10:30, 10:30] = 1
    masks[1, 2:4, 40:43] = 2  # 6 pixels of class 2 in 5760
    images[masks == 1] += 0.5
    images[masks == 2] = [0.0, 0.0, 1.0]
    hc = HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None,
                                device="cpu")
    plain = HypercolumnSegmenter(hc, n_pixels_per_image=60, min_pixels_per_class=None,
                                 random_state=0).fit(list(images), list(masks))
    assert plain.classes_.tolist() == [0, 1]  # uniform sampling missed the rare class
    seg = HypercolumnSegmenter(hc, n_pixels_per_image=60, random_state=0)
    seg.fit(list(images), list(masks))
    assert seg.classes_.tolist() == [0, 1, 2]
    assert seg.predict_proba(images[1]).shape == (40, 48, 3)
    honest = mean_iou(list(masks), plain.predict(list(images)))  # every true label
    assert plain.score(list(images), list(masks)) == pytest.approx(honest)
    assert honest < mean_iou(list(masks), plain.predict(list(images)), labels=[0, 1])


def test_refit_classifier_equals_a_full_fit(rng):
    """The interactive path: scribbles, then corrected scribbles refitted on the fitted engine
    and cached maps == a full ``fit`` on the corrected scribbles (same weights, same pixels)."""
    img, mask = scene(rng, (70, 90), 3)
    first = np.zeros_like(mask)  # scribbles: 0 = unlabelled
    first[20:24, 20:40], first[60:63, 5:80] = 2, 1  # class 2 painted on the box: wrong
    corrected = first.copy()
    corrected[20:24, 20:40] = 0
    corrected[52:56, 58:66] = 3  # the disc
    corrected[2:5, 2:30] = 1

    def make(cache=None):
        hc = HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None,
                                    device="cpu", cache=cache)
        return HypercolumnSegmenter(hc, ignore_label=0, random_state=0)

    cache = MapCache()
    seg = make(cache).fit(img, first)
    engine, forwards = seg.hypercolumns_.engine_, cache.n_forward_images
    assert seg.refit_classifier(img, corrected) is seg
    assert seg.hypercolumns_.engine_ is engine  # the engine was not rebuilt
    assert cache.n_forward_images == forwards  # the maps came from the cache
    full = make().fit(img, corrected)
    np.testing.assert_array_equal(seg.classes_, [1, 3])  # the wrong class 2 is gone
    np.testing.assert_array_equal(seg.predict(img), full.predict(img))
    # the same float32 computation on the same pixels: only summation order may differ
    np.testing.assert_allclose(seg.predict_proba(img), full.predict_proba(img), atol=1e-5)


def test_refit_classifier_checks_its_input(rng):
    img, mask = scene(rng, (40, 52), 2)
    seg = HypercolumnSegmenter(
        HypercolumnTransformer("resnet18", layers=["relu"], weights=None, device="cpu"),
        n_pixels_per_image=200, random_state=0)
    with pytest.raises(Exception, match="not fitted"):
        seg.refit_classifier(img, mask)
    seg.fit(img, mask)
    with pytest.raises(ValueError, match="images"):
        seg.refit_classifier(img[..., :1].repeat(2, axis=2), mask)  # 2 channels, fitted on 3
    with pytest.raises(ValueError, match="two classes"):
        seg.refit_classifier(img, np.ones_like(mask))
    with pytest.raises(ValueError, match="masks"):
        seg.refit_classifier(img, mask[:-1])
