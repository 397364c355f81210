"""The napari plugin: a simulated user scribbles, trains, corrects, segments, saves, reloads and
exports in a real viewer (Xvfb: pytest-xvfb, or ``xvfb-run -a``); the widget's labels equal a
HypercolumnSegmenter fitted through the Python API on the same pixels; cancel; bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import dask.array as da
import numpy as np
import pytest
from qtpy.QtCore import QTimer
from sklearn.base import clone

from skhyper import HypercolumnSegmenter, HypercolumnTransformer
from skhyper.datasets import load_horses
from skhyper.napari import SegmenterWidget, horse_sample
from skhyper.napari import _widget as widget_module

pytestmark = pytest.mark.napari


def tiny() -> HypercolumnSegmenter:
    """A small random-weights backbone: the same code path as the default, in a second."""
    hc = HypercolumnTransformer("resnet18", layers=["relu", "layer1"], weights=None, device="cpu")
    return HypercolumnSegmenter(hc, ignore_label=0, random_state=0)


@pytest.fixture(scope="module")
def horse():
    data = load_horses(split="train")
    return data.images[0], data.masks[0]


def strokes(mask: np.ndarray) -> np.ndarray:
    """Scribbles a user might paint: a line through the horse (2) and round it (1)."""
    r = int(np.median(np.nonzero(mask)[0]))
    s = np.zeros(mask.shape, np.uint8)
    s[r - 1:r + 2, :] = np.where(mask[r - 1:r + 2, :] == 1, 2, 0)
    s[:3, :], s[-3:, :] = 1, 1
    s[:, :3] = 1
    return s


@pytest.fixture
def notified(monkeypatch):
    """The messages the widget's buttons show as napari error notifications."""
    messages: list[str] = []
    monkeypatch.setattr(widget_module, "show_error", messages.append)
    return messages


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    w = SegmenterWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.estimator = tiny()
    yield w
    w.cancel()


def paint(layer, rows, cols, value):
    """One stroke, as the labels layer records it (undo history, one ``paint`` event)."""
    rr, cc = np.meshgrid(np.arange(*rows), np.arange(*cols), indexing="ij")
    layer.data_setitem((rr.ravel(), cc.ravel()), value)


def api_labels(image, scribbles):
    return clone(tiny()).fit(image, scribbles).predict(image)


def test_a_user_trains_corrects_saves_reloads_and_exports(widget, horse, tmp_path, qtbot,
                                                          monkeypatch, notified):
    image, mask = horse
    viewer = widget.viewer
    viewer.add_image(image, name="horse", rgb=True)
    widget.image_combo.setCurrentText("horse")
    scribbles = widget.new_labels_layer()
    assert widget.labels_combo.currentText() == scribbles.name
    first = strokes(mask)
    for value in (1, 2):
        rr, cc = np.nonzero(first == value)
        scribbles.data_setitem((rr, cc), value)
    painted = scribbles.data.copy()

    model = widget.train()
    assert widget.model is model and isinstance(model, HypercolumnSegmenter)
    result = viewer.layers["horse segmentation"].data
    np.testing.assert_array_equal(result, api_labels(image, painted))
    np.testing.assert_array_equal(scribbles.data, painted)  # scribbles never written to

    # a correction: part of the horse line was wrong, a background stroke is added
    paint(scribbles, (0, image.shape[0]), (image.shape[1] - 4, image.shape[1] - 1), 1)
    corrected = scribbles.data.copy()
    widget.train()
    np.testing.assert_array_equal(viewer.layers["horse segmentation"].data,
                                  api_labels(image, corrected))

    # continuous training: a stroke refits in a thread worker (cached maps, same engine)
    widget.continuous_check.setChecked(True)
    before = widget.model
    paint(scribbles, (5, 9), (5, 40), 1)
    qtbot.waitUntil(lambda: widget.model is not before and widget._worker is None, timeout=60000)
    assert widget.model.hypercolumns_ is before.hypercolumns_  # the engine was reused
    latest = scribbles.data.copy()
    np.testing.assert_array_equal(viewer.layers["horse segmentation"].data,
                                  api_labels(image, latest))

    path = tmp_path / "horse.skhyper"
    monkeypatch.setattr(widget_module.QFileDialog, "getSaveFileName",
                        lambda *args, **kwargs: (str(path), ""))  # the user's pick
    widget.buttons["Save model"].click()
    assert path.is_file() and not notified
    fresh = SegmenterWidget(viewer)
    fresh.image_combo.setCurrentText("horse")
    fresh.load_model(path)
    np.testing.assert_array_equal(fresh.segment(), api_labels(image, latest))
    fresh.labels_combo.setCurrentText(scribbles.name)  # a loaded model learns on: its engine
    fresh.continuous_check.setChecked(True)
    loaded = fresh.model
    paint(scribbles, (20, 23), (5, 40), 1)
    qtbot.waitUntil(lambda: fresh.model is not loaded and fresh._worker is None, timeout=60000)
    assert fresh.model.hypercolumns_ is loaded.hypercolumns_
    np.testing.assert_array_equal(fresh.segment(), api_labels(image, scribbles.data))
    fresh.continuous_check.setChecked(False)
    widget.continuous_check.setChecked(False)
    qtbot.waitUntil(lambda: widget._worker is None and not widget._pending, timeout=60000)

    onnx = fresh.export(tmp_path / "horse.onnx", "onnx")
    from skhyper.export import OnnxSegmenter

    np.testing.assert_array_equal(OnnxSegmenter(onnx).predict(image), widget.model.predict(image))
    assert fresh.export(tmp_path / "horse.zip", "bioimageio").stat().st_size > 0


