"""Text inputs: the one reader of plain-text files (one text per line), JSON lines (a named string
field), ``.json`` files and folders of them, for ``train``, ``encode`` and the demo; and the
training corpus built from them (or from a Hugging Face dataset name when online).

:func:`read_rows` reads one file, streaming, and yields a :class:`Row` per line (or per item of a
``.json`` document) with what is wrong with it, if anything. Each caller applies its own policy:

* training (:func:`iter_texts`, :func:`read_corpus`): blank lines are skipped and counted, overlong
  texts cut, and undecodable lines or lines without the text field reported with their file and
  line number, then skipped and counted: one bad line must not cost a long run, and must not pass
  unnoticed either. A line that is not JSON at all is an error.
* ``encode`` (:mod:`text2token.encoding`): every row is kept (a blank line is the empty text), and
  any bad row is an error naming it.

Formats, by suffix: ``.jsonl``/``.ndjson`` are JSON lines; ``.json`` is JSON lines too, unless its
first line is not a JSON object on its own, in which case the whole file is read as one JSON list
of rows (or an object whose values are the rows), each row an object with the field or a string;
anything else is plain text, one text per line (its line ending removed).

:func:`corpus_split` gives each stage of a run its texts (read once, shuffled with the run's seed).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DataError

if TYPE_CHECKING:
    from .config import TrainConfig

log = logging.getLogger(__name__)
TEXT_SUFFIXES = (".txt", ".text")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
JSON_DOCUMENT_MAX_BYTES = 1 << 28  # a larger .json is read as JSON lines only (a document is parsed in memory)
_JSON_HINT = "; a .json file holds one JSON object per line, or one JSON list of rows"


@dataclass(frozen=True)
class Row:
    """One row of a text input: ``text``, or ``None`` and the ``problem`` (``kind``: ``"undecodable"``,
    ``"bad_json"`` or ``"no_field"``). ``where``: ``FILE:LINE``, or ``FILE item N`` in a JSON document."""

    where: str
    text: str | None
    problem: str = ""
    kind: str = ""

    @property
    def unit(self) -> str:
        return "item" if " item " in self.where else "line"


def is_json(path) -> bool:
    """Read as JSON (lines, or a ``.json`` document) rather than as plain text?"""
    return Path(path).suffix.lower() in JSONL_SUFFIXES


def read_rows(path, field_name: str = "text", start: int = 0, stop: int | None = None):
    """The rows ``start`` to ``stop`` (0-based, end excluded) of one text input file, one at a time.

    Streams: lines are read as they are needed, and rows before ``start`` are not parsed (a ``.json``
    document is the exception: it is parsed whole). A file that cannot be opened is a :class:`DataError`.
    """
    path = Path(path)
    items = _json_document(path) if path.suffix.lower() == ".json" else None
    if items is not None:
        for number, item in enumerate(items[start:stop], start=start + 1):
            where = f"{path} item {number}"
            yield Row(where, item) if isinstance(item, str) else _field(where, item, field_name)
        return
    json_lines = is_json(path)
    hint = _JSON_HINT if path.suffix.lower() == ".json" else ""
    with _open(path) as handle:
        for row, raw in enumerate(handle):
            if stop is not None and row >= stop:
                return
            if row >= start:
                yield _line(raw, f"{path}:{row + 1}", json_lines, field_name, hint)


def file_rows(path) -> int:
    """How many rows :func:`read_rows` yields for ``path``, without parsing them (lines of a text or JSON
    lines file, items of a ``.json`` document)."""
    path = Path(path)
    items = _json_document(path) if path.suffix.lower() == ".json" else None
    if items is not None:
        return len(items)
    with _open(path) as handle:
        return sum(1 for _ in handle)


def _open(path: Path):
    try:
        return path.open("rb")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _line(raw: bytes, where: str, json_lines: bool, field_name: str, hint: str) -> Row:
    try:
        line = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        return Row(where, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})", "undecodable")
    if not json_lines:
        return Row(where, line)
    if not line.strip():
        return Row(where, "")
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return Row(where, None, f"not valid JSON ({exc.msg}){hint}", "bad_json")
    return _field(where, value, field_name)


def _field(where: str, value, field_name: str) -> Row:
    text = value.get(field_name) if isinstance(value, dict) else None
    if isinstance(text, str):
        return Row(where, text)
    what = "" if isinstance(value, dict) else f" (a JSON {type(value).__name__}, not an object)"
    return Row(where, None, f"no string field {field_name!r}{what}", "no_field")


def _json_document(path: Path) -> list | None:
    """The rows of a ``.json`` file that is one JSON document (a list of rows, or an object whose values
    are the rows), or ``None``: the file is JSON lines (its first line is a JSON object on its own), or
    no JSON document at all (then JSON lines too, so the error names the first bad line)."""
    try:
        if path.stat().st_size > JSON_DOCUMENT_MAX_BYTES:
            return None
        with path.open("rb") as handle:
            for raw in handle:
                if raw.strip():
                    try:
                        if isinstance(json.loads(raw), dict):
                            return None
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        pass
                    break
            else:
                return None  # empty
            handle.seek(0)
            document = json.loads(handle.read())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(document, dict):
        return list(document.values())
    return document if isinstance(document, list) else None


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


def folder_files(folder: Path) -> list[Path]:
    """The text input files of a folder (``.txt``, ``.jsonl``, ``.json``, ...; subfolders too, hidden files and
    folders not), sorted by path: what ``train --data FOLDER`` and ``encode --input FOLDER`` read."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES + JSONL_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def expand_sources(sources: list[str]) -> list[Path | str]:
    """Files in order; folders expand to their .txt/.jsonl files; other names are dataset ids."""
    out: list[Path | str] = []
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            files = folder_files(path)
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


