"""Benchmark ``predict_large`` of a 3 x 3 location-grid model, before / after the head module.

Before (the base commit, default 470be03), :func:`skhyper.parallel.predict_large` ran a
``GridLocationClassifier`` segmenter through its classifier on bilinear hypercolumns, window
by window (and warned that labels can differ from ``seg.predict`` with edge-aware
upsampling); after, windows go through the same :class:`skhyper.heads.HeadModule` as whole
images (folded: 1x1 heads at native resolution, edge-aware coarse maps, grid blend).

Both sides fit the same segmenter (``resnet18`` without pretrained weights, layers ``relu``,
``layer1``, ``layer2``, ``layer3``, location columns, ``GridLocationClassifier(
LogisticRegression(C=0.1), 3)``, ``upsampling="edge_aware"`` and ``"bilinear"``) on the same
synthetic images, then time, on one synthetic image (default 640 x 768), ``predict_large``
(``chunks=256``, dask's synchronous scheduler: one window at a time) and ``seg.predict`` of the
whole image; the agreement of the two label maps is reported. Each side runs in its own
subprocess with the worktree's ``skhyper`` on ``PYTHONPATH``.

Run::

    git worktree add /work/wt-base-bench 470be03      # once
    python benchmarks/bench_large_grid.py --base /work/wt-base-bench

It prints a table and writes ``benchmarks/results/large_grid_cpu.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _data(n: int = 4, shape: tuple[int, int] = (96, 112), seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    images = (rng.random((n, *shape, 3)) * 80).astype(np.uint8)
    masks = np.zeros((n, *shape), dtype=np.uint8)
    masks[:, 20:70, 25:90] = 1
    images[masks == 1] += 150
    return images, masks


def _worker(args: argparse.Namespace) -> dict:
    """One side: fit, then time predict_large and predict (run in a subprocess)."""
    import warnings

    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression

    import skhyper
    from skhyper import GridLocationClassifier, HypercolumnSegmenter, HypercolumnTransformer
    from skhyper.parallel import predict_large

    torch.set_num_threads(args.threads)
    images, masks = _data()
    H, W = args.size
    big = np.ascontiguousarray(np.tile(images[0], (-(-H // 96), -(-W // 112), 1))[:H, :W])
    out = {"skhyper_file": skhyper.__file__, "image": [H, W], "chunks": args.chunks}
    for upsampling in ("edge_aware", "bilinear"):
        hc = HypercolumnTransformer("resnet18", layers=["relu", "layer1", "layer2", "layer3"],
                                    weights=None, device="cpu", append_location=True)
        seg = HypercolumnSegmenter(hc, GridLocationClassifier(LogisticRegression(C=0.1), 3),
                                   upsampling=upsampling, n_pixels_per_image=300,
                                   random_state=0).fit(images, masks)
        seg.predict(big[:128, :128])  # warm-up
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            large = predict_large(seg, big, chunks=args.chunks).compute(scheduler="sync")
            t_large = time.perf_counter() - t0
        t0 = time.perf_counter()
        whole = seg.predict(big)
        t_whole = time.perf_counter() - t0
        out[upsampling] = {
            "predict_large_s": round(t_large, 3),
            "predict_s": round(t_whole, 3),
            "agreement": float((large == whole).mean()),
            "warnings": sorted({str(w.message)[:80] for w in caught
                                if issubclass(w.category, UserWarning)}),
        }
    return out


def _run(root: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, __file__, "--worker", "--threads", str(args.threads),
           "--size", *map(str, args.size), "--chunks", str(args.chunks)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=root, check=False)
    if res.returncode:
        raise RuntimeError(f"worker in {root} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _commit(root: Path) -> str | None:
    res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                         text=True, check=False)
    return res.stdout.strip() or None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", type=Path, default=Path("/work/wt-base-bench"),
                   help="a worktree of the base commit")
    p.add_argument("--size", type=int, nargs=2, default=(640, 768))
    p.add_argument("--chunks", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(_worker(args)))
        return
    head = HERE.parent
    sides = {"before": args.base, "after": head}
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "commits": {k: _commit(v) for k, v in sides.items()},
              "settings": {"size": list(args.size), "chunks": args.chunks,
                           "threads": args.threads}}
    for name, root in sides.items():
        record[name] = _run(root, args)
    sys.path[:0] = [str(head), str(HERE)]  # this worktree's skhyper for the machine record
    import torch
    from _common import loadavg, machine_info, write_results

    record["machine"] = machine_info(torch.device("cpu"))
    record["loadavg"] = loadavg()
    print(f"predict_large, 3x3 grid, {args.size[0]} x {args.size[1]}, chunks {args.chunks}")
    print(f"{'side':8} {'upsampling':11} {'large s':>8} {'predict s':>9} {'agree':>8}  warning")
    for name in sides:
        for up in ("edge_aware", "bilinear"):
            r = record[name][up]
            print(f"{name:8} {up:11} {r['predict_large_s']:8.2f} {r['predict_s']:9.2f} "
                  f"{r['agreement']:8.5f}  {'yes' if r['warnings'] else 'no'}")
    write_results(record, RESULTS / "large_grid_cpu.json")


if __name__ == "__main__":
    main()
