"""bench/quality.py end to end on a tiny model and tiny task folders: the main table, and the ablations'
shortcuts (reuse of an identical run, stage 2 on the main run's stage 1, checkpoints as runs)."""

from __future__ import annotations

import importlib
import json

import pytest

from t2t_testdata import SENTENCES


@pytest.fixture()
def quality():
    return importlib.import_module("bench.quality")  # the package, from the repository root (make test)


def test_quality_experiment_tiny(quality, tiny_llama, data_dir, tmp_path, capsys, monkeypatch):
    # one padded pass per batch, as the experiment ran: its equal-time SimCSE arm is sized by the measured step
    # times, and 8 one-row sub-batches of the tiny batches would change that ratio, not what is tested here
    monkeypatch.setattr("text2token.model.CPU_LENGTH_GROUPS", 1)
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "wiki.txt").write_text("\n".join(SENTENCES * 3) + "\n")
    work, results = tmp_path / "work", tmp_path / "RESULTS.md"
    common = ["--work", str(work), "--data-dir", str(tmp_path), "--model", tiny_llama, "--texts", "60",
              "--steps", "2", "--stage2-steps", "2", "--save-steps", "2", "--batch-size", "4", "--max-length", "40",
              "--results", str(results), "--ablation-tasks", "TinySTS"]
    quality.main([*common, "--tasks", "TinySTS", "TinyPairs"])
    timings = json.loads((work / "timings.json").read_text())
    assert set(timings) == {"t2t-s1", "t2t-s1s2", "t2t-s1s2-last", "simcse-texts", "simcse-texts-last",
                            "simcse-time", "simcse-time-last"}
    assert timings["simcse-time-last"]["full"]["steps"] == timings["simcse-time"]["full"]["steps"]
    # equal texts: stage 1 alone and SimCSE see as many texts as stage 1 + 2 (4 steps of 4)
    assert {timings[n]["texts_seen"] for n in ("t2t-s1", "t2t-s1s2", "t2t-s1s2-last", "simcse-texts",
                                               "simcse-texts-last")} == {16}
    assert json.loads((work / "simcse-texts" / "text2token_config.json").read_text())["objective"] == "simcse"
    text = results.read_text()
    for row in ("base mean causal", "base last bidirectional", "Text2Token stage 1 + 2", "SimCSE (equal time)"):
        assert f"| {row} |" in text
    assert "TinySTS" in text and "TinyPairs" in text and "--tasks TinySTS TinyPairs" in text

    quality.main([*common, "--ablations", "tau", "steps", "pooling"])
    timings = json.loads((work / "timings.json").read_text())
    assert not any(name.startswith("abl-pooling") for name in timings)  # both pooling values are main runs
    # tau = the main recipe's value reuses the main run; the others train stage 2 on its stage 1
    assert "abl-tau-tau1e-05" not in timings and timings["abl-tau-tau0.1"]["stage1_from"] == "t2t-s1s2"
    same_stage1 = [(work / run / "stage1" / "adapter" / "adapter_model.safetensors").read_bytes()
                   for run in ("t2t-s1s2", "abl-tau-tau0.1")]
    assert same_stage1[0] == same_stage1[1]
    tau_run = json.loads((work / "abl-tau-tau0.1" / "text2token_config.json").read_text())
    assert tau_run["hyperparameters"]["tau"] == 0.1 and tau_run["adapters"] == ["stage1/adapter", "stage2/adapter"]
    # steps: the checkpoint at step 2 of the 4-step runs becomes a run folder; step 4 is the run itself
    ckpt = work / "abl-steps-t2t-s1-2"
    assert timings["abl-steps-t2t-s1-2"]["texts_seen"] == 8 and "abl-steps-t2t-s1-4" not in timings
    assert (ckpt / "stage1" / "adapter" / "adapter_model.safetensors").read_bytes() == (
        work / "t2t-s1" / "stage1" / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors").read_bytes()
    import text2token

    vectors = text2token.load(str(ckpt)).encode(["a cat sat on the mat"])
    assert vectors.shape[0] == 1
    text = results.read_text()
    assert "### Ablation: tau" in text and "| SimCSE, step 2 |" in text and "| tau=0.1 (stage 1 + 2) |" in text

    # longer training: stage 1 + 2 at 4 + 2 steps against SimCSE at the pace of the main table's SimCSE runs
    quality.main([*common, "--long", "--steps", "4", "--curve-every", "2", "--tasks", "TinySTS"])
    timings = json.loads((work / "timings.json").read_text())
    pace = max(timings[n]["seconds"] / timings[n]["full"]["steps"] for n in ("simcse-texts", "simcse-time"))  # slowest
    steps = max(1, round(timings["long-t2t-s1s2-mean-4-2"]["seconds"] / pace))
    # (a SimCSE run of that many steps may exist already, simcse-time for one: then it is reused, under its name)
    assert f"| SimCSE (equal time, {steps} steps) |" in results.read_text()
    stage1 = work / "long-t2t-s1s2-mean-4-2-stage1-2"  # step 2 of stage 1 of the two-stage run
    record = json.loads((stage1 / "text2token_config.json").read_text())
    assert record["adapters"] == ["stage1/adapter"] and record["stages"] == ["data"]
    assert (stage1 / "stage1" / "adapter" / "adapter_model.safetensors").read_bytes() == (
        work / "long-t2t-s1s2-mean-4-2" / "stage1" / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors"
    ).read_bytes()
    assert timings["long-t2t-s1s2-mean-4-2-stage1"]["texts_seen"] == 16
    text = results.read_text()
    assert "### Longer training, mean pooling" in text and "| Text2Token stage 1, step 2 |" in text
    assert "| Text2Token stage 1 + 2 (4 + 2) |" in text

    # an ablation rerun with another pooling does not take the mean-pooled runs of the same name
    quality.main([*common, "--ablations", "lr"])
    quality.main([*common, "--ablations", "lr", "--pooling", "last"])
    timings = json.loads((work / "timings.json").read_text())
    lr_runs = [n for n in timings if n.startswith("abl-lr-lr5e-05")]
    assert len(lr_runs) == 2 and {timings[n]["full"]["pooling"] for n in lr_runs} == {"mean", "last"}
    assert "### Ablation: lr, last pooling, causal" in results.read_text()

    # --long where both runs equal main-table runs (2 + 2 steps; SimCSE 4 steps): reused, checkpoints taken from them
    quality.main([*common, "--long", "--simcse-steps", "4", "--curve-every", "2", "--tasks", "TinySTS"])
    timings = json.loads((work / "timings.json").read_text())
    assert "long-t2t-s1s2-mean-2-2" not in timings and "long-simcse-mean-4" not in timings
    assert timings["simcse-texts-2"]["checkpoint_of"] == "simcse-texts"
    assert timings["t2t-s1s2-stage1"]["checkpoint_of"] == "t2t-s1s2"
