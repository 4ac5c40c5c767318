"""Results in mteb's own files (--mteb-results) and published MTEB scores beside them (--compare)."""

from __future__ import annotations

import json

import pytest

from text2token.evaluation import EvalError, add_published, evaluate, format_table, write_mteb_results
from text2token.evaluation.cli import main as eval_main

PROMPT = 'This sentence : "{text}" means in one word:"'
RUN_CONFIG = {
    "format_version": 1,
    "objective": "text2token",
    "model": {"backbone": "HuggingFaceTB/SmolLM2-135M-Instruct", "pooling": "last", "attention": "causal",
              "max_length": 64, "prompt": PROMPT},
    "adapters": [],
    "stages": ["data"],
    "hyperparameters": {"steps": 12, "lr": 1e-4, "contrastive_weight": 1.0},
}
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_REVISION = "8b3219a92973c328a8e22fadcfa821b5dc75636a"  # mteb's registered revision of the model


@pytest.fixture()
def trained_run(run_folder):
    """The fake run folder with a full run record (its loading still gives a 64-dimensional HashEmbedder)."""
    folder, loaded = run_folder
    (folder / "text2token_config.json").write_text(json.dumps(RUN_CONFIG))
    return folder, loaded


def test_results_load_back_with_mteb_and_record_the_model(trained_run, data_dir, tmp_path):
    import mteb

    folder, loaded = trained_run
    results = evaluate(str(folder), ["TinySTS", "TinyPairs"], data_dir=data_dir, cache_dir=tmp_path / "cache",
                       show_progress=False)
    written = write_mteb_results(results, tmp_path / "mteb")
    revision = results["models"][0]["description"]["revision"]
    assert revision.startswith(results["models"][0]["files"] + "-")
    assert sorted(p.relative_to(tmp_path / "mteb") for p in written) == [
        tmp_path.joinpath("results", "local__run", revision, f"{task}.json").relative_to(tmp_path)
        for task in ("TinyPairs", "TinySTS")]

    loaded_back = mteb.ResultCache(tmp_path / "mteb").load_results()  # mteb's own loader, default options
    (model_result,) = loaded_back.model_results
    assert (model_result.model_name, model_result.model_revision) == ("local/run", revision)
    computed = {r["task"]: r["main_score"] for r in results["results"]}
    assert {t.task_name: t.get_score() for t in model_result.task_results} == pytest.approx(computed, abs=1e-6)
    sts = next(t for t in model_result.task_results if t.task_name == "TinySTS")
    assert sts.scores["test"][0]["cosine_spearman"] == pytest.approx(computed["TinySTS"], abs=1e-6)
    assert sts.mteb_version == mteb.__version__ and sts.dataset_revision == "local"

    meta = json.loads((written[0].parent / "model_meta.json").read_text())
    assert meta["name"] == "local/run" and meta["revision"] == revision
    assert meta["adapted_from"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["embed_dim"] == 64 and meta["max_tokens"] == 64 and meta["use_instructions"] is True
    assert meta["training_datasets"] == [] and meta["experiment_kwargs"] is None
    kwargs = meta["loader_kwargs"]
    assert (kwargs["pooling"], kwargs["attention"], kwargs["max_length"], kwargs["prompt"]) == (
        "last", "causal", 64, PROMPT)
    assert kwargs["training"]["supervision"] == "unsupervised" and kwargs["training"]["stages"] == ["data"]
    assert kwargs["training"]["hyperparameters"]["steps"] == 12
    assert model_result.model_meta.adapted_from == "HuggingFaceTB/SmolLM2-135M-Instruct"

    # served from the score cache, the model is not loaded again, and the written metadata is the same
    again = evaluate(str(folder), ["TinySTS", "TinyPairs"], data_dir=data_dir, cache_dir=tmp_path / "cache",
                     show_progress=False)
    assert len(loaded) == 1 and again["models"][0]["description"] == results["models"][0]["description"]


def test_an_option_is_a_revision_of_its_own(run_folder, data_dir, tmp_path):
    import mteb

    folder, _ = run_folder
    for pooling in ("mean", "last"):
        results = evaluate(str(folder), ["TinySTS"], data_dir=data_dir, pooling=pooling, use_cache=False,
                           show_progress=False)
        write_mteb_results(results, tmp_path / "mteb")
    models = mteb.ResultCache(tmp_path / "mteb").load_results().model_results
    assert len({m.model_revision for m in models}) == 2
    assert sorted(m.model_meta.loader_kwargs["pooling"] for m in models) == ["last", "mean"]


def test_cut_tasks_are_not_written(fake_model, data_dir, tmp_path):
    results = evaluate(fake_model, ["TinySTS"], data_dir=data_dir, max_samples=3, show_progress=False)
    assert write_mteb_results(results, tmp_path / "mteb") == []


def _published_folder(root, kit):
    """A hand-made folder in mteb's results-repository layout: two revisions of all-MiniLM-L6-v2."""
    def task_file(revision, task, rows, meta=False):
        path = root / "results" / MINILM.replace("/", "__") / revision / f"{task}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"dataset_revision": "x", "task_name": task, "mteb_version": "2.0.0",
                                    "evaluation_time": 1.0, "scores": {"test": rows}}))
        if meta:
            (path.parent / "model_meta.json").write_text(json.dumps({"name": MINILM, "revision": revision}))

    def row(subset, score, lang="eng-Latn"):
        return {"main_score": score, "hf_subset": subset, "languages": [lang]}

    task_file(MINILM_REVISION, "STSBenchmark", [row("default", 0.82031)], meta=True)
    task_file(MINILM_REVISION, "AmazonCounterfactualClassification",
              [row("en", 0.63642), row("en-ext", 0.65), row("de", 0.7, "deu-Latn"), row("ja", 0.6, "jpn-Jpan")])
    task_file("an-older-revision", "STSBenchmark", [row("default", 0.5)])
    return root


