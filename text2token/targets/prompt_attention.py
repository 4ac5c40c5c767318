"""The prototype's unreported stage-1 weighting ``prompt_attention``: in-text tokens weighted by the attention
that the prompt's last token pays to them (METHOD.md).

For a text wrapped in the PromptEOL template, the base model's attention from the final position, averaged
over layers and summed over heads, is added up per token id over the text's own positions (the template's
positions left out): a_t. Its smoothed value v_t = a_t / (0.015 + a_t) weights each token t of the stage-1
token set S(x); the weights are normalised to sum to 1 (a text whose tokens all get 0 keeps uniform weights).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

SMOOTHING = 0.015  # the prototype's constant ("BM25 smoothing")


def _template_head(encoder) -> int:
    """How many leading token ids the template puts before any text (the common prefix of two texts)."""
    first = encoder._ids(encoder.prompt.format(text="0"))
    second = encoder._ids(encoder.prompt.format(text="1 2 3 4"))
    count = 0
    for a, b in zip(first, second):
        if a != b:
            break
        count += 1
    return count


@contextlib.contextmanager
def eager_attention(model):
    """Attention weights are only returned by the eager implementation; switch to it for a while."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if before and before != "eager":
            model.set_attn_implementation(before)


@torch.inference_mode()
def attention_per_token(model, tokenizer, texts: list[str], max_length: int, prompt: str,
                        batch_size: int = 16) -> list[dict[int, float]]:
    """a_t for each text: token id -> attention mass the prompt's final token gives the text's positions."""
    from ..pooling import TextEncoder

    encoder = TextEncoder(tokenizer, "last", max_length, prompt)
    head, tail = _template_head(encoder), len(encoder._template_tail())
    ids = encoder.token_ids(texts)
    device = next(model.parameters()).device
    out: list[dict[int, float]] = [{} for _ in texts]
    was_training = model.training
    model.eval()
    with eager_attention(model):
        for start in range(0, len(ids), batch_size):
            rows = ids[start:start + batch_size]
            batch = {k: v.to(device) for k, v in encoder.pad(rows).items()}
            result = model(**batch, output_attentions=True, use_cache=False)
            # [layers, batch, heads, query, key] -> the final query position, mean over layers, sum over heads
            attention = torch.stack([a[:, :, -1, :].float() for a in result.attentions]).mean(0).sum(1)
            width = batch["input_ids"].shape[1]
            for i, row in enumerate(rows):
                offset = width - len(row)  # left padding
                weights: dict[int, float] = {}
                for position in range(head, len(row) - tail):
                    token = row[position]
                    weights[token] = weights.get(token, 0.0) + float(attention[i, offset + position])
                out[start + i] = weights
    model.train(was_training)
    return out


def smoothed(attention: dict[int, float], token_ids: np.ndarray) -> np.ndarray:
    """Normalised v_t = a_t / (SMOOTHING + a_t) over ``token_ids`` (uniform if every a_t is 0)."""
    a = np.array([attention.get(int(t), 0.0) for t in token_ids], dtype=np.float64)
    v = a / (SMOOTHING + a)
    if not len(v) or v.sum() <= 0:
        return np.full(len(token_ids), 1.0 / max(1, len(token_ids)), dtype=np.float32)
    return (v / v.sum()).astype(np.float32)
