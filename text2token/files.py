"""Crash-safe writes: everything goes to a temporary name in the same folder, then is renamed,
so a reader never takes a half-written file or folder for a whole one."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from .errors import DiskFullError

# torch.save's zip writer reports a full disk as a RuntimeError without errno ("unexpected pos
# N vs M", "file write failed"): such an error counts as a full disk when less than this is free
LOW_SPACE_BYTES = 64 * 2**20


@contextlib.contextmanager
def atomic_path(path: Path, directory: bool = False):
    """Yield a temporary path next to ``path``; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except Exception as exc:
        full = is_disk_full(exc, path.parent)
        _remove(tmp)  # first: it frees the space the failed write took
        if full:
            raise DiskFullError(f"disk full while saving {path} ({free_space(path.parent)} free): "
                                "free some space and run again") from exc
        raise
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def is_disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write failed because the disk or the quota is full.

    Looks through the exception's causes: an ``OSError`` with ENOSPC/EDQUOT, a library's message
    naming it (safetensors: "No space left on device (os error 28)"), or torch.save's errno-less
    zip-writer error while the disk holding ``folder`` has (almost) no space left.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if any(s in text for s in ("No space left on device", "os error 28", "Disk quota exceeded")):
            return True
        if isinstance(exc, RuntimeError) and ("file write failed" in text or "unexpected pos" in text):
            try:
                return _free_bytes(folder) < LOW_SPACE_BYTES
            except OSError:
                return False
        exc = exc.__cause__ or exc.__context__
    return False


def _free_bytes(folder: Path) -> int:
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def free_space(folder: Path) -> str:
    """Free space on the disk holding ``folder``, for messages (\"1.2 MiB\")."""
    try:
        free = _free_bytes(folder)
    except OSError:
        return "unknown space"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    return f"{free:.1f} TiB"


def fsync_tree(folder: Path) -> dict[str, int]:
    """Flush every file under ``folder`` (and the folder) to disk; return their sizes by relative path."""
    folder = Path(folder)
    sizes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            sizes[path.relative_to(folder).as_posix()] = path.stat().st_size
    _fsync_dir(folder)
    return sizes


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_save_npy(path: Path, array) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def atomic_torch_save(path: Path, payload) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
