"""Command line: ``python -m skhyper`` or ``skhyper demo`` runs :func:`skhyper.demo.run_demo`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .demo import run_demo

__all__ = ["main"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skhyper",
        description=(
            "Hypercolumn demo: train StandardScaler + PCA(32) + a logistic SGD classifier on "
            "EfficientNet-Lite0 hypercolumns of pixels of the bundled Weizmann horse images "
            "(offline), segment every pixel of the train and test images, print the foreground "
            "IoU and write a PNG of the test predictions."
        ),
    )
    parser.add_argument(
        "command", nargs="?", choices=["demo"], default="demo",
        help="what to run (default and only choice: demo)",
    )
    parser.add_argument(
        "--output", default="skhyper_demo.png", metavar="PATH",
        help="where to write the figure (default: %(default)s)",
    )
    parser.add_argument(
        "--device", default="auto",
        help="auto, cpu, cuda or cuda:N (default: %(default)s)",
    )
    parser.add_argument(
        "--n-per-image", type=_positive_int, default=1000, metavar="N",
        help="training pixels drawn per train image, class-balanced (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the pixel draw, PCA and SGD (default: 0)"
    )
    parser.add_argument(
        "--data", default=None, metavar="PATH",
        help="a folder with images/ and masks/ (e.g. the full Weizmann horse set) instead of "
        "the bundled sample",
    )
    parser.add_argument(
        "--image-size", type=_positive_int, default=None, metavar="N",
        help="resize images to this longer side for the forward pass (default: as they are)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : sequence of str, default=None
        The arguments, without the program name; None reads ``sys.argv[1:]``. An optional
        leading ``demo`` is accepted, so ``skhyper demo`` and ``python -m skhyper`` are the same.

    Returns
    -------
    status : int
        0 on success.

    Examples
    --------
    >>> from skhyper.__main__ import main
    >>> try:
    ...     main(["demo", "--help"])
    ... except SystemExit as exc:
    ...     print("exit status", exc.code)
    usage: skhyper [-h] [--output PATH] ...
    ...
    exit status 0
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        run_demo(
            output=args.output,
            device=args.device,
            n_per_image=args.n_per_image,
            seed=args.seed,
            data=args.data,
            image_size=args.image_size,
            verbose=True,
        )
    except (ValueError, TypeError) as err:  # bad input: a usage error, not a traceback
        parser.error(_as_option(str(err)))
    return 0


def _as_option(message: str) -> str:
    """Name command-line options, not run_demo's parameters, in a message."""
    for param in ("output", "device", "data", "seed", "image_size", "n_per_image"):
        option = "--" + param.replace("_", "-")
        message = message.replace(f"The '{param}' parameter of run_demo", option)
        message = message.replace(f"The '{param}' parameter", option)
    return message


if __name__ == "__main__":
    sys.exit(main())
