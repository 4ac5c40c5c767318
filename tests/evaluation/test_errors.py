"""User errors: each names what is wrong and where (file and line), as a Text2TokenError."""

from __future__ import annotations

import pytest

from text2token.errors import DataError, Text2TokenError
from text2token.evaluation import EvalDataError, EvalError, UnknownTaskError, evaluate
from text2token.evaluation.cli import main
from text2token.evaluation.localdata import detect_type, find_task_folder, resolve_data_dir


def test_error_classes_are_text2token_errors():
    assert issubclass(EvalDataError, DataError) and issubclass(EvalDataError, ValueError)
    assert issubclass(EvalDataError, EvalError)
    assert issubclass(UnknownTaskError, Text2TokenError) and issubclass(UnknownTaskError, ValueError)


def test_malformed_json_line_names_file_and_line(data_dir, fake_model):
    path = data_dir / "TinySTS" / "test.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = '{"s1": "broken", "s2": '
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EvalDataError, match=rf"{path}:3: invalid JSON"):
        evaluate(fake_model, ["TinySTS"], data_dir=data_dir, show_progress=False)
    assert fake_model.calls == 0


def test_missing_field_names_file_line_and_field(data_dir, kit):
    path = data_dir / "TinyClassification" / "train.jsonl"
    rows = list(kit.CLASS_TRAIN)
    rows[1] = {"text": "no label here"}
    kit.write_jsonl(path, rows)
    with pytest.raises(EvalDataError, match=rf"{path}:2: missing field 'label'"):
        find_task_folder(data_dir, "TinyClassification").read()


def test_wrong_field_type_is_reported(data_dir, kit):
    path = data_dir / "TinyPairs" / "test.jsonl"
    kit.write_jsonl(path, [*kit.PAIR_ROWS, {"s1": "a", "s2": "b", "label": 2}])
    with pytest.raises(EvalDataError, match=rf"{path}:5: field 'label' must be 0 or 1, got 2"):
        find_task_folder(data_dir, "TinyPairs").read()


def test_missing_retrieval_file_is_named(data_dir, fake_model):
    (data_dir / "TinyRetrieval" / "qrels.jsonl").unlink()
    with pytest.raises(EvalDataError, match=r"TinyRetrieval/qrels\.jsonl: file not found"):
        evaluate(fake_model, ["TinyRetrieval"], data_dir=data_dir, show_progress=False)


def test_folder_without_test_file_is_named(data_dir):
    (data_dir / "Empty").mkdir()
    with pytest.raises(EvalDataError, match=r"Empty/test\.jsonl: file not found"):
        detect_type(data_dir / "Empty")


def test_unknown_fields_say_which_layouts_exist(data_dir, kit):
    kit.write_jsonl(data_dir / "Odd" / "test.jsonl", [{"a": 1}, {"a": 2}])
    with pytest.raises(EvalDataError, match=r"Odd/test\.jsonl:1: cannot tell the task type"):
        detect_type(data_dir / "Odd")


def test_duplicate_corpus_id_is_reported(data_dir, kit):
    path = data_dir / "TinyRetrieval" / "corpus.jsonl"
    kit.write_jsonl(path, [*kit.CORPUS, kit.CORPUS[0]])
    with pytest.raises(EvalDataError, match=rf"{path}:7: duplicate id 'd1'"):
        find_task_folder(data_dir, "TinyRetrieval").read()


def test_unknown_task_lists_local_tasks(data_dir, fake_model):
    with pytest.raises(UnknownTaskError, match=r"unknown task 'NoSuchTask'.*TinyClassification, TinyClusters"):
        evaluate(fake_model, ["NoSuchTask"], data_dir=data_dir, show_progress=False)


def test_unknown_benchmark(data_dir, fake_model):
    with pytest.raises(UnknownTaskError, match=r"unknown benchmark 'nope'"):
        evaluate(fake_model, benchmark="nope", data_dir=data_dir, show_progress=False)


def test_missing_data_dir(tmp_path, fake_model):
    with pytest.raises(EvalDataError, match="data folder not found"):
        resolve_data_dir(tmp_path / "absent")


def test_cut_of_an_online_task_is_refused(data_dir, fake_model):
    with pytest.raises(EvalError, match="only possible for local task folders"):
        evaluate(fake_model, ["STS12"], data_dir=data_dir, max_samples=10, show_progress=False)


def test_online_task_offline_is_one_clear_error(data_dir, fake_model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(EvalError, match="task STS12: cannot load its data from the hub"):
        evaluate(fake_model, ["STS12"], data_dir=data_dir, use_cache=False, show_progress=False)
    assert fake_model.calls == 0


def test_cli_prints_one_line_and_fails(data_dir, run_folder, capsys):
    folder, _ = run_folder
    code = main(["eval", str(folder), "--tasks", "NoSuchTask", "--data-dir", str(data_dir), "--no-cache", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("text2token eval: error: unknown task 'NoSuchTask'")


def test_pooling_on_a_sentence_transformers_folder_is_refused(data_dir, tmp_path, fake_model):
    st = tmp_path / "st-model"
    st.mkdir()
    (st / "modules.json").write_text("[]")
    with pytest.raises(EvalError, match="not to a sentence-transformers folder"):
        evaluate(str(st), ["TinySTS"], data_dir=data_dir, pooling="mean", use_cache=False, show_progress=False)
