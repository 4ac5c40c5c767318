"""Behaviour the performance work relies on: bf16 autocast on a CPU, and stage-1 targets that do not
depend on how texts are batched for tokenisation."""

import numpy as np
import pytest
import torch

import text2token
from text2token.backbone import load_tokenizer
from text2token.config import TrainConfig
from text2token.model import Text2TokenModel, embed, vocab_logits
from text2token.targets import build_stage1_targets
from text2token.targets import DataDrivenTargets

TEXTS = ["The cat sat on the mat.", "Economists study inflation, interest rates and unemployment.",
         "A quick brown fox jumps over the lazy dog near the river.", "", "the and of", "Rain fell."] * 7


def test_vocab_logits_stay_fp32_under_bf16_autocast(tiny_llama):
    model = Text2TokenModel.load(tiny_llama)
    batch = model.text_encoder(TEXTS[:3])
    with torch.inference_mode():
        e = embed(model.model, batch, "mean")
        plain = vocab_logits(model.model, e)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = vocab_logits(model.model, e)
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, plain, atol=1e-5)


def test_bf16_training_runs_on_cpu_under_autocast(tiny_llama, corpus_file, tmp_path, monkeypatch):
    import text2token.objective as objective

    seen = []
    real = objective.kl_loss

    def spy(logits, *args):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), logits.dtype))
        return real(logits, *args)

    monkeypatch.setattr(objective, "kl_loss", spy)
    config = TrainConfig(model=tiny_llama, data=[str(corpus_file)], output=str(tmp_path / "run"), steps=2,
                         batch_size=4, max_length=32, save_steps=100, logging_steps=1, stages=["data"], precision="bf16",
                         pooling="mean", contrastive_weight=0.0)
    run = text2token.train(config)
    # TrainingArguments(bf16=True) on a CPU runs the loss module under bf16 autocast; the logits stay fp32
    assert seen and all(s == (True, torch.bfloat16, torch.float32) for s in seen)
    vectors = text2token.load(str(run)).encode(TEXTS[:3])
    assert vectors.dtype == np.float32 and np.isfinite(vectors).all()


def test_stage1_targets_do_not_depend_on_tokenisation_batches(tiny_llama):
    tok = load_tokenizer(tiny_llama)
    builder = DataDrivenTargets(tok, stop_words="nltk")
    one_by_one = [builder([t])[0] for t in TEXTS]
    texts, targets, skipped = build_stage1_targets(tok, TEXTS, TrainConfig(batch_size=4, stop_words="nltk"))
    expected = [(t, q) for t, q in zip(TEXTS, one_by_one) if len(q[0])]
    assert skipped == len(TEXTS) - len(expected) and texts == [t for t, _ in expected]
    for (ids, w), (_, (ids2, w2)) in zip(targets, expected):
        assert ids.tolist() == ids2.tolist() and np.array_equal(w, w2)


def _config(tiny, corpus_file, out, **kw):
    values = dict(model=tiny, data=[str(corpus_file)], output=str(out), steps=6, batch_size=4, max_length=32,
                  save_steps=2, logging_steps=1, background_samples=16, lr=1e-3, stages=["data"], pooling="mean",
                  contrastive_weight=0.0)
    values.update(kw)
    return TrainConfig(**values)


def test_group_by_length_batches_texts_of_similar_length(tiny_llama, corpus_file, tmp_path, monkeypatch):
    import text2token.batches as batches
    from transformers.trainer_pt_utils import LengthGroupedSampler

    seen = []
    real = batches.Collator.__call__

    def spy(self, rows):
        batch = real(self, rows)
        seen.append(batch["attention_mask"].sum(1).tolist())
        return batch

    monkeypatch.setattr(batches.Collator, "__call__", spy)
    # 16 steps x 4 texts: LengthGroupedSampler sorts within megabatches of min(64 // 16, 50) = 4 batches
    text2token.train(_config(tiny_llama, corpus_file, tmp_path / "grouped", group_by_length=True, steps=16))
    grouped = [b for b in seen]
    seen.clear()
    text2token.train(_config(tiny_llama, corpus_file, tmp_path / "random", steps=16))
    efficiency = {name: sum(map(sum, bs)) / sum(len(b) * max(b) for b in bs)
                  for name, bs in (("grouped", grouped), ("random", list(seen)))}
    assert len(grouped) == 16 and efficiency["grouped"] > efficiency["random"]
    assert sorted(x for b in grouped for x in b) == sorted(x for b in seen for x in b)  # the same texts
    sampler = LengthGroupedSampler(4, lengths=[5, 1, 3, 9] * 4, generator=torch.Generator().manual_seed(0))
    assert list(sampler) == list(LengthGroupedSampler(4, lengths=[5, 1, 3, 9] * 4,
                                                      generator=torch.Generator().manual_seed(0)))


