"""Facial keypoints from hypercolumns: PCK@0.1, PCK@0.2 (inter-ocular distance) and NME.

Dev set: ``../shared/data/face_keypoints`` (200 photos, 14 keypoints; split: stems sorted,
``default_rng(0).permutation``, 150 train / 50 test). Boxes simulate a face detector
(``skhyper.datasets.simulate_detector_boxes``: a square of 2x the keypoints' extent, centre
jittered by 15 % of the side, side by [0.85, 1.15], seed 0). Variants:

- ``mean_shape``: the mean keypoint position in box coordinates over the training set;
- ``top_layer``: the locator on the last stage only (``blocks.6``), with the grid;
- ``hypercolumn_global``: all five stages, one classifier for the frame (``grid_size=1``);
- ``hypercolumn_grid``: all five stages, K x K location-specific classifiers;
- ``..._per_keypoint``: the same with one binary classifier per keypoint (the paper's) instead
  of one classifier over background + keypoints (the locator's default, ``"multiclass"``).

Run ``python benchmarks/bench_keypoints.py`` (about 8 minutes on 2 CPU cores); results go to
``benchmarks/results/keypoints_cpu.json``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import machine_info, write_results

from skhyper import HypercolumnKeypointLocator, HypercolumnTransformer
from skhyper.datasets import load_face_keypoints
from skhyper.metrics import nme, pck

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "face_keypoints"
OUT = Path(__file__).resolve().parent / "results"


def evaluate(true: np.ndarray, pred: np.ndarray, iod: np.ndarray, names: list[str]) -> dict:
    per = {
        "pck@0.1": pck(true, pred, threshold=0.1, normalizer=iod, per_keypoint=True),
        "pck@0.2": pck(true, pred, threshold=0.2, normalizer=iod, per_keypoint=True),
        "nme": nme(true, pred, normalizer=iod, per_keypoint=True),
    }
    return {
        "overall": {
            "pck@0.1": float(pck(true, pred, threshold=0.1, normalizer=iod)),
            "pck@0.2": float(pck(true, pred, threshold=0.2, normalizer=iod)),
            "nme": float(nme(true, pred, normalizer=iod)),
        },
        "per_keypoint": {n: {k: float(v[j]) for k, v in per.items()} for j, n in enumerate(names)},
    }


def mean_shape(train, test) -> np.ndarray:
    side = (train.boxes[:, 2:] - train.boxes[:, :2])[:, None]
    rel = np.nanmean((train.keypoints - train.boxes[:, None, :2]) / side, axis=0)
    return test.boxes[:, None, :2] + rel[None] * (test.boxes[:, 2:] - test.boxes[:, :2])[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid-size", type=int, default=3)
    parser.add_argument("--frame-size", type=int, default=160)
    parser.add_argument("--variants", nargs="*", default=None)
    parser.add_argument("--out", default=str(OUT / "keypoints_cpu.json"))
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"The face keypoint set is not at {DATA}.")
    torch.set_num_threads(os.cpu_count() or 1)
    train = load_face_keypoints(DATA, split="train")
    test = load_face_keypoints(DATA, split="test")
    names = list(train.keypoint_names)
    common = dict(frame_size=args.frame_size, radius=0.05, n_positives_per_keypoint=40,
                  n_negatives_per_image=400, random_state=0, n_jobs=2)
    variants = {  # the locator's default strategy is "multiclass"
        "top_layer": dict(hypercolumns=HypercolumnTransformer(layers=["blocks.6"]),
                          grid_size=args.grid_size),
        "hypercolumn_global": dict(grid_size=1),
        "hypercolumn_grid": dict(grid_size=args.grid_size),
        "hypercolumn_global_per_keypoint": dict(grid_size=1, strategy="per_keypoint"),
        "hypercolumn_grid_per_keypoint": dict(grid_size=args.grid_size, strategy="per_keypoint"),
    }
    chosen = args.variants or ["mean_shape", *variants]
    results = {"machine": machine_info(torch.device("cpu")), "settings": {
        **{k: v for k, v in common.items() if k != "n_jobs"}, "grid_size": args.grid_size,
        "n_train": len(train.images), "n_test": len(test.images)}, "variants": {}}
    warnings.filterwarnings("ignore", message=".*boxes reach outside.*")
    for name in chosen:
        t0 = time.perf_counter()
        if name == "mean_shape":
            pred = mean_shape(train, test)
            fit_s = 0.0
        else:
            loc = HypercolumnKeypointLocator(**common, **variants[name])
            loc.fit(train.images, train.keypoints, boxes=train.boxes)
            fit_s = time.perf_counter() - t0
            pred = loc.predict(test.images, boxes=test.boxes)
        res = evaluate(test.keypoints, pred, test.iod, names)
        res["fit_s"], res["total_s"] = round(fit_s, 1), round(time.perf_counter() - t0, 1)
        results["variants"][name] = res
        o = res["overall"]
        print(f"{name:32s} PCK@0.1 {o['pck@0.1']:.3f}  PCK@0.2 {o['pck@0.2']:.3f}  "
              f"NME {o['nme']:.3f}  ({res['total_s']} s)", flush=True)
    print("\nper keypoint, PCK@0.1:")
    short = {"mean_shape": "mean", "top_layer": "top", "hypercolumn_global": "hc",
             "hypercolumn_grid": "hc+grid", "hypercolumn_global_per_keypoint": "hc/kp",
             "hypercolumn_grid_per_keypoint": "hc+grid/kp"}
    print(f"{'':18s}" + "".join(f"{short.get(n, n[:12]):>13s}" for n in results["variants"]))
    for kp in names:
        print(f"{kp:18s}" + "".join(f"{v['per_keypoint'][kp]['pck@0.1']:13.3f}"
                                    for v in results["variants"].values()))
    write_results(results, args.out)


if __name__ == "__main__":
    main()
