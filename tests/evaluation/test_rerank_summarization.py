"""Reranking and summarization folders, scored by mteb's own task classes and evaluators.

The encoder is a lookup table of hand-made vectors, so each cosine similarity, each ranking and
each expected score below is worked out by hand (and, for reranking, checked against mteb's own
converter of the {query, positive, negative} layout).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from text2token.evaluation import EvalDataError, build_local_task, evaluate, resolve_benchmark
from text2token.evaluation.localdata import detect_type, find_task_folder
from text2token.evaluation.tasks import _plan


class TableEmbedder:
    """Each text's vector from a table (an unknown text is an error: nothing is encoded by accident)."""

    def __init__(self, table: dict[str, list[float]], name: str = "fake/table") -> None:
        self.table = {text: np.asarray(vector, dtype=np.float32) for text, vector in table.items()}
        self.embedding_dim = len(next(iter(self.table.values())))
        self.name = name
        self.texts: list[str] = []

    def encode(self, texts, batch_size=32, normalize=False, show_progress=False):
        self.texts.extend(texts)
        return np.stack([self.table[t] for t in texts])


def at(cosine: float) -> list[float]:
    """A unit vector whose cosine with the query direction (1, 0) is ``cosine``."""
    return [cosine, math.sqrt(1 - cosine**2)]


# Query 1 ranks its candidates N1 (0.9), P1 (0.8), N2 (0.5), P2 (0.3): AP = (1/2 + 2/4) / 2 = 0.5,
# reciprocal rank 1/2, nDCG@10 = (1/log2(3) + 1/log2(5)) / (1 + 1/log2(3)).
# Query 2 ranks its positive first: AP = 1. The third line has no negative: mteb leaves it out.
RERANK_ROWS = [
    {"query": "query one", "positive": ["q1 pos a", "q1 pos b"], "negative": ["q1 neg a", "q1 neg b"]},
    {"query": "query two", "positive": ["q2 pos"], "negative": ["q2 neg a", "q2 neg b"]},
    {"query": "query three", "positive": ["q3 pos"], "negative": []},
]
RERANK_TABLE = {
    "query one": [1, 0], "query two": [1, 0], "query three": [1, 0], "q3 pos": at(0.1),
    "q1 neg a": at(0.9), "q1 pos a": at(0.8), "q1 neg b": at(0.5), "q1 pos b": at(0.3),
    "q2 pos": at(0.9), "q2 neg a": at(0.2), "q2 neg b": at(0.1),
}
NDCG_Q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))


def human(i: int) -> list[float]:
    return [1.0 if j == i else 0.0 for j in range(3)]


def machine(first: float, second: float) -> list[float]:
    """Cosine ``first`` with human summary 0 and ``second`` with human summary 1 (unit length)."""
    return [first, second, math.sqrt(1 - first**2 - second**2)]


# Text A: the best cosine to either human summary is 0.2, 0.9 (to the second one), 0.5 for relevance
# 1, 2, 3: ranks (1, 3, 2) against (1, 2, 3), Spearman 1 - 6 * 2 / (3 * 8) = 0.5.
# Text B: 0.3, 0.6, 0.9 for relevance 1, 3, 5: Spearman 1. Text C: one relevance score for all its
# summaries, which mteb skips. Main score: the mean, 0.75.
SUMM_ROWS = [
    {"text": "text a", "human_summaries": ["a human 1", "a human 2"],
     "machine_summaries": ["a m1", "a m2", "a m3"], "relevance": [1, 2, 3]},
    {"text": "text b", "human_summaries": ["b human"], "machine_summaries": ["b m1", "b m2", "b m3"],
     "relevance": [1, 3, 5]},
    {"text": "text c", "human_summaries": ["c human"], "machine_summaries": ["c m1", "c m2"], "relevance": [2, 2]},
]
SUMM_TABLE = {
    "a human 1": human(0), "a human 2": human(1),
    "a m1": machine(0.2, 0.1), "a m2": machine(0.1, 0.9), "a m3": machine(0.5, 0.3),
    "b human": human(0), "b m1": machine(0.3, 0.0), "b m2": machine(0.6, 0.0), "b m3": machine(0.9, 0.0),
    "c human": human(0), "c m1": machine(0.3, 0.0), "c m2": machine(0.6, 0.0),
}


