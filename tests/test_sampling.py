"""PixelSet and sample_pixels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import GroupKFold, train_test_split
from sklearn.utils import _safe_indexing

from skhyper import PixelSet, grid_pixels, sample_pixels


def test_pixelset_indexing_as_sklearn_does_it(images, masks):
    X, y = sample_pixels(images, masks, n_per_image=20, random_state=0)
    assert X.shape == (60, 3) and len(X) == 60
    for key in (np.arange(5), slice(3, 9), np.r_[[True] * 10, [False] * 50], [4, 1]):
        sub = _safe_indexing(X, key)
        assert isinstance(sub, PixelSet)
        np.testing.assert_array_equal(sub.coords, X.coords[key])
        assert sub.images is X.images  # shared, never copied
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
    assert isinstance(X_tr, PixelSet) and len(X_tr) == len(y_tr) == 45
    with pytest.raises(IndexError, match="along pixels"):
        X[:, 1]


def test_groups_keep_images_on_one_side(images, masks):
    X, y = sample_pixels(images, masks, n_per_image=20, random_state=0)
    np.testing.assert_array_equal(X.groups, np.repeat([0, 1, 2], 20))
    for train, test in GroupKFold(3).split(X, y, groups=X.groups):
        assert not set(X.groups[train]) & set(X.groups[test])


def test_labels_match_masks_and_draw_is_reproducible(images, masks):
    X, y = sample_pixels(images, masks, n_per_image=25, random_state=3)
    i, r, c = X.coords.T
    np.testing.assert_array_equal(y, [masks[k][rr, cc] for k, rr, cc in zip(i, r, c)])
    X2, y2 = sample_pixels(images, masks, n_per_image=25, random_state=3)
    np.testing.assert_array_equal(X.coords, X2.coords)
    X3, _ = sample_pixels(images, masks, n_per_image=25, random_state=4)
    assert not np.array_equal(X.coords, X3.coords)
    assert len(np.unique(X.coords, axis=0)) == len(X)  # without replacement


def test_class_balance_evens_out_a_rare_class():
    mask = np.zeros((30, 30), dtype=np.uint8)
    mask[:3, :3] = 1  # 9 foreground pixels out of 900
    img = np.zeros((30, 30, 3))
    _, y = sample_pixels([img], [mask], n_per_image=100, random_state=0)
    assert np.bincount(y, minlength=2)[1] < 10
    _, y = sample_pixels([img], [mask], n_per_image=100, class_balance=True, random_state=0)
    assert np.bincount(y).tolist() == [91, 9]  # all 9 rare pixels, the rest from the other class
    _, y = sample_pixels([img], [mask], n_per_image=10, class_balance=True, random_state=0)
    assert np.bincount(y).tolist() == [5, 5]


def test_ignore_label_for_scribbles_and_all_pixels():
    mask = np.full((10, 12), 255, dtype=np.uint8)
    mask[2, 1:8] = 0
    mask[7, 3:11] = 1  # two scribbles
    X, y = sample_pixels(np.zeros((10, 12)), mask, n_per_image=None, ignore_label=255)
    assert len(y) == 15 and set(y.tolist()) == {0, 1}
    assert (mask[X.coords[:, 1], X.coords[:, 2]] != 255).all()
    with pytest.raises(ValueError, match="no labelled pixels.*ignore_label=255"):
        sample_pixels(np.zeros((10, 12)), np.full((10, 12), 255), ignore_label=255)


def test_n_per_image_larger_than_image_takes_all():
    X, y = sample_pixels(np.zeros((4, 5)), np.ones((4, 5), int), n_per_image=1000)
    assert len(X) == 20


@pytest.mark.parametrize("bad", [-1, 0, 2.5, True])
def test_bad_n_per_image(bad, images, masks):
    with pytest.raises(ValueError, match=r"'n_per_image' parameter of sample_pixels must be an "
                                         r"int in the range \[1, inf\) or None. Got"):
        sample_pixels(images, masks, n_per_image=bad)


def test_grid_pixels_covers_every_pixel():
    imgs = [np.zeros((3, 4)), np.zeros((2, 2, 3))]
    X = grid_pixels(imgs)
    assert len(X) == 12 + 4 and X.coords[-1].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="'step' parameter of grid_pixels must be an int"):
        grid_pixels(imgs, step=0)
    with pytest.raises(ValueError, match="'ignore_label' parameter of sample_pixels"):
        sample_pixels(imgs, [np.zeros((3, 4)), np.zeros((2, 2))], ignore_label="none")


def test_pixelset_constructor_checks_coords(images):
    with pytest.raises(ValueError, match="'coords' parameter must have shape"):
        PixelSet(images, np.zeros((4, 2), int))
    with pytest.raises(ValueError, match="'coords' parameter has image indices"):
        PixelSet(images, [[3, 0, 0]])
    with pytest.raises(ValueError, match="'coords' parameter "
                                         "has pixels outside their image: row -1"):
        PixelSet(images, [[0, -1, 0]])
    with pytest.raises(ValueError, match="outside their image: row 0, col 51"):
        PixelSet(images, [[1, 0, 51]])
    with pytest.raises(TypeError, match="'coords' parameter must hold integers"):
        PixelSet(images, [[0, 0.5, 0]])


def test_boxes_are_carried_and_checked(images, masks):
    boxes = [[0, 0, 10, 10], [1, 1, 20, 20], [2, 2, 30, 30]]
    X, _ = sample_pixels(images, masks, n_per_image=5, boxes=boxes, random_state=0)
    np.testing.assert_array_equal(X[:3].boxes, boxes)
    with pytest.raises(ValueError, match="'boxes' parameter has empty boxes"):
        sample_pixels(images, masks, boxes=[[5, 0, 5, 10]] * 3)
    with pytest.raises(ValueError, match=r"'boxes' parameter must have shape \(n_images, 4\)"):
        sample_pixels(images, masks, boxes=[[0, 0, 1, 1]])


def test_boundary_band_matches_its_definition():
    """A labelled pixel is in the band when its (2w+1)^2 window holds another labelled class;
    unlabelled pixels neither belong to it nor make one (brute force on random masks)."""
    from skhyper.sampling import boundary_band

    rng = np.random.default_rng(3)
    for width in (1, 2):
        mask = rng.integers(0, 3, size=(9, 11))
        mask[rng.random(mask.shape) < 0.2] = 255
        got = boundary_band(mask, width, ignore_label=255)
        expected = np.zeros(mask.shape, bool)
        for y in range(9):
            for x in range(11):
                if mask[y, x] == 255:
                    continue
                win = mask[max(0, y - width):y + width + 1, max(0, x - width):x + width + 1]
                expected[y, x] = bool(np.any((win != 255) & (win != mask[y, x])))
        np.testing.assert_array_equal(got, expected)


def test_boundary_fraction_draws_that_share_from_the_band():
    from skhyper.sampling import boundary_band

    masks = np.zeros((2, 40, 40), dtype=int)
    masks[:, 10:30, 10:30] = 1
    images = np.zeros((2, 40, 40, 3), dtype=np.float32)
    band = boundary_band(masks[0], 3)
    plain, _ = sample_pixels(images, masks, n_per_image=200, random_state=0)
    X, y = sample_pixels(images, masks, n_per_image=200, boundary_fraction=0.5,
                         boundary_width=3, random_state=0)
    in_band = band[X.coords[:, 1], X.coords[:, 2]]
    assert len(X) == 400 and len(np.unique(X.coords, axis=0)) == 400  # no pixel twice
    assert in_band.sum() >= 200  # half of each image's draw, plus what the rest finds there
    assert band[plain.coords[:, 1], plain.coords[:, 2]].mean() < in_band.mean()
    same, _ = sample_pixels(images, masks, n_per_image=200, boundary_fraction=0.0,
                            random_state=0)
    np.testing.assert_array_equal(same.coords, plain.coords)  # 0: the usual draw
