"""The ``skhyper`` command: subcommands, one-line errors, and the small commands (``layers``,
``export``, ``demo``).

Errors are one line ``skhyper: error: ...`` on stderr with exit status 2 (``--debug`` shows the
traceback); every option, input and output path is checked before any work starts.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from .._version import __version__
from ._args import (
    CommandError,
    check_out_file,
    load_model,
    positive_int,
    to_option,
)
from ._predict import add_predict_parser
from ._train import add_train_parser

__all__ = ["build_parser", "main"]

COMMANDS = ("train", "predict", "layers", "export", "demo")
_GLOBAL_FLAGS = ("--debug",)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``skhyper: error: ... (see 'skhyper train --help')``."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"skhyper: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``skhyper`` and its subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error")
    parser = _Parser(
        prog="skhyper",
        description="Hypercolumn pixel classifiers from the command line: train on folders of "
        "images and label images, predict thousands of images, list a backbone's layers, "
        "export a model. 'skhyper COMMAND --help' describes each command.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"skhyper {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    jobs = argparse.ArgumentParser(add_help=False)  # options of the long-running commands
    jobs.add_argument("--allocator", choices=("steady", "system"), default="steady",
                      help="steady: keep freed buffers for reuse (skhyper.parallel."
                      "steady_allocator; glibc): 1.7-1.9x faster on 512-1024 px images, for "
                      "~1.5x the peak memory; system: the C library's defaults, for tight "
                      "memory (default: %(default)s)")
    add_train_parser(sub, [common, jobs])
    add_predict_parser(sub, [common, jobs])
    _add_layers_parser(sub, [common])
    _add_export_parser(sub, [common])
    _add_demo_parser(sub, [common])
    return parser


# ----------------------------------------------------------------------------- layers


def _add_layers_parser(sub: Any, parents: list) -> None:
    p = sub.add_parser("layers", parents=parents, help="list a backbone's layers",
                       description="The layers of a backbone (skhyper.list_layers): names for "
                       "--layers, channels, stride; '*' marks the stages used by default.")
    p.add_argument("backbone", metavar="BACKBONE", nargs="?", default="efficientnet_lite0",
                   help="backbone name (default: %(default)s)")
    p.set_defaults(run=_run_layers)


def _run_layers(args: argparse.Namespace) -> int:
    from ..features import list_layers

    try:
        table = list_layers(args.backbone)
    except (ValueError, TypeError, KeyError, RuntimeError) as err:
        raise CommandError(to_option(str(err).strip().splitlines()[0],
                                     {"backbone": "BACKBONE", "name": "BACKBONE"})) from err
    width = max(len(d["name"]) for d in table)
    print(f"  {'layer':<{width}}  {'channels':>8}  {'stride':>6}  kind")
    for d in table:
        stride = "-" if d["reduction"] is None else f"{d['reduction']:g}"
        mark = "*" if d["stage"] else " "
        print(f"{mark} {d['name']:<{width}}  {d['num_chs']:>8}  {stride:>6}  {d['kind']}")
    n_stage = sum(d["stage"] for d in table)
    print(f"{len(table)} layers of {args.backbone}; * = the {n_stage} stages used by default")
    return 0


# ----------------------------------------------------------------------------- export


def _add_export_parser(sub: Any, parents: list) -> None:
    p = sub.add_parser("export", parents=parents, help="export a model to ONNX / bioimage.io",
                       description="Export a model file as an ONNX network (dynamic height and "
                       "width; probabilities) and/or a bioimage.io package (ilastik, Fiji, "
                       "QuPath, napari). Needs pip install \"skhyper[export]\".")
    p.add_argument("model", metavar="MODEL", help="model file (skhyper.save)")
    p.add_argument("--onnx", metavar="PATH", help="ONNX file to write (.onnx)")
    p.add_argument("--bioimageio", metavar="PATH", help="bioimage.io package to write (.zip)")
    p.add_argument("--test-image", metavar="IMAGE",
                   help="a representative image (at least 64 x 64) for --bioimageio")
    p.add_argument("--name", default="skhyper hypercolumn segmenter",
                   help="model name for --bioimageio")
    p.add_argument("--bilinear", action="store_true",
                   help="export with bilinear upsampling of the coarse score maps (the exact "
                   "hypercolumn) instead of the model's edge-aware upsampling")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from ..export import check_exportable, to_bioimageio, to_onnx
    from ..io import read_image
    from ._io import IMAGE_SUFFIXES, find_inputs

    if not args.onnx and not args.bioimageio:
        raise CommandError("nothing to export: give --onnx PATH and/or --bioimageio PATH.")
    onnx = check_out_file(args.onnx, "--onnx", overwrite=args.overwrite,
                          suffixes=(".onnx",)) if args.onnx else None
    bio = check_out_file(args.bioimageio, "--bioimageio", overwrite=args.overwrite,
                         suffixes=(".zip",)) if args.bioimageio else None
    test_image = None
    if bio is not None:
        if not args.test_image:
            raise CommandError("--bioimageio needs --test-image IMAGE (a representative image "
                               "of at least 64 x 64 pixels, the package's test input).")
        path, = find_inputs([args.test_image], "--test-image", IMAGE_SUFFIXES)
        data = read_image(path)
        if data.is_stack:
            raise CommandError(f"--test-image {str(path)!r} is a stack of {data.n_planes} "
                               f"planes (axes {data.axes!r}); give one 2-D image.")
        test_image = data.data
    seg = load_model(args.model)
    if args.bilinear:
        seg.set_params(upsampling="bilinear")
    try:
        check_exportable(seg)
    except (ValueError, TypeError) as err:
        msg = str(err).strip().splitlines()[0]
        if "upsampling" in msg:
            msg += " From the command line: skhyper export --bilinear ..."
        raise CommandError(f"MODEL {args.model!r} cannot be exported: {msg}") from err
    if onnx is not None:
        to_onnx(seg, onnx)
        print(f"ONNX: {onnx}")
    if bio is not None:
        try:
            to_bioimageio(seg, bio, test_image=test_image, name=args.name)
        except ValueError as err:
            raise CommandError(to_option(str(err), {"test_image": "--test-image"})) from err
        print(f"bioimage.io: {bio}")
    return 0


# ----------------------------------------------------------------------------- demo


def _add_demo_parser(sub: Any, parents: list) -> None:
    p = sub.add_parser(
        "demo", parents=parents, help="the offline horse demo (also: python -m skhyper)",
        description="Hypercolumn demo: train the default segmenter (StandardScaler + "
        "LogisticRegression on EfficientNet-Lite0 hypercolumns, small images fed up to 2x "
        "larger, edge-aware upsampling) on pixels of the bundled Weizmann horse images "
        "(offline), segment every pixel of the train and test images, print the foreground IoU "
        "and write a PNG of the test predictions.")
    p.add_argument("--output", default="skhyper_demo.png", metavar="PATH",
                   help="where to write the figure (default: %(default)s)")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    p.add_argument("--n-per-image", type=positive_int, default=1000, metavar="N",
                   help="training pixels drawn per train image (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the pixel draw (default: 0)")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="a folder with images/ and masks/ (e.g. the full Weizmann horse set) "
                   "instead of the bundled sample")
    p.add_argument("--image-size", type=positive_int, default=None, metavar="N",
                   help="resize images to this longer side for the forward pass "
                   "(default: as they are)")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    try:
        run_demo(output=args.output, device=args.device, n_per_image=args.n_per_image,
                 seed=args.seed, data=args.data, image_size=args.image_size, verbose=True)
    except (ValueError, TypeError) as err:  # bad input: a usage error, not a traceback
        names = {p: "--" + p.replace("_", "-") for p in
                 ("output", "device", "data", "seed", "image_size", "n_per_image")}
        raise CommandError(to_option(str(err), names)) from err
    return 0


# ----------------------------------------------------------------------------- main


def _with_command(argv: list[str]) -> list[str]:
    """``python -m skhyper [demo options]`` stays the demo: insert ``demo`` when no command."""
    i = 0
    while i < len(argv) and argv[i] in _GLOBAL_FLAGS:
        i += 1
    if i == len(argv) or (argv[i].startswith("-") and argv[i] not in
                          ("-h", "--help", "--version")):
        return argv[:i] + ["demo"] + argv[i:]
    return argv


class _Warnings:
    """Warnings as one line each, in option names; one per kind (a folder of 10 000 dim
    images warns once, not 10 000 times), with a count of the others at the end."""

    def __init__(self) -> None:
        self.seen: dict[type, int] = {}

    def show(self, message: Any, category: type, filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        self.seen[category] = self.seen.get(category, 0) + 1
        if self.seen[category] > 1:
            return
        text = str(message).strip().splitlines()[0]
        if "intensity_range=" in text:
            text = text[: text.index(" Set intensity_range")] if " Set intensity_range" in \
                text else text
            text += (" Train with --intensity-range LOW,HIGH (e.g. 100,4000) or "
                     "percentile,1,99.8.")
        sys.stderr.write(f"skhyper: warning: {text}\n")

    def close(self) -> None:
        more = sum(n - 1 for n in self.seen.values())
        if more:
            sys.stderr.write(f"skhyper: warning: {more} more warning(s) like the above were not "
                             "shown\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``skhyper`` command line; return the exit status.

    Parameters
    ----------
    argv : sequence of str, default=None
        The arguments, without the program name; None reads ``sys.argv[1:]``. Without a
        command the demo runs, so ``python -m skhyper`` and ``skhyper demo`` are the same.

    Returns
    -------
    status : int
        0 on success, 1 when some images of ``predict`` failed (the others are written),
        2 for bad arguments or input (one line ``skhyper: error: ...`` on stderr).

    Examples
    --------
    >>> from skhyper.cli import main
    >>> try:
    ...     main(["predict", "--help"])
    ... except SystemExit as exc:
    ...     print("exit status", exc.code)
    usage: skhyper predict [-h] [--debug] [--allocator {steady,system}] -o OUTDIR
    ...
    exit status 0
    """
    argv = _with_command(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    shown = _Warnings()
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = shown.show  # restored by catch_warnings
        try:
            if getattr(args, "allocator", "system") == "steady":
                from ..parallel import steady_allocator

                steady_allocator()
            return args.run(args)
        except KeyboardInterrupt:
            sys.stderr.write("skhyper: interrupted; rerun the same command to resume (finished "
                             "outputs are kept)\n")
            return 130
        except Exception as err:  # noqa: BLE001 - one clear line, the traceback on --debug
            if debug:
                traceback.print_exc()
            first = (str(err).strip().splitlines() or [""])[0]
            known = isinstance(err, (CommandError, ValueError, TypeError, OSError))
            text = first if known and first else f"{type(err).__name__}: {first}"
            hint = "" if debug or isinstance(err, CommandError) else \
                " (--debug shows the traceback)"
            sys.stderr.write(f"skhyper: error: {text}{hint}\n")
            return 2
        finally:
            shown.close()