@pytest.fixture()
def folders(tmp_path, kit):
    root = tmp_path / "evalsuite"
    for name in ("TinyRerank", "AskUbuntuDupQuestions"):
        kit.write_jsonl(root / name / "test.jsonl", RERANK_ROWS)
    for name in ("TinySumm", "SummEvalSummarization.v2"):
        kit.write_jsonl(root / name / "test.jsonl", SUMM_ROWS)
    return root


def test_types_are_told_from_the_fields(folders):
    assert detect_type(folders / "TinyRerank") == "Reranking"
    assert detect_type(folders / "TinySumm") == "Summarization"


def test_reranking_main_score_is_map_at_1000_worked_out_by_hand(folders):
    model = TableEmbedder({**RERANK_TABLE})
    results = evaluate(model, ["TinyRerank", "AskUbuntuDupQuestions"], data_dir=folders, show_progress=False)
    local, builtin = results["results"]
    assert [t["type"] for t in results["tasks"]] == ["Reranking", "Reranking"]
    for entry in (local, builtin):
        assert entry["main_score_name"] == "map_at_1000"
        assert entry["main_score"] == pytest.approx(0.75, abs=1e-6)
        scores = entry["scores"]["test"][0]
        assert scores["mrr_at_10"] == pytest.approx(0.75, abs=1e-6)
        assert scores["ndcg_at_10"] == pytest.approx((NDCG_Q1 + 1) / 2, abs=1e-5)
        assert scores["recall_at_1"] == pytest.approx(0.5, abs=1e-6)  # q1: 0 of 2, q2: 1 of 1
    assert "q3 pos" not in model.texts  # the line without a negative is left out, as mteb does
    task = build_local_task(find_task_folder(folders, "AskUbuntuDupQuestions"))
    assert type(task).__name__ == "AskUbuntuDupQuestions" and task.metadata.type == "Reranking"  # mteb's own class


