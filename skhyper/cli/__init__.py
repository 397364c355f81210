"""The ``skhyper`` command line: ``train``, ``predict``, ``layers``, ``export``, ``demo``.

A thin layer over the public API (:class:`~skhyper.HypercolumnSegmenter`,
:func:`skhyper.save` / :func:`skhyper.load`, :mod:`skhyper.parallel`, :mod:`skhyper.export`):
the reading and writing of files is in ``_io``, each command in its own module.
"""

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
