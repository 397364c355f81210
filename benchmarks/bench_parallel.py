"""Benchmark predict_collection: in-process vs a LocalCluster of 1 and 2 worker processes.

The segmenter is the default ``HypercolumnSegmenter`` (EfficientNet-Lite0 with
its bundled ImageNet weights, 5 stages, StandardScaler + logistic regression),
fitted on the bundled horse sample. The collection is ``--n-images`` (64)
horse photos of the bundled sample resized to ``--size`` x ``--size`` (256),
predicted with ``batch_size=4`` (images per task). Median of ``--repeats``
runs, throughput in images/s:

1. **predict**: ``seg.predict(images)`` in this process (the reference);
2. **in-process**: ``predict_collection(seg, images)``;
3. **1 worker**: ``LocalCluster(n_workers=1, threads_per_worker=1)``: torch in
   the worker uses the machine's cores (predict_collection sets
   ``torch.set_num_threads`` to the host's cores / threads of its workers);
4. **2 workers**: ``LocalCluster(n_workers=2, threads_per_worker=1)``, one
   torch thread each;
5. **2 workers, paths**: the same, images given as PNG paths read by the
   workers;
6. **2 workers, dask malloc**: as 4, with dask's default worker environment.

Clusters 3 to 5 start without ``MALLOC_TRIM_THRESHOLD_=65536``, which dask's
nanny sets by default and which makes torch on CPU 2-3x slower (row 6; see
:mod:`skhyper.parallel`, "CPU workers").

Every cluster call scatters the model to each worker (``broadcast=True``)
and is timed whole, scatter included; cluster startup and the first call
(workers import torch and unpickle the model) are reported apart. Memory:
peak RSS growth of this process (VmRSS sampled every 5 ms) and each worker's
peak RSS (VmHWM). The labels of every path are checked against ``predict``.

Run::

    python benchmarks/bench_parallel.py            # ~3 min on 2 CPU cores
    python benchmarks/bench_parallel.py --quick

It prints a table and writes ``benchmarks/results/parallel_cpu.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # inherited by the workers

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import dask  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from skhyper import HypercolumnSegmenter, HypercolumnTransformer  # noqa: E402
from skhyper.datasets import load_horses  # noqa: E402
from skhyper.parallel import SlowWorkerWarning, predict_collection  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    PeakRSS,
    loadavg,
    machine_info,
    release_memory,
    write_results,
)

RESULTS = Path(__file__).resolve().parent / "results"


def make_images(n: int, size: int) -> list[np.ndarray]:
    horses = load_horses().images
    return [np.asarray(Image.fromarray(horses[i % len(horses)]).resize((size, size),
                                                                       Image.BILINEAR))
            for i in range(n)]


def worker_hwm(client) -> dict[str, int]:
    def hwm() -> int:
        with open("/proc/self/status") as f:
            return [int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM")][0]

    return client.run(hwm)


def timed(fn, repeats: int) -> tuple[list[float], int | None, object]:
    times, peak, out = [], None, None
    for _ in range(repeats):
        release_memory()
        with PeakRSS() as rss:
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        peak = max(peak or 0, rss.growth or 0)
    return times, peak, out


def same_labels(got, expected) -> float:
    return float(np.mean([np.mean(g == e) for g, e in zip(got, expected)]))


def _time_clusters(seg: HypercolumnSegmenter, images: list, paths: list[str],
                   args: argparse.Namespace, record: Callable[..., None]) -> None:
    """Time predict_collection on LocalClusters of 1 and 2 workers (with skhyper's malloc
    setting, and 2 workers with dask's), arrays and, on the tuned 2-worker cluster, paths."""
    from distributed import Client, LocalCluster

    tuned = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    tuned.pop("MALLOC_TRIM_THRESHOLD_", None)  # see skhyper.parallel, "CPU workers"
    configs = [(1, True), (2, True), (2, False)]
    for n_workers, tune in configs:
        env = tuned if tune else dask.config.get("distributed.nanny.pre-spawn-environ")
        t = time.perf_counter()
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                   processes=True, dashboard_address=None, silence_logs=40)
        client = Client(cluster)
        startup = time.perf_counter() - t
        try:
            t = time.perf_counter()
            predict_collection(seg, images[:8], client=client, batch_size=args.batch_size)
            first = time.perf_counter() - t
            inputs = [("arrays", images)] + ([("paths", paths)] if n_workers == 2 and tune
                                              else [])
            for kind, data in inputs:
                times, peak, out = timed(
                    lambda data=data: predict_collection(seg, data, client=client,
                                                         batch_size=args.batch_size),
                    args.repeats)
                name = f"{n_workers} worker{'s' if n_workers > 1 else ''}"
                name += ", paths" if kind == "paths" else ""
                name += "" if tune else ", dask malloc"
                record(name, times, peak, out, cluster_startup_seconds=startup,
                       first_call_seconds_8_images=first,
                       malloc_trim_threshold=env.get("MALLOC_TRIM_THRESHOLD_"),
                       worker_peak_rss_bytes=sorted(worker_hwm(client).values()))
        finally:
            client.close()
            cluster.close()


