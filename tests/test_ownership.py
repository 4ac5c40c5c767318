"""Ownership, locking and integrity of what text2token writes (issue 13, items 1 and 3): an output is
never one of the inputs, --overwrite replaces only a run folder, one writer per run folder and per
encode output, and damaged files are named instead of being read as if whole."""

import json
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

import text2token
from text2token.cli import main
from text2token.errors import LockedError, RunFolderError
from text2token.runfolder import COMPLETE_FILE, RunFolder
from t2t_testdata import SENTENCES
from cli_checks import fails, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")
PROBE = ["The cat sat on the mat.", "Economists study inflation."]


def train(model, data, out, *extra):
    return ["train", "--model", str(model), "--data", str(data), "--output", str(out), "--stages", "data",
            "--steps", "1", "--batch-size", "8", "--max-length", "16", "--background-samples", "4",
            "--pooling", "mean", "--contrastive-weight", "0", *[str(e) for e in extra]]


@pytest.fixture(scope="module")
def finished(tiny_llama, tmp_path_factory):
    """A finished one-stage run with two checkpoints, and its embeddings of PROBE."""
    import torch

    torch.set_num_threads(1)  # as the tests that resume it: the same arithmetic
    folder = tmp_path_factory.mktemp("finished")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 3) + "\n")
    run = folder / "run"
    assert main(train(tiny_llama, corpus, run, "--steps", "4", "--save-steps", "2", "--batch-size", "4",
                      "--lr", "1e-3", "--logging-steps", "1")) == 0
    return {"run": run, "corpus": corpus, "vectors": text2token.load(str(run)).encode(PROBE)}


