"""Benchmark one huge image: an 8192 x 8192 uint16 micrograph, chunk by chunk, on CPU.

The image is synthetic microscopy: a smooth uneven background (200..400
counts), a few thousand soft blobs ("cells", 800..3000 counts above it, radii
6..40 px) and Gaussian noise (sigma 40), clipped to uint16. The ground truth
is each blob's half-maximum disc. It is generated chunk by chunk into a zarr
store, so no process ever holds it in full.

The segmenter is the default ``HypercolumnSegmenter`` (EfficientNet-Lite0,
bundled ImageNet weights, 5 stages, StandardScaler + logistic regression),
fitted on sixteen 256 x 256 crops of another synthetic image (other seed).
The 1-channel uint16 image is replicated to RGB and divided by 65535 (the
default ``intensity_range=None``), as today.

Each measurement runs in a fresh subprocess whose peak RSS (``VmHWM``: the
whole process, imports, model, input and output included) is the figure:

1. **zarr -> zarr**: :func:`skhyper.parallel.predict_large` reads the image
   from the zarr store window by window and writes the labels to another
   (``.to_zarr``), with dask's threaded scheduler in the process, for each of
   ``--chunks`` (1024, 1536, 2048);
2. **numpy -> numpy**: the image in memory (128 MiB), ``predict_large(...)``
   ``.compute()`` to a numpy label map, with the first of ``--chunks``.
3. **reference**: ``seg.predict(image)`` on the numpy image (the tiled
   forward pass of :func:`skhyper.features.tiled_maps`, ``tile_size=768``).

Goal (issue "Beyond RGB photos and one machine"): peak RSS < 4 GiB.
The labels of 1 and 3 are compared (agreement), and 1 is scored against the
ground truth (foreground IoU).

Run::

    python benchmarks/bench_huge.py                 # ~20 min on 2 CPU cores
    python benchmarks/bench_huge.py --size 2048 --chunks 1024     # smoke run
    python benchmarks/bench_huge.py --chunks 2048 --skip-reference

It prints a table and writes ``benchmarks/results/huge_cpu.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import pickle  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from skhyper import HypercolumnSegmenter, HypercolumnTransformer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg, machine_info, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_GIB = 4.0
BLOCK = 1024  # generation and zarr chunk size


def make_blobs(shape: tuple[int, int], seed: int, density: float = 4e-5) -> np.ndarray:
    """Blob parameters ``(y, x, sigma, amplitude)``, one row per blob."""
    rng = np.random.default_rng(seed)
    n = int(density * shape[0] * shape[1])
    radius = rng.uniform(6, 40, n)
    return np.column_stack([rng.uniform(0, shape[0], n), rng.uniform(0, shape[1], n),
                            radius / 1.1774, rng.uniform(800, 3000, n)])  # FWHM/2 = radius


def render(blobs: np.ndarray, shape: tuple[int, int], r0: int, r1: int, c0: int, c1: int,
           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Image (uint16) and ground-truth mask (uint8) of the block ``[r0:r1, c0:c1]``."""
    yy = np.arange(r0, r1, dtype=np.float32)[:, None]
    xx = np.arange(c0, c1, dtype=np.float32)[None, :]
    bg = 300 + 100 * np.sin(yy / shape[0] * 3.1) * np.cos(xx / shape[1] * 2.3)
    signal = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
    mask = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    y, x, s = blobs[:, 0], blobs[:, 1], blobs[:, 2]
    near = (y + 4 * s > r0) & (y - 4 * s < r1) & (x + 4 * s > c0) & (x - 4 * s < c1)
    for by, bx, bs, amp in blobs[near]:
        a0, a1 = max(r0, int(by - 4 * bs)), min(r1, int(by + 4 * bs) + 1)
        b0, b1 = max(c0, int(bx - 4 * bs)), min(c1, int(bx + 4 * bs) + 1)
        d2 = (yy[a0 - r0 : a1 - r0] - by) ** 2 + (xx[:, b0 - c0 : b1 - c0] - bx) ** 2
        g = np.exp(-d2 / (2 * bs * bs))
        signal[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] += amp * g
        mask[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0] |= g > 0.5
    rng = np.random.default_rng([seed, r0, c0])
    img = bg + signal + rng.normal(0, 40, signal.shape).astype(np.float32)
    return np.clip(img, 0, 65535).astype(np.uint16), mask.astype(np.uint8)


