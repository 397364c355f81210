"""Tests for skhyper.datasets: the bundled horse sample, the folder loader, clothing parts."""

from __future__ import annotations

import json
import shutil
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skhyper.datasets import load_clothing_parts, load_horses, load_image_folder

FULL_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "weizmann_horse"
needs_full_set = pytest.mark.skipif(
    not (FULL_SET / "images").is_dir(),
    reason=f"full Weizmann horse set not found at {FULL_SET} (only on the project machines)",
)
CLOTHING = FULL_SET.parent / "clothing_parts"
needs_clothing = pytest.mark.skipif(
    not (CLOTHING / "images").is_dir(),
    reason=f"clothing-parts data not found at {CLOTHING} (only on the project machines)",
)


def _standard_split(stems):
    stems = sorted(stems)
    perm = np.random.default_rng(0).permutation(len(stems))
    return [stems[i] for i in perm[:200]], [stems[i] for i in perm[200:]]


def _check_pairs(data, max_side=None):
    assert len(data.images) == len(data.masks) == len(data.names)
    for image, mask in zip(data.images, data.masks):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert mask.dtype == np.uint8 and mask.shape == image.shape[:2]
        assert set(np.unique(mask).tolist()) == {0, 1}  # every mask has horse and background
        if max_side is not None:
            assert max(image.shape[:2]) <= max_side


def test_bundled_sample_loads():
    data = load_horses()
    assert len(data.images) == 24
    assert data.names == sorted(data.names)
    assert all(n.startswith("horse") for n in data.names)
    _check_pairs(data, max_side=160)
    # downscaled so the longer side is exactly 160 (the originals are all larger)
    assert all(max(im.shape[:2]) == 160 for im in data.images)
    assert "Borenstein" in data.DESCR and "ECCV 2002" in data.DESCR
    # masks are not trivial: the horse covers a real but partial share of each image
    fractions = [m.mean() for m in data.masks]
    assert 0.05 < min(fractions) and max(fractions) < 0.95


def test_bundled_split_is_disjoint_and_complete():
    train, test = load_horses(split="train"), load_horses(split="test")
    assert len(train.names) == 16 and len(test.names) == 8
    assert not set(train.names) & set(test.names)
    assert sorted(train.names + test.names) == load_horses().names
    _check_pairs(train, max_side=160)
    _check_pairs(test, max_side=160)
    # the same pair is returned whichever way it is asked for
    everything = load_horses()
    i, j = everything.names.index(train.names[0]), 0
    np.testing.assert_array_equal(everything.images[i], train.images[j])
    np.testing.assert_array_equal(everything.masks[i], train.masks[j])


def test_bundled_split_file_lists_every_stem():
    root = Path(str(files("skhyper") / "data" / "horses"))
    lines = [line.split() for line in (root / "split.txt").read_text().splitlines() if line]
    assert all(len(p) == 2 and p[1] in ("train", "test") for p in lines)
    stems = sorted(p.stem for p in (root / "images").glob("*.jpg"))
    assert sorted(p[0] for p in lines) == stems
    assert sorted(p.stem for p in (root / "masks").glob("*.png")) == stems
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 1_000_000


@needs_full_set
def test_bundled_split_agrees_with_standard_split():
    full_train, full_test = _standard_split(p.stem for p in (FULL_SET / "images").glob("*.jpg"))
    assert load_horses(split="train").names == full_train[:16]
    assert load_horses(split="test").names == full_test[:8]


@pytest.mark.slow
@needs_full_set
def test_full_set_loads_with_standard_split():
    stems = sorted(p.stem for p in (FULL_SET / "images").glob("*.jpg"))
    assert len(stems) == 328
    expected_train, expected_test = _standard_split(stems)

    test = load_horses(FULL_SET, split="test")
    assert test.names == expected_test and len(test.names) == 128
    _check_pairs(test)
    with Image.open(FULL_SET / "images" / f"{test.names[0]}.jpg") as im:
        assert test.images[0].shape == (im.height, im.width, 3)

    train = load_horses(str(FULL_SET), split="train", max_size=64)
    assert train.names == expected_train and len(train.names) == 200
    assert not set(train.names) & set(test.names)
    _check_pairs(train, max_side=64)


