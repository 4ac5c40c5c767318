"""Local task folders: find them, tell their task type from their files, read and check their rows.

The layout is the one of ``../shared/data/README.md``; a folder per task, one JSON object per line:

=====================  ===============================================  ==========================
task type              files                                            fields of a line
=====================  ===============================================  ==========================
STS                    ``test.jsonl``                                   ``s1``, ``s2``, ``score``
PairClassification     ``test.jsonl``                                   ``s1``, ``s2``, ``label``
Classification         ``train.jsonl``, ``test.jsonl``                  ``text``, ``label``
Clustering             ``test.jsonl`` (no ``train.jsonl``)              ``text``, ``label``
Retrieval              ``corpus.jsonl``, ``queries.jsonl``,             ``id``, ``text`` (``title``);
                       ``qrels.jsonl``                                  ``id``, ``text``;
                                                                        ``qid``, ``did``, ``score``
Reranking              ``test.jsonl``                                   ``query``, ``positive``,
                                                                        ``negative`` (lists of texts)
Summarization          ``test.jsonl``                                   ``text``, ``human_summaries``,
                                                                        ``machine_summaries`` (lists
                                                                        of texts), ``relevance``
                                                                        (a number per machine
                                                                        summary)
=====================  ===============================================  ==========================

Reranking is MTEB's reranking layout (each query with its candidate documents, relevant or not);
summarization is SummEval's (each text with human summaries and scored machine summaries).

An optional ``MANIFEST.json`` in the data folder or its parent says, per task, whether the data is
exactly MTEB's (``faithful``); it is only reported, never needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EvalDataError

log = logging.getLogger(__name__)
DATA_DIR_ENV = "TEXT2TOKEN_DATA_DIR"
DEFAULT_DATA_DIR = Path("..") / "shared" / "data" / "evalsuite"

_NUMBER = "number"
_TEXT = "text"
_LABEL = "label"
_ID = "id"
_TEXTS = "texts"
_NUMBERS = "numbers"

# file -> field -> kind, per task type; a field in _OPTIONAL may be absent.
_SCHEMAS: dict[str, dict[str, dict[str, str]]] = {
    "STS": {"test": {"s1": _TEXT, "s2": _TEXT, "score": _NUMBER}},
    "PairClassification": {"test": {"s1": _TEXT, "s2": _TEXT, "label": "binary"}},
    "Classification": {"train": {"text": _TEXT, "label": _LABEL}, "test": {"text": _TEXT, "label": _LABEL}},
    "Clustering": {"test": {"text": _TEXT, "label": _LABEL}},
    "Retrieval": {
        "corpus": {"id": _ID, "title": _TEXT, "text": _TEXT},
        "queries": {"id": _ID, "text": _TEXT},
        "qrels": {"qid": _ID, "did": _ID, "score": _NUMBER},
    },
    "Reranking": {"test": {"query": _TEXT, "positive": _TEXTS, "negative": _TEXTS}},
    "Summarization": {"test": {"text": _TEXT, "human_summaries": _TEXTS, "machine_summaries": _TEXTS,
                               "relevance": _NUMBERS}},
}
_OPTIONAL = {("corpus", "title")}
_LAYOUT_HINT = (
    "expected test.jsonl with {s1, s2, score} (STS), {s1, s2, label} (pair classification), "
    "{text, label} (classification with train.jsonl, clustering without), "
    "{query, positive, negative} (reranking), {text, human_summaries, machine_summaries, relevance} "
    "(summarization), or corpus.jsonl + queries.jsonl + qrels.jsonl (retrieval)"
)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The task folder root: ``data_dir``, else $TEXT2TOKEN_DATA_DIR, else ../shared/data/evalsuite if it exists.

    A folder that holds no task folder but an ``evalsuite/`` one (like ../shared/data) stands for
    that ``evalsuite/``.
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise EvalDataError(f"{path}: data folder not found (pass an existing folder with --data-dir)")
    elif os.environ.get(DATA_DIR_ENV):
        path = Path(os.environ[DATA_DIR_ENV]).expanduser()
        if not path.is_dir():
            raise EvalDataError(f"{path}: data folder named by ${DATA_DIR_ENV} not found")
    else:
        return DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.is_dir() else None
    if not list_task_folders(path) and (path / "evalsuite").is_dir():
        return path / "evalsuite"
    return path


def list_task_folders(data_dir: Path | None) -> list[str]:
    """Names of the task folders under ``data_dir`` (those with test.jsonl or corpus.jsonl), sorted."""
    if data_dir is None:
        return []
    return sorted(
        p.name for p in data_dir.iterdir()
        if p.is_dir() and ((p / "test.jsonl").is_file() or (p / "corpus.jsonl").is_file())
    )


@dataclass(frozen=True)
class TaskFolder:
    """A local task folder, its task type and the files the evaluation reads."""

    name: str
    path: Path
    type: str
    faithful: bool | None = None
    notes: str | None = None

    @property
    def files(self) -> dict[str, Path]:
        return {split: self.path / f"{split}.jsonl" for split in _SCHEMAS[self.type]}

    def fingerprint(self) -> str:
        """A hash of the content of every file the task reads: a changed file changes it."""
        digest = hashlib.sha256(self.type.encode())
        for split, path in sorted(self.files.items()):
            digest.update(split.encode())
            try:
                digest.update(path.read_bytes())
            except OSError as error:
                raise EvalDataError(f"{path}: cannot read ({error.strerror})") from None
        return digest.hexdigest()[:16]

    def read(self) -> dict[str, list[dict[str, Any]]]:
        """Every file of the task, checked line by line: ``{"test": [...], "train": [...], ...}``."""
        check = _ROW_CHECKS.get(self.type)
        rows = {split: read_jsonl(path, _SCHEMAS[self.type][split], split, check)
                for split, path in self.files.items()}
        whole = _TASK_CHECKS.get(self.type)
        if whole is not None:
            whole(self, rows)
        return rows


def find_task_folder(data_dir: Path | None, name: str) -> TaskFolder | None:
    """The task folder ``name`` under ``data_dir``, or None when there is none."""
    if data_dir is None or not (data_dir / name).is_dir():
        return None
    path = data_dir / name
    info = _manifest(data_dir).get(name, {})
    return TaskFolder(
        name=name,
        path=path,
        type=detect_type(path),
        faithful=info.get("faithful") if isinstance(info.get("faithful"), bool) else None,
        notes=info.get("notes") if isinstance(info.get("notes"), str) else None,
    )


def detect_type(path: Path) -> str:
    """The mteb task type of a task folder, told from which files it has and the fields of its first line."""
    if any((path / f"{name}.jsonl").exists() for name in ("corpus", "queries", "qrels")):
        for name in ("corpus", "queries", "qrels"):
            if not (path / f"{name}.jsonl").is_file():
                raise EvalDataError(f"{path / f'{name}.jsonl'}: file not found (a retrieval task needs "
                                    "corpus.jsonl, queries.jsonl and qrels.jsonl)")
        return "Retrieval"
    test = path / "test.jsonl"
    if not test.is_file():
        raise EvalDataError(f"{test}: file not found ({_LAYOUT_HINT})")
    lineno, first = _first_row(test)
    keys = set(first)
    if {"query", "positive", "negative"} <= keys:
        return "Reranking"
    if {"text", "human_summaries", "machine_summaries", "relevance"} <= keys:
        return "Summarization"
    if {"s1", "s2", "score"} <= keys:
        return "STS"
    if {"s1", "s2", "label"} <= keys:
        return "PairClassification"
    if {"text", "label"} <= keys:
        return "Classification" if (path / "train.jsonl").is_file() else "Clustering"
    raise EvalDataError(f"{test}:{lineno}: cannot tell the task type from fields {sorted(keys)}; {_LAYOUT_HINT}")


def read_jsonl(path: Path, schema: dict[str, str], split: str = "",
               check: Callable[[dict[str, Any]], str | None] | None = None) -> list[dict[str, Any]]:
    """Rows of a JSONL file, each checked against ``schema`` (and by ``check``, which returns what is
    wrong with a row or None); the first bad line raises EvalDataError."""
    if not path.is_file():
        raise EvalDataError(f"{path}: file not found")
    rows = []
    seen_ids: set[str] = set()
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = _decode(path, lineno, raw)
            if not line.strip():
                continue
            row = _check_row(path, lineno, _parse_line(path, lineno, line), schema, split)
            problem = check(row) if check is not None else None
            if problem:
                raise EvalDataError(f"{path}:{lineno}: {problem}")
            if split in ("corpus", "queries"):
                if row["id"] in seen_ids:
                    raise EvalDataError(f"{path}:{lineno}: duplicate id {row['id']!r}")
                seen_ids.add(row["id"])
            rows.append(row)
    if len(rows) < 2:
        raise EvalDataError(f"{path}: {len(rows)} row(s); a task file needs at least 2")
    return rows


def _parse_line(path: Path, lineno: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise EvalDataError(f"{path}:{lineno}: invalid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(row, dict):
        raise EvalDataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
    return row


def _decode(path: Path, lineno: int, raw: bytes) -> str:
    """A line of a task file as text; bytes that are not UTF-8 are one error naming the file, line and column."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise EvalDataError(f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[error.start]:02x} at byte "
                            f"{error.start + 1} of the line); task files must be UTF-8") from None


