"""Published MTEB scores as rows beside the models computed here.

A results folder in the layout of mteb's results repository (a clone of
github.com/embeddings-benchmark/results, mteb's own cache ``~/.cache/mteb`` after
``mteb.ResultCache().download_from_remote()``, or a folder written by ``--mteb-results``)::

    DIR/results/<owner>__<model>/<revision>/<task>.json    (model_meta.json optional)

is read with mteb's ``ResultCache.load_results``. Each named model becomes a row marked
"published"; its score on a task is the mean main score over the same splits and subsets as the
score computed here (AmazonCounterfactualClassification: the English subset only), so the
numbers compare like for like. A model with several revisions in the folder is read at mteb's
registered revision when the folder has it, else at the revision with the most of the run's tasks
(``NAME@REVISION`` picks one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EvalError
from .table import COMPUTED, PUBLISHED


@dataclass(frozen=True)
class PublishedModel:
    """A model of a results folder: its name, its folder name and the revision asked for (if any)."""

    name: str
    folder: str
    revision: str | None


def results_root(results_dir: str | os.PathLike[str] | None) -> Path:
    """The folder mteb's ResultCache opens: one holding ``results/`` (or ``remote/results/``).

    ``results_dir`` may also be that ``results/`` folder itself; None is mteb's default cache
    ($MTEB_CACHE, else ~/.cache/mteb).
    """
    if results_dir is None:
        path = Path(os.environ.get("MTEB_CACHE") or Path.home() / ".cache" / "mteb")
        hint = ("no published results in mteb's cache; pass --compare-results DIR, a clone of "
                "github.com/embeddings-benchmark/results")
    else:
        path = Path(results_dir).expanduser()
        hint = ("expected a folder in mteb's results-repository layout: DIR/results/<owner>__<model>/"
                "<revision>/<task>.json")
        if not path.is_dir():
            raise EvalError(f"{path}: results folder not found ({hint})")
    if (path / "results").is_dir() or (path / "remote" / "results").is_dir():
        return path
    if path.name == "results" and path.is_dir():
        return path.parent
    raise EvalError(f"{path}: no results/ folder in it ({hint})")


def resolve_published(names: list[str],
                      results_dir: str | os.PathLike[str] | None) -> tuple[Path, list[PublishedModel]]:
    """Check that each name is a model of the results folder; the folder and the models, in order.

    A name matches a model's full name (``sentence-transformers/all-MiniLM-L6-v2``) or the part after
    its owner (``all-MiniLM-L6-v2``); ``NAME@REVISION`` also fixes the revision.
    """
    root = results_root(results_dir)
    available: dict[str, set[str]] = {}
    for base in (root / "results", root / "remote" / "results"):
        if base.is_dir():
            for model_dir in base.iterdir():
                revisions = {p.name for p in model_dir.iterdir() if p.is_dir()} if model_dir.is_dir() else set()
                if revisions:
                    available.setdefault(model_dir.name, set()).update(revisions)
    models = []
    for given in names:
        name, _, revision = given.partition("@")
        folder = name.replace("/", "__").replace(" ", "_")
        matches = [folder] if folder in available else [f for f in available if f.split("__", 1)[-1] == folder]
        if not matches:
            close = sorted(f.replace("__", "/") for f in available if name.lower() in f.lower())[:5]
            known = f"; similar: {', '.join(close)}" if close else f" ({len(available)} models there)"
            raise EvalError(f"--compare {given}: no model of that name in {root / 'results'}{known}")
        if len(matches) > 1:
            raise EvalError(f"--compare {given}: several models of that name in {root / 'results'} "
                            f"({', '.join(sorted(m.replace('__', '/') for m in matches))}); give the full name")
        if revision and revision not in available[matches[0]]:
            raise EvalError(f"--compare {given}: no revision {revision!r} of it in {root / 'results'} "
                            f"(revisions: {', '.join(sorted(available[matches[0]]))})")
        models.append(PublishedModel(matches[0].replace("__", "/"), matches[0], revision or None))
    return root, models


def add_published(results: dict[str, Any], names: list[str],
                  results_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``results`` (from :func:`~text2token.evaluation.evaluate`) with a "published" row per named model.

    The computed models get ``"source": "computed here"``; the published ones ``"published"``, with
    the folder and revision their scores come from. A task the folder has no score for stays blank.
    """
    from mteb.cache import ResultCache

    root, models = resolve_published(names, results_dir)
    cache = ResultCache(root)
    task_names = [t["name"] for t in results["tasks"]]
    out = {**results, "models": [{**m, "source": m.get("source", COMPUTED)} for m in results["models"]],
           "results": [{**r, "source": r.get("source", COMPUTED)} for r in results["results"]]}
    labels = {m["label"] for m in out["models"]}
    for model in models:
        loaded = cache.load_results(models=[model.name], tasks=task_names, require_model_meta=False,
                                    validate_and_filter=False, include_remote=True)
        by_revision = {mr.model_revision: mr for mr in loaded.model_results
                       if model.revision is None or mr.model_revision == model.revision}
        label = f"{model.name} ({PUBLISHED})"
        if label in labels:
            raise EvalError(f"--compare {model.name}: named twice")
        labels.add(label)
        revision = _pick_revision(model.name, by_revision)
        model_result = by_revision.get(revision)
        task_results = {tr.task_name: tr for tr in (model_result.task_results if model_result else [])}
        out["models"].append({"label": label, "model": model.name, "revision": revision, "source": PUBLISHED,
                              "results_dir": str(root)})
        for task in results["tasks"]:
            task_result = task_results.get(task["name"])
            score = _main_score(task_result, _computed_subsets(results, task["name"])) if task_result else None
            if score is None:
                continue
            out["results"].append({"model": label, "task": task["name"], "type": task["type"], "main_score": score,
                                   "main_score_name": task["main_score"], "source": PUBLISHED, "revision": revision,
                                   "scores": task_result.scores, "cut": None, "cached": False})
    return out


def _pick_revision(name: str, by_revision: dict[str, Any]) -> str | None:
    """mteb's registered revision when the folder has it, else the one with most tasks (then by name)."""
    if not by_revision:
        return None
    try:
        import mteb

        registered = mteb.get_model_meta(name).revision
    except Exception:  # a model mteb does not know
        registered = None
    if registered in by_revision:
        return registered
    return max(sorted(by_revision), key=lambda rev: len(by_revision[rev].task_results))


def _computed_subsets(results: dict[str, Any], task: str) -> dict[str, set[str]] | None:
    """The splits and subsets the scores computed here cover: ``{split: {subset, ...}}``, or None."""
    for entry in results["results"]:
        if entry["task"] == task and entry.get("source") != PUBLISHED and entry.get("scores"):
            return {split: {s.get("hf_subset", "default") for s in rows} for split, rows in entry["scores"].items()}
    return None


def _main_score(task_result: Any, subsets: dict[str, set[str]] | None) -> float | None:
    """The mean main score of a published TaskResult over ``subsets`` (all its test scores when None)."""
    values = []
    wanted = subsets or {"test": None}
    for split, names in wanted.items():
        for row in task_result.scores.get(split, []):
            if names is None or row.get("hf_subset", "default") in names:
                values.append(float(row["main_score"]))
    if subsets is None and not values:  # no test split: every split the file has
        values = [float(row["main_score"]) for rows in task_result.scores.values() for row in rows]
    return float(np.mean(values)) if values else None
