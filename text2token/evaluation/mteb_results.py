"""Results in mteb 2's own format: its ``TaskResult`` files and folder layout, with a ``ModelMeta``.

:func:`write_mteb_results` writes each model's scores with mteb's ``ResultCache.save_to_cache``::

    DIR/results/<model name, "/" as "__">/<revision>/<task>.json      one mteb TaskResult per task
    DIR/results/<model name>/<revision>/model_meta.json               the model's mteb ModelMeta

so that ``mteb.ResultCache(DIR).load_results()`` (and the tooling built on it: the leaderboard
tables, ``BenchmarkResults``) reads them beside published models. The layout is the one of mteb's
results repository (github.com/embeddings-benchmark/results).

What the ModelMeta records, as far as its fields allow: ``adapted_from`` the backbone,
``training_datasets`` empty for a text2token run or a base LM (no MTEB dataset, no labels:
zero-shot on every task), ``max_tokens``/``embed_dim``/``n_parameters``, ``use_instructions``
when a prompt template wraps every text (mteb counts a fixed input format as one), and in
``loader_kwargs`` the options of ``text2token.load`` that rebuild the embedder (pooling,
attention, max length, precision), the prompt, and the training recipe with its supervision
("unsupervised": text2token trains on unlabelled text). ``experiment_kwargs`` stays empty: mteb
files a model with experiment kwargs under ``experiments/`` and leaves it out of a plain
``load_results()``. The revision is the fingerprint of the model's files followed by one of its
options, so two configurations of one model never share a folder (and its ``model_meta.json``).

Tasks cut down for speed (``--max-samples``, the quick benchmark's SciFact) are not written: an
mteb result file has no place to say so, and its score would pass for the full task's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EvalError

if TYPE_CHECKING:
    from mteb.models import ModelMeta

DESCRIPTION_VERSION = 1
SUPERVISION = "unsupervised"


def describe_model(ref: Any, model: Any = None) -> dict[str, Any]:
    """What the ModelMeta of a model records, as a JSON-able dict.

    ``ref``: a :class:`~text2token.evaluation.encoder.ModelRef` (a model named on the command line)
    or a loaded model; ``model``: the loaded model when there is one (its own pooling, prompt,
    backbone, dimension and parameter count are then used), else what the run folder or the
    options say.
    """
    named = hasattr(ref, "identity")
    loaded = model if model is not None else (None if named else ref)
    spec = ref.spec if named else None
    run = _run_config(spec) if spec else None
    run_model = (run or {}).get("model", {})
    kind = ("sentence-transformers" if named and ref.is_sentence_transformers
            else "text2token run" if run else "base LM" if named else "loaded model")

    def pick(field: str, default: Any) -> Any:
        override = getattr(ref, field, None) if named else None
        if override is not None:
            return override
        if loaded is not None and getattr(loaded, field, None) is not None:
            return getattr(loaded, field)
        return run_model.get(field, default)

    is_st = kind == "sentence-transformers"
    pooling = None if is_st else pick("pooling", "mean" if kind in ("base LM", "text2token run") else None)
    prompt = None
    if pooling == "last":  # text2token wraps texts in its prompt template for last pooling only
        prompt = pick("prompt", None) or _default_prompt()
    backbone = None if is_st else (getattr(loaded, "backbone", None) or run_model.get("backbone")
                                   or (spec if kind == "base LM" else None))
    if run is not None:
        training = {"method": "text2token", "supervision": SUPERVISION, "objective": run.get("objective"),
                    "stages": run.get("stages"), "hyperparameters": run.get("hyperparameters")}
    elif kind == "base LM":
        training = {"method": None, "supervision": SUPERVISION,
                    "note": "the base LM with no embedding training"}
    else:
        training = None  # unknown: a sentence-transformers folder or a model object
    dim = getattr(loaded, "embedding_dim", None)
    return {
        "version": DESCRIPTION_VERSION,
        "kind": kind,
        "name": _meta_name(ref),
        "revision": _revision(ref),
        "backbone": str(backbone) if backbone else None,
        "pooling": pooling,
        "attention": None if is_st else pick("attention", "causal" if kind != "loaded model" else None),
        "max_length": None if is_st else pick("max_length", 128 if kind != "loaded model" else None),
        "prompt": prompt,
        "precision": ref.precision if named else getattr(ref, "precision", None),
        "embedding_dim": int(dim) if dim is not None else None,
        "n_parameters": _n_parameters(loaded),
        "training": training,
        "framework": (["Sentence Transformers", "PyTorch"] if is_st
                      else ["PyTorch"] if kind == "loaded model" else ["PyTorch", "Transformers"]),
    }


def results_model_meta(description: dict[str, Any]) -> ModelMeta:
    """The mteb ModelMeta of a described model (see :func:`describe_model`), built without hub access."""
    from mteb.models import ModelMeta

    training = description.get("training")
    unsupervised = bool(training) and training.get("supervision") == SUPERVISION
    loader_kwargs = {key: description.get(key) for key in ("pooling", "attention", "max_length", "precision",
                                                           "prompt")}
    loader_kwargs = {key: value for key, value in loader_kwargs.items() if value is not None}
    loader_kwargs["training"] = training
    backbone = description.get("backbone")
    return ModelMeta(
        loader=None,
        loader_kwargs=loader_kwargs,
        name=description["name"],
        revision=description["revision"],
        release_date=None,
        languages=None,
        n_parameters=description.get("n_parameters"),
        memory_usage_mb=None,
        max_tokens=description.get("max_length"),
        embed_dim=description.get("embedding_dim"),
        license=None,
        open_weights=None,
        public_training_code=None,
        public_training_data=None,
        framework=description.get("framework") or ["PyTorch"],
        similarity_fn_name="cosine",
        use_instructions=description.get("prompt") is not None,
        training_datasets=set() if unsupervised else None,
        adapted_from=backbone if backbone and backbone != description["name"] else None,
        experiment_kwargs=None,
    )


def write_mteb_results(results: dict[str, Any], folder: str | os.PathLike[str]) -> list[Path]:
    """Write each computed model's task results in mteb's format under ``folder``; the paths written.

    ``results`` is the dict :func:`~text2token.evaluation.evaluate` returns; published rows (see
    :func:`~text2token.evaluation.published.add_published`) and cut tasks are skipped.
    """
    from mteb.cache import ResultCache

    root = Path(folder).expanduser()
    if root.exists() and not root.is_dir():
        raise EvalError(f"{root}: --mteb-results must be a folder")
    try:
        cache = ResultCache(root)
    except OSError as error:
        raise EvalError(f"{root}: cannot create the mteb results folder ({error.strerror})") from None
    tasks = {t["name"]: t for t in results["tasks"]}
    written = []
    # mteb writes each file in place: it writes into a staging folder under ``root`` here, and each file is
    # then flushed and renamed into place, so a failed write (a full disk) never leaves a truncated result
    import tempfile

    try:
        staging = Path(tempfile.mkdtemp(prefix=".text2token-staging-", dir=root))
    except OSError as error:
        raise EvalError(f"{root}: cannot write mteb results ({error.strerror})") from None
    try:
        _write_results(results, tasks, cache, ResultCache(staging), root, written)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def _write_results(results: dict[str, Any], tasks: dict[str, Any], cache: Any, staged_cache: Any, root: Path,
                   written: list[Path]) -> None:
    from mteb.results import TaskResult

    from ..files import fsync_tree, os_cause

    for model in results["models"]:
        if model.get("source") == "published":
            continue
        description = model.get("description") or _fallback_description(model)
        meta = results_model_meta(description)
        for entry in results["results"]:
            if entry["model"] != model["label"] or entry.get("cut") or entry.get("source") == "published":
                continue
            task_result = TaskResult(
                dataset_revision=entry.get("dataset_revision") or _dataset_revision(tasks.get(entry["task"])),
                task_name=entry["task"],
                mteb_version=results.get("mteb_version"),
                scores=entry["scores"],
                evaluation_time=entry.get("evaluation_time"),
            )
            final = cache.get_task_result_path(entry["task"], meta)
            staged = staged_cache.get_task_result_path(entry["task"], meta)
            try:
                staged.parent.mkdir(parents=True, exist_ok=True)
                settings = final.parent / "run_settings.jsonl"
                if settings.is_file():  # mteb merges into the one there
                    shutil.copy2(settings, staged.parent / settings.name)
                staged_cache.save_to_cache(task_result, meta)
                fsync_tree(staged.parent)
                final.parent.mkdir(parents=True, exist_ok=True)
                for file in sorted(staged.parent.iterdir()):
                    os.replace(file, final.parent / file.name)
            except OSError as error:
                raise EvalError(f"{root}: cannot write mteb results ({os_cause(error)}); what was there is kept") \
                    from None
            written.append(final)


def _fallback_description(model: dict[str, Any]) -> dict[str, Any]:
    """A description from a results dict's model entry alone (results written by an older version)."""
    name = model.get("model") or model["label"]
    return {"name": name if "/" in name else f"local/{Path(name).name}", "revision": model.get("files") or "unknown",
            "pooling": model.get("pooling"), "attention": model.get("attention"),
            "max_length": model.get("max_length"), "precision": model.get("precision"), "training": None}


