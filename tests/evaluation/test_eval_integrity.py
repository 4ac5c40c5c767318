"""Issue 13 for evaluation: a changed backbone is noticed by the score cache, every results and cache
write is atomic and its filesystem errors are one line, and task rows are checked like training rows
(UTF-8, finite numbers, at least two labels, judgements that point into the corpus)."""

from __future__ import annotations

import errno
import json
import logging

import numpy as np
import pytest

import text2token.files as files
from text2token.cli import main
from text2token.evaluation import evaluate
from text2token.evaluation.errors import EvalDataError, EvalError
from cli_checks import fails, refuse_writes_under


# ------------------------------------------------------------------ a changed backbone
@pytest.fixture()
def run_on_backbone(run_folder, tmp_path):
    """The fake run folder, its record naming a backbone folder with a weight file of 3 MiB."""
    folder, loaded = run_folder
    backbone = tmp_path / "backbone"
    backbone.mkdir()
    weights = np.random.default_rng(0).standard_normal(3 * 2**18).astype(np.float32)  # 3 MiB
    (backbone / "model.safetensors").write_bytes(weights.tobytes())
    (backbone / "config.json").write_text("{}")
    (folder / "text2token_config.json").write_text(json.dumps({"model": {"backbone": str(backbone)}}))
    return folder, loaded, backbone


def test_the_score_cache_notices_a_changed_backbone_of_a_run(data_dir, run_on_backbone, tmp_path):
    folder, loaded, backbone = run_on_backbone
    kwargs = dict(data_dir=data_dir, cache_dir=tmp_path / "cache", show_progress=False)
    first = evaluate(str(folder), ["TinySTS"], **kwargs)
    assert len(loaded) == 1 and len(first["models"][0]["backbone"]) == 16
    assert evaluate(str(folder), ["TinySTS"], **kwargs)["results"][0]["cached"] is True
    assert len(loaded) == 1
    # the backbone's last MiB changes (same size), the run folder's own files do not: computed again
    weights = backbone / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"
    weights.write_bytes(bytes(data))
    again = evaluate(str(folder), ["TinySTS"], **kwargs)
    assert len(loaded) == 2 and again["results"][0]["cached"] is False
    assert again["models"][0]["backbone"] != first["models"][0]["backbone"]
    assert again["models"][0]["files"] == first["models"][0]["files"]  # the run folder itself is unchanged


def test_weights_fingerprint_reads_only_the_edges(tmp_path):
    big = tmp_path / "w.safetensors"
    big.write_bytes(bytes(range(256)) * (3 * 2**12))  # 3 MiB
    before = files.weights_fingerprint(tmp_path)
    data = bytearray(big.read_bytes())
    data[2**20 + 10] ^= 0xFF  # the middle MiB: not read (size and mtime still tell most edits)
    big.write_bytes(bytes(data))
    middle = files.weights_fingerprint(tmp_path)
    assert middle["content"] == before["content"]
    data[5] ^= 0xFF  # the first MiB: noticed
    big.write_bytes(bytes(data))
    assert files.weights_fingerprint(tmp_path)["content"] != before["content"]
    assert files.weights_fingerprint(tmp_path / "nothing") is None
    assert set(before["files"]) == {"w.safetensors"} and before["files"]["w.safetensors"]["bytes"] == 3 * 2**20


# ------------------------------------------------------------------ atomic writes, one-line filesystem errors
def eval_argv(folder, data_dir, tmp_path, *extra):
    return ["eval", folder, "--tasks", "TinySTS", "--data-dir", data_dir, "--cache-dir", tmp_path / "cache",
            "--quiet", *extra]


def test_eval_output_on_a_full_disk_keeps_the_previous_results(data_dir, run_folder, tmp_path, capsys, monkeypatch):
    folder, loaded = run_folder
    output = tmp_path / "results.json"
    assert main([str(a) for a in eval_argv(folder, data_dir, tmp_path, "--output", output)]) == 0
    previous = output.read_bytes()
    assert json.loads(previous)["results"][0]["task"] == "TinySTS"
    capsys.readouterr()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    line = fails(eval_argv(folder, data_dir, tmp_path, "--output", output), capsys, "disk full while saving")
    assert str(output) in line
    assert output.read_bytes() == previous  # not truncated JSON
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file left


