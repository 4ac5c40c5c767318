"""Evaluate models on tasks with mteb, cache each score, and return one results dict.

A score is cached under a key made of the model's identity (path or hub id, pooling, attention,
max length, a fingerprint of its files), the task (name, content hash of its data files, cut) and
the mteb version, so a rerun only computes what is missing and a changed model file or data file
is recomputed. A model is loaded only when one of its tasks is not cached.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ..backbone import ATTENTION_MODES as ATTENTIONS, user_cache_dir
from ..pooling import POOLINGS
from .errors import EvalError
from .localdata import resolve_data_dir
from .tasks import FULL, TaskCut, TaskSpec, resolve_benchmark, resolve_tasks

RESULTS_FORMAT = "text2token-eval/1"
CACHE_VERSION = 1  # bump when the way a task is built or scored changes
CACHE_ENV = "TEXT2TOKEN_EVAL_CACHE"


def default_cache_dir() -> Path:
    """$TEXT2TOKEN_EVAL_CACHE, else $XDG_CACHE_HOME/text2token/eval, else ~/.cache/text2token/eval."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return user_cache_dir() / "eval"


class ScoreCache:
    """One JSON file per (model, task) score under a folder; unreadable entries count as missing."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder).expanduser()

    @staticmethod
    def key(model_identity: dict[str, Any], task_identity: dict[str, Any]) -> str:
        blob = json.dumps({"v": CACHE_VERSION, "model": model_identity, "task": task_identity}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.folder / f"{key}.json"
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))["entry"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(entry, dict):
            return None
        if "main_score" in entry and not _finite(entry["main_score"]):
            return None  # written by an older version that cached NaN: computed again
        return entry

    def check_writable(self) -> None:
        """Before any evaluation: the cache folder can be made and takes new files (one line if not)."""
        from ..files import writable_problem

        problem = writable_problem(self.folder, directory=True)
        if problem:
            raise EvalError(f"{problem}: the score cache cannot be written there; pass another --cache-dir "
                            "or --no-cache")

    def put(self, key: str, entry: dict[str, Any], identity: dict[str, Any]) -> None:
        from ..errors import DiskFullError
        from ..files import atomic_write_text, os_cause

        text = json.dumps({"identity": identity, "entry": entry}, indent=1)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.folder / f"{key}.json", text)  # temporary file, fsync, rename
        except DiskFullError as error:
            raise EvalError(f"{self.folder}: cannot write the score cache ({error}); pass another --cache-dir "
                            "or --no-cache") from None
        except OSError as error:
            raise EvalError(f"{self.folder}: cannot write the score cache ({os_cause(error)}); "
                            "pass another --cache-dir or --no-cache") from None


def _finite(value: Any) -> bool:
    import math

    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def evaluate(
    models: Any,
    tasks: Sequence[Any] | str | None = None,
    *,
    benchmark: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    batch_size: int = 32,
    pooling: str | None = None,
    attention: str | None = None,
    max_length: int | None = None,
    max_samples: int | None = None,
    max_doc_chars: int | None = None,
    show_progress: bool = True,
    precision: str = "auto",
    adapter_scale: float | None = None,
) -> dict[str, Any]:
    """Evaluate each model on each task and return the results dict (see :func:`format_table`).

    ``models``: one or a list of model names (a text2token run folder, a base LM hub id or folder,
    a sentence-transformers folder) or loaded models with the ``text2token.load`` protocol (those
    are never cached). ``tasks``: task names (a folder of ``data_dir``, else an mteb task, online)
    or mteb task objects; or ``benchmark``: "quick", "all-local" or an mteb benchmark name.
    ``max_samples`` / ``max_doc_chars`` cut local tasks down for a quick look (see
    :class:`~text2token.evaluation.tasks.TaskCut`); the cut is recorded with every score.
    ``precision``: ``fp32``, ``bf16`` (autocast while encoding) or ``auto`` (bf16 where the hardware runs
    it fast); the resolved value is part of each named model's cache identity and of every result.
    ``adapter_scale``: weight-space interpolation of run folders toward their base (``TrainConfig.adapter_scale``);
    default: each run's own.
    """
    if (tasks is None) == (benchmark is None):
        raise EvalError("name either tasks or a benchmark (not both)")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise EvalError(f"batch size must be a positive integer, got {batch_size!r}")
    cut = TaskCut(max_samples=max_samples, max_doc_chars=max_doc_chars) if (max_samples or max_doc_chars) else FULL
    folder = resolve_data_dir(data_dir)
    if benchmark is not None:
        specs = resolve_benchmark(benchmark, folder, cut)
    else:
        specs = resolve_tasks([tasks] if isinstance(tasks, str) else list(tasks), folder, cut)
    specs = list({spec.name: spec for spec in specs}.values())  # a task named twice runs once
    if not specs:
        raise EvalError("no task to evaluate")
    from ..precision import PRECISIONS, resolve

    if precision not in PRECISIONS:
        raise EvalError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    refs = _model_refs(models, pooling, attention, max_length, resolve(precision), adapter_scale)
    cache = ScoreCache(cache_dir or default_cache_dir()) if use_cache else None
    if cache is not None:
        cache.check_writable()

    task_ids = {spec.name: _task_identity(spec) for spec in specs}
    model_ids = [_model_identity(ref) for ref in refs]
    entries = []
    descriptions: list[dict[str, Any] | None] = []
    from tqdm.auto import tqdm

    bar = tqdm(total=len(refs) * len(specs), desc="eval", unit="task", disable=not show_progress, file=sys.stderr)
    with bar:
        for ref, model_id in zip(refs, model_ids, strict=True):
            encoder = None
            for spec in specs:
                bar.set_description(f"{_short(_label(ref))} | {spec.name}")
                key = ScoreCache.key(model_id, task_ids[spec.name]) if (cache and model_id) else None
                entry = cache.get(key) if key else None
                if entry is not None:
                    entry.update(cached=True, model=_label(ref))
                else:
                    if encoder is None:
                        encoder = _encoder(ref, model_id)
                        _remember_description(cache, ref, model_id, encoder.model)
                    entry = {"model": _label(ref), "precision": _precision(ref), **_run(encoder, spec, batch_size)}
                    if not _finite(entry["main_score"]):  # never cached, never printed as a number
                        raise EvalError(f"task {spec.name}, model {_label(ref)}: the main score "
                                        f"({entry['main_score_name']}) is {entry['main_score']}, not a number; the "
                                        "model's embeddings are constant or not finite, or the task's scores are")
                    if key:
                        cache.put(key, entry, {"model": model_id, "task": task_ids[spec.name]})
                    score, seconds = 100 * entry["main_score"], entry["evaluation_time"]
                    bar.write(f"{entry['model']} | {spec.name}: {score:.2f} ({seconds:.0f} s)", file=sys.stderr)
                entries.append(entry)
                bar.update()
            descriptions.append(_description(cache, ref, model_id, encoder.model if encoder is not None else None))
            del encoder
            gc.collect()  # free one model before loading the next

    return {
        "format": RESULTS_FORMAT,
        "mteb_version": version("mteb"),
        "data_dir": str(folder.resolve()) if folder else None,
        "models": [{"label": _label(ref), **(model_id or {}), "description": description}
                   for ref, model_id, description in zip(refs, model_ids, descriptions, strict=True)],
        "tasks": [spec.info() for spec in specs],
        "results": entries,
    }


def _description_key(model_id: dict[str, Any]) -> str:
    from .mteb_results import DESCRIPTION_VERSION

    return ScoreCache.key(model_id, {"description": DESCRIPTION_VERSION})


def _descriptions(cache: ScoreCache) -> ScoreCache:
    """Model descriptions live in a sub-folder of the score cache, one file per model identity."""
    return ScoreCache(cache.folder / "models")


def _remember_description(cache: ScoreCache | None, ref: Any, model_id: dict[str, Any] | None, model: Any) -> None:
    """Cache what a loaded model says of itself (dimension, parameters, prompt), for runs served from the cache."""
    if cache is not None and model_id:
        from .mteb_results import describe_model

        _descriptions(cache).put(_description_key(model_id), describe_model(ref, model),
                                 {"model": model_id, "description": True})


def _description(cache: ScoreCache | None, ref: Any, model_id: dict[str, Any] | None, model: Any) -> dict[str, Any]:
    """A model's description for its mteb ModelMeta: from the loaded model, else the cache, else its files."""
    from .mteb_results import describe_model

    if model is None and cache is not None and model_id:
        cached = _descriptions(cache).get(_description_key(model_id))
        if cached is not None:
            return cached
    return describe_model(ref, model)


