"""Issue 13, the rest of it for training: --resume refuses a backbone whose weights changed, a resumed
run's log.jsonl holds each step once, --resume works from another working folder, and filesystem
errors (read-only folders, a parent that is a file, a read-only backbone cache) are one line, told
before any heavy work."""

import errno
import json
import os
import shutil

import numpy as np
import pytest

import text2token
from text2token.backbone import BackboneError, resolve_backbone
from text2token.cli import main
from text2token.runfolder import START_FILE, RunFolder, trim_log
from t2t_testdata import SENTENCES
from cli_checks import fails, refuse_writes_under, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")
PROBE = ["The cat sat on the mat.", "Economists study inflation."]


def train(model, data, out, *extra):
    return ["train", "--model", str(model), "--data", str(data), "--output", str(out), "--stages", "data",
            "--steps", "4", "--save-steps", "2", "--batch-size", "4", "--max-length", "16", "--lr", "1e-3",
            "--logging-steps", "1", "--pooling", "mean", "--contrastive-weight", "0", *[str(e) for e in extra]]


def killed_after_step_4(run):
    """The folder as a kill after step 4 was logged, before checkpoint-4 was complete, leaves it (plus a
    log line the kill cut in half)."""
    (run / "text2token_config.json").unlink()
    shutil.rmtree(run / "stage1" / "adapter")
    (run / "stage1" / "summary.json").unlink()
    shutil.rmtree(run / "stage1" / "checkpoints" / "checkpoint-4")
    with (run / "stage1" / "log.jsonl").open("a") as f:
        f.write('{"stage": "data", "step": 5, "lo')


