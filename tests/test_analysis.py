"""Analysis: inspect marks, hit@k, sparse vectors, dense/sparse/hybrid retrieval, drift, analyze files.

Most tests use a hand-built "word model" whose top tokens can be worked out on paper: a word-level
tokenizer, a Llama with no transformer layer, one-hot input embeddings and a hand-set LM head. Its
last hidden state is RMSNorm(one-hot) = sqrt(D)·e_t, so with mean pooling
    e(x) = sqrt(D)/n · Σ_t count_t(x) · e_t      and      logit_v(x) = sqrt(D)/n · Σ_t H[v, t] · count_t(x).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import text2token
from text2token.cli import main
from t2t_testdata import SENTENCES

D = 32
VOCAB = ["<eos>", "<pad>", "<unk>",
         "the", "cat", "sat", "on", "mat", "pet", "Cat", "animal",      # the cat text
         "dog", "barked", "loud",                                      # the dog text
         "apple", "orchard", "harvest", "car", "engine", "repair",     # the retrieval task
         "paris", "france", "capital", "city"]
ID = {w: i for i, w in enumerate(VOCAB)}
# LM head rows: token -> {input token: weight}
HEAD = {
    "the": {"the": 0.55}, "cat": {"cat": 1.0}, "sat": {"sat": 0.9}, "on": {"on": 0.3}, "mat": {"mat": 0.8},
    "pet": {"cat": 1.5}, "Cat": {"cat": 1.2}, "animal": {"cat": 0.85, "dog": 0.5},
    "dog": {"dog": 1.0}, "barked": {"barked": 1.0}, "loud": {"barked": 2.0},
    "apple": {"apple": 2.0}, "orchard": {"orchard": 1.0}, "harvest": {"harvest": 1.0},
    "car": {"car": 1.0, "engine": 2.0}, "engine": {"engine": 1.5}, "repair": {"repair": 1.0},
    "paris": {"city": 2.5, "paris": 3.0, "france": 1.0}, "france": {"france": 3.0},
    "capital": {"capital": 1.0, "paris": 0.5}, "city": {"city": 1.0},
}
CAT = "the cat sat on the mat"
DOG = "dog barked"
TRAIN = SENTENCES


def head_matrix() -> np.ndarray:
    h = np.zeros((len(VOCAB), D))
    for token, row in HEAD.items():
        for word, weight in row.items():
            h[ID[token], ID[word]] = weight
    return h


def hand_probs(text: str) -> np.ndarray:
    """p(· | x) of the word model, from the formula in the module docstring."""
    words = text.split()
    counts = np.zeros(D)
    for w in words:
        counts[ID[w]] += 1
    logits = head_matrix() @ counts * math.sqrt(D) / len(words)
    e = np.exp(logits - logits.max())
    return e / e.sum()


@pytest.fixture(scope="module")
def word_model(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("word-model")
    tok = Tokenizer(models.WordLevel(ID, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(path)
    config = LlamaConfig(vocab_size=len(VOCAB), hidden_size=D, intermediate_size=8, num_hidden_layers=0,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                         eos_token_id=0, pad_token_id=1)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(len(VOCAB), D))
        model.lm_head.weight.copy_(torch.tensor(head_matrix(), dtype=torch.float32))
    model.save_pretrained(path)
    return str(path)


# ------------------------------------------------------------------------------------ inspect


def test_inspect_ranks_probabilities_and_marks_by_hand(word_model):
    from text2token.analysis import inspect_text

    result = inspect_text(text2token.load(word_model), CAT, k=8)
    # logits (units of sqrt(D)/6): pet 1.5, Cat 1.2, the 2*0.55, cat 1.0, sat 0.9, animal 0.85, mat 0.8, on 0.3
    assert [t["token"] for t in result["tokens"]] == ["pet", "Cat", "the", "cat", "sat", "animal", "mat", "on"]
    assert [t["mark"] for t in result["tokens"]] == [
        "derived", "in text", "in text", "in text", "in text", "derived", "in text", "in text"]  # Cat: by its form
    expected = hand_probs(CAT)
    for t in result["tokens"]:
        assert t["prob"] == pytest.approx(expected[t["id"]], abs=1e-4)
    assert (result["in_text"], result["derived"], result["hit_at_k"]) == (6, 2, 0.75)
    assert result["text_tokens"] == ["the", "cat", "sat", "on", "the", "mat"]


def test_inspect_cli_table_and_json(word_model, capsys):
    assert main(["inspect", word_model, CAT, "--top-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    table = [line.split() for line in out if line[:1] == " " or line[:1].isdigit()]
    assert [row[:3] for row in table if row[0].isdigit()] == [["1", str(ID["pet"]), "'pet'"],
                                                              ["2", str(ID["Cat"]), "'Cat'"],
                                                              ["3", str(ID["the"]), "'the'"]]
    assert "in text: 2 of 3 (hit@3 = 0.67); derived: 1" in out
    assert main(["inspect", word_model, DOG, "--top-k", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(t["token"], t["mark"]) for t in data["tokens"]][0] == ("loud", "derived")
    assert data["tokens"][0]["prob"] == pytest.approx(hand_probs(DOG)[ID["loud"]], abs=1e-4)


# ------------------------------------------------------------------------------------- hit@k


def test_hit_at_k_by_hand(word_model):
    from text2token.analysis import token_alignment

    result = token_alignment(text2token.load(word_model), [CAT, DOG], ks=[1, 2, 3, 5, 10])
    # cat text: D T T T T D T T | rest derived   -> 0, 1/2, 2/3, 4/5, 6/10
    # dog text: loud D, dog T, barked T, animal D | rest derived -> 0, 1/2, 2/3, 2/5, 2/10
    expected = {"1": 0.0, "2": 0.5, "3": 2 / 3, "5": (0.8 + 0.4) / 2, "10": (0.6 + 0.2) / 2}
    assert result["hit_at_k"] == pytest.approx(expected)
    assert result["derived_at_k"]["5"] == pytest.approx(0.4)
    assert result["examples"][1]["top_tokens"][0]["token"] == "loud"


# ------------------------------------------------------------------------------------ sparse


def test_sparse_output_holds_the_top_k_probabilities(word_model):
    import scipy.sparse
    import scipy.sparse.linalg

    model = text2token.load(word_model)
    sparse = model.encode([CAT, DOG, "car engine repair"], output="sparse", sparse_k=3)
    assert scipy.sparse.isspmatrix_csr(sparse) and sparse.shape == (3, len(VOCAB)) and sparse.dtype == np.float32
    assert list(np.diff(sparse.indptr)) == [3, 3, 3]
    assert sorted(sparse[0].indices) == sorted([ID["pet"], ID["Cat"], ID["the"]])
    dense = model.encode([CAT, DOG, "car engine repair"], output="distribution")
    for row in range(3):
        top = np.argsort(-dense[row])[:3]
        assert set(sparse[row].indices) == set(top) and sparse[row].nnz == 3
        assert np.allclose(sparse[row].toarray()[0, top], dense[row, top])
    assert sparse[0, ID["pet"]] == pytest.approx(hand_probs(CAT)[ID["pet"]], abs=1e-4)
    unit = model.encode([CAT, DOG], output="sparse", sparse_k=5, normalize=True)
    assert np.allclose(scipy.sparse.linalg.norm(unit, axis=1), 1.0)
    with pytest.raises(ValueError, match="sparse_k"):
        model.encode([CAT], output="sparse", sparse_k=0)


def test_encode_views_dense_is_bit_identical_to_encode(tiny_llama):
    from text2token.analysis import encode_views

    model = text2token.load(tiny_llama)
    texts = ["The cat sat on the mat.", "Rain fell.", "", "Computers process data using binary numbers."]
    dense, sparse = encode_views(model, texts, sparse_k=7, batch_size=2)
    assert np.array_equal(dense, model.encode(texts, batch_size=2))
    assert (sparse != model.encode(texts, batch_size=2, output="sparse", sparse_k=7)).nnz == 0


# --------------------------------------------------------------------------------- retrieval

CORPUS = [{"id": "d1", "title": "", "text": "apple orchard harvest"},
          {"id": "d2", "title": "car", "text": "car engine repair"},  # mteb reads "car car engine repair"
          {"id": "d3", "title": "", "text": "paris france capital"},
          {"id": "d4", "title": "", "text": "france france city"}]
QUERIES = [{"id": "q1", "text": "apple"}, {"id": "q2", "text": "engine"}, {"id": "q3", "text": "city france"}]
QRELS = [{"qid": "q1", "did": "d1", "score": 1}, {"qid": "q2", "did": "d2", "score": 1},
         {"qid": "q3", "did": "d3", "score": 1}]


@pytest.fixture()
def retrieval_dir(tmp_path):
    root = tmp_path / "evalsuite"
    for name, rows in (("corpus", CORPUS), ("queries", QUERIES), ("qrels", QRELS)):
        (root / "HandRetrieval").mkdir(parents=True, exist_ok=True)
        (root / "HandRetrieval" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_dense_sparse_hybrid_ndcg_by_hand_and_dense_equals_eval(word_model, retrieval_dir, tmp_path):
    from text2token.analysis import score_retrieval
    from text2token.evaluation import evaluate

    model = text2token.load(word_model)
    result = score_retrieval(model, retrieval_dir / "HandRetrieval", alphas=[0.5, 0.9, 1.0, 0.0], sparse_k=1,
                             show_progress=False)
    ndcg = {(r["mode"], r["alpha"]): r["ndcg_at_10"] for r in result["results"]}
    # dense: q1, q2 find their document first; q3 "city france" ranks d4 "france france city" (cos 3/sqrt(10))
    # above d3 "paris france capital" (cos 1/sqrt(6)): rank 2, nDCG 1/log2(3).
    dense = (2 + 1 / math.log2(3)) / 3
    assert ndcg[("dense", None)] == pytest.approx(dense, abs=1e-5)
    # sparse, k=1: each text keeps its top token: q1/d1 apple, q2/d2 car, q3/d3 paris, d4 france -> all rank 1.
    assert ndcg[("sparse", None)] == pytest.approx(1.0)
    # hybrid q3: d4 = a*1 + (1-a)*0; d3 = a*minmax_dense(d3) + (1-a)*1, minmax_dense(d3) = (1/sqrt 6)/(3/sqrt 10)
    d3 = (1 / math.sqrt(6)) / (3 / math.sqrt(10))
    for alpha in (0.5, 0.9):
        expected = 1.0 if alpha * d3 + (1 - alpha) > alpha else dense
        assert ndcg[("hybrid", alpha)] == pytest.approx(expected, abs=1e-5)
    assert ndcg[("hybrid", 0.5)] == pytest.approx(1.0) and ndcg[("hybrid", 0.9)] == pytest.approx(dense, abs=1e-5)
    assert ndcg[("hybrid", 1.0)] == ndcg[("dense", None)] and ndcg[("hybrid", 0.0)] == ndcg[("sparse", None)]

    # the eval path (mteb through MtebEncoder) gives exactly the same dense score
    scores = evaluate(word_model, ["HandRetrieval"], data_dir=retrieval_dir, use_cache=False, show_progress=False)
    assert scores["results"][0]["main_score"] == ndcg[("dense", None)]


def test_hybrid_scores_min_max_per_query():
    from text2token.analysis import hybrid_scores

    dense = np.array([[0.2, 0.6, 1.0], [0.5, 0.5, 0.5]])
    sparse = np.array([[0.0, 4.0, 2.0], [1.0, 3.0, 2.0]])
    out = hybrid_scores(dense, sparse, 0.25)
    assert np.allclose(out, [[0.0, 0.25 * 0.5 + 0.75, 0.25 + 0.75 * 0.5], [0.0, 0.75, 0.75 * 0.5]])


def test_analyze_retrieval_cli_and_its_errors(word_model, retrieval_dir, tmp_path, capsys):
    out = tmp_path / "retrieval.json"
    argv = ["analyze-retrieval", word_model, "--task-dir", str(retrieval_dir / "HandRetrieval"), "--sparse-k", "1",
            "--alpha", "0.5", "--output", str(out), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "HandRetrieval" in printed and "hybrid" in printed
    saved = json.loads(out.read_text())
    assert [r["mode"] for r in saved["results"]] == ["dense", "sparse", "hybrid"]
    assert saved["results"][2]["ndcg_at_10"] == pytest.approx(1.0)

    (tmp_path / "sts").mkdir()
    (tmp_path / "sts" / "test.jsonl").write_text('{"s1": "a", "s2": "b", "score": 1}\n' * 2)
    for task_dir, message in ((tmp_path / "missing", "task folder not found"),
                              (tmp_path / "sts", "not a retrieval one")):
        assert main(["analyze-retrieval", word_model, "--task-dir", str(task_dir)]) == 2
        assert message in capsys.readouterr().err


# ---------------------------------------------------------------------- drift and analyze


@pytest.fixture(scope="module")
def tiny_run(tiny_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("analysis-run")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(TRAIN * 3) + "\n")
    config = text2token.TrainConfig(model=tiny_models["llama"], data=[str(corpus)], output=str(folder / "run"),
                                    steps=4, batch_size=4, max_length=32, save_steps=2, logging_steps=1,
                                    background_samples=16, lr=5e-3, stages=["data", "model"], pooling="mean",
                                    contrastive_weight=0.0)
    return text2token.train(config), corpus


def test_drift_of_checkpoints_against_an_independent_pca(tiny_run, tiny_llama):
    from text2token.analysis import list_checkpoints, representation_drift, token_alignment

    run, _ = tiny_run
    texts = TRAIN[:10]
    assert [c.label for c in list_checkpoints(run)] == ["stage1-2", "stage1-4", "stage2-2", "stage2-4"]
    drift = representation_drift(run, texts, components=3, top_k=5, show_progress=False)
    assert drift["status"] == "ok" and [p["label"] for p in drift["points"]] == [
        "base", "stage1-2", "stage1-4", "stage2-2", "stage2-4"]
    assert drift["points"][0]["shift"] == [0.0, 0.0, 0.0] and drift["points"][0]["top_k_overlap"] == 1.0

    base_model = text2token.load(tiny_llama, max_length=32)
    base = base_model.encode(texts).astype(np.float64)
    final = text2token.load(str(run)).encode(texts).astype(np.float64)  # = stage2-4 (the last checkpoint)
    centred = base - base.mean(0)
    values, vectors = np.linalg.eigh(centred.T @ centred / (len(texts) - 1))
    order = np.argsort(-values)[:3]
    directions, sigma = vectors[:, order].T, np.sqrt(values[order])
    delta = (final - base) @ directions.T
    last = drift["points"][-1]
    assert np.allclose(last["abs_shift"], np.abs(delta).mean(0) / sigma, rtol=1e-3, atol=1e-6)
    assert np.allclose(np.abs(last["shift"]), np.abs(delta.mean(0) / sigma), rtol=1e-3, atol=1e-6)
    assert np.allclose(drift["explained_variance"], values[order] / values.sum(), rtol=1e-4)
    assert max(last["abs_shift"]) > 0
    assert drift["points"][0]["hit_at_k"] == pytest.approx(token_alignment(base_model, texts, ks=[5])["hit_at_k"]["5"])


def test_analyze_cli_writes_summary_and_plots(tiny_run, tiny_llama, tmp_path, capsys):
    from text2token.analysis import token_alignment
    from text2token.analysis.report import sample_texts

    run, corpus = tiny_run
    out = tmp_path / "analysis"
    argv = ["analyze", str(run), tiny_llama, "--data", str(corpus), "--sample", "8", "--output", str(out),
            "--k", "1", "5", "--components", "2", "--drift-k", "5", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sample"]["texts"] == 8
    texts = sample_texts(str(corpus), 8, seed=0)
    expected = token_alignment(text2token.load(str(run)), texts, ks=[1, 5])["hit_at_k"]
    assert summary["models"][0]["alignment"]["hit_at_k"] == pytest.approx(expected)
    assert summary["models"][0]["drift"]["status"] == "ok" and "drift" not in summary["models"][1]
    assert any("base model" in n for n in summary["notes"])
    logged = [json.loads(line) for line in (run / "stage1" / "log.jsonl").read_text().splitlines()]
    stage1 = summary["models"][0]["losses"]["stage1 (data)"]
    assert stage1 == [[r["step"], r["loss"]] for r in logged if "loss" in r]
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["drift_run.png", "hit_at_k.png", "loss_run.png"]
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 5000
    assert f"wrote hit_at_k: {out / 'hit_at_k.png'}" in printed

    # inspect works on a run folder too: the same tokens as Text2TokenModel.top_tokens
    assert main(["inspect", str(run), TRAIN[0], "--top-k", "5", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    top = text2token.load(str(run)).top_tokens(TRAIN[0], k=5)
    assert [(t["token"], t["prob"]) for t in shown["tokens"]] == [(tok, pytest.approx(p, abs=1e-6)) for tok, p in top]
    assert shown["in_text"] == sum(t["mark"] == "in text" for t in shown["tokens"])


def test_analyze_errors_and_skipped_drift(word_model, tmp_path, capsys):
    from text2token.analysis import representation_drift

    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n")
    for data, message in ((tmp_path / "missing.txt", "data file not found"), (blank, "empty sample")):
        assert main(["analyze", word_model, "--data", str(data), "--output", str(tmp_path / "a")]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("text2token: error:") and message in err
    fake = tmp_path / "run"
    (fake / "stage1" / "checkpoints").mkdir(parents=True)
    (fake / "text2token_config.json").write_text(json.dumps(
        {"model": {"backbone": word_model, "pooling": "mean", "attention": "causal", "max_length": 16},
         "adapters": [], "stages": ["data"]}))
    result = representation_drift(fake, [CAT, DOG], show_progress=False)
    assert result["status"] == "skipped" and "no checkpoints" in result["note"]
