"""One image reader: :func:`skhyper.read_image` / :func:`skhyper.read_labels`, their axis policy,
and the same arrays through ``predict_collection(paths)``, ``skhyper predict`` and
``skhyper train`` (a 1-bit PNG, an 8-bit RGBA PNG, a 16-bit TIFF and a 3-page TIFF).

Predictions are compared exactly: the same arrays through the same fitted model give the same
labels bit for bit, so any difference in reading shows up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import skhyper
from skhyper import HypercolumnSegmenter, HypercolumnTransformer, read_image, read_labels
from skhyper.io import ImageData
from skhyper.parallel import predict_collection

ROOT = Path(__file__).resolve().parents[1]
H, W = 40, 52
TINY = ["--backbone", "resnet18", "--weights", "none", "--layers", "relu", "--device", "cpu",
        "--seed", "0", "--pixels-per-image", "200", "--cv-folds", "0"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
        OMP_WAIT_POLICY="PASSIVE")
    return subprocess.run([sys.executable, "-m", "skhyper", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def _segmenter() -> HypercolumnSegmenter:
    """What 'skhyper train' with TINY builds."""
    return HypercolumnSegmenter(
        HypercolumnTransformer("resnet18", layers=["relu"], weights=None, device="cpu",
                               scales="auto"),
        n_pixels_per_image=200, random_state=0, ignore_label=0)


def _disc(i: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (yy - 18 - i) ** 2 + (xx - 25 + 2 * i) ** 2 < 11 ** 2


def _scribbles(i: int = 0) -> np.ndarray:
    lab = np.zeros((H, W), np.uint8)  # 0 = unlabelled
    lab[1:4, 2:50] = 1
    lab[18 - 2 + i: 18 + 2 + i, 20 + 2 * i: 30 + 2 * i] = 2
    return lab


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The four files and the arrays they hold, and label images for them."""
    root = tmp_path_factory.mktemp("io")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    bit = _disc(0) ^ (rng.random((H, W)) < 0.05)
    Image.fromarray(bit).convert("1").save(root / "images" / "bit1.png")
    rgba = rng.integers(0, 120, (H, W, 4)).astype(np.uint8)
    rgba[_disc(1), :3] += 120
    rgba[..., 3] = rng.integers(0, 256, (H, W))  # alpha: dropped by the reader
    Image.fromarray(rgba).save(root / "images" / "rgba.png")
    u16 = rng.integers(0, 20000, (H, W)).astype(np.uint16)
    u16[_disc(2)] += 40000
    tifffile.imwrite(root / "images" / "u16.tif", u16, photometric="minisblack")
    stack = rng.integers(0, 100, (3, H, W)).astype(np.uint8)
    for z in range(3):
        stack[z][_disc(z)] += 140
    # three grey pages without axis names: a stack of planes, not an RGB image
    tifffile.imwrite(root / "images" / "stack.tif", stack, photometric="minisblack")
    arrays = {"bit1": bit, "rgba": rgba[..., :3], "u16": u16, "stack": stack}
    for name in ("bit1", "rgba", "u16"):
        Image.fromarray(_scribbles()).save(root / "labels" / f"{name}.png")
    tifffile.imwrite(root / "labels" / "stack.tif", np.stack([_scribbles(z) for z in range(3)]),
                     photometric="minisblack")
    return root, arrays


@pytest.fixture(scope="module")
def model(files, tmp_path_factory):
    """A tiny segmenter fitted on the arrays (grey planes and the RGB one), saved."""
    _, arrays = files
    images = [arrays["rgba"], arrays["u16"], *arrays["stack"]]
    seg = _segmenter().fit(images, [_scribbles()] * 2 + [_scribbles(z) for z in range(3)])
    path = tmp_path_factory.mktemp("model") / "tiny.skhyper"
    skhyper.save(seg, path)
    return skhyper.load(path), path


