"""Mask quality of the default segmenter: horses (figure-ground) and clothing parts (59 classes).

Part ``horses`` (needs ``../shared/data/weizmann_horse``, standard split 200 train / 128
test, 1000 pixels per training image, ``random_state=0``, EfficientNet-Lite0 with its bundled
ImageNet weights, all 5 stages, the default classifier ``StandardScaler ->
LogisticRegression(C=0.01)``). Rows:

* ``before``: the previous default, ``HypercolumnTransformer()`` (the image as it is) with
  bilinear upsampling of the folded score maps (the exact hypercolumn) (``--part clothing``
  also with the previous ``min_pixels_per_class=20`` and lbfgs tolerance, see ``_before``);
* each option alone on top of it: ``resolution`` (``scales="auto"``: small images fed up to
  2x larger), ``edge-aware`` (joint bilateral upsampling of the coarse score maps, guided by
  the image), ``boundary`` (30% of the training pixels within 3 px of the outline), ``grid 5``
  (a 5 x 5 :class:`~skhyper.GridLocationClassifier` of the default classifier);
* ``after``: the new default ``HypercolumnSegmenter()`` (resolution + edge-aware), and the
  other options on top of it.

Reported per row: foreground IoU (mean over test images, and pooled), boundary F-score at 2
pixels (DAVIS contour accuracy, foreground), trimap IoU (pixels within 5 px of the true
outline), fit and predict seconds. Then the throughput target: the new default's folded
``predict`` against the forward pass alone of the same network at the same scale (same test
images, interleaved, median of ``--repeats``): target >= 0.9x.

Part ``clothing`` (needs ``../shared/data/clothing_parts``; its photos show people: nothing
of them is written, only numbers): the standard split 300 train / 202 test at half
resolution (``downsample=2``), before vs after; mean IoU over the classes present in the test
truth, per-class IoU with each class's share of the training pixels and test images.

Run::

    python benchmarks/bench_quality.py --part horses     # ~12 min on 2 CPU cores
    python benchmarks/bench_quality.py --part horses --throughput-only   # the default alone
    python benchmarks/bench_quality.py --part clothing   # ~25 min
    # this checkout against a base commit, in one run (the base's skhyper in a subprocess):
    git worktree add ../wt-base <commit>
    python benchmarks/bench_quality.py --part horses --throughput-only --base ../wt-base

Each part prints its tables and writes JSON (machine, settings, figures) to
``benchmarks/results/quality_<part>_<device>.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from skhyper import (  # noqa: E402
    GridLocationClassifier,
    HypercolumnSegmenter,
    HypercolumnTransformer,
)
from skhyper.datasets import load_clothing_parts, load_horses  # noqa: E402
from skhyper.estimators import default_classifier  # noqa: E402
from skhyper.metrics import (  # noqa: E402
    boundary_f_score,
    foreground_iou,
    iou_per_class,
    mean_iou,
    trimap_iou,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg, machine_info, measure_all, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
TARGET_IOU = 0.87
TARGET_THROUGHPUT = 0.9
BASE_RATIO_TOLERANCE = 0.05  # predict / forward of this checkout within 5 % of the base's


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _horse_scores(masks, pred) -> dict:
    return {
        "fg_iou": foreground_iou(masks, pred, average="image"),
        "fg_iou_pooled": foreground_iou(masks, pred),
        "boundary_f2": boundary_f_score(masks, pred, tolerance=2, labels=[1]),
        "trimap_iou5": trimap_iou(masks, pred, width=5),
    }


def _before(dev) -> HypercolumnSegmenter:
    """The previous default segmenter: the image as it is, bilinear upsampling, at least 20
    pixels per class, lbfgs at its default tolerance."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return HypercolumnSegmenter(
        HypercolumnTransformer(device=str(dev)),
        make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=1000)),
        upsampling="bilinear", min_pixels_per_class=20, random_state=0)


def _horse_models(dev: str) -> dict:
    """Fitted models, each with the upsamplings whose rows it gives (one fit per model)."""
    plain = {"device": dev}
    grid = GridLocationClassifier(default_classifier(), 5)
    return {
        "image as it is": (HypercolumnSegmenter(HypercolumnTransformer(**plain), random_state=0),
                           {"bilinear": "before", "edge_aware": "edge-aware"}),
        "scales auto": (HypercolumnSegmenter(
            HypercolumnTransformer(scales="auto", **plain), random_state=0),
            {"bilinear": "resolution", "edge_aware": "after (default)"}),
        "boundary": (HypercolumnSegmenter(
            HypercolumnTransformer(**plain), boundary_fraction=0.3, random_state=0),
            {"bilinear": "boundary"}),
        "auto + boundary": (HypercolumnSegmenter(
            HypercolumnTransformer(scales="auto", **plain), boundary_fraction=0.3,
            random_state=0), {"edge_aware": "after + boundary"}),
        "grid 5": (HypercolumnSegmenter(
            HypercolumnTransformer(append_location=True, **plain), grid, random_state=0),
            {"bilinear": "grid 5"}),
        "auto + grid 5": (HypercolumnSegmenter(
            HypercolumnTransformer(scales="auto", append_location=True, **plain),
            GridLocationClassifier(default_classifier(), 5), random_state=0),
            {"edge_aware": "after + grid 5"}),
    }


