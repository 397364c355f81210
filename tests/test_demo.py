"""The ``python -m skhyper`` demo: runs offline on the bundled sample, reaches its IoU, draws."""

from __future__ import annotations

import contextlib
import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from skhyper.__main__ import main
from skhyper.metrics import foreground_iou


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Run the demo once (about 15-45 s on 2 CPU cores); return its stdout and figure path."""
    output = tmp_path_factory.mktemp("demo") / "x.png"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["demo", "--output", str(output), "--seed", "0"])
    return status, out.getvalue(), output


def _iou_line(text, split):
    match = re.search(rf"^{split} foreground IoU \(pooled over (\d+) images\): ([0-9.]+)$",
                      text, flags=re.MULTILINE)
    assert match, f"no {split} IoU line in the demo output:\n{text}"
    return int(match.group(1)), float(match.group(2))


def test_demo_prints_ious_and_reaches_goal(demo_run):
    status, text, _ = demo_run
    assert status == 0
    n_train, train_iou = _iou_line(text, "train")
    n_test, test_iou = _iou_line(text, "test")
    assert (n_train, n_test) == (16, 8)
    # the default segmenter on the bundled sample: 0.850 / 0.886 measured (0.705 / 0.714
    # with the first demo's PCA + SGD at scale 1)
    assert test_iou >= 0.8
    assert train_iou >= 0.8
    assert re.search(r"^total time: [0-9.]+ s$", text, flags=re.MULTILINE)


def test_demo_writes_png(demo_run):
    _, text, output = demo_run
    assert output.is_file()
    assert str(output.resolve()) in text
    with Image.open(output) as img:
        img.verify()
    with Image.open(output) as img:
        assert img.format == "PNG"
        assert img.mode == "RGB"
        width, height = img.size
    # 8 test images in 4 columns, each scaled to a longer side of 320 px, plus labels.
    assert 4 * 320 <= width <= 4 * 360
    assert 2 * 240 <= height <= 2 * 420
    pixels = np.asarray(Image.open(output))
    assert pixels.std() > 20  # not a blank canvas


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--output", "--device", "--n-per-image", "--seed", "--data", "--image-size"):
        assert option in out


def test_rejects_unknown_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["trian"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_rejects_bad_n_per_image(capsys):
    with pytest.raises(SystemExit):
        main(["--n-per-image", "0"])
    assert "must be a positive integer" in capsys.readouterr().err


def test_foreground_iou():
    """The demo's score: skhyper.metrics.foreground_iou(y_true, y_pred), labels 0/1 here."""
    true = np.array([[0, 1, 1, 0]])
    assert foreground_iou(true, true) == 1.0
    assert foreground_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    assert foreground_iou(true, 1 - true) == 0.0
    # pooled over maps, not averaged: (1 + 0) / (2 + 1)
    pooled = foreground_iou([np.array([[1, 0]]), np.array([[1]])],
                            [np.array([[1, 1]]), np.array([[0]])])
    assert pooled == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"'y_pred' parameter "
                                         r"has shape \(2, 2\) but `y_true` has shape "
                                         r"\(2, 3\)"):
        foreground_iou(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="'y_pred' parameter has 2 label maps but `y_true` has 1"):
        foreground_iou([true], [true, true])


@pytest.mark.parametrize("where", ["under_a_file", "folder", "read_only", "suffix"])
def test_output_is_checked_before_any_work(where, tmp_path, capsys, monkeypatch):
    import skhyper.demo

    def no_work(*args, **kwargs):
        raise AssertionError("the data was loaded before the output path was checked")

    monkeypatch.setattr(skhyper.demo, "load_horses", no_work)
    (tmp_path / "a_file").write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    real_access = os.access  # root may write anywhere: the permission is what is tested

    def access(p, mode):
        return False if os.fspath(p) == os.fspath(locked) else real_access(p, mode)

    monkeypatch.setattr(os, "access", access)
    path = {
        "under_a_file": tmp_path / "a_file" / "sub" / "x.png",
        "folder": tmp_path,
        "read_only": locked / "x.png",
        "suffix": tmp_path / "x.jpg",
    }[where]
    assert main(["--output", str(path)]) == 2  # the demo without 'demo', as python -m skhyper
    err = capsys.readouterr().err
    assert "--output" in err and {"under_a_file": "is a file", "folder": "is a folder",
                                  "read_only": "cannot be written", "suffix": ".png"}[where] in err


def test_bad_data_folder_names_the_option(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing"), "--output", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "--data must be an existing folder" in err and "load_horses" not in err
