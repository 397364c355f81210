"""``python -m skhyper``: the command line (:mod:`skhyper.cli`); without a command, the demo."""

from __future__ import annotations

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