def test_stack_training_and_segmenting(widget, horse):
    """A 16-bit grey Z-stack in a dask-backed layer (planes read one at a time)."""
    image, mask = horse
    grey = (image.mean(axis=2) * 257).astype(np.uint16)
    stack = np.stack([grey, grey[::-1], grey[:, ::-1]])
    widget.viewer.add_image(da.from_array(stack, chunks=(1, *grey.shape)), name="stack")
    widget.image_combo.setCurrentText("stack")
    scribbles = widget.new_labels_layer()
    planes = [strokes(mask), strokes(mask[::-1]), np.zeros_like(mask, np.uint8)]
    scribbles.data = np.stack(planes)  # plane 2 has no scribbles: not trained on
    widget.scope_combo.setCurrentIndex(1)
    widget.train("stack")
    widget.proba_check.setChecked(True)
    labels = widget.segment("stack")
    api = clone(tiny()).fit([stack[0], stack[1]], planes[:2])
    np.testing.assert_array_equal(labels, np.stack(api.predict(list(stack))))
    # the same float32 computation twice: equal up to summation order
    np.testing.assert_allclose(widget.viewer.layers["stack probability"].data,
                               np.stack([p.max(axis=-1) for p in api.predict_proba(list(stack))]),
                               atol=1e-5)
    np.testing.assert_array_equal(widget.viewer.layers["stack segmentation"].data, labels)


def hold_fits(monkeypatch):
    """Background fits wait for ``release`` (set by the test): a refit caught running."""
    started, release, real = threading.Event(), threading.Event(), widget_module.fit_model
    calls = []

    def fit_model(*args, **kwargs):
        calls.append(np.array(args[2][0]))  # the scribbles it trains on
        started.set()
        assert release.wait(60), "the test never released the fit"
        return real(*args, **kwargs)

    monkeypatch.setattr(widget_module, "fit_model", fit_model)
    return started, release, calls


def test_cancel_keeps_the_model_and_a_newer_stroke_supersedes(widget, horse, qtbot,
                                                               monkeypatch):
    image, mask = horse
    widget.viewer.add_image(image, name="horse", rgb=True)
    widget.image_combo.setCurrentText("horse")
    scribbles = widget.new_labels_layer()
    scribbles.data = strokes(mask)
    model = widget.train()
    shown = widget.viewer.layers["horse segmentation"].data.copy()
    widget.continuous_check.setChecked(True)
    started, release, calls = hold_fits(monkeypatch)

    paint(scribbles, (5, 9), (5, 60), 1)
    qtbot.waitUntil(started.is_set, timeout=10000)  # the refit runs in a thread worker
    QTimer.singleShot(50, release.set)  # the fit in progress ends while cancel waits
    widget.cancel()
    assert widget._worker is None and widget.model is model  # joined; model unchanged
    np.testing.assert_array_equal(widget.viewer.layers["horse segmentation"].data, shown)

    started.clear()
    release.clear()
    paint(scribbles, (10, 14), (5, 60), 1)
    qtbot.waitUntil(started.is_set, timeout=10000)
    paint(scribbles, (15, 19), (5, 60), 1)  # a newer stroke while the refit runs
    qtbot.waitUntil(lambda: widget._pending, timeout=10000)
    release.set()
    qtbot.waitUntil(lambda: widget.model is not model and widget._worker is None
                    and not widget._pending, timeout=60000)
    assert len(calls) == 3 and not np.array_equal(calls[1], scribbles.data)
    np.testing.assert_array_equal(calls[2], scribbles.data)  # the last refit saw every stroke
    np.testing.assert_array_equal(widget.viewer.layers["horse segmentation"].data,
                                  api_labels(image, scribbles.data))


