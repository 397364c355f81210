"""``skhyper predict MODEL INPUTS... -o OUTDIR``: label maps (and probabilities) of many images.

The model is loaded once; a thread pool reads the next images while the model predicts and a
writer thread saves the finished ones; images above ``--large-pixels`` go window by window
through :func:`skhyper.parallel.predict_large`; outputs that exist are skipped (a killed run
resumes); an image that cannot be read or predicted is reported and skipped.

Images are read by :func:`skhyper.read_image`: a multi-page file (a z-stack, a time series)
is a stack, and every plane is predicted into a label stack with the same plane axes (a
multi-page TIFF with ``--format auto``, or npy / OME-Zarr); a stack that cannot be written
(``--format png``) or whose planes are above ``--large-pixels`` is refused, naming the file.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import CollectionError
from ..io import ImageData, read_image
from ._args import (
    CommandError,
    axes_letters,
    check_out_dir,
    load_model,
    positive_int,
    to_option,
)
from ._io import (
    FORMATS,
    INPUT_SUFFIXES,
    by_unique_stem,
    find_inputs,
    label_dtype,
    output_names,
    stem_of,
    write_output,
)

__all__ = ["add_predict_parser", "run_predict"]

_N_SYSTEMATIC = 4  # this many first images failing in the model with one error: stop


def add_predict_parser(sub: Any, parents: list) -> None:
    """The ``predict`` subcommand and its options."""
    p = sub.add_parser(
        "predict", parents=parents, help="label maps of many images with a saved model",
        description="Predict label maps (and probabilities) of image files with a model file "
        "written by 'skhyper train' or skhyper.save. Outputs that exist are skipped, so a "
        "killed run resumes; unreadable images are reported and skipped (exit status 1).")
    p.add_argument("model", metavar="MODEL", help="model file (skhyper.save)")
    p.add_argument("inputs", metavar="INPUTS", nargs="+",
                   help="image files, folders or globs (PNG, JPEG, TIFF, .npy, .zarr)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="folder for the outputs (created when missing)")
    p.add_argument("--format", choices=("auto", *FORMATS), default="auto",
                   help="output format; auto: PNG labels, TIFF probabilities, TIFF label "
                   "stacks of multi-page inputs, OME-Zarr for large images and Zarr inputs")
    p.add_argument("--proba", action="store_true",
                   help="also write class probabilities NAME_proba (float32, one channel per "
                   "class)")
    p.add_argument("--no-labels", action="store_true", help="with --proba: no label maps")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist")
    p.add_argument("--axes", type=axes_letters, default=None, metavar="LETTERS",
                   help="axes of the input files, one letter per stored axis (e.g. ZYX, YXC, "
                   "CYX), for files without axis names (default: the files' own; pages of a "
                   "TIFF without them are planes)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the "
                   "model's)")
    p.add_argument("--large-pixels", type=positive_int, default=4096 * 4096, metavar="N",
                   help="images with more pixels are predicted chunk by chunk "
                   "(default: 4096*4096)")
    p.add_argument("--chunk-size", type=positive_int, default=1024, metavar="N",
                   help="chunk side for large images (default: 1024)")
    p.add_argument("--read-ahead", type=positive_int, default=4, metavar="N",
                   help="images read ahead of the model (default: 4)")
    p.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                   help="spread the images over this Dask cluster (e.g. tcp://host:8786)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_predict)


def _formats(args: argparse.Namespace) -> tuple[str | None, str | None]:
    if args.no_labels and not args.proba:
        raise CommandError("--no-labels writes nothing without --proba; drop it or add --proba.")
    if args.format == "png" and args.proba:
        raise CommandError("--format png cannot hold probabilities (floats): use --format tif, "
                           "npy or zarr, or auto (PNG labels, TIFF probabilities).")
    if args.format == "zarr" and not _has_zarr():
        raise CommandError("--format zarr needs the zarr package: pip install zarr.")
    labels = None if args.no_labels else ("png" if args.format == "auto" else args.format)
    proba = ("tif" if args.format == "auto" else args.format) if args.proba else None
    return labels, proba


def _has_zarr() -> bool:
    try:
        import zarr  # noqa: F401
    except ImportError:
        return False
    return True


def _connect(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise CommandError("--dask-scheduler needs 'pip install distributed'.") from None
    try:
        return Client(address, timeout=10)
    except (OSError, TimeoutError, ValueError) as err:
        raise CommandError(f"--dask-scheduler {address!r}: cannot reach the scheduler ({err}); "
                           "check the address (e.g. tcp://host:8786).") from None


class _Run:
    """The state of one ``predict`` run: what to write, where, and what happened."""

    def __init__(self, args: argparse.Namespace, outdir: Path, formats: tuple) -> None:
        self.args, self.outdir = args, outdir
        self.fmt_labels, self.fmt_proba = formats
        self.big_fmt = "zarr" if args.format == "auto" and _has_zarr() else None
        self.written = self.predicted = 0
        self.failed: list[tuple[Path, str]] = []
        self.model_errors: list[str] = []

    def targets(self, path: Path, big: bool = False, stack: bool = False
                ) -> list[tuple[Path, str, str]]:
        """``(output path, format, kind)`` of one input (a large image, a stack)."""
        out = []
        stem = stem_of(path)
        for fmt, kind in ((self.fmt_labels, "labels"), (self.fmt_proba, "proba")):
            if fmt is not None:
                fmt = self.big_fmt if big and self.big_fmt else fmt
                if self.args.format == "auto" and path.suffix.lower() == ".zarr":
                    fmt = self.big_fmt or fmt  # OME-Zarr in, OME-Zarr out
                elif stack and fmt == "png" and self.args.format == "auto":
                    fmt = "tif"  # a label stack: a multi-page TIFF
                name, = output_names(stem, fmt, labels=kind == "labels", proba=kind == "proba")
                out.append((self.outdir / name, fmt, kind))
        return out

    def all_targets(self, path: Path) -> list[list[tuple[Path, str, str]]]:
        """The outputs of one input for each way it may turn out (plain, large, stack)."""
        return [self.targets(path, big, stack) for big, stack in ((0, 0), (1, 0), (0, 1))]

    def done(self, path: Path) -> bool:
        if self.args.overwrite:
            return False
        return any(all(p.exists() for p, _, _ in outs) for outs in self.all_targets(path))

    def check_stack(self, data: ImageData, big: bool) -> None:
        """A ValueError naming the file when its stack cannot be predicted as asked."""
        if not data.is_stack:
            return
        what = (f"{data.name} is a stack of {data.n_planes} planes (axes {data.axes!r}, shape "
                f"{tuple(data.data.shape)})")
        if big:
            raise ValueError(
                f"{what} of more than --large-pixels {self.args.large_pixels} pixels each: "
                "stacks are predicted plane by plane in memory. Save one plane per file "
                "(skhyper.split_planes) or raise --large-pixels.")
        if self.fmt_labels == "png" and self.args.format == "png":
            raise ValueError(f"{what}: --format png holds one plane; use --format tif, npy "
                             "or zarr (or auto) to write its label stack.")

    def fail(self, path: Path, err: BaseException, bar: Any, *, in_model: bool = False) -> None:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        first = to_option(first, {"images": "the image", "image": "the image"})
        msg = f"{type(err).__name__}: {first}" if not isinstance(err, ValueError) else first
        self.failed.append((path, msg))
        if in_model:
            self.model_errors.append(msg)
        bar.write(f"skhyper: skipped {str(path)!r}: {msg}", file=sys.stderr)


def _predict(seg: Any, image: Any, big: bool, kind: str, args: argparse.Namespace,
             client: Any) -> Any:
    method = "predict" if kind == "labels" else "predict_proba"
    if big:
        from ..parallel import predict_large

        try:
            return predict_large(seg, image, method=method, chunks=args.chunk_size,
                                 client=client)
        except (ValueError, ImportError):  # cannot be chunked, or no dask: whole, tiled
            image = np.asarray(image)
    return getattr(seg, method)(image)


def _check_inputs(inputs: list[Path], run: _Run) -> None:
    by_unique_stem(inputs, "INPUTS", "their outputs would collide; predict them into "
                   "different folders")
    for path in inputs:
        if any(p == path for outs in run.all_targets(path) for p, _, _ in outs):
            raise CommandError(f"-o/--output would overwrite the input {str(path)!r}; choose "
                               "another folder.")


def _read(path: Path, large_pixels: int, axes: str | None = None) -> tuple[ImageData, bool]:
    """The image (lazy when its planes are above ``large_pixels``) and whether it is large."""
    data = read_image(path, axes, lazy_above=large_pixels)
    h, w = data.plane_shape
    return data, data.lazy or h * w > large_pixels


def _start(args: argparse.Namespace) -> tuple[_Run, list[Path], list[Path], Any]:
    """Check the options and the inputs: the run, all inputs, those to do, the client."""
    outdir = check_out_dir(args.output, "-o/--output")
    if not Path(args.model).is_file():
        load_model(args.model)  # the error: not a file
    run = _Run(args, outdir, _formats(args))
    inputs = find_inputs(args.inputs, "INPUTS", INPUT_SUFFIXES)
    _check_inputs(inputs, run)
    client = _connect(args.dask_scheduler) if args.dask_scheduler else None
    return run, inputs, [p for p in inputs if not run.done(p)], client


def _load(run: _Run) -> tuple[Any, Any]:
    """The model and the dtype of its label maps (None without label maps)."""
    seg = load_model(run.args.model, device=run.args.device)
    dtype = None
    if run.fmt_labels is not None:
        label_dtype(seg.classes_, run.fmt_labels)
        dtype = label_dtype(seg.classes_, "tif")
    return seg, dtype


def run_predict(args: argparse.Namespace) -> int:
    """Check everything, load the model once, stream the images through it."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    run, inputs, todo, client = _start(args)
    n_done = len(inputs) - len(todo)
    readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="skhyper-read")
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skhyper-write")
    try:
        ahead: deque[tuple[Path, Future]] = deque()
        queue = iter(todo)

        def refill() -> None:
            while len(ahead) < args.read_ahead:
                path = next(queue, None)
                if path is None:
                    return
                ahead.append((path, readers.submit(_read, path, args.large_pixels,
                                                   args.axes)))

        refill()  # reading starts while the model loads
        seg, dtype = _load(run)
        load_s = time.perf_counter() - start
        run.outdir.mkdir(parents=True, exist_ok=True)
        if n_done:
            print(f"{n_done} of {len(inputs)} images already done (skipped; --overwrite redoes "
                  "them)")
        t_first = time.perf_counter()
        bar = tqdm(total=len(todo), unit="image", disable=True if args.quiet else None,
                   dynamic_ncols=True)
        if client is not None:
            _run_cluster(seg, ahead, refill, run, client, bar, dtype)
        else:
            _run_here(seg, ahead, refill, run, writer, bar, dtype)
        bar.close()
    finally:
        readers.shutdown(wait=False, cancel_futures=True)
        writer.shutdown(wait=True)
        if client is not None:
            client.close()
    return _report(run, len(inputs), n_done, (start, load_s, t_first))


