"""The recipe options of the quality issue: per-stage corpora, LoRA presets, stop-word lists, the
joint objective (KL + SimCSE's term), the head filter, precision, and the recipe files."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import text2token
from text2token.config import TrainConfig
from text2token.errors import ConfigError
from text2token.lora import lora_targets
from text2token.objective import head_directions, joint_loss, kl_loss
from text2token.data import corpus_split
from text2token.targets.data_driven import DataDrivenTargets, english_stop_words

pytestmark = pytest.mark.usefixtures("one_thread")
RECIPES = Path(__file__).resolve().parents[1] / "configs" / "recipes"


def small(tiny, corpus_file, out, **kw):
    values = dict(model=tiny, data=[str(corpus_file)], output=str(out), steps=3, batch_size=4, max_length=32,
                  save_steps=3, logging_steps=1, background_samples=8, precision="fp32")
    values.update(kw)
    return TrainConfig(**values)


def test_stop_word_lists_differ_as_the_issue_says():
    nltk, sklearn = english_stop_words("nltk"), english_stop_words("sklearn")
    assert len(nltk) == 183 and {"the", "don't", "!", "?"} <= nltk
    # scikit-learn's list drops content words that NLTK's keeps
    assert {"never", "nothing", "first", "three"} <= sklearn and not {"never", "nothing", "first", "three"} & nltk
    assert english_stop_words("none") == frozenset()
    with pytest.raises(ValueError):
        english_stop_words("french")


def test_data_driven_target_keeps_never_with_nltk_list(word_tokenizer):
    text = "Nothing will never stop first rockets"
    kept = DataDrivenTargets(word_tokenizer, stop_words="nltk").clean(text)
    dropped = DataDrivenTargets(word_tokenizer, stop_words="sklearn").clean(text)
    assert kept == "Nothing never stop first rockets"
    assert dropped == "stop rockets"
    assert DataDrivenTargets(word_tokenizer, stop_words="nltk").clean("snake_case words") == "snake case words"  # [\W_]+


def test_lora_presets_resolve_for_llama_and_qwen(tiny_models):
    from transformers import AutoModelForCausalLM

    for arch in ("llama", "qwen2"):
        model = AutoModelForCausalLM.from_pretrained(tiny_models[arch])
        assert lora_targets(model, "attention") == ["q_proj", "k_proj", "v_proj", "o_proj"]
        assert lora_targets(model, "qv") == ["q_proj", "v_proj"]
        assert lora_targets(model, "all-linear") == "all-linear"
        assert lora_targets(model, ["gate_proj"]) == ["gate_proj"]
        with pytest.raises(ConfigError, match="no linear layer named c_attn"):
            lora_targets(model, ["c_attn"])


def test_attention_preset_trains_only_attention_adapters(tiny_llama, corpus_file, tmp_path):
    run = text2token.train(small(tiny_llama, corpus_file, tmp_path / "run", stages=["data"],
                                 lora_target_modules="attention"))
    adapter = json.loads((run / "stage1" / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]


def test_config_rejects_bad_recipe_values():
    with pytest.raises(ConfigError, match="stop_words"):
        TrainConfig(stop_words="french")
    with pytest.raises(ConfigError, match="lora_target_modules"):
        TrainConfig(lora_target_modules="mlp-only")
    with pytest.raises(ConfigError, match="contrastive_weight"):
        TrainConfig(contrastive_weight=-1.0)
    with pytest.raises(ConfigError, match="contrastive_weight"):
        TrainConfig(contrastive_weight=float("inf"))
    with pytest.raises(ConfigError, match="head_filter"):
        TrainConfig(head_filter=-2)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp8")
    # configs of earlier versions said bf16: true/false
    assert TrainConfig.from_dict({"bf16": True}).precision == "bf16"
    assert TrainConfig.from_dict({"bf16": False}).precision == "fp32"


def test_per_stage_corpora(tmp_path):
    passages, sentences = tmp_path / "p.txt", tmp_path / "s.txt"
    passages.write_text("\n".join(f"passage number {i} is long" for i in range(10)) + "\n")
    sentences.write_text("\n".join(f"sentence {i}" for i in range(30)) + "\n")
    config = TrainConfig(stage1_data=[str(passages)], stage2_data=[str(sentences)], steps=2, stage2_steps=3,
                         batch_size=2, stages=["data", "model"])
    split, _ = corpus_split(config)
    assert len(split["data"]) == 4 and all(t.startswith("passage") for t in split["data"])
    assert len(split["model"]) == 6 and all(t.startswith("sentence") for t in split["model"])
    assert sorted(split["all"]) == sorted(f"sentence {i}" for i in range(30))  # the background's corpus
    # one corpus: stage 2 continues after stage 1's texts
    one, _ = corpus_split(TrainConfig(data=[str(sentences)], steps=2, stage2_steps=3, batch_size=2,
                                      stages=["data", "model"]))
    assert not set(one["data"]) & set(one["model"])


def test_head_directions_are_the_dominant_singular_vectors(tiny_llama):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    w = model.get_output_embeddings().weight.detach().float()
    v = head_directions(model, 2)
    assert v.shape == (w.shape[1], 2)
    assert torch.allclose(v.T @ v, torch.eye(2), atol=1e-5)
    # the top direction carries the largest share of ||W v||
    norms = (w @ v).norm(dim=0)
    s = torch.linalg.svdvals(w)
    assert torch.allclose(norms, s[:2], rtol=1e-4)
    assert head_directions(model, 0) is None
    # a filtered embedding gives logits with no component along the removed directions
    from text2token.model import vocab_logits

    e = torch.randn(3, w.shape[1])
    filtered = vocab_logits(model, e, v)
    assert torch.allclose(filtered, vocab_logits(model, e - (e @ v) @ v.T), atol=1e-5)
    assert torch.allclose(vocab_logits(model, e @ v @ v.T, v), torch.zeros(3, w.shape[0]), atol=1e-5)


def test_joint_loss_is_kl_of_both_views_plus_weighted_simcse():
    from text2token.objective import simcse_loss

    torch.manual_seed(0)
    logits = torch.randn(4, 10)
    ids = torch.tensor([[1, 2], [3, 0]])
    weights = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    a, b = torch.randn(2, 5), torch.randn(2, 5)
    total, kl, contrastive = joint_loss(logits, ids, weights, a, b, 0, 0.25, 0.05)
    expected_kl = (kl_loss(logits[:2], ids, weights) + kl_loss(logits[2:], ids, weights)) / 2
    assert torch.allclose(kl, expected_kl, atol=1e-6)
    assert torch.allclose(contrastive, simcse_loss(a, b, 0.05))
    assert torch.allclose(total, expected_kl + 0.25 * contrastive, atol=1e-6)


def test_joint_objective_and_head_filter_train_both_stages(tiny_llama, corpus_file, tmp_path):
    run = text2token.train(small(tiny_llama, corpus_file, tmp_path / "run", contrastive_weight=0.5, head_filter=2,
                                 lr=1e-3, pooling="last", stages=["data", "model"]))
    record = json.loads((run / "text2token_config.json").read_text())
    assert record["training"]["stages"]["data"]["dropout"]["attention_dropout"] == 0.3
    assert record["training"]["stages"]["model"]["dropout"]["attention_dropout"] == 0.3
    assert record["training"]["precision"] == "fp32"
    assert torch.load(run / "stage2" / "targets.pt", weights_only=False)["head_filter"] == 2
    first = text2token.load(str(run)).encode(["a cat", "the economy"])
    assert np.isfinite(first).all()
    # the loaded model runs without dropout: encoding twice gives the same vectors
    assert np.array_equal(first, text2token.load(str(run)).encode(["a cat", "the economy"]))


def test_auto_precision_follows_the_capability_check(monkeypatch):
    from text2token import precision

    monkeypatch.delenv(precision.ENV_VAR, raising=False)
    monkeypatch.setattr(precision, "device_has_fast_bf16", lambda device: False)
    assert precision.resolve("auto", "cpu") == "fp32"
    monkeypatch.setattr(precision, "device_has_fast_bf16", lambda device: True)
    assert precision.resolve("auto", "cpu") == "bf16"
    assert precision.resolve("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError):
        precision.resolve("fp16")
    monkeypatch.setenv(precision.ENV_VAR, "fp32")
    assert precision.resolve("auto", "cpu") == "fp32" and precision.resolve("bf16") == "bf16"


def test_every_recipe_file_is_a_valid_config():
    files = sorted(RECIPES.glob("*.yaml"))
    assert files, "configs/recipes/ holds no recipe"
    for path in files:
        config = TrainConfig.from_file(path, {"data": ["corpus.txt"]})  # recipes name no corpus: the user passes it
        assert path.read_text().startswith("#"), f"{path} does not say what it is"
        assert config.objective in ("text2token", "simcse")


def test_prompt_attention_weights_follow_the_attention(tiny_llama):
    """a_t sums the final position's attention over the text's own positions; the weights are v/(0.015+v)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from text2token.pooling import PROMPT_EOL, TextEncoder
    from text2token.targets.prompt_attention import attention_per_token, smoothed

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    text = "The cat sat on the mat."
    (attention,) = attention_per_token(model, tokenizer, [text], 64, PROMPT_EOL)
    # by hand: the same eager forward pass; the text's positions are those between the template's fixed head and tail
    from text2token.targets.prompt_attention import _template_head

    encoder = TextEncoder(tokenizer, "last", 64, PROMPT_EOL)
    ids = encoder.token_ids([text])[0]
    head, tail = _template_head(encoder), len(encoder._template_tail())
    assert text.strip(".") in tokenizer.decode(ids[head:len(ids) - tail])
    assert "This sentence" not in tokenizer.decode(ids[head:len(ids) - tail])
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    a = torch.stack([x[0, :, -1, :] for x in out.attentions]).mean(0).sum(0)
    for token in set(ids[head:len(ids) - tail]):
        expected = sum(float(a[p]) for p in range(head, len(ids) - tail) if ids[p] == token)
        assert attention[token] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert set(attention) == set(ids[head:len(ids) - tail])
    assert sum(attention.values()) < 1.0 * len(out.attentions[0][0])  # a share of the heads' attention
    token_ids = np.array(sorted(attention)[:3])
    w = smoothed(attention, token_ids)
    v = np.array([attention[t] / (0.015 + attention[t]) for t in token_ids])
    assert np.allclose(w, v / v.sum(), atol=1e-6)
    assert np.allclose(smoothed({}, np.array([4, 5])), [0.5, 0.5])