def log_steps(run):
    return [json.loads(line) for line in (run / "stage1" / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(tiny_llama, tmp_path_factory):
    """A finished run (4 steps, checkpoints at 2 and 4) on its own copy of the backbone, started from a
    working folder with relative paths; its log and embeddings."""
    import torch

    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("work")
    shutil.copytree(tiny_llama, work / "tiny")
    (work / "corpus.txt").write_text("\n".join(SENTENCES * 3) + "\n")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert main(train("tiny", "corpus.txt", "run")) == 0
    finally:
        os.chdir(cwd)
    run = work / "run"
    return {"work": work, "run": run, "log": log_steps(run), "vectors": text2token.load(str(run)).encode(PROBE)}


def copy_run(finished, tmp_path):
    """A copy of the work folder (backbone, corpus, run); the run as a kill after step 4 leaves it."""
    work = tmp_path / "work"
    shutil.copytree(finished["work"], work)
    start = json.loads((work / "run" / START_FILE).read_text())
    start["working_folder"] = str(work)
    (work / "run" / START_FILE).write_text(json.dumps(start))
    killed_after_step_4(work / "run")
    return work


# ------------------------------------------------------------------ the backbone's fingerprint
def test_the_run_records_its_working_folder_and_backbone_fingerprint(finished):
    start = json.loads((finished["run"] / START_FILE).read_text())
    assert start["working_folder"] == str(finished["work"])
    fingerprint = start["backbone"]
    assert fingerprint["backbone"] == "tiny" and fingerprint["path"] == str((finished["work"] / "tiny").resolve())
    assert set(fingerprint["files"]) == {"model.safetensors"}
    assert fingerprint["files"]["model.safetensors"]["bytes"] == (finished["work"] / "tiny" / "model.safetensors").stat().st_size
    record = json.loads((finished["run"] / "text2token_config.json").read_text())
    assert record["backbone_fingerprint"] == fingerprint
    assert json.loads((finished["run"] / "train_config.json").read_text())["model"] == "tiny"  # as given


def test_resume_refuses_a_backbone_whose_weights_changed(finished, tmp_path, capsys, monkeypatch, caplog):
    import safetensors.torch

    work = copy_run(finished, tmp_path)
    run = work / "run"
    weights = work / "tiny" / "model.safetensors"
    original = weights.read_bytes()
    tensors = safetensors.torch.load_file(weights)
    tensors = {name: t + 0.01 for name, t in tensors.items()}  # fine-tuned in place: same names, shapes, size
    safetensors.torch.save_file(tensors, weights, metadata={"format": "pt"})
    assert weights.stat().st_size == len(original)
    before = snapshot(run)
    monkeypatch.chdir(work)
    line = fails(["train", "--resume", run], capsys, "changed since")
    assert line == (f"text2token: error: the weights of the backbone {(work / 'tiny').resolve()} changed since {run} "
                    "was started (model.safetensors differ): --resume would continue onto other weights; restore "
                    "the backbone it started with, or start a new run with another --output")
    assert snapshot(run) == before and not RunFolder(run).lock_file.exists()
    # the same bytes again, only a new modification time: a warning, and the run finishes as it would have
    weights.write_bytes(original)
    os.utime(weights, ns=(1, 1))
    assert main(["train", "--resume", str(run)]) == 0
    assert "new modification times" in caplog.text
    assert np.abs(text2token.load(str(run)).encode(PROBE) - finished["vectors"]).max() <= 1e-5


def test_loading_a_finished_run_warns_once_when_its_backbone_changed(tiny_llama, tmp_path, caplog):
    import logging

    import safetensors.torch

    shutil.copytree(tiny_llama, tmp_path / "tiny")
    (tmp_path / "corpus.txt").write_text("\n".join(SENTENCES * 3) + "\n")
    run = tmp_path / "run"
    assert main(train(tmp_path / "tiny", tmp_path / "corpus.txt", run)) == 0
    trained = text2token.load(str(run)).encode(PROBE)
    with caplog.at_level(logging.WARNING):
        text2token.load(str(run))
    assert "changed since" not in caplog.text  # the same weights: nothing to say
    weights = tmp_path / "tiny" / "model.safetensors"
    tensors = {name: t + 0.01 for name, t in safetensors.torch.load_file(weights).items()}
    safetensors.torch.save_file(tensors, weights, metadata={"format": "pt"})
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        model = text2token.load(str(run))
        text2token.load(str(run))  # once per process and state of the weights
    warnings = [r.getMessage() for r in caplog.records if "changed since" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"the weights of the backbone {(tmp_path / 'tiny').resolve()} changed since {run} "
                                  "was trained (model.safetensors has other content at the same size)")
    # loading goes on, onto the new weights: the embeddings differ from those it was trained to give
    assert np.abs(model.encode(PROBE) - trained).max() > 1e-4


# ------------------------------------------------------------------ log.jsonl after a resume
def test_a_resumed_run_logs_each_step_once(finished, tmp_path, monkeypatch):
    work = copy_run(finished, tmp_path)
    run = work / "run"
    monkeypatch.chdir(work)
    assert main(["train", "--resume", str(run)]) == 0
    records = log_steps(run)
    losses = [(r["step"], r["loss"]) for r in records if "loss" in r]
    assert [step for step, _ in losses] == [1, 2, 3, 4]
    original = [(r["step"], r["loss"]) for r in finished["log"] if "loss" in r]
    assert losses[:2] == original[:2]  # kept as written before the kill
    assert np.allclose([l for _, l in losses[2:]], [l for _, l in original[2:]], atol=1e-5)  # logged again
    assert sum("train_runtime" in r for r in records) == 1
    assert [r["step"] for r in records] == [r["step"] for r in finished["log"]]
    assert not [p for p in (run / "stage1").iterdir() if p.name.endswith(".tmp")]


def test_trim_log_drops_what_follows_the_checkpoint_and_cut_lines(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": s / 10}) + "\n" for s in (1, 2, 3, 4)) + '{"step": 5, "lo')
    assert trim_log(log, 2) == 3
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2]
    assert trim_log(log, 2) == 0
    assert trim_log(log, 0) == 2 and log.read_text() == ""
    assert trim_log(tmp_path / "none.jsonl", 3) == 0


# ------------------------------------------------------------------ --resume from another working folder
def test_resume_from_another_working_folder_finds_relative_model_and_data(finished, tmp_path, monkeypatch):
    work = copy_run(finished, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # neither tiny/ nor corpus.txt is here
    assert main(["train", "--resume", str(work / "run")]) == 0
    assert np.abs(text2token.load(str(work / "run")).encode(PROBE) - finished["vectors"]).max() <= 1e-5
    record = json.loads((work / "run" / "text2token_config.json").read_text())
    assert record["model"]["backbone"] == str(work / "tiny")
    assert record["hyperparameters"]["data"] == [str(work / "corpus.txt")]
    assert json.loads((work / "run" / "train_config.json").read_text())["data"] == ["corpus.txt"]  # as started


# ------------------------------------------------------------------ filesystem errors, one line, early
@pytest.fixture()
def no_backbone(monkeypatch):
    """Fail the test if training gets as far as loading the backbone (the check must come before)."""
    def load(*args, **kwargs):
        raise AssertionError("the backbone was loaded before the folder was checked")

    monkeypatch.setattr("text2token.stages.load_backbone", load)


def test_a_read_only_output_folder_is_one_line_before_the_backbone_loads(tiny_llama, corpus_file, tmp_path, capsys,
                                                                         monkeypatch, no_backbone):
    parent = tmp_path / "read-only"
    parent.mkdir()
    refuse_writes_under(monkeypatch, parent)
    line = fails(train(tiny_llama, corpus_file, parent / "run"), capsys, "is not writable (Permission denied)")
    assert line == (f"text2token: error: cannot write {parent / 'run'}: {parent} is not writable (Permission "
                    "denied); make it writable or choose another --output")
    assert list(parent.iterdir()) == []
    refuse_writes_under(monkeypatch, parent, OSError(errno.EROFS, "Read-only file system"))
    fails(train(tiny_llama, corpus_file, parent / "run"), capsys, "is not writable (Read-only file system)")


def test_an_output_under_a_file_is_one_line_before_the_backbone_loads(tiny_llama, corpus_file, tmp_path, capsys,
                                                                      no_backbone):
    (tmp_path / "notes.txt").write_text("mine")
    line = fails(train(tiny_llama, corpus_file, tmp_path / "notes.txt" / "run"), capsys, "is a file, not a folder")
    assert f"cannot create {tmp_path / 'notes.txt' / 'run'}: {tmp_path / 'notes.txt'} is a file" in line
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_read_only_run_folder_on_resume_is_one_line(finished, tmp_path, capsys, monkeypatch, no_backbone):
    work = copy_run(finished, tmp_path)
    before = snapshot(work / "run")
    refuse_writes_under(monkeypatch, work / "run")
    line = fails(["train", "--resume", work / "run"], capsys, "is not writable (Permission denied)")
    assert str(work / "run") in line
    assert snapshot(work / "run") == before


def test_a_run_folder_that_becomes_read_only_mid_run_is_one_line(tiny_llama, corpus_file, tmp_path, capsys,
                                                                 monkeypatch):
    import text2token.runfolder as runfolder

    real = runfolder.atomic_write_text

    def refuse_summary(path, text):
        if path.name == "summary.json":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(path, text)

    monkeypatch.setattr(runfolder, "atomic_write_text", refuse_summary)
    run = tmp_path / "run"
    line = fails(train(tiny_llama, corpus_file, run, "--steps", "1"), capsys, "Permission denied")
    assert line.startswith(f"text2token: error: cannot write {run / 'stage1' / 'summary.json'} (Permission denied)")
    assert not RunFolder(run).lock_file.exists()


def test_a_failed_save_of_the_stage2_targets_is_one_line_and_resume_goes_on(tiny_llama, corpus_file, tmp_path,
                                                                            capsys, monkeypatch):
    """torch.save's errno-less "file write failed" with space to spare (not a full disk) while stage 2 saves its
    teacher targets: one line naming the file and how to go on; --resume then finishes the run."""
    import torch

    real = torch.save

    def failing(payload, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    run = tmp_path / "run"
    monkeypatch.setattr(torch, "save", failing)
    argv = [a if a != "data" else "model" for a in train(tiny_llama, corpus_file, run, "--steps", "1")]
    line = fails(argv, capsys, "file write failed")
    assert line.startswith(f"text2token: error: cannot write {run / 'stage2' / 'targets.pt'} (torch.save failed: "
                           "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: "
                           "file write failed); "), line
    assert line.endswith(f"training stopped, what it saved before is kept: make the folder writable, then continue "
                         f"with `text2token train --resume {run}`")
    assert not [p for p in run.rglob("*.tmp")] and not RunFolder(run).lock_file.exists()
    monkeypatch.setattr(torch, "save", real)
    assert main(["train", "--resume", str(run)]) == 0
    assert text2token.load(str(run)).encode(PROBE).shape[0] == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder: see the monkeypatched tests")
def test_a_chmod_read_only_output_folder(tiny_llama, corpus_file, tmp_path, capsys):
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        fails(train(tiny_llama, corpus_file, parent / "run"), capsys, "is not writable")
    finally:
        parent.chmod(0o755)


def test_a_read_only_backbone_cache_is_one_line_before_converting(tmp_path, monkeypatch, capsys):
    import text2token.backbone as backbone

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF not really")
    monkeypatch.setenv("TEXT2TOKEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(backbone, "convert_gguf", lambda *a: pytest.fail("converted into a read-only cache"))
    (tmp_path / "cache").mkdir()  # ~/.cache/text2token, read-only
    refuse_writes_under(monkeypatch, tmp_path / "cache")
    with pytest.raises(BackboneError) as error:
        resolve_backbone(str(gguf))
    assert str(error.value) == (f"cannot write {tmp_path / 'cache' / 'backbones'}: {tmp_path / 'cache'} is not "
                                "writable (Permission denied); the converted backbone is cached there: set "
                                "$TEXT2TOKEN_CACHE to a writable folder")
    texts = tmp_path / "f.txt"
    texts.write_text("a text\n")
    fails(["encode", gguf, "--input", texts, "--output", tmp_path / "v.npy"], capsys, "set $TEXT2TOKEN_CACHE")


def test_a_failed_write_into_the_backbone_cache_is_one_line(tmp_path, monkeypatch):
    import text2token.backbone as backbone

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF not really")
    monkeypatch.setenv("TEXT2TOKEN_CACHE", str(tmp_path / "cache"))

    def convert(source, out):
        raise PermissionError(errno.EACCES, "Permission denied", str(out))

    monkeypatch.setattr(backbone, "convert_gguf", convert)
    with pytest.raises(BackboneError, match=r"cannot write the backbone cache .*tiny-[0-9a-f]{12} \(Permission "
                                            r"denied\): set \$TEXT2TOKEN_CACHE"):
        resolve_backbone(str(gguf))


def test_a_streaming_encode_resumes_only_onto_the_same_backbone_weights(tmp_path):
    """encode's resume key of a run folder includes its backbone's fingerprint: changed weights start over."""
    from text2token.cli import _model_key

    backbone = tmp_path / "backbone"
    backbone.mkdir()
    (backbone / "config.json").write_text("{}")
    weights = backbone / "model.safetensors"
    weights.write_bytes(bytes(range(256)) * 4096)
    run = tmp_path / "run"
    run.mkdir()
    (run / "text2token_config.json").write_text(json.dumps({"model": {"backbone": str(backbone)}}))
    before = _model_key(str(run))
    assert before == _model_key(str(run)) and "+backbone:" in before
    weights.write_bytes(bytes(reversed(range(256))) * 4096)  # same size, other content
    assert _model_key(str(run)) != before