def _run_here(seg: Any, ahead: deque, refill: Any, run: _Run, writer: ThreadPoolExecutor,
              bar: Any, dtype: Any) -> None:
    """Images predicted in this process, one after the other, written by ``writer``."""
    pending: deque[tuple[Path, Future]] = deque()
    while ahead:
        path, fut = ahead.popleft()
        refill()
        _one(seg, path, fut, run, writer, pending, bar, dtype)
        _stop_if_systematic(run)
    for path, fut in pending:
        _settle(path, fut, run, bar)


def _report(run: _Run, n_inputs: int, n_done: int, times: tuple[float, float, float]) -> int:
    """Print what happened; the exit status (1 when an image failed)."""
    start, load_s, t_first = times
    work_s = time.perf_counter() - t_first
    n = run.written
    rate = f"{n / work_s:.2f} images/s" if n and work_s > 0 else "-"
    print(f"{n} written, {n_done} already done, {len(run.failed)} failed, of {n_inputs} "
          f"images in {time.perf_counter() - start:.2f} s: checks and model load "
          f"{load_s:.2f} s, then {work_s:.2f} s ({rate}) -> {run.outdir}")
    if run.failed:
        for path, msg in run.failed:
            print(f"skhyper: failed: {str(path)!r}: {msg}", file=sys.stderr)
        print("rerun the same command to retry the failed images (finished ones are skipped)")
        return 1
    return 0