def test_prompt_attention_weighting_trains(tiny_llama, corpus_file, tmp_path):
    run = text2token.train(small(tiny_llama, corpus_file, tmp_path / "run", stages=["data"],
                                 weighting="prompt_attention", pooling="last"))
    assert (run / "stage1" / "adapter" / "adapter_model.safetensors").is_file()


def test_default_recipe_file_is_the_default_config():
    """configs/recipes/default.yaml says exactly what `text2token train` does with no recipe flags."""
    from_file = TrainConfig.from_file(RECIPES / "default.yaml", {"data": ["x"]}).to_dict()
    assert from_file == TrainConfig(data=["x"]).to_dict()


def test_encode_and_eval_offer_the_precision_option():
    from text2token.cli import build_parser

    parser = build_parser()
    for command in (["encode", "m", "--input", "x", "--output", "y"], ["eval", "m", "--tasks", "t"]):
        assert parser.parse_args(command).precision == "auto"
        assert parser.parse_args([*command, "--precision", "bf16"]).precision == "bf16"
        with pytest.raises(SystemExit):
            parser.parse_args([*command, "--precision", "fp8"])


def test_the_default_recipe_keeps_every_word_in_the_stage1_target(word_tokenizer):
    """stop_words: none is the default since RESULTS.md's fourth session; the paper's list is one option away."""
    text = "the cat is not on the mat"
    assert DataDrivenTargets(word_tokenizer, stop_words=TrainConfig().stop_words).clean(text) == text
    assert DataDrivenTargets(word_tokenizer, stop_words="nltk").clean(text) == "cat mat"


