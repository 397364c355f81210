"""Benchmark one fitted model called from 1 thread vs 2 threads at once.

A fitted model is safe to call from several threads (the backbone's layer
capture is per call, :mod:`skhyper.features`); this measures whether doing so
pays. Three workloads, each on ONE fitted model:

* ``segmenter.predict_proba``: the default :class:`~skhyper.HypercolumnSegmenter`
  (EfficientNet-Lite0 with its bundled ImageNet weights, its 5 stages,
  StandardScaler + logistic regression, folded) fitted on the bundled horse
  sample (``load_horses(split="train")``, ``n_pixels_per_image=200``);
* ``transformer.transform``: a default :class:`~skhyper.HypercolumnTransformer`
  on a :class:`~skhyper.PixelSet` of ``--pixels`` random pixels of one image;
* ``locator.predict``: a :class:`~skhyper.HypercolumnKeypointLocator` (default
  features, ``grid_size=3``, frames of 160 px) fitted on the horse sample with
  3 synthetic keypoints per image read off the masks (the foreground's
  centroid, its top-most and its left-most pixel);
* ``torch forward (control)``: no skhyper, the ceiling set by the machine: timm's
  ``efficientnet_lite0`` (random weights: speed does not depend on them) on the
  same images as ``(1, 3, S, S)`` float tensors, channels-last, in
  ``inference_mode``. When the control does not scale to 2 threads either, the
  cores are busy (e.g. other processes), not the library.

Each workload is ``--n-calls`` calls (default 48), one image per call: bundled
horse photos (all 24, in turn) resized to squares of 160, 192, 224 and 256 px in turn.
The same calls run in three settings:

1. ``1 thread``: the calls one after another, ``torch.set_num_threads(1)``;
2. ``2 threads``: a ``ThreadPoolExecutor`` of 2 threads, each doing half of the
   calls (every other one) one after another, ``torch.set_num_threads(1)`` (set
   in each thread too): two forward passes in parallel on two cores;
3. ``1 thread, torch 2``: the calls one after another with
   ``torch.set_num_threads(2)``: torch's own intra-op parallelism, the reference.

Before timing, every setting runs once (warm-up). Settings are interleaved in
every repeat (so that load from other processes hits them alike); the figure is
the median over ``--repeats`` of the wall time of all calls, as calls per
second. Every result of setting 2 (each repeat) must equal the result of the
same call in setting 1 exactly (``np.array_equal``: same thread count, same
kernels); setting 3 is compared too, for information (a different thread count
may round differently). Target: 2 threads >= 1 thread throughput on one model.

The script sets ``OMP_WAIT_POLICY=PASSIVE`` (unless set; see DESIGN.md,
"Measuring"). With it, torch's 2 intra-op threads are *slower* than 1 on these
small images (each op wakes a sleeping thread); with ``ACTIVE`` they are faster,
but an idle OpenMP thread then spins on a core and slows the other settings.
Figures need a quiet machine: with another process busy on one of 2 cores,
every setting (the control too) runs at about the 1-thread rate.

Run::

    python benchmarks/bench_threads.py            # ~2 min on 2 CPU cores
    python benchmarks/bench_threads.py --quick    # smoke run

It prints a table and writes the figures as JSON, with the machine, versions
and settings, to ``benchmarks/results/threads_<device>.json``
(``threads_<device>_quick.json`` for ``--quick``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from skhyper import (  # noqa: E402
    HypercolumnKeypointLocator,
    HypercolumnSegmenter,
    HypercolumnTransformer,
    PixelSet,
)
from skhyper.datasets import load_horses  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg, machine_info, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (160, 192, 224, 256)
SETTINGS = {  # name -> (worker threads, torch threads)
    "1 thread": (1, 1),
    "2 threads": (2, 1),
    "1 thread, torch 2": (1, 2),
}
TARGET = {"ratio_2_threads_vs_1": 1.0}


# --------------------------------------------------------------------------- data, models


def make_images(n: int) -> list[np.ndarray]:
    """``n`` bundled horse photos resized to squares of 160, 192, 224, 256 px in turn."""
    horses = load_horses().images
    return [np.asarray(Image.fromarray(horses[i % len(horses)]).resize(
        (SIZES[i % len(SIZES)],) * 2, Image.BILINEAR)) for i in range(n)]


def synthetic_keypoints(masks: list[np.ndarray]) -> np.ndarray:
    """``(n_images, 3, 2)`` ``(x, y)``: the foreground's centroid, top-most and left-most pixel."""
    out = []
    for m in masks:
        rows, cols = np.nonzero(m)
        top, left = np.argmin(rows), np.argmin(cols)
        out.append([[cols.mean(), rows.mean()], [cols[top], rows[top]],
                    [cols[left], rows[left]]])
    return np.asarray(out, dtype=np.float64) + 0.5  # pixel centres


