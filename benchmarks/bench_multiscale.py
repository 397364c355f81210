"""Benchmark multi-scale hypercolumns: horse foreground IoU and cost per scale set.

The Weizmann horses (needs ``../shared/data/weizmann_horse``), standard split
(200 train / 128 test), the default segmenter for every scale set --
``HypercolumnSegmenter(HypercolumnTransformer(scales=...),
n_pixels_per_image=1000, random_state=0)``: EfficientNet-Lite0 (bundled
ImageNet weights), its 5 stages, ``StandardScaler -> LogisticRegression(C=0.01)``
-- for the scale sets ``(1.0,)`` (single scale, the default's output),
``(1.0, 0.5)``, ``(1.0, 0.5, 0.25)``, ``(2.0,)`` (upsampling alone, the same
as ``image_size`` = twice the longer side), ``(2.0, 1.0)`` and
``(2.0, 1.0, 0.5)``. Test predictions are
folded (``prediction_path_``). Reported: foreground IoU, mean over test images
(:func:`skhyper.metrics.foreground_iou` with ``average="image"``) and pooled
over all test pixels; fit and predict seconds, and predict time relative to
single scale (no cache: every configuration pays its own forward passes).

Run::

    python benchmarks/bench_multiscale.py           # ~15 min on 2 shared CPU cores

Prints a table and writes JSON with the machine description to
``benchmarks/results/multiscale_<device>.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from skhyper import HypercolumnSegmenter, HypercolumnTransformer  # noqa: E402
from skhyper.datasets import load_horses  # noqa: E402
from skhyper.metrics import foreground_iou  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import loadavg, machine_info, write_results  # noqa: E402

RESULTS = HERE / "results"
HORSES = HERE.parents[1] / "shared" / "data" / "weizmann_horse"
DEFAULT_SCALES = "1;1,0.5;1,0.5,0.25;2;2,1;2,1,0.5"


def parse_scales(text: str) -> list[tuple[float, ...]]:
    """``"1;1,0.5"`` -> ``[(1.0,), (1.0, 0.5)]``."""
    return [tuple(float(v) for v in part.split(",")) for part in text.split(";") if part]


def run(args, dev: torch.device) -> dict:
    train = load_horses(args.data, split="train")
    test = load_horses(args.data, split="test")
    print(f"horses: {len(train.images)} train, {len(test.images)} test images", flush=True)
    rows = []
    for scales in args.scales:
        hc = HypercolumnTransformer(device=str(dev), scales=scales)
        seg = HypercolumnSegmenter(hc, n_pixels_per_image=args.n_pixels, random_state=0)
        t0 = time.perf_counter()
        seg.fit(train.images, train.masks)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = seg.predict(test.images)
        t_pred = time.perf_counter() - t0
        row = {
            "scales": list(scales),
            "n_features": seg.hypercolumns_.n_features_out_,
            "fg_iou_image_mean": foreground_iou(test.masks, pred, average="image"),
            "fg_iou_pooled": foreground_iou(test.masks, pred),
            "fit_s": t_fit, "predict_s": t_pred, "path": seg.prediction_path_,
            "loadavg": loadavg(),
        }
        rows.append(row)
        print(f"scales {str(scales):>17}: fg IoU {row['fg_iou_image_mean']:.4f} (image mean) "
              f"{row['fg_iou_pooled']:.4f} (pooled)  {row['n_features']} features  fit "
              f"{t_fit:6.1f} s  predict {t_pred:5.1f} s  {row['path']}", flush=True)
    base = next((r for r in rows if r["scales"] == [1.0]), rows[0])
    for r in rows:
        r["iou_gain_vs_single"] = r["fg_iou_image_mean"] - base["fg_iou_image_mean"]
        r["predict_vs_single"] = r["predict_s"] / base["predict_s"]
    print(f"\nforeground IoU on the {len(test.images)} test images; EfficientNet-Lite0, 5 stages, "
          f"default classifier ({dev}, {torch.get_num_threads()} threads)")
    print(f"{'scales':>17} {'features':>8} {'mean':>7} {'pooled':>7} {'gain':>7} {'fit s':>7} "
          f"{'pred s':>7} {'pred x':>6}")
    for r in rows:
        print(f"{str(tuple(r['scales'])):>17} {r['n_features']:8d} {r['fg_iou_image_mean']:7.4f} "
              f"{r['fg_iou_pooled']:7.4f} {r['iou_gain_vs_single']:+7.4f} {r['fit_s']:7.1f} "
              f"{r['predict_s']:7.1f} {r['predict_vs_single']:6.2f}")
    best = max(rows, key=lambda r: r["fg_iou_image_mean"])
    print(f"best: scales {tuple(best['scales'])} {best['fg_iou_image_mean']:.4f} "
          f"({best['iou_gain_vs_single']:+.4f} vs single scale)")
    return {"rows": rows, "best_scales": best["scales"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scales", default=DEFAULT_SCALES,
                    help=f"scale sets, ';'-separated (default {DEFAULT_SCALES!r})")
    ap.add_argument("--n-pixels", type=int, default=1000)
    ap.add_argument("--data", default=str(HORSES))
    ap.add_argument("--out", default=None, help="JSON path (default results/multiscale_<dev>.json)")
    args = ap.parse_args(argv)
    args.scales = parse_scales(args.scales)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                       else ("cpu" if args.device == "auto" else args.device))
    if dev.type == "cpu":
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    part = run(args, dev)
    result = {"machine": machine_info(dev), "settings": {**vars(args)}, **part,
              "total_seconds": time.perf_counter() - t0}
    RESULTS.mkdir(exist_ok=True)
    path = Path(args.out) if args.out else RESULTS / f"multiscale_{dev.type}.json"
    print(f"total {result['total_seconds']:.0f} s")
    write_results(result, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
