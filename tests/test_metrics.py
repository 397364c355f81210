"""Tests for skhyper.metrics: checked against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics
from sklearn.base import BaseEstimator
from sklearn.model_selection import KFold, cross_val_score

from skhyper.metrics import (
    boundary_f_score,
    confusion_matrix,
    foreground_iou,
    foreground_iou_scorer,
    get_scorer,
    iou_per_class,
    mean_iou,
    mean_iou_scorer,
    trimap_iou,
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


# ---------------------------------------------------------------- boundary metrics


def _ref_boundary(m, labelled):
    """Pixels with a labelled 4-neighbour of another label, by explicit loops."""
    h, w = m.shape
    out = set()
    for r in range(h):
        for c in range(w):
            if not labelled[r, c]:
                continue
            for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                rr, cc = r + dr, c + dc
                if 0 <= rr < h and 0 <= cc < w and labelled[rr, cc] and m[rr, cc] != m[r, c]:
                    out.add((r, c))
    return out


def _ref_matched(points, targets, tolerance):
    return sum(
        min(np.hypot(r - tr, c - tc) for tr, tc in targets) <= tolerance for r, c in points
    )


def _ref_counts(t, p, tolerance, ignore_label=None, labels=None):
    """{class: (n_pred, matched_pred, n_true, matched_true)} for one image, by brute force."""
    labelled = np.ones(t.shape, bool) if ignore_label is None else t != ignore_label
    bt, bp = _ref_boundary(t, labelled), _ref_boundary(p, labelled)
    present = (set(t[labelled].tolist()) | set(p[labelled].tolist())) - {ignore_label}
    out = {}
    for k in sorted(present if labels is None else present & set(labels)):
        tk = [(r, c) for r, c in bt if t[r, c] == k]
        pk = [(r, c) for r, c in bp if p[r, c] == k]
        hit_p = _ref_matched(pk, tk, tolerance) if tk else 0
        hit_t = _ref_matched(tk, pk, tolerance) if pk else 0
        out[k] = (len(pk), hit_p, len(tk), hit_t)
    return out


def _ref_f(n_p, hit_p, n_t, hit_t):
    precision = hit_p / n_p if n_p else 1.0
    recall = hit_t / n_t if n_t else 1.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _ref_boundary_f(trues, preds, tolerance, ignore_label=None, labels=None, average="image"):
    counts = [_ref_counts(t, p, tolerance, ignore_label, labels) for t, p in zip(trues, preds)]
    if average == "image":
        return np.mean([np.mean([_ref_f(*n) for n in c.values()]) for c in counts if c])
    totals = {}
    for c in counts:
        for k, n in c.items():
            totals[k] = tuple(a + b for a, b in zip(totals.get(k, (0, 0, 0, 0)), n))
    return np.mean([_ref_f(*n) for n in totals.values()])


def _blobby_maps(rng, shapes, n_classes):
    """Random maps with regions a few pixels wide (upsampled coarse noise), plus a few flips."""
    out = []
    for h, w in shapes:
        coarse = rng.integers(0, n_classes, size=(h // 3 + 1, w // 3 + 1))
        m = np.repeat(np.repeat(coarse, 3, axis=0), 3, axis=1)[:h, :w]
        flip = rng.random((h, w)) < 0.05
        m[flip] = rng.integers(0, n_classes, size=int(flip.sum()))
        out.append(m)
    return out


def _square(shape=(6, 7), rows=(1, 5), cols=(1, 5)):
    m = np.zeros(shape, dtype=int)
    m[rows[0]:rows[1], cols[0]:cols[1]] = 1
    return m


@pytest.mark.parametrize("average", ["image", "pooled"])
def test_boundary_f_score_identical_maps_score_one(average):
    rng = np.random.default_rng(0)
    maps = _blobby_maps(rng, [(9, 12), (5, 4), (1, 7)], 4)
    for tolerance in (0, 1, 2.5):
        assert boundary_f_score(maps, maps, tolerance=tolerance, average=average) == 1.0
    stacked = np.stack(_blobby_maps(rng, [(6, 6)] * 3, 3))
    assert boundary_f_score(stacked, stacked, average=average) == 1.0


def test_boundary_f_score_one_pixel_shift():
    y_true = _square()
    y_pred = np.roll(y_true, 1, axis=1)  # stays inside the 6 x 7 image
    for tolerance in (1, 1.2, 2, 10):
        assert boundary_f_score(y_true, y_pred, tolerance=tolerance) == 1.0
        assert boundary_f_score(y_true, y_pred, tolerance=tolerance, labels=[1]) == 1.0
    assert boundary_f_score(y_true, y_pred, tolerance=0) < 1.0
    assert boundary_f_score(y_true, y_pred, tolerance=0.99) < 1.0
    # the foreground rings (12 pixels each) share their top and bottom rows: 6 pixels
    assert boundary_f_score(y_true, y_pred, tolerance=0, labels=[1]) == pytest.approx(0.5)
    # a diagonal shift is sqrt(2) away at the corners... and 1 away along the sides
    diagonal = np.roll(np.roll(_square((7, 7)), 1, axis=0), 1, axis=1)
    assert boundary_f_score(_square((7, 7)), diagonal, tolerance=1.5, labels=[1]) == 1.0


def test_boundary_f_score_hand_example():
    # True ring: the 12 border pixels of a 4 x 4 square. Prediction: one pixel inside it,
    # 1 away from 2 ring pixels, sqrt(2) from 3 more (the corner and its diagonal neighbours).
    y_true = _square((6, 6))
    y_pred = np.zeros((6, 6), dtype=int)
    y_pred[2, 2] = 1
    assert boundary_f_score(y_true, y_pred, tolerance=0, labels=[1]) == 0.0
    # P = 1/1, R = 2/12: F = 2 * (1/6) / (7/6) = 2/7
    assert boundary_f_score(y_true, y_pred, tolerance=1, labels=[1]) == pytest.approx(2 / 7)
    # at 1.5: R = 5/12, F = 2 * (5/12) / (17/12) = 10/17
    assert boundary_f_score(y_true, y_pred, tolerance=1.5, labels=[1]) == pytest.approx(10 / 17)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("average", ["image", "pooled"])
def test_boundary_f_score_matches_brute_force(seed, average):
    rng = np.random.default_rng(seed)
    shapes = [(7, 9), (5, 5), (1, 6), (10, 4)]
    trues = _blobby_maps(rng, shapes, 4)
    preds = _blobby_maps(rng, shapes, 4)
    preds[1] = trues[1].copy()
    preds[1][0, 0] = 3 - preds[1][0, 0]
    for tolerance in (0, 1, 1.5, 3):
        expected = _ref_boundary_f(trues, preds, tolerance, average=average)
        got = boundary_f_score(trues, preds, tolerance=tolerance, average=average)
        assert got == pytest.approx(expected, abs=1e-12)
    # labels restrict the classes scored; pixels of other classes still make boundaries
    expected = _ref_boundary_f(trues, preds, 1, labels=[0, 2], average=average)
    got = boundary_f_score(trues, preds, tolerance=1, labels=[0, 2], average=average)
    assert got == pytest.approx(expected, abs=1e-12)
    # ignored pixels: label 3 in the truth
    expected = _ref_boundary_f(trues, preds, 1.5, ignore_label=3, average=average)
    got = boundary_f_score(trues, preds, tolerance=1.5, ignore_label=3, average=average)
    assert got == pytest.approx(expected, abs=1e-12)


def test_boundary_f_score_image_average_differs_from_pooled():
    # A large image scored perfectly and a small one with a wrong edge.
    big = _square((40, 40), (5, 35), (5, 35))
    small_true, small_pred = _square((6, 7)), np.roll(_square((6, 7)), 1, axis=1)
    trues, preds = [big, small_true], [big, small_pred]
    per_image = boundary_f_score(trues, preds, tolerance=0, labels=[1])
    assert per_image == pytest.approx((1.0 + 0.5) / 2)
    pooled = boundary_f_score(trues, preds, tolerance=0, labels=[1], average="pooled")
    assert pooled == pytest.approx(_ref_boundary_f(trues, preds, 0, labels=[1], average="pooled"))
    assert per_image < pooled < 1.0


def test_boundary_f_score_multiclass_averages_classes_present():
    # Three vertical stripes; the prediction moves the 1|2 edge by two pixels.
    y_true = np.repeat([[0] * 4 + [1] * 4 + [2] * 4], 5, axis=0)
    y_pred = np.repeat([[0] * 4 + [1] * 6 + [2] * 2], 5, axis=0)
    # class 0 is perfect, classes 1 and 2 lose their 1|2 edge at tolerance 1
    per_class = [boundary_f_score(y_true, y_pred, tolerance=1, labels=[k]) for k in range(3)]
    assert per_class[0] == 1.0 and per_class[1] < 1.0 and per_class[2] < 1.0
    assert boundary_f_score(y_true, y_pred, tolerance=1) == pytest.approx(np.mean(per_class))
    # a class in `labels` absent from both maps is skipped, not scored 1.0
    assert boundary_f_score(y_true, y_pred, tolerance=1, labels=[0, 1, 2, 7]) == pytest.approx(
        np.mean(per_class)
    )
    assert boundary_f_score(y_true, y_pred, tolerance=2) == 1.0


def test_boundary_f_score_empty_boundaries():
    flat = np.zeros((5, 5), dtype=int)
    blob = flat.copy()
    blob[1:3, 1:3] = 1
    assert boundary_f_score(flat, flat) == 1.0  # no boundary in either map: DAVIS's 1.0
    assert boundary_f_score(flat, blob) == 0.0  # boundaries predicted where there are none
    assert boundary_f_score(blob, flat) == 0.0  # boundaries missed
    # the image border is not a boundary: a map split only by the border has none
    assert boundary_f_score(np.ones((3, 3), int), np.ones((3, 3), int) * 2) == 1.0


def test_boundary_f_score_ignore_label():
    # A square surrounded by a void ring (PASCAL VOC style): the true edge is unknown.
    y_true = _square((9, 9), (2, 7), (2, 7))
    ring = _square((9, 9), (1, 8), (1, 8)).astype(bool) & ~_square((9, 9), (2, 7), (2, 7)).astype(
        bool
    )
    y_true[ring] = 255
    rng = np.random.default_rng(0)
    y_pred = np.where(ring, rng.integers(0, 2, size=(9, 9)), y_true)
    # whatever is predicted on the ring, there is no boundary on labelled pixels: 1.0
    assert boundary_f_score(y_true, y_pred, ignore_label=255) == 1.0
    # ... and ignoring is what makes it so: without ignore_label, 255 is a class
    assert boundary_f_score(y_true, y_pred, tolerance=0) < 1.0
    # predictions inside an ignored region never change the score
    trues = _blobby_maps(rng, [(10, 10)], 3)
    preds = _blobby_maps(rng, [(10, 10)], 3)
    trues[0][3:7, 2:8] = 9
    noisy = [np.where(trues[0] == 9, rng.integers(0, 3, size=(10, 10)), preds[0])]
    assert boundary_f_score(trues, noisy, ignore_label=9) == pytest.approx(
        boundary_f_score(trues, preds, ignore_label=9)
    )
    # an image with every pixel ignored is skipped; all of them ignored is an error
    all_void, zeros = np.full((4, 4), 9), np.zeros((4, 4), dtype=int)
    expected = boundary_f_score(trues, preds, ignore_label=9)
    assert boundary_f_score(trues + [all_void], preds + [zeros], ignore_label=9) == expected
    with pytest.raises(ValueError, match="boundary_f_score found nothing to score"):
        boundary_f_score(all_void, zeros, ignore_label=9)


def test_boundary_f_score_binary_default_close_to_foreground_only():
    y_true = _square((30, 30), (5, 20), (8, 25))
    y_pred = _square((30, 30), (6, 21), (7, 23))
    fg = boundary_f_score(y_true, y_pred, tolerance=1, labels=[1])
    both = boundary_f_score(y_true, y_pred, tolerance=1)
    assert 0.3 < fg < 1.0 and abs(both - fg) < 0.1
    # bool maps count as 0/1
    assert boundary_f_score(y_true.astype(bool), y_pred.astype(bool), tolerance=1) == both


def test_trimap_iou_full_width_equals_mean_iou():
    rng = np.random.default_rng(1)
    trues = _blobby_maps(rng, [(8, 11), (6, 6)], 3)
    preds = _blobby_maps(rng, [(8, 11), (6, 6)], 4)
    assert trimap_iou(trues, preds, width=20) == pytest.approx(mean_iou(trues, preds))
    assert trimap_iou(trues, preds, width=20, labels=[2, 0]) == pytest.approx(
        mean_iou(trues, preds, labels=[2, 0])
    )
    trues[0][:2] = 255
    assert trimap_iou(trues, preds, width=20, ignore_label=255) == pytest.approx(
        mean_iou(trues, preds, ignore_label=255)
    )


def test_trimap_iou_band():
    y_true = np.repeat([[0] * 4 + [1] * 4], 3, axis=0)
    y_pred = np.repeat([[1] * 3 + [0] * 5], 3, axis=0)  # wrong far from and at the edge
    # width 0: columns 3 and 4 only; column 4 wrong -> IoU 1/2 for class 0, 0 for class 1
    assert trimap_iou(y_true, y_pred, width=0) == pytest.approx(0.25)
    # the band by hand, scored by mean_iou
    for width in (0, 1, 2.5):
        cols = np.arange(8)
        dist = np.minimum(np.abs(cols - 3), np.abs(cols - 4))
        keep = np.repeat([dist <= width], 3, axis=0)
        expected = mean_iou(np.where(keep, y_true, -1), y_pred, ignore_label=-1)
        assert trimap_iou(y_true, y_pred, width=width) == pytest.approx(expected)
    # negative labels do not clash with the marker of pixels outside the band
    assert trimap_iou(y_true - 5, y_pred - 5, width=0) == pytest.approx(0.25)
    assert trimap_iou(y_true, y_pred, width=0, labels=[-1, 0, 1]) == pytest.approx(0.25)


def test_trimap_iou_without_boundary_raises():
    flat = np.zeros((4, 5), dtype=int)
    with pytest.raises(ValueError, match="trimap_iou found no true boundary"):
        trimap_iou([flat, flat + 1], [flat, flat])
    half_void = flat.copy()
    half_void[:, :2] = 255  # the void edge is not a boundary
    with pytest.raises(ValueError, match="trimap_iou found no true boundary"):
        trimap_iou(half_void, flat, ignore_label=255)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tolerance": -1}, r"'tolerance' parameter of boundary_f_score must be a non-negative"),
        ({"tolerance": float("nan")}, "'tolerance' parameter"),
        ({"tolerance": True}, "'tolerance' parameter"),
        ({"tolerance": "2"}, "'tolerance' parameter"),
        ({"average": "macro"}, r"'average' parameter of boundary_f_score must be 'image' or"),
        ({"ignore_label": 1.5}, "'ignore_label' parameter must be an integer or None"),
        ({"labels": [0.5]}, "'labels' parameter must hold integer class labels"),
        ({"labels": [0, 255], "ignore_label": 255}, "'labels' parameter contains ignore_label"),
    ],
)
def test_boundary_f_score_bad_parameters(kwargs, match):
    y = _square()
    with pytest.raises(ValueError, match=match):
        boundary_f_score(y, y, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"width": -0.5}, r"'width' parameter of trimap_iou must be a non-negative"),
        ({"width": None}, "'width' parameter"),
        ({"ignore_label": "void"}, "'ignore_label' parameter must be an integer or None"),
        ({"labels": []}, "'labels' parameter must be a non-empty"),
    ],
)
def test_trimap_iou_bad_parameters(kwargs, match):
    y = _square()
    with pytest.raises(ValueError, match=match):
        trimap_iou(y, y, **kwargs)


@pytest.mark.parametrize("func", [boundary_f_score, trimap_iou])
def test_boundary_metrics_bad_maps(func):
    y = _square()
    with pytest.raises(ValueError, match=r"'y_pred' parameter has shape \(6, 6\) but `y_true`"):
        func(y, y[:, :6])
    with pytest.raises(ValueError, match=r"'y_pred' parameter has 1 label maps but `y_true` has 2"):
        func([y, y], [y])
    with pytest.raises(ValueError, match="'y_true' parameter holds non-integer labels"):
        func(y + 0.5, y)
    with pytest.raises(ValueError, match="'y_pred' parameter must be a \\(height, width\\)"):
        func(y, np.zeros((2, 2, 2, 2)))
