"""Decoded top tokens of an embedding and token alignment (METHOD.md, "Analysis").

Definitions used everywhere in this package:

- p(· | x) = softmax(W_lm · e(x)) in fp32: the model's own LM head on the pooled embedding
  (``Text2TokenModel.encode(output="distribution")``).
- top-k(x): the k token ids of largest p(t | x), in decreasing order.
- The text's own tokens T(x): the ids of ``tokenizer(x, add_special_tokens=False)`` over the whole
  text as written (no prompt template, no truncation, no stop-word filtering), special tokens
  excluded. Their forms F(x) = {decode([t]).strip().lower() for t in T(x)}, empty forms and forms
  with a replacement character (a partial UTF-8 byte sequence) left out.
- A decoded token t is **in text** when t ∈ T(x), or when its own form decode([t]).strip().lower()
  is in F(x) (so " Paris", "Paris" and "paris" all count for a text containing "Paris"). Any other
  token is **derived** (the paper's "semantically derived" tokens). With ``last`` pooling the
  template's words ("sentence", "means", "word") are not the text's own tokens: they count as derived.
- hit@k(x) = |{t ∈ top-k(x) : t in text}| / k, a share in [0, 1]; a sample reports its mean over
  texts. derived@k = 1 − hit@k, the share of derived tokens among the top k.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import AnalysisError

DEFAULT_KS = (1, 5, 10, 20, 50)


def vocab_size(model) -> int:
    """Rows of the model's LM head (the width of p(· | x))."""
    return model.vocab_size


