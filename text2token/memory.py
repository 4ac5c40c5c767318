"""Give memory back to the operating system between the phases of a run.

PyTorch frees a training step's activations to the C allocator, which keeps the pages for reuse:
after a training stage the process stays as large as its peak (about 4.5 GiB for the demo's
training on SmolLM2), and the next phase (the teacher pass, an evaluation) grows on top of it.
:func:`release_memory` collects Python garbage, empties the CUDA cache and, with glibc, asks
``malloc_trim`` to return free heap pages (or, under jemalloc, purges its arenas).

The allocator itself: glibc's heap fragments under a training step's pattern of large, short-lived
activation blocks (the default run peaks at 4.4-7.3 GiB with about 2.3 GiB live), while jemalloc's size
classes do not (2.7 GiB, and faster steps; docs/performance.md). Where a jemalloc library is installed
(Debian/Ubuntu ``libjemalloc2``, conda ``jemalloc``), the ``text2token`` command re-executes itself once
with it preloaded (:func:`allocator_env`), as Intel's PyTorch CPU guide recommends;
``TEXT2TOKEN_ALLOCATOR=system`` keeps the C library's allocator."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
from pathlib import Path

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


def _jemalloc_purge():
    """jemalloc's ``mallctl`` when jemalloc is the process's allocator (preloaded), else None."""
    if not sys.platform.startswith("linux") or "jemalloc" not in os.environ.get("LD_PRELOAD", ""):
        return None
    try:
        return getattr(ctypes.CDLL(None), "mallctl", None)
    except OSError:
        return None


def release_memory() -> bool:
    """Free what nothing references any more; True when the C heap was trimmed (or jemalloc purged)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    mallctl = _jemalloc_purge()
    if mallctl is not None:  # arena 4096 = MALLCTL_ARENAS_ALL: return every arena's unused dirty pages
        return mallctl(b"arena.4096.purge", None, None, None, ctypes.c_size_t(0)) == 0
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


# ---------------------------------------------------------------- the allocator of the text2token command
# "system" (default; jemalloc without decay grew to 14-24 GiB on variable-length runs, docs/performance.md);
# "auto": jemalloc where installed; "jemalloc"; or a library path
ALLOCATOR_VAR = "TEXT2TOKEN_ALLOCATOR"
ACTIVE_VAR = "TEXT2TOKEN_ALLOCATOR_ACTIVE"  # set by the re-executed process: the preloaded library
# keep freed pages for reuse (no decay): the fastest setting measured; 2.7 GiB over 4 steps, but it grows on
# variable-length batches (14 GiB after 16 SimCSE steps), which is why jemalloc is opt-in
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
JEMALLOC_PLACES = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                   "/usr/local/lib")


def find_jemalloc(places=None) -> str | None:
    """The path of an installed ``libjemalloc.so.2`` (this environment's, conda's, then the system's), or None."""
    prefixes = [sys.prefix, os.environ.get("CONDA_PREFIX")]
    places = places if places is not None else [str(Path(p) / "lib") for p in prefixes if p] + list(JEMALLOC_PLACES)
    for place in places:
        candidate = Path(place) / "libjemalloc.so.2"
        if candidate.is_file():
            return str(candidate)
    return None


def allocator_env(environ=None, platform: str | None = None, find=find_jemalloc) -> dict | None:
    """The environment to re-execute the command in with jemalloc preloaded, or None to run as is.

    None: not Linux, ``TEXT2TOKEN_ALLOCATOR=system`` (the default, also when unset), already re-executed, jemalloc already preloaded, or
    none installed (``TEXT2TOKEN_ALLOCATOR=jemalloc`` then raises: asked for, not found). ``MALLOC_CONF``
    is left alone if set."""
    from .errors import ConfigError

    environ = dict(os.environ if environ is None else environ)
    choice = environ.get(ALLOCATOR_VAR, "system").strip() or "system"
    if choice not in ("auto", "system", "jemalloc") and not choice.startswith("/"):
        raise ConfigError(f"{ALLOCATOR_VAR}={choice!r}: use auto, system, jemalloc or the path of a libjemalloc.so")
    platform = sys.platform if platform is None else platform
    if choice == "system" or not platform.startswith("linux") or environ.get(ACTIVE_VAR):
        return None
    if "jemalloc" in environ.get("LD_PRELOAD", ""):
        return None
    library = choice if choice.startswith("/") else find()
    if library is None or not Path(library).is_file():
        if choice != "auto":
            raise ConfigError(f"{ALLOCATOR_VAR}={choice}: no jemalloc library found"
                              f"{'' if library is None else ' at ' + library} (install libjemalloc2, or use system)")
        return None
    environ["LD_PRELOAD"] = ":".join(p for p in (library, environ.get("LD_PRELOAD", "")) if p)
    environ.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    environ[ACTIVE_VAR] = library
    return environ


def reexec_with_jemalloc() -> None:
    """Replace this process by the same command with jemalloc preloaded, where :func:`allocator_env` says so.

    The command is the interpreter's own command line (``sys.orig_argv``: a console script, ``python -m
    text2token.cli`` as launchers run it, ...). Output is flushed first; the process id stays the same
    (launchers such as torchrun keep it)."""
    env = allocator_env()
    command = list(getattr(sys, "orig_argv", []))[1:]
    if env is None or not command:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *command], env)


def allocator_line(environ=None) -> str | None:
    """What the command reports about its allocator: one line when jemalloc was preloaded for it."""
    environ = os.environ if environ is None else environ
    library = environ.get(ACTIVE_VAR)
    if not library:
        return None
    return f"allocator: jemalloc ({library}; {ALLOCATOR_VAR}=system for the C library's)"


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
