"""HypercolumnKeypointLocator: folded heatmaps equal the naive per-pixel heatmaps; frames and
coordinates; NaN keypoints; boxes outside images; errors; pickling; the face dev set."""

from __future__ import annotations

import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skhyper import HypercolumnKeypointLocator, HypercolumnTransformer
from skhyper.keypoints import (
    clip_boxes,
    crop_frames,
    from_frame,
    heatmap_peaks,
    keypoint_targets,
    to_frame,
)
from skhyper.metrics import pck

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "face_keypoints"
LAYERS = ["blocks.1", "blocks.2", "blocks.4"]


def dots(rng, n=8, size=(56, 64)):
    """Noise images with a bright square at keypoint 0 and a green disc at keypoint 1."""
    H, W = size
    images = (rng.random((n, H, W, 3)) * 70).astype(np.uint8)
    kp = np.stack([rng.uniform([10, 10], [W - 10, H - 10], (n, 2)) for _ in range(2)], axis=1)
    yy, xx = np.mgrid[:H, :W]
    for img, (a, b) in zip(images, kp):
        img[(np.abs(xx - a[0]) <= 2) & (np.abs(yy - a[1]) <= 2)] = 255
        img[(xx - b[0]) ** 2 + (yy - b[1]) ** 2 <= 9, 1] = 220
    return images, kp


@pytest.fixture(scope="module")
def data():
    return dots(np.random.default_rng(0))


@pytest.fixture(scope="module")
def lite():
    return HypercolumnTransformer(layers=LAYERS, device="cpu")


def naive_heatmaps(loc, images, boxes=None):
    """The definition: the full hypercolumn of every frame pixel -> each classifier."""
    hc = loc.hypercolumns_
    if boxes is None:
        boxes = np.array([[0, 0, im.shape[1], im.shape[0]] for im in images], float)
    frames = crop_frames(list(images), clip_boxes(boxes, [im.shape[:2] for im in images]),
                         loc.frame_size)
    out = []
    for frame in frames:
        dense = hc.transform_dense(frame)
        S, _, D = dense.shape
        flat = dense.reshape(S * S, D)
        if loc.strategy == "multiclass":
            p = loc.estimators_[0].predict_proba(flat)[:, 1:]
        else:
            p = np.stack([e.predict_proba(flat)[:, 1] for e in loc.estimators_], axis=1)
        out.append(p.T.reshape(-1, S, S))
    return out


@pytest.mark.parametrize("grid_size,strategy", [(1, "per_keypoint"), (3, "per_keypoint"),
                                                (2, "multiclass"), (1, "multiclass")])
def test_folded_heatmaps_equal_naive(lite, data, grid_size, strategy):
    images, kp = data
    loc = HypercolumnKeypointLocator(lite, grid_size=grid_size, strategy=strategy,
                                     frame_size=48, radius=0.08, n_negatives_per_image=150,
                                     random_state=0).fit(images, kp)
    assert loc.prediction_path_ == "folded"
    boxes = np.array([[4, 3, 60, 50]] * 3, float)
    for bx in (None, boxes):
        folded = loc.predict_heatmaps(images[:3], boxes=bx)
        naive = naive_heatmaps(loc, images[:3], bx)
        for f, n in zip(folded, naive):
            assert f.shape == (2, 48, 48)
            np.testing.assert_allclose(f, n, atol=1e-4, rtol=0)


def test_locator_finds_the_dots(lite, data):
    images, kp = data
    loc = HypercolumnKeypointLocator(lite, grid_size=1, frame_size=48, radius=0.08,
                                     random_state=0).fit(images[:6], kp[:6])
    pred = loc.predict(images[6:])
    err = np.linalg.norm(pred - kp[6:], axis=2)
    assert pred.shape == (2, 2, 2) and err.max() < 4, err  # unseen images, pixel accuracy
    assert loc.score(images[6:], kp[6:]) == 1.0  # PCK@0.1 of the box (64 px): within 6.4 px


def test_chunked_path_for_non_linear_classifiers(lite, data):
    images, kp = data
    smooth = make_pipeline(StandardScaler(), FunctionTransformer(np.tanh),
                           LogisticRegression(max_iter=500))  # non-linear: does not fold
    loc = HypercolumnKeypointLocator(lite, smooth, grid_size=2, frame_size=32, radius=0.1,
                                     n_negatives_per_image=100, random_state=0)
    loc.fit(images[:4], kp[:4])
    assert loc.prediction_path_ == "chunked" and loc.folded_ is None
    heat = loc.predict_heatmaps(images[:2])
    for h, n in zip(heat, naive_heatmaps(loc, images[:2])):
        np.testing.assert_allclose(h, n, atol=1e-4)
    forest = clone(loc).set_params(classifier=RandomForestClassifier(20, random_state=0))
    forest.fit(images[:4], kp[:4])
    assert forest.prediction_path_ == "chunked"
    assert forest.predict(images[4:]).shape == (4, 2, 2)


