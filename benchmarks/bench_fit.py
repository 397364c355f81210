"""Where fit time goes: forward pass vs pixel sampling vs classifier (issue 19).

``profile_segmenter_fit`` splits a ``HypercolumnSegmenter.fit`` on the Weizmann horses (the
full set at ``../shared/data/weizmann_horse``, standard split: 200 train / 128 test) into

- **forward**: the backbone passes over the training images (``engine.iter_maps``, maps
  dropped),
- **sampling**: ``transform`` of the drawn pixels minus the forward pass (the bilinear reads),
  plus ``sample_pixels`` (drawing the pixels),
- **classifier**: ``classifier.fit`` on the hypercolumn rows,

and scores the test set (pooled foreground IoU, mean IoU) for the default classifier and for
other classifiers fitted on the same rows (``--classifiers``), so a solver change can be judged
on time and accuracy in one run. ``profile_keypoint_fit`` does the same for
``HypercolumnKeypointLocator`` on the face keypoints (150 train / 50 test; PCK@0.1 and
PCK@0.2 with the inter-ocular normalizer).

Run::

    python benchmarks/bench_fit.py                      # horses + keypoints, ~6 min, 2 cores
    python benchmarks/bench_fit.py --only horses --classifiers default,lbfgs_tol1e-3

It prints tables and writes ``benchmarks/results/fit_cpu.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhyper import (
    HypercolumnKeypointLocator,
    HypercolumnSegmenter,
    sample_pixels,
)
from skhyper.datasets import load_face_keypoints, load_horses
from skhyper.estimators import default_classifier
from skhyper.heads import fold_head
from skhyper.metrics import foreground_iou, mean_iou, pck
from skhyper.parallel import steady_allocator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_results

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def classifiers() -> dict[str, Any]:
    """Candidate classifiers for the segmenter (the first is today's default)."""
    def lr(**kw: Any) -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, **kw))

    return {
        "default": default_classifier(),
        "lbfgs_tol1e-4": lr(max_iter=1000),
        "lbfgs_tol2e-4": lr(max_iter=1000, tol=2e-4),
        "lbfgs_tol3e-4": lr(max_iter=1000, tol=3e-4),
        "lbfgs_tol1e-3": lr(max_iter=1000, tol=1e-3),
        "lbfgs_tol3e-3": lr(max_iter=1000, tol=3e-3),
        "lbfgs_tol1e-2": lr(max_iter=1000, tol=1e-2),
        "lbfgs_max_iter10": lr(max_iter=10),
        "newton-cholesky": lr(max_iter=100, solver="newton-cholesky"),
    }


def _timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def profile_segmenter_fit(train: Any, test: Any | None = None, *,
                          candidates: dict[str, Any] | None = None, random_state: int = 0,
                          **seg_params: Any) -> dict:
    """Split a default ``HypercolumnSegmenter`` fit into forward / sampling / classifier time.

    Parameters
    ----------
    train, test : Bunch
        ``images`` and ``masks`` (e.g. ``load_horses(path, split=...)``); ``test`` may be None.
    candidates : dict of str to classifier, default=None
        Classifiers fitted on the same hypercolumn rows (timed, and scored on ``test``
        through the folded head); None: only the segmenter's own.
    random_state : int
    **seg_params
        Other ``HypercolumnSegmenter`` parameters.

    Returns
    -------
    dict
        Seconds of ``fit``, ``forward``, ``sampling``, ``classifier`` (and per candidate its
        classifier seconds, iterations and test IoU).
    """
    seg = HypercolumnSegmenter(random_state=random_state, **seg_params)
    fit_s, _ = _timed(lambda: seg.fit(train.images, train.masks))
    hc = seg.hypercolumns_
    engine = hc.engine_
    images = engine.check_images(train.images)
    draw_s, (X, y) = _timed(lambda: sample_pixels(
        images, train.masks, n_per_image=seg.n_pixels_per_image,
        class_balance=seg.class_balance, ignore_label=seg.ignore_label,
        min_per_class=seg.min_pixels_per_class, random_state=seg.random_state))

    def forward() -> None:
        for _ in engine.iter_maps(images):
            pass

    forward_s, _ = _timed(forward)
    transform_s, feats = _timed(lambda: hc.transform(X))
    out = {"n_images": len(images), "n_pixels": len(y), "n_features": feats.shape[1],
           "fit_seconds": fit_s, "forward_seconds": forward_s,
           "sampling_seconds": transform_s - forward_s + draw_s,
           "draw_pixels_seconds": draw_s, "candidates": {}}
    for name, clf in {"segmenter": seg.classifier, **(candidates or {})}.items():
        clf = clone(clf if clf is not None else default_classifier())
        clf_s, _ = _timed(lambda: clf.fit(feats, y))  # noqa: B023
        final = clf.steps[-1][1] if hasattr(clf, "steps") else clf
        row = {"classifier_seconds": clf_s,
               "n_iter": np.asarray(getattr(final, "n_iter_", [np.nan])).tolist()}
        if test is not None:
            part = clone(seg)
            part.hypercolumns_, part.classifier_ = hc, clf
            part.classes_ = np.asarray(clf.classes_)
            part.folded_ = fold_head(clf, engine.blocks)
            part.prediction_path_ = "folded"
            pred = part.predict(test.images)
            row["foreground_iou"] = float(foreground_iou(test.masks, pred))
            row["mean_iou"] = float(mean_iou(test.masks, pred))
        out["candidates"][name] = row
    out["classifier_seconds"] = out["candidates"]["segmenter"]["classifier_seconds"]
    out["classifier_vs_forward"] = out["classifier_seconds"] / forward_s
    return out


