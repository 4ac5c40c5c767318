"""Reading texts to embed (one per line, JSON lines, or a ``.json`` file), and encoding a file of any
size into a .npy.

The input is read by :func:`text2token.data.read_rows`, the reader ``train`` uses, so a file means
the same to both (``.json`` included); a folder is its text files one after the other, in sorted order
of their paths (:func:`input_files`). Rows match lines: a blank line is a row (encoded like the
empty text, as the eos token), so row ``i`` of the output is line ``i + 1`` of the input (item
``i + 1`` of a ``.json`` document). An undecodable or malformed line is an error naming it, found by
a first pass before anything is encoded.

:func:`encode_file` streams: memory does not grow with the input.

* A first pass checks every line and counts the rows (no text is kept).
* The output is a float32 ``.npy`` of ``[rows, dim]`` created up front (a sparse file) under a
  temporary name, ``OUTPUT.<settings>.partial``; rows are read in chunks of ``chunk_size`` lines,
  each chunk is encoded in length-sorted batches and written at its offset in that file.
* After each chunk the rows are flushed to disk, then a progress file
  ``OUTPUT.<settings>.progress-<i>-of-<n>.json`` records how many rows of the shard are done.
  Running the same command again after an interruption continues from there (``--restart``
  redoes the shard); other settings (model, input file, batch size, ...) give another
  ``<settings>`` digest, so they never mix with an earlier attempt.
* Work can be split over processes: shard ``i`` of ``n`` takes a contiguous range of whole chunks
  and writes its rows into the same file (``--shard i/n``, or the ``RANK``/``WORLD_SIZE`` that
  torchrun and ``accelerate launch`` set). Chunk boundaries do not depend on the number of
  shards, so every text is batched with the same neighbours and the result is the same array
  as one process writes. The shard that completes the last rows renames the file to
  ``OUTPUT`` and removes the progress files; until then ``OUTPUT`` is not touched. Shards must
  see the same filesystem (one machine, or a shared disk).
* One writer per shard: ``OUTPUT.shard-<i>-of-<n>.lock`` names the process (pid, host) and the
  settings digest while it works. A second encode of the same shard, or one with other settings or
  another shard count while the first is alive, refuses with one line instead of racing it; a lock
  left by a killed process is taken over with a warning.
* The output is never the input file, nor inside the input folder, nor a folder (refused before any row
  is encoded).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import file_rows, folder_files, read_rows
from .errors import DataError, DiskFullError, LockedError
from .files import WriterLock, atomic_write_text, free_space, holder_alive, is_disk_full, read_lock

log = logging.getLogger(__name__)


def input_files(path: Path) -> list[Path]:
    """The files an ``--input`` names: the file itself, or a folder's text files
    (:func:`text2token.data.folder_files`: those ``train --data FOLDER`` reads, in the same order)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = folder_files(path)
        if not files:
            raise DataError(f"input folder {path} holds no .txt, .jsonl or .json files")
        return files
    raise DataError(f"input file not found: {path}")


def iter_lines(path: Path, field: str = "text", start: int = 0, stop: int | None = None):
    """The texts of rows ``start`` to ``stop`` (0-based, end excluded), one at a time, read by
    :func:`text2token.data.read_rows` (as ``train`` reads them); an undecodable or malformed row is an
    error naming it. A folder's files follow each other in :func:`input_files`' order."""
    files = input_files(Path(path))
    offset = 0  # rows of the files before this one
    for file in files:
        if stop is not None and offset >= stop:
            return
        if start > offset and file != files[-1]:  # a file wholly before ``start`` is counted, not parsed
            size = file_rows(file)
            if offset + size <= start:
                offset += size
                continue
        first = max(0, start - offset)
        end = first  # this file's rows read so far, counting those skipped before ``start``
        for row in read_rows(file, field, first, None if stop is None else stop - offset):
            end += 1
            if row.text is None:
                raise DataError(f"{row.where}: {row.problem}")
            yield row.text
        offset += end  # short of the file's rows only when ``stop`` ended it, and then the loop ends


