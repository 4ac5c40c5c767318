"""Crash-safe writes: everything goes to a temporary name in the same folder, then is renamed,
so a reader never takes a half-written file or folder for a whole one."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from .errors import DiskFullError, Text2TokenError, WriteError

# torch.save's zip writer reports a full disk as a RuntimeError without errno ("unexpected pos
# N vs M", "file write failed"): such an error counts as a full disk when less than this is free
LOW_SPACE_BYTES = 64 * 2**20
TORCH_WRITE_FAILURES = ("file write failed", "unexpected pos")  # torch.save's zip writer, in its RuntimeError


def torch_write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is torch.save's errno-less report of a failed write (full disk or not)."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and (any(s in text for s in TORCH_WRITE_FAILURES)
                                              or "PytorchStreamWriter" in text)


@contextlib.contextmanager
def atomic_path(path: Path, directory: bool = False):
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    A failed write leaves ``path`` as it was and no temporary file; a full disk is a
    :class:`~text2token.errors.DiskFullError`, any other filesystem error (or torch.save's errno-less write
    failure) a :class:`~text2token.errors.WriteError` naming ``path`` and the cause (both are ``OSError``
    subclasses)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmp = Path(name)
        yield tmp
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except Exception as exc:
        full = is_disk_full(exc, path.parent)
        if tmp is not None:
            _remove(tmp)  # first: it frees the space the failed write took
        if full:
            raise DiskFullError(f"disk full while saving {path} ({free_space(path.parent)} free): "
                                "free some space and run again") from exc
        if isinstance(exc, OSError) and not isinstance(exc, Text2TokenError):
            raise write_error(exc, path, tmp) from exc
        if torch_write_failure(exc):
            cause = " ".join(str(exc).split())[:200]
            raise WriteError(f"cannot write {path} (torch.save failed: {cause})", errno.EIO, cause, str(path)) from exc
        raise
    finally:
        if tmp is not None:
            _remove(tmp)


def write_error(exc: OSError, path: Path, tmp: Path | None = None):
    """A :class:`~text2token.errors.WriteError` for a failed write of ``path``: one line naming it (or the
    file the failed call names, when that is not ``path``'s temporary file) and the cause."""
    where = Path(exc.filename) if getattr(exc, "filename", None) else Path(path)
    if tmp is not None and (Path(tmp) in where.parents or where.name.startswith(f".{Path(path).name}.")):
        where = Path(path)  # the temporary name means nothing to the reader
    return WriteError(f"cannot write {where} ({os_cause(exc)})", exc.errno, os_cause(exc), str(where))


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
        if isinstance(exc, RuntimeError) and any(s in text for s in TORCH_WRITE_FAILURES):
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


def atomic_torch_save(path: Path, payload) -> None:
    """``torch.save`` atomically; a failed write is told as :func:`atomic_path` tells it."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


# ------------------------------------------------------------------ content checksums
def sha256_file(path: Path, block: int = 2**20) -> str:
    """The sha256 of a file's content, read in blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(block), b""):
            digest.update(piece)
    return digest.hexdigest()


# ------------------------------------------------------------------ one writer at a time
def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), to tell a reused pid from its holder."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()  # field 22 of stat; fields[0] is field 3 (the state)
    except (OSError, IndexError):
        return None


def _process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


