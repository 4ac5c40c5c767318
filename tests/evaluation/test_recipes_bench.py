"""bench/recipes.py end to end on a tiny model and tiny task folders: a trained row, an untrained row, the
reuse of a finished run, the merged scores of one row scored twice, the table and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from bench import recipes as bench  # the package, from the repository root (make test)
from t2t_testdata import SENTENCES

RECIPES = Path(__file__).resolve().parents[2] / "configs" / "recipes"


def test_recipe_rows_tiny(tiny_llama, data_dir, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 3) + "\n")
    work = tmp_path / "work"
    common = ["--work", str(work), "--data-dir", str(data_dir)]
    train = ["--recipe", str(RECIPES / "default.yaml"), "--set", f"data=[{corpus}]", f"model={tiny_llama}",
             "steps=2", "batch_size=4", "max_length=32", "save_steps=10"]
    assert bench.main(["joint", *common, *train, "--tasks", "TinySTS"]) == 0
    # a run trained before an option existed has no key for it: at its default it is the same configuration
    saved = work / "joint" / "train_config.json"
    values = json.loads(saved.read_text())
    assert values.pop("anchor_weight") == 0.0
    saved.write_text(json.dumps(values))
    assert bench.main(["joint", *common, *train, "--tasks", "TinyClusters"]) == 0  # reuses the run, merges
    assert "finished run of this configuration, reused" in capsys.readouterr().err
    assert bench.main(["base", *common, "--untrained", "--model", tiny_llama, "--pooling", "last",
                       "--tasks", "TinySTS", "TinyClusters"]) == 0
    rows = {r["name"]: r for r in bench.latest_rows(work / "rows.jsonl", None)}
    assert set(rows["joint"]["scores"]) == {"TinySTS", "TinyClusters"} and rows["joint"]["texts_seen"] == 8
    recipe = yaml.safe_load((RECIPES / "default.yaml").read_text())  # contrastive weight 3 since 6751b95
    assert rows["joint"]["hyperparameters"]["contrastive_weight"] == recipe["contrastive_weight"] == 3.0
    assert rows["base"]["train_seconds"] == 0
    assert all(-100 <= v <= 100 for r in rows.values() for v in r["scores"].values())
    capsys.readouterr()
    bench.main(["--table", "--work", str(work)])
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| row | train s | texts | quick mean | all mean") and len(table) == 4
    out = tmp_path / "quality.json"
    bench.main(["--json", str(out), "--work", str(work), "--default", "joint"])
    written = json.loads(out.read_text())
    assert [r["name"] for r in written] == ["joint", "base"] and written[0]["is_default"] is True
    joint = written[0]
    assert joint["all_mean"] == round(sum(joint["scores"].values()) / 2, 2) and joint["quick_mean"] is None
    assert joint["n_tasks"] == 2
    assert joint["recipe"].endswith("default.yaml") and written[1]["recipe"] is None
    # the same run scored with fewer tokens per text than it trained with: the texts are cut, the row says so
    assert bench.main(["joint-short", *common, "--of", "joint", "--max-length", "28", "--tasks", "TinySTS"]) == 0
    rows = {r["name"]: r for r in bench.latest_rows(work / "rows.jsonl", None)}
    assert rows["joint-short"]["overrides"] == {"of": "joint", "eval_max_length": 28}
    assert rows["joint-short"]["scores"]["TinySTS"] != rows["joint"]["scores"]["TinySTS"]
    assert "eval_max_length" not in rows["joint"]["overrides"]


def test_json_merge_keeps_the_files_other_rows(tmp_path):
    out = tmp_path / "quality.json"
    old = [{"name": "kept", "scores": {"A": 1.0}}, {"name": "replaced", "scores": {"A": 2.0}}]
    out.write_text(json.dumps(old))
    new = {"name": "replaced", "recipe": None, "overrides": {}, "pooling": "last", "train_seconds": 0,
           "texts_seen": 0, "scores": {"A": 3.0}}
    bench.write_json([new], out, default=[], merge=True)
    written = json.loads(out.read_text())
    assert [(r["name"], r["scores"]["A"]) for r in written] == [("kept", 1.0), ("replaced", 3.0)]
    bench.write_json([new], out, default=[])  # without --merge the file holds the rows given, alone
    assert [r["name"] for r in json.loads(out.read_text())] == ["replaced"]


def test_json_merge_extends_a_row_that_a_retrain_reproduced(tmp_path):
    out = tmp_path / "quality.json"
    old = {"name": "run", "recipe": "r.yaml", "overrides": {"steps": 4}, "pooling": "last", "train_seconds": 100.0,
           "texts_seen": 128, "scores": {"STSBenchmark": 70.0, "A": 1.0}}
    out.write_text(json.dumps([old, {"name": "other", "scores": {"A": 5.0}}]))
    retrain = {**old, "train_seconds": 140.0, "scores": {"STSBenchmark": 70.0, "B": 2.0}}
    bench.write_json([retrain], out, default=[], merge=True)
    assert [r["name"] for r in json.loads(out.read_text())] == ["run", "other"]  # in its place
    row = {r["name"]: r for r in json.loads(out.read_text())}["run"]
    assert row["scores"] == {"STSBenchmark": 70.0, "A": 1.0, "B": 2.0} and row["train_seconds"] == 100.0
    assert row["all_mean"] == round((70.0 + 1.0 + 2.0) / 3, 2)
    drifted = {**old, "train_seconds": 150.0, "scores": {"STSBenchmark": 69.99, "B": 3.0}}  # not the same model
    bench.write_json([drifted], out, default=[], merge=True)
    row = {r["name"]: r for r in json.loads(out.read_text())}["run"]
    assert row["scores"] == {"STSBenchmark": 69.99, "B": 3.0} and row["train_seconds"] == 150.0
    other_config = {**old, "overrides": {"steps": 5}, "scores": {"STSBenchmark": 69.99, "C": 4.0}}
    bench.write_json([other_config], out, default=[], merge=True)
    assert {r["name"]: r for r in json.loads(out.read_text())}["run"]["scores"] == {"STSBenchmark": 69.99, "C": 4.0}
