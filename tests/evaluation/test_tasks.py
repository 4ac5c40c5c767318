"""Every local task type scored through mteb's own evaluators, with values checked."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from text2token.evaluation import MtebEncoder, TaskCut, build_local_task, evaluate
from text2token.evaluation.localdata import find_task_folder


@pytest.fixture(scope="module")
def all_local(module_data_dir, kit):
    """One evaluation of the fake embedder on every tiny task (benchmark "all-local")."""
    model = kit.HashEmbedder()
    results = evaluate(model, benchmark="all-local", data_dir=module_data_dir, show_progress=False)
    return model, results, {r["task"]: r for r in results["results"]}


def test_all_task_types_are_evaluated(all_local):
    _, results, by_task = all_local
    assert [(t["name"], t["type"]) for t in results["tasks"]] == [
        ("TinyClassification", "Classification"), ("TinyClusters", "Clustering"), ("TinyPairs", "PairClassification"),
        ("TinyRetrieval", "Retrieval"), ("TinySTS", "STS"),
    ]
    assert {name: r["main_score_name"] for name, r in by_task.items()} == {
        "TinyClassification": "accuracy", "TinyClusters": "v_measure", "TinyPairs": "max_ap",
        "TinyRetrieval": "ndcg_at_10", "TinySTS": "cosine_spearman",
    }
    assert all(r["cut"] is None and r["cached"] is False for r in results["results"])


def test_sts_score_is_spearman_of_cosine(all_local, kit):
    _, _, by_task = all_local
    a = kit.embed([r["s1"] for r in kit.STS_ROWS])
    b = kit.embed([r["s2"] for r in kit.STS_ROWS])
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    expected = spearmanr(cosine, [r["score"] for r in kit.STS_ROWS])[0]
    assert 0.5 < expected < 1.0
    assert by_task["TinySTS"]["main_score"] == pytest.approx(expected, abs=1e-9)
    assert by_task["TinySTS"]["scores"]["test"][0]["cosine_spearman"] == pytest.approx(expected, abs=1e-9)


def test_separable_tasks_score_perfectly(all_local):
    _, _, by_task = all_local
    assert by_task["TinyPairs"]["main_score"] == pytest.approx(1.0)
    assert by_task["TinyClassification"]["main_score"] == pytest.approx(1.0)
    assert len(by_task["TinyClassification"]["scores"]["test"][0]["scores_per_experiment"]) == 10
    assert by_task["TinyClusters"]["main_score"] == pytest.approx(1.0)
    assert by_task["TinyRetrieval"]["main_score"] == pytest.approx(1.0)


def test_retrieval_reads_titles_and_skips_unjudged_queries(all_local):
    model, _, _ = all_local
    assert "Apples apple orchard harvest in autumn" in model.texts
    assert "a query without judgement" not in model.texts


def test_clustering_embeds_every_document(module_data_dir, kit):
    task = build_local_task(find_task_folder(module_data_dir, "TinyClusters"))
    assert task.max_fraction_of_documents_to_embed is None
    model = kit.HashEmbedder()
    evaluate(model, ["TinyClusters"], data_dir=module_data_dir, show_progress=False)
    assert len(model.texts) == 30
    assert task.max_documents_per_cluster == 30


def test_retrieval_cut_keeps_judged_documents(module_data_dir, kit):
    model = kit.HashEmbedder()
    results = evaluate(model, ["TinyRetrieval"], data_dir=module_data_dir, max_samples=4, max_doc_chars=9,
                       show_progress=False)
    entry = results["results"][0]
    assert entry["cut"] == {"max_samples": 4, "max_doc_chars": 9, "seed": 42}
    assert results["tasks"][0]["cut"] == entry["cut"]
    docs = [t for t in model.texts if t not in ("apple harvest", "engine repair", "surfing ocean waves")]
    assert len(docs) == 4
    assert {"Apples apple orc", "car engin", "ocean wav"} <= set(docs)  # judged documents, cut to 9 characters
    assert entry["main_score"] <= 1.0


def test_cut_subsamples_pairs_deterministically(module_data_dir):
    folder = find_task_folder(module_data_dir, "TinySTS")
    first = build_local_task(folder, TaskCut(max_samples=3)).dataset["test"]
    again = build_local_task(folder, TaskCut(max_samples=3)).dataset["test"]
    assert len(first) == 3
    assert first["sentence1"] == again["sentence1"]


def test_mteb_builtin_classes_get_local_data(tmp_path, kit):
    write_jsonl, STS_ROWS = kit.write_jsonl, kit.STS_ROWS
    write_jsonl(tmp_path / "STSBenchmark" / "test.jsonl", STS_ROWS)
    rows = [{"text": f"text {i}", "label": i % 2} for i in range(6)]
    write_jsonl(tmp_path / "AmazonCounterfactualClassification" / "train.jsonl", rows)
    write_jsonl(tmp_path / "AmazonCounterfactualClassification" / "test.jsonl", rows)
    write_jsonl(tmp_path / "SciFact" / "corpus.jsonl", kit.CORPUS)
    write_jsonl(tmp_path / "SciFact" / "queries.jsonl", [{"id": "q1", "text": "apple"}, {"id": "q2", "text": "car"}])
    write_jsonl(tmp_path / "SciFact" / "qrels.jsonl", [{"qid": f"q{i}", "did": f"d{i}", "score": 1} for i in (1, 2)])

    sts = build_local_task(find_task_folder(tmp_path, "STSBenchmark"))
    assert type(sts).__name__ == "STSBenchmarkSTS" and sts.data_loaded
    assert sts.dataset["test"]["score"] == [r["score"] for r in STS_ROWS]

    amazon = build_local_task(find_task_folder(tmp_path, "AmazonCounterfactualClassification"))
    assert type(amazon).__name__ == "AmazonCounterfactualClassification"
    assert amazon.hf_subsets == ["en"] and list(amazon.eval_splits) == ["test"]
    assert amazon.samples_per_label == 32 and amazon.dataset["en"]["train"]["label"] == [0, 1, 0, 1, 0, 1]

    scifact = build_local_task(find_task_folder(tmp_path, "SciFact"))
    assert type(scifact).__name__ == "SciFact"
    assert scifact.dataset["default"]["test"]["relevant_docs"] == {"q1": {"d1": 1}, "q2": {"d2": 1}}

    results = evaluate(kit.HashEmbedder(), ["STSBenchmark"], data_dir=tmp_path, show_progress=False)
    assert results["results"][0]["main_score_name"] == "cosine_spearman"
    assert results["tasks"][0]["source"] == "local"


def test_string_labels_become_ids_in_sorted_order(module_data_dir):
    task = build_local_task(find_task_folder(module_data_dir, "TinyClassification"))
    assert task.dataset["train"]["label"] == [0] * 5 + [1] * 5  # fruit < vehicle
    assert task.samples_per_label == 32


def test_mteb_adapter_meta_and_similarity(fake_model, kit):
    embed = kit.embed
    encoder = MtebEncoder(fake_model)
    meta = encoder.mteb_model_meta
    assert meta.name == "fake/hash-embedder" and meta.embed_dim == 64 and meta.similarity_fn_name.value == "cosine"
    a, b = embed(["apple pie", "red car"]), embed(["apple", "car", "pie"])
    unit_a = a / np.linalg.norm(a, axis=1, keepdims=True)
    unit_b = b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(encoder.similarity(a, b)), unit_a @ unit_b.T, rtol=1e-5)
    pairwise = np.asarray(encoder.similarity_pairwise(a, b[:2]))
    np.testing.assert_allclose(pairwise, (unit_a * unit_b[:2]).sum(1), rtol=1e-5)


def test_data_dir_resolution(tmp_path, monkeypatch, kit):
    from text2token.evaluation.localdata import resolve_data_dir

    suite = kit.make_data_dir(tmp_path / "shared" / "evalsuite")
    assert resolve_data_dir(tmp_path / "shared") == suite  # a parent holding evalsuite/
    assert resolve_data_dir(suite) == suite
    monkeypatch.setenv("TEXT2TOKEN_DATA_DIR", str(suite))
    assert resolve_data_dir(None) == suite
