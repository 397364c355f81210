"""Benchmark hypercolumn extraction against forward-only and the naive upsample path.

What it measures, in one run on the same random RGB ``uint8`` images, for every
backbone (``weights=None``: speed does not depend on the weights) and every
number of points (pixels) per image:

1. **forward-only**, the floor: the path of ``transform`` up to and including
   the forward pass (:meth:`skhyper.FeatureEngine.iter_maps` of an engine with
   the same settings, built once by :func:`skhyper.features.build_engine`: same
   ``batch_size``, channels-last, no tiling), with the maps simply dropped. The
   only difference to (2) is the sampling (and the engine that
   ``extract_hypercolumns`` builds on each call).
2. **sampled** (what ``transform`` runs): :func:`skhyper.extract_hypercolumns`
   on a :class:`~skhyper.PixelSet` of P random pixels per image (all pixels,
   from :func:`skhyper.grid_pixels`, when P is the image size): the forward
   pass, then a bilinear read of each layer's native map at the pixels.
3. **naive**: the same forward pass, then for each image every layer's map is
   upsampled to the full image (``F.interpolate``, bilinear,
   ``align_corners=False``), the maps are concatenated into a ``(D, H, W)``
   hypercolumn and the same P pixels are indexed out of it. The maps are made
   contiguous (NCHW) before upsampling: on CPU, upsampling the channels-last
   views directly made this path 2-5x slower (up to 9x for the upsampling
   itself), so the naive path gets its fastest layout and is not a strawman.

(2) and (3) write the same ``(n_pixels, D)`` float32 array; the script checks
once per backbone that they agree (max abs difference, printed) and uses that
check as the warm-up. Timed calls are interleaved (forward, sampled and naive
at every P, then the next repeat) so that load from other processes hits all
methods alike; the figure is the median over repeats, with setup (images,
pixel sets, backbones) outside the timed calls. On CUDA the clock is read after
``torch.cuda.synchronize()``.

Reported per method: median seconds, throughput (images/s), the ratio of
throughput to forward-only, and peak memory: on CUDA
``torch.cuda.max_memory_allocated`` above the memory held before the call
(reset between calls); on CPU the peak growth of the resident set size (RSS)
during the call, read from ``/proc/self/status`` (``VmRSS``) by a sampler
thread every 5 ms (psutil when there is no /proc), after ``malloc_trim``. RSS
growth is a rough figure: it includes the result array and the allocator's
behaviour; ``tracemalloc`` does not see torch's allocations.

Target (the issue's reference setting: VGG16, its 5 stages, 224 px, CPU):
sampled >= 0.95x forward-only throughput at 2048 points per image. The ratio
falls as the points per image grow to a full image (50176 = 224 x 224): the
sampling work and the ``(n_pixels, D)`` result grow with P, while the naive
path pays for the full-resolution hypercolumn at every P.

Run it with::

    python benchmarks/bench_extraction.py            # default run (4-6 min on 2 cores)
    python benchmarks/bench_extraction.py --quick    # smoke run (< 1 min)
    python benchmarks/bench_extraction.py --backbones vgg16 --points 2048 --repeats 5

It prints a table and writes the same figures as JSON, with the machine,
versions and settings, to ``benchmarks/results/extraction_<device>.json``
(``extraction_<device>_quick.json`` for ``--quick``). As DESIGN.md
("Measuring") notes, per-op overhead on these 2-core machines drops sharply
with ``OMP_WAIT_POLICY=PASSIVE`` when another process shares the cores; the
script sets it (unless already set) before importing torch, and sets the
thread count explicitly (``--threads``, 2 on CPU by default).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from skhyper import PixelSet, extract_hypercolumns, grid_pixels  # noqa: E402
from skhyper.features import build_backbone, build_engine
from skhyper.features._backbone import resolve_layers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg as _loadavg  # noqa: E402
from _common import machine_info, measure, write_results  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULTS = {"n_images": 4, "size": 224, "repeats": 3, "points": "256,2048,8192,50176"}
QUICK = {"n_images": 2, "size": 128, "repeats": 1, "points": "256,2048,all"}
TARGET = {"points": 2048, "ratio": 0.95}


# --------------------------------------------------------------------------- methods


def run_forward(engine, images) -> None:
    """(1) forward-only: iterate the maps exactly as ``extract_hypercolumns`` does.

    ``engine`` has ``extract_hypercolumns``' settings (``tile_size=None``); ``images`` are
    checked once, outside the timed call.
    """
    for _i, _maps in engine.iter_maps(images):
        pass


def run_sampled(bb, X, names, dev, batch_size) -> np.ndarray:
    """(2) sampled: the library's ``transform`` path."""
    return extract_hypercolumns(X, bb, names, device=dev, batch_size=batch_size)


