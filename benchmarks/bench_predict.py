"""Benchmark dense prediction: folded vs forward-only vs naive, and a 4096 x 4096 image.

The segmenter is the default ``HypercolumnSegmenter`` (EfficientNet-Lite0 with
its bundled ImageNet weights, its 5 stages, StandardScaler + logistic
regression), fitted on the bundled horse sample. The test image is a bundled
horse photo resized to S x S. For each S (256, 512, 1024; 2048 on GPU), in one
run, interleaved, median of ``--repeats``:

1. **forward-only**, the floor: :meth:`skhyper.FeatureEngine.iter_maps` of the
   segmenter's engine (``hypercolumns_.engine_``, untiled: ``tile_size=None``)
   on the image (image to tensor, the forward pass), maps dropped.
2. **folded** (what ``predict`` runs): ``seg.predict(image)``: the forward pass,
   the folded classifier as per-layer 1x1 heads at native resolution, the
   bilinear upsample of the score map of each layer, the labels.
3. **naive**: the dense ``(S, S, D)`` hypercolumn (``transform_dense``) and
   ``classifier.predict`` on its ``S*S`` rows.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the memory held
before the call; on CPU the peak growth of the resident set size (VmRSS,
sampled every 5 ms after ``malloc_trim``). Targets (issue 4): folded >= 0.95x
forward-only throughput and <= 1.3x its peak memory at 1024 x 1024.

Then a 4096 x 4096 ``predict`` on CPU (tiled with the default ``tile_size``) in a
fresh subprocess whose peak RSS (``VmHWM``, imports and model included) must
stay under 3 GiB; ``--check-tiling`` also predicts it untiled (about 7 GB) and
reports how far the tiled scores are from the whole-image scores.

Run::

    python benchmarks/bench_predict.py             # ~4 min on 2 CPU cores
    python benchmarks/bench_predict.py --quick     # smoke run
    python benchmarks/bench_predict.py --check-tiling

It prints a table and writes the figures as JSON with the machine description
to ``benchmarks/results/predict_<device>.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from skhyper import HypercolumnSegmenter, HypercolumnTransformer  # noqa: E402
from skhyper.datasets import load_horses  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, measure_all, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = {"size": 1024, "throughput": 0.95, "memory": 1.3, "rss_4096_gib": 3.0}


def make_image(size: int) -> np.ndarray:
    horse = load_horses().images[0]
    return np.asarray(Image.fromarray(horse).resize((size, size), Image.BILINEAR))


def fit_segmenter(device: str, **hc_params) -> HypercolumnSegmenter:
    data = load_horses(split="train")
    hc = HypercolumnTransformer(device=device, **hc_params)
    return HypercolumnSegmenter(hc, random_state=0).fit(data.images, data.masks)


def bench_size(seg, size: int, repeats: int, dev: torch.device, naive: bool) -> dict:
    img = make_image(size)
    hc = seg.hypercolumns_
    # the segmenter's forward pass (same layers, device, dtype, batching), untiled
    engine = hc.engine_.replace(tile_size=None, cache=None)
    checked = engine.check_images([img])

    def forward():
        for _ in engine.iter_maps(checked):
            pass

    def folded():
        return seg.predict(img)

    def naive_path():
        dense = hc.transform_dense(img)
        return seg.classifier_.predict(dense.reshape(size * size, -1)).reshape(size, size)

    methods = {"forward": forward, "folded": folded}
    if naive:
        methods["naive"] = naive_path
    agree = None
    if naive:  # warm-up, and a check that both paths give the same labels
        agree = float(np.mean(folded() == naive_path()))
    else:
        folded()
    times, peaks = measure_all(methods, dev, repeats)
    out = {"size": size, "label_agreement_folded_vs_naive": agree}
    t_fwd = statistics.median(times["forward"])
    m_fwd = max(peaks["forward"])
    for name in methods:
        t = statistics.median(times[name])
        m = max(peaks[name])
        out[name] = {
            "seconds": t,
            "images_per_s": 1.0 / t,
            "throughput_vs_forward": t_fwd / t,
            "peak_bytes": m,
            "memory_vs_forward": m / m_fwd if m_fwd else None,
        }
    return out


CHILD = """
import sys, time, numpy as np, torch
sys.path.insert(0, {bench!r})
torch.set_num_threads({threads})
from bench_predict import fit_segmenter, make_image
seg = fit_segmenter("cpu", **{params})
img = make_image(4096)
t = time.perf_counter()
labels = seg.predict(img)
t = time.perf_counter() - t
# VmHWM: this process's peak RSS (ru_maxrss would include the parent's, kept across exec)
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print("RESULT", t, int(hwm) * 1024, labels.shape, float(labels.mean()))
"""


def bench_4096(threads: int, **hc_params) -> dict:
    """Predict a 4096 x 4096 image in a fresh process; its whole peak RSS is the figure."""
    code = CHILD.format(bench=str(Path(__file__).resolve().parent), threads=threads,
                        params=repr(hc_params))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT")]
    if not line:
        raise RuntimeError(f"4096 x 4096 run failed:\n{res.stderr[-3000:]}")
    _, seconds, peak, *_ = line[0].split()
    return {"seconds": float(seconds), "peak_rss_bytes": int(peak),
            "peak_rss_gib": int(peak) / 2**30}


def check_tiling() -> dict:
    """Scores of the 4096 x 4096 image, tiled vs whole (needs ~7 GB)."""
    seg = fit_segmenter("cpu")
    img = make_image(4096)
    t = time.perf_counter()
    tiled = seg.decision_function(img)
    t_tiled = time.perf_counter() - t
    hc = seg.hypercolumns_
    hc.set_params(tile_size=None)
    hc.engine_ = hc.engine_.replace(tile_size=None)  # the fitted engine holds the setting
    t = time.perf_counter()
    whole = seg.decision_function(img)
    t_whole = time.perf_counter() - t
    return {"max_abs_diff": float(np.abs(tiled - whole).max()),
            "max_abs_score": float(np.abs(whole).max()),
            "tiled_seconds": t_tiled, "whole_seconds": t_whole,
            "peak_rss_bytes_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", default=None, help="comma-separated; default 256,512,1024 "
                    "(+2048 on GPU)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-4096", action="store_true")
    ap.add_argument("--check-tiling", action="store_true")
    ap.add_argument("--output", default=None, help="JSON path (default: benchmarks/results/)")
    args = ap.parse_args(argv)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                       else ("cpu" if args.device == "auto" else args.device))
    if dev.type == "cpu":
        torch.set_num_threads(args.threads)
    sizes = ([256, 512] if args.quick else [256, 512, 1024] + ([2048] if dev.type == "cuda"
                                                                 else []))
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    repeats = 1 if args.quick else args.repeats
    t0 = time.perf_counter()
    seg = fit_segmenter(str(dev))
    rows = [bench_size(seg, s, repeats, dev, naive=True) for s in sizes]
    mem_label = "CUDA max_memory_allocated growth" if dev.type == "cuda" else "VmRSS growth"
    print(f"\ndense prediction, default segmenter ({dev}, {torch.get_num_threads()} threads); "
          f"memory: {mem_label}")
    head = ('size', 'method', 's', 'img/s', 'x fwd', 'MiB', 'mem x fwd')
    print(' '.join(f'{h:>{w}}' for h, w in zip(head, (6, 8, 8, 8, 7, 9, 9))))
    for r in rows:
        for name in ("forward", "folded", "naive"):
            if name in r:
                m = r[name]
                print(f"{r['size']:>6} {name:>8} {m['seconds']:8.3f} {m['images_per_s']:8.2f} "
                      f"{m['throughput_vs_forward']:7.3f} {m['peak_bytes'] / 2**20:9.1f} "
                      f"{m['memory_vs_forward']:9.3f}")
        print(f"{'':>6} labels folded == naive on {100 * r['label_agreement_folded_vs_naive']:.4f}%"
              " of pixels")
    result = {"machine": machine_info(dev), "settings": vars(args), "sizes": rows}
    at = [r for r in rows if r["size"] == TARGET["size"]]
    if at:
        f = at[0]["folded"]
        ok = (f["throughput_vs_forward"] >= TARGET["throughput"]
              and f["memory_vs_forward"] <= TARGET["memory"])
        print(f"target at 1024^2: folded {f['throughput_vs_forward']:.3f}x forward throughput "
              f"(>= 0.95), {f['memory_vs_forward']:.3f}x its peak memory (<= 1.3) -> "
              f"{'met' if ok else 'NOT met'}")
        result["target_met"] = ok
    if dev.type == "cpu" and not args.skip_4096 and not args.quick:
        big = bench_4096(args.threads)
        ok = big["peak_rss_gib"] < TARGET["rss_4096_gib"]
        print(f"4096 x 4096 predict (tiled, fresh process): {big['seconds']:.1f} s, peak RSS "
              f"{big['peak_rss_gib']:.2f} GiB (< 3 GiB) -> {'met' if ok else 'NOT met'}")
        result["predict_4096"] = {**big, "target_met": ok}
    if args.check_tiling:
        chk = check_tiling()
        print(f"4096 x 4096 tiled vs whole scores: max |diff| {chk['max_abs_diff']:.2e} "
              f"(scores up to {chk['max_abs_score']:.1f}); tiled {chk['tiled_seconds']:.1f} s, "
              f"whole {chk['whole_seconds']:.1f} s")
        result["tiling_check_4096"] = chk
    result["total_seconds"] = time.perf_counter() - t0
    RESULTS.mkdir(exist_ok=True)
    path = Path(args.output) if args.output else (
        RESULTS / f"predict_{dev.type}{'_quick' if args.quick else ''}.json")
    print(f"total {result['total_seconds']:.0f} s")
    write_results(result, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
