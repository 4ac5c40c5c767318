"""Evaluation: score embedding models on MTEB tasks, online or from local task folders.

    from text2token.evaluation import evaluate, format_table
    results = evaluate(["runs/my-run", "Qwen/Qwen2-0.5B"], benchmark="quick")
    print(format_table(results))

Scores come from mteb's own task objects and evaluators (see ``tasks``); ``encoder`` holds the
mteb adapter, ``runner`` the evaluation loop and its score cache, ``cli`` the ``eval`` command,
``mteb_results`` the results in mteb's own files, ``published`` published scores as table rows.
Names are imported lazily, so that ``text2token --help`` does not import mteb.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "evaluate": "runner",
    "ScoreCache": "runner",
    "default_cache_dir": "runner",
    "format_table": "table",
    "MtebEncoder": "encoder",
    "SentenceTransformerModel": "encoder",
    "model_meta": "encoder",
    "TaskCut": "tasks",
    "BENCHMARKS": "tasks",
    "build_local_task": "tasks",
    "resolve_tasks": "tasks",
    "resolve_benchmark": "tasks",
    "EvalError": "errors",
    "EvalDataError": "errors",
    "UnknownTaskError": "errors",
    "write_mteb_results": "mteb_results",
    "results_model_meta": "mteb_results",
    "add_published": "published",
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
