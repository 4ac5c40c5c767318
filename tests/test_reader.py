"""The one reader of text inputs (``text2token.data.read_rows``): train, encode and the demo read a file
the same way (``.json`` included); train skips and counts bad lines, encode refuses them; it streams."""

from __future__ import annotations

import json

import numpy as np
import pytest

from text2token.cli import main
from text2token.data import read_corpus, read_rows
from text2token.encoding import count_rows, iter_lines, read_lines
from text2token.errors import DataError

TEXTS = ["The cat sat on the mat.", "Rain fell on the city.", "Economists study inflation."]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(params=[".jsonl", ".json", ".ndjson"])
def json_lines(request, tmp_path):
    return write(tmp_path / f"in{request.param}", "".join(json.dumps({"text": t, "n": i}) + "\n"
                                                          for i, t in enumerate(TEXTS)))


def test_json_lines_mean_the_same_to_train_and_encode_whatever_the_suffix(json_lines):
    assert read_corpus([str(json_lines)])[0] == TEXTS
    assert read_lines(json_lines) == TEXTS
    assert count_rows(json_lines) == 3


@pytest.mark.parametrize("document", [
    [{"text": t} for t in TEXTS],
    TEXTS,  # a list of strings
    {f"id{i}": {"text": t, "title": f"t{i}"} for i, t in enumerate(TEXTS)},  # an object whose values are the rows
])
@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_document_is_read_as_its_rows_by_train_and_encode(tmp_path, document, indent):
    path = write(tmp_path / "doc.json", json.dumps(document, indent=indent))
    if isinstance(document, dict) and indent is None:  # one line holding one object: a JSON line
        assert [r.kind for r in read_rows(path)] == ["no_field"]
        return
    assert read_corpus([str(path)])[0] == TEXTS
    assert read_lines(path) == TEXTS
    assert list(iter_lines(path, start=1, stop=2)) == TEXTS[1:2]


def test_encode_reads_a_json_file_as_train_does(tiny_llama, tmp_path):
    """`encode --input x.json` embeds the texts of its JSON lines (it used to embed the raw JSON lines)."""
    rows = "".join(json.dumps({"text": t}) + "\n" for t in TEXTS)
    as_json, as_jsonl = write(tmp_path / "x.json", rows), write(tmp_path / "x.jsonl", rows)
    plain = write(tmp_path / "x.txt", "\n".join(TEXTS) + "\n")
    raw = write(tmp_path / "raw.txt", rows)  # what the old reader embedded
    out = {}
    for name, path in (("json", as_json), ("jsonl", as_jsonl), ("txt", plain), ("raw", raw)):
        assert main(["encode", tiny_llama, "--input", str(path), "--output", str(tmp_path / f"{name}.npy"),
                     "--batch-size", "2"]) == 0
        out[name] = np.load(tmp_path / f"{name}.npy")
    assert out["json"].shape == (3, out["txt"].shape[1])
    assert np.array_equal(out["json"], out["jsonl"]) and np.array_equal(out["json"], out["txt"])
    assert np.abs(out["json"] - out["raw"]).max() > 1e-3
    assert read_corpus([str(as_json)])[0] == read_lines(as_json) == TEXTS


def test_bad_rows_train_skips_and_counts_them_encode_names_them(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"text": "one"}\n\n{"other": 1}\n[1, 2]\n{"text": "caf\xe9"}\n{"text": "two"}\n')
    texts, stats = read_corpus([str(path)])
    assert texts == ["one", "two"]
    assert (stats.blank, stats.missing_field, stats.undecodable) == (1, 2, 1)
    assert stats.problems == [f"{path}:3: no string field 'text'; line skipped",
                              f"{path}:4: no string field 'text' (a JSON list, not an object); line skipped",
                              f"{path}:5: not valid UTF-8 (invalid continuation byte at byte 13); line skipped"]
    assert list(iter_lines(path, stop=2)) == ["one", ""]  # a blank line is a row for encode
    with pytest.raises(DataError, match=r"mixed.jsonl:3: no string field 'text'$"):
        read_lines(path)
    broken = write(tmp_path / "broken.json", '{"text": "ok"}\n{broken\n')
    for read in (lambda: read_corpus([str(broken)]), lambda: read_lines(broken)):
        with pytest.raises(DataError, match=r"broken.json:2: not valid JSON .*one JSON object per line"):
            read()


def test_the_reader_streams(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"first\nsecond\n\xff bad\nlast\n")
    rows = read_rows(path)
    assert next(rows).text == "first"  # read lazily: the bad line further on is not reached yet
    assert [r.text for r in read_rows(path, start=3)] == ["last"]  # rows before start are not parsed
    assert list(iter_lines(path, start=3)) == ["last"]
    with pytest.raises(DataError, match=r"big.txt:3: not valid UTF-8"):
        list(iter_lines(path))
    # the training policy reads the same rows, skipping the undecodable one
    assert read_corpus([str(path)])[0] == ["first", "second", "last"]


def test_demo_corpus_reads_with_the_one_reader(tmp_path):
    from text2token import demo

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "wiki_00.txt").write_bytes(b"  one text  \n\n\xff\xfe\nsecond text\nthird\n")
    path = demo.demo_corpus(tmp_path, 5, tmp_path / "out")
    assert path.read_text().splitlines() == ["one text", "second text", "third"]