def test_bad_input_is_a_notification_naming_what_to_fix(widget, horse, notified, tmp_path,
                                                        monkeypatch):
    image, mask = horse
    viewer = widget.viewer
    viewer.add_image(image, name="horse", rgb=True)
    widget.image_combo.setCurrentText("horse")
    scribbles = widget.new_labels_layer()

    widget.buttons["Train"].click()
    assert "has no scribbles" in notified[-1] and "paint" in notified[-1]
    with pytest.raises(ValueError, match="has no scribbles"):
        widget.train()

    paint(scribbles, (5, 9), (5, 60), 1)
    widget.buttons["Train"].click()
    assert "class 1 only" in notified[-1] and "second class" in notified[-1]

    viewer.add_labels(np.zeros((20, 30), np.uint8), name="small")
    widget.labels_combo.setCurrentText("small")
    widget.buttons["Train"].click()
    assert "'small' has shape (20, 30)" in notified[-1] and "New labels layer" in notified[-1]
    widget.labels_combo.setCurrentText(scribbles.name)

    scribbles.data = strokes(mask)
    painted = scribbles.data.copy()
    model = widget.train()
    viewer.add_image(image.mean(axis=2), name="grey")
    widget.image_combo.setCurrentText("grey")
    widget.buttons["Segment plane"].click()
    assert "trained on 3-channel images" in notified[-1] and "'grey' has 1" in notified[-1]

    not_a_model = tmp_path / "notes.skhyper"
    not_a_model.write_text("not a model")
    monkeypatch.setattr(widget_module.QFileDialog, "getOpenFileName",
                        lambda *args, **kwargs: (str(not_a_model), ""))  # the user's pick
    widget.buttons["Load model"].click()
    assert "'notes.skhyper' is not a model" in notified[-1] and "Save model" in notified[-1]
    assert widget.model is model  # nothing is lost
    np.testing.assert_array_equal(scribbles.data, painted)


