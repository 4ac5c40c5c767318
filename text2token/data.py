"""Training text: plain-text files (one text per line), JSONL (a named field), folders of
them, or a Hugging Face dataset name when online.

Blank lines are skipped and counted, overlong texts cut, and undecodable lines reported
with their file and line number, then skipped and counted: one bad line must not cost a
long run, and must not pass unnoticed either.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

log = logging.getLogger(__name__)
TEXT_SUFFIXES = (".txt", ".text")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


@dataclass
class CorpusStats:
    """What reading the corpus kept and skipped."""

    texts: int = 0
    blank: int = 0
    undecodable: int = 0
    missing_field: int = 0
    truncated: int = 0
    problems: list[str] = field(default_factory=list)  # the first few "file:line: what" messages

    def note(self, message: str) -> None:
        if len(self.problems) < 10:
            self.problems.append(message)
            log.warning(message)

    def summary(self) -> str:
        skipped = [f"{n} {what}" for n, what in ((self.blank, "blank"), (self.undecodable, "undecodable"),
                                                 (self.missing_field, "without the text field")) if n]
        text = f"{self.texts} texts"
        if skipped:
            text += f"; skipped {', '.join(skipped)}"
        if self.truncated:
            text += f"; {self.truncated} cut to the character limit"
        return text


def expand_sources(sources: list[str]) -> list[Path | str]:
    """Files in order; folders expand to their .txt/.jsonl files; other names are dataset ids."""
    out: list[Path | str] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + JSONL_SUFFIXES)
            if not files:
                raise DataError(f"folder {path} holds no .txt or .jsonl files")
            out.extend(files)
        elif path.is_file():
            out.append(path)
        elif _looks_like_dataset_id(source):
            out.append(source)
        else:
            raise DataError(f"training data not found: {source}")
    if not out:
        raise DataError("no training data given: pass --data FILE (or a folder, or a dataset name)")
    return out


def _looks_like_dataset_id(name: str) -> bool:
    return not name.startswith((".", "/", "~")) and Path(name).suffix.lower() not in TEXT_SUFFIXES + JSONL_SUFFIXES


def iter_texts(sources: list[str], field_name: str = "text", max_chars: int = 20000, stats: CorpusStats | None = None):
    """Yield the corpus texts, stripped, skipping what cannot be used (counted in ``stats``)."""
    stats = stats if stats is not None else CorpusStats()
    for source in expand_sources(sources):
        if isinstance(source, str):
            rows = _dataset_rows(source, field_name, stats)
        elif source.suffix.lower() in JSONL_SUFFIXES:
            rows = _jsonl_rows(source, field_name, stats)
        else:
            rows = _text_rows(source, stats)
        for text in rows:
            text = text.strip()
            if not text:
                stats.blank += 1
                continue
            if len(text) > max_chars:
                text = text[:max_chars]
                stats.truncated += 1
            stats.texts += 1
            yield text


def _lines(path: Path, stats: CorpusStats):
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                stats.undecodable += 1
                stats.note(f"{path}:{number}: not valid UTF-8 ({exc.reason} at byte {exc.start}); line skipped")


def _text_rows(path: Path, stats: CorpusStats):
    for _, line in _lines(path, stats):
        yield line


def _jsonl_rows(path: Path, field_name: str, stats: CorpusStats):
    for number, line in _lines(path, stats):
        if not line.strip():
            yield ""
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        value = row.get(field_name) if isinstance(row, dict) else None
        if not isinstance(value, str):
            stats.missing_field += 1
            stats.note(f"{path}:{number}: no string field {field_name!r}; line skipped")
            continue
        yield value


def _dataset_rows(name: str, field_name: str, stats: CorpusStats):
    try:
        import datasets

        dataset = datasets.load_dataset(name, split="train", streaming=True)
    except Exception as exc:  # offline, unknown name, ...
        raise DataError(f"{name!r} is neither a file nor a folder, and loading it as a Hugging Face dataset "
                        f"failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    for number, row in enumerate(dataset, start=1):
        value = row.get(field_name)
        if not isinstance(value, str):
            stats.missing_field += 1
            stats.note(f"{name} row {number}: no string field {field_name!r}; row skipped")
            continue
        yield value


def read_corpus(sources: list[str], field_name: str = "text", max_chars: int = 20000,
                limit: int | None = None) -> tuple[list[str], CorpusStats]:
    """Read texts (at most ``limit``); an empty result is an error, never a silently empty model."""
    stats = CorpusStats()
    texts = []
    for text in iter_texts(sources, field_name, max_chars, stats):
        texts.append(text)
        if limit is not None and len(texts) >= limit:
            break
    if not texts:
        raise DataError(f"no usable text in {', '.join(map(str, sources))} ({stats.summary()})")
    return texts, stats