def _stop_if_systematic(run: _Run) -> None:
    errs = run.model_errors
    if run.predicted == 0 and len(errs) >= _N_SYSTEMATIC and len(set(errs)) == 1:
        raise CommandError(
            f"the first {len(errs)} images all failed in the model with the same error "
            f"({errs[0]}): the model or the options, not the images, are likely at fault.")


def _predict_data(seg: Any, data: ImageData, big: bool, kind: str, args: argparse.Namespace
                  ) -> Any:
    """Labels or probabilities of every plane of ``data``, as one array (a stack for a
    stack); a large image window by window."""
    if big:
        return _predict(seg, data.data, True, kind, args, None)
    method = "predict" if kind == "labels" else "predict_proba"
    return data.stack(getattr(seg, method)(data.planes()))


def _one(seg: Any, path: Path, fut: Future, run: _Run, writer: ThreadPoolExecutor,
         pending: deque, bar: Any, dtype: Any) -> None:
    """Read (already under way), predict and hand the results to the writer."""
    try:
        data, big = fut.result()
        run.check_stack(data, big)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported and skipped
        run.fail(path, err, bar)
        bar.update()
        return
    results = []
    try:
        for out, fmt, kind in run.targets(path, big, data.is_stack):
            res = _predict_data(seg, data, big, kind, run.args)
            results.append((out, fmt, kind, res, data.result_axes("C" if kind == "proba"
                                                                  else "")))
    except Exception as err:  # noqa: BLE001 - one image's failure does not end the run
        run.fail(path, err, bar, in_model=True)
        bar.update()
        return
    run.predicted += 1
    if big:  # lazy results: computed while writing, here (not beside the next image)
        try:
            _write_all(results, dtype)
            run.written += 1
        except Exception as err:  # noqa: BLE001
            run.fail(path, err, bar)
        bar.update()
        return
    pending.append((path, writer.submit(_write_all, results, dtype)))
    while pending and (len(pending) > 4 or pending[0][1].done()):
        _settle(*pending.popleft(), run, bar)


