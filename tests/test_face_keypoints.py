"""Tests for skhyper.datasets.load_face_keypoints and simulate_detector_boxes.

The loader tests run on the 200-image face keypoint set in ../shared/data (the project's
standard split: 150 train / 50 test); they are skipped when the data is absent. The data are
for research and evaluation use only and are not bundled.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from skhyper.datasets import load_face_keypoints, simulate_detector_boxes
from skhyper.metrics import nme, pck

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "face_keypoints"
needs_faces = pytest.mark.skipif(
    not ((FACES / "images").is_dir() and (FACES / "keypoints.csv").is_file()),
    reason=f"face keypoint set not found at {FACES} (only on the project machines; not bundled)",
)


# ---------------------------------------------------------------- simulate_detector_boxes


def test_boxes_without_jitter_are_the_scaled_extent():
    kp = np.array([[[10.0, 10.0], [30.0, 10.0], [20.0, 20.0]], [[0.0, 0.0], [4.0, 10.0], [2, 5]]])
    boxes = simulate_detector_boxes(kp, jitter=0, size_jitter=0)
    np.testing.assert_allclose(boxes, [[0.0, -5.0, 40.0, 35.0], [-8.0, -5.0, 12.0, 15.0]])
    np.testing.assert_allclose(
        simulate_detector_boxes(kp, scale=1.0, jitter=0, size_jitter=0)[0], [10, 5, 30, 25]
    )


def test_boxes_ignore_unannotated_keypoints():
    kp = np.array([[[10.0, 10.0], [30.0, 10.0], [np.nan, np.nan], [1000.0, np.nan]]])
    boxes = simulate_detector_boxes(kp, jitter=0, size_jitter=0)
    np.testing.assert_allclose(boxes, [[0.0, -10.0, 40.0, 30.0]])


def test_boxes_jitter_ranges_and_seed():
    rng = np.random.default_rng(1)
    kp = rng.uniform(0, 100, size=(500, 5, 2))
    base = simulate_detector_boxes(kp, jitter=0, size_jitter=0)
    base_side = base[:, 2] - base[:, 0]
    boxes = simulate_detector_boxes(kp, random_state=3)
    side = boxes[:, 2] - boxes[:, 0]
    np.testing.assert_allclose(side, boxes[:, 3] - boxes[:, 1])
    ratio = side / base_side
    assert ratio.min() >= 0.85 and ratio.max() <= 1.15
    assert ratio.min() < 0.88 and ratio.max() > 1.12  # the whole range is used
    shift = ((boxes[:, :2] + boxes[:, 2:]) - (base[:, :2] + base[:, 2:])) / 2 / base_side[:, None]
    assert np.abs(shift).max() <= 0.15 and np.abs(shift).max() > 0.14
    assert abs(np.corrcoef(shift[:, 0], shift[:, 1])[0, 1]) < 0.15  # independent in x and y
    np.testing.assert_array_equal(boxes, simulate_detector_boxes(kp, random_state=3))
    assert not np.array_equal(boxes, simulate_detector_boxes(kp, random_state=4))
    np.testing.assert_array_equal(
        boxes, simulate_detector_boxes(kp, random_state=np.random.default_rng(3))
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": 0}, "'scale' parameter .* > 0"),
        ({"scale": -1.0}, "'scale' parameter"),
        ({"jitter": -0.1}, "'jitter' parameter .* >= 0"),
        ({"jitter": np.nan}, "'jitter' parameter"),
        ({"size_jitter": 1.0}, "'size_jitter' parameter .* < 1"),
        ({"size_jitter": "0.1"}, "'size_jitter' parameter"),
        ({"random_state": -1}, "'random_state' parameter"),
        ({"random_state": "seed"}, "'random_state' parameter"),
    ],
)
def test_boxes_bad_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_detector_boxes(np.array([[[0.0, 0.0], [1.0, 1.0]]]), **kwargs)


@pytest.mark.parametrize(
    "kp, match",
    [
        (np.zeros((2, 2)), "'keypoints' parameter .*shape \\(n_images, n_keypoints, 2\\)"),
        (np.zeros((0, 3, 2)), "'keypoints' parameter .*non-empty"),
        (np.zeros((1, 3, 3)), "'keypoints' parameter"),
        (np.array([[[0.0, 0.0], [np.inf, 1.0]]]), "'keypoints' parameter .*infinite"),
        (np.array([[[0.0, 0.0], [1.0, 1.0]], [[5.0, 5.0], [5.0, 5.0]]]), "image\\(s\\) \\[1\\]"),
        (np.full((1, 3, 2), np.nan), "no annotated keypoint"),
    ],
)
def test_boxes_bad_keypoints(kp, match):
    with pytest.raises(ValueError, match=match):
        simulate_detector_boxes(kp)


# ---------------------------------------------------------------- loader errors (no data needed)


def test_loader_bad_path(tmp_path):
    with pytest.raises(ValueError, match="'path' parameter of load_face_keypoints .*'images'"):
        load_face_keypoints(tmp_path / "nowhere")
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="'keypoints.csv'"):
        load_face_keypoints(tmp_path)
    (tmp_path / "keypoints.csv").write_text("stem,x,y\n0001,1,2\n")
    with pytest.raises(ValueError, match="keypoints.csv has the header"):
        load_face_keypoints(tmp_path)
    with pytest.raises(ValueError, match="'path' parameter .*str or a path"):
        load_face_keypoints(3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "val"}, "'split' parameter"),
        ({"box_jitter": "yes"}, "'box_jitter' parameter"),
        ({"random_state": -3}, "'random_state' parameter of load_face_keypoints"),
    ],
)
def test_loader_bad_params(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_face_keypoints(tmp_path, **kwargs)


def test_loader_missing_image_and_wrong_size(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    header = "stem,width,height,r_eye_outer_x,r_eye_outer_y,l_eye_outer_x,l_eye_outer_y\n"
    (tmp_path / "keypoints.csv").write_text(header + "0001,8,6,1,2,5,2\n")
    with pytest.raises(ValueError, match="image .*0001.jpg.* is missing"):
        load_face_keypoints(tmp_path)
    Image.new("RGB", (6, 8)).save(tmp_path / "images" / "0001.jpg")
    with pytest.raises(ValueError, match="is 6x8 but keypoints.csv says 8x6"):
        load_face_keypoints(tmp_path)
    Image.new("RGB", (8, 6)).save(tmp_path / "images" / "0001.jpg")
    data = load_face_keypoints(tmp_path, box_jitter=False)
    assert data.keypoint_names == ["r_eye_outer", "l_eye_outer"]
    np.testing.assert_allclose(data.keypoints, [[[1, 2], [5, 2]]])
    np.testing.assert_allclose(data.iod, [4.0])
    np.testing.assert_allclose(data.boxes, [[-1.0, -2.0, 7.0, 6.0]])
    assert data.images[0].shape == (6, 8, 3) and data.images[0].dtype == np.uint8


def test_loader_needs_the_eye_corners(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "keypoints.csv").write_text("stem,width,height,nose_x,nose_y\n0001,8,6,1,2\n")
    with pytest.raises(ValueError, match="no keypoint\\(s\\) \\['r_eye_outer', 'l_eye_outer'\\]"):
        load_face_keypoints(tmp_path)


# ---------------------------------------------------------------- the face keypoint set


@pytest.fixture(scope="module")
def faces():
    if not ((FACES / "images").is_dir() and (FACES / "keypoints.csv").is_file()):
        pytest.skip(f"face keypoint set not found at {FACES} (only on the project machines)")
    return {
        split: load_face_keypoints(FACES, split=split) for split in (None, "train", "test")
    }


@pytest.mark.slow
@needs_faces
def test_full_set(faces):
    data = faces[None]
    assert len(data.images) == len(data.names) == 200
    assert data.names == sorted(data.names)
    assert data.keypoints.shape == (200, 14, 2) and data.keypoints.dtype == np.float64
    assert data.boxes.shape == (200, 4) and data.boxes.dtype == np.float64
    assert len(data.keypoint_names) == 14
    assert data.keypoint_names[4] == "r_eye_outer" and data.keypoint_names[9] == "l_eye_outer"
    for image in data.images:
        assert image.shape == (360, 640, 3) and image.dtype == np.uint8
    kp = data.keypoints
    assert np.isfinite(kp).all()
    assert (kp >= 0).all() and (kp[..., 0] <= 640).all() and (kp[..., 1] <= 360).all()
    assert data.iod.shape == (200,) and (data.iod > 0).all()
    np.testing.assert_allclose(data.iod, np.linalg.norm(kp[:, 9] - kp[:, 4], axis=-1))
    assert "ICCVW" in data.DESCR and "research" in data.DESCR
    assert "do not redistribute" in data.DESCR


@pytest.mark.slow
@needs_faces
def test_split_sizes_disjoint_and_covering(faces):
    train, test, full = faces["train"], faces["test"], faces[None]
    assert len(train.names) == 150 and len(test.names) == 50
    assert not set(train.names) & set(test.names)
    assert sorted(train.names + test.names) == full.names
    perm = np.random.default_rng(0).permutation(200)
    assert train.names == [full.names[i] for i in perm[:150]]
    assert test.names == [full.names[i] for i in perm[150:]]


@pytest.mark.slow
@needs_faces
def test_same_box_and_keypoints_whatever_the_split(faces):
    full = faces[None]
    index = {name: i for i, name in enumerate(full.names)}
    for split in ("train", "test"):
        part = faces[split]
        rows = [index[n] for n in part.names]
        np.testing.assert_array_equal(part.boxes, full.boxes[rows])
        np.testing.assert_array_equal(part.keypoints, full.keypoints[rows])
        np.testing.assert_array_equal(part.iod, full.iod[rows])
        for i, r in enumerate(rows[:5]):
            np.testing.assert_array_equal(part.images[i], full.images[r])


@pytest.mark.slow
@needs_faces
def test_boxes_are_jittered_squares_around_the_face(faces):
    data = faces[None]
    kp, boxes = data.keypoints, data.boxes
    lo, hi = kp.min(axis=1), kp.max(axis=1)
    extent = (hi - lo).max(axis=1)
    side = boxes[:, 2] - boxes[:, 0]
    np.testing.assert_allclose(side, boxes[:, 3] - boxes[:, 1])
    ratio = side / (2.0 * extent)
    assert (ratio >= 0.85 - 1e-9).all() and (ratio <= 1.15 + 1e-9).all()
    assert ratio.std() > 0.05  # jittered
    # the centre moves by at most 15 % of the unjittered side (2 * extent) in x and y
    shift = (boxes[:, :2] + boxes[:, 2:]) / 2 - (lo + hi) / 2
    assert (np.abs(shift) <= 0.15 * 2.0 * extent[:, None] + 1e-9).all()
    # so the keypoints' centre region, and here every keypoint, lies inside its box
    centre = (lo + hi) / 2
    assert (centre - 0.25 * extent[:, None] >= boxes[:, :2]).all()
    assert (centre + 0.25 * extent[:, None] <= boxes[:, 2:]).all()
    assert (kp >= boxes[:, None, :2]).all() and (kp <= boxes[:, None, 2:]).all()


@pytest.mark.slow
@needs_faces
def test_box_jitter_off_and_seed():
    plain = load_face_keypoints(FACES, split="test", box_jitter=False)
    np.testing.assert_allclose(plain.boxes, simulate_detector_boxes(plain.keypoints, jitter=0,
                                                                    size_jitter=0))
    other = load_face_keypoints(FACES, split="test", random_state=1)
    again = load_face_keypoints(FACES, split="test", random_state=1)
    np.testing.assert_array_equal(other.boxes, again.boxes)
    assert not np.array_equal(other.boxes, load_face_keypoints(FACES, split="test").boxes)


def _box_coords(kp: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    side = boxes[:, 2] - boxes[:, 0]
    return (kp - boxes[:, None, :2]) / side[:, None, None]


@pytest.mark.slow
@needs_faces
def test_mean_shape_baseline(faces):
    """Sanity check of data, boxes and metrics: the mean face placed in the test boxes."""
    train, test = faces["train"], faces["test"]
    mean_shape = _box_coords(train.keypoints, train.boxes).mean(axis=0)
    side = test.boxes[:, 2] - test.boxes[:, 0]
    pred = test.boxes[:, None, :2] + mean_shape[None] * side[:, None, None]
    pck10 = pck(test.keypoints, pred, threshold=0.1, normalizer=test.iod)
    pck20 = pck(test.keypoints, pred, threshold=0.2, normalizer=test.iod)
    err = nme(test.keypoints, pred, normalizer=test.iod)
    print(f"mean-shape baseline on the test split: PCK@0.1 IOD {pck10:.3f}, "
          f"PCK@0.2 IOD {pck20:.3f}, NME (IOD) {err:.3f}")
    assert 0.02 <= pck10 <= 0.2
    assert 0.15 <= pck20 <= 0.5
    assert 0.15 <= err <= 0.45
    # a perfect prediction scores perfectly, and the exact box shift hurts
    assert pck(test.keypoints, test.keypoints, normalizer=test.iod) == 1.0
    assert nme(test.keypoints, pred + 0.1 * side[:, None, None], normalizer=test.iod) > err


@needs_faces
def test_loader_on_a_copy_with_missing_keypoints(tmp_path):
    """Empty CSV cells load as NaN; a missing eye gives a NaN inter-ocular distance."""
    shutil.copytree(FACES / "images", tmp_path / "images")
    with open(FACES / "keypoints.csv", newline="") as f:
        rows = list(csv.reader(f))
    rows[1][3 + 2 * 4] = rows[1][4 + 2 * 4] = ""  # r_eye_outer of the first image
    with open(tmp_path / "keypoints.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    data = load_face_keypoints(tmp_path)
    assert np.isnan(data.keypoints[0, 4]).all() and np.isnan(data.iod[0])
    assert np.isfinite(data.iod[1:]).all() and np.isfinite(data.boxes).all()
