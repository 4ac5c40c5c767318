import json

import numpy as np
import pytest

import text2token
from text2token.cli import main


def test_train_from_config_file_with_flag_override_then_encode(tiny_llama, corpus_file, tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: {tiny_llama}\ndata: {corpus_file}\nsteps: 50\nbatch_size: 4\nmax_length: 32\n"
                   "stages: [data]\nsave_steps: 10\n")
    assert main(["train", "--config", str(cfg), "--steps", "2", "--output", str(tmp_path / "run")]) == 0
    record = json.loads((tmp_path / "run" / "text2token_config.json").read_text())
    assert record["hyperparameters"]["steps"] == 2 and record["stages"] == ["data"]
    assert "run saved to" in capsys.readouterr().out

    inp = tmp_path / "in.txt"
    inp.write_text("The cat sat.\n\nRain fell on the city.\n")
    out = tmp_path / "emb.npy"
    assert main(["encode", str(tmp_path / "run"), "--input", str(inp), "--output", str(out), "--normalize"]) == 0
    arr = np.load(out)
    expected = text2token.load(str(tmp_path / "run")).encode(["The cat sat.", "", "Rain fell on the city."], normalize=True)
    assert arr.shape == expected.shape and np.allclose(arr, expected, atol=1e-5)


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "{missing}", "--output", "{out}", "--model", "{model}"], "training data not found"),
    (["train", "--data", "{corpus}", "--output", "{out}", "--model", "{model}", "--steps", "0"], "steps must be at least 1"),
    (["train", "--data", "{corpus}", "--output", "{out}", "--model", "{model}", "--pooling", "max"], "unknown pooling"),
    (["train", "--data", "{corpus}", "--output", "{out}", "--model", "{tmp}/no-model"], "does not exist"),
    (["train", "--output", "{out}"], "no training data"),
    (["train", "--resume", "{tmp}"], "cannot resume"),
    (["encode", "{model}", "--input", "{missing}", "--output", "{out}.npy"], "input file not found"),
])
def test_user_errors_are_one_line_and_exit_2(tiny_llama, corpus_file, tmp_path, capsys, argv, message):
    fill = {"missing": str(tmp_path / "missing.txt"), "out": str(tmp_path / "out"), "model": tiny_llama,
            "corpus": str(corpus_file), "tmp": str(tmp_path)}
    assert main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # above it at most progress bars
    assert err.startswith("text2token: error:") and message in err
