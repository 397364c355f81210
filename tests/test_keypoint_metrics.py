"""Tests for the keypoint metrics of skhyper.metrics: pck, nme and inter_ocular_distance."""

from __future__ import annotations

import numpy as np
import pytest

import skhyper.metrics
from skhyper.metrics import inter_ocular_distance, nme, pck

NAN = np.nan


@pytest.fixture
def pair():
    """Two images, three keypoints; keypoint 2 of image 0 is not annotated.

    Distances of the predictions: image 0: 0.5, 2, (ignored); image 1: 5, 1, missing (NaN).
    """
    y_true = np.array(
        [
            [[0.0, 0.0], [10.0, 0.0], [NAN, NAN]],
            [[0.0, 0.0], [20.0, 0.0], [10.0, 10.0]],
        ]
    )
    y_pred = np.array(
        [
            [[0.5, 0.0], [10.0, 2.0], [5.0, 5.0]],
            [[3.0, 4.0], [20.0, 1.0], [NAN, NAN]],
        ]
    )
    return y_true, y_pred


def test_public_names():
    for name in ("pck", "nme", "inter_ocular_distance"):
        assert name in skhyper.metrics.__all__
        assert callable(getattr(skhyper.metrics, name))
    # the segmentation names are still there
    for name in ("mean_iou", "foreground_iou", "get_scorer", "mean_iou_scorer"):
        assert name in skhyper.metrics.__all__


# ---------------------------------------------------------------- pck


def test_pck_hand_computed(pair):
    y_true, y_pred = pair
    # thresholds 1 px and 2 px: image 0 -> [ok, wrong], image 1 -> [wrong, ok, missing]
    assert pck(y_true, y_pred, threshold=0.1, normalizer=[10.0, 20.0]) == pytest.approx(2 / 5)
    np.testing.assert_allclose(
        pck(y_true, y_pred, threshold=0.1, normalizer=[10.0, 20.0], per_keypoint=True),
        [0.5, 0.5, 0.0],
    )
    # thresholds 3 px and 6 px: all annotated keypoints but the missing prediction
    assert pck(y_true, y_pred, threshold=0.3, normalizer=[10.0, 20.0]) == pytest.approx(4 / 5)


def test_pck_boundary_is_correct():
    y_true = np.zeros((1, 1, 2))
    y_pred = np.array([[[3.0, 4.0]]])  # distance 5
    assert pck(y_true, y_pred, threshold=0.5, normalizer=[10.0]) == 1.0
    assert pck(y_true, y_pred, threshold=0.49, normalizer=[10.0]) == 0.0


def test_pck_default_normalizer_is_longer_bbox_side(pair):
    y_true, y_pred = pair
    # bounding boxes of the annotated true keypoints: 10 x 0 and 20 x 10 -> 10 and 20
    for t in (0.1, 0.3):
        assert pck(y_true, y_pred, threshold=t) == pck(
            y_true, y_pred, threshold=t, normalizer=[10.0, 20.0]
        )


def test_pck_scalar_normalizer(pair):
    y_true, y_pred = pair
    assert pck(y_true, y_pred, threshold=0.1, normalizer=20.0) == pck(
        y_true, y_pred, threshold=0.1, normalizer=[20.0, 20.0]
    )


def test_pck_perfect_and_returns_float(pair):
    y_true, _ = pair
    score = pck(y_true, y_true)
    assert type(score) is float and score == 1.0


def test_pck_nan_prediction_counts_as_wrong():
    y_true = np.array([[[0.0, 0.0], [4.0, 0.0]]])
    y_pred = np.array([[[0.0, 0.0], [NAN, 0.0]]])  # one NaN coordinate is enough
    assert pck(y_true, y_pred, normalizer=[1.0]) == 0.5
    y_pred_inf = np.array([[[0.0, 0.0], [np.inf, 0.0]]])
    assert pck(y_true, y_pred_inf, normalizer=[1.0]) == 0.5


def test_pck_per_keypoint_nan_for_never_annotated():
    y_true = np.array([[[0.0, 0.0], [NAN, NAN], [5.0, 5.0]]])
    got = pck(y_true, y_true.copy(), normalizer=[1.0], per_keypoint=True)
    assert got.shape == (3,)
    np.testing.assert_array_equal(got, [1.0, NAN, 1.0])


def test_pck_normalizer_ignored_for_images_without_annotation():
    y_true = np.array([[[0.0, 0.0]], [[NAN, NAN]]])
    y_pred = np.array([[[0.0, 0.5]], [[1.0, 1.0]]])
    assert pck(y_true, y_pred, normalizer=[10.0, NAN]) == 1.0
    assert pck(y_true, y_pred, normalizer=[10.0, -1.0]) == 1.0


def test_pck_accepts_lists_and_ints():
    y_true = [[[0, 0], [10, 0]]]
    y_pred = [[[1, 0], [10, 3]]]
    assert pck(y_true, y_pred, threshold=0.1) == 0.5