def _print_table(rows: list[dict], args: argparse.Namespace, speedup: float, one: dict,
                 two: dict) -> None:
    """One line per path, then the 2-vs-1-worker line."""
    print(f"\npredict_collection, {args.n_images} images {args.size}x{args.size}, batch_size "
          f"{args.batch_size}, default segmenter on CPU ({os.cpu_count()} cores); median of "
          f"{args.repeats}")
    print(f"{'path':>28} {'s':>7} {'img/s':>7} {'x predict':>9} {'MiB here':>9} "
          f"{'MiB/worker':>11} {'same':>6}")
    for r in rows:
        w = r.get("worker_peak_rss_bytes")
        print(f"{r['path']:>28} {r['seconds']:7.2f} {r['images_per_s']:7.2f} "
              f"{r['throughput_vs_predict']:9.2f} {(r['peak_rss_growth_bytes'] or 0) / 2**20:9.0f}"
              f" {'-' if not w else f'{max(w) / 2**20:.0f}':>11} "
              f"{100 * r['label_agreement_with_predict']:5.1f}%")
    print(f"2 workers vs 1 worker: {speedup:.2f}x; cluster startup "
          f"{one['cluster_startup_seconds']:.1f} s (1 worker), "
          f"{two['cluster_startup_seconds']:.1f} s (2); first call (8 images, workers import "
          f"torch and unpickle the model) {one['first_call_seconds_8_images']:.1f} s / "
          f"{two['first_call_seconds_8_images']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-images", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads in this process")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_images, args.repeats = 16, 1
    warnings.simplefilter("ignore", SlowWorkerWarning)  # measured on purpose below
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    load_before = loadavg()
    train = load_horses(split="train")
    seg = HypercolumnSegmenter(HypercolumnTransformer(device="cpu"), random_state=0)
    seg.fit(train.images, train.masks)
    images = make_images(args.n_images, args.size)
    seg.predict(images[:4])  # warm-up
    rows = []

    def record(name: str, times: list[float], peak: int | None, labels, **extra) -> None:
        t = statistics.median(times)
        rows.append({"path": name, "seconds": t, "seconds_all": times,
                     "images_per_s": args.n_images / t, "peak_rss_growth_bytes": peak,
                     "label_agreement_with_predict": same_labels(labels, reference), **extra})

    times, peak, reference = timed(lambda: seg.predict(images), args.repeats)
    record("predict", times, peak, reference)
    times, peak, out = timed(lambda: predict_collection(seg, images,
                                                        batch_size=args.batch_size),
                             args.repeats)
    record("in-process", times, peak, out)

    with tempfile.TemporaryDirectory(prefix="skhyper_bench_") as d:
        paths = []
        for i, im in enumerate(images):
            paths.append(str(Path(d) / f"img{i:03d}.png"))
            Image.fromarray(im).save(paths[-1])
        _time_clusters(seg, images, paths, args, record)

    base = rows[0]["images_per_s"]
    for r in rows:
        r["throughput_vs_predict"] = r["images_per_s"] / base
    one = next(r for r in rows if r["path"] == "1 worker")
    two = next(r for r in rows if r["path"] == "2 workers")
    speedup = two["images_per_s"] / one["images_per_s"]
    _print_table(rows, args, speedup, one, two)
    result = {"machine": machine_info(torch.device("cpu")), "settings": vars(args),
              "loadavg_before": load_before, "loadavg_after": loadavg(), "rows": rows,
              "speedup_2_vs_1_workers": speedup, "total_seconds": time.perf_counter() - t0}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"parallel_cpu{'_quick' if args.quick else ''}.json"
    print(f"total {result['total_seconds']:.0f} s")
    write_results(result, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