def run_horses(args, dev: torch.device) -> dict:
    path = Path(args.data) / "weizmann_horse"
    train, test = load_horses(path, split="train"), load_horses(path, split="test")
    rows, default = [], None
    models = _horse_models(str(dev))
    if args.throughput_only:  # the default alone: its rows and the throughput check
        models = {"scales auto": models["scales auto"]}
    for name, (seg, uses) in models.items():
        _, fit_s = _timed(lambda seg=seg: seg.fit(train.images, train.masks))
        for upsampling, row_name in uses.items():
            seg.set_params(upsampling=upsampling)
            pred, predict_s = _timed(lambda seg=seg: seg.predict(test.images))
            row = {"row": row_name, "model": name, "upsampling": upsampling,
                   "scales": seg.hypercolumns_.scales_, **_horse_scores(test.masks, pred),
                   "fit_s": fit_s, "predict_s": predict_s}
            rows.append(row)
            print(f"{row_name:>18}: fg IoU {row['fg_iou']:.4f} (pooled {row['fg_iou_pooled']:.4f})"
                  f"  boundary F@2 {row['boundary_f2']:.4f}  trimap IoU {row['trimap_iou5']:.4f}"
                  f"  fit {fit_s:5.1f} s  predict {predict_s:5.1f} s", flush=True)
            if row_name == "after (default)":
                default = seg
    order = ["before", "resolution", "edge-aware", "boundary", "grid 5", "after (default)",
             "after + boundary", "after + grid 5"]
    rows.sort(key=lambda r: order.index(r["row"]))
    # (--throughput-only keeps the rows of the default's own fit)
    print(f"\n{'row':>18} {'fg IoU':>7} {'pooled':>7} {'BF@2':>7} {'trimap':>7} {'fit s':>6} "
          f"{'pred s':>6}")
    for r in rows:
        print(f"{r['row']:>18} {r['fg_iou']:7.4f} {r['fg_iou_pooled']:7.4f} "
              f"{r['boundary_f2']:7.4f} {r['trimap_iou5']:7.4f} {r['fit_s']:6.1f} "
              f"{r['predict_s']:6.1f}")

    # throughput: folded predict of the default vs the forward pass alone (same scale)
    assert default is not None and default.prediction_path_ == "folded"
    default.set_params(upsampling="edge_aware")
    engine = default.hypercolumns_.engine_
    checked = engine.check_images(test.images)

    def forward():
        for _ in engine.iter_maps(checked):
            pass

    methods = {"forward": forward, "predict": lambda: default.predict(checked),
               "predict (bilinear)": lambda: default.set_params(upsampling="bilinear").predict(
                   checked)}
    forward()  # warm-up
    times, _ = measure_all(methods, dev, args.repeats)
    default.set_params(upsampling="edge_aware")
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["forward"] / med["predict"]
    print(f"\nthroughput on the {len(checked)} test images (median of {args.repeats}): forward "
          f"{med['forward']:.2f} s, folded predict {med['predict']:.2f} s (bilinear "
          f"{med['predict (bilinear)']:.2f} s): predict / forward throughput {ratio:.3f}x")
    after = next(r for r in rows if r["row"] == "after (default)")
    ok_iou, ok_speed = after["fg_iou"] >= TARGET_IOU, ratio >= TARGET_THROUGHPUT
    print(f"targets: default fg IoU >= {TARGET_IOU}: {after['fg_iou']:.4f} -> "
          f"{'met' if ok_iou else 'NOT met'}; predict >= {TARGET_THROUGHPUT}x forward: "
          f"{ratio:.3f}x -> {'met' if ok_speed else 'NOT met'}")
    return {"rows": rows, "throughput": {"seconds": med, "predict_vs_forward": ratio},
            "targets_met": {"iou": ok_iou, "throughput": ok_speed}}