def test_frames_and_coordinates():
    rng = np.random.default_rng(1)
    img = rng.random((30, 40, 3)).astype(np.float32)
    whole = crop_frames([img], np.array([[0.0, 0, 40, 30]]), 40)[0]
    # a 40x30 box warped to 40x40: rows are resampled as F.interpolate does (no shrink)
    ref = F.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None], size=(40, 40),
                        mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(whole, ref, atol=1e-5)
    boxes = np.array([[5.0, 2.0, 25.0, 22.0]])
    pts = np.array([[[5.0, 2.0], [14.5, 11.5], [24.0, 21.0]]])
    frame_pts = to_frame(pts, boxes, 40)
    np.testing.assert_allclose(frame_pts[0, 1], [19.5, 19.5])  # the box centre
    np.testing.assert_allclose(from_frame(frame_pts, boxes, 40), pts)
    # the frame pixel at a keypoint shows the image pixel at that keypoint
    crop = crop_frames([img], boxes, 20)[0]  # 1:1 scale: an exact crop
    np.testing.assert_allclose(crop, img[2:22, 5:25], atol=1e-6)


def test_targets_and_peaks():
    rng = np.random.default_rng(0)
    pts = np.array([[10.0, 10.0], [13.0, 10.0], [np.nan, np.nan]])
    rc, y = keypoint_targets(pts, 30, 2.5, n_positives=None, n_negatives=50, rng=rng)
    r, c = rc
    d0 = np.hypot(c - 10, r - 10)
    d1 = np.hypot(c - 13, r - 10)
    assert set(np.unique(y)) == {0, 1, 2}  # keypoint 2 (NaN) has no positives
    assert np.all(np.minimum(d0, d1)[y > 0] <= 2.5)
    assert np.all((d0 <= d1)[y == 1]) and np.all((d1 <= d0)[y == 2])  # nearest keypoint
    assert np.all(np.minimum(d0, d1)[y == 0] > 2.5) and (y == 0).sum() == 50
    yy, xx = np.mgrid[:20, :20]
    heat = -((xx - 7.25) ** 2 + (yy - 12.6) ** 2)[None].astype(float)
    np.testing.assert_allclose(heatmap_peaks(heat)[0], [7.25, 12.6], atol=1e-9)


def test_nan_keypoints_are_ignored(lite, data):
    images, kp = data
    kp = kp.copy()
    kp[0, 1] = np.nan
    kp[3, 0] = np.nan
    loc = HypercolumnKeypointLocator(lite, grid_size=1, frame_size=40, radius=0.08,
                                     random_state=0).fit(images, kp)
    pred = loc.predict(images)
    assert np.isfinite(pred).all()
    ok = ~np.isnan(kp).any(axis=2)
    full = pck(kp, pred, threshold=0.1, normalizer=64.0)
    assert loc.score(images, kp) == pytest.approx(full)
    assert full == pytest.approx(pck(kp[ok][:, None], pred[ok][:, None], normalizer=64.0))


