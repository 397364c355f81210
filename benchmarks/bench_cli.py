"""Benchmark ``skhyper predict`` (a subprocess, start-up included) vs ``seg.predict`` in-process.

The model is the default ``HypercolumnSegmenter`` (EfficientNet-Lite0 with its bundled ImageNet
weights, 5 stages, ``scales="auto"``: 256-pixel images are fed at 2x, StandardScaler + logistic
regression, edge-aware upsampling) fitted on the bundled horse sample's
train split and saved with ``skhyper.save``. The collection is ``--n-images`` (64) horse photos
of the sample resized to ``--size`` x ``--size`` (256), written as PNG files to a temporary
folder. Median of ``--repeats`` runs:

1. **in-process**: ``seg = skhyper.load(model)``, then ``seg.predict(image)`` for each image,
   the images already decoded in memory (the reference: no start-up, no I/O);
2. **CLI**: ``python -m skhyper predict MODEL FOLDER -o OUT --overwrite``, wall time of the
   whole subprocess: Python and torch start-up, model load, reading the PNGs (read ahead in
   threads while the model loads and predicts), predicting, writing label PNGs (in a writer
   thread).

Both run with the steady allocator (:func:`skhyper.parallel.steady_allocator`, the CLI's default
``--allocator steady``; called in this process too). A third path, ``skhyper predict ...
--allocator system`` (glibc's defaults), is timed in each repeat: the ratio of the two CLI
throughputs is what the allocator setting gives (it grows with the image size).

The CLI's summary line says how long its images took once the model was loaded (reading,
predicting and writing, until the last file is written): its steady throughput, which read-ahead
and background writing should keep at the in-process rate (target >= 0.9x). Start-up is the
rest of the subprocess' wall time (interpreter, imports, checks, model load) and, separately,
``python -m skhyper --help`` (interpreter and imports alone). The end-to-end ratio (start-up
included) is reported too, and the written labels are checked equal to in-process ``predict``.

Run::

    python benchmarks/bench_cli.py            # ~2 min on 2 CPU cores
    python benchmarks/bench_cli.py --quick
    python benchmarks/bench_cli.py --size 1024 --n-images 16 --tag _1024   # ~5 min

It prints a table and writes ``benchmarks/results/cli_cpu<tag>.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # inherited by the subprocesses

import argparse  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import skhyper  # noqa: E402
from skhyper import HypercolumnSegmenter, HypercolumnTransformer  # noqa: E402
from skhyper.datasets import load_horses  # noqa: E402
from skhyper.parallel import steady_allocator  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg, machine_info, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def make_images(n: int, size: int) -> list[np.ndarray]:
    horses = load_horses().images
    return [np.asarray(Image.fromarray(horses[i % len(horses)]).resize((size, size),
                                                                       Image.BILINEAR))
            for i in range(n)]


def cli(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "skhyper", *map(str, args)], env=env,
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError(f"skhyper {' '.join(map(str, args))} failed:\n{res.stderr}")
    return elapsed, res


def _time_paths(loaded: object, images: list, model: Path, folder: Path, tmp: Path,
                repeats: int) -> tuple[dict[str, list[float]], list, str]:
    """Seconds per repeat of each path (in-process, CLI end to end, after start-up, --help,
    --allocator system), interleaved so that load changes hit them alike; the in-process
    labels and the CLI's summary line."""
    times: dict[str, list[float]] = {k: [] for k in ("inproc", "cli", "steady", "help",
                                                      "system")}
    for _ in range(repeats):
        t = time.perf_counter()
        expected = [loaded.predict(im) for im in images]
        times["inproc"].append(time.perf_counter() - t)
        times["help"].append(cli("--help")[0])
        elapsed, res = cli("predict", model, folder, "-o", tmp / "out", "--overwrite",
                           "--quiet")
        times["cli"].append(elapsed)
        summary = res.stdout.strip().splitlines()[-1]
        times["steady"].append(float(re.search(r"then ([0-9.]+) s", summary).group(1)))
        _, res = cli("predict", model, folder, "-o", tmp / "out_system", "--overwrite",
                     "--quiet", "--allocator", "system")
        times["system"].append(float(re.search(r"then ([0-9.]+) s",
                                               res.stdout.strip().splitlines()[-1]).group(1)))
    return times, expected, summary


