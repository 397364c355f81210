"""Shared pieces of the command line: the usage error, option parsers, option names in messages."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from .._paths import check_output_path
from ..stacks import check_axes

__all__ = [
    "CommandError",
    "axes_letters",
    "check_out_dir",
    "check_out_file",
    "intensity_range",
    "layer_list",
    "load_model",
    "nonnegative_int",
    "optional_int",
    "positive_int",
    "scale_list",
    "to_option",
]


class CommandError(ValueError):
    """Bad input on the command line: printed as one ``skhyper: error: ...`` line, exit 2."""


def axes_letters(text: str) -> str:
    """An argparse type: axis letters for files without axis names (``ZYX``, ``YXC``, ...)."""
    try:
        return "".join(check_axes(text, None))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"must be one letter per axis of the stored array with Y and X (e.g. ZYX, YXC, "
            f"CYX), got {text!r}") from err


def positive_int(text: str) -> int:
    """An argparse type: an int of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An argparse type: an int of at least 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def optional_int(none_word: str, *, positive: bool = False):
    """An argparse type: an int, or ``none_word`` (any case) for None."""

    def parse(text: str) -> int | None:
        if text.strip().lower() == none_word:
            return None
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer or {none_word!r}, got {text!r}") from None
        if positive and value < 1:
            raise argparse.ArgumentTypeError(
                f"must be a positive integer or {none_word!r}, got {text!r}")
        return value

    return parse


def layer_list(text: str) -> list[str | int]:
    """An argparse type: comma-separated layer names (``layer1,layer2``) or stage indices."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated layer names or stage indices (e.g. 'layer1,layer3' or "
            f"'1,3'), got {text!r}; 'skhyper layers BACKBONE' lists the names")
    return [int(t) if re.fullmatch(r"-?\d+", t) else t for t in items]


def scale_list(text: str) -> tuple[float, ...] | str | None:
    """An argparse type: comma-separated positive scale factors (``1,0.5``), auto or none."""
    if text.strip().lower() in ("auto", "none"):
        return None if text.strip().lower() == "none" else "auto"
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        values = ()
    if not values or any(not v > 0 or v == float("inf") for v in values):
        raise argparse.ArgumentTypeError(
            f"must be 'auto', 'none' or comma-separated positive numbers (e.g. '1,0.5'), got "
            f"{text!r}")
    return values


def intensity_range(text: str) -> tuple | None:
    """An argparse type: ``dtype``, ``LOW,HIGH`` or ``percentile,P_LOW,P_HIGH``."""
    parts = [t.strip() for t in text.split(",")]
    if parts == ["dtype"]:
        return None
    try:
        if len(parts) == 3 and parts[0] == "percentile":
            return ("percentile", float(parts[1]), float(parts[2]))
        if len(parts) == 2:
            return (float(parts[0]), float(parts[1]))
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        "must be 'dtype' (the pixel type's range), 'LOW,HIGH' (e.g. '100,4000') or "
        f"'percentile,P_LOW,P_HIGH' (e.g. 'percentile,1,99.8'), got {text!r}")


def to_option(message: str, names: dict[str, str]) -> str:
    """Name command-line options instead of Python parameters in a library message.

    ``names`` maps a parameter name to its option, e.g. ``{"layers": "--layers"}``.
    """
    for param, option in names.items():
        message = re.sub(rf"The '{param}' parameter( of [A-Za-z_.]+(\(\))?)?", option, message)
    return message


def check_out_file(path: str, option: str, *, overwrite: bool,
                   suffixes: tuple[str, ...] = ()) -> Path:
    """An output file: writable, and not an existing file unless ``overwrite``."""
    try:
        out = check_output_path(path, param=option, suffixes=suffixes)
    except (TypeError, ValueError) as err:
        raise CommandError(str(err).replace(f"The '{option}' parameter", option)) from None
    if out.exists() and not overwrite:
        raise CommandError(
            f"{option} {path!r} exists; pass --overwrite to replace it, or choose another path.")
    return out


def check_out_dir(path: str, option: str) -> Path:
    """An output folder: an existing folder, or a path where one can be made."""
    out = Path(path).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise CommandError(
            f"{option} {path!r} is a file; give a folder for the outputs (it is created when "
            "missing).")
    try:
        check_output_path(out / "probe", param=option)
    except ValueError as err:
        raise CommandError(str(err).replace(f"The '{option}' parameter", option)
                           .replace(repr(os.fspath(out / "probe")), repr(path))) from None
    return out


def describe(value: Any) -> str:
    """A short human description of an option's value for reports."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def load_model(path: str, device: str | None = None) -> Any:
    """A model file written by ``skhyper train`` / :func:`skhyper.save`, or a CommandError."""
    from ..export import load

    if not Path(path).is_file():
        raise CommandError(f"MODEL {path!r} is not a file: give a model written by 'skhyper "
                           "train' or skhyper.save.")
    try:
        return load(path, device=device)
    except (ValueError, TypeError, OSError) as err:
        raise CommandError(to_option(str(err).strip().splitlines()[0],
                                     {"path": "MODEL", "device": "--device"})) from err