def profile_keypoint_fit(train: Any, test: Any, **params: Any) -> dict:
    """Time a ``HypercolumnKeypointLocator`` fit (forward + sampling vs classifier) and score
    it (PCK@0.1, PCK@0.2 with the inter-ocular distance)."""
    loc = HypercolumnKeypointLocator(**params)
    sample_s = [0.0]
    import skhyper.features as features

    original = features.FeatureEngine.sample

    def sample(self: Any, X: Any) -> np.ndarray:  # time the frames' forward + reads
        t, out = _timed(lambda: original(self, X))
        sample_s[0] += t
        return out

    features.FeatureEngine.sample = sample
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*boxes reach outside.*")
            fit_s, _ = _timed(lambda: loc.fit(train.images, train.keypoints, boxes=train.boxes))
            fit_sample_s = sample_s[0]
            pred = loc.predict(test.images, boxes=test.boxes)
    finally:
        features.FeatureEngine.sample = original
    return {"fit_seconds": fit_s, "forward_and_sampling_seconds": fit_sample_s,
            "classifier_seconds": fit_s - fit_sample_s,
            "pck@0.1": float(pck(test.keypoints, pred, threshold=0.1, normalizer=test.iod)),
            "pck@0.2": float(pck(test.keypoints, pred, threshold=0.2, normalizer=test.iod))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["horses", "keypoints"], default=None)
    ap.add_argument("--classifiers", default=None,
                    help=f"comma-separated, of {list(classifiers())}; default: all")
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    steady = steady_allocator()  # as bench_speed: the steady state of a long job
    torch.set_num_threads(args.threads)
    result: dict = {"machine": machine_info(torch.device("cpu")), "threads": args.threads,
                    "steady_allocator": steady,
                    "load_average_1min_at_start": os.getloadavg()[0]}
    if args.only in (None, "horses"):
        path = SHARED / "weizmann_horse"
        train, test = load_horses(path, split="train"), load_horses(path, split="test")
        cands = classifiers()
        if args.classifiers:
            cands = {k: cands[k] for k in args.classifiers.split(",")}
        res = profile_segmenter_fit(train, test, candidates=cands)
        result["horses"] = res
        print(f"\nhorses fit ({res['n_images']} images, {res['n_pixels']} pixels x "
              f"{res['n_features']} features): fit {res['fit_seconds']:.1f} s = forward "
              f"{res['forward_seconds']:.1f} s + sampling {res['sampling_seconds']:.1f} s + "
              f"classifier {res['classifier_seconds']:.1f} s "
              f"({res['classifier_vs_forward']:.2f}x forward)")
        print(f"{'classifier':>20} {'s':>7} {'x fwd':>6} {'iters':>6} {'fg IoU':>7} "
              f"{'mean IoU':>8}")
        for name, row in res["candidates"].items():
            print(f"{name:>20} {row['classifier_seconds']:7.1f} "
                  f"{row['classifier_seconds'] / res['forward_seconds']:6.2f} "
                  f"{max(row['n_iter']):6.0f} {row.get('foreground_iou', np.nan):7.4f} "
                  f"{row.get('mean_iou', np.nan):8.4f}")
    if args.only in (None, "keypoints"):
        path = SHARED / "face_keypoints"
        train = load_face_keypoints(path, split="train")
        test = load_face_keypoints(path, split="test")
        res = profile_keypoint_fit(train, test, random_state=0, n_jobs=2)
        result["keypoints"] = res
        print(f"\nkeypoint locator fit ({len(train.images)} faces, defaults, n_jobs=2): "
              f"{res['fit_seconds']:.1f} s = forward+sampling "
              f"{res['forward_and_sampling_seconds']:.1f} s + classifier "
              f"{res['classifier_seconds']:.1f} s; PCK@0.1 {res['pck@0.1']:.3f}, PCK@0.2 "
              f"{res['pck@0.2']:.3f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"fit_cpu{'_' + args.tag if args.tag else ''}.json"
    write_results(result, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