def _expected(seg, arrays, method="predict"):
    """The API on the arrays: one result per 2-D image, a stack for the 3-page file."""
    out = {k: getattr(seg, method)(v) for k, v in arrays.items() if k != "stack"}
    out["stack"] = np.stack(getattr(seg, method)(list(arrays["stack"])))
    return out


# ----------------------------------------------------------------------------- reading


def test_read_image_gives_the_arrays_written(files):
    root, arrays = files
    got = {p.stem: read_image(p) for p in sorted((root / "images").iterdir())}
    assert {k: v.axes for k, v in got.items()} == {"bit1": "YX", "rgba": "YXC", "u16": "YX",
                                                  "stack": "QYX"}
    for name, arr in arrays.items():
        assert got[name].data.dtype == arr.dtype, name
        np.testing.assert_array_equal(got[name].data, arr)
    assert got["bit1"].data.dtype == bool and got["u16"].data.dtype == np.uint16
    stack = got["stack"]
    assert stack.is_stack and stack.n_planes == 3 and stack.plane_shape == (H, W)
    for z, plane in enumerate(stack.planes()):
        np.testing.assert_array_equal(plane, arrays["stack"][z])
    assert not got["u16"].is_stack and got["u16"].n_planes == 1


def test_predict_collection_reads_files_as_the_arrays(files, model):
    root, arrays = files
    seg, _ = model
    expected = _expected(seg, arrays)
    paths = [root / "images" / f"{name}{'.png' if name in ('bit1', 'rgba') else '.tif'}"
             for name in arrays]
    got = predict_collection(seg, paths, batch_size=2)
    for name, res in zip(arrays, got):
        np.testing.assert_array_equal(res, expected[name])
    assert got[list(arrays).index("stack")].shape == (3, H, W)  # every plane predicted
    # mixed with arrays, one batch
    mixed = predict_collection(seg, [paths[3], arrays["u16"]], batch_size=4)
    np.testing.assert_array_equal(mixed[0], expected["stack"])
    np.testing.assert_array_equal(mixed[1], expected["u16"])


def test_cli_predict_reads_files_as_the_arrays(files, model, tmp_path):
    root, arrays = files
    seg, path = model
    expected = _expected(seg, arrays)
    proba = _expected(seg, arrays, "predict_proba")
    res = run_cli("predict", path, root / "images", "-o", tmp_path / "auto", "--proba",
                  "--quiet")
    assert res.returncode == 0, res.stderr
    for name in ("bit1", "rgba", "u16"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "auto" / f"{name}.png")),
                                      expected[name])
    # the 3-page file: a 3-page label stack (TIFF), not one plane
    written = read_image(tmp_path / "auto" / "stack.tif")
    assert written.axes == "QYX" and written.data.shape == (3, H, W)
    np.testing.assert_array_equal(written.data, expected["stack"])
    probs = read_image(tmp_path / "auto" / "stack_proba.tif")
    assert probs.axes == "QYXC" and probs.data.shape == (3, H, W, 2)  # classes 1, 2
    np.testing.assert_array_equal(probs.data, proba["stack"].astype(np.float32))
    # npy: the same stack; png cannot hold it: refused, naming the file, others written
    res = run_cli("predict", path, root / "images" / "stack.tif", "-o", tmp_path / "npy",
                  "--format", "npy", "--quiet")
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "npy" / "stack.npy"), expected["stack"])
    res = run_cli("predict", path, root / "images", "-o", tmp_path / "png", "--format", "png",
                  "--quiet")
    assert res.returncode == 1
    assert "stack.tif" in res.stderr and "--format png holds one plane" in res.stderr
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "bit1.png", "rgba.png", "u16.png"]


