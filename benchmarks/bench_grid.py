"""Benchmark location-specific classifiers: horse IoU (global vs K x K grid) and dense cost.

Part ``iou`` (needs ``../shared/data/weizmann_horse``): the standard split (200
train / 128 test), the same features for every variant -- EfficientNet-Lite0
(bundled ImageNet weights), its 5 stages, 1000 pixels per training image,
``random_state=0`` -- and the default classifier chain ``StandardScaler ->
LogisticRegression(C=0.01)``:

* ``global``: that chain on the hypercolumn (issue 4's default segmenter);
* ``global+uv``: the same with the location ``(u, v)`` as two more features;
* ``grid K``: :class:`~skhyper.GridLocationClassifier` with that chain in each
  of K x K cells, K in {2, 3, 5}, cells trained with bilinear weights (the
  default) and, for comparison, on their own pixels only (``assignment="cell"``).

Each runs with two frames: the whole image, and the bounding box of the
ground-truth mask (an oracle detector, the paper's setting where the grid sits
on a detection box). Test predictions are folded (``prediction_path_``); the
native maps come from one shared :class:`~skhyper.MapCache`, so every image goes
through the backbone once. Reported: foreground IoU, mean over test images and
pooled over all test pixels.

Part ``speed``: dense ``predict`` of a 1024 x 1024 image (a bundled horse
resized), global folded vs grid folded (K = 2, 3, 5), forward-only as the
floor, interleaved, median of ``--repeats``. Target (issue 5): grid <= 1.2x
the global folded time at 1024^2.

Run::

    python benchmarks/bench_grid.py --part iou     # ~25 min on 2 CPU cores
    python benchmarks/bench_grid.py --part speed   # ~2 min

Each part prints a table and writes JSON with the machine description to
``benchmarks/results/grid_<part>_<device>.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from skhyper import (  # noqa: E402
    GridLocationClassifier,
    HypercolumnSegmenter,
    HypercolumnTransformer,
    MapCache,
)
from skhyper.datasets import load_horses  # noqa: E402
from skhyper.estimators import default_classifier  # noqa: E402
from skhyper.metrics import foreground_iou  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine_info, measure, write_results  # noqa: E402
from bench_predict import make_image  # noqa: E402

RESULTS = HERE / "results"
HORSES = HERE.parents[1] / "shared" / "data" / "weizmann_horse"
TARGET_OVERHEAD = 1.2


def mask_boxes(masks: list[np.ndarray]) -> np.ndarray:
    """Bounding box ``(x0, y0, x1, y1)`` of each mask's foreground (pixel edges)."""
    out = []
    for m in masks:
        rows, cols = np.nonzero(m)
        out.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    return np.asarray(out, dtype=np.float64)


def variants(grid_sizes: list[int]) -> dict[str, tuple[bool, object]]:
    """name -> (append_location, classifier)."""
    out: dict[str, tuple[bool, object]] = {
        "global": (False, default_classifier()),
        "global+uv": (True, default_classifier()),
    }
    for K in grid_sizes:
        out[f"grid {K}"] = (True, GridLocationClassifier(default_classifier(), K))
    for K in grid_sizes[1:]:
        out[f"grid {K} cell"] = (True, GridLocationClassifier(default_classifier(), K,
                                                              assignment="cell"))
    return out


def run_iou(args, dev: torch.device) -> dict:
    train = load_horses(args.data, split="train")
    test = load_horses(args.data, split="test")
    print(f"horses: {len(train.images)} train, {len(test.images)} test images")
    cache = MapCache(max_bytes=6 * 2**30)
    frames = {"image": (None, None), "mask box": (mask_boxes(train.masks),
                                                  mask_boxes(test.masks))}
    rows = []
    for frame, (train_boxes, test_boxes) in frames.items():
        for name, (append, clf) in variants(args.grid_sizes).items():
            if frame != "image" and (name == "global" or name.endswith("cell")):
                continue  # the global classifier ignores frames; cell assignment: image only
            hc = HypercolumnTransformer(device=str(dev), cache=cache, append_location=append)
            seg = HypercolumnSegmenter(hc, clf, random_state=0)
            t0 = time.perf_counter()
            seg.fit(train.images, train.masks, boxes=train_boxes)
            t_fit = time.perf_counter() - t0
            t0 = time.perf_counter()
            pred = seg.predict(test.images, boxes=test_boxes)
            t_pred = time.perf_counter() - t0
            row = {
                "frame": frame, "variant": name,
                "fg_iou_image_mean": foreground_iou(test.masks, pred, average="image"),
                "fg_iou_pooled": foreground_iou(test.masks, pred),
                "fit_s": t_fit, "predict_s": t_pred, "path": seg.prediction_path_,
            }
            grid = seg.classifier_
            if isinstance(grid, GridLocationClassifier):
                row["fallback_cells"] = int(grid.fallback_.sum())
                row["min_cell_pixels"] = int(grid.n_samples_cell_.min())
            rows.append(row)
            print(f"{frame:>8} {name:>12}: fg IoU {row['fg_iou_image_mean']:.4f} (image mean) "
                  f"{row['fg_iou_pooled']:.4f} (pooled)  fit {t_fit:5.1f} s  predict "
                  f"{t_pred:5.1f} s  {row['path']}", flush=True)
    print(f"backbone passes: {cache.n_forward_images} images "
          f"({len(train.images) + len(test.images)} distinct)")
    print("\nforeground IoU on the 128 test images (mean over images / pooled)")
    print(f"{'frame':>8} {'variant':>12} {'mean':>7} {'pooled':>7}")
    for r in rows:
        print(f"{r['frame']:>8} {r['variant']:>12} {r['fg_iou_image_mean']:7.4f} "
              f"{r['fg_iou_pooled']:7.4f}")
    best = {}
    for frame in frames:
        glob = next(r for r in rows if r["variant"] == "global")
        grids = [r for r in rows if r["frame"] == frame and r["variant"].startswith("grid")]
        top = max(grids, key=lambda r: r["fg_iou_image_mean"])
        best[frame] = {"best_grid": top["variant"], "best_grid_iou": top["fg_iou_image_mean"],
                       "global_iou": glob["fg_iou_image_mean"],
                       "gain": top["fg_iou_image_mean"] - glob["fg_iou_image_mean"]}
        print(f"{frame}: best grid {top['variant']} {top['fg_iou_image_mean']:.4f} vs global "
              f"{glob['fg_iou_image_mean']:.4f} ({best[frame]['gain']:+.4f})")
    return {"rows": rows, "best": best, "forward_images": cache.n_forward_images}