def _precision(ref: Any) -> str:
    """What a model encodes in: a named model's resolved precision, a loaded model's own."""
    return ref.precision if hasattr(ref, "identity") else str(getattr(ref, "precision", "unknown"))


def _model_refs(models: Any, pooling: str | None, attention: str | None, max_length: int | None,
                precision: str = "fp32", adapter_scale: float | None = None) -> list[Any]:
    from .encoder import ModelRef

    items = [models] if isinstance(models, str | os.PathLike) or not isinstance(models, Sequence) else list(models)
    if not items:
        raise EvalError("no model to evaluate")
    for name, value, allowed in (("pooling", pooling, POOLINGS), ("attention", attention, ATTENTIONS)):
        if value is not None and value not in allowed:
            raise EvalError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise EvalError(f"max_length must be a positive integer, got {max_length!r}")
    named = [isinstance(m, str | os.PathLike) for m in items]
    if adapter_scale is not None and not (isinstance(adapter_scale, int | float) and 0 <= adapter_scale <= 1):
        raise EvalError(f"adapter_scale must be between 0 and 1, got {adapter_scale!r}")
    if not all(named) and (pooling or attention or max_length or adapter_scale is not None):
        raise EvalError("pooling, attention, max_length and adapter_scale apply to models given by name, not to "
                        "loaded models")
    refs = [ModelRef(str(m), pooling, attention, max_length, precision, adapter_scale) if is_name else m
            for m, is_name in zip(items, named, strict=True)]
    labels = [_label(r) for r in refs]
    if len(set(labels)) != len(labels):
        raise EvalError(f"a model is named twice: {', '.join(labels)}")
    return refs


