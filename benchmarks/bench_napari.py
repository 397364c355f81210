"""Benchmark the napari widget's interactive loop: first train, refit after a stroke, segment.

A real viewer (run it under Xvfb: ``xvfb-run -a python benchmarks/bench_napari.py``) holds a
bundled horse resized to ``--sizes`` (512² and 1024² RGB) and a labels layer with about 1 % of
its pixels scribbled (lines through the horse, label 2, and around it, label 1). The widget uses
the package defaults (``skhyper.napari.build_estimator``: EfficientNet-Lite0 with its bundled
weights, all 5 stages, ``scales="auto"``, StandardScaler + logistic regression, edge-aware
upsampling; label 0 unlabelled).

1. **first train**: ``widget.train()`` with an empty map cache: the engine is built, the
   backbone computes the plane's maps, the classifier is fitted, the plane segmented.
2. **refit after a stroke** (continuous training on, maps cached): ``--strokes`` (20) strokes
   of 200 pixels, alternating classes, painted with ``data_setitem`` (one ``paint`` event each,
   as a mouse stroke); the latency of each is from the labels layer's ``paint`` event to the
   result layer holding the new labels (the worker's result shown). Median and spread.
3. **segment stack**: ``widget.segment("stack")`` on ``--planes`` planes vs
   ``widget.model.predict(planes)`` (the same model, its map cache emptied before each call so
   both run the backbone, as on new planes; median of 5): throughput ratio (target >= 0.9).

It prints a table and writes ``benchmarks/results/napari_cpu<tag>.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import napari  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import loadavg, machine_info, write_results  # noqa: E402
from PIL import Image  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from skhyper.datasets import load_horses  # noqa: E402
from skhyper.napari import SegmenterWidget  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def horse(size: int) -> tuple[np.ndarray, np.ndarray]:
    data = load_horses(split="train")
    image = np.asarray(Image.fromarray(data.images[0]).resize((size, size), Image.BILINEAR))
    mask = np.asarray(Image.fromarray(data.masks[0]).resize((size, size), Image.NEAREST))
    return image, mask


def scribbles(mask: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    """Horizontal 3-pixel lines every few rows: horse pixels 2, background 1, ~``fraction``."""
    s = np.zeros(mask.shape, np.uint8)
    n_lines = max(2, int(round(fraction * mask.shape[0] / 3)))
    for r in np.linspace(0.1, 0.9, n_lines) * mask.shape[0]:
        r = int(r)
        s[r:r + 3] = np.where(mask[r:r + 3] == 1, 2, 1)
    return s


def wait(widget: SegmenterWidget, before, timeout: float = 120.0) -> None:
    """Run the event loop until the refit after a stroke is shown."""
    app, end = QApplication.instance(), time.perf_counter() + timeout
    while widget.model is before or widget._worker is not None or widget._pending:
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() > end:
            raise RuntimeError(f"no refit shown after {timeout} s: {widget.status.text()}")


def bench_size(viewer, size: int, n_strokes: int, n_planes: int) -> dict:
    image, mask = horse(size)
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    viewer.add_image(image, name="horse", rgb=True)
    widget = SegmenterWidget(viewer)
    widget.image_combo.setCurrentText("horse")
    labels = widget.new_labels_layer()
    labels.data = scribbles(mask)
    fraction = float((labels.data > 0).mean())

    t = time.perf_counter()
    widget.train()
    first = time.perf_counter() - t

    widget.continuous_check.setChecked(True)
    start: list[float] = []
    labels.events.paint.connect(lambda event: start.append(time.perf_counter()))
    rng = np.random.default_rng(0)
    latencies = []
    for i in range(n_strokes):
        r, c = int(rng.integers(5, size - 5)), int(rng.integers(0, size - 200))
        before = widget.model
        label = 1 if mask[r, c] == 0 else 2
        if np.all(labels.data[r, c:c + 200] == label):  # a stroke that changes nothing
            label = 3 - label
        labels.data_setitem((np.full(200, r), np.arange(c, c + 200)), label)
        wait(widget, before)
        latencies.append(time.perf_counter() - start[-1])
    widget.continuous_check.setChecked(False)

    stack = np.stack([image, image[::-1], image[:, ::-1], image[::-1, ::-1]][:n_planes])
    viewer.add_image(stack, name="stack", rgb=True)
    widget.image_combo.setCurrentText("stack")
    planes = list(stack)
    t_widget, t_api = [], []
    cache = widget.model.hypercolumns_.cache
    for _ in range(5):  # new planes: the map cache is emptied, both run the backbone
        cache.clear()
        t = time.perf_counter()
        widget.segment("stack")
        t_widget.append(time.perf_counter() - t)
        cache.clear()
        t = time.perf_counter()
        widget.model.predict(planes)
        t_api.append(time.perf_counter() - t)
    widget.close()
    return {
        "size": size, "scribbled_fraction": round(fraction, 4),
        "first_train_s": round(first, 3),
        "refit_latency_median_s": round(statistics.median(latencies), 3),
        "refit_latency_min_s": round(min(latencies), 3),
        "refit_latency_max_s": round(max(latencies), 3),
        "refit_latencies_s": [round(v, 3) for v in latencies],
        "n_planes": n_planes,
        "segment_stack_planes_per_s": round(n_planes / statistics.median(t_widget), 3),
        "predict_planes_per_s": round(n_planes / statistics.median(t_api), 3),
        "stack_throughput_ratio": round(statistics.median(t_api) / statistics.median(t_widget),
                                        3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--strokes", type=int, default=20)
    p.add_argument("--planes", type=int, default=4)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    viewer = napari.Viewer(show=True)
    rows = [bench_size(viewer, s, args.strokes, args.planes) for s in args.sizes]
    viewer.close()
    for r in rows:
        print(f"{r['size']:>5}²  scribbled {r['scribbled_fraction']:.2%}  first train "
              f"{r['first_train_s']:.2f} s  refit median {r['refit_latency_median_s']:.3f} s "
              f"[{r['refit_latency_min_s']:.3f}, {r['refit_latency_max_s']:.3f}]  stack "
              f"{r['segment_stack_planes_per_s']:.2f} vs predict {r['predict_planes_per_s']:.2f} "
              f"planes/s ({r['stack_throughput_ratio']:.2f}x)")
    record = {"benchmark": "napari", "machine": machine_info(torch.device("cpu")),
              "loadavg": loadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "results": rows}
    write_results(record, RESULTS / f"napari_cpu{args.tag}.json")


if __name__ == "__main__":
    main()
