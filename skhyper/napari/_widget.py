"""The dock widget: scribble, train, look, correct, segment, save, export.

Every action is a public method that runs synchronously (scripts, tests); the buttons run the
same work in a napari thread worker so the viewer never blocks, and show bad input as a napari
notification. The model is a plain :class:`~skhyper.HypercolumnSegmenter` (``widget.model``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._classes import apply_class_info, class_info
from ._folder import (
    LARGE_PLANE,
    folder_files,
    is_large,
    large_confidence,
    predict_plane,
    segment_files,
    summary,
)
from ._layers import (
    ImageStack,
    check_channels,
    check_same_shape,
    pairs_planes,
    scribbled_planes,
)
from ._model import (
    BACKBONES,
    EXPORT_FORMATS,
    build_estimator,
    export_model,
    fit_model,
    load_model,
    new_cache,
    save_model,
)

__all__ = ["SegmenterWidget"]

SCOPES = ("plane", "stack", "pairs")


class SegmenterWidget(QWidget):
    """Interactive training of a :class:`~skhyper.HypercolumnSegmenter` on scribbles.

    Pick an image layer and a labels layer (0 = unlabelled; 'New labels layer' makes one),
    paint strokes of two or more classes, Train: the scribbled pixels of the current plane (or
    of every plane of the stack) train a model, and the plane is segmented into a labels layer
    named ``"<image> segmentation"``. With 'Continuous training' on, every stroke refits the
    classifier on the cached maps and re-segments the visible plane; a newer stroke supersedes
    a running refit, Cancel stops it and keeps the model as it was. The scribbles are never
    written to.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers the widget reads and writes; with 'Probability layer'
        ticked, an image layer ``"<image> probability"`` shows how sure the model is of
        each pixel's label (``predict_proba``'s maximum), where to scribble next.
    parent : QWidget, default=None
        The Qt parent (napari's dock when docked).

    Attributes
    ----------
    model : HypercolumnSegmenter or None
        The fitted model: the same object a notebook gets (``skhyper.save`` / ``load``).
    estimator : HypercolumnSegmenter or None
        The unfitted segmenter Train clones (its ``ignore_label`` is set to 0); None builds
        one from the settings (:func:`skhyper.napari.build_estimator`: the package defaults).
    cache : MapCache
        The backbone maps of the planes seen, shared by every model the widget fits.
    large_above : int
        Planes of more pixels than this (default 4096², ``LARGE_PLANE``) are segmented
        through :func:`skhyper.parallel.predict_large`, chunk by chunk, read lazily from a
        dask / zarr layer.
    class_metadata : dict
        The loaded model's class names, colours and training channel count (its
        ``metadata_``), applied to the result layer; empty for a model trained here (Save
        model writes the scribbles layer's names and colours and the image's channels).
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.model: Any = None
        self.estimator: Any = None
        self.class_metadata: dict[str, Any] = {}
        self.large_above = LARGE_PLANE
        self._cache: Any = None
        self._trained_channels: int | None = None
        self._refittable = False  # widget.model's engine serves refits (see _refit_base)
        self._worker: Any = None
        self._done = threading.Event()
        self._token = 0
        self._pending = False
        self._stroke_scheduled = False
        self._watched: Any = None
        self._build_ui()
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._refresh_pickers)
        self._refresh_pickers()

    # ----------------------------------------------------------------- user interface
    def _build_ui(self) -> None:
        self.image_combo, self.labels_combo = QComboBox(), QComboBox()
        self.new_labels_button = QPushButton("New labels layer")
        self.backbone_combo = QComboBox()
        self.backbone_combo.addItems(BACKBONES)
        self.layers_edit = QLineEdit()
        self.layers_edit.setPlaceholderText("all stages (e.g. 1,2,3)")
        self.upsampling_combo, self.device_combo = QComboBox(), QComboBox()
        self.upsampling_combo.addItems(["edge_aware", "bilinear"])
        self.device_combo.addItems(["auto", "cpu", "cuda"])
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(["current plane", "whole stack", "all pairs"])
        self.pairs_list = QListWidget()
        self.pairs_list.setMaximumHeight(80)
        self.pairs: list[tuple[str, str]] = []
        self.continuous_check = QCheckBox("Continuous training (refit after each stroke)")
        self.proba_check = QCheckBox("Probability layer (of the predicted class)")
        self.status = QLabel("Paint two classes, then Train.")
        form = QFormLayout()
        for text, field in [("image", self.image_combo), ("scribbles", self.labels_combo),
                            ("", self.new_labels_button), ("backbone", self.backbone_combo),
                            ("layers", self.layers_edit), ("upsampling", self.upsampling_combo),
                            ("device", self.device_combo), ("train on", self.scope_combo),
                            ("pairs", self.pairs_list)]:
            form.addRow(text, field)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.continuous_check)
        layout.addWidget(self.proba_check)
        self.buttons: dict[str, QPushButton] = {}
        for row in (["Add pair", "Remove pair"], ["Train", "Cancel"],
                    ["Segment plane", "Segment stack"], ["Segment folder"],
                    ["Save model", "Load model"], ["Export ONNX", "Export bioimage.io"]):
            line = QHBoxLayout()
            for text in row:
                self.buttons[text] = QPushButton(text)
                line.addWidget(self.buttons[text])
            layout.addLayout(line)
        layout.addWidget(self.status)
        self._connect_ui()

    def _connect_ui(self) -> None:
        b = self.buttons
        self.new_labels_button.clicked.connect(lambda: self._guarded(self.new_labels_layer))
        b["Add pair"].clicked.connect(lambda: self._guarded(self.add_pair))
        b["Remove pair"].clicked.connect(self._remove_pair)
        b["Train"].clicked.connect(self._train_clicked)
        b["Cancel"].clicked.connect(self.cancel)
        b["Segment plane"].clicked.connect(lambda: self._segment_clicked("plane"))
        b["Segment stack"].clicked.connect(lambda: self._segment_clicked("stack"))
        b["Segment folder"].clicked.connect(self._folder_clicked)
        b["Save model"].clicked.connect(self._save_clicked)
        b["Load model"].clicked.connect(self._load_clicked)
        b["Export ONNX"].clicked.connect(lambda: self._export_clicked("onnx"))
        b["Export bioimage.io"].clicked.connect(lambda: self._export_clicked("bioimageio"))
        self.labels_combo.currentTextChanged.connect(self._watch_labels)
        for w in (self.backbone_combo, self.upsampling_combo, self.device_combo):
            w.currentTextChanged.connect(self._settings_changed)
        self.layers_edit.editingFinished.connect(self._settings_changed)

    def _refresh_pickers(self, event: Any = None) -> None:
        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels)):
            current = combo.currentText()
            names = [layer.name for layer in self.viewer.layers if type(layer) is kind
                     and not layer.name.endswith(" segmentation")]
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        self._watch_labels()

    def _watch_labels(self, name: str = "") -> None:
        """Listen to the picked labels layer's strokes (and to no other layer)."""
        layer = self._layer(self.labels_combo.currentText(), Labels, required=False)
        if layer is self._watched:
            return
        if self._watched is not None:
            self._watched.events.paint.disconnect(self._on_stroke)
            self._watched.events.data.disconnect(self._on_stroke)
        self._watched = layer
        if layer is not None:
            layer.events.paint.connect(self._on_stroke)
            layer.events.data.connect(self._on_stroke)

    def _settings_changed(self, *args: Any) -> None:
        self.estimator = None  # rebuilt from the settings on the next Train
        self._refittable = False  # the next stroke fits a model with the new settings
        self.status.setText("Settings changed: Train to fit a model with them.")

    # ----------------------------------------------------------------- layers
    def _layer(self, name: str, kind: type, *, required: bool = True) -> Any:
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        if layer is None or not isinstance(layer, kind):
            if required:
                what = "an image" if kind is Image else "a labels"
                raise ValueError(f"No {what} layer is picked: add one to the viewer and pick "
                                 "it in the skhyper widget.")
            return None
        return layer

    def _image(self) -> ImageStack:
        layer = self._layer(self.image_combo.currentText(), Image)
        return ImageStack(layer.data, bool(layer.rgb), layer.name)

    def _current(self, image: ImageStack) -> tuple[int, ...]:
        """Index of the plane the viewer shows (its leading axes' current step)."""
        step = self.viewer.dims.current_step
        n = len(image.lead_shape)
        return tuple(int(i) for i in step[len(step) - n - 2:len(step) - 2]) if n else ()

    def new_labels_layer(self) -> Labels:
        """Add an empty labels layer for scribbles on the picked image, and pick it.

        Returns
        -------
        napari.layers.Labels
            The new layer, ``"<image> scribbles"``, of the image's planes and size.
        """
        image = self._image()
        shape = image.lead_shape + image.spatial_shape
        layer = self.viewer.add_labels(np.zeros(shape, dtype=np.uint8),
                                       name=f"{image.name} scribbles")
        self.labels_combo.setCurrentText(layer.name)
        return layer

    def add_pair(self, image: Any = None, labels: Any = None) -> tuple[str, str]:
        """Add an image/labels pair to the list that "train on: all pairs" trains on.

        Parameters
        ----------
        image, labels : layer or str, default=None
            The layers (or their names); None takes the picked image / scribbles layer.

        Returns
        -------
        tuple of str
            The pair's layer names.
        """
        pair = (self.image_combo.currentText() if image is None else image,
                self.labels_combo.currentText() if labels is None else labels)
        stack, data, name = self._pair(pair)
        check_same_shape(stack, data, name)
        names = (stack.name, name)
        if names not in self.pairs:
            self.pairs.append(names)
            self.pairs_list.addItem(f"{names[0]}  <-  {names[1]}")
        return names

    def _remove_pair(self) -> None:
        row = self.pairs_list.currentRow()
        if 0 <= row < len(self.pairs):
            self.pairs.pop(row)
            self.pairs_list.takeItem(row)

    def _result_layer(self, image: ImageStack) -> Labels:
        name = f"{image.name} segmentation"
        if name in self.viewer.layers:
            return self.viewer.layers[name]
        shape = image.lead_shape + image.spatial_shape
        layer = self.viewer.add_labels(np.zeros(shape, dtype=np.int32), name=name, opacity=0.5)
        apply_class_info(layer, self.class_metadata)
        return layer

    def _show(self, image: ImageStack, index: tuple[int, ...] | None, labels: Any,
              probability: Any = None) -> None:
        """Write labels (and the predicted class's probability, if given) into the result
        layers, in place: one plane (``index``) or the whole stack (``None``); napari then
        redraws the visible plane only."""
        where = index if index is not None else ...
        layer = self._result_layer(image)
        layer.data[where] = labels
        layer.refresh()
        if probability is not None:
            name = f"{image.name} probability"
            if name not in self.viewer.layers:
                self.viewer.add_image(np.zeros(layer.data.shape, np.float32), name=name,
                                      colormap="magma", contrast_limits=(0, 1), opacity=0.6)
            self.viewer.layers[name].data[where] = probability
            self.viewer.layers[name].refresh()

    @staticmethod
    def _predict(model: Any, planes: Any, probability: bool,
                 large_above: int = LARGE_PLANE) -> tuple[Any, Any]:
        """Labels of a plane (or a list of planes), and with ``probability`` the probability
        of the predicted class (``predict_proba``'s maximum) per pixel. Planes larger than
        ``large_above`` pixels go through ``predict_large``, chunk by chunk."""
        group = planes if isinstance(planes, list) else [planes]
        if any(is_large(p, large_above) for p in group):
            labels = [predict_plane(model, p, large_above=large_above) for p in group]
            proba = [large_confidence(model, p) for p in group] if probability else None
            if isinstance(planes, list):
                return labels, None if proba is None else np.stack(proba)
            return labels[0], None if proba is None else proba[0]
        planes = [np.asarray(p) for p in group] if isinstance(planes, list) else np.asarray(
            planes)
        labels = model.predict(planes)
        if not probability:
            return labels, None
        proba = model.predict_proba(planes)
        return labels, (proba.max(axis=-1) if isinstance(proba, np.ndarray)
                        else np.stack([p.max(axis=-1) for p in proba]))

    # ----------------------------------------------------------------- public actions
    def _estimator(self) -> Any:
        if self._cache is None:
            self._cache = new_cache()
        if self.estimator is None:
            text = self.layers_edit.text().strip()
            layers = [int(t) if t.strip().isdigit() else t.strip() for t in text.split(",")
                      ] if text else None
            self.estimator = build_estimator(
                self.backbone_combo.currentText(), layers=layers,
                device=self.device_combo.currentText(),
                upsampling=self.upsampling_combo.currentText(), cache=self._cache)
        return self.estimator

    def _pair(self, pair: Any) -> tuple[ImageStack, Any, str]:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"pairs: {pair!r} is not an (image layer, labels layer) pair of "
                             "layers or layer names.")
        names = [p if isinstance(p, str) else getattr(p, "name", None) for p in pair]
        image = self._layer(names[0], Image)
        labels = self._layer(names[1], Labels)
        return ImageStack(image.data, bool(image.rgb), image.name), labels.data, labels.name

    def _pairs_data(self, pairs: list) -> tuple[ImageStack, list, list]:
        """Every scribbled plane of the pairs; the image shown is the picked one when it has
        the pairs' channels, else the first pair's."""
        stacks = [self._pair(p) for p in pairs]
        planes, masks = pairs_planes(stacks)
        picked = self._layer(self.image_combo.currentText(), Image, required=False)
        image = stacks[0][0]
        if picked is not None and ImageStack(picked.data, bool(picked.rgb), picked.name
                                             ).n_channels == image.n_channels:
            image = self._image()
        return image, planes, masks

    def _training_data(self, scope: str, pairs: list | None = None
                       ) -> tuple[ImageStack, list, list]:
        if scope not in SCOPES:
            raise ValueError(f"scope={scope!r} is unknown: use 'plane', 'stack' or 'pairs'.")
        if scope == "pairs":
            return self._pairs_data(self.pairs if pairs is None else list(pairs))
        image = self._image()
        labels = self._layer(self.labels_combo.currentText(), Labels)
        planes = [self._current(image)] if scope == "plane" else image.indices()
        data = scribbled_planes(image, labels.data, labels.name, planes=planes)
        return image, *data

    def train(self, scope: str = "plane", *, pairs: list | None = None) -> Any:
        """Fit a model on the scribbles and segment the current plane.

        Bad input (no scribbles, one class, layers of different shapes, pairs whose images
        differ in channels) raises a ``ValueError`` naming what to fix, and the model is left
        as it was.

        Parameters
        ----------
        scope : {"plane", "stack", "pairs"}, default="plane"
            Train on the current plane's scribbles, on those of every plane, or on every
            plane of every image/labels pair (``pairs``, or the dock's list of pairs).
        pairs : list of (image, labels), default=None
            Image and labels layers (or their names) to train on together; given, the scope
            is "pairs".

        Returns
        -------
        HypercolumnSegmenter
            The fitted model, also ``widget.model``.
        """
        self.cancel()
        image, planes, masks = self._training_data("pairs" if pairs is not None else scope,
                                                   pairs)
        model = fit_model(self._estimator(), planes, masks, cache=self._cache)
        self._set_model(model, image.n_channels)
        self.class_metadata = {}
        self.segment("plane")
        return model

    def refit(self) -> Any:
        """Refit and segment the current plane, synchronously: what a stroke triggers.

        The classifier of ``widget.model`` is refitted on the current scribbles with the
        same engine and its cached maps (a full fit when the settings or the image's channels
        changed).

        Returns
        -------
        ndarray of shape (height, width)
            The labels of the current plane.
        """
        image, planes, masks = self._training_data(self._scope())
        model = fit_model(self._estimator(), planes, masks, base=self._refit_base(image))
        self._set_model(model, image.n_channels)
        return self.segment("plane")

    def segment(self, scope: str = "plane") -> np.ndarray:
        """Segment into the result layer ``"<image> segmentation"``.

        Parameters
        ----------
        scope : {"plane", "stack"}, default="plane"
            The current plane, or every plane of the image layer.

        Returns
        -------
        ndarray
            The labels: ``(height, width)`` for a plane, the layer's shape for a stack.
        """
        image = self._checked_image()
        if scope == "plane":
            index = self._current(image)
            labels, proba = self._predict(self.model, image.lazy_plane(index),
                                          self.proba_check.isChecked(), self.large_above)
            self._show(image, index, labels, proba)
            return labels
        if scope != "stack":
            raise ValueError(f"scope={scope!r} is unknown: use 'plane' or 'stack'.")
        labels, proba = self._predict(self.model, [image.lazy_plane(i) for i in image.indices()],
                                      self.proba_check.isChecked(), self.large_above)
        shape = image.lead_shape + image.spatial_shape
        labels = np.stack(labels).reshape(shape)
        self._show(image, None, labels, None if proba is None else proba.reshape(shape))
        return labels

    def segment_folder(self, folder: str | Path, out_dir: str | Path, *,
                       overwrite: bool = False) -> dict[str, str]:
        """Segment every image file of a folder into ``<out_dir>/<stem>.tif`` label files.

        Files are read with :func:`skhyper.io.read_image` (stacks segment plane by plane,
        large planes through ``predict_large``); existing outputs are skipped (a rerun
        resumes); a file that fails is reported by name and the others go on. The button
        runs the same in a thread worker with progress, and Cancel stops it after the
        current file.

        Parameters
        ----------
        folder : str or path-like
            The folder of images.
        out_dir : str or path-like
            Where the label files go (created if missing).
        overwrite : bool, default=False
            Segment files whose output exists again.

        Returns
        -------
        dict
            File name → ``"done"``, ``"skipped"`` or the reason it failed; the status line
            and (from the button) a notification summarize it.
        """
        model = self._require_model()
        files = folder_files(folder)
        outcomes = {p.name: o for p, o in segment_files(
            model, files, out_dir, overwrite=overwrite, n_channels=self._trained_channels,
            large_above=self.large_above)}
        self.status.setText(summary(outcomes))
        return outcomes

    @staticmethod
    def _folder_job(model: Any, files: list, out_dir: Any, n_channels: int | None,
                    large_above: int) -> Any:
        outcomes: dict[str, str] = {}
        for k, (path, outcome) in enumerate(segment_files(
                model, files, out_dir, n_channels=n_channels, large_above=large_above), 1):
            outcomes[path.name] = outcome
            yield k, len(files)  # progress; a cancelled job stops here
        return outcomes

    def _start_folder(self, folder: str, out_dir: str) -> None:
        files = folder_files(folder)
        self._token += 1
        token = self._token
        self._done.clear()
        worker = create_worker(self._folder_job, self._require_model(), files, out_dir,
                               self._trained_channels, self.large_above, _start_thread=False)
        worker.yielded.connect(
            lambda kn: self.status.setText(f"Segmenting the folder: {kn[0]}/{kn[1]} files."))

        def returned(outcomes: dict[str, str]) -> None:
            if token == self._token:
                text = summary(outcomes)
                self.status.setText(text)
                failed = any(v not in ("done", "skipped") for v in outcomes.values())
                (show_error if failed else show_info)(text)

        def finished() -> None:
            self._done.set()
            if self._worker is worker:
                self._worker = None

        worker.returned.connect(returned)
        worker.errored.connect(lambda exc: show_error(str(exc)))
        worker.finished.connect(finished)
        self._worker = worker
        worker.start()

    def _folder_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images to segment")
        if not folder:
            return
        out_dir = QFileDialog.getExistingDirectory(self, "Folder for the label files")
        if out_dir:
            self.cancel()
            self._guarded(self._start_folder, folder, out_dir)

    def save_model(self, path: str | Path) -> Path:
        """Save ``widget.model`` with ``skhyper.save`` (no pickle).

        Parameters
        ----------
        path : str or path-like
            The file to write (conventionally ``.skhyper``).

        Returns
        -------
        Path
            The file written.
        """
        model = self._require_model()
        labels = self._layer(self.labels_combo.currentText(), Labels, required=False)
        return save_model(model, path, class_info(labels, model.classes_, self._trained_channels))

    def load_model(self, path: str | Path) -> Any:
        """Load a model file (``skhyper.load``) into the widget.

        A file that is not a model file raises a ``ValueError`` naming it, and the model is
        left as it was.

        Parameters
        ----------
        path : str or path-like
            A file written by Save model, ``skhyper.save`` or ``skhyper train``.

        Returns
        -------
        HypercolumnSegmenter
            The loaded model, also ``widget.model``.
        """
        self.cancel()
        model = load_model(path)
        meta = getattr(model, "metadata_", {})
        self._set_model(model, meta.get("n_image_channels"))
        self.class_metadata = meta
        image = self._layer(self.image_combo.currentText(), Image, required=False)
        result = None if image is None else self._layer(f"{image.name} segmentation", Labels,
                                                        required=False)
        if result is not None:
            apply_class_info(result, meta)
        return model

    def export(self, path: str | Path, format: str = "onnx") -> Path:  # noqa: A002
        """Export ``widget.model`` as a network.

        Parameters
        ----------
        path : str or path-like
            The file to write (``.onnx``; a ``.zip`` package for bioimage.io).
        format : {"onnx", "bioimageio"}, default="onnx"
            :func:`skhyper.export.to_onnx`, or :func:`skhyper.export.to_bioimageio` with the
            current plane as its test image.

        Returns
        -------
        Path
            The file written.
        """
        model = self._require_model()
        if format not in EXPORT_FORMATS:
            raise ValueError(f"format={format!r} is unknown: use one of {list(EXPORT_FORMATS)}.")
        image = self._image() if format == "bioimageio" else None
        plane = image.plane(self._current(image)) if image is not None else None
        return export_model(model, path, format, plane)

    def cancel(self) -> None:
        """Stop a running train / refit and wait for its thread: ``widget.model`` stays as it
        was (the running step, e.g. one classifier fit, finishes first; its result is
        dropped)."""
        self._token += 1
        self._pending = self._stroke_scheduled = False
        worker = self._worker
        if worker is not None:
            worker.quit()
            while not self._done.wait(0.02):
                QApplication.processEvents()
            self._worker = None

    # ----------------------------------------------------------------- model state
    def _require_model(self) -> Any:
        if self.model is None:
            raise ValueError("There is no model yet: paint scribbles and press Train, or Load "
                             "model.")
        return self.model

    def _checked_image(self) -> ImageStack:
        self._require_model()
        image = self._image()
        check_channels(image, self._trained_channels)
        labels = self._layer(f"{image.name} segmentation", Labels, required=False)
        if labels is not None:
            check_same_shape(image, labels.data, labels.name)
        return image

    def _set_model(self, model: Any, channels: int | None) -> None:
        self.model = model
        self._trained_channels = channels
        self._refittable = True
        self.status.setText(f"Model: classes {[int(c) for c in model.classes_]}.")

    def _scope(self) -> str:
        return SCOPES[self.scope_combo.currentIndex()]

    def _refit_base(self, image: ImageStack) -> Any:
        """The model whose engine a refit reuses: ``widget.model`` (fitted here, or loaded:
        its backbone and settings are kept), unless the settings changed since or the image's
        channels differ from the training images'; None (a full fit) then."""
        model = self.model
        if model is None or not self._refittable:
            return None
        if self._trained_channels not in (None, image.n_channels):
            return None
        return model

    # ----------------------------------------------------------------- background work
    def _on_stroke(self, event: Any = None) -> None:
        """A stroke on the scribbles: refit in the background when continuous training is on.

        napari emits ``paint`` before it writes the stroke, so the refit starts from the event
        loop once the event is handled (strokes in one loop iteration make one refit); a refit
        still running is superseded (stopped at its next step, its result dropped).
        """
        if not self.continuous_check.isChecked() or self.model is None:
            return
        if not self._stroke_scheduled:
            self._stroke_scheduled = True
            QTimer.singleShot(0, self._stroke_settled)

    def _stroke_settled(self) -> None:
        if not self._stroke_scheduled:  # cancelled before it started
            return
        self._stroke_scheduled = False
        if self._worker is not None:
            self._token += 1
            self._pending = True
            self._worker.quit()
            return
        self._guarded(self._start_refit)

    def _start_refit(self) -> None:
        image, planes, masks = self._training_data(self._scope())
        base = self._refit_base(image)
        index = self._current(image)
        check_channels(image, self._trained_channels if base is not None else None)
        self._launch(self._refit_job, self._estimator(), planes, masks, base, image, index,
                     self._cache, self.proba_check.isChecked())

    @staticmethod
    def _refit_job(estimator: Any, planes: list, masks: list, base: Any, image: ImageStack,
                   index: tuple, cache: Any, probability: bool) -> Any:
        yield  # a superseded or cancelled job stops here ...
        model = fit_model(estimator, planes, masks, base=base, cache=cache)
        yield  # ... or here
        plane = image.plane(index)
        return model, image, index, *SegmenterWidget._predict(model, plane, probability)

    def _launch(self, job: Any, *args: Any) -> None:
        self._token += 1
        token = self._token
        self._done.clear()
        worker = create_worker(job, *args, _start_thread=False)

        def returned(result: Any) -> None:
            if token == self._token:  # not superseded, not cancelled
                model, image, index, labels, proba = result
                self._set_model(model, image.n_channels)
                self._show(image, index, labels, proba)

        def finished() -> None:
            self._done.set()
            if self._worker is worker:
                self._worker = None
            if self._pending:
                self._pending = False
                self._guarded(self._start_refit)

        worker.returned.connect(returned)
        worker.errored.connect(lambda exc: show_error(str(exc)))
        worker.finished.connect(finished)
        self._worker = worker
        self.status.setText("Training...")
        worker.start()

    def _train_job(self, scope: str) -> None:
        image, planes, masks = self._training_data(scope)
        self._launch(self._refit_job, self._estimator(), planes, masks, None, image,
                     self._current(image), self._cache, self.proba_check.isChecked())

    def _guarded(self, action: Any, *args: Any) -> Any:
        """Run an action for a button: bad input becomes a napari notification."""
        try:
            return action(*args)
        except (ValueError, TypeError, OSError) as exc:
            show_error(str(exc))
            self.status.setText(str(exc))
            return None

    def _train_clicked(self) -> None:
        self.cancel()
        self._guarded(self._train_job, self._scope())

    def _segment_clicked(self, scope: str) -> None:
        if self._guarded(self.segment, scope) is not None:
            show_info(f"Segmented the {'current plane' if scope == 'plane' else 'stack'}.")

    def _save_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save model", "model.skhyper",
                                              "skhyper model (*.skhyper)")
        if path and self._guarded(self.save_model, path) is not None:
            show_info(f"Saved the model to {path}.")

    def _load_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load model", "",
                                              "skhyper model (*.skhyper);;any file (*)")
        if path and self._guarded(self.load_model, path) is not None:
            show_info(f"Loaded {Path(path).name}.")

    def _export_clicked(self, fmt: str) -> None:
        suffix = ".onnx" if fmt == "onnx" else ".zip"
        path, _ = QFileDialog.getSaveFileName(self, f"Export {fmt}", f"model{suffix}")
        if path and self._guarded(self.export, path, fmt) is not None:
            show_info(f"Exported the model to {path}.")