def test_max_size_downscales_keeping_aspect():
    full = load_horses()
    small = load_horses(max_size=50)
    assert small.names == full.names
    _check_pairs(small, max_side=50)
    for big, little in zip(full.images, small.images):
        assert max(little.shape[:2]) == 50
        h, w = big.shape[:2]
        assert abs(little.shape[0] / little.shape[1] - h / w) < 0.05
    # a max_size above the current size leaves the pairs untouched
    same = load_horses(max_size=1000)
    for a, b in zip(full.images, same.images):
        np.testing.assert_array_equal(a, b)


def _copy_sample(tmp_path, n=3):
    root = Path(str(files("skhyper") / "data" / "horses"))
    dest = tmp_path / "folder"
    (dest / "images").mkdir(parents=True)
    (dest / "masks").mkdir()
    stems = sorted(p.stem for p in (root / "images").glob("*.jpg"))[:n]
    for stem in stems:
        shutil.copy(root / "images" / f"{stem}.jpg", dest / "images")
        shutil.copy(root / "masks" / f"{stem}.png", dest / "masks")
    return dest, stems


def test_folder_without_split_file_uses_standard_rule(tmp_path):
    dest, stems = _copy_sample(tmp_path, n=10)
    perm = np.random.default_rng(0).permutation(10)
    n_train = round(10 * 200 / 328)  # 6
    assert load_horses(dest, split="train").names == [stems[i] for i in perm[:n_train]]
    assert load_horses(dest, split="test").names == [stems[i] for i in perm[n_train:]]


def test_load_image_folder_thresholds_masks(tmp_path):
    dest = tmp_path / "folder"
    (dest / "imgs").mkdir(parents=True)
    (dest / "gt").mkdir()
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(dest / "imgs" / "a.png")  # grayscale
    Image.fromarray(np.array([[0, 127, 128, 255]] * 2, np.uint8)).save(dest / "imgs" / "b.jpg")
    Image.fromarray(np.full((4, 6), 200, np.uint8)).save(dest / "gt" / "a_mask.png")
    Image.fromarray(np.array([[0, 127, 128, 255]] * 2, np.uint8)).save(dest / "gt" / "b_mask.png")
    data = load_image_folder(dest, images="imgs", masks="gt", mask_suffix="_mask.png")
    assert data.names == ["a", "b"]
    assert data.images[0].shape == (4, 6, 3)  # grayscale replicated to RGB
    np.testing.assert_array_equal(data.masks[0], np.ones((4, 6), np.uint8))
    np.testing.assert_array_equal(data.masks[1], np.array([[0, 0, 1, 1]] * 2, np.uint8))


@pytest.mark.parametrize("split", ["val", "TRAIN", 1, ""])
def test_bad_split(split):
    with pytest.raises(ValueError, match="'split' parameter of load_horses"):
        load_horses(split=split)


@pytest.mark.parametrize("max_size", [0, -5, 2.5, "64", True])
def test_bad_max_size(max_size):
    with pytest.raises(ValueError, match="'max_size' parameter of load_horses"):
        load_horses(max_size=max_size)
    with pytest.raises(ValueError, match="'max_size' parameter of load_image_folder"):
        load_image_folder(files("skhyper") / "data" / "horses", max_size=max_size)


def test_missing_path(tmp_path):
    with pytest.raises(ValueError, match="'path' parameter of load_horses.*does not exist"):
        load_horses(tmp_path / "nowhere")
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match="'path' parameter of load_horses.*'images' subfolder"):
        load_horses(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match="'path' parameter of load_horses.*holds no images"):
        load_horses(tmp_path)
    with pytest.raises(ValueError, match="'path' parameter of load_image_folder"):
        load_image_folder(tmp_path / "nowhere")


