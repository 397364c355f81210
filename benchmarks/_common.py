"""Shared by the benchmark scripts: peak memory, timing of one call, machine description."""

from __future__ import annotations

import ctypes
import gc
import json
import os
import platform
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torchvision

import skhyper

__all__ = ["PeakRSS", "measure", "machine_info", "rss_bytes", "release_memory", "stamp",
           "write_results"]


def rss_bytes() -> int | None:
    """Current resident set size of this process, or None when unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so RSS baselines are fair."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakRSS:
    """Peak RSS growth over a ``with`` block, sampled by a thread every ``interval`` s."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.base = self.peak = None
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = rss_bytes()
            if rss is not None and rss > self.peak:
                self.peak = rss

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = rss_bytes()
        if self.base is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.base is None:
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes() or 0)

    @property
    def growth(self) -> int | None:
        return None if self.base is None else self.peak - self.base


def measure(fn, dev: torch.device, memory: bool = True) -> tuple[float, int | None]:
    """Seconds and peak memory growth (bytes) of one call of ``fn``; the result is dropped.

    ``memory=False``: seconds only, in the steady state of a loop (on CPU the RSS sampling
    thread competes for the GIL with Python-heavy calls, and the heap handed back to the OS
    for a fair RSS baseline makes every allocation of the next call fault its pages in)."""
    if dev.type == "cpu" and not memory:
        t0 = time.perf_counter()
        res = fn()
        seconds = time.perf_counter() - t0
        del res
        return seconds, None
    release_memory()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        t0 = time.perf_counter()
        res = fn()
        torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        with PeakRSS() as rss:
            t0 = time.perf_counter()
            res = fn()
            seconds = time.perf_counter() - t0
        peak = rss.growth
    del res
    return seconds, peak


def measure_all(methods: dict, dev: torch.device, repeats: int,
                separate_memory: bool = False) -> tuple[dict, dict]:
    """Seconds and peak memory of every method, interleaved over ``repeats`` rounds.

    ``separate_memory``: the timed rounds run without memory sampling, and one more round
    measures the peaks."""
    times: dict = {k: [] for k in methods}
    peaks: dict = {k: [] for k in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            t, p = measure(fn, dev, memory=not separate_memory)
            times[name].append(t)
            peaks[name].append(p)
    if separate_memory:
        for name, fn in methods.items():
            peaks[name] = [measure(fn, dev)[1]]
    return times, peaks


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor()


def machine_info(dev: torch.device) -> dict:
    cpu = cpu_name()
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "skhyper": skhyper.__version__,
        "git_commit": commit,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def loadavg() -> list[float] | None:
    try:
        with open("/proc/loadavg") as f:
            return [float(v) for v in f.read().split()[:3]]
    except OSError:
        return None


def git_commit() -> str | None:
    """The checkout's HEAD commit (with ``-dirty`` when tracked files differ), or None."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("-dirty" if dirty else "")) or None


def stamp(record: dict) -> dict:
    """``record`` with ``record["recorded"]``: the machine, UTC date and git commit of the run.

    The documentation's benchmark pages show these three for every result file."""
    cpu = cpu_name()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    machine = ", ".join(p for p in (gpu, cpu, f"{os.cpu_count()} cores",
                                    f"torch {torch.__version__}", platform.platform()) if p)
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {**record, "recorded": {"machine": machine, "date": date, "commit": git_commit()}}


def write_results(record: dict, path) -> None:
    """Write a benchmark's figures as JSON (creating the folder), stamped with the machine,
    date and commit (:func:`stamp`), and say where. Every benchmark writes through this."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamp(record), indent=2, default=str) + "\n")
    print(f"wrote {path}")