def fit_models(device: str, seed: int) -> tuple[dict, dict]:
    """The three fitted models, and the seconds each fit took."""
    train = load_horses(split="train")
    fit_s = {}
    t = time.perf_counter()
    seg = HypercolumnSegmenter(HypercolumnTransformer(device=device), n_pixels_per_image=200,
                               random_state=seed).fit(train.images, train.masks)
    fit_s["segmenter"] = time.perf_counter() - t
    t = time.perf_counter()
    hc = HypercolumnTransformer(device=device).fit()
    fit_s["transformer"] = time.perf_counter() - t
    t = time.perf_counter()
    loc = HypercolumnKeypointLocator(HypercolumnTransformer(device=device), grid_size=3,
                                     random_state=seed)
    loc.fit(train.images, synthetic_keypoints(train.masks))
    fit_s["locator"] = time.perf_counter() - t
    return {"segmenter": seg, "transformer": hc, "locator": loc}, fit_s


def workloads(models: dict, images: list[np.ndarray], n_pixels: int, seed: int) -> dict:
    """name -> (description, list of zero-argument calls, one per image)."""
    rng = np.random.default_rng(seed)
    sets = []
    for img in images:
        h, w = img.shape[:2]
        flat = rng.choice(h * w, size=min(n_pixels, h * w), replace=False)
        sets.append(PixelSet([img], np.column_stack([np.zeros_like(flat), flat // w, flat % w])))
    seg, hc, loc = models["segmenter"], models["transformer"], models["locator"]
    net = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    tensors = [torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255)
               .contiguous(memory_format=torch.channels_last) for img in images]

    def forward(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return net(x).numpy()

    return {
        "segmenter.predict_proba": (
            "default HypercolumnSegmenter (folded), predict_proba of one image",
            [lambda img=img: seg.predict_proba(img) for img in images]),
        "transformer.transform": (
            f"default HypercolumnTransformer, transform of a PixelSet of {n_pixels} pixels "
            "of one image",
            [lambda X=X: hc.transform(X) for X in sets]),
        "locator.predict": (
            "HypercolumnKeypointLocator (grid 3, 3 keypoints, frame 160), predict on one image",
            [lambda img=img: loc.predict([img]) for img in images]),
        "torch forward (control)": (
            "timm efficientnet_lite0 (random weights), forward of one (1, 3, S, S) float tensor "
            "(no skhyper)",
            [lambda x=x: forward(x) for x in tensors]),
    }


# --------------------------------------------------------------------------- running


def run_setting(calls: list, workers: int, torch_threads: int,
                pool: ThreadPoolExecutor) -> tuple[float, list]:
    """Wall seconds of all ``calls`` in one setting, and their results in call order."""
    torch.set_num_threads(torch_threads)
    if workers == 1:
        t = time.perf_counter()
        out = [fn() for fn in calls]
        return time.perf_counter() - t, out

    def share(k: int) -> list:
        torch.set_num_threads(torch_threads)  # per thread, as the setting says
        return [fn() for fn in calls[k::workers]]

    t = time.perf_counter()
    futures = [pool.submit(share, k) for k in range(workers)]
    parts = [f.result() for f in futures]
    seconds = time.perf_counter() - t
    out = [None] * len(calls)
    for k, part in enumerate(parts):
        out[k::workers] = part
    return seconds, out


def same(a: list, b: list) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def max_diff(a: list, b: list) -> float:
    return max(float(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).max())
               for x, y in zip(a, b, strict=True))


def bench_workload(name: str, calls: list, repeats: int, pool: ThreadPoolExecutor) -> dict:
    t0 = time.perf_counter()
    load_before = loadavg()
    reference = None
    warm = {}
    for setting, (workers, threads) in SETTINGS.items():  # warm-up, first results
        s, out = run_setting(calls, workers, threads, pool)
        warm[setting] = round(s, 4)
        if setting == "1 thread":
            reference = out
        elif setting == "2 threads":
            first_equal = same(out, reference)
        else:
            torch2_equal = same(out, reference)
            torch2_diff = 0.0 if torch2_equal else max_diff(out, reference)
    print(f"\n{name}: {len(calls)} calls; warm-up "
          + ", ".join(f"{k} {v:.2f} s" for k, v in warm.items()), flush=True)
    times: dict[str, list[float]] = {k: [] for k in SETTINGS}
    equal_runs = int(first_equal)
    for r in range(repeats):
        for setting, (workers, threads) in SETTINGS.items():
            s, out = run_setting(calls, workers, threads, pool)
            times[setting].append(s)
            if setting == "2 threads":
                equal_runs += same(out, reference)
            del out
        print(f"  repeat {r + 1}/{repeats}: "
              + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    one = med["1 thread"]
    rows = {
        k: {
            "workers": SETTINGS[k][0],
            "torch_threads": SETTINGS[k][1],
            "seconds": [round(s, 4) for s in times[k]],
            "median_s": round(med[k], 4),
            "calls_per_s": round(len(calls) / med[k], 3),
            "ratio_to_1_thread": round(one / med[k], 4),
            # per repeat, 1 thread time / this time (robust to load changing between repeats)
            "paired_ratio_to_1_thread": round(statistics.median(
                a / b for a, b in zip(times["1 thread"], times[k])), 4),
        }
        for k in SETTINGS
    }
    checks = repeats + 1
    return {
        "workload": name,
        "n_calls": len(calls),
        "settings": rows,
        "check": {
            "2_threads_equal_to_1_thread": f"{equal_runs}/{checks} runs",
            "all_equal": equal_runs == checks,
            "torch2_equal_to_1_thread": torch2_equal,
            "torch2_max_abs_diff": torch2_diff,
        },
        "warmup_s": warm,
        "seconds": round(time.perf_counter() - t0, 1),
        "load_average_before_after": [load_before, loadavg()],
    }


def print_table(results: list[dict]) -> None:
    names = list(SETTINGS)
    head = (f"{'workload':<26}" + "".join(f"{k + ' /s':>22}" for k in names)
            + f"{'2thr/1thr':>11}{'paired':>8}{'torch2/1thr':>13}  equal")
    print("\n" + head)
    print("-" * len(head))
    for res in results:
        s = res["settings"]
        cells = "".join(f"{s[k]['calls_per_s']:>22.2f}" for k in names)
        print(f"{res['workload']:<26}{cells}{s['2 threads']['ratio_to_1_thread']:>11.3f}"
              f"{s['2 threads']['paired_ratio_to_1_thread']:>8.3f}"
              f"{s['1 thread, torch 2']['ratio_to_1_thread']:>13.3f}  "
              f"{res['check']['2_threads_equal_to_1_thread']}")
    print("/s: calls per second (median of repeats); 2thr/1thr: 2-thread throughput / 1-thread "
          "throughput (torch 1 thread each);\npaired: median over repeats of the same; "
          "torch2/1thr: 1 thread with torch.set_num_threads(2) / 1 thread; equal: 2-thread "
          "results == 1-thread results (np.array_equal)")
    for res in results:
        r = res["settings"]["2 threads"]["ratio_to_1_thread"]
        ok = r >= TARGET["ratio_2_threads_vs_1"] and res["check"]["all_equal"]
        c = res["check"]
        what = ("control" if res["workload"].endswith("(control)")
                else f"target {res['workload']}")
        print(f"{what}: 2 threads {r:.3f}x 1 thread (>= 1), results equal: "
              f"{c['all_equal']} -> {'met' if ok else 'NOT met'}; torch 2 threads equal: "
              f"{c['torch2_equal_to_1_thread']} (max |diff| {c['torch2_max_abs_diff']:.3g})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--n-calls", type=int, default=None, help="calls per setting (default 48, "
                    "quick 8)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats, median reported "
                    "(default 7, quick 1)")
    ap.add_argument("--pixels", type=int, default=2048, help="pixels per PixelSet (transform)")
    ap.add_argument("--workloads", default="segmenter.predict_proba,transformer.transform,"
                    "locator.predict,torch forward (control)", help="comma-separated subset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: 8 calls, 1 repeat")
    ap.add_argument("--output", type=Path, default=None, help="JSON path")
    args = ap.parse_args(argv)
    if args.n_calls is None:
        args.n_calls = 8 if args.quick else 48
    if args.repeats is None:
        args.repeats = 1 if args.quick else 7
    if args.n_calls < 2 or args.repeats < 1 or args.pixels < 1:
        ap.error("--n-calls must be >= 2, --repeats and --pixels >= 1")
    if args.device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(args.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            ap.error("--device cuda but CUDA is not available")
    chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]

    torch.set_num_threads(2)  # fits with torch's 2 threads; each setting sets its own
    machine = machine_info(dev)
    machine.pop("threads")  # per setting, below
    load_before = loadavg()
    t0 = time.perf_counter()
    models, fit_s = fit_models(str(dev), args.seed)
    images = make_images(args.n_calls)
    work = workloads(models, images, args.pixels, args.seed)
    unknown = sorted(set(chosen) - set(work))
    if unknown:
        ap.error(f"unknown workloads {unknown}; choose from {sorted(work)}")
    print(f"device {dev} ({machine['device_name']}), cpu_count {machine['cpu_count']}, "
          f"OMP_WAIT_POLICY={machine['omp_wait_policy']}; fits "
          + ", ".join(f"{k} {v:.1f} s" for k, v in fit_s.items())
          + f"\n{args.n_calls} calls of one image each (sizes {SIZES} px in turn), "
          f"{args.repeats} repeats, load average {load_before}", flush=True)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="bench") as pool:
        results = [bench_workload(name, work[name][1], args.repeats, pool) for name in chosen]
    for res in results:
        res["description"] = work[res["workload"]][0]
    total = time.perf_counter() - t0
    print_table(results)
    print(f"total {total:.0f} s")

    record = {
        "benchmark": "threads",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "settings": {
            "n_calls": args.n_calls,
            "image_sizes": list(SIZES),
            "images": "bundled horse photos (load_horses()), resized to squares, in turn",
            "pixels_per_pixelset": args.pixels,
            "repeats": args.repeats,
            "seed": args.seed,
            "quick": args.quick,
            "fit": "load_horses(split='train'); segmenter n_pixels_per_image=200; locator "
                   "grid_size=3, synthetic keypoints (centroid, top-most, left-most pixel)",
            "thread_settings": {k: {"workers": w, "torch_threads": t}
                                for k, (w, t) in SETTINGS.items()},
            "statistic": "median over repeats of the wall time of all calls; settings "
                         "interleaved per repeat; warm-up run of every setting excluded",
        },
        "fit_s": {k: round(v, 2) for k, v in fit_s.items()},
        "load_average_before_after": [load_before, loadavg()],
        "total_s": round(total, 1),
        "target": {**TARGET, "reference": "2 threads (torch 1 thread each) vs 1 thread "
                   "(torch 1 thread), one fitted model"},
        "results": results,
    }
    suffix = "_quick" if args.quick else ""
    path = args.output or RESULTS / f"threads_{dev.type}{suffix}.json"
    write_results(record, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