def test_anchor_loss_is_one_minus_cosine_per_view():
    from text2token.objective import anchor_loss

    anchors = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert anchor_loss(anchors * 3.0, anchors).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    # two stacked views: the first view agrees, the second is orthogonal (1) and opposite (2) to its anchor
    views = torch.tensor([[5.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, -1.0]])
    assert anchor_loss(views, anchors).item() == pytest.approx((0 + 0 + 1 + 2) / 4)
    with pytest.raises(ValueError, match="anchors"):
        anchor_loss(torch.zeros(3, 2), anchors)


def test_contrastive_anchor_is_simcse_against_the_untrained_embeddings_per_view():
    from text2token.objective import contrastive_anchor_loss, simcse_loss

    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # each view picks its own anchor: low loss; a view that points at another text's anchor: high loss
    good = contrastive_anchor_loss(anchors * 2.0, anchors, 0.05)
    bad = contrastive_anchor_loss(anchors.roll(1, dims=0), anchors, 0.05)
    assert good.item() < 1e-6 and bad.item() > 10
    # two stacked views are scored one at a time (a text's other view is never its negative), then averaged
    views = torch.cat([anchors, anchors.roll(1, dims=0)])
    expected = (simcse_loss(anchors, anchors, 0.05) + simcse_loss(anchors.roll(1, dims=0), anchors, 0.05)) / 2
    assert contrastive_anchor_loss(views, anchors, 0.05).item() == pytest.approx(expected.item())
    # the shared direction alone does not satisfy it (the cosine anchor would be near 0 here)
    common = torch.tensor([[10.0, 1.0], [10.0, 0.0], [10.0, -1.0]])
    assert contrastive_anchor_loss(common[[1, 2, 0]], common, 0.05).item() > 1.0
    with pytest.raises(ValueError, match="anchors"):
        contrastive_anchor_loss(torch.zeros(4, 2), anchors)