def test_image_without_mask(tmp_path):
    dest, stems = _copy_sample(tmp_path)
    (dest / "masks" / f"{stems[1]}.png").unlink()
    with pytest.raises(ValueError, match=f"'path' parameter of load_horses.*{stems[1]}.png"):
        load_horses(dest)
    with pytest.raises(ValueError, match="'path' parameter of load_image_folder"):
        load_image_folder(dest)


# ---------------------------------------------------------------- clothing parts


@pytest.fixture(scope="module")
def clothing_half():
    if not (CLOTHING / "images").is_dir():
        pytest.skip(f"clothing-parts data not found at {CLOTHING} (only on the project machines)")
    return {split: load_clothing_parts(split=split, downsample=2) for split in ("train", "test")}


@needs_clothing
def test_clothing_split_sizes_disjoint_deterministic(clothing_half):
    train, test = clothing_half["train"], clothing_half["test"]
    assert len(train.names) == 300 and len(test.names) == 202
    assert not set(train.names) & set(test.names)
    stems = sorted(p.stem for p in (CLOTHING / "images").glob("*.jpg"))
    assert sorted(train.names + test.names) == stems
    perm = np.random.default_rng(0).permutation(502)
    assert train.names == [stems[i] for i in perm[:300]]
    assert test.names == [stems[i] for i in perm[300:]]
    assert train.target_names[0] == "null" and len(train.target_names) == 59
    assert "Clothing Co-Parsing" in train.DESCR and "CVPR 2014" in train.DESCR


@needs_clothing
def test_clothing_pairs_half_resolution(clothing_half):
    counts = np.zeros(59, dtype=np.int64)
    for data in clothing_half.values():
        assert len(data.images) == len(data.masks) == len(data.names)
        for image, mask in zip(data.images, data.masks):
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            assert mask.dtype == np.uint8 and mask.shape == image.shape[:2]
            assert mask.shape[1] == 275 and 400 <= mask.shape[0] <= 437  # 550 x 801..873
            counts += np.bincount(mask.ravel(), minlength=59)
    assert counts.size == 59  # no class index above 58
    assert 0.6 < counts[0] / counts.sum() < 0.9  # background: about 3/4 of the pixels
    assert np.count_nonzero(counts) > 40  # a real multi-class set