def run_naive(engine, images, groups, shape) -> np.ndarray:
    """(3) naive: upsample every map to the image, concatenate, index the pixels."""
    out = np.empty(shape, dtype=np.float32)
    with torch.inference_mode():
        for i, maps in engine.iter_maps(images):
            sel, rows, cols = groups[i]
            size = images[i].shape[:2]
            hc = torch.cat(
                [
                    F.interpolate(
                        m[None].contiguous(), size=size, mode="bilinear", align_corners=False
                    )[0]
                    for m in maps.values()
                ]
            )
            out[sel] = hc[:, rows, cols].T.cpu().numpy()
            del hc
    return out


# --------------------------------------------------------------------------- setup


def parse_points(text: str, n_pixels: int) -> list[int]:
    """``"256,2048,all"`` -> sorted unique counts, capped at the image size."""
    points = []
    for tok in text.split(","):
        tok = tok.strip().lower()
        p = n_pixels if tok in ("all", "full") else int(tok)
        if p <= 0:
            raise SystemExit(f"--points must hold positive integers or 'all'; got {tok!r}.")
        if p > n_pixels:
            print(f"note: {p} points per image capped at the image size, {n_pixels}")
            p = n_pixels
        points.append(p)
    return sorted(set(points))


def make_pixels(images, n_points, rng, dev):
    """PixelSet with ``n_points`` random pixels per image (all pixels when that many).

    Also returns, per image, ``(rows of the result, row tensor, col tensor)``
    for the naive path, so that it does no bookkeeping inside the timed call.
    """
    h, w = images[0].shape[:2]
    if n_points >= h * w:
        X = grid_pixels(images)
    else:
        parts = []
        for i in range(len(images)):
            flat = rng.choice(h * w, size=n_points, replace=False)
            parts.append(np.column_stack([np.full(n_points, i), flat // w, flat % w]))
        X = PixelSet(images, np.concatenate(parts))
    coords = X.coords
    groups = {}
    for i in range(len(images)):
        sel = np.flatnonzero(coords[:, 0] == i)
        rows = torch.from_numpy(coords[sel, 1]).to(dev)
        cols = torch.from_numpy(coords[sel, 2]).to(dev)
        groups[i] = (sel, rows, cols)
    return X, groups


# --------------------------------------------------------------------------- main


def _summary(seconds, peaks, n_images, floor=None, paired=None) -> dict:
    """Figures of one method: times, median, throughput, ratios, peak memory."""
    med = statistics.median(seconds)
    known = [p for p in peaks if p is not None]
    out = {
        "seconds": [round(s, 4) for s in seconds],
        "median_s": round(med, 4),
        "min_s": round(min(seconds), 4),
        "images_per_s": round(n_images / med, 3),
        "peak_mem_mib": round(max(known) / 2**20, 1) if known else None,
    }
    if floor is not None:
        # throughput ratio: median forward-only time / median time of this method
        out["ratio_to_forward"] = round(floor / med, 4)
        # median over repeats of (forward-only run just before) / (this run)
        out["paired_ratio_to_forward"] = round(statistics.median(paired), 4)
    return out


def bench_backbone(name: str, args, images, dev, rng) -> dict:
    bb = build_backbone(name, weights=None).to(dev).eval()
    info = resolve_layers(bb, None)
    names = [d["name"] for d in info]
    n_features = sum(d["num_chs"] for d in info)
    h, w = images[0].shape[:2]
    print(f"\n{name}: {len(names)} layers {names}, D={n_features}", flush=True)

    sets = {p: make_pixels(images, p, rng, dev) for p in args.points_list}
    # The forward pass of extract_hypercolumns (its defaults: no tiling, float32, no cache).
    engine = build_engine(bb, layers=names, device=dev, batch_size=args.batch_size,
                          tile_size=None)
    checked = engine.check_images(images)
    calls = {"forward": lambda: run_forward(engine, checked)}
    for p, (X, groups) in sets.items():
        shape = (len(X.coords), n_features)
        calls[("sampled", p)] = lambda X=X: run_sampled(bb, X, names, dev, args.batch_size)
        calls[("naive", p)] = lambda g=groups, s=shape: run_naive(engine, checked, g, s)

    # Warm-up, and the honesty check: sampled and naive agree on the same pixels.
    t0 = time.perf_counter()
    calls["forward"]()
    p_check = TARGET["points"] if TARGET["points"] in sets else args.points_list[0]
    a = calls[("sampled", p_check)]()
    b = calls[("naive", p_check)]()
    diff = float(np.abs(a - b).max())
    scale = float(np.abs(b).max())
    agree = bool(diff <= 1e-4 * max(1.0, scale))
    del a, b
    print(
        f"  check at {p_check} points/image: max |sampled - naive| = {diff:.3g} "
        f"(max |value| {scale:.3g}) -> {'agree' if agree else 'DISAGREE'}; "
        f"warm-up {time.perf_counter() - t0:.1f} s",
        flush=True,
    )

    # Each repeat runs, for every P, forward-only then sampled then naive: every
    # method has a forward-only run next to it (a paired ratio, robust to load
    # that changes during the run), and forward-only gets len(points) x repeats runs.
    times: dict = {k: [] for k in calls}
    peaks: dict = {k: [] for k in calls}
    paired: dict = {k: [] for k in calls if k != "forward"}
    for r in range(args.repeats):
        t0 = time.perf_counter()
        for p in args.points_list:
            for key in ("forward", ("sampled", p), ("naive", p)):
                s, m = measure(calls[key], dev)
                times[key].append(s)
                peaks[key].append(m)
                if key != "forward":
                    paired[key].append(times["forward"][-1] / s)
        print(f"  repeat {r + 1}/{args.repeats}: {time.perf_counter() - t0:.1f} s", flush=True)

    n = len(images)
    fwd = _summary(times["forward"], peaks["forward"], n)
    rows = []
    for p in args.points_list:
        row = {"points_per_image": p, "full_image": p == h * w}
        for method in ("sampled", "naive"):
            key = (method, p)
            row[method] = _summary(times[key], peaks[key], n, fwd["median_s"], paired[key])
        rows.append(row)
    return {
        "backbone": name,
        "layers": names,
        "n_features": n_features,
        "check": {
            "points_per_image": p_check,
            "max_abs_diff": diff,
            "max_abs_value": scale,
            "agree": agree,
        },
        "forward_only": fwd,
        "points": rows,
    }


def print_table(results: list[dict], dev: torch.device, mem_label: str) -> None:
    head = (
        f"{'backbone':<26}{'pts/img':>8}{'fwd img/s':>11}{'sampled':>10}{'x fwd':>7}"
        f"{'paired':>8}{'naive':>9}{'x fwd':>7}{'nv/smp':>8}   {mem_label}"
    )
    print("\n" + head)
    print("-" * len(head))
    for res in results:
        fwd = res["forward_only"]
        label = f"{res['backbone']} D={res['n_features']}"
        for k, row in enumerate(res["points"]):
            s, nv = row["sampled"], row["naive"]
            pts = f"{row['points_per_image']}" + ("*" if row["full_image"] else "")
            mem = "/".join(
                "-" if v is None else f"{v:.0f}"
                for v in (fwd["peak_mem_mib"], s["peak_mem_mib"], nv["peak_mem_mib"])
            )
            print(
                f"{label if k == 0 else '':<26}{pts:>8}"
                f"{fwd['images_per_s'] if k == 0 else '':>11}"
                f"{s['images_per_s']:>10.2f}{s['ratio_to_forward']:>7.2f}"
                f"{s['paired_ratio_to_forward']:>8.2f}"
                f"{nv['images_per_s']:>9.2f}{nv['ratio_to_forward']:>7.2f}"
                f"{nv['median_s'] / s['median_s']:>8.1f}   {mem}"
            )
    print(
        "img/s: images per second (median of repeats); x fwd: throughput / forward-only "
        "throughput;\npaired: median of (forward-only run just before / this run); "
        "nv/smp: naive time / sampled time; * = all pixels"
    )
    for res in results:
        c = res["check"]
        print(
            f"check {res['backbone']}: max |sampled - naive| = {c['max_abs_diff']:.3g} at "
            f"{c['points_per_image']} points/image (max |value| {c['max_abs_value']:.3g})"
            f" -> {'agree' if c['agree'] else 'DISAGREE'}"
        )
    if dev.type == "cpu":
        for res in results:
            row = next(
                (r for r in res["points"] if r["points_per_image"] == TARGET["points"]), None
            )
            if row is not None:
                ratio = row["sampled"]["ratio_to_forward"]
                pair = row["sampled"]["paired_ratio_to_forward"]
                verdict = "met" if min(ratio, pair) >= TARGET["ratio"] else "NOT met"
                print(
                    f"target {res['backbone']}: sampled at {TARGET['points']} points/image = "
                    f"{ratio:.3f}x forward-only ({pair:.3f}x paired; target >= "
                    f"{TARGET['ratio']}x) -> {verdict}"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default="vgg16,efficientnet_lite0,resnet50")
    parser.add_argument(
        "--n-images",
        type=int,
        default=None,
        help=f"images (default {DEFAULTS['n_images']}, quick {QUICK['n_images']})",
    )
    parser.add_argument(
        "--size", type=int, default=None, help=f"image side in pixels (default {DEFAULTS['size']})"
    )
    parser.add_argument(
        "--points",
        default=None,
        help=f"points per image, comma-separated, 'all' = every pixel "
        f"(default {DEFAULTS['points']})",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed repeats, median reported (default {DEFAULTS['repeats']})",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: 2 on CPU, torch's default on CUDA)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 images of 128 px, 1 repeat, 3 point settings",
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)

    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.n_images < 1 or args.size < 32 or args.repeats < 1 or args.batch_size < 1:
        parser.error("--n-images, --repeats and --batch-size must be >= 1 and --size >= 32")
    if args.device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(args.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            parser.error("--device cuda but CUDA is not available")
    if args.threads is None and dev.type == "cpu":
        args.threads = 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.points_list = parse_points(args.points, args.size * args.size)
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]

    rng = np.random.default_rng(args.seed)
    images = list(rng.integers(0, 256, (args.n_images, args.size, args.size, 3), dtype=np.uint8))
    machine = machine_info(dev)
    settings = {
        "backbones": backbones,
        "weights": None,
        "layers": "all stages (layers=None)",
        "n_images": args.n_images,
        "image_size": [args.size, args.size],
        "image_dtype": "uint8",
        "points_per_image": args.points_list,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "dtype": "float32",
        "seed": args.seed,
        "quick": args.quick,
        "statistic": (
            "median over repeats (forward-only: over repeats x points settings); "
            "warm-up (and check) calls excluded"
        ),
    }
    mem_label = (
        "peak CUDA alloc MiB fwd/smp/nv" if dev.type == "cuda" else "peak RSS growth MiB fwd/smp/nv"
    )
    print(
        f"device {dev} ({machine['device_name']}), torch threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={machine['omp_wait_policy']}, cpu_count {machine['cpu_count']}\n"
        f"{args.n_images} random uint8 images {args.size}x{args.size}, batch_size "
        f"{args.batch_size}, points/image {args.points_list}, {args.repeats} repeats, "
        f"load average {_loadavg()}"
    )

    load_before = _loadavg()
    t_start = time.perf_counter()
    results = [bench_backbone(name, args, images, dev, rng) for name in backbones]
    total = time.perf_counter() - t_start
    print_table(results, dev, mem_label)
    print(f"total {total:.0f} s")

    record = {
        "benchmark": "extraction",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "settings": settings,
        "memory_measure": (
            "torch.cuda.max_memory_allocated minus memory allocated before the call"
            if dev.type == "cuda"
            else "peak growth of VmRSS during the call (5 ms sampler thread, after malloc_trim)"
        ),
        "load_average_before_after": [load_before, _loadavg()],
        "total_s": round(total, 1),
        "target": {**TARGET, "reference": "vgg16, 5 layers, 224 px, CPU"},
        "results": results,
    }
    suffix = "_quick" if args.quick else ""
    path = args.output or RESULTS / f"extraction_{dev.type}{suffix}.json"
    write_results(record, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