def _first_row(path: Path) -> tuple[int, dict[str, Any]]:
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = _decode(path, lineno, raw)
            if line.strip():
                return lineno, _parse_line(path, lineno, line)
    raise EvalDataError(f"{path}: file is empty")


def _check_row(path: Path, lineno: int, row: dict[str, Any], schema: dict[str, str], split: str) -> dict[str, Any]:
    out = {}
    for field, kind in schema.items():
        if field not in row:
            if (split, field) in _OPTIONAL:
                out[field] = ""
                continue
            raise EvalDataError(f"{path}:{lineno}: missing field '{field}' (a line needs {', '.join(schema)})")
        value = row[field]
        if not _is_kind(value, kind):
            if kind in (_NUMBER, _NUMBERS) and _is_kind(value, "any number" if kind == _NUMBER else "any numbers"):
                raise EvalDataError(f"{path}:{lineno}: field '{field}' must be finite, got {value!r} (NaN and "
                                    "infinity are no scores)")
            raise EvalDataError(f"{path}:{lineno}: field '{field}' must be {_KIND_NAMES[kind]}, got {value!r}")
        out[field] = str(value) if kind == _ID else value
    return out


_KIND_NAMES = {
    _TEXT: "a string",
    _NUMBER: "a number",
    _LABEL: "a string or an integer",
    _ID: "a string or an integer",
    "binary": "0 or 1",
    _TEXTS: "a list of strings",
    _NUMBERS: "a list of numbers",
}