@pytest.fixture()
def mteb_named_data(data_dir, kit):
    """Tiny folders named like mteb tasks (their scores are computed here, on the tiny data)."""
    kit.write_jsonl(data_dir / "STSBenchmark" / "test.jsonl", kit.STS_ROWS)
    kit.write_jsonl(data_dir / "AmazonCounterfactualClassification" / "train.jsonl", kit.CLASS_TRAIN)
    kit.write_jsonl(data_dir / "AmazonCounterfactualClassification" / "test.jsonl", kit.CLASS_TEST)
    return data_dir


def test_published_rows_beside_computed_ones(fake_model, mteb_named_data, tmp_path, kit):
    published = _published_folder(tmp_path / "mteb-results", kit)
    results = evaluate(fake_model, ["STSBenchmark", "AmazonCounterfactualClassification", "TinyPairs"],
                       data_dir=mteb_named_data, show_progress=False)
    merged = add_published(results, ["all-MiniLM-L6-v2"], published)
    label = f"{MINILM} (published)"
    scores = {r["task"]: r["main_score"] for r in merged["results"] if r["model"] == label}
    # the registered revision, and of AmazonCounterfactual the English subset that was computed here
    assert scores == pytest.approx({"STSBenchmark": 0.82031, "AmazonCounterfactualClassification": 0.63642})
    assert [m["source"] for m in merged["models"]] == ["computed here", "published"]
    assert merged["models"][1]["revision"] == MINILM_REVISION

    table = format_table(merged)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table.splitlines()
            if line.startswith("| ") and "Model" not in line}
    header = [c.strip() for c in table.splitlines()[0].split("|")[1:-1]]
    assert header[:2] == ["Model", "Scores"]
    column = {name: i - 1 for i, name in enumerate(header)}
    assert rows[label][column["Scores"]] == "published"
    assert rows[label][column["STSBenchmark"]] == "82.03"
    assert rows[label][column["AmazonCounterfactualClassification"]] == "63.64"
    assert rows[label][column["TinyPairs"]] == ""  # no published score: blank, and so are its means
    assert rows[label][column["Mean (Task)"]] == ""
    computed = rows["fake/hash-embedder"]
    assert computed[column["Scores"]] == "computed here"
    sts_here = next(r["main_score"] for r in results["results"] if r["task"] == "STSBenchmark")
    assert computed[column["STSBenchmark"]] == f"{100 * sts_here:.2f}"
    assert f"MTEB scores read from {published}" in table and MINILM_REVISION in table

    older = add_published(results, [f"{MINILM}@an-older-revision"], published / "results")  # results/ itself too
    assert [r["main_score"] for r in older["results"] if r.get("source") == "published"] == [0.5]


def test_cli_compare_and_mteb_results(run_folder, mteb_named_data, tmp_path, kit, capsys):
    import mteb

    folder, loaded = run_folder
    published = _published_folder(tmp_path / "mteb-results", kit)
    out = tmp_path / "written"
    argv = [str(folder), "--tasks", "STSBenchmark", "--data-dir", str(mteb_named_data), "--quiet", "--no-cache",
            "--compare", "all-MiniLM-L6-v2", "--compare-results", str(published), "--mteb-results", str(out),
            "--output", str(tmp_path / "scores.json")]
    assert eval_main(["eval", *argv]) == 0
    printed = capsys.readouterr().out
    assert "| published " in printed and "| computed here " in printed and "82.03" in printed
    saved = json.loads((tmp_path / "scores.json").read_text())
    assert [m["source"] for m in saved["models"]] == ["computed here", "published"]
    (model_result,) = mteb.ResultCache(out).load_results().model_results  # the published row is not written
    assert model_result.model_name == "local/run"
    assert model_result.task_results[0].get_score() == pytest.approx(saved["results"][0]["main_score"], abs=1e-6)


@pytest.mark.parametrize(("extra", "message"), [
    (["--compare", "no-such-model", "--compare-results", "{published}"],
     "--compare no-such-model: no model of that name"),
    (["--compare", f"{MINILM}@nope", "--compare-results", "{published}"], "no revision 'nope'"),
    (["--compare", "all-MiniLM-L6-v2", "--compare-results", "{missing}"], "results folder not found"),
    (["--compare", "all-MiniLM-L6-v2", "--compare-results", "{empty}"], "no results/ folder in it"),
    (["--compare-results", "{published}"], "--compare-results needs --compare NAME"),
])
def test_cli_compare_errors_are_one_line_exit_2_before_any_evaluation(run_folder, data_dir, tmp_path, kit, capsys,
                                                                      extra, message):
    from text2token.cli import main

    folder, loaded = run_folder
    published = _published_folder(tmp_path / "mteb-results", kit)
    (tmp_path / "empty").mkdir()
    paths = {"published": published, "missing": tmp_path / "missing", "empty": tmp_path / "empty"}
    extra = [arg.format(**paths) for arg in extra]
    argv = ["eval", str(folder), "--tasks", "TinySTS", "--data-dir", str(data_dir), "--quiet", "--no-cache", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert loaded == []  # reported before the model is loaded


def test_ambiguous_short_name_is_an_error(tmp_path, kit):
    published = _published_folder(tmp_path / "r", kit)
    other = published / "results" / "someone__all-MiniLM-L6-v2" / "rev"
    other.mkdir(parents=True)
    with pytest.raises(EvalError, match="several models of that name"):
        add_published({"tasks": [], "models": [], "results": []}, ["all-MiniLM-L6-v2"], published)