def test_boxes_outside_the_image_are_clipped_with_a_warning(lite, data):
    images, kp = data
    boxes = np.array([[-8, -4, 70, 60]] * len(images), float)
    with pytest.warns(UserWarning, match="clipped"):
        loc = HypercolumnKeypointLocator(lite, grid_size=1, frame_size=32,
                                         random_state=0).fit(images, kp, boxes=boxes)
    with pytest.warns(UserWarning, match="clipped"):
        clipped = loc.predict(images, boxes=boxes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = loc.predict(images)
    np.testing.assert_allclose(clipped, whole)  # the clipped box is the whole image
    with pytest.raises(ValueError, match="wholly outside"):
        loc.predict(images[:1], boxes=[[100, 100, 120, 120]])


def test_errors(lite, data):
    images, kp = data
    loc = HypercolumnKeypointLocator(lite, grid_size=1, frame_size=32)
    with pytest.raises(ValueError, match="'keypoints' parameter has 7 rows but there are 8 images"):
        loc.fit(images, kp[:7])
    with pytest.raises(ValueError, match=r"'keypoints' parameter "
                                         r"must have shape \(n_images, n_keypoints"):
        loc.fit(images, kp[..., :1])
    with pytest.raises(TypeError, match="'keypoints' parameter must be a numeric array"):
        loc.fit(images, "nope")
    bad = kp.copy()
    bad[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"annotated in no image \(indices \[1\]\)"):
        loc.fit(images, bad)
    with pytest.raises(ValueError, match="boxes"):
        loc.fit(images, kp, boxes=np.zeros((8, 3)))
    with pytest.raises(ValueError, match="boxes"):
        loc.fit(images, kp, boxes=np.zeros((5, 4)))
    with pytest.raises(ValueError, match="score_normalizer"):
        clone(loc).set_params(score_normalizer=(0, 9)).fit(images, kp).score(images, kp)
    with pytest.raises(ValueError, match="radius"):
        clone(loc).set_params(radius=0.0).fit(images, kp)
    with pytest.raises(ValueError, match="images"):
        loc.fit(images[..., :2], kp)


def test_joblib_round_trip_and_clone(lite, data, tmp_path):
    images, kp = data
    loc = HypercolumnKeypointLocator(lite, grid_size=2, frame_size=32, random_state=0)
    assert clone(loc).get_params()["grid_size"] == 2
    loc.fit(images, kp)
    joblib.dump(loc, tmp_path / "loc.joblib")
    back = joblib.load(tmp_path / "loc.joblib")
    np.testing.assert_array_equal(back.predict(images), loc.predict(images))


@pytest.mark.slow
@pytest.mark.skipif(not FACES.is_dir(), reason=f"face keypoint dev set not found at {FACES}")
def test_faces_beat_the_mean_shape():
    from skhyper.datasets import load_face_keypoints

    train = load_face_keypoints(FACES, split="train")
    test = load_face_keypoints(FACES, split="test")
    n_tr, n_te = 40, 20
    loc = HypercolumnKeypointLocator(grid_size=1, frame_size=128, n_positives_per_keypoint=20,
                                     n_negatives_per_image=200, random_state=0,
                                     score_normalizer=(4, 9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a few boxes reach outside
        loc.fit(train.images[:n_tr], train.keypoints[:n_tr], boxes=train.boxes[:n_tr])
        score = loc.score(test.images[:n_te], test.keypoints[:n_te], boxes=test.boxes[:n_te])
    side = (train.boxes[:n_tr, 2:] - train.boxes[:n_tr, :2])[:, None]
    rel = ((train.keypoints[:n_tr] - train.boxes[:n_tr, None, :2]) / side).mean(0)
    tb = test.boxes[:n_te]
    mean_shape = tb[:, None, :2] + rel * (tb[:, 2:] - tb[:, :2])[:, None]
    base = pck(test.keypoints[:n_te], mean_shape, normalizer=test.iod[:n_te])
    assert score > base + 0.2, (score, base)


def test_microscopy_channels_and_intensity(data):
    """2-channel uint16 images: per-channel features, percentile intensity range."""
    images, kp = data
    micro = (images[..., :2].astype(np.uint16) * 12 + 100)  # values ~100..3160, 2 channels
    hc = HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None,
                                device="cpu", channel_strategy="per_channel",
                                intensity_range=("percentile", 0.5, 99.5))
    loc = HypercolumnKeypointLocator(hc, grid_size=1, frame_size=40, radius=0.08,
                                     random_state=0).fit(micro[:6], kp[:6])
    assert loc.hypercolumns_.n_channels_in_ == 2
    pred = loc.predict(micro[6:])
    assert np.linalg.norm(pred - kp[6:], axis=2).max() < 6
    with pytest.raises(ValueError, match="channel"):
        loc.predict(images[6:, ..., :1].repeat(4, axis=-1))


def test_keypoint_outside_every_frame_is_refused():
    rng = np.random.default_rng(0)
    images = (rng.random((4, 48, 48, 3)) * 60).astype(np.uint8)
    kp = rng.uniform(12, 36, (4, 2, 2))
    kp[:, 1] = [200.0, 300.0]  # annotated, but outside every image
    loc = HypercolumnKeypointLocator(
        HypercolumnTransformer("resnet18", layers=["relu"], weights=None, device="cpu"),
        grid_size=1, frame_size=32, random_state=0)
    with pytest.raises(ValueError, match=r"'keypoints' parameter has keypoints \[1\] that lie "
                                         "outside every frame"):
        loc.fit(images, kp)