def test_eval_output_problems_are_one_line_before_any_evaluation(data_dir, run_folder, tmp_path, capsys, monkeypatch):
    folder, loaded = run_folder
    (tmp_path / "a-file").write_text("x")
    line = fails(eval_argv(folder, data_dir, tmp_path, "--output", tmp_path / "a-file" / "results.json"), capsys,
                 "is a file, not a folder")
    assert str(tmp_path / "a-file") in line
    (tmp_path / "a-folder").mkdir()
    fails(eval_argv(folder, data_dir, tmp_path, "--output", tmp_path / "a-folder"), capsys, "is a folder, not a file")
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    refuse_writes_under(monkeypatch, read_only)
    line = fails(eval_argv(folder, data_dir, tmp_path, "--output", read_only / "results.json"), capsys,
                 "is not writable (Permission denied)")
    assert str(read_only) in line
    assert loaded == []  # refused before the model was loaded


def test_a_read_only_score_cache_is_one_line_before_any_evaluation(data_dir, run_folder, tmp_path, capsys,
                                                                   monkeypatch):
    folder, loaded = run_folder
    refuse_writes_under(monkeypatch, tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    line = fails(eval_argv(folder, data_dir, tmp_path), capsys, "the score cache cannot be written there")
    assert str(tmp_path / "cache") in line and "Permission denied" in line and "--no-cache" in line
    assert loaded == []
    assert main([str(a) for a in eval_argv(folder, data_dir, tmp_path, "--no-cache")]) == 0  # the way out works


def test_a_cache_entry_is_written_atomically(data_dir, run_folder, tmp_path, monkeypatch):
    folder, loaded = run_folder
    kwargs = dict(data_dir=data_dir, cache_dir=tmp_path / "cache", show_progress=False)
    calls = []
    real = files.atomic_write_text
    monkeypatch.setattr(files, "atomic_write_text", lambda path, text: (calls.append(path), real(path, text)))
    evaluate(str(folder), ["TinySTS"], **kwargs)
    entries = sorted((tmp_path / "cache").glob("*.json"))
    assert len(entries) == 1 and entries[0] in calls
    assert json.loads(entries[0].read_text())["entry"]["task"] == "TinySTS"
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ rows checked like training rows
def test_non_utf8_bytes_in_a_task_file_name_the_file_and_line(data_dir, fake_model):
    test = data_dir / "TinySTS" / "test.jsonl"
    lines = test.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"dogs", b"d\xffgs")
    test.write_bytes(b"".join(lines))
    with pytest.raises(EvalDataError) as error:
        evaluate(fake_model, ["TinySTS"], data_dir=data_dir, use_cache=False, show_progress=False)
    assert str(error.value) == (f"{test}:3: not valid UTF-8 (byte 0xff at byte 10 of the line); "
                                "task files must be UTF-8")
    first = data_dir / "TinyPairs" / "test.jsonl"  # in the first line, read to tell the task type
    first.write_bytes(b'{"s1": "\xe9t\xe9", "s2": "x", "label": 1}\n' + first.read_bytes())
    with pytest.raises(EvalDataError, match=r"TinyPairs/test.jsonl:1: not valid UTF-8"):
        evaluate(fake_model, ["TinyPairs"], data_dir=data_dir, use_cache=False, show_progress=False)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_score_in_a_task_file_is_refused(data_dir, fake_model, value):
    test = data_dir / "TinySTS" / "test.jsonl"
    lines = test.read_text().splitlines()
    lines[1] = lines[1].replace('"score": 3.5', f'"score": {value}')
    test.write_text("\n".join(lines) + "\n")
    with pytest.raises(EvalDataError, match=r"test.jsonl:2: field 'score' must be finite, got -?(nan|inf)"):
        evaluate(fake_model, ["TinySTS"], data_dir=data_dir, use_cache=False, show_progress=False)


class ConstantEmbedder:
    """Every text the same vector: a correlation of cosine similarities is NaN."""

    name, embedding_dim = "constant", 8

    def encode(self, texts, batch_size=32, normalize=False, show_progress=False):
        return np.ones((len(texts), self.embedding_dim), dtype=np.float32)


def test_a_nan_main_score_is_an_error_never_cached_nor_printed(data_dir, run_folder, tmp_path, capsys, monkeypatch):
    folder, _ = run_folder
    monkeypatch.setattr("text2token.evaluation.encoder.load_text2token_model", lambda *a, **k: ConstantEmbedder())
    with pytest.raises(EvalError) as error:
        evaluate(str(folder), ["TinySTS"], data_dir=data_dir, cache_dir=tmp_path / "cache", show_progress=False)
    assert str(error.value).startswith(f"task TinySTS, model {folder}: the main score (cosine_spearman) is nan")
    assert list((tmp_path / "cache").glob("*.json")) == []  # nothing cached
    line = fails(eval_argv(folder, data_dir, tmp_path), capsys, "task TinySTS, model")
    assert "is nan" in line
    assert "| Model" not in capsys.readouterr().out  # no table with a NaN in it