def write_zarr(path: Path, shape: tuple[int, int], seed: int) -> None:
    import zarr

    blobs = make_blobs(shape, seed)
    img = zarr.open_array(str(path / "image.zarr"), mode="w", shape=shape,
                          chunks=(BLOCK, BLOCK), dtype=np.uint16)
    truth = zarr.open_array(str(path / "truth.zarr"), mode="w", shape=shape,
                            chunks=(BLOCK, BLOCK), dtype=np.uint8)
    for r0 in range(0, shape[0], BLOCK):
        for c0 in range(0, shape[1], BLOCK):
            r1, c1 = min(shape[0], r0 + BLOCK), min(shape[1], c0 + BLOCK)
            im, m = render(blobs, shape, r0, r1, c0, c1, seed)
            img[r0:r1, c0:c1] = im
            truth[r0:r1, c0:c1] = m


def fit_segmenter(n_crops: int = 16, crop: int = 256) -> HypercolumnSegmenter:
    shape = (2048, 2048)
    blobs = make_blobs(shape, seed=1)
    img, mask = render(blobs, shape, 0, shape[0], 0, shape[1], seed=1)
    rng = np.random.default_rng(0)
    corners = rng.integers(0, shape[0] - crop, size=(n_crops, 2))
    images = [img[r : r + crop, c : c + crop] for r, c in corners]
    masks = [mask[r : r + crop, c : c + crop] for r, c in corners]
    seg = HypercolumnSegmenter(HypercolumnTransformer(device="cpu"), n_pixels_per_image=1000,
                               random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dark uint16 images: IntensityWarning, on purpose
        return seg.fit(images, masks)


CHILD = """
import os, pickle, sys, time, warnings
import numpy as np, torch, zarr
warnings.simplefilter("ignore")
torch.set_num_threads({threads})
from skhyper.parallel import predict_large
seg = pickle.load(open({model!r}, "rb"))
src = zarr.open_array({image!r}, mode="r")
mode = {mode!r}
t = time.perf_counter()
if mode == "zarr":
    labels = predict_large(seg, src, chunks={chunks})
    labels.to_zarr({out!r}, overwrite=True, compute=False).compute(scheduler={scheduler!r})
    shape = labels.shape
elif mode == "numpy":
    img = src[:]
    t = time.perf_counter()
    labels = predict_large(seg, img, chunks={chunks}).compute(scheduler={scheduler!r})
    shape = labels.shape
else:
    img = src[:]
    t = time.perf_counter()
    labels = seg.predict(img)
    np.save({out!r} + ".npy", labels)
    shape = labels.shape
t = time.perf_counter() - t
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0].split()[1]
print("RESULT", t, int(hwm) * 1024, shape)
"""


def run_child(mode: str, tmp: Path, threads: int, chunks: int, scheduler: str) -> dict:
    out = str(tmp / f"labels_{mode}_{chunks}.zarr")
    code = CHILD.format(threads=threads, model=str(tmp / "seg.pkl"),
                        image=str(tmp / "image.zarr"), mode=mode, chunks=chunks, out=out,
                        scheduler=scheduler)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT")]
    if not line:
        raise RuntimeError(f"{mode} run failed:\n{res.stderr[-3000:]}")
    _, seconds, peak, *_ = line[0].split()
    return {"mode": mode, "chunks": chunks if mode != "reference" else None,
            "scheduler": scheduler if mode != "reference" else None, "seconds": float(seconds),
            "peak_rss_bytes": int(peak), "peak_rss_gib": int(peak) / 2**30, "labels": out}


def foreground_iou(labels, truth) -> float:
    inter = union = 0
    for r0 in range(0, truth.shape[0], BLOCK):
        a = np.asarray(labels[r0 : r0 + BLOCK]) == 1
        b = np.asarray(truth[r0 : r0 + BLOCK]) == 1
        inter += int((a & b).sum())
        union += int((a | b).sum())
    return inter / union


def agreement(a, b) -> float:
    same = 0
    for r0 in range(0, a.shape[0], BLOCK):
        same += int((np.asarray(a[r0 : r0 + BLOCK]) == np.asarray(b[r0 : r0 + BLOCK])).sum())
    return same / (a.shape[0] * a.shape[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunks", default="1024,1536,2048",
                    help="comma-separated predict_large chunks (the first also for numpy)")
    ap.add_argument("--scheduler", default="threads", help="dask scheduler in the child")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--skip-numpy", action="store_true")
    args = ap.parse_args(argv)
    import zarr

    torch.set_num_threads(args.threads)
    shape = (args.size, args.size)
    t0 = time.perf_counter()
    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="skhyper_huge_") as d:
        tmp = Path(d)
        t = time.perf_counter()
        write_zarr(tmp, shape, seed=0)
        t_gen = time.perf_counter() - t
        t = time.perf_counter()
        seg = fit_segmenter()
        t_fit = time.perf_counter() - t
        (tmp / "seg.pkl").write_bytes(pickle.dumps(seg))
        truth = zarr.open_array(str(tmp / "truth.zarr"), mode="r")
        rows = []
        for c in (int(v) for v in args.chunks.split(",")):
            rows.append(run_child("zarr", tmp, args.threads, c, args.scheduler))
            rows[-1]["foreground_iou"] = foreground_iou(
                zarr.open_array(rows[-1]["labels"], mode="r"), truth)
        if not args.skip_numpy:
            rows.append(run_child("numpy", tmp, args.threads, int(args.chunks.split(",")[0]),
                                  args.scheduler))
        if not args.skip_reference:
            ref = run_child("reference", tmp, args.threads, 0, args.scheduler)
            ref_labels = np.load(ref["labels"] + ".npy", mmap_mode="r")
            ref["foreground_iou"] = foreground_iou(ref_labels, truth)
            ref["agreement_with_predict_large"] = agreement(
                zarr.open_array(rows[0]["labels"], mode="r"), ref_labels)
            rows.append(ref)
        for r in rows:
            r.pop("labels")
    print(f"\n{args.size} x {args.size} uint16, default segmenter on CPU "
          f"({args.threads} torch threads); peak RSS = VmHWM of the whole process")
    print(f"{'path':>10} {'chunks':>7} {'s':>8} {'MP/s':>7} {'GiB':>6} {'< 4 GiB':>8} {'IoU':>6}")
    mp = args.size * args.size / 1e6
    for r in rows:
        r["megapixels_per_s"] = mp / r["seconds"]
        r["goal_met"] = r["peak_rss_gib"] < GOAL_GIB
        iou = r.get("foreground_iou")
        print(f"{r['mode']:>10} {str(r['chunks'] or '-'):>7} {r['seconds']:8.1f} "
              f"{r['megapixels_per_s']:7.2f} {r['peak_rss_gib']:6.2f} "
              f"{'yes' if r['goal_met'] else 'NO':>8} {'' if iou is None else f'{iou:.3f}':>6}")
    for r in rows:
        if "agreement_with_predict_large" in r:
            print(f"labels predict_large == predict on "
                  f"{100 * r['agreement_with_predict_large']:.4f}% of pixels")
    result = {"machine": machine_info(torch.device("cpu")), "settings": vars(args),
              "image": {"shape": list(shape), "dtype": "uint16", "generate_seconds": t_gen},
              "fit_seconds": t_fit, "goal_peak_rss_gib": GOAL_GIB, "runs": rows,
              "loadavg_before": load_before, "loadavg_after": loadavg(),
              "total_seconds": time.perf_counter() - t0}
    RESULTS.mkdir(exist_ok=True)
    name = "huge_cpu.json" if args.size == 8192 else f"huge_cpu_{args.size}.json"
    path = RESULTS / name
    print(f"total {result['total_seconds']:.0f} s")
    write_results(result, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