def test_cli_predict_ome_zarr_stack_gives_an_ome_zarr_label_stack(files, model, tmp_path):
    pytest.importorskip("zarr")
    from skhyper.cli._io import write_output

    _, arrays = files
    seg, path = model
    write_output(tmp_path / "zs.ome.zarr", arrays["stack"], "zarr", kind="labels", axes="ZYX")
    data = read_image(tmp_path / "zs.ome.zarr")
    assert data.axes == "ZYX"
    np.testing.assert_array_equal(data.data, arrays["stack"])
    res = run_cli("predict", path, tmp_path / "zs.ome.zarr", "-o", tmp_path / "out", "--quiet")
    assert res.returncode == 0, res.stderr
    out = read_image(tmp_path / "out" / "zs.ome.zarr")
    assert out.axes == "ZYX"
    np.testing.assert_array_equal(out.data, _expected(seg, arrays)["stack"])


def test_cli_train_reads_files_and_label_stacks_as_the_arrays(files, tmp_path):
    root, arrays = files
    grey = tmp_path / "grey"  # one channel: the 1-bit, 16-bit and 3-page files
    (grey / "images").mkdir(parents=True)
    (grey / "labels").mkdir()
    for name, label in (("bit1.png", "bit1.png"), ("u16.tif", "u16.png"),
                        ("stack.tif", "stack.tif")):
        os.symlink(root / "images" / name, grey / "images" / name)
        os.symlink(root / "labels" / label, grey / "labels" / label)
    res = run_cli("train", grey / "images", grey / "labels", "-o", tmp_path / "grey.skhyper",
                  *TINY)
    assert res.returncode == 0, res.stderr
    assert "trained on 3 images (5 planes)" in res.stdout
    planes = [arrays["bit1"], *arrays["stack"], arrays["u16"]]  # the files' sorted order
    api = _segmenter().fit(planes, [_scribbles(), *[_scribbles(z) for z in range(3)],
                                    _scribbles()])
    cli = skhyper.load(tmp_path / "grey.skhyper")
    for plane in planes:
        np.testing.assert_array_equal(cli.predict(plane), api.predict(plane))
    np.testing.assert_allclose(cli.classifier_[-1].coef_, api.classifier_[-1].coef_,
                               rtol=0, atol=0)
    res = run_cli("train", root / "images" / "rgba.png", root / "labels" / "rgba.png", "-o",
                  tmp_path / "rgb.skhyper", *TINY)
    assert res.returncode == 0, res.stderr
    api = _segmenter().fit([arrays["rgba"]], [_scribbles()])
    np.testing.assert_array_equal(skhyper.load(tmp_path / "rgb.skhyper").predict(
        arrays["rgba"]), api.predict(arrays["rgba"]))


def test_cli_train_refuses_a_stack_without_a_label_stack(files, tmp_path):
    root, _ = files
    (tmp_path / "labels").mkdir()
    Image.fromarray(_scribbles()).save(tmp_path / "labels" / "stack.png")
    res = run_cli("train", root / "images" / "stack.tif", tmp_path / "labels", "-o",
                  tmp_path / "m.skhyper", *TINY)
    assert res.returncode == 2
    assert "'stack.png' holds 1 plane(s)" in res.stderr and "holds 3 plane(s)" in res.stderr


# ----------------------------------------------------------------------------- axis policy


@pytest.mark.parametrize("kwargs, axes, shape", [
    ({"imagej": True, "metadata": {"axes": "ZYX"}}, "ZYX", (3, 8, 9)),
    ({"metadata": {"axes": "CYX"}}, "YXC", (8, 9, 3)),
    ({"metadata": {"axes": "TYX"}}, "TYX", (3, 8, 9)),
    ({}, "QYX", (3, 8, 9)),  # no axis names: pages are planes
    ({"photometric": "rgb"}, "YXC", (8, 9, 3)),  # samples: channels
])
def test_tiff_axes_from_metadata(tmp_path, kwargs, axes, shape):
    arr = np.arange(3 * 8 * 9, dtype=np.uint8).reshape(3, 8, 9)
    kwargs = {"photometric": "minisblack", **kwargs}
    if kwargs["photometric"] == "rgb":
        kwargs["planarconfig"] = "separate"
    tifffile.imwrite(tmp_path / "a.tif", arr, **kwargs)
    data = read_image(tmp_path / "a.tif")
    assert (data.axes, data.data.shape) == (axes, shape)
    np.testing.assert_array_equal(data.data, arr.transpose(1, 2, 0) if "C" in axes else arr)