def test_reranking_split_equals_mteb_converter_of_the_old_layout(folders, monkeypatch):
    """mteb's own AbsTaskReranking.transform_old_dataset_format on the same rows builds the same split."""
    import warnings

    from datasets import Dataset, DatasetDict
    from mteb.abstasks.text import reranking

    ours = build_local_task(find_task_folder(folders, "TinyRerank"))
    monkeypatch.setattr(reranking, "OLD_FORMAT_RERANKING_TASKS", ["TinyRerank"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference_class = type("Reference", (reranking.AbsTaskReranking,), {"metadata": ours.metadata})
        reference = reference_class()
        reference.transform_old_dataset_format(DatasetDict({"test": Dataset.from_list(RERANK_ROWS)}))
    mine, theirs = ours.dataset["default"]["test"], reference.dataset["default"]["test"]
    assert mine["corpus"].to_list() == theirs["corpus"].to_list()
    assert mine["queries"].to_list() == theirs["queries"].to_list()
    relevant = [{q: dict(d) for q, d in split["relevant_docs"].items()} for split in (mine, theirs)]
    assert relevant[0] == relevant[1]
    assert {q: list(d) for q, d in mine["top_ranked"].items()} == {q: list(d) for q, d in theirs["top_ranked"].items()}


def test_summarization_main_score_is_mean_spearman_worked_out_by_hand(folders):
    model = TableEmbedder({**SUMM_TABLE})
    results = evaluate(model, ["TinySumm", "SummEvalSummarization.v2"], data_dir=folders, show_progress=False)
    for entry in results["results"]:
        assert entry["type"] == "Summarization" and entry["main_score_name"] == "cosine_spearman"
        assert entry["main_score"] == pytest.approx(0.75, abs=1e-9)
    assert not {"text a", "text b", "text c"} & set(model.texts)  # mteb compares summaries only
    local = build_local_task(find_task_folder(folders, "TinySumm"))
    assert (local.min_score, local.max_score) == (1, 5)  # the folder's own range
    builtin = build_local_task(find_task_folder(folders, "SummEvalSummarization.v2"))
    assert type(builtin).__name__ == "SummEvalSummarizationv2" and (builtin.min_score, builtin.max_score) == (0, 5)


def test_all_local_takes_the_new_types_and_quick_a_reranking_folder_when_there_is_one(folders, tmp_path, kit):
    kit.make_data_dir(folders)  # one folder of each of the other five types beside
    types = {s.name: s.type for s in resolve_benchmark("all-local", folders)}
    assert {types[name] for name in ("TinyRerank", "AskUbuntuDupQuestions")} == {"Reranking"}
    assert {types[name] for name in ("TinySumm", "SummEvalSummarization.v2")} == {"Summarization"}
    assert set(types.values()) == {"Classification", "Clustering", "PairClassification", "Reranking", "Retrieval",
                                   "STS", "Summarization"}
    other = kit.make_data_dir(tmp_path / "other")
    assert "AskUbuntuDupQuestions" not in _plan("quick", other)
    kit.write_jsonl(other / "SciDocsRR" / "test.jsonl", RERANK_ROWS)
    assert _plan("quick", other)["SciDocsRR"].max_samples == 500
    kit.write_jsonl(other / "AskUbuntuDupQuestions" / "test.jsonl", RERANK_ROWS)
    plan = _plan("quick", other)
    assert plan["AskUbuntuDupQuestions"].is_full and "SciDocsRR" not in plan  # the first of the list only


def test_shared_data_has_no_reranking_folder_for_quick():
    from pathlib import Path

    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "evalsuite"
    if not shared.is_dir():
        pytest.skip("no ../shared/data/evalsuite here")
    plan = _plan("quick", shared)
    assert set(plan) == {"STSBenchmark", "TwitterSemEval2015", "AmazonCounterfactualClassification",
                         "Banking77Clustering-proxy", "SciFact"}


def test_reranking_cut_keeps_whole_queries(folders):
    model = TableEmbedder({**RERANK_TABLE})
    entry = evaluate(model, ["TinyRerank"], data_dir=folders, max_samples=1, show_progress=False)["results"][0]
    assert entry["cut"] == {"max_samples": 1, "seed": 42}
    assert entry["main_score"] in (pytest.approx(0.5, abs=1e-6), pytest.approx(1.0, abs=1e-6))


@pytest.mark.parametrize(("row", "message"), [
    ({"text": "t", "human_summaries": ["h"], "machine_summaries": ["m1", "m2"], "relevance": [1]},
     r"test\.jsonl:2: field 'relevance' has 1 score\(s\) for 2 machine summaries"),
    ({"text": "t", "human_summaries": [], "machine_summaries": ["m1"], "relevance": [1]},
     r"test\.jsonl:2: field 'human_summaries' is empty"),
    ({"text": "t", "human_summaries": ["h"], "machine_summaries": ["m1"], "relevance": ["high"]},
     r"test\.jsonl:2: field 'relevance' must be a list of numbers, got \['high'\]"),
])
def test_malformed_summarization_line_is_named(folders, kit, row, message):
    kit.write_jsonl(folders / "TinySumm" / "test.jsonl", [SUMM_ROWS[0], row])
    with pytest.raises(EvalDataError, match=message):
        find_task_folder(folders, "TinySumm").read()


def test_malformed_reranking_folders_are_named(folders, kit):
    kit.write_jsonl(folders / "TinyRerank" / "test.jsonl", [RERANK_ROWS[0], {**RERANK_ROWS[1], "positive": "q2 pos"}])
    with pytest.raises(EvalDataError, match=r"TinyRerank/test\.jsonl:2: field 'positive' must be a list of strings"):
        find_task_folder(folders, "TinyRerank").read()
    kit.write_jsonl(folders / "TinyRerank" / "test.jsonl", [RERANK_ROWS[2], RERANK_ROWS[2]])
    with pytest.raises(EvalDataError, match=r"TinyRerank: no line of test\.jsonl has both a positive and a negative"):
        build_local_task(find_task_folder(folders, "TinyRerank"))
    kit.write_jsonl(folders / "TinySumm" / "test.jsonl", [SUMM_ROWS[2], SUMM_ROWS[2]])
    with pytest.raises(EvalDataError, match=r"TinySumm: every text's machine summaries have one relevance score"):
        build_local_task(find_task_folder(folders, "TinySumm"))


def test_cli_reports_a_malformed_folder_in_one_line_with_exit_code_2(folders, kit, capsys, run_folder):
    from text2token.cli import main

    kit.write_jsonl(folders / "TinySumm" / "test.jsonl", [SUMM_ROWS[0], {**SUMM_ROWS[1], "relevance": [1]}])
    folder, _ = run_folder
    assert main(["eval", str(folder), "--tasks", "TinySumm", "--data-dir", str(folders), "--quiet", "--no-cache"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TinySumm/test.jsonl:2: field 'relevance' has 1 score(s)" in err[-1]