def run_clothing(args, dev: torch.device) -> dict:
    path = Path(args.data) / "clothing_parts"
    train = load_clothing_parts(path, split="train", downsample=2)
    test = load_clothing_parts(path, split="test", downsample=2)
    names = list(train.target_names)
    present = np.unique(np.concatenate([np.unique(m) for m in test.masks]))
    train_pixels = np.bincount(np.concatenate([m.ravel() for m in train.masks]),
                               minlength=len(names))
    test_images = np.array([sum(int(c in np.unique(m)) for m in test.masks)
                            for c in range(len(names))])
    models = {
        "before": _before(dev),
        "after (default)": HypercolumnSegmenter(
            HypercolumnTransformer(scales="auto", device=str(dev)), random_state=0),
    }
    rows, per_class = [], {}
    for name, seg in models.items():
        _, fit_s = _timed(lambda seg=seg: seg.fit(train.images, train.masks))
        pred, predict_s = _timed(lambda seg=seg: seg.predict(test.images))
        miou = mean_iou(test.masks, pred, labels=present)
        per_class[name] = iou_per_class(test.masks, pred, labels=present)
        fg = foreground_iou(test.masks, [(p > 0).astype(np.uint8) for p in pred],
                            average="image")
        bf = boundary_f_score(test.masks, pred, tolerance=2)
        rows.append({"row": name, "scales": seg.hypercolumns_.scales_, "mean_iou": miou,
                     "person_fg_iou": fg, "boundary_f2": bf, "fit_s": fit_s,
                     "predict_s": predict_s})
        print(f"{name:>16}: mean IoU over {len(present)} classes {miou:.4f}  person vs "
              f"background IoU {fg:.4f}  boundary F@2 {bf:.4f}  fit {fit_s:.1f} s  predict "
              f"{predict_s:.1f} s", flush=True)
    table = []
    print(f"\n{'class':>14} {'train px %':>10} {'test imgs':>9} {'before':>7} {'after':>7}")
    for j, c in enumerate(present.tolist()):
        row = {"class": int(c), "name": names[c],
               "train_pixel_share": float(train_pixels[c] / train_pixels.sum()),
               "test_images": int(test_images[c]),
               **{k: float(v[j]) for k, v in per_class.items()}}
        table.append(row)
        print(f"{names[c]:>14} {100 * row['train_pixel_share']:10.3f} {row['test_images']:9d} "
              f"{row['before']:7.3f} {row['after (default)']:7.3f}")
    rare = [r for r in table if r["train_pixel_share"] < 1e-3]
    for k in models:
        vals = [r[k] for r in rare]
        print(f"{k}: mean IoU of the {len(rare)} rare classes (< 0.1% of training pixels): "
              f"{np.mean(vals):.4f}; of the others: "
              f"{np.mean([r[k] for r in table if r not in rare]):.4f}")
    return {"rows": rows, "per_class": table, "classes_in_test": len(present)}


def run_base(args, base: Path) -> dict:
    """This script's same part, run in a subprocess with the base checkout's ``skhyper``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "base.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--part", args.part,
               "--device", args.device, "--threads", str(args.threads), "--repeats",
               str(args.repeats), "--data", args.data, "--out", str(out)]
        cmd += ["--throughput-only"] if args.throughput_only else []
        env = {**os.environ, "PYTHONPATH": str(base.resolve())}
        print(f"base: {base} ...", flush=True)
        subprocess.run(cmd, env=env, check=True)
        record = json.loads(out.read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=base,
                            capture_output=True, text=True, check=False).stdout.strip()
    return {**record, "path": str(base), "commit": commit}


def compare_base(base: dict, part: dict) -> dict:
    """Default's IoU equal to 3 decimals and predict / forward within 5 % of the base's."""
    def default(rec):
        return next(r for r in rec["rows"] if r["row"] == "after (default)")

    b, a = default(base), default(part)
    rb = base["throughput"]["predict_vs_forward"]
    ra = part["throughput"]["predict_vs_forward"]
    same_iou = round(a["fg_iou"], 3) == round(b["fg_iou"], 3)
    close = abs(ra / rb - 1.0) <= BASE_RATIO_TOLERANCE
    print(f"\nbase {base['commit']}: fg IoU {b['fg_iou']:.4f}, predict/forward {rb:.3f}x; "
          f"this checkout: fg IoU {a['fg_iou']:.4f}, predict/forward {ra:.3f}x "
          f"({ra / rb - 1:+.1%}); IoU equal to 3 decimals: {same_iou}; ratio within "
          f"{BASE_RATIO_TOLERANCE:.0%}: {close}")
    return {"base_commit": base["commit"], "base_fg_iou": b["fg_iou"], "fg_iou": a["fg_iou"],
            "base_predict_vs_forward": rb, "predict_vs_forward": ra,
            "iou_equal_3_decimals": same_iou, "ratio_within_5_percent": close}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["horses", "clothing"], required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=str(DATA), help="folder holding the data sets")
    ap.add_argument("--throughput-only", action="store_true",
                    help="horses: fit only the default (its rows and the throughput check)")
    ap.add_argument("--base", type=Path, default=None,
                    help="a checkout of a base commit: run the same part with its skhyper "
                         "first (subprocess) and compare (horses)")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here instead")
    args = ap.parse_args(argv)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                       else ("cpu" if args.device == "auto" else args.device))
    if dev.type == "cpu":
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    load0 = loadavg()
    base = None if args.base is None else run_base(args, args.base)
    part = run_horses(args, dev) if args.part == "horses" else run_clothing(args, dev)
    if base is not None:
        part["base"] = {**base, "comparison": compare_base(base, part)}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    import skhyper

    record = {"machine": machine_info(dev), "settings": settings, **part,
              "skhyper_path": skhyper.__file__,
              "loadavg_start_end": [load0, loadavg()],
              "total_seconds": time.perf_counter() - t0}
    suffix = ("_throughput" if args.throughput_only else "") + ("_vs_base" if base else "")
    write_results(record, args.out or RESULTS / f"quality_{args.part}{suffix}_{dev.type}.json")
    print(f"total {record['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