def test_ome_tiff_hyperstack_and_singletons(tmp_path):
    arr = np.arange(2 * 2 * 1 * 8 * 9, dtype=np.uint16).reshape(2, 2, 1, 8, 9)  # T C Z Y X
    tifffile.imwrite(tmp_path / "a.ome.tif", arr, metadata={"axes": "TCZYX"})
    data = read_image(tmp_path / "a.ome.tif")
    assert data.axes == "TYXC" and data.data.shape == (2, 8, 9, 2)  # Z of 1 dropped
    np.testing.assert_array_equal(data.data, arr[:, :, 0].transpose(0, 2, 3, 1))
    labels = [p[..., 0] for p in data.planes()]
    np.testing.assert_array_equal(data.stack(labels), arr[:, 0, 0])
    assert data.result_axes() == "TYX" and data.result_axes("C") == "TYXC"


def test_pil_pages_and_axes_override(tmp_path):
    frames = [Image.fromarray(np.full((8, 9), v, np.uint8)) for v in (1, 2)]
    frames[0].save(tmp_path / "p.tif", save_all=True, append_images=frames[1:])
    data = read_image(tmp_path / "p.tif")
    assert data.axes == "IYX" and [int(p[0, 0]) for p in data.planes()] == [1, 2]
    # told: the 2 pages are the channels of one image
    told = read_image(tmp_path / "p.tif", axes="CYX")
    assert told.axes == "YXC" and told.data.shape == (8, 9, 2) and not told.is_stack
    # (height, width, channels) stored as pages without axis names: planes unless told
    arr = np.arange(48 * 64 * 2, dtype=np.uint16).reshape(48, 64, 2)
    tifffile.imwrite(tmp_path / "hwc.tif", arr, photometric="minisblack")
    assert read_image(tmp_path / "hwc.tif").axes == "QYX"
    told = read_image(tmp_path / "hwc.tif", axes="yxc")
    assert told.axes == "YXC"
    np.testing.assert_array_equal(told.data, arr)


def test_npy_and_plain_zarr_follow_the_array_convention(tmp_path):
    arr = np.arange(4 * 5 * 2, dtype=np.int16).reshape(4, 5, 2)
    np.save(tmp_path / "a.npy", arr)
    assert read_image(tmp_path / "a.npy").axes == "YXC"
    assert read_image(tmp_path / "a.npy", axes="ZYX").axes == "ZYX"
    np.save(tmp_path / "b.npy", np.zeros((2, 4, 5, 3)))
    assert read_image(tmp_path / "b.npy").axes == "IYXC"
    np.save(tmp_path / "c.npy", np.zeros((2, 2, 4, 5, 3)))
    with pytest.raises(ValueError, match="5-D array without axis names: pass axes="):
        read_image(tmp_path / "c.npy")
    assert read_image(tmp_path / "c.npy", axes="TZYXC").axes == "TZYXC"
    zarr = pytest.importorskip("zarr")
    z = zarr.open(str(tmp_path / "a.zarr"), mode="w", shape=arr.shape, dtype=arr.dtype)
    z[...] = arr
    data = read_image(tmp_path / "a.zarr")
    assert data.axes == "YXC"
    np.testing.assert_array_equal(data.data, arr)


def test_lazy_reading(tmp_path):
    pytest.importorskip("dask")
    pytest.importorskip("zarr")
    arr = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)
    tifffile.imwrite(tmp_path / "a.tif", arr, photometric="minisblack",
                     metadata={"axes": "ZYX"})
    data = read_image(tmp_path / "a.tif", lazy_above=100)
    assert data.lazy and data.axes == "ZYX" and hasattr(data.planes()[1], "dask")
    np.testing.assert_array_equal(np.asarray(data.planes()[1]), arr[1])
    assert not read_image(tmp_path / "a.tif", lazy_above=20 * 30).lazy
    np.save(tmp_path / "a.npy", arr[0])
    assert read_image(tmp_path / "a.npy", lazy_above=10).lazy