def _write_all(results: list, dtype: Any) -> None:
    """Write ``(out, fmt, kind, result, axes)`` tuples, label maps cast to ``dtype``."""
    for out, fmt, kind, res, axes in results:
        write_output(out, res.astype(dtype) if kind == "labels" else res, fmt, kind=kind,
                     axes=axes)


def _settle(path: Path, fut: Future, run: _Run, bar: Any) -> None:
    try:
        fut.result()
        run.written += 1
    except Exception as err:  # noqa: BLE001 - a file that cannot be written is reported
        run.fail(path, err, bar)
    bar.update()


def _next_group(seg: Any, ahead: deque, refill: Any, run: _Run, bar: Any, dtype: Any,
                size: int) -> list[tuple[Path, ImageData]]:
    """Up to ``size`` images read for the cluster; unreadable ones reported, large ones
    predicted here window by window (on the cluster through dask)."""
    batch: list[tuple[Path, ImageData]] = []
    while ahead and len(batch) < size:
        path, fut = ahead.popleft()
        refill()
        try:
            data, big = fut.result()
            run.check_stack(data, big)
        except Exception as err:  # noqa: BLE001
            run.fail(path, err, bar)
            bar.update()
            continue
        if big:
            _one(seg, path, _ready((data, big)), run, None, deque(), bar, dtype)
            continue
        batch.append((path, data))
    return batch


def _run_cluster(seg: Any, ahead: deque, refill: Any, run: _Run, client: Any, bar: Any,
                 dtype: Any) -> None:
    """Groups of images read here, their planes predicted on the cluster, written here."""
    group = max(8, 4 * sum(client.nthreads().values()))
    run.args.read_ahead = max(run.args.read_ahead, 2 * group)  # read the next group meanwhile
    refill()
    while ahead:
        batch = _next_group(seg, ahead, refill, run, bar, dtype, group)
        if not batch:
            continue
        planes, spans = [], []
        for _, data in batch:
            these = data.planes()
            spans.append((len(planes), len(planes) + len(these)))
            planes += these
        outputs: dict[str, list] = {}
        failures: dict[int, str] = {}
        for _, fmt, kind in run.targets(batch[0][0]):
            method = "predict" if kind == "labels" else "predict_proba"
            outputs[kind], failed = _collect(seg, planes, method, client)
            failures.update(failed)
        for (path, data), (s, e) in zip(batch, spans):
            try:
                bad = [i for i in range(s, e) if any(outputs[k][i] is None for k in outputs)]
                if bad:
                    raise ValueError(failures.get(bad[0], "the prediction failed on the "
                                                          "cluster"))
                results = [(out, fmt, kind, data.stack(outputs[kind][s:e]),
                            data.result_axes("C" if kind == "proba" else ""))
                           for out, fmt, kind in run.targets(path, False, data.is_stack)]
                _write_all(results, dtype)
                run.written += 1
            except Exception as err:  # noqa: BLE001
                run.fail(path, err, bar)
            bar.update()


def _collect(seg: Any, images: list, method: str, client: Any) -> tuple[list, dict[int, str]]:
    """``predict_collection`` on the cluster, one image per task; failed images are None (with
    their error), and images left untried after a first failing task are tried again."""
    from ..parallel import predict_collection

    results: list = [None] * len(images)
    failures: dict[int, str] = {}
    todo = list(range(len(images)))
    while todo:
        try:
            got, failed = predict_collection(seg, [images[i] for i in todo], method=method,
                                             client=client, batch_size=1), {}
        except CollectionError as err:  # the others are kept
            got, failed = err.results, err.failures
        for j, i in enumerate(todo):
            results[i] = got[j]
            if j in failed:  # "Failed (file): ValueError: The 'images[0]' parameter ..."
                msg = re.sub(r"^Failed( \(.*?\))?: (ValueError: )?", "", failed[j])
                failures[i] = re.sub(r"The 'images\[\d+\]' parameter", "the image", msg)
        untried = [i for j, i in enumerate(todo) if got[j] is None and j not in failed]
        todo = untried if len(untried) < len(todo) else []
    return results, failures


def _ready(value: Any) -> Future:
    fut: Future = Future()
    fut.set_result(value)
    return fut