def _anchored_objective(tiny_llama, weight: float, anchor: str = "cosine"):
    from text2token.backbone import load_backbone
    from text2token.batches import Collator
    from text2token.lora import add_lora
    from text2token.objective import TokenTargetObjective
    from text2token.pooling import TextEncoder

    model, tok, _ = load_backbone(tiny_llama)
    for p in model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(0)
    peft_model = add_lora(model, TrainConfig(gradient_checkpointing=False))
    with torch.no_grad():  # a trained adapter: B is no longer zero
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    texts = ["the cat sat on the mat", "a quick brown fox jumps", "rivers flow to the sea", "stocks fell today"]
    rows = [{"text": t, "target": q} for t, q in zip(texts, DataDrivenTargets(tok, stop_words="none")(texts))]
    objective = TokenTargetObjective(peft_model, "last", contrastive_weight=1.0, anchor_weight=weight,
                                     anchor=anchor).train()
    return objective, Collator(TextEncoder(tok, "last", 32))(rows)


def test_anchor_adds_its_weighted_term_and_compares_with_the_untrained_model(tiny_llama):
    from text2token.model import embed
    from text2token.objective import base_embeddings

    objective, batch = _anchored_objective(tiny_llama, 0.5)
    plain, _ = _anchored_objective(tiny_llama, 0.0)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    # e_0: the adapters off and no dropout, the model back in train mode afterwards
    anchors = base_embeddings(objective.peft_model, inputs, "last")
    assert objective.peft_model.training and not anchors.requires_grad
    with objective.peft_model.disable_adapter():
        objective.peft_model.eval()
        with torch.no_grad():
            reference = embed(objective.peft_model, inputs, "last")
        objective.peft_model.train()
    assert torch.allclose(anchors, reference, atol=1e-6)
    with torch.no_grad():
        trained = embed(objective.peft_model.eval(), inputs, "last")
    objective.peft_model.train()
    assert (trained - anchors).abs().max() > 1e-3  # the adapter moves e(x): the anchor has something to measure
    torch.manual_seed(7)
    out = objective(**batch)
    torch.manual_seed(7)
    out0 = plain(**batch)
    assert out["anchor"].item() > 0 and "anchor" not in out0
    # the base pass draws no dropout noise: the other terms are the same numbers
    assert torch.allclose(out["kl"], out0["kl"]) and torch.allclose(out["contrastive"], out0["contrastive"])
    assert torch.allclose(out["loss"], out0["loss"] + 0.5 * out["anchor"], atol=1e-6)
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in objective.named_parameters() if "lora" in n)


def test_contrastive_anchor_form_is_the_one_used(tiny_llama):
    from text2token.objective import base_embeddings, contrastive_anchor_loss, two_views

    objective, batch = _anchored_objective(tiny_llama, 0.5, "contrastive")
    plain, _ = _anchored_objective(tiny_llama, 0.0)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    anchors = base_embeddings(objective.peft_model, inputs, "last")
    torch.manual_seed(7)
    out = objective(**batch)
    torch.manual_seed(7)
    out0 = plain(**batch)
    torch.manual_seed(7)
    views = two_views(objective.peft_model, inputs, "last")
    assert out["anchor"].item() == pytest.approx(contrastive_anchor_loss(views, anchors, 0.05).item(), rel=1e-5)
    assert torch.allclose(out["loss"], out0["loss"] + 0.5 * out["anchor"], atol=1e-6)
    with pytest.raises(ValueError, match="unknown anchor"):
        _anchored_objective(tiny_llama, 0.5, "euclid")