# ---------------------------------------------------------------- nme


def test_nme_hand_computed():
    y_true = np.array([[[0.0, 0.0], [10.0, 0.0]], [[0.0, 0.0], [NAN, NAN]]])
    y_pred = np.array([[[3.0, 4.0], [10.0, 0.0]], [[0.0, 2.0], [7.0, 7.0]]])
    # errors: 5 / 10, 0 / 10, 2 / 4; the unannotated keypoint is ignored
    assert nme(y_true, y_pred, normalizer=[10.0, 4.0]) == pytest.approx(1 / 3)
    np.testing.assert_allclose(
        nme(y_true, y_pred, normalizer=[10.0, 4.0], per_keypoint=True), [0.5, 0.0]
    )
    # default normalizer: image 0 bbox 10 x 0 -> 10; image 1 has one keypoint -> error
    with pytest.raises(ValueError, match="'normalizer'.*image\\(s\\) \\[1\\]"):
        nme(y_true, y_pred)


def test_nme_default_normalizer():
    y_true = np.array([[[0.0, 0.0], [8.0, 6.0]]])  # bbox 8 x 6 -> 8
    y_pred = np.array([[[0.0, 4.0], [8.0, 6.0]]])
    assert nme(y_true, y_pred) == pytest.approx((4 / 8 + 0) / 2)


def test_nme_per_keypoint_nan_for_never_annotated():
    y_true = np.array([[[0.0, 0.0], [NAN, NAN], [4.0, 0.0]]])
    y_pred = np.array([[[0.0, 1.0], [NAN, NAN], [4.0, 0.0]]])
    got = nme(y_true, y_pred, normalizer=2.0, per_keypoint=True)
    np.testing.assert_array_equal(got, [0.5, NAN, 0.0])
    assert type(nme(y_true, y_pred, normalizer=2.0)) is float


def test_nme_nan_prediction_raises():
    y_true = np.array([[[0.0, 0.0], [4.0, 0.0]]])
    y_pred = np.array([[[0.0, 0.0], [NAN, NAN]]])
    with pytest.raises(ValueError, match="'y_pred' parameter of nme.*image 0, keypoint 1"):
        nme(y_true, y_pred, normalizer=[1.0])
    with pytest.raises(ValueError, match="'y_pred'"):
        nme(y_true, np.array([[[0.0, 0.0], [np.inf, 0.0]]]), normalizer=[1.0])
    # a NaN prediction of an unannotated keypoint is fine
    y_true[0, 1] = NAN
    assert nme(y_true, y_pred, normalizer=[1.0]) == 0.0


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("func", [pck, nme])
def test_shape_mismatch(func):
    with pytest.raises(ValueError, match="'y_pred' parameter of .* has shape \\(1, 3, 2\\)"):
        func(np.zeros((1, 2, 2)), np.zeros((1, 3, 2)), normalizer=1.0)
    with pytest.raises(ValueError, match="'y_pred'.*\\(2, 2, 2\\)"):
        func(np.zeros((1, 2, 2)), np.zeros((2, 2, 2)), normalizer=1.0)


@pytest.mark.parametrize("func", [pck, nme])
@pytest.mark.parametrize("param", ["y_true", "y_pred"])
@pytest.mark.parametrize("shape", [(4, 2), (1, 4, 3), (1, 4, 2, 1), (4,)])
def test_wrong_ndim_or_last_dim(func, param, shape):
    good = np.zeros((1, 4, 2))
    args = {"y_true": good, "y_pred": good}
    args[param] = np.zeros(shape)
    with pytest.raises(ValueError, match=f"'{param}' parameter .*\\(n_images, n_keypoints, 2\\)"):
        func(args["y_true"], args["y_pred"], normalizer=1.0)


def test_single_image_hint():
    with pytest.raises(ValueError, match="np.newaxis"):
        pck(np.zeros((4, 2)), np.zeros((4, 2)))


@pytest.mark.parametrize("func", [pck, nme])
@pytest.mark.parametrize("shape", [(0, 4, 2), (3, 0, 2)])
def test_empty_input(func, shape):
    with pytest.raises(ValueError, match="'y_true' parameter .*at least one image"):
        func(np.zeros(shape), np.zeros(shape))


@pytest.mark.parametrize("func", [pck, nme])
def test_nothing_annotated(func):
    y = np.full((2, 3, 2), NAN)
    with pytest.raises(ValueError, match="no annotated keypoint"):
        func(y, y, normalizer=1.0)


@pytest.mark.parametrize("func", [pck, nme])
def test_infinite_truth(func):
    y_true = np.array([[[np.inf, 0.0]]])
    with pytest.raises(ValueError, match="'y_true' parameter .*infinite"):
        func(y_true, np.zeros((1, 1, 2)), normalizer=1.0)


@pytest.mark.parametrize("func", [pck, nme])
def test_bad_dtype(func):
    with pytest.raises(TypeError, match="'y_true'.*dtype"):
        func(np.zeros((1, 2, 2), dtype=bool), np.zeros((1, 2, 2)), normalizer=1.0)