def test_group_by_length_resume_gives_the_same_model(tiny_llama, corpus_file, tmp_path, monkeypatch):
    import pytest

    import text2token.objective as objective

    reference = text2token.load(str(text2token.train(_config(tiny_llama, corpus_file, tmp_path / "a",
                                                             group_by_length=True))))
    real = objective.kl_loss
    calls = {"n": 0}

    def crash(*args):
        calls["n"] += 1
        if calls["n"] == 5:  # after checkpoint-4
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(objective, "kl_loss", crash)
    with pytest.raises(KeyboardInterrupt):
        text2token.train(_config(tiny_llama, corpus_file, tmp_path / "b", group_by_length=True))
    monkeypatch.setattr(objective, "kl_loss", real)
    resumed = text2token.load(str(text2token.train(TrainConfig(output=str(tmp_path / "b")), resume=True)))
    assert np.abs(resumed.encode(TEXTS[:3]) - reference.encode(TEXTS[:3])).max() <= 1e-5


@pytest.mark.parametrize("bf16", [False, True])
def test_folded_lora_dropout_gives_the_same_training(tiny_llama, bf16):
    """The LoRA dropout folded into A (lora.fold_lora_dropout): the same losses and the same adapter
    weights as peft's own dropout, step for step, in fp32 and under bf16 autocast, with less kept for backward
    (its masks are the draws ``nn.functional.dropout`` makes, so both ways see the same masks)."""
    from text2token.backbone import load_backbone
    from text2token.pooling import TextEncoder
    from text2token.batches import Collator
    from text2token.lora import FoldedDropoutLinear, add_lora, fold_lora_dropout
    from text2token.objective import TokenTargetObjective

    def run(fold: bool):
        model, tok, _ = load_backbone(tiny_llama)
        for p in model.parameters():
            p.requires_grad_(False)
        torch.manual_seed(0)
        peft_model = add_lora(model, TrainConfig(lora_dropout=0.3, gradient_checkpointing=False))
        kinds = {type(m) for m in peft_model.modules()}
        assert FoldedDropoutLinear in kinds
        if not fold:
            assert fold_lora_dropout(peft_model, enable=False) == 14  # 7 linear layers x 2 blocks
        objective = TokenTargetObjective(peft_model, "mean").train()
        collate = Collator(TextEncoder(tok, "mean", 32))
        rows = [{"text": t, "target": q} for t, q in zip(TEXTS[:8], DataDrivenTargets(tok, stop_words="nltk")(TEXTS[:8])) if len(q[0])]
        params = [p for p in peft_model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-2)
        saved, losses = {}, []

        def pack(t):  # storages counted once: x is kept once for the q, k and v adapters
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        torch.manual_seed(1)
        for step in range(3):
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = objective(**collate(rows[:4] if step % 2 == 0 else rows[4:]))["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        state = {k: v.clone() for k, v in peft_model.state_dict().items() if "lora_" in k}
        return losses, state, sum(saved.values())

    plain_losses, plain_state, plain_saved = run(False)
    losses, state, saved = run(True)
    assert losses == plain_losses
    assert state.keys() == plain_state.keys() and all(torch.equal(state[k], plain_state[k]) for k in state)
    assert saved < plain_saved


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5])
def test_folded_dropout_matches_dropout_with_its_own_mask(p):
    """The folded layer computes linear(dropout(x)) and its gradients with the very mask ``nn.functional.dropout``
    draws on a CPU from the same generator state: P(keep) = 1 - p, seeded, fresh at each call."""
    import text2token.lora as lora

    layer = torch.nn.Linear(96, 4, bias=False)
    layer.__class__, layer.dropout_p = lora.FoldedDropoutLinear, p
    layer.train()
    x = torch.randn(64, 33, 96, requires_grad=True)
    torch.manual_seed(0)
    out = layer(x)
    out.pow(2).sum().backward()
    torch.manual_seed(0)
    mask = torch.nn.functional.dropout(torch.ones_like(x), p, training=True) != 0
    x2 = x.detach().clone().requires_grad_(True)
    w2 = layer.weight.detach().clone().requires_grad_(True)
    ref = torch.nn.functional.linear(x2 * (mask.float() / (1 - p)), w2)
    ref.pow(2).sum().backward()
    assert torch.allclose(out, ref) and torch.allclose(x.grad, x2.grad) and torch.allclose(layer.weight.grad, w2.grad)
    torch.manual_seed(0)
    assert torch.equal(layer(x), out)  # seeded
    assert not torch.equal(layer(x), out)  # and a fresh draw each call
    sd = (p * (1 - p) / mask.numel()) ** 0.5
    assert abs(mask.float().mean().item() - (1 - p)) < 5 * sd
