import json

import pytest
import torch

from text2token.backbone import load_backbone, load_tokenizer, resolve_backbone, set_attention
from text2token.errors import BackboneError
from text2token.model import causal_lm


def _first_token_state(model, ids):
    with torch.no_grad():
        out = causal_lm(model).base_model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out.last_hidden_state[0, 0]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_bidirectional_attention_lets_first_token_see_later_tokens(tiny_models, arch, impl):
    a, b = [5, 6, 7, 8], [5, 6, 7, 9]  # differ only in the last token
    model, _, _ = load_backbone(tiny_models[arch], attention="causal", attn_implementation=impl)
    assert torch.allclose(_first_token_state(model, a), _first_token_state(model, b), atol=1e-6)
    set_attention(model, "bidirectional")
    assert model.config.is_causal is False
    diff = (_first_token_state(model, a) - _first_token_state(model, b)).abs().max()
    assert diff > 1e-4
    set_attention(model, "causal")
    assert torch.allclose(_first_token_state(model, a), _first_token_state(model, b), atol=1e-6)


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        resolve_backbone(str(tmp_path / "nope"))
    with pytest.raises(BackboneError, match="GGUF file not found"):
        resolve_backbone(str(tmp_path / "nope.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match="no config.json"):
        resolve_backbone(str(tmp_path / "empty"))


def test_model_without_lm_head_is_refused(tmp_path, tiny_llama):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path)
    with pytest.raises(BackboneError, match="LM head|causal LM"):
        load_backbone(str(tmp_path))


def test_unknown_attention_is_refused(tiny_llama):
    model, _, _ = load_backbone(tiny_llama)
    with pytest.raises(BackboneError, match="unknown attention"):
        set_attention(model, "sideways")


def test_tokenizer_without_pad_token_falls_back_to_eos(tmp_path, tiny_llama):
    import shutil

    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{tiny_llama}/{f}", tmp_path / f)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg.pop("pad_token", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    tok = load_tokenizer(str(tmp_path))
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"


def test_tokenizer_roundtrip_keeps_ids(tiny_models):
    """AutoTokenizer may pick a model-specific class: the ids must not change."""
    from tokenizers import Tokenizer

    for path in tiny_models.values():
        raw = Tokenizer.from_file(f"{path}/tokenizer.json")
        tok = load_tokenizer(path)
        text = "Economists study inflation near the river."
        assert tok(text, add_special_tokens=False)["input_ids"] == raw.encode(text).ids
