"""Output paths checked before the work that fills them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["check_output_path"]


def check_output_path(path: Any, param: str = "output", *, suffixes: tuple[str, ...] = ()) -> Path:
    """The absolute path of a file to write, checked before any work is done.

    A long job must not compute everything and then fail to save it: the path must not be a
    folder, its nearest existing parent must be a writable folder (missing folders below it
    are created when the file is written), and an existing file must be writable.

    Parameters
    ----------
    path : str or path-like
    param : str
        The parameter's name, for messages.
    suffixes : tuple of str
        Accepted file endings (lower case, e.g. ``(".png",)``); empty accepts any.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> check_output_path("figure.png", suffixes=(".png",)).name
    'figure.png'
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise TypeError(f"The '{param}' parameter must be a file path; got {path!r}.")
    out = Path(path).expanduser().resolve()
    if out.is_dir():
        raise ValueError(
            f"The '{param}' parameter {str(path)!r} is a folder; give a file path inside it, "
            f"e.g. {str(out / ('result' + (suffixes[0] if suffixes else '')))!r}."
        )
    if suffixes and out.suffix.lower() not in suffixes:
        raise ValueError(
            f"The '{param}' parameter must be a path ending in {' or '.join(suffixes)}; got "
            f"{str(path)!r}."
        )
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(
            f"The '{param}' parameter {str(path)!r} lies under {str(parent)!r}, which is a "
            "file, not a folder: choose another path."
        )
    writable = os.access(parent, os.W_OK | os.X_OK) and (
        not out.exists() or os.access(out, os.W_OK)
    )
    if writable:  # permissions can say yes where writing fails (/proc, read-only mounts)
        try:
            with tempfile.TemporaryFile(dir=parent):
                pass
        except OSError:
            writable = False
    if not writable:
        where = out if out.exists() else parent
        raise ValueError(
            f"The '{param}' parameter {str(path)!r} cannot be written: no write permission on "
            f"{str(where)!r}. Choose a writable place."
        )
    return out
