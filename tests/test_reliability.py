"""Nothing lost, nothing surprising: kill -9 and resume, non-finite loss, disk full.

Every interrupted run must resume to the very model an uninterrupted run with the same seed
gives (embeddings within 1e-5), and no half-written checkpoint may ever be taken for a whole one.
"""

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import text2token
from text2token.cli import main
from text2token.training import last_checkpoint
from t2t_testdata import SENTENCES

PROBE = ["The cat sat on the mat.", "Economists study inflation.", "Rain fell on the city."]
TEXTS = SENTENCES  # the training corpus
RUNNER = Path(__file__).with_name("crash_runner.py")


pytestmark = pytest.mark.usefixtures("one_thread")


def train_args(model, corpus, out):
    return ["train", "--model", model, "--data", str(corpus), "--output", str(out), "--steps", "4",
            "--stage2-steps", "4", "--batch-size", "4", "--max-length", "24", "--save-steps", "2",
            "--logging-steps", "1", "--background-samples", "8", "--lr", "1e-3",
            "--stages", "data", "model", "--pooling", "mean", "--contrastive-weight", "0", "--lr-scheduler", "linear"]


@pytest.fixture(scope="module")
def reference(tiny_llama, tmp_path_factory):
    """An uninterrupted run's embeddings of PROBE, and its training arguments."""
    folder = tmp_path_factory.mktemp("reference")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 3) + "\n")
    torch.set_num_threads(1)
    assert main(train_args(tiny_llama, corpus, folder / "run")) == 0
    vectors = text2token.load(str(folder / "run")).encode(PROBE)
    assert np.abs(vectors - text2token.load(tiny_llama).encode(PROBE)).max() > 1e-3  # training did something
    return {"vectors": vectors, "corpus": corpus, "model": tiny_llama, "run": folder / "run"}


def same_as_reference(run, reference):
    vectors = text2token.load(str(run)).encode(PROBE)
    return float(np.abs(vectors - reference["vectors"]).max())


def run_and_kill(spec, argv):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(RUNNER), spec, *argv], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


