"""Streaming `text2token encode`: chunks, resume after an interruption, shards, blank lines."""

import json

import numpy as np
import pytest

import text2token
from text2token.cli import main
from text2token.encoding import shard_rows

LINES = ["The cat sat on the mat.", "", "Economists study inflation, interest rates and unemployment.",
         "Rain fell.", "A quick brown fox jumps over the lazy dog near the river.", "  ", "Volcanoes erupt.",
         "Computers process data using binary numbers and logic gates."] * 3  # 24 rows, 6 of them blank


@pytest.fixture()
def lines_file(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("\n".join(LINES) + "\n")
    return path


def encode(model, inp, out, *extra):
    return main(["encode", model, "--input", str(inp), "--output", str(out), "--chunk-size", "5",
                 "--batch-size", "2", *extra])


def leftovers(out):
    return sorted(p.name for p in out.parent.glob(out.name + ".*"))


def test_streamed_rows_match_lines_and_in_memory_encode(tiny_llama, lines_file, tmp_path):
    out = tmp_path / "v.npy"
    assert encode(tiny_llama, lines_file, out, "--normalize") == 0
    arr = np.load(out)
    expected = text2token.load(tiny_llama).encode(LINES, normalize=True)
    assert arr.shape == (len(LINES), expected.shape[1]) and arr.dtype == np.float32  # blank lines are rows
    assert np.abs(arr - expected).max() <= 1e-5
    assert np.allclose(arr[1], arr[9], atol=1e-6)  # a blank line is the empty text, wherever it is
    assert leftovers(out) == []

    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("\n".join(json.dumps({"body": t}) if t else "" for t in LINES) + "\n")
    assert main(["encode", tiny_llama, "--input", str(jsonl), "--output", str(tmp_path / "j.npy"),
                 "--field", "body", "--chunk-size", "5", "--batch-size", "2", "--normalize"]) == 0
    assert np.abs(np.load(tmp_path / "j.npy") - arr).max() <= 1e-5


def test_interrupted_encode_resumes_to_the_same_array(tiny_llama, lines_file, tmp_path, monkeypatch, capsys):
    import text2token.encoding as encoding

    reference = tmp_path / "ref.npy"
    assert encode(tiny_llama, lines_file, reference) == 0
    real, calls = encoding._write_chunk, {"n": 0}

    def crash(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args)

    out = tmp_path / "v.npy"
    monkeypatch.setattr(encoding, "_write_chunk", crash)
    assert encode(tiny_llama, lines_file, out) == 130
    assert not out.exists()
    progress = [p for p in out.parent.glob("v.npy.*.progress-*.json")]
    assert len(progress) == 1 and json.loads(progress[0].read_text())["done"] == 10  # two chunks of 5

    chunks = []
    monkeypatch.setattr(encoding, "_write_chunk", lambda *a: chunks.append(len(a[1])) or real(*a))
    assert encode(tiny_llama, lines_file, out) == 0
    assert chunks == [5, 5, 4]  # only the rows not done before
    assert np.array_equal(np.load(out), np.load(reference))
    assert leftovers(out) == []
    assert "wrote 24 x" in capsys.readouterr().out


def test_shards_write_one_array_equal_to_one_process(tiny_llama, lines_file, tmp_path, monkeypatch):
    reference = tmp_path / "ref.npy"
    assert encode(tiny_llama, lines_file, reference) == 0
    out = tmp_path / "v.npy"
    for i in (2, 0):  # any order; the output appears when the last shard is done
        assert encode(tiny_llama, lines_file, out, "--shard", f"{i}/3") == 0
        assert not out.exists()
    assert encode(tiny_llama, lines_file, out, "--shard", "1/3") == 0
    assert np.array_equal(np.load(out), np.load(reference)) and leftovers(out) == []

    # under torchrun / accelerate launch each rank takes its shard from RANK and WORLD_SIZE
    launched = tmp_path / "launched.npy"
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert encode(tiny_llama, lines_file, launched) == 0
    assert np.array_equal(np.load(launched), np.load(reference))


def test_shard_ranges_are_whole_chunks_covering_every_row():
    for rows, chunk, n in [(24, 5, 3), (7, 5, 4), (1, 4096, 2), (100, 10, 10)]:
        ranges = [shard_rows(rows, chunk, i, n) for i in range(n)]
        assert ranges[0][0] == 0 and ranges[-1][1] == rows
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert all(start % chunk == 0 for start, _ in ranges)


def test_other_settings_start_afresh_and_restart_redoes(tiny_llama, lines_file, tmp_path, monkeypatch):
    import text2token.encoding as encoding

    real = encoding._write_chunk
    out = tmp_path / "v.npy"
    monkeypatch.setattr(encoding, "_write_chunk", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    assert encode(tiny_llama, lines_file, out) == 130  # an unfinished encode without --normalize ...
    monkeypatch.setattr(encoding, "_write_chunk", real)
    assert encode(tiny_llama, lines_file, out, "--normalize") == 0  # ... is not mixed into this one
    norms = np.linalg.norm(np.load(out), axis=1)
    assert np.allclose(norms, 1, atol=1e-5) and leftovers(out) == []

    chunks = []
    monkeypatch.setattr(encoding, "_write_chunk", lambda *a: chunks.append(1) or real(*a))
    assert encode(tiny_llama, lines_file, out, "--shard", "0/2") == 0
    assert encode(tiny_llama, lines_file, out, "--shard", "0/2", "--restart") == 0
    assert len(chunks) == 4  # shard 0/2 is chunks 0-1 of 5: done, then done again
    assert len(list(tmp_path.glob("v.npy.*.partial"))) == 1  # shard 1/2 has not run: no output yet


@pytest.mark.parametrize("argv, message", [
    (["--shard", "2/2"], "--shard takes I/N"),
    (["--shard", "x"], "--shard takes I/N"),
    (["--chunk-size", "0"], "at least 1"),
])
def test_bad_encode_flags(tiny_llama, lines_file, tmp_path, capsys, argv, message):
    assert main(["encode", tiny_llama, "--input", str(lines_file), "--output", str(tmp_path / "v.npy"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_empty_input_is_an_error(tiny_llama, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["encode", tiny_llama, "--input", str(empty), "--output", str(tmp_path / "v.npy")]) == 2
    assert "is empty" in capsys.readouterr().err


def test_disk_full_is_one_line_and_the_encode_resumes(tiny_llama, lines_file, tmp_path, monkeypatch, capsys):
    import errno
    import os

    reference = tmp_path / "ref.npy"
    assert encode(tiny_llama, lines_file, reference) == 0
    real, calls = os.pwrite, {"n": 0}

    def full(fd, data, offset):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    out = tmp_path / "v.npy"
    monkeypatch.setattr(os, "pwrite", full)
    assert encode(tiny_llama, lines_file, out) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("text2token: error: disk full while writing") and "after row 5" in err
    monkeypatch.setattr(os, "pwrite", real)
    assert encode(tiny_llama, lines_file, out) == 0
    assert np.array_equal(np.load(out), np.load(reference)) and leftovers(out) == []


def test_a_folder_input_is_its_files_in_order(tiny_llama, tmp_path, capsys):
    """encode --input FOLDER: its text files (subfolders too, hidden ones not) one after the other in sorted
    order, rows as `train --data FOLDER` reads them; ranges that start or stop inside a file; an output
    inside the folder is refused before the model loads."""
    from text2token.encoding import input_files, iter_lines

    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    (folder / "a.txt").write_text("\n".join(LINES[:5]) + "\n")
    (folder / "sub" / "b.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in LINES[5:9]) + "\n")
    (folder / "c.json").write_text(json.dumps(LINES[9:12]))
    (folder / "notes.md").write_text("not read")
    (folder / ".hidden" / "x.txt").write_text("not read either\n")
    assert [p.relative_to(folder).as_posix() for p in input_files(folder)] == ["a.txt", "c.json", "sub/b.jsonl"]
    expected_texts = LINES[:5] + LINES[9:12] + LINES[5:9]
    assert list(iter_lines(folder)) == expected_texts
    for start, stop in [(0, 3), (3, 7), (5, 8), (6, None), (11, None), (2, 2)]:
        assert list(iter_lines(folder, start=start, stop=stop)) == expected_texts[start:stop], (start, stop)

    out = tmp_path / "v.npy"
    assert encode(tiny_llama, folder, out) == 0
    expected = text2token.load(tiny_llama).encode(expected_texts)
    assert np.abs(np.load(out) - expected).max() <= 1e-5

    assert encode(tiny_llama, folder, folder / "v.npy") == 2
    assert "is inside the input folder" in capsys.readouterr().err and not (folder / "v.npy").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert encode(tiny_llama, empty, tmp_path / "e.npy") == 2
    assert f"input folder {empty} holds no .txt, .jsonl or .json files" in capsys.readouterr().err
