"""The ``skhyper`` command line, end to end: the command runs in a subprocess (``python -m
skhyper`` with this checkout on ``PYTHONPATH``) on the bundled horse sample and on 2-channel
``uint16`` TIFFs with scribble labels; its outputs equal the Python API's predictions exactly.
Bad arguments give one line and exit status 2 (run in-process: the same code, faster)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import skhyper
from skhyper import HypercolumnSegmenter, HypercolumnTransformer
from skhyper.cli import main

ROOT = Path(__file__).resolve().parents[1]
HORSES = ROOT / "skhyper" / "data" / "horses"
STEMS = ["horse019", "horse141", "horse180", "horse319"]  # sorted: the order the CLI reads
TINY = ["--backbone", "resnet18", "--weights", "none", "--layers", "relu,layer1",
        "--device", "cpu", "--seed", "0"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
        OMP_WAIT_POLICY="PASSIVE")
    return subprocess.run([sys.executable, "-m", "skhyper", *map(str, args)], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def _api_segmenter(**hc) -> HypercolumnSegmenter:
    """What 'skhyper train' with TINY builds (the segmenter's defaults: scales="auto",
    edge-aware upsampling, StandardScaler + LogisticRegression; 200 pixels per image)."""
    return HypercolumnSegmenter(
        HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None,
                               device="cpu", scales="auto", **hc),
        n_pixels_per_image=200, random_state=0)


# ----------------------------------------------------------------------------- horses


@pytest.fixture(scope="module")
def horses(tmp_path_factory):
    """Four bundled images and masks (0/255), copied; a model trained on them by the CLI."""
    root = tmp_path_factory.mktemp("horses")
    for sub, ext in (("images", ".jpg"), ("masks", ".png")):
        (root / sub).mkdir()
        for stem in STEMS:
            shutil.copy(HORSES / sub / f"{stem}{ext}", root / sub / f"{stem}{ext}")
    model = root / "horses.skhyper"
    res = run_cli("train", root / "images", root / "masks", "-o", model, "--ignore-label",
                  "none", "--pixels-per-image", "200", "--cv-folds", "2", *TINY)
    assert res.returncode == 0, res.stderr
    return root, model, res.stdout


def test_train_reports_classes_features_and_cv_score(horses):
    _, model, report = horses
    assert model.is_file()
    assert "trained on 4 images" in report
    assert "classes (labelled pixels): 0 (" in report and "255 (" in report
    assert "features: 128 per pixel from resnet18 [s2.0.relu,s2.0.layer1]" in report  # auto
    assert "cross-validated over images (2 folds" in report and "mean IoU" in report


def test_predict_equals_the_python_api_exactly_and_skips_a_corrupt_file(horses, tmp_path):
    root, model, _ = horses
    inputs = tmp_path / "inputs"
    shutil.copytree(root / "images", inputs)
    (inputs / "broken.png").write_bytes(b"not a png at all")
    res = run_cli("predict", model, inputs, "-o", tmp_path / "png", "--proba")
    assert res.returncode == 1, res.stderr  # one image failed, the others are written
    assert "4 written, 0 already done, 1 failed" in res.stdout
    assert "broken.png" in res.stderr and "Traceback" not in res.stderr
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == sorted(
        [f"{s}.png" for s in STEMS] + [f"{s}_proba.tif" for s in STEMS])
    assert main(["predict", str(model), str(root / "images" / "*.jpg"), "-o",
                 str(tmp_path / "npy"), "--format", "npy", "--quiet"]) == 0  # a glob
    loaded = skhyper.load(model)
    images = [np.asarray(Image.open(root / "images" / f"{s}.jpg")) for s in STEMS]
    masks = [np.asarray(Image.open(root / "masks" / f"{s}.png")) for s in STEMS]
    fitted = _api_segmenter().fit(images, masks)  # the same fit in this process
    import tifffile

    for stem, image in zip(STEMS, images):
        expected = loaded.predict(image)
        assert np.array_equal(expected, fitted.predict(image))
        png = np.asarray(Image.open(tmp_path / "png" / f"{stem}.png"))
        assert png.dtype == np.uint8 and np.array_equal(png, expected)
        assert np.array_equal(np.load(tmp_path / "npy" / f"{stem}.npy"), expected)
        proba = tifffile.imread(tmp_path / "png" / f"{stem}_proba.tif")
        np.testing.assert_array_equal(proba, loaded.predict_proba(image).transpose(2, 0, 1))


def test_resume_skips_done_files(horses, tmp_path, capsys):
    root, model, _ = horses
    out = tmp_path / "out"
    args = ["predict", str(model), str(root / "images"), "-o", str(out), "--quiet"]
    assert main(args) == 0
    (out / f"{STEMS[0]}.png").unlink()  # as if the run had been killed before this one
    (out / f".{STEMS[0]}.png.partial").write_bytes(b"half")  # ... while writing it
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    capsys.readouterr()
    assert main(args) == 0
    assert "1 written, 3 already done, 0 failed" in capsys.readouterr().out
    assert all(out.joinpath(n).stat().st_mtime_ns == t for n, t in before.items())
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.png" for s in STEMS)
    assert main(args + ["--overwrite"]) == 0
    assert "4 written, 0 already done" in capsys.readouterr().out


def test_large_images_go_chunk_by_chunk_to_ome_zarr(horses, tmp_path):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("dask")
    root, _, _ = horses
    model = tmp_path / "one_scale.skhyper"  # chunks need one scale (else: whole, tiled)
    assert main(["train", str(root / "images"), str(root / "masks"), "-o", str(model),
                 "--ignore-label", "none", "--pixels-per-image", "200", "--cv-folds", "0",
                 "--scales", "none", *TINY]) == 0
    image = root / "images" / f"{STEMS[0]}.jpg"
    assert main(["predict", str(model), str(image), "-o", str(tmp_path), "--large-pixels",
                 "1000", "--chunk-size", "64", "--quiet"]) == 0
    group = zarr.open(tmp_path / f"{STEMS[0]}.ome.zarr", mode="r")
    assert group.attrs["multiscales"][0]["datasets"][0]["path"] == "0"
    expected = skhyper.load(model).predict(np.asarray(Image.open(image)))
    assert np.array_equal(group["0"][:], expected)


@pytest.mark.slow
def test_dask_scheduler_spreads_the_images(horses, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    root, model, _ = horses
    broken = tmp_path / "in" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"not a png")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        status = main(["predict", str(model), str(broken), str(root / "images"), "-o",
                       str(tmp_path), "--quiet", "--dask-scheduler", cluster.scheduler_address])
    assert status == 1 and "broken.png" in capsys.readouterr().err
    loaded = skhyper.load(model)
    for stem in STEMS:
        image = np.asarray(Image.open(root / "images" / f"{stem}.jpg"))
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{stem}.png")),
                              loaded.predict(image))


def test_export_onnx(horses, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from skhyper.export import OnnxSegmenter

    root, model, _ = horses
    path = tmp_path / "m.onnx"
    assert main(["export", str(model), "--onnx", str(path)]) == 0
    image = np.asarray(Image.open(root / "images" / f"{STEMS[0]}.jpg"))
    proba = OnnxSegmenter(path).predict_proba(image)
    np.testing.assert_allclose(proba, skhyper.load(model).predict_proba(image), atol=1e-4)
    msg = _error(capsys, "export", model, "--onnx", path)  # exists: not replaced silently
    assert "--overwrite" in msg


# ----------------------------------------------------------------------------- microscopy


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """Four 2-channel uint16 TIFFs (48 x 64, bright discs in channel 1) with scribbles."""
    import tifffile

    root = tmp_path_factory.mktemp("cells")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    images = []
    yy, xx = np.mgrid[:48, :64]
    for i in range(4):
        disc = (yy - 20 - 2 * i) ** 2 + (xx - 30 + 3 * i) ** 2 < 12 ** 2
        img = rng.integers(200, 600, size=(48, 64, 2)).astype(np.uint16)
        img[disc, 1] += 2500
        if i % 2:  # channels first, as ImageJ writes them; else (height, width, channels)
            tifffile.imwrite(root / "images" / f"cell{i}.tif", img.transpose(2, 0, 1),
                             photometric="minisblack", metadata={"axes": "CYX"})
        else:  # 2 samples per pixel: axes YXS
            tifffile.imwrite(root / "images" / f"cell{i}.tif", img, photometric="minisblack",
                             planarconfig="contig")
        images.append(img)
        scribbles = np.zeros((48, 64), np.uint8)  # 0 = unlabelled
        scribbles[2:5, 4:60] = 1
        scribbles[20 - 2 * i, 24 + 3 * i:36 + 3 * i] = 2
        tifffile.imwrite(root / "labels" / f"cell{i}_labels.tif", scribbles)
    return root, images


def test_two_channel_uint16_tiffs_with_scribbles(cells, tmp_path, capsys):
    import tifffile

    cells, images = cells
    model = tmp_path / "cells.skhyper"
    res = run_cli("train", cells / "images", cells / "labels", "-o", model, "--label-suffix",
                  "_labels", "--intensity-range", "0,4000", "--pixels-per-image", "200",
                  "--cv-folds", "0", *TINY)
    assert res.returncode == 0, res.stderr
    assert "channels: per_channel" in res.stdout and "1 (" in res.stdout and "2 (" in res.stdout
    res = run_cli("predict", model, cells / "images", "-o", tmp_path / "out", "--format", "tif")
    assert res.returncode == 0, res.stderr
    loaded = skhyper.load(model)
    assert list(loaded.classes_) == [1, 2]
    fitted = HypercolumnSegmenter(
        HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None,
                               device="cpu", channel_strategy="per_channel",
                               intensity_range=(0.0, 4000.0), scales="auto"),
        n_pixels_per_image=200, random_state=0, ignore_label=0)
    fitted.fit(images, [tifffile.imread(cells / "labels" / f"cell{i}_labels.tif")
                        for i in range(4)])
    for i, image in enumerate(images):
        written = tifffile.imread(tmp_path / "out" / f"cell{i}.tif")
        expected = loaded.predict(image)
        assert np.array_equal(written, expected) and np.array_equal(expected,
                                                                    fitted.predict(image))
    assert (expected == 2).sum() > 100  # the disc is found, not only the scribbled line
    # RGB photos through a 2-channel model: every image fails alike, so the run stops early
    capsys.readouterr()
    assert main(["predict", str(model), str(HORSES / "images"), "-o", str(tmp_path / "rgb"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all("skipped" in line for line in err[:4])
    assert err[-1].startswith("skhyper: error: the first 4 images all failed")
    assert "3 channels" in err[-1]


# ----------------------------------------------------------------------------- errors


def _error(capsys, *argv: str) -> str:
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skhyper: error: "), err
    return lines[0]


def test_bad_arguments_give_one_line_and_exit_2(horses, tmp_path, capsys, monkeypatch):
    root, model, _ = horses
    import skhyper.cli._train as train

    def no_reading(*args, **kwargs):
        raise AssertionError("images were read before the arguments were checked")

    monkeypatch.setattr(train, "read_image", no_reading)
    (tmp_path / "file").write_text("x")
    (tmp_path / "unmatched").mkdir()
    shutil.copy(root / "masks" / f"{STEMS[0]}.png", tmp_path / "unmatched" / "other.png")
    images, masks = root / "images", root / "masks"
    out = tmp_path / "m.skhyper"

    msg = _error(capsys, "train", tmp_path / "missing", masks, "-o", out)
    assert "IMAGES" in msg and "does not exist" in msg
    msg = _error(capsys, "train", images, tmp_path / "unmatched", "-o", out)
    assert "do not match by name" in msg and "--label-suffix" in msg
    msg = _error(capsys, "train", images, masks, "-o", out, "--backbone", "resnet9000")
    assert "--backbone" in msg and "resnet9000" in msg
    msg = _error(capsys, "train", images, masks, "-o", out, *TINY, "--layers", "relu,layer9")
    assert "--layers" in msg and "layer9" in msg and "skhyper layers resnet18" in msg
    msg = _error(capsys, "train", images, masks, "-o", tmp_path / "file" / "m.skhyper")
    assert "-o/--output" in msg and "is a file" in msg
    msg = _error(capsys, "train", images, masks, "-o", model)
    assert "exists" in msg and "--overwrite" in msg
    msg = _error(capsys, "train", images, masks, "-o", out, "--pixels-per-image", "0")
    assert "--pixels-per-image" in msg
    msg = _error(capsys, "predict", model, images, "-o", tmp_path / "file")
    assert "-o/--output" in msg and "is a file" in msg
    msg = _error(capsys, "predict", model, images, "-o", tmp_path / "file" / "sub")
    assert "-o/--output" in msg and "which is a file" in msg
    msg = _error(capsys, "predict", model, tmp_path / "missing.png", "-o", tmp_path / "o")
    assert "INPUTS" in msg and "missing.png" in msg
    msg = _error(capsys, "predict", model, images, "-o", tmp_path / "o", "--format", "png",
                 "--proba")
    assert "--format png" in msg
    msg = _error(capsys, "layers", "resnet9000")
    assert "resnet9000" in msg
    assert not (tmp_path / "o").exists()  # nothing made before the checks passed


def test_a_model_file_from_another_tool_is_refused(horses, tmp_path, capsys):
    root, _, _ = horses
    for name, content in (("pickle.pkl", b"\x80\x04K\x01."), ("project.ilp", b"\x89HDF\r\n")):
        (tmp_path / name).write_bytes(content)
        msg = _error(capsys, "predict", tmp_path / name, root / "images", "-o", tmp_path / "o")
        assert "MODEL" in msg and "not a skhyper model file" in msg
    import zipfile

    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("rdf.yaml", "x")
    msg = _error(capsys, "export", tmp_path / "other.zip", "--onnx", tmp_path / "m.onnx")
    assert "not a skhyper model file" in msg


def test_errors_in_a_subprocess_are_one_line_without_traceback(tmp_path):
    res = run_cli("train", tmp_path / "nope", tmp_path / "nope2", "-o", tmp_path / "m.skhyper")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"skhyper: error: IMAGES {str(tmp_path / 'nope')!r} does not exist: give a file, a "
        "folder or a glob."]


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope"), str(tmp_path), "-o", "m.skhyper",
                 "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_layers_lists_the_table(capsys):
    assert main(["layers", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert "* layer1" in out and "fc" in out and "59 layers of resnet18" in out


def test_no_command_is_the_demo(capsys):
    args = skhyper.cli.build_parser().parse_args(skhyper.cli._main._with_command([]))
    assert args.command == "demo" and args.output == "skhyper_demo.png"  # python -m skhyper
    with pytest.raises(SystemExit) as exc:
        main(["--n-per-image", "0"])  # demo options without 'demo'
    assert exc.value.code == 2
    assert "--n-per-image" in capsys.readouterr().err


def test_console_script_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'skhyper = "skhyper.__main__:main"' in text
    try:
        eps = distribution("skhyper").entry_points
    except PackageNotFoundError:
        pytest.skip("skhyper is not installed")
    script, = [e for e in eps if e.group == "console_scripts" and e.name == "skhyper"]
    assert script.value == "skhyper.__main__:main"
    if shutil.which("skhyper") is None:
        pytest.skip("the console script is not on PATH")