@pytest.mark.parametrize("spec, stage, complete", [
    ("loss:3", "stage1", "checkpoint-2"),   # (a) in the middle of stage 1's third step
    ("loss:7", "stage2", "checkpoint-2"),   # (b) in the middle of stage 2's third step
    ("state:4", "stage1", "checkpoint-2"),  # (c) while checkpoint-4 is written: half a trainer_state.json
], ids=["mid-stage1", "mid-stage2", "mid-checkpoint-write"])
def test_sigkill_then_resume_gives_the_uninterrupted_model(reference, tmp_path, spec, stage, complete):
    run = tmp_path / "run"
    run_and_kill(spec, train_args(reference["model"], reference["corpus"], run))
    assert not (run / "text2token_config.json").exists()
    assert last_checkpoint(run / stage / "checkpoints").name == complete
    assert main(["train", "--resume", str(run)]) == 0
    assert same_as_reference(run, reference) <= 1e-5
    stages = json.loads((run / "text2token_config.json").read_text())["training"]["stages"]
    assert stages["data"]["steps"] == stages["model"]["steps"] == 4  # a stage finished before the kill is still reported
    assert all(last_checkpoint(run / s / "checkpoints").name == "checkpoint-4" for s in ("stage1", "stage2"))
    assert sorted(p.name for p in (run / stage / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]


def test_resuming_a_finished_run_changes_nothing(reference, caplog):
    record = reference["run"] / "text2token_config.json"
    before = record.read_text()
    assert main(["train", "--resume", str(reference["run"])]) == 0
    assert record.read_text() == before and "already finished training" in caplog.text


def error_line(capsys):
    """The last stderr line (progress bars may come above it); exactly one error line."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("text2token: error:")]
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err[-2000:]
    return lines[0]


def _nan_loss(loss):
    return loss * float("nan")


def _nan_gradient(loss):
    return loss + 0 * torch.sqrt(loss * 0)  # finite value; d sqrt(x)/dx at 0 is inf, times 0: NaN gradients


@pytest.mark.parametrize("fault, message", [(_nan_loss, "non-finite loss (nan) at step 3"),
                                            (_nan_gradient, "non-finite gradient in ")],
                         ids=["nan-loss", "nan-gradient"])
def test_non_finite_stops_naming_the_step_and_resumes_from_the_last_good_checkpoint(
        reference, tmp_path, monkeypatch, capsys, fault, message):
    import text2token.objective as objective

    real, calls = objective.kl_loss, {"n": 0}

    def faulty(*args):
        calls["n"] += 1
        loss = real(*args)
        return fault(loss) if calls["n"] == 3 else loss

    monkeypatch.setattr(objective, "kl_loss", faulty)
    run = tmp_path / "run"
    assert main(train_args(reference["model"], reference["corpus"], run)) == 2
    err = error_line(capsys)
    assert message in err and "at step 3" in err and "checkpoint-2" in err and f"--resume {run}" in err
    assert last_checkpoint(run / "stage1" / "checkpoints").name == "checkpoint-2"
    monkeypatch.setattr(objective, "kl_loss", real)  # a transient fault: resuming finishes the run
    assert main(["train", "--resume", str(run)]) == 0
    assert same_as_reference(run, reference) <= 1e-5


def test_disk_full_while_saving_a_checkpoint_keeps_the_previous_one(reference, tmp_path, monkeypatch, capsys):
    real = torch.save

    def full_disk(obj, f, *args, **kwargs):  # the second checkpoint: its adapter is written, its optimizer not
        if "checkpoint-4" in str(f):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    run = tmp_path / "run"
    assert main(train_args(reference["model"], reference["corpus"], run)) == 2
    err = error_line(capsys)
    assert err.startswith("text2token: error: disk full while saving checkpoint-4") and "checkpoint-2" in err
    checkpoints = run / "stage1" / "checkpoints"
    assert last_checkpoint(checkpoints).name == "checkpoint-2"
    assert not (checkpoints / "checkpoint-4").exists()  # the partial folder is gone, its space freed
    monkeypatch.setattr(torch, "save", real)
    assert main(["train", "--resume", str(run)]) == 0
    assert same_as_reference(run, reference) <= 1e-5


def test_disk_full_in_an_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    from text2token.errors import DiskFullError
    from text2token.files import atomic_write_text

    target = tmp_path / "record.json"
    target.write_text("old")

    def no_space(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(DiskFullError, match="^disk full while saving .*record.json"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_torch_save_errors_on_a_full_disk_are_recognised(tmp_path, monkeypatch):
    """torch.save says "unexpected pos" (no errno) when the disk fills; safetensors names ENOSPC."""
    import shutil
    from collections import namedtuple

    from text2token.files import is_disk_full

    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 0))
    assert is_disk_full(torch_error, tmp_path)
    assert is_disk_full(Exception("Error while serializing: I/O error: No space left on device (os error 28)"),
                        tmp_path)
    assert not is_disk_full(ValueError("something else"), tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**9, 10**11))
    assert not is_disk_full(torch_error, tmp_path)  # plenty of space: some other failure, not called "disk full"



def test_other_write_errors_are_one_line_naming_the_file_not_its_temporary(tmp_path, monkeypatch):
    """A failed write that is not a full disk (an I/O error, a read-only filesystem, torch.save's errno-less
    "file write failed" with space to spare) is a WriteError (an OSError) naming the target, never the
    temporary file, and it leaves the old file and no temporary behind."""
    import shutil
    from collections import namedtuple

    import torch

    from text2token.errors import WriteError
    from text2token.files import atomic_torch_save, atomic_write_text

    target = tmp_path / "targets.pt"
    target.write_text("old")

    def io_error(src, dst):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(src))

    monkeypatch.setattr(os, "replace", io_error)
    with pytest.raises(WriteError) as error:
        atomic_write_text(target, "new")
    assert str(error.value) == f"cannot write {target} (Input/output error)"
    assert isinstance(error.value, OSError) and error.value.filename == str(target)
    monkeypatch.undo()
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["targets.pt"]

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**9, 10**11))
    monkeypatch.setattr(torch, "save", lambda payload, f: (_ for _ in ()).throw(
        RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: "
                     "file write failed")))
    with pytest.raises(WriteError, match=rf"^cannot write {target} \(torch.save failed: .*file write failed\)$"):
        atomic_torch_save(target, {"x": 1})
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["targets.pt"]
    monkeypatch.setattr(torch, "save", lambda payload, f: (_ for _ in ()).throw(RuntimeError("a bug, not a write")))
    with pytest.raises(RuntimeError, match="a bug"):  # other errors stay what they are
        atomic_torch_save(target, {"x": 1})


def test_disk_full_while_logging_is_one_line_too(reference, tmp_path, monkeypatch, capsys):
    real, calls = Path.open, {"n": 0}

    def full_disk(self, *args, **kwargs):  # the third append to log.jsonl (step 3) finds the disk full
        if self.name == "log.jsonl":
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full_disk)
    run = tmp_path / "run"
    assert main(train_args(reference["model"], reference["corpus"], run)) == 2
    err = error_line(capsys)
    assert "disk full while writing" in err and "log.jsonl at step 3" in err and "checkpoint-2" in err
