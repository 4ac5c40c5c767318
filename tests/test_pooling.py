import numpy as np
import pytest
import torch

import text2token
from text2token.errors import ConfigError
from text2token.pooling import PROMPT_EOL, TextEncoder, pool, position_ids

SHORT = "The cat sat."
LONG = "Economists study inflation, interest rates and unemployment in the city near the river " * 3


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_padding_never_leaks_into_the_embedding(tiny_models, arch, pooling, attention):
    model = text2token.load(tiny_models[arch], pooling=pooling, attention=attention, max_length=64)
    alone = model.encode([SHORT])[0]
    batched = model.encode([LONG, SHORT, "Rain fell."], batch_size=3)[1]
    assert np.abs(alone - batched).max() < 1e-5


def test_last_pooling_template_survives_truncation(tiny_llama):
    model = text2token.load(tiny_llama, pooling="last", max_length=40)
    enc = model.text_encoder
    suffix = enc.tokenizer('" means in one word:"', add_special_tokens=False)["input_ids"]
    ids = enc.token_ids([LONG * 5])[0]
    assert len(ids) <= 40
    assert ids[-len(suffix):] == suffix
    text = enc.tokenizer.decode(ids)
    assert text.startswith('This sentence : "Econom') and text.endswith('" means in one word:"')


def test_last_pooling_uses_left_padding(tiny_llama):
    enc = TextEncoder(text2token.load(tiny_llama).tokenizer, "last", 64)
    batch = enc(["a", LONG])
    assert batch["attention_mask"][0, -1] == 1 and batch["attention_mask"][0, 0] == 0
    assert batch["position_ids"][0, -1] == batch["attention_mask"][0].sum() - 1


def test_template_too_long_for_max_length_is_refused(tiny_llama):
    tok = text2token.load(tiny_llama).tokenizer
    with pytest.raises(ConfigError, match="no room"):
        TextEncoder(tok, "last", 5)
    with pytest.raises(ConfigError, match="unknown pooling"):
        TextEncoder(tok, "max", 64)


def test_empty_text_gives_a_finite_embedding(tiny_llama):
    out = text2token.load(tiny_llama).encode(["", "   ", "cat"])
    assert np.isfinite(out).all()


def test_pool_by_hand():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0]]))
    left = torch.tensor([[0, 1, 1]])
    assert torch.allclose(pool(hidden, left, "last"), torch.tensor([[100.0, 100.0]]))
    assert torch.allclose(pool(hidden, mask, "last"), torch.tensor([[3.0, 4.0]]))
    assert position_ids(left).tolist() == [[0, 0, 1]]


def test_encode_order_normalize_and_distribution(tiny_llama):
    model = text2token.load(tiny_llama)
    texts = ["a b c d e f g", "cat", "the river and the city"]
    full = model.encode(texts, batch_size=1)
    assert np.allclose(model.encode(texts[::-1], batch_size=2)[::-1], full, atol=1e-5)
    unit = model.encode(texts, normalize=True)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    probs = model.encode(texts, output="distribution")
    assert probs.shape == (3, len(model.tokenizer)) and np.allclose(probs.sum(1), 1.0, atol=1e-4)
    assert PROMPT_EOL.count("{text}") == 1