def top_token_ids(model, texts: list[str], k: int, batch_size: int = 32,
                  show_progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """top-k(x) of each text: ``(ids int64 [n, k], probabilities float32 [n, k])``, in input order.

    Computed batch by batch (:meth:`Text2TokenModel.top_token_ids`, the model's one forward pass), so the
    full distribution of many texts is never held at once. ``k`` is capped at the vocabulary size.
    """
    if not isinstance(k, int) or k < 1:
        raise AnalysisError(f"k must be a positive integer, got {k!r}")
    return model.top_token_ids(texts, k, batch_size, show_progress, desc="top tokens")


class TextTokens:
    """The "in text" rule of this module's docstring, for one tokenizer (decoded forms cached)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.special = frozenset(tokenizer.all_special_ids)
        self._decoded: dict[int, str] = {}

    def decode(self, token_id: int) -> str:
        """The token alone, decoded ('' for an id the tokenizer does not know)."""
        token_id = int(token_id)
        if token_id not in self._decoded:
            try:
                text = self.tokenizer.decode([token_id])
            except (IndexError, KeyError, OverflowError, TypeError, ValueError):
                text = ""
            self._decoded[token_id] = text if isinstance(text, str) else ""
        return self._decoded[token_id]

    def form(self, token_id: int) -> str:
        """decode([t]).strip().lower(), or '' when empty or a partial UTF-8 sequence."""
        form = self.decode(token_id).strip().lower()
        return "" if "\ufffd" in form else form

    def text_ids(self, texts: list[str]) -> list[list[int]]:
        """T(x) of each text, in order of occurrence (repeats kept)."""
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [[int(i) for i in row if int(i) not in self.special] for row in encoded]

    def marks(self, text_ids: list[int], candidates) -> list[bool]:
        """For each candidate token id: is it in the text whose own tokens are ``text_ids``?"""
        ids = set(text_ids)
        forms = {f for f in (self.form(i) for i in ids) if f}
        out = []
        for t in candidates:
            t = int(t)
            form = self.form(t)
            out.append(t in ids or (bool(form) and form in forms))
        return out

    def marks_matrix(self, texts: list[str], top_ids: np.ndarray) -> np.ndarray:
        """``bool [n, k]``: is top_ids[i, j] in texts[i]?"""
        rows = self.text_ids(texts)
        return np.array([self.marks(row, top_ids[i]) for i, row in enumerate(rows)], dtype=bool).reshape(top_ids.shape)


def hit_at_k(marks: np.ndarray, ks) -> dict[str, float]:
    """Mean over texts of hit@k = (in-text tokens among the top k) / k, for each k (capped at the width)."""
    if marks.shape[0] == 0:
        raise AnalysisError("hit@k of no texts")
    return {str(k): float(marks[:, : min(k, marks.shape[1])].mean()) for k in ks}


def check_ks(ks) -> list[int]:
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise AnalysisError(f"k values must be positive integers, got {ks}")
    return ks


def token_alignment(model, texts: list[str], ks=DEFAULT_KS, batch_size: int = 32, show_progress: bool | None = None,
                    examples: int = 5, example_k: int = 10) -> dict[str, Any]:
    """hit@k and derived@k of ``model`` over ``texts`` (see the module docstring), with a few examples.

    Returns ``{"texts", "k", "hit_at_k": {k: share}, "derived_at_k": {k: share}, "examples": [...]}``;
    each example holds a text and its top ``example_k`` tokens with probability and mark.
    """
    ks = check_ks(ks)
    if not texts:
        raise AnalysisError("no texts to analyse")
    width = max(max(ks), example_k)
    ids, probs = top_token_ids(model, texts, width, batch_size, show_progress)
    rules = TextTokens(model.tokenizer)
    marks = rules.marks_matrix(texts, ids)
    hits = hit_at_k(marks, ks)
    shown = []
    for i in range(min(examples, len(texts))):
        shown.append({"text": texts[i], "top_tokens": [
            {"id": int(t), "token": rules.decode(t), "prob": float(p), "in_text": bool(m)}
            for t, p, m in zip(ids[i, :example_k], probs[i, :example_k], marks[i, :example_k])
        ]})
    return {
        "texts": len(texts),
        "k": ks,
        "hit_at_k": hits,
        "derived_at_k": {k: 1.0 - v for k, v in hits.items()},
        "examples": shown,
    }


# --------------------------------------------------------------------------------------- inspect


def inspect_text(model, text: str, k: int = 20) -> dict[str, Any]:
    """The top-k decoded tokens of one text's embedding, each marked "in text" or "derived"."""
    ids, probs = top_token_ids(model, [text], k, show_progress=False)
    rules = TextTokens(model.tokenizer)
    own = rules.text_ids([text])[0]
    marks = rules.marks(own, ids[0])
    tokens = [
        {"rank": r + 1, "id": int(t), "token": rules.decode(t), "prob": float(p),
         "mark": "in text" if m else "derived"}
        for r, (t, p, m) in enumerate(zip(ids[0], probs[0], marks))
    ]
    in_text = sum(marks)
    return {
        "model": str(model.name),
        "pooling": model.pooling,
        "attention": model.attention,
        "text": text,
        "text_tokens": [rules.decode(t) for t in own],
        "k": len(tokens),
        "in_text": in_text,
        "derived": len(tokens) - in_text,
        "hit_at_k": in_text / len(tokens) if tokens else 0.0,
        "tokens": tokens,
    }


def _prob(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.2e}"


def format_inspection(result: dict[str, Any]) -> str:
    """An aligned text table of :func:`inspect_text`'s result."""
    rows = [(str(t["rank"]), str(t["id"]), repr(t["token"]), _prob(t["prob"]), t["mark"]) for t in result["tokens"]]
    head = ("rank", "id", "token", "prob", "mark")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = (True, True, False, True, False)

    def line(cells):
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()

    own = result["text_tokens"]
    lines = [
        f"model: {result['model']} ({result['pooling']} pooling, {result['attention']} attention)",
        f"text:  {result['text']!r}",
        f"text tokens ({len(own)}): " + " ".join(repr(t) for t in own),
        "",
        line(head),
        line(["-" * w for w in widths]),
        *(line(r) for r in rows),
        "",
        f"in text: {result['in_text']} of {result['k']} (hit@{result['k']} = {result['hit_at_k']:.2f}); "
        f"derived: {result['derived']}",
    ]
    return "\n".join(lines)
