"""Keep large freed buffers in the process (glibc ``mallopt``), for long jobs on the CPU.

With glibc's default thresholds, a buffer of more than a few MB is mapped from the operating
system when torch allocates it and handed back when it is freed, so every forward pass faults
its activations in again, 4 KiB at a time. :func:`steady_allocator` raises the thresholds once
for the process, as a jemalloc / tcmalloc deployment behaves: freed buffers stay mapped and
the next image reuses them.
"""

from __future__ import annotations

import ctypes
import os
import threading
from numbers import Integral

__all__ = ["steady_allocator", "steady_threshold"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_LOCK = threading.Lock()
_APPLIED: list[int] = []  # the threshold steady_allocator set in this process


def steady_allocator(threshold: int = 1 << 30) -> bool:
    """Keep freed buffers of up to ``threshold`` bytes in the process for reuse (Linux, glibc).

    Sets glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (``mallopt``), as the
    environment variables ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` would at
    start-up: buffers below ``threshold`` come from the heap instead of fresh mappings, and
    freed memory is not handed back to the operating system. Every later forward pass then
    reuses the memory of the previous one instead of faulting it in again. On 2 CPU cores
    with the default segmenter (``benchmarks/bench_cli.py``): 1.68x the images per second at
    512 x 512, 1.87x at 1024 x 1024, the same at 256 x 256; an 8192 x 8192 image through
    :func:`predict_large` 1.15x. The cost is memory: the heap keeps what it once held and
    fragments, so peak RSS grows (1024 x 1024: 3.3 instead of 2.1 GB; 8192 x 8192 in chunks
    of 1024: 3.1 instead of 2.6 GiB) and stays until the process exits.
    ``skhyper train`` and ``skhyper predict`` call it (``--allocator system`` to
    keep glibc's defaults); call it once at the start of a notebook or script that predicts
    many images, and on Dask workers with ``client.run(steady_allocator)`` (it also overrides
    the ``MALLOC_TRIM_THRESHOLD_=65536`` that dask's nanny sets). It lasts for the rest of
    the process.

    Parameters
    ----------
    threshold : int, default=2**30
        Buffers up to this many bytes are reused; between 1 MiB and 2**31 - 1.

    Returns
    -------
    bool
        True when glibc took the settings; False where they do not apply (macOS, Windows,
        musl): nothing is changed there.

    Examples
    --------
    >>> from skhyper.parallel import steady_allocator
    >>> steady_allocator()  # doctest: +SKIP  (it would change the test process's allocator)
    True
    >>> steady_allocator(threshold=4096)
    Traceback (most recent call last):
    ...
    ValueError: steady_allocator: 'threshold' must be between 2**20 and 2**31 - 1 bytes ... 4096.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, Integral):
        raise TypeError(f"steady_allocator: 'threshold' must be an int (bytes); got "
                        f"{type(threshold).__name__} {threshold!r}.")
    if not (1 << 20) <= threshold <= (1 << 31) - 1:
        raise ValueError(f"steady_allocator: 'threshold' must be between 2**20 and 2**31 - 1 "
                         f"bytes (glibc takes an int); got {threshold!r}.")
    threshold = int(threshold)
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # not a GNU system
        libc = ""
    if not libc.startswith("glibc"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    with _LOCK:
        took = bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(
            mallopt(_M_TRIM_THRESHOLD, threshold))
        if took:
            _APPLIED[:] = [threshold]
        return took


def steady_threshold() -> int | None:
    """The threshold :func:`steady_allocator` set in this process, or None."""
    return _APPLIED[0] if _APPLIED else None
