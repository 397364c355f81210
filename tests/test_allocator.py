"""skhyper.parallel.steady_allocator: freed buffers stay in the process; the long CLI commands
call it unless ``--allocator system``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import skhyper.parallel
from skhyper.cli import _predict, _train, main
from skhyper.parallel import steady_allocator


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


# In a fresh interpreter: how many bytes glibc maps for a 64 MiB block while it is held, before
# and after steady_allocator(), and whether the heap keeps the block once it is freed.
_PROBE = textwrap.dedent("""
    import ctypes, json
    from skhyper.parallel import steady_allocator

    libc = ctypes.CDLL("libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        print(json.dumps(None))
        raise SystemExit

    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                    "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    SIZE = 64 << 20

    def held():
        mapped0 = libc.mallinfo2().hblkhd
        p = libc.malloc(SIZE)
        ctypes.memset(p, 1, SIZE)
        mapped = libc.mallinfo2().hblkhd - mapped0
        libc.free(p)
        return mapped, libc.mallinfo2().arena

    before = held()
    took = steady_allocator()
    after = held()
    print(json.dumps({"before": before, "took": took, "after": after}))
""")


@pytest.mark.skipif(not _glibc(), reason="mallopt thresholds are glibc's (Linux)")
def test_freed_buffers_stay_in_the_heap_after_steady_allocator():
    env = {**os.environ}
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        env.pop(var, None)
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         env=env, timeout=300, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result is None:
        pytest.skip("glibc older than 2.33 has no mallinfo2 to observe the heap")
    size = 64 << 20
    # glibc's defaults: a 64 MiB block is its own mapping, handed back when freed
    assert result["before"][0] >= size
    assert result["took"] is True
    # afterwards it comes from the heap (nothing mapped for it), and the heap keeps it
    assert result["after"][0] == 0
    assert result["after"][1] >= size


def test_steady_allocator_is_a_no_op_without_glibc(monkeypatch):
    def not_gnu(name):
        raise ValueError("unrecognized configuration name")

    monkeypatch.setattr(os, "confstr", not_gnu)
    assert steady_allocator() is False


@pytest.mark.parametrize("threshold", [0, -1, (1 << 20) - 1, 1 << 31])
def test_steady_allocator_rejects_thresholds_out_of_range(threshold):
    with pytest.raises(ValueError, match=r"'threshold' must be between 2\*\*20 and 2\*\*31 - 1"):
        steady_allocator(threshold)


@pytest.mark.parametrize("threshold", [True, 2.0**30, "1073741824", None])
def test_steady_allocator_rejects_thresholds_that_are_not_ints(threshold):
    with pytest.raises(TypeError, match=r"'threshold' must be an int \(bytes\)"):
        steady_allocator(threshold)


@pytest.mark.parametrize("command, module, function", [
    ("predict", _predict, "run_predict"), ("train", _train, "run_train")])
def test_long_commands_set_the_steady_allocator_first(monkeypatch, command, module, function,
                                                      tmp_path):
    calls = []
    monkeypatch.setattr(skhyper.parallel, "steady_allocator",
                        lambda: calls.append("allocator") or True)
    monkeypatch.setattr(module, function, lambda args: calls.append(args.command) or 0)
    args = {"predict": ["predict", "model.joblib", "images", "-o", str(tmp_path)],
            "train": ["train", "images", "masks", "-o", str(tmp_path / "m.joblib")]}[command]
    assert main(args) == 0
    assert calls == ["allocator", command]
    calls.clear()
    assert main([*args, "--allocator", "system"]) == 0
    assert calls == [command]
