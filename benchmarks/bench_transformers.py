"""Benchmark transformer backbones: ViT-S/14 vs EfficientNet-Lite0, forward / transform / predict.

Two segmenters, each fitted on 6 bundled horse images with StandardScaler + logistic
regression on its default layers:

* **ViT-S/14**: ``"timm:vit_small_patch14_reg4_dinov2"`` (DINOv2 ViT-S/14 with 4 registers, as
  napari-convpaint offers it) with random weights (``weights=None``: no hub here; timing does
  not depend on the weights); blocks 2, 5, 8, 11; ``tile_size=None`` (attention is not tiled).
* **EfficientNet-Lite0**: the default backbone with its bundled ImageNet weights, 5 stages.

For each S in 224, 512, 1024 (square bundled horse photo), interleaved, median of the repeats:

1. **forward-only**, the floor: ``engine.iter_maps`` of the segmenter's engine (untiled),
   maps dropped;
2. **transform**: ``HypercolumnTransformer.transform`` of 2048 random pixels of the image
   (one forward pass + bilinear reads);
3. **folded predict**: ``seg.predict(image)`` (forward pass, 1x1 heads at native resolution,
   upsampling of the score maps over the padded canvas, labels).

Targets (issue 16): for the ViT, transform >= 0.9x and folded predict >= 0.9x forward-only
throughput. Memory: peak growth of the resident set size (VmRSS sampled every 5 ms) per call.

Then the ViT's attention memory: ``predict`` at 512, 1024 and 2048 pixels in fresh processes,
whose whole peak RSS (``VmHWM``: imports, model, image and all) is reported (default layers:
all 12 blocks run).

Run::

    python benchmarks/bench_transformers.py           # ~6 min on 2 CPU cores
    python benchmarks/bench_transformers.py --quick   # smoke run (224, 512; no 2048)

It prints a table and writes the figures as JSON with the machine description to
``benchmarks/results/transformers_<device>.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skhyper import HypercolumnSegmenter, HypercolumnTransformer  # noqa: E402
from skhyper.datasets import load_horses  # noqa: E402
from skhyper.sampling import PixelSet  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg, machine_info, measure_all, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VIT = "timm:vit_small_patch14_reg4_dinov2"
MODELS = {
    "vit_s14": dict(backbone=VIT, weights=None, tile_size=None),
    "efficientnet_lite0": dict(tile_size=None),
}
TARGET = {"transform_vs_forward": 0.9, "predict_vs_forward": 0.9}
N_PIXELS = 2048


def make_image(size: int) -> np.ndarray:
    horse = load_horses().images[0]
    return np.asarray(Image.fromarray(horse).resize((size, size), Image.BILINEAR))


def fit_segmenter(device: str, **hc_params) -> HypercolumnSegmenter:
    data = load_horses(split="train")
    hc = HypercolumnTransformer(device=device, **hc_params)
    head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    seg = HypercolumnSegmenter(hc, head, n_pixels_per_image=300, random_state=0)
    with warnings.catch_warnings():  # random ViT features: lbfgs may stop early, fine for timing
        warnings.simplefilter("ignore", ConvergenceWarning)
        return seg.fit(data.images[:6], data.masks[:6])


def bench_size(seg, size: int, repeats: int, dev: torch.device) -> dict:
    img = make_image(size)
    hc = seg.hypercolumns_
    engine = hc.engine_.replace(tile_size=None, cache=None)
    checked = engine.check_images([img])
    rng = np.random.default_rng(0)
    coords = np.stack([np.zeros(N_PIXELS, int), rng.integers(0, size, N_PIXELS),
                       rng.integers(0, size, N_PIXELS)], 1)
    X = PixelSet([img], coords)

    def forward():
        for _ in engine.iter_maps(checked):
            pass

    methods = {"forward": forward, "transform": lambda: hc.transform(X),
               "predict": lambda: seg.predict(img)}
    times, peaks = measure_all(methods, dev, repeats)
    out = {"size": size, "repeats": repeats}
    t_fwd = statistics.median(times["forward"])
    for name in methods:
        t = statistics.median(times[name])
        out[name] = {"seconds": t, "images_per_s": 1.0 / t, "vs_forward": t_fwd / t,
                     "all_seconds": times[name], "peak_bytes": max(peaks[name])}
    return out


CHILD = """
import sys, time, numpy as np, torch
sys.path.insert(0, {bench!r})
torch.set_num_threads({threads})
from bench_transformers import fit_segmenter, make_image
seg = fit_segmenter("cpu", **{params})
img = make_image({size})
t = time.perf_counter()
labels = seg.predict(img)
t = time.perf_counter() - t
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print("RESULT", t, int(hwm) * 1024)
"""


def peak_rss(size: int, threads: int, **hc_params) -> dict:
    """``predict`` of one image in a fresh process; its whole peak RSS."""
    code = CHILD.format(bench=str(Path(__file__).resolve().parent), threads=threads,
                        params=repr(hc_params), size=size)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT")]
    if not line:
        raise RuntimeError(f"{size} x {size} run failed:\n{res.stderr[-3000:]}")
    _, seconds, peak = line[0].split()
    return {"size": size, "layers": hc_params.get("layers"), "predict_seconds": float(seconds),
            "peak_rss_bytes": int(peak), "peak_rss_gib": int(peak) / 2**30}


def _mb(b):
    return "-" if b is None else f"{b / 2**20:8.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    dev = torch.device("cpu")
    torch.set_num_threads(args.threads)
    sizes = [224, 512] if args.quick else [224, 512, 1024]
    t0 = time.perf_counter()
    load_start = loadavg()
    rows: dict[str, list[dict]] = {}
    for model, params in MODELS.items():
        seg = fit_segmenter("cpu", **params)
        bench_size(seg, 224, 1, dev)  # warm-up
        rows[model] = [bench_size(seg, s, args.repeats, dev) for s in sizes]
    print(f"\ntransformer vs CNN backbones (cpu, {torch.get_num_threads()} threads, "
          f"load average at start {load_start}, now {loadavg()}); memory: VmRSS growth per "
          "call")
    print(f"{'model':>18} {'size':>5} | {'forward':>8} {'transform':>9} {'predict':>8} img/s | "
          f"{'transf/fwd':>10} {'pred/fwd':>8} | {'fwd MB':>8} {'trans MB':>8} {'pred MB':>8}")
    for model, results in rows.items():
        for r in results:
            f, t, p = r["forward"], r["transform"], r["predict"]
            print(f"{model:>18} {r['size']:>5} | {f['images_per_s']:8.3f} "
                  f"{t['images_per_s']:9.3f} {p['images_per_s']:8.3f}       | "
                  f"{t['vs_forward']:10.2f} {p['vs_forward']:8.2f} | {_mb(f['peak_bytes'])} "
                  f"{_mb(t['peak_bytes'])} {_mb(p['peak_bytes'])}")
    vit = rows["vit_s14"]
    ok = {k: all(r[k.split("_")[0]]["vs_forward"] >= v for r in vit) for k, v in TARGET.items()}
    print(f"ViT targets (>= 0.9x forward-only at every size): {ok}")
    memory = []
    if not args.quick:
        vit_params = dict(MODELS["vit_s14"])
        for size in (512, 1024, 2048):
            memory.append(peak_rss(size, args.threads, **vit_params))
        print("\nViT-S/14 predict, whole-process peak RSS (VmHWM, fresh process):")
        for m in memory:
            print(f"  {m['size']:>5}^2: {m['peak_rss_gib']:.2f} GiB, predict "
                  f"{m['predict_seconds']:.1f} s")
    record = {
        "benchmark": "bench_transformers",
        "machine": machine_info(dev),
        "settings": {"threads": args.threads, "repeats": args.repeats, "n_pixels": N_PIXELS,
                     "models": {k: {kk: str(vv) for kk, vv in v.items()}
                                for k, v in MODELS.items()}},
        "load_average": {"start": load_start, "end": loadavg()},
        "results": rows,
        "vit_targets_met": ok,
        "vit_peak_rss": memory,
        "seconds_total": time.perf_counter() - t0,
    }
    name = "transformers_cpu_quick.json" if args.quick else "transformers_cpu.json"
    write_results(record, RESULTS / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