def _is_kind(value: Any, kind: str) -> bool:
    if kind == _TEXT:
        return isinstance(value, str)
    if kind == _NUMBER:  # json reads NaN and Infinity: never a score
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "any number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "any numbers":
        return isinstance(value, list) and all(_is_kind(v, "any number") for v in value)
    if kind == "binary":
        return value in (0, 1) and not isinstance(value, float)
    if kind == _TEXTS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == _NUMBERS:
        return isinstance(value, list) and all(_is_kind(v, _NUMBER) for v in value)
    return isinstance(value, str | int) and not isinstance(value, bool)


def _check_summarization_row(row: dict[str, Any]) -> str | None:
    if not row["human_summaries"]:
        return "field 'human_summaries' is empty (a text needs at least one human summary)"
    if not row["machine_summaries"]:
        return "field 'machine_summaries' is empty (a text needs machine summaries to score)"
    if len(row["relevance"]) != len(row["machine_summaries"]):
        return (f"field 'relevance' has {len(row['relevance'])} score(s) for {len(row['machine_summaries'])} "
                "machine summaries (one per machine summary)")
    return None


# Checks of a whole row beyond its fields' kinds, per task type.
_ROW_CHECKS: dict[str, Callable[[dict[str, Any]], str | None]] = {"Summarization": _check_summarization_row}


def _check_classes(folder: TaskFolder, rows: dict[str, list[dict[str, Any]]]) -> None:
    """A classifier needs at least two labels to learn from."""
    labels = {row["label"] for row in rows["train"]}
    if len(labels) < 2:
        raise EvalDataError(f"{folder.files['train']}: {len(labels)} label ({', '.join(map(repr, labels))}); a "
                            "classification task needs at least two")


def _check_qrels(folder: TaskFolder, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Judgements that name documents missing from the corpus score as misses: a warning with their count;
    an error when no judgement at all points into the corpus (every score would be 0)."""
    corpus = {doc["id"] for doc in rows["corpus"]}
    outside = [row for row in rows["qrels"] if row["did"] not in corpus]
    if not outside:
        return
    qrels = folder.files["qrels"]
    inside_queries = {row["qid"] for row in rows["qrels"] if row["did"] in corpus}
    if not inside_queries:
        raise EvalDataError(f"{qrels}: none of its {len(rows['qrels'])} judgement(s) names a document of "
                            f"{folder.files['corpus'].name} (first: {outside[0]['did']!r}); the corpus and "
                            "the judgements do not belong together")
    lost = {row["qid"] for row in outside} - inside_queries
    log.warning("%s: %d of %d judgement(s) name documents not in %s (for example %r); they count as misses%s",
                qrels, len(outside), len(rows["qrels"]), folder.files["corpus"].name, outside[0]["did"],
                f", and {len(lost)} quer{'y has' if len(lost) == 1 else 'ies have'} no judged document in the "
                "corpus" if lost else "")


# Checks of a whole task (across its rows and files), per task type.
_TASK_CHECKS: dict[str, Callable[[TaskFolder, dict[str, list[dict[str, Any]]]], None]] = {
    "Classification": _check_classes, "Retrieval": _check_qrels}


def _manifest(data_dir: Path) -> dict[str, Any]:
    for path in (data_dir / "MANIFEST.json", data_dir.parent / "MANIFEST.json"):
        if path.is_file():
            try:
                tasks = json.loads(path.read_text(encoding="utf-8")).get("tasks", {})
            except (json.JSONDecodeError, AttributeError) as error:
                raise EvalDataError(f"{path}: not a valid manifest ({error})") from None
            return tasks if isinstance(tasks, dict) else {}
    return {}