def _label(ref: Any) -> str:
    return ref.label if hasattr(ref, "identity") else str(getattr(ref, "name", type(ref).__name__))


def _short(label: str, width: int = 40) -> str:
    return label if len(label) <= width else "..." + label[-(width - 3):]


def _model_identity(ref: Any) -> dict[str, Any] | None:
    """The cache identity of a named model; None for a loaded model object (not cached)."""
    return ref.identity() if hasattr(ref, "identity") else None


def _task_identity(spec: TaskSpec) -> dict[str, Any]:
    return {"name": spec.name, "source": spec.source, "data": spec.fingerprint(), "cut": spec.cut.to_dict(),
            "mteb": version("mteb")}


def _encoder(ref: Any, identity: dict[str, Any] | None) -> Any:
    from .encoder import MtebEncoder, model_meta

    if not hasattr(ref, "identity"):
        return MtebEncoder(ref)
    model = ref.load()
    framework = ["Sentence Transformers", "PyTorch"] if ref.is_sentence_transformers else ["PyTorch", "Transformers"]
    name = ref.spec if ref.spec.count("/") == 1 and not Path(ref.spec).exists() else Path(ref.spec).name
    meta = model_meta(model, name=name, revision=identity["files"] if identity else None, framework=framework,
                      experiment={"pooling": ref.pooling, "attention": ref.attention, "max_length": ref.max_length})
    return MtebEncoder(model, meta)


def _run(encoder: Any, spec: TaskSpec, batch_size: int) -> dict[str, Any]:
    """One task with mteb's own evaluate (no mteb cache, data already loaded for local tasks)."""
    import mteb

    task = spec.build()
    start = time.monotonic()
    with _quiet_mteb():
        if not task.data_loaded:
            try:
                task.load_data()
            except Exception as error:  # any failure to fetch an online task is a user error
                reason = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
                raise EvalError(f"task {spec.name}: cannot load its data from the hub ({reason}); run online, "
                                "or use local task folders (--data-dir)") from None
        result = mteb.evaluate(
            encoder, task, cache=None, overwrite_strategy="always", co2_tracker=False,
            encode_kwargs={"batch_size": batch_size, "show_progress_bar": False}, show_progress_bar=False,
        )
    task_result = result.task_results[0]
    return {
        "task": spec.name,
        "type": spec.type,
        "main_score": float(task_result.get_score()),
        "main_score_name": spec.main_score,
        "dataset_revision": task_result.dataset_revision,
        "cut": spec.cut.to_dict(),
        "scores": _jsonable(task_result.scores),
        "evaluation_time": time.monotonic() - start,
        "cached": False,
    }


def _jsonable(scores: Any) -> Any:
    return json.loads(json.dumps(scores, default=float))


def _silent_tqdm(*args: Any, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(*args, **{**kwargs, "disable": True})


@contextlib.contextmanager
def _quiet_mteb() -> Iterator[None]:
    """Silence mteb's info logs, warnings (e.g. "task superseded") and progress bars, and datasets' bars."""
    from datasets.utils import logging as ds_logging

    logger = logging.getLogger("mteb")
    level = logger.level
    bars = ds_logging.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    ds_logging.disable_progress_bar()
    try:  # the summarization evaluator's bar has no switch of its own
        from mteb._evaluators.text import summarization_evaluator
    except ImportError:  # pragma: no cover - another mteb layout
        summarization_evaluator = None
    summary_bar = getattr(summarization_evaluator, "tqdm", None)
    if summary_bar is not None:
        summarization_evaluator.tqdm = _silent_tqdm
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"mteb(\..*)?")
            warnings.filterwarnings("ignore", message=r".*superseded.*")
            yield
    finally:
        logger.setLevel(level)
        if bars:
            ds_logging.enable_progress_bar()
        if summary_bar is not None:
            summarization_evaluator.tqdm = summary_bar
