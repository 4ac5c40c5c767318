"""Reading texts to embed: one per line (blank lines kept, so rows match lines), or JSONL."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import DataError


def read_lines(path: Path, field: str = "text") -> list[str]:
    """Texts of ``path`` in order; an undecodable or malformed line is an error naming it."""
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    texts = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
            if jsonl:
                try:
                    value = json.loads(line).get(field) if line.strip() else ""
                except (json.JSONDecodeError, AttributeError) as exc:
                    raise DataError(f"{path}:{number}: not a JSON object") from exc
                if not isinstance(value, str):
                    raise DataError(f"{path}:{number}: no string field {field!r}")
                line = value
            texts.append(line)
    if not texts:
        raise DataError(f"{path} is empty: nothing to encode")
    return texts