def _print_report(args: argparse.Namespace, rows: list, med: dict, startup: float,
                  startup_images: float, pair_ratios: list, system_ratios: list,
                  steady: object) -> None:
    """The table of paths, then the start-up and allocator lines."""
    print(f"{args.n_images} images of {args.size} x {args.size}, default segmenter, CPU, "
          f"{args.threads} torch threads; median of {args.repeats}")
    print(f"{'path':<44} {'seconds':>8} {'images/s':>9} {'ratio':>6}")
    for name, sec, rate, ratio in rows:
        print(f"{name:<44} {sec:8.2f} {rate:9.2f} {ratio:6.2f}")
    print(f"start-up: {startup:.2f} s (interpreter, imports, checks, model load); "
          f"'skhyper --help' {med['help']:.2f} s; start-up = {startup_images:.0f} "
          "images of in-process work")
    print(f"after start-up / in-process, per repeat: "
          f"{', '.join(f'{r:.2f}' for r in pair_ratios)} (median "
          f"{statistics.median(pair_ratios):.2f})")
    print(f"--allocator steady (default) / system, images/s per repeat: "
          f"{', '.join(f'{r:.2f}' for r in system_ratios)} (median "
          f"{statistics.median(system_ratios):.2f}); in-process steady allocator: {steady}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-images", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="torch threads in this process (the CLI uses torch's default, the "
                    "machine's cores)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name")
    args = ap.parse_args(argv)
    steady = steady_allocator()  # in-process as the CLI runs by default (--allocator steady)
    if args.quick:
        args.n_images, args.repeats = 16, 1
    torch.set_num_threads(args.threads)
    load_before = loadavg()
    tmp = Path(tempfile.mkdtemp(prefix="skhyper_bench_cli_"))
    try:
        train = load_horses(split="train")
        seg = HypercolumnSegmenter(HypercolumnTransformer(device="cpu", scales="auto"),
                                   random_state=0)  # the default segmenter, on the CPU
        seg.fit(train.images, train.masks)
        model = skhyper.save(seg, tmp / "horses.skhyper")
        images = make_images(args.n_images, args.size)
        folder = tmp / "images"
        folder.mkdir()
        for i, im in enumerate(images):
            Image.fromarray(im).save(folder / f"img{i:03d}.png")

        loaded = skhyper.load(model)
        loaded.predict(images[0])  # warm-up
        times, expected, summary = _time_paths(loaded, images, model, folder, tmp, args.repeats)
        same = all(np.array_equal(np.asarray(Image.open(tmp / "out" / f"img{i:03d}.png")), e)
                   for i, e in enumerate(expected))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    t_inproc, t_cli, t_steady, t_help, t_system = (
        times[k] for k in ("inproc", "cli", "steady", "help", "system"))
    n = args.n_images
    med = {k: statistics.median(v) for k, v in times.items()}
    startup = statistics.median([c - s for c, s in zip(t_cli, t_steady)])
    # each repeat times both paths back to back: the ratio of a pair sees the same load
    pair_ratios = [i / s for i, s in zip(t_inproc, t_steady)]
    inproc_rate = n / med["inproc"]
    steady_rate = n / med["steady"]
    e2e_rate = n / med["cli"]
    rows = [
        ("in-process seg.predict loop", med["inproc"], inproc_rate, 1.0),
        (f"skhyper predict, {n} images (end to end)", med["cli"], e2e_rate,
         e2e_rate / inproc_rate),
        ("skhyper predict, after start-up", med["steady"], steady_rate,
         steady_rate / inproc_rate),
        ("  the same, --allocator system", med["system"], n / med["system"],
         n / med["system"] / inproc_rate),
    ]
    system_ratios = [y / s for s, y in zip(t_steady, t_system)]
    _print_report(args, rows, med, startup, startup * inproc_rate, pair_ratios, system_ratios,
                  steady)
    print(f"CLI labels equal in-process predict: {same}")
    print(f"CLI summary: {summary}")
    dev = torch.device("cpu")
    write_results({
        "benchmark": "bench_cli",
        "settings": {"n_images": n, "size": args.size, "repeats": args.repeats,
                     "threads": args.threads, "model": "HypercolumnSegmenter() default",
                     "input_format": "png", "output_format": "png"},
        "seconds": {"in_process": t_inproc, "cli": t_cli, "cli_after_startup": t_steady,
                    "cli_help": t_help, "cli_after_startup_allocator_system": t_system},
        "steady_allocator_in_process": steady,
        "allocator_steady_vs_system": {"per_repeat": system_ratios,
                                       "median": statistics.median(system_ratios)},
        "startup_s": {"help": med["help"], "imports_checks_and_model_load": startup},
        "images_per_s": {"in_process": inproc_rate, "cli_end_to_end": e2e_rate,
                         "cli_after_startup": steady_rate},
        "ratio_vs_in_process": {"end_to_end": e2e_rate / inproc_rate,
                                "after_startup": steady_rate / inproc_rate,
                                "after_startup_per_repeat": pair_ratios,
                                "after_startup_median_of_repeats":
                                    statistics.median(pair_ratios)},
        "labels_equal": same,
        "loadavg_before": load_before, "loadavg_after": loadavg(),
        "machine": machine_info(dev),
    }, RESULTS / f"cli_cpu{'_quick' if args.quick else ''}{args.tag}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
