"""Seeing inside the embedding: decoded top tokens, token alignment, representation drift,
sparse lexical vectors and dense / sparse / hybrid retrieval.

    from text2token.analysis import inspect_text, analyze, score_retrieval
    inspect_text(model, "The capital of France is Paris.", k=20)      # top tokens, marked in text / derived
    analyze(["runs/demo", None], data="corpus.txt", sample=200, output="analysis")
    score_retrieval(model, "../shared/data/evalsuite/SciFact", alphas=[0.5])

``tokens``: top decoded tokens, the "in text" rule, hit@k (METHOD.md "Analysis", token alignment);
``drift``: principal directions of the base model's embeddings and how a run's checkpoints move
along them; ``report``: the ``analyze`` command (JSON summary and plots); ``retrieval``: sparse
vectors and dense / sparse / hybrid retrieval scored by mteb; ``cli``: the sub-commands.
Names are imported lazily, so that ``text2token --help`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "AnalysisError": "errors",
    "AnalysisDataError": "errors",
    "TextTokens": "tokens",
    "top_token_ids": "tokens",
    "inspect_text": "tokens",
    "format_inspection": "tokens",
    "token_alignment": "tokens",
    "list_checkpoints": "drift",
    "representation_drift": "drift",
    "analyze": "report",
    "read_losses": "report",
    "encode_views": "retrieval",
    "score_retrieval": "retrieval",
    "hybrid_scores": "retrieval",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