def test_16_bit_png_and_palette_labels(tmp_path):
    arr = (np.arange(8 * 9, dtype=np.uint16) * 900).reshape(8, 9)
    Image.fromarray(arr).save(tmp_path / "a.png")
    data = read_image(tmp_path / "a.png")
    assert data.data.dtype == np.uint16
    np.testing.assert_array_equal(data.data, arr)
    pal = Image.new("P", (2, 2))
    pal.putdata([0, 1, 2, 1])
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "pal.png")
    assert read_labels(tmp_path / "pal.png").data.tolist() == [[0, 1], [2, 1]]
    assert read_image(tmp_path / "pal.png").data.shape == (2, 2, 3)  # an image: its colours
    Image.fromarray(np.array([[0, 1]], bool)).convert("1").save(tmp_path / "bit.png")
    labels = read_labels(tmp_path / "bit.png")
    assert labels.data.dtype == np.uint8 and labels.data.tolist() == [[0, 1]]


# ----------------------------------------------------------------------------- errors


def test_errors_name_the_file_and_the_parameter(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="cannot read 'broken.png' as an image"):
        read_image(tmp_path / "broken.png")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ValueError, match="broken.tif"):
        read_image(tmp_path / "broken.tif")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((3, 8, 9), np.uint8), photometric="minisblack")
    with pytest.raises(ValueError, match=r"'axes' parameter got 'ZZX' for a.tif \(shape "
                                         r"\(3, 8, 9\)\): it must contain Y and X"):
        read_image(tmp_path / "a.tif", axes="ZZX")
    with pytest.raises(ValueError, match="it must name each of the 3 axes"):
        read_image(tmp_path / "a.tif", axes="YX")
    with pytest.raises(TypeError, match="'axes' parameter must be None"):
        read_image(tmp_path / "a.tif", axes=3)
    with pytest.raises(TypeError, match="'path' parameter"):
        read_image(3)
    with pytest.raises(ValueError, match="'lazy_above' parameter"):
        read_image(tmp_path / "a.tif", lazy_above=0)
    Image.fromarray(np.array([[[0, 1, 2]]], np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png is a colour image"):
        read_labels(tmp_path / "rgb.png")
    np.save(tmp_path / "f.npy", np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="non-integer values"):
        read_labels(tmp_path / "f.npy")


def test_zarr_missing_gives_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "a.zarr").mkdir()
    monkeypatch.setitem(sys.modules, "zarr", None)  # any import of zarr fails
    with pytest.raises(ImportError, match="a.zarr: reading Zarr needs the zarr package: pip "
                                          "install zarr"):
        read_image(tmp_path / "a.zarr")


def test_image_data_of_one_plane():
    data = ImageData(np.zeros((4, 5, 3)), "YXC")
    assert not data.is_stack and data.n_planes == 1 and len(data.planes()) == 1
    assert data.stack([np.ones((4, 5))]).shape == (4, 5)


def test_cli_axes_option_overrides_the_policy(files, model, tmp_path, capsys):
    from skhyper.cli import main

    root, arrays = files
    seg, path = model
    # told: the three pages are the channels of one RGB image -> one label plane
    res = run_cli("predict", path, root / "images" / "stack.tif", "-o", tmp_path, "--axes",
                  "CYX", "--quiet")
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "stack.png")),
                                  seg.predict(arrays["stack"].transpose(1, 2, 0)))
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(path), str(root / "images"), "-o", str(tmp_path), "--axes", "ZZ"])
    assert exc.value.code == 2
    assert "--axes: must be one letter per axis" in capsys.readouterr().err
