"""Benchmark inference speed against the network as a user would run it (issue 19).

For each backbone and image size, in one run, on the same images, interleaved, median of
``--repeats`` (setup outside the timed calls):

1. **plain**: the same network as a user writes it, eager, NCHW, nothing fused: timm
   ``create_model(arch, features_only=True, out_indices=...)`` / torchvision's
   ``create_feature_extractor(model, return_nodes=stages)`` (the same layers as skhyper, so the
   same work), ``.eval()``, under ``torch.no_grad()``, on the normalized image batch.
2. **skhyper forward**: :meth:`FeatureEngine.iter_maps` of the fitted segmenter's engine
   (untiled): image to tensor, channels-last, batch norms folded into the convolutions
   (``HypercolumnTransformer(optimize=True)``, the default), ``inference_mode``.
3. **unoptimized forward**: the same with ``optimize=False`` (what skhyper ran before).
4. **transform**: ``HypercolumnTransformer.transform`` of 2048 random pixels per image (the
   forward pass plus the bilinear reads of every map at the pixels).
5. **folded predict**: ``HypercolumnSegmenter.predict`` (forward, per-layer 1x1 heads,
   upsampled score maps, labels), the segmenter fitted on a few bundled horse images (speed does
   not depend on the fit).

Ratios are throughputs relative to the plain forward (``x plain``) and to skhyper's forward
(``x fwd``), of the medians and of the best of the repeats (``min``: on shared cores the least
disturbed estimate). Targets (issue 19): folded predict >= 1.4x plain at 512 and 1024 for the
default backbone; transform >= 0.9x skhyper's forward for every backbone at 2048 pixels/image.

The default backbone (EfficientNet-Lite0, bundled ImageNet weights) runs at 256, 512, 1024
(4, 2, 1 images per call); VGG16 and ResNet-50 (``weights=None``: speed does not depend on
the weights) at 512 (2 images). ``--compile`` adds ``torch.compile`` (inductor, frozen
weights) of skhyper's optimized network against the same network run eagerly (compile time
and steady speed; without the engine's capture hooks, which dynamo does not trace).

Run::

    python benchmarks/bench_speed.py            # ~6 min on 2 CPU cores
    python benchmarks/bench_speed.py --quick    # smoke run (256 only, 1 repeat)

It prints a table and writes the figures as JSON with the machine description to
``benchmarks/results/speed_<device>.json``. OpenMP runs with its default wait policy, as a
user's process does; on a machine shared with other busy processes set
``OMP_WAIT_POLICY=PASSIVE`` (spinning threads of several processes slow each other down, but
passive threads pay a wake-up on every parallel operation, which penalizes many small
operations over a few large ones). glibc's malloc keeps freed memory mapped
(``skhyper.parallel.steady_allocator``, as under jemalloc / tcmalloc; ``--glibc-defaults`` to keep
glibc's thresholds): otherwise each call faults in the memory the previous one handed back,
and the order of the calls decides the timings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from skhyper import HypercolumnSegmenter, HypercolumnTransformer, PixelSet
from skhyper.datasets import load_horses
from skhyper.features import build_backbone
from skhyper.parallel import steady_allocator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, measure_all, write_results

RESULTS = Path(__file__).resolve().parent / "results"
PIXELS_PER_IMAGE = 2048
TARGETS = {"predict_vs_plain": 1.4, "predict_sizes": [512, 1024], "transform_vs_forward": 0.9}
DEFAULT_CASES = [("efficientnet_lite0", 256, 4), ("efficientnet_lite0", 512, 2),
                 ("efficientnet_lite0", 1024, 1), ("vgg16", 512, 2), ("resnet50", 512, 2)]


def make_images(size: int, n: int) -> list[np.ndarray]:
    horses = load_horses().images
    return [np.asarray(Image.fromarray(horses[k]).resize((size, size), Image.BILINEAR))
            for k in range(n)]


def plain_model(name: str, stages: list[str], dtype: torch.dtype = torch.float32):
    """The network as a user writes it: eager, NCHW, the same layers, nothing fused."""
    if name == "efficientnet_lite0":
        import timm

        model = timm.create_model("tf_efficientnet_lite0", features_only=True,
                                  out_indices=(0, 1, 2, 3, 4))
        mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    else:
        import torchvision
        from torchvision.models.feature_extraction import create_feature_extractor

        model = create_feature_extractor(torchvision.models.get_model(name, weights=None),
                                         return_nodes=stages)
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    return model.eval(), torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)


def fit_segmenter(name: str, device: str, n_images: int = 6, **params: object
                  ) -> HypercolumnSegmenter:
    data = load_horses(split="train")
    weights = "imagenet" if name == "efficientnet_lite0" else None
    hc = HypercolumnTransformer(name, weights=weights, device=device, **params)
    return HypercolumnSegmenter(hc, n_pixels_per_image=200, random_state=0).fit(
        data.images[:n_images], data.masks[:n_images])


def _add_compiled(methods: dict, engine: object, images: list, dev: torch.device) -> float:
    """Add "network_eager" and "network_compiled" to ``methods``; the compile time."""
    # torch.compile (inductor, frozen weights) of skhyper's optimized network, called on
    # the normalized channels-last batch without the capture hooks (dynamo does not trace
    # the engine's hook-based capture); "network" is the same copy run eagerly
    import copy

    import torch._inductor.config as inductor_config

    net = copy.deepcopy(engine.backbone.model)
    for m in net.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
    bb = engine.backbone
    x = torch.from_numpy(np.stack(images)).to(dev).permute(0, 3, 1, 2).float() / 255
    x = ((x - bb.mean.to(dev)) / bb.std.to(dev)).contiguous(memory_format=torch.channels_last)
    inductor_config.freezing = True
    compiled = torch.compile(net)
    t0 = time.perf_counter()
    with torch.inference_mode():
        compiled(x)
    compile_seconds = time.perf_counter() - t0

    def network(model=net):
        with torch.inference_mode():
            return model(x)

    methods["network_eager"] = network
    methods["network_compiled"] = lambda: network(compiled)
    return compile_seconds


def bench_case(name: str, size: int, n_images: int, repeats: int, dev: torch.device,
               compile_: bool = False, dtype: str = "float32", fit_images: int = 6) -> dict:
    images = make_images(size, n_images)
    seg = fit_segmenter(name, str(dev), fit_images, dtype=dtype)
    slow_seg = fit_segmenter(name, str(dev), fit_images, dtype=dtype, optimize=False)
    engine = seg.hypercolumns_.engine_.replace(tile_size=None)
    slow_engine = slow_seg.hypercolumns_.engine_.replace(tile_size=None)
    checked = engine.check_images(images)
    stages = engine.layers
    model, mean, std = plain_model(name, stages)
    model = model.to(dev)
    if name == "efficientnet_lite0":  # the same (bundled) weights as skhyper's
        state = build_backbone(name).model.state_dict()
        model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()})
    rng = np.random.default_rng(0)
    coords = np.concatenate([
        np.column_stack([np.full(PIXELS_PER_IMAGE, i), rng.integers(0, size, PIXELS_PER_IMAGE),
                         rng.integers(0, size, PIXELS_PER_IMAGE)]) for i in range(n_images)])
    X = PixelSet(checked, coords)
    hc = seg.hypercolumns_
    hc.engine_ = engine  # untiled, as the forward rows

    def plain():
        with torch.no_grad(), torch.autocast(dev.type, dtype=getattr(torch, dtype),
                                             enabled=dtype != "float32"):
            x = torch.from_numpy(np.stack(images)).to(dev).permute(0, 3, 1, 2).float() / 255
            return model((x - mean.to(dev)) / std.to(dev))

    def forward():
        for _ in engine.iter_maps(checked):
            pass

    def forward_unoptimized():
        for _ in slow_engine.iter_maps(checked):
            pass

    methods = {"plain": plain, "forward": forward, "forward_unoptimized": forward_unoptimized,
               "transform": lambda: hc.transform(X), "predict": lambda: seg.predict(checked)}
    out: dict = {"backbone": name, "size": size, "n_images": n_images, "dtype": dtype}
    if compile_:
        out["compile_seconds"] = _add_compiled(methods, engine, images, dev)
    for fn in methods.values():  # warm-up
        fn()
    times, peaks = measure_all(methods, dev, repeats, separate_memory=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    for k, t in med.items():
        peak = [p for p in peaks[k] if p is not None]
        out[k] = {"seconds": t, "vs_plain": med["plain"] / t, "vs_forward": med["forward"] / t,
                  "min_seconds": best[k], "min_vs_plain": best["plain"] / best[k],
                  "min_vs_forward": best["forward"] / best[k], "all_seconds": times[k],
                  "peak_bytes": max(peak) if peak else None}
    return out


def print_table(rows: list[dict]) -> None:
    head = ("backbone", "size", "n", "method", "s", "x plain", "x fwd", "min s", "x plain",
            "x fwd", "MiB")
    widths = (20, 5, 2, 20, 7, 7, 6, 7, 7, 6, 6)
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, widths)))
    for r in rows:
        for k, v in r.items():
            if isinstance(v, dict):
                mib = "-" if v["peak_bytes"] is None else f"{v['peak_bytes'] / 2**20:.0f}"
                cells = (r["backbone"], r["size"], r["n_images"], k, f"{v['seconds']:.3f}",
                         f"{v['vs_plain']:.2f}", f"{v['vs_forward']:.2f}",
                         f"{v['min_seconds']:.3f}", f"{v['min_vs_plain']:.2f}",
                         f"{v['min_vs_forward']:.2f}", mib)
                print(" ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
        if "compile_seconds" in r:
            print(f"{'':>20} torch.compile: first call {r['compile_seconds']:.1f} s")


def check_targets(rows: list[dict], stat: str = "") -> dict:
    """Targets on median (``stat=""``) or best-of-repeats (``stat="min_"``) ratios."""
    met = {}
    for r in rows:
        key = f"{r['backbone']}@{r['size']}"
        met[f"{stat}transform_vs_forward {key}"] = (
            r["transform"][f"{stat}vs_forward"] >= TARGETS["transform_vs_forward"])
        if r["backbone"] == "efficientnet_lite0" and r["size"] in TARGETS["predict_sizes"]:
            met[f"{stat}predict_vs_plain {key}"] = r["predict"][f"{stat}vs_plain"] >= TARGETS[
                "predict_vs_plain"]
    return met


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--compile", action="store_true", help="add torch.compile of the backbone")
    ap.add_argument("--cases", default=None,
                    help="comma-separated name:size:n, e.g. efficientnet_lite0:512:2")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="forward-pass precision (HypercolumnTransformer(dtype=...); the plain "
                    "forward under autocast)")
    ap.add_argument("--tag", default="", help="suffix of the JSON file name")
    ap.add_argument("--out-dir", default=str(RESULTS), help="folder of the JSON file")
    ap.add_argument("--fit-images", type=int, default=6,
                    help="horse images the segmenters are fitted on (speed does not depend on it)")
    ap.add_argument("--glibc-defaults", action="store_true",
                    help="keep glibc's malloc trim/mmap thresholds (default: raise them, see "
                    "skhyper.parallel.steady_allocator)")
    args = ap.parse_args(argv)
    steady = False if args.glibc_defaults else steady_allocator()
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                       else ("cpu" if args.device == "auto" else args.device))
    if dev.type == "cpu":
        torch.set_num_threads(args.threads)
    cases = [("efficientnet_lite0", 256, 4)] if args.quick else DEFAULT_CASES
    if args.cases:
        cases = [(c.split(":")[0], int(c.split(":")[1]), int(c.split(":")[2]))
                 for c in args.cases.split(",")]
    repeats = 1 if args.quick else args.repeats
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    rows = [bench_case(n, s, k, repeats, dev, args.compile, args.dtype, args.fit_images)
            for n, s, k in cases]
    mem = "CUDA max_memory_allocated growth" if dev.type == "cuda" else "VmRSS growth"
    print(f"\ninference speed ({dev}, {args.dtype}, {torch.get_num_threads()} threads, load "
          f"{load}); transform at {PIXELS_PER_IMAGE} pixels/image; memory: {mem}")
    print_table(rows)
    # on shared cores the best of the interleaved repeats is the least disturbed estimate
    met = {**check_targets(rows), **check_targets(rows, "min_")}
    for k, v in met.items():
        print(f"  {'met' if v else 'NOT met'}: {k}")
    result = {"benchmark": "speed", "machine": machine_info(dev), "threads":
              torch.get_num_threads(), "load_average_1min_at_start": load,
              "repeats": repeats, "steady_allocator": steady, "targets": TARGETS,
              "targets_met": met, "rows": rows,
              "total_seconds": time.perf_counter() - t0}
    out_dir = Path(args.out_dir)
    out_dir.mkdir(exist_ok=True)
    suffix = f"_{args.tag}" if args.tag else ("_quick" if args.quick else "")
    if args.dtype != "float32":
        suffix = f"_{args.dtype}{suffix}"
    path = out_dir / f"speed_{dev.type}{suffix}.json"
    write_results(result, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