@pytest.fixture()
def live_process():
    """A running process (not this one) whose pid a lock can name."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(path, pid, **extra):
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": 0, **extra}))
    return path


# ------------------------------------------------------------------ an output is never an input
def test_overwrite_refuses_a_folder_holding_the_corpus_and_the_backbone(tiny_llama, corpus_file, tmp_path, capsys,
                                                                         monkeypatch):
    """Issue 13 case 1: `train --model u/tiny --data u/corpus.txt --output u --overwrite` deleted both."""
    monkeypatch.chdir(tmp_path)
    u = tmp_path / "u"
    u.mkdir()
    shutil.copy(corpus_file, u / "corpus.txt")
    shutil.copytree(tiny_llama, u / "tiny")
    before = snapshot(u)
    fails(train("u/tiny", "u/corpus.txt", "u", "--overwrite"), capsys, "holds the corpus of this run")
    assert snapshot(u) == before
    # a run folder that a backbone was copied into: the same refusal names the backbone
    assert main(train("u/tiny", "u/corpus.txt", "run")) == 0
    shutil.copytree(tiny_llama, tmp_path / "run" / "tiny")
    before = snapshot(tmp_path / "run")
    fails(train("run/tiny", "u/corpus.txt", "run", "--overwrite"), capsys, "holds the backbone of this run")
    assert snapshot(tmp_path / "run") == before


def test_a_relative_backbone_path_loads_from_another_folder(tiny_llama, corpus_file, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(tiny_llama, work / "tiny")
    monkeypatch.chdir(work)
    assert main(train("tiny", corpus_file, "run")) == 0
    record = json.loads((work / "run" / "text2token_config.json").read_text())
    assert record["model"]["backbone"] == str((work / "tiny").resolve())
    monkeypatch.chdir(tmp_path)
    assert text2token.load(str(work / "run")).encode(PROBE).shape[0] == 2


def test_encode_never_writes_over_its_input(tiny_llama, tmp_path, capsys):
    texts = tmp_path / "f.txt"
    texts.write_text("\n".join(PROBE) + "\n")
    fails(["encode", tiny_llama, "--input", texts, "--output", texts], capsys, "is the input file")
    assert texts.read_text() == "\n".join(PROBE) + "\n"
    (tmp_path / "folder").mkdir()
    fails(["encode", tiny_llama, "--input", texts, "--output", tmp_path / "folder"], capsys, "is a folder")


# ------------------------------------------------------------------ --overwrite replaces only a run folder
def test_overwrite_refuses_a_folder_that_is_not_a_run_folder(tiny_llama, corpus_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    (out / "figures").mkdir()
    line = fails(train(tiny_llama, corpus_file, out, "--overwrite"), capsys, "is not a text2token run folder")
    assert "figures/" in line and "thesis.tex" in line
    assert (out / "thesis.tex").read_text() == "mine" and (out / "figures").is_dir()
    assert sorted(p.name for p in out.iterdir()) == ["figures", "thesis.tex"]


def test_overwrite_refuses_a_run_folder_holding_foreign_files(tiny_llama, corpus_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train(tiny_llama, corpus_file, run)) == 0
    (run / "notes.txt").write_text("mine")
    record = (run / "text2token_config.json").read_bytes()
    fails(train(tiny_llama, corpus_file, run, "--lr", "1e-3", "--overwrite"), capsys,
          "holds files a run does not write (notes.txt)")
    assert (run / "notes.txt").read_text() == "mine" and (run / "text2token_config.json").read_bytes() == record
    (run / "notes.txt").unlink()
    (run / "results.json").write_text("{}")  # what `eval --output` leaves there counts as the run's own
    assert main(train(tiny_llama, corpus_file, run, "--lr", "1e-3", "--overwrite")) == 0
    assert json.loads((run / "text2token_config.json").read_text())["hyperparameters"]["lr"] == 1e-3


# ------------------------------------------------------------------ one writer per run folder
def test_a_second_writer_of_a_run_folder_is_refused(finished, tiny_llama, tmp_path, capsys, live_process):
    run = finished["run"]
    lock = write_lock(RunFolder(run).lock_file, live_process)
    try:
        before = snapshot(run)
        line = fails(["train", "--resume", run], capsys, "is being written by another process")
        assert f"pid {live_process}" in line and str(lock) in line
        fails(train(tiny_llama, finished["corpus"], run, "--lr", "1e-3", "--overwrite"), capsys,
              "is being written by another process")
        assert snapshot(run) == before
        fresh = tmp_path / "fresh"
        write_lock(RunFolder(fresh).lock_file, live_process)
        fails(train(tiny_llama, finished["corpus"], fresh), capsys, "is being written by another process")
        assert not fresh.exists()  # refused before any folder is made
    finally:
        lock.unlink(missing_ok=True)


def test_a_second_writer_in_the_same_process_is_refused(finished):
    with RunFolder(finished["run"]).lock():
        with pytest.raises(LockedError, match="already being written by this process"):
            text2token.train(text2token.TrainConfig(output=str(finished["run"])), resume=True)
    assert not RunFolder(finished["run"]).lock_file.exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tiny_llama, corpus_file, tmp_path, caplog):
    run = tmp_path / "run"
    pid = dead_pid()
    write_lock(RunFolder(run).lock_file, pid)
    assert main(train(tiny_llama, corpus_file, run)) == 0
    assert "taking over the lock" in caplog.text and f"pid {pid}" in caplog.text
    assert (run / "text2token_config.json").is_file() and not RunFolder(run).lock_file.exists()


# ------------------------------------------------------------------ one writer per encode output
def test_two_encodes_into_one_output_the_second_refuses(tiny_llama, tmp_path, monkeypatch, capsys, live_process):
    import text2token.encoding as encoding

    texts = tmp_path / "f.txt"
    texts.write_text("\n".join(SENTENCES) + "\n")
    out = tmp_path / "v.npy"
    real, seen = encoding._write_chunk, []

    def second_encode_meanwhile(*args, **kwargs):  # while the first writes its rows, another starts
        if not seen:
            seen.append(main(["encode", tiny_llama, "--input", str(texts), "--output", str(out), "--normalize",
                              "--chunk-size", "4"]))
            seen.append(capsys.readouterr().err)
        return real(*args, **kwargs)

    monkeypatch.setattr(encoding, "_write_chunk", second_encode_meanwhile)
    assert main(["encode", tiny_llama, "--input", str(texts), "--output", str(out), "--chunk-size", "4"]) == 0
    assert seen[0] == 2 and "is already being written" in seen[1] and "Traceback" not in seen[1]
    expected = text2token.load(tiny_llama).encode(SENTENCES)
    assert np.abs(np.load(out) - expected).max() < 1e-5  # the first's rows, not normalised
    monkeypatch.setattr(encoding, "_write_chunk", real)
    # another live process writing it with other settings: refused, its files kept
    partial = tmp_path / "v.npy.0123456789ab.partial"
    partial.write_bytes(b"theirs")
    write_lock(tmp_path / "v.npy.shard-00000-of-00001.lock", live_process, digest="0123456789ab", shard=[0, 1])
    fails(["encode", tiny_llama, "--input", texts, "--output", out, "--normalize"], capsys,
          "is being written by another process")
    (tmp_path / "v.npy.shard-00000-of-00001.lock").unlink()
    write_lock(tmp_path / "v.npy.shard-00001-of-00002.lock", live_process, digest="0123456789ab", shard=[1, 2])
    fails(["encode", tiny_llama, "--input", texts, "--output", out, "--shard", "0/2"], capsys,
          "is being written by another encode with other settings")
    assert partial.read_bytes() == b"theirs"


# ------------------------------------------------------------------ integrity
def test_the_record_lists_checksums_of_what_loading_needs(finished):
    record = json.loads((finished["run"] / "text2token_config.json").read_text())
    files = record["files"]
    assert {"stage1/adapter/adapter_model.safetensors", "stage1/adapter/adapter_config.json",
            "train_config.json"} <= set(files)
    assert all(len(entry["sha256"]) == 64 and entry["bytes"] > 0 for entry in files.values())
    marker = json.loads((finished["run"] / "stage1" / "checkpoints" / "checkpoint-2" / COMPLETE_FILE).read_text())
    assert "adapter_model.safetensors" in marker["sha256"]


def test_a_damaged_adapter_is_named_and_resume_rebuilds_it(finished, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished["run"], run)
    weights = run / "stage1" / "adapter" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = bytes(8)  # the right size, damaged content
    weights.write_bytes(bytes(data))
    texts = tmp_path / "f.txt"
    texts.write_text("\n".join(PROBE) + "\n")
    line = fails(["encode", run, "--input", texts, "--output", tmp_path / "v.npy"], capsys, "is damaged")
    assert str(weights) in line and "--resume" in line and not (tmp_path / "v.npy").exists()
    weights.unlink()
    fails(["encode", run, "--input", texts, "--output", tmp_path / "v.npy"], capsys, "is missing")
    # --resume does not answer "already finished" for a damaged run: it retrains the stage from its checkpoint
    assert main(["train", "--resume", str(run)]) == 0
    assert np.abs(text2token.load(str(run)).encode(PROBE) - finished["vectors"]).max() <= 1e-5
    shutil.rmtree(run / "stage1" / "adapter")
    fails(["encode", run, "--input", texts, "--output", tmp_path / "v.npy"], capsys, "incomplete: adapter")


@pytest.mark.parametrize("content", [b"\x00\xff binary", b"{}", b"[1, 2]"], ids=["binary", "empty-object", "list"])
def test_a_damaged_record_is_one_line(finished, tmp_path, capsys, content):
    run = tmp_path / "run"
    shutil.copytree(finished["run"], run)
    (run / "text2token_config.json").write_bytes(content)
    texts = tmp_path / "f.txt"
    texts.write_text("a text\n")
    fails(["encode", run, "--input", texts, "--output", tmp_path / "v.npy"], capsys, "text2token_config.json")


def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(finished, tmp_path, caplog):
    """A crash after checkpoint-4 was written, whose content was then damaged (same size): the resume
    takes checkpoint-2 and reaches the uninterrupted model."""
    run = tmp_path / "run"
    shutil.copytree(finished["run"], run)
    (run / "text2token_config.json").unlink()
    shutil.rmtree(run / "stage1" / "adapter")
    (run / "stage1" / "summary.json").unlink()
    weights = run / "stage1" / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = bytes(8)
    weights.write_bytes(bytes(data))
    assert main(["train", "--resume", str(run)]) == 0
    assert "checkpoint-4 is damaged" in caplog.text
    assert np.abs(text2token.load(str(run)).encode(PROBE) - finished["vectors"]).max() <= 1e-5


# ------------------------------------------------------------------ loading helpers
def test_run_folder_loads_up_to_a_stage_and_from_a_checkpoint(finished, tiny_llama):
    folder = RunFolder(finished["run"])
    base = text2token.load(tiny_llama, pooling="mean", max_length=16).encode(PROBE)
    assert np.abs(folder.load(upto_stage=0).encode(PROBE) - base).max() < 1e-6
    assert np.abs(folder.load(upto_stage="data").encode(PROBE) - finished["vectors"]).max() < 1e-6
    last = folder.checkpoints("data")[-1][1]
    assert np.abs(folder.load(checkpoint=last).encode(PROBE) - finished["vectors"]).max() < 1e-5
    with pytest.raises(RunFolderError, match="no stage 'model'"):
        folder.load(upto_stage="model")


def test_a_checkpoint_becomes_a_run_of_its_own(finished, tmp_path):
    """RunFolder.checkpoint_as_run: checkpoint-2 of the run as a finished run of 2 steps, loadable and verified
    like any run, with the checkpoint's weights; a second copy onto it and an incomplete checkpoint are refused."""
    folder = RunFolder(finished["run"])
    copy = folder.checkpoint_as_run(2, tmp_path / "at2")
    record = copy.read_record()
    assert record["training"] == {"checkpoint_of": str(folder.path), "step": 2}
    assert record["hyperparameters"]["steps"] == 2 and record["stages"] == ["data"]
    copy.verify(record)  # the new checksums are the copied adapter's
    at2 = folder.load(checkpoint=folder.checkpoints_dir("data") / "checkpoint-2").encode(PROBE)
    assert np.abs(text2token.load(str(copy.path)).encode(PROBE) - at2).max() < 1e-6
    assert np.abs(at2 - finished["vectors"]).max() > 1e-4  # step 2 is not the finished model
    with pytest.raises(RunFolderError, match="exists"):
        folder.checkpoint_as_run(2, tmp_path / "at2")
    with pytest.raises(RunFolderError, match="not a complete checkpoint"):
        folder.checkpoint_as_run(3, tmp_path / "at3")


def test_a_run_inside_its_corpus_folder_is_refused(tiny_llama, corpus_file, tmp_path, capsys):
    texts = tmp_path / "texts"
    texts.mkdir()
    shutil.copy(corpus_file, texts / "corpus.txt")
    fails(train(tiny_llama, texts, texts / "run"), capsys, "is inside the corpus folder")
    assert sorted(p.name for p in texts.iterdir()) == ["corpus.txt"]


def test_a_stale_encode_lock_is_taken_over(tiny_llama, tmp_path, caplog):
    texts = tmp_path / "f.txt"
    texts.write_text("\n".join(PROBE) + "\n")
    lock = write_lock(tmp_path / "v.npy.shard-00000-of-00001.lock", dead_pid(), digest="x", shard=[0, 1])
    assert main(["encode", tiny_llama, "--input", str(texts), "--output", str(tmp_path / "v.npy")]) == 0
    assert "taking over the lock" in caplog.text and not lock.exists() and np.load(tmp_path / "v.npy").shape[0] == 2