def test_importing_the_plugin_does_not_import_torch():
    code = textwrap.dedent("""
        import sys
        import skhyper.napari, skhyper.napari._widget, skhyper.napari._sample
        from npe2 import PluginManager
        pm = PluginManager.instance()
        pm.discover()
        assert "skhyper" in {m.name for m in pm.iter_manifests()}, "manifest not discovered"
        assert pm.get_manifest("skhyper").contributions.widgets, "no widget contribution"
        assert "torch" not in sys.modules, "torch was imported"
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_widget_imports_torch_after_napari_made_its_opengl_context():
    """As in napari: the canvas exists (Mesa may have loaded libLLVM, which made torch's
    import of triton crash the process), then the widget loads torch on first use."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import napari
        viewer = napari.Viewer(show=True)
        assert "torch" not in sys.modules
        from skhyper.napari import SegmenterWidget
        widget = SegmenterWidget(viewer)
        image = np.zeros((48, 64), np.uint8)
        image[10:30, 20:50] = 200
        viewer.add_image(image, name="box")
        widget.layers_edit.setText("1")  # the default backbone's first stage: fast
        widget.layers_edit.editingFinished.emit()
        scribbles = widget.new_labels_layer()
        scribbles.data[15:18, 25:45], scribbles.data[40:43, 5:60] = 2, 1
        labels = widget.train().predict(image)
        import torchvision.ops  # torch._dynamo, which looks for triton
        assert labels[20, 35] == 2 and labels[2, 2] == 1, labels
        viewer.close()
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_sample_is_a_bundled_horse():
    [(data, meta, kind)] = horse_sample()
    assert kind == "image" and meta["rgb"] and data.dtype == np.uint8 and data.shape[2] == 3


def test_class_names_colours_and_channels_travel_in_the_model_file(widget, horse, tmp_path,
                                                                   notified):
    from napari.utils.colormaps import DirectLabelColormap

    import skhyper

    image, mask = horse
    viewer = widget.viewer
    viewer.add_image(image, name="horse", rgb=True)
    widget.image_combo.setCurrentText("horse")
    scribbles = widget.new_labels_layer()
    scribbles.data = strokes(mask)
    painted = scribbles.data.copy()
    scribbles.colormap = DirectLabelColormap(color_dict={
        None: "transparent", 0: "transparent", 1: "#a05000", 2: "#00ffff"})
    scribbles.features = {"index": np.array([1, 2]), "name": np.array(["grass", "horse"])}
    widget.train()
    path = widget.save_model(tmp_path / "named.skhyper")
    meta = skhyper.load(path).metadata_
    assert meta == {"n_image_channels": 3, "class_names": {"1": "grass", "2": "horse"},
                    "class_colors": {"1": "#a05000ff", "2": "#00ffffff"}}

    viewer.layers.remove("horse segmentation")
    fresh = SegmenterWidget(viewer)
    fresh.image_combo.setCurrentText("horse")
    fresh.load_model(path)
    labels = fresh.segment()
    np.testing.assert_array_equal(labels, api_labels(image, painted))
    result = viewer.layers["horse segmentation"]
    np.testing.assert_allclose(result.get_color(2), [0, 1, 1, 1])
    np.testing.assert_allclose(result.get_color(1), [160 / 255, 80 / 255, 0, 1], atol=1e-6)
    assert list(result.features["name"]) == ["grass", "horse"]
    np.testing.assert_array_equal(scribbles.data, painted)  # scribbles never written to

    # a LOADED 3-channel model refuses a grey image, naming what to fix
    viewer.add_image(image.mean(axis=2), name="grey")
    fresh.image_combo.setCurrentText("grey")
    fresh.buttons["Segment plane"].click()
    assert "trained on 3-channel images" in notified[-1] and "'grey' has 1" in notified[-1]
    # a file without metadata (a notebook's, 'skhyper train') loads; the engine decides then
    plain = skhyper.save(widget.model, tmp_path / "plain.skhyper")
    fresh.load_model(plain)
    assert fresh.class_metadata == {} and fresh._trained_channels is None


def test_training_on_several_image_labels_pairs(widget, notified, qtbot):
    data = load_horses(split="train")
    viewer = widget.viewer
    images, painted = [], []
    for k in range(2):
        image, mask = data.images[k], data.masks[k]
        viewer.add_image(image, name=f"horse{k}", rgb=True)
        s = np.zeros(mask.shape, np.uint8)  # horse 0: background only; horse 1: both classes
        s[:3, :] = 1
        if k == 1:
            s[:, :] = np.where(s == 0, strokes(mask), s)
        viewer.add_labels(s, name=f"scribbles{k}")
        images.append(image)
        painted.append(s.copy())
    widget.image_combo.setCurrentText("horse0")
    widget.labels_combo.setCurrentText("scribbles0")
    widget.buttons["Train"].click()  # one pair alone: class 1 only
    assert "class 1 only" in notified[-1]
    assert widget.add_pair() == ("horse0", "scribbles0")
    widget.add_pair("horse1", viewer.layers["scribbles1"])
    assert widget.pairs_list.count() == 2
    model = widget.train(pairs=widget.pairs)
    api = clone(tiny()).fit(images, painted)
    for image in images:
        np.testing.assert_array_equal(model.predict(image), api.predict(image))
    np.testing.assert_array_equal(viewer.layers["horse0 segmentation"].data,
                                  api.predict(images[0]))
    # the dock's list, through the button in a thread worker, gives the same model
    widget.scope_combo.setCurrentText("all pairs")
    before = widget.model
    widget.buttons["Train"].click()
    qtbot.waitUntil(lambda: widget.model is not before and widget._worker is None,
                    timeout=60000)
    np.testing.assert_array_equal(widget.model.predict(images[1]), api.predict(images[1]))

    # a pair whose image has other channels: a notification, nothing lost
    viewer.add_image(images[1].mean(axis=2), name="grey")
    viewer.add_labels(painted[1].copy(), name="grey scribbles")
    widget.add_pair("grey", "grey scribbles")
    kept = widget.model
    widget.buttons["Train"].click()
    assert "differ in channels" in notified[-1] and "'grey' has 1" in notified[-1]
    assert "Remove the pairs" in notified[-1] and widget.model is kept
    widget.pairs_list.setCurrentRow(2)
    widget.buttons["Remove pair"].click()
    assert widget.pairs == [("horse0", "scribbles0"), ("horse1", "scribbles1")]
    with pytest.raises(ValueError, match="not an \\(image layer, labels layer\\) pair"):
        widget.train(pairs=["horse0"])
    for k in range(2):
        np.testing.assert_array_equal(viewer.layers[f"scribbles{k}"].data, painted[k])



def _trained(widget, horse):
    image, mask = horse
    widget.viewer.add_image(image, name="horse", rgb=True)
    widget.image_combo.setCurrentText("horse")
    widget.new_labels_layer().data = strokes(mask)
    return widget.train()


def test_segment_a_folder_resumes_and_reports_failed_files(widget, horse, tmp_path, notified,
                                                           qtbot, monkeypatch):
    import tifffile
    from PIL import Image as PILImage

    model = _trained(widget, horse)
    data = load_horses(split="train")
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    PILImage.fromarray(data.images[1]).save(src / "a.png")
    np.save(src / "b.npy", np.stack([data.images[0], data.images[0][::-1]]))  # IYXC stack
    PILImage.fromarray(data.images[2].mean(axis=2).astype(np.uint8)).save(src / "grey.png")
    (src / "junk.png").write_bytes(b"not an image")
    outcomes = widget.segment_folder(src, out)
    assert set(outcomes) == {"a.png", "b.npy", "grey.png", "junk.png"}
    assert outcomes["a.png"] == outcomes["b.npy"] == "done"
    assert "1 channel(s), the model was trained on 3" in outcomes["grey.png"]
    assert outcomes["junk.png"] not in ("done", "skipped")
    np.testing.assert_array_equal(tifffile.imread(out / "a.tif"), model.predict(data.images[1]))
    stack = tifffile.imread(out / "b.tif")
    np.testing.assert_array_equal(stack[1], model.predict(data.images[0][::-1]))
    assert not list(out.glob(".*partial"))
    again = widget.segment_folder(src, out)  # resume: done files are skipped
    assert again["a.png"] == again["b.npy"] == "skipped" and again["grey.png"] == outcomes[
        "grey.png"]

    # the button: two folder dialogs, a thread worker, a summary notification naming failures
    picks = iter([str(src), str(tmp_path / "out2")])
    monkeypatch.setattr(widget_module.QFileDialog, "getExistingDirectory",
                        lambda *args, **kwargs: next(picks))
    widget.buttons["Segment folder"].click()
    qtbot.waitUntil(lambda: widget._worker is None and bool(notified), timeout=60000)
    assert "Segmented 2 file(s)" in notified[-1] and "2 failed" in notified[-1]
    assert "grey.png (" in notified[-1] and "junk.png (" in notified[-1]
    assert (tmp_path / "out2" / "b.tif").is_file()
    with pytest.raises(ValueError, match="'.*missing' does not exist: pick a folder"):
        widget.segment_folder(tmp_path / "missing", out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        widget.segment_folder(tmp_path / "empty", out)

    # Cancel: the worker is joined after the current file, no partial file is left
    picks = iter([str(src), str(tmp_path / "out3")])
    widget.buttons["Segment folder"].click()
    widget.cancel()
    assert widget._worker is None
    assert not list((tmp_path / "out3").glob(".*partial"))

    # two files with one output name: the second is reported, not silently skipped
    np.save(src / "a.npy", data.images[1])
    clash = widget.segment_folder(src, tmp_path / "out4")
    assert clash["a.npy"] == "done" and "output a.tif is also that of a.npy" in clash["a.png"]


def test_large_planes_go_through_predict_large(widget, horse, monkeypatch):
    import skhyper.parallel

    model = _trained(widget, horse)
    image = horse[0]
    calls = []
    real = skhyper.parallel.predict_large
    monkeypatch.setattr(skhyper.parallel, "predict_large",
                        lambda *a, **k: calls.append(k.get("method", "predict")) or real(*a, **k))
    widget.large_above = 1000  # the horse plane (~19000 pixels) counts as large
    widget.viewer.add_image(da.from_array(image, chunks=(64, 64, 3)), name="lazy", rgb=True)
    widget.image_combo.setCurrentText("lazy")
    widget.proba_check.setChecked(True)
    labels = widget.segment()
    assert calls == ["predict", "predict_proba"]
    # predict_large equals predict to float rounding: a label may flip only on a near-tie
    assert np.mean(labels != model.predict(image)) <= 1e-3
    np.testing.assert_allclose(widget.viewer.layers["lazy probability"].data,
                               model.predict_proba(image).max(axis=-1), atol=1e-5)
