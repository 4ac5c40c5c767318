import json

import numpy as np
import pytest
import torch

import text2token
from text2token.errors import NonFiniteError, RunFolderError
from text2token.training import last_checkpoint

PROBE = ["The cat sat on the mat.", "Economists study inflation.", "Rain fell on the city."]


def small(tiny, corpus_file, out, **kw):
    values = dict(model=tiny, data=[str(corpus_file)], output=str(out), steps=4, batch_size=4, max_length=32,
                  stages=["data", "model"], pooling="mean", contrastive_weight=0.0, lr_scheduler="linear",
                  save_steps=2, logging_steps=1, background_samples=16)
    values.update(kw)
    return text2token.TrainConfig(**values)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_both_stages_make_a_loadable_run(tiny_models, corpus_file, tmp_path, arch):
    run = text2token.train(small(tiny_models[arch], corpus_file, tmp_path / "run", lr=1e-3))
    record = json.loads((run / "text2token_config.json").read_text())
    assert record["adapters"] == ["stage1/adapter", "stage2/adapter"]
    assert record["model"]["pooling"] == "mean" and record["hyperparameters"]["steps"] == 4
    assert record["training"]["stages"]["data"]["steps"] == 4 and record["training"]["stages"]["model"]["steps"] == 4
    for stage in ("stage1", "stage2"):
        assert (run / stage / "adapter" / "adapter_model.safetensors").is_file()
        assert last_checkpoint(run / stage / "checkpoints").name == "checkpoint-4"
        logs = [json.loads(line) for line in (run / stage / "log.jsonl").read_text().splitlines()]
        assert any("loss" in r and np.isfinite(r["loss"]) for r in logs)
    targets = torch.load(run / "stage2" / "targets.pt", weights_only=False)
    assert len(targets["targets"]) == 16 and abs(float(targets["background"].sum()) - 1) < 1e-4
    trained = text2token.load(str(run)).encode(PROBE)
    base = text2token.load(tiny_models[arch]).encode(PROBE)
    assert trained.shape == base.shape and np.abs(trained - base).max() > 1e-4


