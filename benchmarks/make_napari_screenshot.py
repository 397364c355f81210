"""The napari widget after training on a bundled horse: ``docs/napari_widget.png``.

A real window (``xvfb-run -a -s "-screen 0 1600x1000x24" python
benchmarks/make_napari_screenshot.py``): the first bundled training horse at 3x, scribbles
painted as seven 4-pixel lines across it (label 2 on the horse, 1 elsewhere), the widget's
default model trained on them (``widget.train()``), continuous training on, and the window
captured with ``viewer.screenshot(canvas_only=False)``. Prints the foreground IoU of the
widget's labels against the horse's mask.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
import numpy as np
from PIL import Image
from qtpy.QtWidgets import QApplication

from skhyper.datasets import load_horses
from skhyper.napari import SegmenterWidget

OUT = Path(__file__).resolve().parents[1] / "docs" / "napari_widget.png"


def main(out: Path = OUT) -> None:
    data = load_horses(split="train")
    image, mask = data.images[0], data.masks[0]
    size = (image.shape[1] * 3, image.shape[0] * 3)
    image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 800)
    viewer.add_image(image, name="horse", rgb=True)
    widget = SegmenterWidget(viewer)
    viewer.window.add_dock_widget(widget, name="skhyper", area="right")
    widget.image_combo.setCurrentText("horse")
    scribbles = widget.new_labels_layer()
    s = np.zeros(mask.shape, np.uint8)
    for r in (np.linspace(0.08, 0.92, 7) * mask.shape[0]).astype(int):
        s[r:r + 4, 8:-8] = np.where(mask[r:r + 4, 8:-8] == 1, 2, 1)
    scribbles.data = s
    widget.train()
    widget.continuous_check.setChecked(True)
    viewer.layers.selection.active = scribbles
    for _ in range(30):
        QApplication.processEvents()
        time.sleep(0.05)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    Image.fromarray(shot).convert("RGB").save(out, optimize=True)
    labels = viewer.layers["horse segmentation"].data == 2
    iou = (labels & (mask == 1)).sum() / (labels | (mask == 1)).sum()
    print(f"wrote {out} {shot.shape}; foreground IoU {iou:.3f}")
    viewer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