@pytest.mark.parametrize("func", [pck, nme])
@pytest.mark.parametrize(
    "normalizer, match",
    [
        ([1.0], "must have shape \\(n_images,\\) = \\(2,\\).*got shape \\(1,\\)"),
        ([[1.0, 1.0]], "must have shape \\(n_images,\\)"),
        ([1.0, 0.0], "must be finite and > 0.*image\\(s\\) \\[1\\]"),
        ([-2.0, 1.0], "must be finite and > 0.*image\\(s\\) \\[0\\]"),
        ([1.0, NAN], "must be finite and > 0"),
        ([np.inf, 1.0], "must be finite and > 0"),
        (0.0, "must be finite and > 0"),
    ],
)
def test_bad_normalizer(func, normalizer, match):
    y = np.array([[[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [2.0, 1.0]]])
    with pytest.raises(ValueError, match=f"'normalizer' parameter of {func.__name__} {match}"):
        func(y, y, normalizer=normalizer)


@pytest.mark.parametrize("func", [pck, nme])
def test_normalizer_not_numbers(func):
    y = np.zeros((1, 1, 2))
    with pytest.raises(TypeError, match="'normalizer'"):
        func(y, y, normalizer="ten")
    with pytest.raises(TypeError, match="'normalizer'"):
        func(y, y, normalizer=True)


@pytest.mark.parametrize("func", [pck, nme])
def test_default_normalizer_degenerate(func):
    y = np.array([[[5.0, 5.0], [NAN, NAN]]])  # one annotated keypoint: bbox side 0
    with pytest.raises(ValueError, match="'normalizer' parameter .* is None.*image\\(s\\) \\[0\\]"):
        func(y, y)


@pytest.mark.parametrize("threshold", [0, 0.0, -0.1, np.inf, NAN, True, "0.1", None])
def test_bad_threshold(pair, threshold):
    y_true, y_pred = pair
    with pytest.raises(ValueError, match="'threshold' parameter of pck must be a finite number"):
        pck(y_true, y_pred, threshold=threshold)


# ---------------------------------------------------------------- inter_ocular_distance


def test_inter_ocular_distance():
    kp = np.array(
        [
            [[10.0, 20.0], [40.0, 60.0], [25.0, 40.0]],
            [[0.0, 0.0], [NAN, NAN], [5.0, 5.0]],
            [[1.0, 1.0], [4.0, 5.0], [NAN, 0.0]],
        ]
    )
    got = inter_ocular_distance(kp, left=1, right=0)
    assert got.shape == (3,) and got.dtype == np.float64
    np.testing.assert_allclose(got, [50.0, NAN, 5.0])
    np.testing.assert_allclose(
        inter_ocular_distance(kp, left=0, right=2), [25.0, np.hypot(5, 5), NAN]
    )
    np.testing.assert_array_equal(
        inter_ocular_distance(kp, left=np.int64(0), right=1),
        inter_ocular_distance(kp, left=1, right=0),
    )


def test_inter_ocular_distance_as_normalizer():
    y_true = np.array([[[0.0, 0.0], [10.0, 0.0], [5.0, 5.0]]])
    y_pred = y_true + [[[0.0, 0.5], [0.0, 0.0], [0.0, 2.0]]]
    iod = inter_ocular_distance(y_true, left=1, right=0)
    assert pck(y_true, y_pred, threshold=0.1, normalizer=iod) == pytest.approx(2 / 3)
    assert nme(y_true, y_pred, normalizer=iod) == pytest.approx((0.05 + 0 + 0.2) / 3)


def test_inter_ocular_distance_requires_indices():
    kp = np.zeros((1, 3, 2))
    with pytest.raises(TypeError):
        inter_ocular_distance(kp)  # left and right are required
    with pytest.raises(TypeError):
        inter_ocular_distance(kp, 0, 1)  # keyword-only


@pytest.mark.parametrize(
    "left, right, param",
    [(3, 0, "left"), (-1, 0, "left"), (0, 1.0, "right"), (0, True, "right"), (None, 1, "left")],
)
def test_inter_ocular_distance_bad_index(left, right, param):
    kp = np.zeros((1, 3, 2))
    match = f"'{param}' parameter of inter_ocular_distance .*\\[0, 3\\)"
    with pytest.raises(ValueError, match=match):
        inter_ocular_distance(kp, left=left, right=right)


def test_inter_ocular_distance_same_index():
    with pytest.raises(ValueError, match="'left' and 'right' .* different"):
        inter_ocular_distance(np.zeros((1, 3, 2)), left=1, right=1)


@pytest.mark.parametrize("shape", [(3, 2), (1, 3, 3), (0, 3, 2)])
def test_inter_ocular_distance_bad_keypoints(shape):
    with pytest.raises(ValueError, match="'keypoints' parameter of inter_ocular_distance"):
        inter_ocular_distance(np.zeros(shape), left=0, right=1)
