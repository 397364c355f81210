"""Tests for skhyper.metrics: checked against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics
from sklearn.base import BaseEstimator
from sklearn.model_selection import KFold, cross_val_score

from skhyper.metrics import (
    confusion_matrix,
    foreground_iou,
    foreground_iou_scorer,
    get_scorer,
    iou_per_class,
    mean_iou,
    mean_iou_scorer,
)


def _random_maps(rng, shapes, n_classes, offset=0):
    return [rng.integers(0, n_classes, size=s) + offset for s in shapes]


def _flat(maps):
    return np.concatenate([np.asarray(m).ravel() for m in maps])


# ---------------------------------------------------------------- confusion_matrix


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    shapes = [(7, 5), (3, 11), (6, 6)]
    y_true = _random_maps(rng, shapes, 4)
    y_pred = _random_maps(rng, shapes, 5)  # label 4 only predicted
    expected = sklearn.metrics.confusion_matrix(_flat(y_true), _flat(y_pred))
    got = confusion_matrix(y_true, y_pred)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("labels", [[2, 0, 1], [3, 1], [0, 1, 2, 3, 4, 7]])
def test_confusion_matrix_with_labels_matches_sklearn(labels):
    rng = np.random.default_rng(3)
    shapes = [(8, 9), (4, 4)]
    y_true = _random_maps(rng, shapes, 5)
    y_pred = _random_maps(rng, shapes, 5)
    expected = sklearn.metrics.confusion_matrix(_flat(y_true), _flat(y_pred), labels=labels)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, labels=labels), expected)


def test_confusion_matrix_wide_label_range_uses_same_counts():
    # Labels far apart go through the searchsorted path instead of the lookup table.
    rng = np.random.default_rng(4)
    values = np.array([-(10**9), 0, 5, 10**9])
    y_true = values[rng.integers(0, 4, size=(2, 10, 10))]
    y_pred = values[rng.integers(0, 4, size=(2, 10, 10))]
    expected = sklearn.metrics.confusion_matrix(y_true.ravel(), y_pred.ravel())
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred), expected)
    labels = [10**9, 0]
    expected = sklearn.metrics.confusion_matrix(y_true.ravel(), y_pred.ravel(), labels=labels)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, labels=labels), expected)


def test_input_forms_agree():
    rng = np.random.default_rng(5)
    stack_true = rng.integers(0, 3, size=(3, 4, 5))
    stack_pred = rng.integers(0, 3, size=(3, 4, 5))
    from_stack = confusion_matrix(stack_true, stack_pred)
    from_list = confusion_matrix(list(stack_true), list(stack_pred))
    from_tuple = confusion_matrix(tuple(stack_true), list(stack_pred))
    from_one = confusion_matrix(stack_true.reshape(12, 5), stack_pred.reshape(12, 5))
    for cm in (from_list, from_tuple, from_one):
        np.testing.assert_array_equal(cm, from_stack)


def test_bool_and_integer_valued_float_maps():
    y_true = np.array([[0, 1, 1], [0, 0, 1]])
    y_pred = np.array([[0, 1, 0], [1, 0, 1]])
    expected = confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(confusion_matrix(y_true.astype(float), y_pred > 0), expected)
    np.testing.assert_array_equal(
        confusion_matrix(y_true.astype(np.uint8), y_pred.astype(np.float32)), expected
    )


def test_prediction_outside_labels_is_a_miss_not_a_column():
    y_true = np.array([[1, 1, 2, 2]])
    y_pred = np.array([[1, 9, 2, 1]])
    cm = confusion_matrix(y_true, y_pred, labels=[1, 2])
    np.testing.assert_array_equal(cm, [[1, 0], [1, 1]])  # row 1 sums to 1 of 2 pixels
    # The miss still lowers class 1's IoU: TP 1, FP 1 (the 2 predicted as 1), FN 1 (the 9).
    np.testing.assert_allclose(iou_per_class(y_true, y_pred, labels=[1, 2]), [1 / 3, 1 / 2])


# ---------------------------------------------------------------- iou_per_class, mean_iou


def test_hand_computed_small_map():
    y_true = np.array([[0, 0, 1], [1, 1, 2]])
    y_pred = np.array([[0, 1, 1], [1, 2, 2]])
    # class 0: TP 1, FP 0, FN 1 -> 1/2; class 1: TP 2, FP 1, FN 1 -> 1/2; class 2: TP 1, FP 1.
    np.testing.assert_allclose(iou_per_class(y_true, y_pred), [1 / 2, 1 / 2, 1 / 2])
    assert mean_iou(y_true, y_pred) == pytest.approx(0.5)
    y_pred2 = np.array([[0, 0, 1], [1, 1, 1]])
    # class 2 missed: 0 -> 1, 1 -> 3/4, 2 -> 0
    np.testing.assert_allclose(iou_per_class(y_true, y_pred2), [1.0, 0.75, 0.0])
    assert mean_iou(y_true, y_pred2) == pytest.approx(1.75 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mean_iou_matches_sklearn_jaccard_macro(seed):
    rng = np.random.default_rng(seed)
    shapes = [(9, 7), (5, 12), (10, 10)]
    y_true = _random_maps(rng, shapes, 4)
    y_pred = _random_maps(rng, shapes, 4)
    flat_true, flat_pred = _flat(y_true), _flat(y_pred)
    assert set(np.unique(flat_true)) == set(np.unique(flat_pred)) == {0, 1, 2, 3}
    expected_each = sklearn.metrics.jaccard_score(flat_true, flat_pred, average=None)
    np.testing.assert_allclose(iou_per_class(y_true, y_pred), expected_each)
    expected = sklearn.metrics.jaccard_score(flat_true, flat_pred, average="macro")
    assert mean_iou(y_true, y_pred) == pytest.approx(expected)


def test_absent_class_is_nan_and_skipped_in_mean():
    y_true = np.array([[0, 1], [1, 1]])
    y_pred = np.array([[0, 1], [1, 0]])
    iou = iou_per_class(y_true, y_pred, labels=[0, 1, 5])
    np.testing.assert_allclose(iou, [1 / 2, 2 / 3, np.nan])
    assert mean_iou(y_true, y_pred, labels=[0, 1, 5]) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_ignore_label_excludes_true_pixels():
    y_true = np.array([[0, 1, 255], [1, 255, 0]])
    y_pred = np.array([[0, 1, 1], [0, 0, 0]])
    cm = confusion_matrix(y_true, y_pred, ignore_label=255)
    np.testing.assert_array_equal(cm, [[2, 0], [1, 1]])
    keep = y_true != 255
    expected = sklearn.metrics.jaccard_score(y_true[keep], y_pred[keep], average="macro")
    assert mean_iou(y_true, y_pred, ignore_label=255) == pytest.approx(expected)
    # Without ignoring, 255 becomes a class and the score changes.
    assert confusion_matrix(y_true, y_pred).shape == (3, 3)
    assert mean_iou(y_true, y_pred) != pytest.approx(expected)


def test_predicted_ignore_label_is_a_miss():
    y_true = np.array([[1, 1, 255]])
    y_pred = np.array([[1, 255, 255]])
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, ignore_label=255), [[1]])
    np.testing.assert_allclose(iou_per_class(y_true, y_pred, ignore_label=255), [0.5])


def test_lists_of_different_sizes_equal_flattened_concatenation():
    rng = np.random.default_rng(7)
    shapes = [(3, 17), (20, 2), (1, 1), (8, 8)]
    y_true = _random_maps(rng, shapes, 3, offset=1)
    y_pred = _random_maps(rng, shapes, 3, offset=1)
    joined_true = _flat(y_true)[None, :]
    joined_pred = _flat(y_pred)[None, :]
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred), confusion_matrix(joined_true, joined_pred)
    )
    assert mean_iou(y_true, y_pred) == mean_iou(joined_true, joined_pred)
    assert foreground_iou(y_true, y_pred, background=1) == foreground_iou(
        joined_true, joined_pred, background=1
    )


def test_perfect_prediction_scores_one():
    rng = np.random.default_rng(8)
    y = _random_maps(rng, [(5, 6), (7, 3)], 4)
    assert mean_iou(y, [m.copy() for m in y]) == 1.0
    assert foreground_iou(y, y) == 1.0
    assert foreground_iou(y, y, average="image") == 1.0
    np.testing.assert_array_equal(iou_per_class(y, y), np.ones(4))


def test_mean_iou_no_labelled_pixels():
    y_true = np.full((2, 3), 255)
    y_pred = np.zeros((2, 3), dtype=int)
    with pytest.raises(ValueError, match="no labelled pixels"):
        mean_iou(y_true, y_pred, ignore_label=255)


# ---------------------------------------------------------------- foreground_iou


def test_foreground_iou_pooled_and_image_differ():
    # Image 0: a big object found exactly (64 px, IoU 1). Image 1: a 4 px object missed
    # (IoU 0). Pooled: 64 / 68; per image: (1 + 0) / 2.
    t0 = np.zeros((10, 10), dtype=int)
    t0[:8, :8] = 1
    t1 = np.zeros((4, 4), dtype=int)
    t1[:2, :2] = 1
    y_true = [t0, t1]
    y_pred = [t0.copy(), np.zeros_like(t1)]
    assert foreground_iou(y_true, y_pred) == pytest.approx(64 / 68)
    assert foreground_iou(y_true, y_pred, average="pooled") == pytest.approx(64 / 68)
    assert foreground_iou(y_true, y_pred, average="image") == pytest.approx(0.5)


def test_foreground_iou_merges_foreground_labels_and_background_param():
    y_true = np.array([[0, 1, 2, 2]])
    y_pred = np.array([[0, 2, 2, 0]])
    # Foreground = non-zero: true {1, 2, 3}, pred {1, 2} -> 2 / 3.
    assert foreground_iou(y_true, y_pred) == pytest.approx(2 / 3)
    # background=2: true fg {0, 1}, pred fg {0, 3} -> 1 / 3.
    assert foreground_iou(y_true, y_pred, background=2) == pytest.approx(1 / 3)


def test_foreground_iou_empty_image_scores_one_in_image_average():
    y_true = [np.zeros((2, 2), dtype=int), np.array([[1, 1], [0, 0]])]
    y_pred = [np.zeros((2, 2), dtype=int), np.array([[1, 0], [0, 0]])]
    assert foreground_iou(y_true, y_pred, average="image") == pytest.approx((1.0 + 0.5) / 2)
    assert foreground_iou(y_true, y_pred) == pytest.approx(0.5)
    # Predicting foreground on an empty image scores 0 for that image.
    y_pred[0] = np.ones((2, 2), dtype=int)
    assert foreground_iou(y_true, y_pred, average="image") == pytest.approx((0.0 + 0.5) / 2)
    nothing = [np.zeros((3, 3), dtype=int)]
    assert foreground_iou(nothing, nothing) == 1.0


def test_foreground_iou_ignore_label():
    y_true = np.array([[1, 1, 9, 0]])
    y_pred = np.array([[1, 0, 1, 1]])
    # The ignored pixel's predicted foreground does not count: inter 1, union 3.
    assert foreground_iou(y_true, y_pred, ignore_label=9) == pytest.approx(1 / 3)
    assert foreground_iou(y_true, y_pred) == pytest.approx(2 / 4)
    # A fully ignored image is skipped in the per-image mean.
    y_true2 = [y_true, np.full((2, 2), 9)]
    y_pred2 = [y_pred, np.ones((2, 2), dtype=int)]
    assert foreground_iou(y_true2, y_pred2, ignore_label=9, average="image") == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no labelled pixels"):
        foreground_iou(np.full((2, 2), 9), np.ones((2, 2), dtype=int), ignore_label=9)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("func", [confusion_matrix, iou_per_class, mean_iou, foreground_iou])
def test_count_mismatch(func):
    maps = [np.zeros((2, 2), dtype=int)] * 3
    with pytest.raises(ValueError, match=r"'y_pred' parameter has 2 label maps but `y_true` has 3"):
        func(maps, maps[:2])


@pytest.mark.parametrize("func", [confusion_matrix, iou_per_class, mean_iou, foreground_iou])
def test_shape_mismatch_names_index_and_shapes(func):
    y_true = [np.zeros((2, 2), dtype=int), np.zeros((4, 6), dtype=int)]
    y_pred = [np.zeros((2, 2), dtype=int), np.zeros((4, 5), dtype=int)]
    with pytest.raises(
        ValueError, match=r"'y_pred\[1\]' parameter "
                          r"has shape \(4, 5\) but `y_true\[1\]` has shape \(4, 6\)"
    ):
        func(y_true, y_pred)


def test_single_map_shape_mismatch():
    with pytest.raises(ValueError, match=r"'y_pred' parameter has shape \(2, 3\) but `y_true` has"):
        mean_iou(np.zeros((2, 2), dtype=int), np.zeros((2, 3), dtype=int))


@pytest.mark.parametrize("empty", [[], (), np.zeros((0, 3, 3), dtype=int)])
@pytest.mark.parametrize("func", [confusion_matrix, mean_iou, foreground_iou])
def test_empty_input(func, empty):
    with pytest.raises(ValueError, match=r"'y_true' parameter must hold at least one label map"):
        func(empty, empty)


def test_empty_map():
    with pytest.raises(ValueError, match=r"'y_true\[0\]' parameter is an empty label map"):
        mean_iou([np.zeros((0, 4), dtype=int)], [np.zeros((0, 4), dtype=int)])


def test_bad_average():
    y = np.zeros((2, 2), dtype=int)
    with pytest.raises(ValueError, match=r"'average' .* must be 'pooled' or 'image'; got 'mean'"):
        foreground_iou(y, y, average="mean")


@pytest.mark.parametrize("func", [confusion_matrix, mean_iou, foreground_iou])
def test_fractional_labels(func):
    y_true = np.zeros((2, 2), dtype=int)
    y_pred = [np.array([[0.0, 1.0], [0.5, 0.0]])]
    with pytest.raises(ValueError, match=r"'y_pred\[0\]' parameter holds non-integer labels"):
        func([y_true], y_pred)
    with pytest.raises(ValueError, match=r"'y_true' parameter contains NaN"):
        func(np.full((2, 2), np.nan), y_true)


@pytest.mark.parametrize(
    "y, match",
    [
        (np.zeros(4, dtype=int), r"'y_true' parameter must be a \(height, width\) label map"),
        ([np.zeros(4, dtype=int)], r"'y_true\[0\]' parameter must be a 2-D"),
        (np.zeros((2, 2), dtype="U1"), r"'y_true' parameter must hold integer class labels"),
    ],
)
def test_bad_map_forms(y, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mean_iou(y, y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"labels": []}, r"'labels' parameter must be a non-empty 1-D"),
        ({"labels": [0, 0, 1]}, r"'labels' parameter must not repeat"),
        ({"labels": [0.5, 1]}, r"'labels' parameter must hold integer"),
        ({"labels": [0, 255], "ignore_label": 255}, r"'labels' parameter contains ignore_label"),
        ({"ignore_label": 1.5}, r"'ignore_label' parameter must be an integer or None"),
    ],
)
def test_bad_labels(kwargs, match):
    y = np.array([[0, 1], [1, 255]])
    with pytest.raises(ValueError, match=match):
        confusion_matrix(y, y, **kwargs)


def test_foreground_iou_bad_background_and_ignore():
    y = np.zeros((2, 2), dtype=int)
    with pytest.raises(ValueError, match=r"'background' parameter must be an integer; got"):
        foreground_iou(y, y, background=None)
    with pytest.raises(ValueError, match=r"'ignore_label' parameter equals background=0"):
        foreground_iou(y, y, ignore_label=0)


# ---------------------------------------------------------------- scorers


class _ThresholdSegmenter(BaseEstimator):
    """Predicts foreground where the (grayscale) image is above 0.5."""

    def fit(self, X, y=None):
        return self

    def predict(self, X):
        return [(np.asarray(m) > 0.5).astype(int) for m in X]


def _toy_segmentation(n=6, seed=0):
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for k in range(n):
        img = rng.random((5 + k, 4 + 2 * k))
        images.append(img)
        # The truth disagrees with the threshold rule on a few pixels.
        masks.append(((img > 0.5) ^ (rng.random(img.shape) < 0.2)).astype(int))
    return images, masks


def test_mean_iou_scorer_equals_metric():
    images, masks = _toy_segmentation()
    est = _ThresholdSegmenter().fit(images, masks)
    expected = mean_iou(masks, est.predict(images))
    assert 0.0 < expected < 1.0
    assert mean_iou_scorer(est, images, masks) == pytest.approx(expected)
    assert foreground_iou_scorer(est, images, masks) == pytest.approx(
        foreground_iou(masks, est.predict(images))
    )


def test_cross_val_score_with_mean_iou_scorer():
    images, masks = _toy_segmentation()
    scores = cross_val_score(_ThresholdSegmenter(), images, masks, cv=2, scoring=mean_iou_scorer)
    assert scores.shape == (2,)
    assert np.all(np.isfinite(scores))
    assert np.all((scores > 0) & (scores < 1))
    # Same split by hand.
    est = _ThresholdSegmenter()
    for score, (_, test) in zip(scores, KFold(2).split(images)):
        y_test = [masks[i] for i in test]
        assert score == pytest.approx(mean_iou(y_test, est.predict([images[i] for i in test])))


def test_get_scorer():
    images, masks = _toy_segmentation()
    est = _ThresholdSegmenter()
    pred = est.predict(images)
    assert get_scorer("mean_iou")(est, images, masks) == pytest.approx(mean_iou(masks, pred))
    assert get_scorer("foreground_iou")(est, images, masks) == pytest.approx(
        foreground_iou(masks, pred)
    )
    image_avg = get_scorer("foreground_iou_image")(est, images, masks)
    assert image_avg == pytest.approx(foreground_iou(masks, pred, average="image"))
    assert image_avg != pytest.approx(foreground_iou(masks, pred))
    assert get_scorer("mean_iou") is not mean_iou_scorer  # a copy
    assert get_scorer("accuracy")._score_func is sklearn.metrics.accuracy_score
    with pytest.raises(ValueError, match=r"'nope' is not a valid scoring value\. Use 'mean_iou'"):
        get_scorer("nope")