def read_lines(path: Path, field: str = "text") -> list[str]:
    """Texts of ``path`` in order; an undecodable or malformed line is an error naming it."""
    texts = list(iter_lines(Path(path), field))
    if not texts:
        raise DataError(f"{path} is empty: nothing to encode")
    return texts


def count_rows(path: Path, field: str = "text") -> int:
    """Check every line (as :func:`read_lines` would) and count them, keeping none."""
    rows = 0
    for _ in iter_lines(Path(path), field):
        rows += 1
    if not rows:
        raise DataError(f"{path} is empty: nothing to encode")
    return rows


# ------------------------------------------------------------------ streaming encode
def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (0 <= i < n) to ``(i, n)``; ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise DataError(f"--shard takes I/N with 0 <= I < N (for example 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise DataError(f"--shard takes I/N with 0 <= I < N (for example 0/4), got {text!r}")
    return i, n


def launcher_shard() -> tuple[int, int]:
    """This process's shard under torchrun / ``accelerate launch`` (``RANK``/``WORLD_SIZE``), else ``(0, 1)``."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def shard_rows(rows: int, chunk_size: int, shard: int, num_shards: int) -> tuple[int, int]:
    """Shard ``shard``'s rows ``(start, stop)``: a contiguous range of whole chunks, cut as training cuts
    its target blocks (:func:`text2token.distributed.block_span`)."""
    from .distributed import block_span

    return block_span(rows, chunk_size, num_shards, shard)


@dataclass
class EncodeResult:
    output: Path
    rows: int  # rows of the whole output
    dim: int
    shard: tuple[int, int]
    start: int  # this shard's rows: start .. stop
    stop: int
    resumed_rows: int  # rows of this shard already done by an earlier, interrupted run
    complete: bool  # the output file is written (all shards done)


class _Files:
    """The partial output and the progress files of one set of settings."""

    def __init__(self, output: Path, settings: dict):
        self.output = output
        self.digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        self.settings = settings
        self.partial = output.with_name(f"{output.name}.{self.digest}.partial")

    def progress(self, shard: int, num_shards: int) -> Path:
        return self.output.with_name(f"{self.output.name}.{self.digest}.progress-{shard:05d}-of-{num_shards:05d}.json")

    def all_progress(self, digest: str | None = None) -> list[Path]:
        pattern = f"{glob.escape(self.output.name)}.{digest or '*'}.progress-*-of-*.json"
        return sorted(self.output.parent.glob(pattern))

    def stale(self) -> list[Path]:
        """Partial outputs and progress files of earlier attempts with other settings (never those of
        settings a live encode is working on)."""
        names = list(self.output.parent.glob(f"{glob.escape(self.output.name)}.*.partial"))
        names += self.all_progress()
        live = {holder.get("digest") for holder in self.live_writers()}
        return [p for p in names if f".{self.digest}." not in p.name
                and not any(d and f".{d}." in p.name for d in live)]

    def lock(self, shard: int, num_shards: int) -> WriterLock:
        """One writer per shard of this output (pid and host in the lock file)."""
        path = self.output.with_name(f"{self.output.name}.shard-{shard:05d}-of-{num_shards:05d}.lock")
        return WriterLock(path, f"{self.output} (shard {shard}/{num_shards})", "written",
                          info={"digest": self.digest, "shard": [shard, num_shards]})

    def live_writers(self, mine: Path | None = None) -> list[dict]:
        """What the other live encodes into this output hold: ``{"digest", "shard", "pid", ...}``."""
        out = []
        for path in self.output.parent.glob(f"{glob.escape(self.output.name)}.shard-*-of-*.lock"):
            if mine is not None and path == mine:
                continue
            holder = read_lock(path)
            if holder and holder_alive(holder):
                out.append({**holder, "lock": str(path)})
        return out

    def check_no_rival(self, lock: WriterLock, num_shards: int) -> None:
        """Refuse while another live encode writes this output with other settings or another shard count."""
        from .files import describe_holder

        for holder in self.live_writers(mine=lock.path):
            shard = holder.get("shard") or [None, None]
            if holder.get("digest") != self.digest or shard[1] != num_shards:
                raise LockedError(f"{self.output} is being written by another encode with other settings "
                                  f"({describe_holder(holder)}): wait for it to finish or choose another --output")

    def read_progress(self, path: Path) -> dict | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return data if data.get("settings") == self.settings else None

    def write_progress(self, path: Path, start: int, stop: int, done: int) -> None:
        atomic_write_text(path, json.dumps({"settings": self.settings, "start": start, "stop": stop, "done": done}))


def check_output(input_path, output) -> None:
    """Refuse an output that is the input file, inside the input folder, or a folder (before any model is
    loaded or row encoded)."""
    input_path, output = Path(input_path), Path(output)
    if output.is_dir():
        raise DataError(f"--output {output} is a folder: give a file name, for example {output / 'embeddings.npy'}")
    if input_path.is_dir() and input_path.resolve() in output.absolute().resolve().parents:
        raise DataError(f"--output {output} is inside the input folder {input_path}: its progress files would be "
                        "read as input; choose an --output outside it")
    same = output.exists() and input_path.exists() and os.path.samefile(output, input_path)
    if same or output.absolute() == input_path.absolute():
        raise DataError(f"--output {output} is the input file: writing the embeddings there would destroy the "
                        "texts; choose another --output")
    parent = output.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"--output {output}: {parent} is a file, not a folder")


def _create_partial(path: Path, rows: int, dim: int) -> None:
    """Create the ``[rows, dim]`` float32 .npy once, even when shards race to create it."""
    if path.exists():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, dim))
    del array  # header written, data a sparse file
    try:
        os.link(tmp, path)  # atomic, and fails if another shard created it first
    except FileExistsError:
        pass
    except OSError:  # a filesystem without hard links
        if not path.exists():
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _data_offset(f, rows: int, dim: int) -> int:
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    if shape != (rows, dim) or fortran or dtype != np.dtype(np.float32):
        raise DataError(f"{f.name} is not a float32 array of shape {(rows, dim)}: delete it and start again")
    return f.tell()


def _covered(spans: list[tuple[int, int]], rows: int) -> bool:
    end = 0
    for start, stop in sorted(spans):
        if start > end:
            return False
        end = max(end, stop)
    return end >= rows


def encode_file(model, input_path, output, field: str = "text", batch_size: int = 32, normalize: bool = False,
                chunk_size: int = 4096, shard: tuple[int, int] | None = None, restart: bool = False,
                model_key: str | None = None, show_progress: bool | None = None,
                rows: int | None = None) -> EncodeResult:
    """Embed every line of ``input_path`` into the float32 ``.npy`` ``output``, streaming.

    See the module docstring for the files it keeps while it works, resuming and sharding.
    ``shard`` is ``(i, n)``; by default the launcher's rank and world size, else ``(0, 1)``.
    ``rows``: the input's row count when the caller has already checked it with :func:`count_rows`.
    """
    input_path, output = Path(input_path), Path(output)
    if chunk_size < 1 or batch_size < 1:
        raise DataError(f"chunk size and batch size must be at least 1, got {chunk_size} and {batch_size}")
    check_output(input_path, output)
    rows = count_rows(input_path, field) if rows is None else rows
    dim = model.embedding_dim
    i, n = shard or launcher_shard()
    start, stop = shard_rows(rows, chunk_size, i, n)
    stats = [(f, f.stat()) for f in input_files(input_path)]
    settings = {"input": str(input_path.resolve()), "input_bytes": sum(st.st_size for _, st in stats),
                "input_mtime_ns": max(st.st_mtime_ns for _, st in stats),
                "field": field, "rows": rows, "dim": dim, "model": model_key or model.name, "pooling": model.pooling,
                "attention": model.attention, "max_length": model.max_length, "normalize": bool(normalize),
                "batch_size": batch_size, "chunk_size": chunk_size,
                "format": 2 if input_path.suffix.lower() == ".json" else 1,  # 2: a .json read as JSON, not as lines
                "precision": getattr(model, "precision", "fp32")}  # a resume never mixes fp32 and bf16 rows
    if input_path.is_dir():  # a folder: which files, in which order, and each one's size and time
        settings["input_files"] = [[str(f.relative_to(input_path)), st.st_size, st.st_mtime_ns] for f, st in stats]
    output.parent.mkdir(parents=True, exist_ok=True)
    files = _Files(output, settings)
    with files.lock(i, n) as lock:  # a second encode of this shard refuses instead of racing this one
        files.check_no_rival(lock, n)
        return _encode_shard(model, input_path, output, files, field, rows, dim, i, n, start, stop, batch_size,
                             normalize, chunk_size, restart, show_progress)


def _encode_shard(model, input_path, output, files, field, rows, dim, i, n, start, stop, batch_size, normalize,
                  chunk_size, restart, show_progress) -> EncodeResult:
    from tqdm.auto import tqdm

    progress = files.progress(i, n)
    stale = files.stale()
    if stale:
        log.warning("ignoring %d file(s) of an unfinished encode into %s with other settings; they are removed "
                    "when this one finishes", len(stale), output)
    saved = None if restart else files.read_progress(progress)
    done = saved["done"] if saved and (saved["start"], saved["stop"]) == (start, stop) else 0
    if done:
        log.info("shard %d/%d: resuming after %d of its %d rows", i, n, done, stop - start)
    _create_partial(files.partial, rows, dim)
    files.write_progress(progress, start, stop, done)
    if show_progress is None:
        show_progress = stop - start > 4 * batch_size
    bar = tqdm(total=stop - start, initial=done, desc=f"encode {i}/{n}" if n > 1 else "encode", unit="text",
               disable=not show_progress)
    row_bytes = dim * np.dtype(np.float32).itemsize
    first = start + done
    try:
        with files.partial.open("r+b") as f:
            offset = _data_offset(f, rows, dim)
            chunk: list[str] = []
            for text in iter_lines(input_path, field, start=first, stop=stop):
                chunk.append(text)
                if len(chunk) == chunk_size:
                    first = _write_chunk(model, chunk, first, f, offset, row_bytes, batch_size, normalize)
                    files.write_progress(progress, start, stop, first - start)
                    bar.update(len(chunk))
                    chunk = []
            if chunk:
                first = _write_chunk(model, chunk, first, f, offset, row_bytes, batch_size, normalize)
                files.write_progress(progress, start, stop, first - start)
                bar.update(len(chunk))
    except OSError as exc:
        if not is_disk_full(exc, output.parent):
            raise
        raise DiskFullError(f"disk full while writing {files.partial} ({free_space(output.parent)} free; the whole "
                            f"array needs {rows * row_bytes / 2**20:.1f} MiB): free some space and run the same "
                            f"command again to continue after row {first} ({first - start} of this shard's "
                            f"{stop - start} rows are done)") from exc
    finally:
        bar.close()
    result = EncodeResult(output, rows, dim, (i, n), start, stop, done, complete=False)
    result.complete = _finish(files, rows)
    return result


def _write_chunk(model, texts, first, f, offset, row_bytes, batch_size, normalize) -> int:
    """Encode one chunk (length-sorted batches inside it), write its rows, flush; the next row."""
    vectors = np.ascontiguousarray(model.encode(texts, batch_size=batch_size, normalize=normalize,
                                                show_progress=False), dtype=np.float32)
    os.pwrite(f.fileno(), vectors.tobytes(), offset + first * row_bytes)
    os.fsync(f.fileno())  # rows on disk before the progress file says they are
    return first + len(texts)


def _finish(files: _Files, rows: int) -> bool:
    """If every row is done (by any shards), move the partial file to the output and clean up."""
    spans = []
    for path in files.all_progress(files.digest):
        data = files.read_progress(path)
        if data:
            spans.append((data["start"], data["start"] + data["done"]))
    if not _covered(spans, rows):
        return False
    try:
        os.replace(files.partial, files.output)
    except FileNotFoundError:  # another shard finished at the same moment and moved it
        if not files.output.is_file():
            raise
    for path in files.all_progress(files.digest) + files.stale():
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return True
