"""Give memory back to the operating system between the phases of a run.

PyTorch frees a training step's activations to the C allocator, which keeps the pages for reuse:
after a training stage the process stays as large as its peak (about 4.5 GiB for the demo's
training on SmolLM2), and the next phase (the teacher pass, an evaluation) grows on top of it.
:func:`release_memory` collects Python garbage, empties the CUDA cache and, with glibc, asks
``malloc_trim`` to return free heap pages."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

_libc = None


def _malloc_trim():
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _libc = False
    return getattr(_libc, "malloc_trim", None) if _libc else None  # absent on musl


def release_memory() -> bool:
    """Free what nothing references any more; True when the C heap was trimmed."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


def rss_bytes() -> int | None:
    """The process's resident set size now (Linux), for tests and reports."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