def holder_alive(holder: dict) -> bool:
    """Whether the process a lock file names still runs (a lock of another host counts as alive)."""
    import socket

    try:
        pid = int(holder["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if holder.get("host") != socket.gethostname():
        return True  # cannot be checked from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return False
    if _process_state(pid) in ("Z", "X"):
        return False
    started = holder.get("started")
    return not (started and _process_start(pid) not in (None, started))


def describe_holder(holder: dict) -> str:
    since = holder.get("since")
    when = ""
    if isinstance(since, (int, float)):
        import time

        when = time.strftime(", since %Y-%m-%d %H:%M:%S", time.localtime(since))
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}{when}"


def read_lock(path: Path) -> dict | None:
    """The holder a lock file names (``{"pid", "host", ...}``), ``None`` if there is no lock; an
    unreadable lock reads as ``{}`` (a dead holder)."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class WriterLock:
    """A lock file naming its holder (pid, host), created atomically: one writer of ``target`` at a time.

    ``acquire`` raises ``error(message)`` (one line naming the holder) while a live process holds it;
    a lock left by a process that no longer runs is taken over with a warning. ``info`` is stored in
    the lock for others to read (see :func:`read_lock`). Reentrant within one process.
    """

    _held: dict[str, "WriterLock"] = {}

    def __init__(self, path: Path, target, what: str = "written", info: dict | None = None, error=None):
        from .errors import LockedError

        self.path = Path(path)
        self.target = target
        self.what = what
        self.info = dict(info or {})
        self.error = error or LockedError
        self.depth = 0

    def _payload(self) -> str:
        import json
        import socket
        import time

        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": _process_start(os.getpid()),
                           "since": time.time(), **self.info})

    def _create(self) -> bool:
        """Create the lock file with its whole content at once; False if it exists."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self._payload())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(name, self.path)  # atomic; fails if the lock exists
                return True
            except FileExistsError:
                return False
            except OSError:  # no hard links on this filesystem: O_EXCL instead
                try:
                    fd2 = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd2, "w", encoding="utf-8") as f:
                    f.write(Path(name).read_text(encoding="utf-8"))
                return True
        finally:
            Path(name).unlink(missing_ok=True)

    def acquire(self) -> "WriterLock":
        import logging

        key = str(self.path.absolute())
        mine = WriterLock._held.get(key)
        if mine is not None and mine is not self:
            raise self.error(f"{self.target} is already being {self.what} by this process ({self.path})")
        if self.depth:
            self.depth += 1
            return self
        for _ in range(5):
            try:
                created = self._create()
            except OSError as exc:
                raise self.error(f"cannot write the lock file {self.path} ({exc.strerror or exc}): "
                                 f"{self.target} cannot be {self.what} there") from exc
            if created:
                self.depth = 1
                WriterLock._held[key] = self
                return self
            holder = read_lock(self.path)
            if holder is None:
                continue  # released meanwhile
            if holder_alive(holder):
                raise self._refusal(holder)
            logging.getLogger("text2token").warning(
                "taking over the lock %s of a process that no longer runs (%s)", self.path, describe_holder(holder))
            self._remove_stale(holder)
        raise self.error(f"cannot take the lock {self.path}: other processes keep taking it")

    def _refusal(self, holder: dict) -> Exception:
        return self.error(f"{self.target} is being {self.what} by another process ({describe_holder(holder)}): "
                          f"wait for it to finish, or delete {self.path} if that process is gone")

    def refuse_if_held(self) -> None:
        """Raise the one-line error now if another live process holds the lock (acquires nothing)."""
        if self.depth or str(self.path.absolute()) in WriterLock._held:
            if WriterLock._held.get(str(self.path.absolute())) is self:
                return
            raise self.error(f"{self.target} is already being {self.what} by this process ({self.path})")
        holder = read_lock(self.path)
        if holder and holder_alive(holder):
            raise self._refusal(holder)

    def _remove_stale(self, holder: dict) -> None:
        aside = self.path.with_name(f".{self.path.name}.stale-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        if read_lock(aside) != holder:  # a live process took it meanwhile: give it back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        if not self.depth:
            return
        self.depth -= 1
        if self.depth:
            return
        WriterLock._held.pop(str(self.path.absolute()), None)
        holder = read_lock(self.path)
        if holder and holder.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


# ------------------------------------------------------------------ filesystem errors, told before heavy work
def os_cause(exc: OSError) -> str:
    """The cause of a failed filesystem call, for one-line messages ("Permission denied")."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    return (exc.strerror or str(exc) or type(exc).__name__) if isinstance(exc, OSError) else str(exc)


def _nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe_writable(folder: Path) -> None:
    """Create and delete a temporary file in ``folder`` (an existing folder); raises the ``OSError``
    a write there would (read-only mount, no permission, no space). Unlike ``os.access`` this holds
    for root and for read-only filesystems."""
    fd, name = tempfile.mkstemp(prefix=".text2token-probe-", suffix=".tmp", dir=folder)
    os.close(fd)
    os.unlink(name)


def writable_problem(path: Path, directory: bool = False) -> str | None:
    """What would keep ``path`` (a file, or with ``directory`` a folder) from being written, in words
    naming the path and the cause; ``None`` when it can be. Nothing is created but a probe file."""
    path = Path(path).expanduser()
    if path.exists():
        if directory and not path.is_dir():
            return f"{path} is a file, not a folder"
        if not directory and path.is_dir():
            return f"{path} is a folder, not a file"
    existing = _nearest_existing(path if directory and path.is_dir() else path.parent)
    if not existing.is_dir():
        return f"cannot create {path}: {existing} is a file, not a folder"
    try:
        probe_writable(existing)
    except OSError as exc:
        return f"cannot write {path}: {existing} is not writable ({os_cause(exc)})"
    return None


def check_writable(path: Path, error, directory: bool = False, hint: str = "") -> None:
    """Raise ``error(message)`` (one line naming the path and the cause) if ``path`` cannot be written."""
    problem = writable_problem(path, directory)
    if problem:
        raise error(problem + (f"; {hint}" if hint else ""))


# ------------------------------------------------------------------ cheap fingerprints of weight files
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".msgpack", ".h5")
EDGE_BYTES = 2**20


def _edges_sha256(path: Path, size: int, edge: int = EDGE_BYTES) -> str:
    """sha256 of the first and the last ``edge`` bytes of a file (all of it when it is smaller than both)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(edge))
        if size > 2 * edge:
            f.seek(size - edge)
        digest.update(f.read(edge))  # a smaller file: the rest of it
    return digest.hexdigest()


def weights_fingerprint(path: Path) -> dict | None:
    """A cheap fingerprint of the weight files of a model folder (or of one weight file): for each,
    its size, modification time and the sha256 of its first and last MiB (which hold a safetensors
    file's header and its first and last tensors). ``{"files": {name: {...}}, "content": digest of
    the sizes and hashes, "digest": the same with the modification times}``; ``None`` if there are
    no weight files (a hub id that is not cached)."""
    import hashlib

    path = Path(path).expanduser()
    if path.is_file():
        files = {path.name: path}
    elif path.is_dir():
        files = {p.relative_to(path).as_posix(): p for p in sorted(path.rglob("*"))
                 if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES
                 and not any(part.startswith(".") for part in p.relative_to(path).parts)}
    else:
        return None
    if not files:
        return None
    entries = {}
    for name, file in sorted(files.items()):
        stat = file.stat()
        entries[name] = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                         "edges_sha256": _edges_sha256(file, stat.st_size)}
    content = hashlib.sha256(json_dumps({n: [e["bytes"], e["edges_sha256"]] for n, e in entries.items()}).encode())
    full = hashlib.sha256(json_dumps(entries).encode())
    return {"files": entries, "content": content.hexdigest()[:16], "digest": full.hexdigest()[:16]}


def json_dumps(value) -> str:
    import json

    return json.dumps(value, sort_keys=True)