@needs_clothing
def test_clothing_half_resolution_is_full_resolution_subsampled(clothing_half):
    test = clothing_half["test"]
    for i in (0, 101, 201):
        with Image.open(CLOTHING / "images" / f"{test.names[i]}.jpg") as im:
            image = np.asarray(im.convert("RGB"))
        with Image.open(CLOTHING / "masks" / f"{test.names[i]}.png") as im:
            mask = np.asarray(im)
        np.testing.assert_array_equal(test.masks[i], mask[::2, ::2])
        h, w = mask.shape
        assert image.shape == (h, w, 3)
        assert test.images[i].shape == ((h + 1) // 2, (w + 1) // 2, 3)
        diff = np.abs(test.images[i].astype(int) - image[::2, ::2])
        assert diff.mean() < 4  # a light anti-aliasing blur of the same pixels
    full = load_clothing_parts(CLOTHING, split="test")  # full resolution, the same pairs
    assert full.names == test.names
    np.testing.assert_array_equal(full.masks[5][::2, ::2], test.masks[5])


def _clothing_folder(tmp_path, n=7, shape=(9, 6), n_classes=4):
    rng = np.random.default_rng(0)
    root = tmp_path / "clothing"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    stems = [f"{2 * i + 2:04d}" for i in range(n)]
    for stem in stems:
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(
            root / "images" / f"{stem}.png"
        )
        Image.fromarray(rng.integers(0, n_classes, shape, dtype=np.uint8)).save(
            root / "masks" / f"{stem}.png"
        )
    names = {str(k): f"class{k}" for k in range(n_classes)}
    (root / "labels.json").write_text(json.dumps(names))
    return root, stems


def test_clothing_folder_split_rule_and_downsample(tmp_path):
    root, stems = _clothing_folder(tmp_path, n=10)
    perm = np.random.default_rng(0).permutation(10)
    n_train = round(10 * 300 / 502)  # 6
    train = load_clothing_parts(root, split="train")
    assert train.names == [stems[i] for i in perm[:n_train]]
    assert load_clothing_parts(str(root), split="test").names == [stems[i] for i in perm[n_train:]]
    assert train.target_names == ["class0", "class1", "class2", "class3"]
    full = load_clothing_parts(root)
    assert full.names == stems
    third = load_clothing_parts(root, downsample=3)
    for big, small, big_mask, small_mask in zip(full.images, third.images, full.masks,
                                                third.masks):
        assert big.shape == (9, 6, 3) and small.shape == (3, 2, 3)
        np.testing.assert_array_equal(small_mask, big_mask[::3, ::3])
    # a constant image stays constant: the blur averages, it does not shift or scale
    Image.fromarray(np.full((9, 6, 3), 77, np.uint8)).save(root / "images" / f"{stems[0]}.png")
    np.testing.assert_array_equal(load_clothing_parts(root, downsample=2).images[0], 77)


def test_clothing_default_path_from_environment(tmp_path, monkeypatch):
    root, stems = _clothing_folder(tmp_path, n=3)
    monkeypatch.setenv("SKHYPER_DATA", str(tmp_path / "elsewhere"))
    where = r"SKHYPER_DATA/clothing_parts.*github\.com/bearpaw"
    with pytest.raises(FileNotFoundError, match=where):
        load_clothing_parts()
    root.rename(tmp_path / "clothing_parts")
    monkeypatch.setenv("SKHYPER_DATA", str(tmp_path))
    assert load_clothing_parts().names == stems


def test_clothing_bad_folder(tmp_path):
    func = "load_clothing_parts"
    with pytest.raises(ValueError, match=f"'path' parameter of {func}.*does not exist"):
        load_clothing_parts(tmp_path / "nowhere")
    root, stems = _clothing_folder(tmp_path)
    (root / "labels.json").unlink()
    with pytest.raises(ValueError, match=f"'path' parameter of {func}.*no labels.json"):
        load_clothing_parts(root)
    (root / "labels.json").write_text(json.dumps({"0": "null", "1": "bag"}))
    with pytest.raises(ValueError, match=r"holds class [23], but labels.json names only classes"):
        load_clothing_parts(root)
    (root / "labels.json").write_text(json.dumps({"0": "null", "2": "bag"}))
    with pytest.raises(ValueError, match="must map the class indices"):
        load_clothing_parts(root)
    (root / "labels.json").write_text(json.dumps({str(k): str(k) for k in range(4)}))
    (root / "masks" / f"{stems[2]}.png").unlink()
    with pytest.raises(ValueError, match=f"'path' parameter of {func}.*{stems[2]}.png"):
        load_clothing_parts(root)
    Image.fromarray(np.zeros((9, 7), np.uint8)).save(root / "masks" / f"{stems[2]}.png")
    with pytest.raises(ValueError, match=r"has shape \(9, 6\) but its mask"):
        load_clothing_parts(root)
    Image.fromarray(np.zeros((9, 6, 3), np.uint8)).save(root / "masks" / f"{stems[2]}.png")
    with pytest.raises(ValueError, match="must be an 8-bit single-channel PNG"):
        load_clothing_parts(root)


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "all"}, "'split' parameter of load_clothing_parts"),
    ({"split": "val"}, "'split' parameter of load_clothing_parts"),
    ({"downsample": 0}, "'downsample' parameter of load_clothing_parts"),
    ({"downsample": 1.5}, "'downsample' parameter of load_clothing_parts"),
    ({"downsample": True}, "'downsample' parameter of load_clothing_parts"),
])
def test_clothing_bad_parameters(tmp_path, kwargs, match):
    root, _ = _clothing_folder(tmp_path, n=2)
    with pytest.raises(ValueError, match=match):
        load_clothing_parts(root, **kwargs)