def run_speed(args, dev: torch.device) -> dict:
    data = load_horses(split="train")  # the bundled sample
    cache = MapCache()
    segs = {"global": HypercolumnSegmenter(
        HypercolumnTransformer(device=str(dev), cache=cache), random_state=0)}
    for K in args.grid_sizes:
        segs[f"grid {K}"] = HypercolumnSegmenter(
            HypercolumnTransformer(device=str(dev), cache=cache, append_location=True),
            GridLocationClassifier(default_classifier(), K), random_state=0)
    for seg in segs.values():
        seg.fit(data.images, data.masks)
        assert seg.prediction_path_ == "folded"
        hc = seg.hypercolumns_  # the cache shares the fits' forward passes only
        hc.cache = None
        hc.engine_ = hc.engine_.replace(cache=None)  # the fitted engine holds the cache
    out = []
    for size in args.sizes:
        img = make_image(size)
        # the global segmenter's forward pass (same layers and settings), untiled
        engine = segs["global"].hypercolumns_.engine_.replace(tile_size=None)
        checked = engine.check_images([img])

        def forward(engine=engine, checked=checked):
            for _ in engine.iter_maps(checked):
                pass

        methods = {"forward": forward}
        methods.update({name: (lambda s=seg, img=img: s.predict(img))
                        for name, seg in segs.items()})
        for fn in methods.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in methods}
        peaks: dict[str, list[int]] = {k: [] for k in methods}
        for _ in range(args.repeats):
            for name, fn in methods.items():
                t, p = measure(fn, dev)
                times[name].append(t)
                peaks[name].append(p)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"size": size, "seconds": med, "peak_bytes": {k: max(v) for k, v in peaks.items()},
               "vs_global": {k: med[k] / med["global"] for k in med}}
        out.append(row)
        print(f"\n{size} x {size} predict, median of {args.repeats} ({dev}, "
              f"{torch.get_num_threads()} threads)")
        for k in methods:
            print(f"{k:>10} {med[k]:7.3f} s  {row['vs_global'][k]:5.2f}x global  peak "
                  f"{row['peak_bytes'][k] / 2**20:7.1f} MiB")
    at = [r for r in out if r["size"] == 1024]
    result: dict = {"sizes": out}
    if at:
        worst = max(v for k, v in at[0]["vs_global"].items() if k.startswith("grid"))
        ok = worst <= TARGET_OVERHEAD
        print(f"target at 1024^2: grid <= {TARGET_OVERHEAD}x global folded: worst {worst:.3f}x "
              f"-> {'met' if ok else 'NOT met'}")
        result.update(worst_grid_vs_global=worst, target_met=ok)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["iou", "speed"], required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--grid-sizes", default="2,3,5")
    ap.add_argument("--data", default=str(HORSES))
    args = ap.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.grid_sizes = [int(s) for s in args.grid_sizes.split(",")]
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                       else ("cpu" if args.device == "auto" else args.device))
    if dev.type == "cpu":
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    part = run_iou(args, dev) if args.part == "iou" else run_speed(args, dev)
    result = {"machine": machine_info(dev), "settings": {**vars(args)}, **part,
              "total_seconds": time.perf_counter() - t0}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"grid_{args.part}_{dev.type}.json"
    print(f"total {result['total_seconds']:.0f} s")
    write_results(result, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