def test_stage1_loss_goes_down(tiny_llama, corpus_file, tmp_path):
    run = text2token.train(small(tiny_llama, corpus_file, tmp_path / "run", stages=["data"], steps=30, lr=1e-2,
                                 batch_size=8, save_steps=100))
    losses = [r["loss"] for r in map(json.loads, (run / "stage1" / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1


def test_bidirectional_last_pooling_run_records_its_mode(tiny_llama, corpus_file, tmp_path):
    run = text2token.train(small(tiny_llama, corpus_file, tmp_path / "run", pooling="last", attention="bidirectional",
                                 max_length=48, stages=["model"]))
    model = text2token.load(str(run))
    assert (model.pooling, model.attention) == ("last", "bidirectional")
    assert model.model.config.is_causal is False


def test_non_finite_loss_stops_with_step_and_keeps_checkpoint(tiny_llama, corpus_file, tmp_path, monkeypatch):
    import text2token.objective as objective

    calls = {"n": 0}
    real = objective.kl_loss

    def flaky(*args):
        calls["n"] += 1
        loss = real(*args)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(objective, "kl_loss", flaky)
    with pytest.raises(NonFiniteError, match="step 3"):
        text2token.train(small(tiny_llama, corpus_file, tmp_path / "run"))
    assert last_checkpoint(tmp_path / "run" / "stage1" / "checkpoints").name == "checkpoint-2"


def test_non_finite_gradient_stops(tiny_llama, corpus_file, tmp_path, monkeypatch):
    import text2token.objective as objective

    real = objective.kl_loss
    monkeypatch.setattr(objective, "kl_loss", lambda *a: real(*a) * torch.tensor(float("inf")).clamp(max=1e38) * 1e38)
    with pytest.raises(NonFiniteError, match="non-finite (loss|gradient)"):
        text2token.train(small(tiny_llama, corpus_file, tmp_path / "run"))


def test_resume_after_a_crash_gives_the_same_model(tiny_llama, corpus_file, tmp_path, monkeypatch):
    import text2token.objective as objective

    reference = text2token.load(str(text2token.train(small(tiny_llama, corpus_file, tmp_path / "a", steps=6, lr=1e-3))))
    real = objective.kl_loss
    calls = {"n": 0}

    def crash(*args):
        calls["n"] += 1
        if calls["n"] == 5:  # in the middle of stage 1, after checkpoint-4
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(objective, "kl_loss", crash)
    with pytest.raises(KeyboardInterrupt):
        text2token.train(small(tiny_llama, corpus_file, tmp_path / "b", steps=6, lr=1e-3))
    monkeypatch.setattr(objective, "kl_loss", real)
    assert not (tmp_path / "b" / "text2token_config.json").exists()
    with pytest.raises(RunFolderError, match="training did not finish|resume"):
        text2token.load(str(tmp_path / "b"))
    resumed = text2token.load(str(text2token.train(text2token.TrainConfig(output=str(tmp_path / "b")), resume=True)))
    assert np.abs(resumed.encode(PROBE) - reference.encode(PROBE)).max() <= 1e-5


def test_output_folder_of_another_run_is_refused(tiny_llama, corpus_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(RunFolderError, match="--overwrite"):
        text2token.train(small(tiny_llama, corpus_file, out))
    # --overwrite deletes only a folder this project wrote: a foreign file is kept and the run refused
    with pytest.raises(RunFolderError, match="is not a text2token run folder"):
        text2token.train(small(tiny_llama, corpus_file, out, stages=["data"], steps=1), overwrite=True)
    assert (out / "something").read_text() == "x"
    (out / "something").unlink()
    run = text2token.train(small(tiny_llama, corpus_file, out, stages=["data"], steps=1), overwrite=True)
    assert (run / "text2token_config.json").is_file()


def test_stage2_targets_from_another_tokenizer_are_refused(tiny_llama, corpus_file, tmp_path):
    run = text2token.train(small(tiny_llama, corpus_file, tmp_path / "run"))
    payload = torch.load(run / "stage2" / "targets.pt", weights_only=False)
    payload["tokenizer"] = {"vocab_size": 123, "vocab_sha1": "0"}
    torch.save(payload, run / "stage2" / "targets.pt")
    import shutil

    shutil.rmtree(run / "stage2" / "adapter")
    with pytest.raises(RunFolderError, match="another tokenizer"):
        text2token.train(text2token.TrainConfig(output=str(run)), resume=True)


def test_texts_with_empty_targets_are_skipped_and_all_empty_is_an_error(tiny_llama, tmp_path):
    from text2token.errors import DataError

    f = tmp_path / "stop.txt"
    f.write_text("!!! ???\n- -- ...\n" * 4)  # empty with any stop-word list
    with pytest.raises(DataError, match="every text's data-driven target is empty"):
        text2token.train(small(tiny_llama, f, tmp_path / "run", stages=["data"]))


def test_bfloat16_weights_train_with_fp32_adapters(tiny_llama, corpus_file, tmp_path, monkeypatch):
    """dtype bfloat16 loads the backbone in bf16 (half the memory); LoRA weights and the loss stay fp32."""
    from text2token import training

    seen = {}
    original = training.add_lora

    def spy(model, config):
        peft_model = original(model, config)
        seen["base"] = {p.dtype for n, p in peft_model.named_parameters() if "lora_" not in n}
        seen["lora"] = {p.dtype for n, p in peft_model.named_parameters() if "lora_" in n}
        return peft_model

    monkeypatch.setattr(training, "add_lora", spy)
    run = text2token.train(small(tiny_llama, corpus_file, tmp_path / "run", stages=["data"], dtype="bfloat16",
                                 lr=1e-3))
    assert seen["base"] == {torch.bfloat16} and seen["lora"] == {torch.float32}
    logs = [json.loads(line) for line in (run / "stage1" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in logs if "loss" in r)
    record = json.loads((run / "train_config.json").read_text())
    assert record["dtype"] == "bfloat16"
    trained = text2token.load(str(run)).encode(PROBE)
    assert np.isfinite(trained).all() and trained.dtype == np.float32


def test_lr_scheduler_reaches_the_trainer(tmp_path):
    from text2token.training import training_arguments

    config = text2token.TrainConfig(data=["x.txt"], steps=10, lr_scheduler="linear")
    args = training_arguments(config, "data", tmp_path)
    assert args.lr_scheduler_type.value == "linear" and args.learning_rate == config.lr
    assert training_arguments(text2token.TrainConfig(data=["x.txt"]), "data", tmp_path).lr_scheduler_type.value == "constant"


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_gradient_checkpointing_trains_the_same_model(tiny_llama, corpus_file, tmp_path, dropout):
    """Recomputing activations in the backward pass changes memory, not the model, with dropout on (the joint
    objective's attention dropout; with ``dropout``, the LoRA dropout's folded masks too): the recomputation
    replays the forward pass's random draws."""
    from text2token.backbone import load_backbone
    from text2token.lora import FoldedDropoutLinear, add_lora

    common = dict(stages=["data"], steps=3, lr=1e-3, pooling="last", contrastive_weight=1.0,
                  lora_dropout=dropout)
    plain = text2token.load(str(text2token.train(small(tiny_llama, corpus_file, tmp_path / "a", **common))))
    ckpt = text2token.train(small(tiny_llama, corpus_file, tmp_path / "b", gradient_checkpointing=True, **common))
    recorded = json.loads((ckpt / "text2token_config.json").read_text())["hyperparameters"]
    assert recorded["gradient_checkpointing"] is True
    base = text2token.load(tiny_llama, pooling="last").encode(PROBE)
    a, b = plain.encode(PROBE), text2token.load(str(ckpt)).encode(PROBE)
    assert np.abs(a - base).max() > 1e-3  # it trained
    assert np.abs(a - b).max() <= 1e-4
    if dropout:  # and the draws mattered: another seed trains another model
        other = text2token.load(str(text2token.train(small(tiny_llama, corpus_file, tmp_path / "c", seed=7,
                                                           **common))))
        assert np.abs(other.encode(PROBE) - a).max() > 1e-3
    model, _, _ = load_backbone(tiny_llama)
    folded = add_lora(model, text2token.TrainConfig(lora_dropout=0.3, gradient_checkpointing=True))
    assert any(isinstance(m, FoldedDropoutLinear) for m in folded.modules())  # folded with checkpointing too


def test_teacher_mix_trains_on_the_base_models_own_targets_too(tiny_llama, corpus_file, tmp_path, caplog):
    """``teacher_mix`` runs the base model as a teacher over stage 1's texts (its targets cached in stage1/,
    its pass named stage 1 in the log), records the share, and trains another model than the plain stage 1
    with the same seed."""
    import logging

    common = dict(stages=["data"], steps=3, lr=1e-2, pooling="last", contrastive_weight=0.0, lora_dropout=0.0)
    plain = text2token.train(small(tiny_llama, corpus_file, tmp_path / "a", **common))
    with caplog.at_level(logging.INFO, logger="text2token"):
        mixed = text2token.train(small(tiny_llama, corpus_file, tmp_path / "b", teacher_mix=0.5, **common))
    teacher_lines = [r.getMessage() for r in caplog.records if "teacher targets" in r.getMessage()]
    assert teacher_lines and all(line.startswith("stage 1: teacher_mix:") for line in teacher_lines)
    assert not (plain / "stage1" / "targets.pt").exists()
    cached = torch.load(mixed / "stage1" / "targets.pt", weights_only=False)
    stage = json.loads((mixed / "text2token_config.json").read_text())["training"]["stages"]["data"]
    assert stage["teacher_mix"] == 0.5 and stage["background_texts"] == 16
    assert len(cached["targets"]) == stage["texts"]
    a, b = text2token.load(str(plain)).encode(PROBE), text2token.load(str(mixed)).encode(PROBE)
    assert np.abs(a - b).max() > 1e-4