def test_anchor_weight_trains_and_is_recorded(tiny_llama, corpus_file, tmp_path):
    run = text2token.train(small(tiny_llama, corpus_file, tmp_path / "run", anchor_weight=2.0, pooling="last",
                                 anchor="contrastive"))
    record = json.loads((run / "text2token_config.json").read_text())
    assert record["hyperparameters"]["anchor_weight"] == 2.0 and record["hyperparameters"]["anchor"] == "contrastive"
    # the objective's terms are logged beside the loss (logging_steps 1: each step's own values)
    logs = [json.loads(line) for line in (run / "stage1" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in logs if "loss" in r]
    assert len(steps) == 3 and all({"kl", "contrastive", "anchor"} <= set(r) for r in steps)
    assert all(r["anchor"] >= 0 and r["kl"] > 0 for r in steps)
    assert np.isfinite(text2token.load(str(run)).encode(["a cat"])).all()
    with pytest.raises(ConfigError, match="anchor_weight"):
        TrainConfig(anchor_weight=-0.1)
    with pytest.raises(ConfigError, match="anchor"):
        TrainConfig(anchor_weight=1.0, anchor="euclid")
    with pytest.raises(ConfigError, match="anchor_weight is a term of the text2token objective"):
        TrainConfig(objective="simcse", anchor_weight=1.0)


def _tokenizer(path):
    from text2token.backbone import load_backbone

    return load_backbone(path)[1]


def test_next_token_term_is_the_backbones_own_lm_loss(tiny_llama):
    """NextTokenLoss over embed's forward pass(es) equals the causal LM's own cross-entropy on the same rows,
    padding excluded, with one padded pass or length-sorted sub-batches."""
    from text2token.model import causal_lm, embed
    from text2token.objective import NextTokenLoss
    from text2token.pooling import TextEncoder

    objective, _ = _anchored_objective(tiny_llama, 0.0)
    model = objective.peft_model.eval()
    texts = ["a cat", "the quick brown fox jumps over the lazy dog by the river bank", "rivers flow", "stocks fell"]
    inputs = TextEncoder(_tokenizer(tiny_llama), "last", 64)(texts)
    with torch.no_grad():
        logits = causal_lm(model)(**inputs, use_cache=False).logits.float()
        mask = inputs["attention_mask"] > 0
        valid = mask[:, :-1] & mask[:, 1:]
        assert not valid.all()  # the batch has padding to exclude
        reference = torch.nn.functional.cross_entropy(logits[:, :-1][valid], inputs["input_ids"][:, 1:][valid])
        values = {}
        for groups in (1, 3):
            term = NextTokenLoss(model)
            embed(model, inputs, "last", groups, term)
            values[groups] = term.value()
    assert values[1].item() == pytest.approx(reference.item(), rel=1e-5)
    assert values[3].item() == pytest.approx(reference.item(), rel=1e-5)
    assert NextTokenLoss(model).value().item() == 0.0  # nothing seen yet


def test_lm_weight_adds_the_next_token_term(tiny_llama):
    from text2token.objective import TokenTargetObjective

    objective, batch = _anchored_objective(tiny_llama, 0.0)
    with_lm = TokenTargetObjective(objective.peft_model, "last", contrastive_weight=1.0, lm_weight=0.5).train()
    torch.manual_seed(7)
    out0 = objective(**batch)
    torch.manual_seed(7)
    out = with_lm(**batch)
    assert "lm" not in out0 and out["lm"].item() > 1.0  # a random tiny model is a poor LM
    # the term draws no random numbers: the other terms are the same numbers
    assert torch.allclose(out["kl"], out0["kl"]) and torch.allclose(out["contrastive"], out0["contrastive"])
    assert torch.allclose(out["loss"], out0["loss"] + 0.5 * out["lm"], atol=1e-6)
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in with_lm.named_parameters() if "lora" in n)
    # the KL alone (no contrastive term) takes the term too
    kl_only = TokenTargetObjective(objective.peft_model, "last", lm_weight=1.0).eval()
    with torch.no_grad():
        assert "lm" in kl_only(**batch)


def test_lm_weight_trains_and_is_recorded(tiny_llama, corpus_file, tmp_path):
    run = text2token.train(small(tiny_llama, corpus_file, tmp_path / "run", lm_weight=0.5, pooling="last",
                                 stages=["data"]))
    record = json.loads((run / "text2token_config.json").read_text())
    assert record["hyperparameters"]["lm_weight"] == 0.5
    logs = [json.loads(line) for line in (run / "stage1" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in logs if "loss" in r]
    assert len(steps) == 3 and all(r["lm"] > 0 for r in steps)
    with pytest.raises(ConfigError, match="lm_weight"):
        TrainConfig(lm_weight=-1.0)
    with pytest.raises(ConfigError, match="lm_weight is a term of the text2token objective"):
        TrainConfig(objective="simcse", lm_weight=1.0)
