import json

import pytest

from text2token.data import read_corpus
from text2token.encoding import read_lines
from text2token.errors import DataError


def test_text_file_skips_and_counts_blank_lines(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("first text\n\n   \nsecond text\n\t\nthird\n")
    texts, stats = read_corpus([str(f)])
    assert texts == ["first text", "second text", "third"]
    assert (stats.texts, stats.blank) == (3, 3)


def test_jsonl_folder_and_several_files(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_text(json.dumps({"body": "from jsonl"}) + "\n" + json.dumps({"other": 1}) + "\n")
    (tmp_path / "d" / "b.txt").write_text("from txt\n")
    (tmp_path / "d" / "ignored.bin").write_bytes(b"\x00")
    extra = tmp_path / "extra.txt"
    extra.write_text("extra text\n")
    texts, stats = read_corpus([str(tmp_path / "d"), str(extra)], field_name="body")
    assert texts == ["from jsonl", "from txt", "extra text"]
    assert stats.missing_field == 1


def test_undecodable_line_is_reported_with_file_and_line(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"good line\n\xff\xfe broken\nanother good line\n")
    texts, stats = read_corpus([str(f)])
    assert texts == ["good line", "another good line"]
    assert stats.undecodable == 1 and f"{f}:2: not valid UTF-8" in stats.problems[0]


def test_overlong_text_is_cut(tmp_path):
    f = tmp_path / "long.txt"
    f.write_text("word " * 300_000 + "\nshort\n")
    texts, stats = read_corpus([str(f)], max_chars=1000)
    assert len(texts[0]) == 1000 and stats.truncated == 1


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_corpus_is_an_error(tmp_path, content):
    f = tmp_path / "empty.txt"
    f.write_text(content)
    with pytest.raises(DataError, match="no usable text"):
        read_corpus([str(f)])


def test_missing_file_and_bad_jsonl(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_corpus([str(tmp_path / "missing.txt")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        read_corpus([str(bad)])


def test_unknown_dataset_name_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="Hugging Face dataset"):
        read_corpus(["someone/no-such-dataset"])


def test_read_lines_for_encode_keeps_rows(tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("a\n\nb\n")
    assert read_lines(f) == ["a", "", "b"]
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"text": "x"}\n{"t": 1}\n')
    with pytest.raises(DataError, match="in.jsonl:2"):
        read_lines(bad)
