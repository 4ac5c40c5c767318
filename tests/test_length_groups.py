"""``length_groups``: a batch's forward pass split into length-sorted sub-batches, each padded only to its own
longest text. The same embeddings, losses and gradients as one padded pass, with fewer tokens computed."""

import json

import pytest
import torch

import text2token
from text2token.backbone import load_backbone
from text2token.batches import Collator
from text2token.config import TrainConfig
from text2token.errors import ConfigError
from text2token.lora import add_lora
from text2token.model import embed
from text2token.objective import SimCSEObjective, TokenTargetObjective
from text2token.pooling import TextEncoder
from text2token.targets import DataDrivenTargets

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["Rain fell.", "The cat sat on the mat while the dog slept by the warm fire all afternoon long.",
         "Economists study inflation.", "A quick brown fox jumps over the lazy dog near the river bank today.",
         "Hi", "Stars shine at night over the quiet hills and the sleeping town below them.", "Tea?",
         "Old maps show roads that no longer exist."]


def _tokens_seen(model):
    """Count the token positions the backbone computes (input_ids.numel per call)."""
    seen = []
    handle = model.get_base_model().model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["input_ids"].numel()), with_kwargs=True)
    return seen, handle


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_embeddings_and_gradients_match_one_padded_pass(tiny_llama, pooling):
    model, tok, _ = load_backbone(tiny_llama)
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(0)
    peft_model = add_lora(model, TrainConfig(gradient_checkpointing=False, lora_dropout=0.0))
    with torch.no_grad():  # LoRA's B starts at 0: give the adapters a value, so their gradients are not trivial
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    peft_model.eval()  # no dropout: the two ways must compute the same function
    batch = TextEncoder(tok, pooling, 64)(TEXTS)
    seen, handle = _tokens_seen(peft_model)
    results = {}
    try:
        for groups in (1, 3, 100):
            seen.clear()
            e = embed(peft_model, batch, pooling, groups)
            (e * torch.linspace(-1, 1, e.shape[1])).sum().backward()
            grads = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.requires_grad}
            peft_model.zero_grad()
            results[groups] = (e.detach(), grads, sum(seen), len(seen))
    finally:
        handle.remove()
    e1, g1, tokens1, calls1 = results[1]
    assert calls1 == 1 and tokens1 == batch["input_ids"].numel()
    for groups, calls in ((3, 3), (100, len(TEXTS))):  # more groups than rows: one row each
        e, g, tokens, n = results[groups]
        assert n == calls and tokens < tokens1
        assert torch.allclose(e, e1, atol=1e-5), (e - e1).abs().max()
        assert g.keys() == g1.keys() and all(torch.allclose(g[k], g1[k], atol=1e-5) for k in g)
    # one sub-batch per row computes exactly the real tokens
    assert results[100][2] == int(batch["attention_mask"].sum())


def test_objectives_give_the_same_loss_with_groups(tiny_llama):
    model, tok, _ = load_backbone(tiny_llama)
    for p in model.parameters():
        p.requires_grad_(False)
    peft_model = add_lora(model, TrainConfig(gradient_checkpointing=False)).eval()
    collate = Collator(TextEncoder(tok, "last", 64))
    rows = [{"text": t, "target": q} for t, q in zip(TEXTS, DataDrivenTargets(tok, stop_words="none")(TEXTS)) if len(q[0])]
    batch = collate(rows)
    losses = {}
    for groups in (1, 4):
        joint = TokenTargetObjective(peft_model, "last", contrastive_weight=3.0, anchor_weight=1.0,
                                     length_groups=groups).eval()
        simcse = SimCSEObjective(peft_model, "last", length_groups=groups).eval()
        with torch.no_grad():
            out = joint(**batch)
            plain = {k: v for k, v in batch.items() if not k.startswith("target")}
            losses[groups] = [float(out[k]) for k in ("loss", "kl", "contrastive", "anchor")] + \
                             [float(simcse(**plain)["loss"])]
    assert losses[1] == pytest.approx(losses[4], abs=1e-5)
    assert losses[1][1] > 0 and losses[1][4] > 0


def test_length_groups_is_checked_and_reaches_the_run(tiny_llama, corpus_file, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="length_groups"):
        TrainConfig(length_groups=0)
    import text2token.model as model_module

    calls = []
    real = model_module._embed_padded

    def spy(model, batch, pooling, *rest):
        calls.append(batch["input_ids"].shape[0])
        return real(model, batch, pooling, *rest)

    monkeypatch.setattr(model_module, "_embed_padded", spy)
    config = TrainConfig(model=tiny_llama, data=[str(corpus_file)], output=str(tmp_path / "run"), steps=2,
                         batch_size=4, max_length=32, save_steps=100, logging_steps=1, stages=["data"],
                         pooling="last", length_groups=2, precision="fp32", gradient_checkpointing=False)
    run = text2token.train(config)
    # the joint objective: 4 texts x 2 views = 8 rows a step, run as two sub-batches of 4
    assert calls[:4] == [4, 4, 4, 4]
    assert json.loads((run / "train_config.json").read_text())["length_groups"] == 2
    assert json.loads((run / "text2token_config.json").read_text())["training"]["length_groups"] == 2
    calls.clear()  # the default, auto, is 8 sub-batches on this CPU: one row each for 8 rows
    text2token.train(TrainConfig(**{**config.to_dict(), "output": str(tmp_path / "auto"), "length_groups": "auto"}))
    assert calls[:8] == [1] * 8


def test_auto_is_eight_on_a_cpu_and_one_elsewhere(monkeypatch):
    from text2token.model import CPU_LENGTH_GROUPS, resolve_length_groups

    assert TrainConfig().length_groups == "auto"
    assert CPU_LENGTH_GROUPS == 8
    assert resolve_length_groups("auto", "cpu") == 8 and resolve_length_groups("auto", "cuda") == 1
    assert resolve_length_groups(3, "cuda") == 3 and resolve_length_groups(1, "cpu") == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_length_groups("auto") == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_length_groups("auto") == 8


@pytest.mark.parametrize("bad", [0, -2, "eight", 2.5, True])
def test_bad_length_groups_are_refused(bad):
    with pytest.raises(ConfigError, match="length_groups"):
        TrainConfig(length_groups=bad)


def test_length_groups_flag_parses_a_number_or_auto():
    from text2token.cli import build_parser, config_overrides

    for text, value in (("4", 4), ("auto", "auto")):
        values = config_overrides(build_parser().parse_args(["train", "--length-groups", text]))
        assert values == {"length_groups": value}
        assert TrainConfig.from_dict(values).length_groups == value
    with pytest.raises(ConfigError, match="length_groups"):
        TrainConfig.from_dict(config_overrides(build_parser().parse_args(["train", "--length-groups", "many"])))


def test_a_run_saved_before_the_option_reads_as_one_padded_pass(tmp_path):
    from text2token.runfolder import RunFolder

    folder = RunFolder(tmp_path / "old")
    folder.path.mkdir()
    old = TrainConfig().to_dict()
    del old["length_groups"]
    folder.write_train_config(old)
    assert TrainConfig.from_dict(folder.read_train_config()).length_groups == 1
    folder.write_train_config({**old, "length_groups": "auto"})
    assert folder.read_train_config()["length_groups"] == "auto"