def _dataset_revision(task: dict[str, Any] | None) -> str:
    """What mteb records for a task: its dataset revision for an mteb task (local data or not), else "local"."""
    if task is not None:
        from .tasks import _get_mteb_task

        builtin = _get_mteb_task(task["name"])
        if builtin is not None:
            return str(builtin.metadata.revision)
    return "local"


def _meta_name(ref: Any) -> str:
    """A hub id stays as it is; a local folder becomes ``local/<folder name>`` (mteb wants an owner)."""
    if hasattr(ref, "identity"):
        spec = ref.spec
        if spec.count("/") == 1 and not Path(spec).exists():
            return spec
        name = Path(spec).name
    else:
        name = str(getattr(ref, "name", type(ref).__name__))
    return name if "/" in name and not Path(name).exists() else f"local/{Path(name).name}"


def _revision(ref: Any) -> str:
    """The files' fingerprint, then a hash of the options that change the embeddings."""
    if not hasattr(ref, "identity"):
        return "unknown"
    identity = ref.identity()
    options = {k: identity.get(k) for k in ("pooling", "attention", "max_length", "precision")}
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
    return f"{identity['files']}-{digest}"


def _run_config(spec: str) -> dict[str, Any] | None:
    from ..runfolder import RUN_CONFIG

    path = Path(spec).expanduser() / RUN_CONFIG
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def _default_prompt() -> str | None:
    try:
        from ..pooling import PROMPT_EOL
    except ImportError:  # pragma: no cover - the core package is always there in practice
        return None
    return PROMPT_EOL


def _n_parameters(model: Any) -> int | None:
    inner = getattr(model, "model", None)
    parameters = getattr(inner, "parameters", None)
    if not callable(parameters):
        return None
    try:
        return int(sum(p.numel() for p in parameters()))
    except Exception:  # a model without countable parameters
        return None