def test_a_cached_nan_from_an_older_version_is_computed_again(data_dir, run_folder, tmp_path):
    from text2token.evaluation.runner import ScoreCache

    folder, loaded = run_folder
    kwargs = dict(data_dir=data_dir, cache_dir=tmp_path / "cache", show_progress=False)
    evaluate(str(folder), ["TinySTS"], **kwargs)
    entry = next((tmp_path / "cache").glob("*.json"))
    saved = json.loads(entry.read_text())
    saved["entry"]["main_score"] = float("nan")
    entry.write_text(json.dumps(saved))
    assert ScoreCache(tmp_path / "cache").get(entry.stem) is None
    again = evaluate(str(folder), ["TinySTS"], **kwargs)
    assert again["results"][0]["cached"] is False and np.isfinite(again["results"][0]["main_score"])


def test_a_classification_task_with_one_label_is_refused(data_dir, fake_model, kit):
    train = data_dir / "TinyClassification" / "train.jsonl"
    kit.write_jsonl(train, [{**row, "label": "fruit"} for row in kit.CLASS_TRAIN])
    with pytest.raises(EvalDataError) as error:
        evaluate(fake_model, ["TinyClassification"], data_dir=data_dir, use_cache=False, show_progress=False)
    assert str(error.value) == f"{train}: 1 label ('fruit'); a classification task needs at least two"


def test_qrels_outside_the_corpus_warn_with_a_count_or_fail_when_none_is_inside(data_dir, fake_model, kit, caplog):
    qrels = data_dir / "TinyRetrieval" / "qrels.jsonl"
    kit.write_jsonl(qrels, kit.QRELS + [{"qid": "q1", "did": "gone1", "score": 1},
                                        {"qid": "q4", "did": "gone2", "score": 1}])
    with caplog.at_level(logging.WARNING, logger="text2token"):
        result = evaluate(fake_model, ["TinyRetrieval"], data_dir=data_dir, use_cache=False, show_progress=False)
    warnings = [r.getMessage() for r in caplog.records if "not in corpus.jsonl" in r.getMessage()]
    assert len(warnings) == 1
    assert "2 of 5 judgement(s) name documents not in corpus.jsonl (for example 'gone1')" in warnings[0]
    assert "1 query has no judged document in the corpus" in warnings[0]
    assert np.isfinite(result["results"][0]["main_score"])
    kit.write_jsonl(qrels, [{"qid": f"q{i}", "did": f"x{i}", "score": 1} for i in (1, 2, 3)])
    with pytest.raises(EvalDataError) as error:
        evaluate(fake_model, ["TinyRetrieval"], data_dir=data_dir, use_cache=False, show_progress=False)
    assert str(error.value) == (f"{qrels}: none of its 3 judgement(s) names a document of corpus.jsonl (first: "
                                "'x1'); the corpus and the judgements do not belong together")


def test_mteb_results_on_a_full_disk_keep_the_previous_files(run_folder, data_dir, tmp_path, monkeypatch):
    from mteb.results import TaskResult

    from text2token.evaluation import write_mteb_results

    folder, _ = run_folder
    results = evaluate(str(folder), ["TinySTS"], data_dir=data_dir, cache_dir=tmp_path / "cache", show_progress=False)
    [path] = write_mteb_results(results, tmp_path / "mteb")
    previous = {p: p.read_bytes() for p in path.parent.iterdir()}
    assert json.loads(path.read_text())["task_name"] == "TinySTS"
    real = TaskResult.to_disk

    def half_then_full(self, where, *args, **kwargs):
        real(self, where, *args, **kwargs)
        where.write_bytes(where.read_bytes()[:20])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TaskResult, "to_disk", half_then_full)
    with pytest.raises(EvalError, match=r"cannot write mteb results \(no space left on the device\); what was there "
                                        r"is kept"):
        write_mteb_results(results, tmp_path / "mteb")
    assert {p: p.read_bytes() for p in path.parent.iterdir()} == previous
    assert [p.name for p in (tmp_path / "mteb").iterdir() if p.name.startswith(".")] == []
