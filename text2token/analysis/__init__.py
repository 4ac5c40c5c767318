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

from .._lazy import lazy_exports

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
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