def iter_texts(sources: list[str], field_name: str = "text", max_chars: int | None = 20000,
               stats: CorpusStats | None = None):
    """Yield the corpus texts, stripped, skipping what cannot be used (counted in ``stats``);
    ``max_chars=None``: no cut."""
    stats = stats if stats is not None else CorpusStats()
    for source in expand_sources(sources):
        rows = _dataset_rows(source, field_name, stats) if isinstance(source, str) else _file_texts(source, field_name, stats)
        for text in rows:
            text = text.strip()
            if not text:
                stats.blank += 1
                continue
            if max_chars is not None and len(text) > max_chars:
                text = text[:max_chars]
                stats.truncated += 1
            stats.texts += 1
            yield text


def _file_texts(path: Path, field_name: str, stats: CorpusStats):
    """The training policy over :func:`read_rows`: bad lines counted and skipped, a non-JSON line an error."""
    for row in read_rows(path, field_name):
        if row.text is not None:
            yield row.text
        elif row.kind == "bad_json":
            raise DataError(f"{row.where}: {row.problem}")
        else:
            if row.kind == "undecodable":
                stats.undecodable += 1
            else:
                stats.missing_field += 1
            stats.note(f"{row.where}: {row.problem}; {row.unit} skipped")


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


def read_corpus(sources: list[str], field_name: str = "text", max_chars: int | None = 20000,
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


def corpus_split(config: TrainConfig, world_size: int = 1):
    """Read each stage's corpus once; shuffle it (seeded) and give each stage its own texts.

    With one corpus for both stages (``data``), stage 2 takes the texts after stage 1's. With
    ``stage1_data`` / ``stage2_data``, each stage draws from its own corpus, and ``"all"`` (the
    stage-2 background's sample) is the stage-2 corpus, as in the prototype.
    """
    need = {s: config.steps_of[s] * config.batch_size * config.grad_accum * world_size for s in config.stages}
    sources = {stage: tuple(config.data_of(stage)) for stage in ("data", "model")}
    read: dict[tuple, list[str]] = {}
    stats = None
    for stage in ("model", "data"):  # the stage-2 corpus is the one the summary describes when both differ
        if stage not in config.stages and not (stage == "model" and "simcse" in config.stages):
            continue
        if sources[stage] not in read:
            texts, found = read_corpus(list(sources[stage]), config.data_field, config.max_chars)
            log.info("corpus %s: %s", ", ".join(sources[stage]), found.summary())
            order = list(range(len(texts)))
            random.Random(config.seed).shuffle(order)
            read[sources[stage]] = [texts[i] for i in order]
            stats = stats or found
    shuffled2 = read.get(sources["model"]) or read[sources["data"]]
    # exactly steps x global batch texts (the corpus repeated if it is smaller): every step sees a
    # full batch, so a run gives the same batches whatever the number of processes
    stage1 = _cycle(read[sources["data"]], need.get("data", 0)) if "data" in need else []
    if sources["data"] == sources["model"]:
        # stage 2 takes the texts after stage 1's where the corpus is large enough, else wraps around
        start = len(stage1) % len(shuffled2)
        rotated = shuffled2[start:] + shuffled2[:start]
    else:
        rotated = shuffled2
    stage2 = _cycle(rotated, need.get("model", 0))
    simcse = _cycle(shuffled2, need.get("simcse", 0))  # the texts of stage 1 then stage 2 of a Text2Token run
    return {"data": stage1, "model": stage2, "simcse": simcse, "all": shuffled2}, stats


def _cycle(items: list, count: int) -> list:
    """The first ``count`` items of ``items`` repeated end to end."""
    if len(items) >= count:
        return items[:count]
    return [items[i % len(items)] for i in range(count)]
