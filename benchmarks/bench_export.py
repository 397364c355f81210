"""Benchmark the exported network: ``seg.predict`` (eager PyTorch) vs the ONNX Runtime model.

The segmenters are the default ``HypercolumnSegmenter`` (EfficientNet-Lite0 with its bundled
ImageNet weights, its 5 stages, StandardScaler + logistic regression) and the same on ResNet-18
(random weights: speed does not depend on their values, and the run stays offline; its 5
stages ``relu, layer1..layer4``), fitted on the bundled horse sample. Each is exported with
:func:`skhyper.export.to_onnx` and run by :class:`skhyper.export.OnnxSegmenter` (ONNX
Runtime, CPU). For each size S (256, 512, 1024), in one run on the same image (a bundled
horse photo resized to S x S), interleaved, median of ``--repeats``:

1. **eager**: ``seg.predict(image)`` (PyTorch eager: forward pass, folded 1x1 heads,
   upsampling of the score maps, labels);
2. **onnx**: ``OnnxSegmenter(path).predict(image)`` (the intensity step in numpy, the network
   in ONNX Runtime: forward pass, 1x1 convolutions, upsampling, softmax, argmax).

Both use the same number of threads (``--threads``, default 2). Peak memory is the growth of
the resident set size (VmRSS, sampled every 5 ms after ``malloc_trim``). The labels of both
are compared (agreement).

Run::

    python benchmarks/bench_export.py            # ~1 min on 2 CPU cores
    python benchmarks/bench_export.py --quick    # smoke run

It prints a table and writes the figures as JSON with the machine description to
``benchmarks/results/export_cpu.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from skhyper import HypercolumnSegmenter, HypercolumnTransformer  # noqa: E402
from skhyper.datasets import load_horses  # noqa: E402
from skhyper.export import OnnxSegmenter, to_onnx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg, machine_info, measure_all, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def make_image(size: int) -> np.ndarray:
    horse = load_horses().images[0]
    return np.asarray(Image.fromarray(horse).resize((size, size), Image.BILINEAR))


def fit_segmenter(backbone: str) -> HypercolumnSegmenter:
    data = load_horses(split="train")
    if backbone == "resnet18":
        hc = HypercolumnTransformer("resnet18", weights=None, layers=None, device="cpu")
    else:
        hc = HypercolumnTransformer(backbone, device="cpu")
    return HypercolumnSegmenter(hc, random_state=0).fit(data.images, data.masks)


def bench_size(seg, onnx_seg, size: int, repeats: int) -> dict:
    img = make_image(size)
    dev = torch.device("cpu")
    methods = {"eager": lambda: seg.predict(img), "onnx": lambda: onnx_seg.predict(img)}
    eager, onnx = methods["eager"](), methods["onnx"]()  # warm-up
    agreement = float(np.mean(eager == onnx))
    times, peaks = measure_all(methods, dev, repeats)
    out = {"size": size, "label_agreement": agreement}
    for name in methods:
        t = statistics.median(times[name])
        out[name] = {"seconds": t, "images_per_s": 1.0 / t, "peak_bytes": max(peaks[name]),
                     "all_seconds": times[name]}
    out["throughput_onnx_vs_eager"] = out["eager"]["seconds"] / out["onnx"]["seconds"]
    m_e, m_o = out["eager"]["peak_bytes"], out["onnx"]["peak_bytes"]
    out["memory_onnx_vs_eager"] = m_o / m_e if m_e else None
    return out


def run(backbone: str, args) -> dict:
    t0 = time.perf_counter()
    seg = fit_segmenter(backbone)
    t_fit = time.perf_counter() - t0
    folder = Path(tempfile.mkdtemp(prefix="skhyper-bench-export-"))
    t0 = time.perf_counter()
    path = to_onnx(seg, folder / "seg.onnx")
    t_export = time.perf_counter() - t0
    onnx_seg = OnnxSegmenter(path, threads=args.threads)
    rows = [bench_size(seg, onnx_seg, s, args.repeats) for s in args.sizes]
    print(f"\n{backbone}: fit {t_fit:.1f} s, to_onnx {t_export:.1f} s, ONNX file "
          f"{path.stat().st_size / 2**20:.1f} MiB")
    print(f"{'size':>6} {'eager s':>9} {'onnx s':>9} {'onnx/eager':>11} {'eager MiB':>10} "
          f"{'onnx MiB':>9} {'mem ratio':>9} {'labels':>7}")
    for r in rows:
        mem = r["memory_onnx_vs_eager"]
        print(f"{r['size']:>6} {r['eager']['seconds']:>9.3f} {r['onnx']['seconds']:>9.3f} "
              f"{r['throughput_onnx_vs_eager']:>10.2f}x "
              f"{r['eager']['peak_bytes'] / 2**20:>10.1f} {r['onnx']['peak_bytes'] / 2**20:>9.1f} "
              f"{'-' if mem is None else f'{mem:.2f}':>9} {r['label_agreement']:>7.4f}")
    return {"backbone": backbone, "fit_seconds": t_fit, "to_onnx_seconds": t_export,
            "onnx_bytes": path.stat().st_size, "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "resnet18"])
    parser.add_argument("--quick", action="store_true", help="sizes 256 and 512, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats = [256, 512], 1
    torch.set_num_threads(args.threads)
    load_before = loadavg()
    models = [run(b, args) for b in args.backbones]
    print(f"\nthreads {args.threads}; load average before {load_before}, after {loadavg()}")
    record = {
        "benchmark": "export",
        "model": "HypercolumnSegmenter (default parameters) on the horses sample",
        "settings": {"repeats": args.repeats, "threads": args.threads, "sizes": args.sizes,
                     "onnxruntime": onnxruntime.__version__, "exporter": "torchscript"},
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "machine": machine_info(torch.device("cpu")),
        "models": models,
    }
    name = "export_cpu_quick.json" if args.quick else "export_cpu.json"
    write_results(record, RESULTS / name)


if __name__ == "__main__":
    main()
