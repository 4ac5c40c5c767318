"""Tasks: local task folders turned into mteb task objects, scored by mteb's own evaluators.

A folder named like an mteb task (STSBenchmark, Banking77Classification, SciFact, ...) becomes
mteb's own task object with its data supplied from the folder, so the main score, score range,
classifier protocol and k values are mteb's. Any other folder (SentEval-*, *-proxy) becomes a local
subclass of mteb's abstract task of its type. Either way the data is set before the evaluation,
so mteb never goes to the hub for it. A name with no local folder is an mteb task loaded from the
hub (online only).

Reranking follows mteb 2, which folded it into retrieval: a reranking task is an
``AbsTaskRetrieval`` of type "Reranking" whose split carries ``top_ranked`` (each query's
candidate documents), so mteb scores only those candidates and reports its retrieval metrics
(main score MAP@1000 for the MTEB(eng) reranking tasks). A local ``{query, positive, negative}``
folder is turned into that split the way mteb's own converter of the old reranking layout
(``AbsTaskReranking.transform_old_dataset_format``) does: the same ids, positives first, rows
without a positive or without a negative left out. Summarization tasks are mteb's
``AbsTaskSummarization`` with its evaluator (main score: Spearman of cosine similarity).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EvalDataError, EvalError, UnknownTaskError
from .localdata import TaskFolder, find_task_folder, list_task_folders

if TYPE_CHECKING:
    from mteb.abstasks import AbsTask

MAIN_SCORES = {
    "STS": "cosine_spearman",
    "PairClassification": "max_ap",
    "Classification": "accuracy",
    "Clustering": "v_measure",
    "Retrieval": "ndcg_at_10",
    "Reranking": "map_at_1000",  # mteb 2's main score of AskUbuntuDupQuestions, SciDocsRR, StackOverflowDupQuestions
    "Summarization": "cosine_spearman",
}
# Protocol of the local tasks mteb has no class for: mteb's defaults for tasks with few labels
# (AmazonCounterfactual, TweetSentimentExtraction: 32 training samples per label, 10 experiments),
# and for clustering every document embedded, 10 k-means runs on 2048 documents (at most as
# many as there are) drawn each.
LOCAL_SAMPLES_PER_LABEL = 32
LOCAL_DOCUMENTS_PER_CLUSTER = 2048


@dataclass(frozen=True)
class TaskCut:
    """A cut-down task for quick evaluation; the default (all None) is the full, faithful task.

    ``max_samples`` caps the evaluated rows: sentence pairs (STS, pair classification), test
    texts (classification; the training pool is kept), documents (clustering), queries with their
    candidates (reranking), texts with their summaries (summarization), or the retrieval corpus
    (every judged document kept, random others up to the cap). ``max_doc_chars`` truncates
    each retrieval document's text. Rows are drawn with a fixed ``seed``, in file order.
    """

    max_samples: int | None = None
    max_doc_chars: int | None = None
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("max_samples", "max_doc_chars"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise EvalError(f"{name} must be a positive integer, got {value!r}")

    @property
    def is_full(self) -> bool:
        return self.max_samples is None and self.max_doc_chars is None

    def to_dict(self) -> dict[str, int] | None:
        if self.is_full:
            return None
        out = {k: v for k, v in (("max_samples", self.max_samples), ("max_doc_chars", self.max_doc_chars)) if v}
        return {**out, "seed": self.seed}


FULL = TaskCut()

# Benchmarks of local tasks: name -> {task: default cut}. "quick" is one small task per task type
# (about 10,000 short texts; SciFact cut to 1,000 documents of at most 1,000 characters);
# "all-local" is every task folder of the data folder, in full.
BENCHMARKS: dict[str, dict[str, TaskCut]] = {
    "quick": {
        "STSBenchmark": FULL,
        "TwitterSemEval2015": FULL,
        "AmazonCounterfactualClassification": FULL,
        "Banking77Clustering-proxy": FULL,
        "SciFact": TaskCut(max_samples=1000, max_doc_chars=1000),
    },
}
# Task types "quick" takes one task of when the data folder has one: the first folder of the list
# that exists joins the benchmark with its cut. No reranking folder ships in ../shared/data today.
QUICK_IF_PRESENT: dict[str, tuple[tuple[str, TaskCut], ...]] = {
    "Reranking": (
        ("AskUbuntuDupQuestions", FULL),  # 375 queries of about 20 candidates: small enough in full
        ("StackOverflowDupQuestions", TaskCut(max_samples=500)),
        ("SciDocsRR", TaskCut(max_samples=500)),
    ),
}
LOCAL_BENCHMARKS = (*BENCHMARKS, "all-local")


@dataclass
class TaskSpec:
    """A resolved task: where its data comes from, how it is cut, and how to build a fresh mteb task."""

    name: str
    type: str
    main_score: str
    source: str  # "local" or "mteb"
    folder: TaskFolder | None = None
    cut: TaskCut = FULL
    template: Any = field(default=None, repr=False)  # an unloaded mteb task, for source "mteb"

    @property
    def faithful(self) -> bool | None:
        if self.source == "mteb":
            return True
        return self.folder.faithful if self.folder else None

    def fingerprint(self) -> str:
        if self.folder is not None:
            return self.folder.fingerprint()
        meta = self.template.metadata
        splits, subsets = list(self.template.eval_splits), list(self.template.hf_subsets)
        return f"{meta.dataset.get('path')}@{meta.revision}:{splits}:{subsets}"

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "main_score": self.main_score,
            "source": self.source,
            "path": str(self.folder.path) if self.folder else None,
            "faithful": self.faithful,
            "cut": self.cut.to_dict(),
        }

    def build(self) -> AbsTask:
        """A fresh mteb task object (its random state unused); for a local task with its data loaded."""
        if self.source == "mteb":
            return copy.deepcopy(self.template)
        return build_local_task(self.folder, self.cut)


def resolve_tasks(
    names: list[str | Any], data_dir: Path | None, cut: TaskCut = FULL,
) -> list[TaskSpec]:
    """Task specs for task names (a local folder first, else an mteb task) or mteb task objects."""
    specs = []
    for name in names:
        if not isinstance(name, str):
            specs.append(_mteb_spec(name, cut))
            continue
        folder = find_task_folder(data_dir, name)
        if folder is not None:
            specs.append(_local_spec(folder, cut))
            continue
        template = _get_mteb_task(name)
        if template is None:
            local = ", ".join(list_task_folders(data_dir)) or (f"none in {data_dir}" if data_dir else "no data folder")
            raise UnknownTaskError(f"unknown task {name!r}: no folder {name!r} in the data folder and no mteb task "
                                   f"of that name (local tasks: {local})")
        specs.append(_mteb_spec(template, cut))
    return specs


def resolve_benchmark(name: str, data_dir: Path | None, cut: TaskCut = FULL) -> list[TaskSpec]:
    """Task specs of a local benchmark ("quick", "all-local") or of an mteb benchmark (online)."""
    if name in LOCAL_BENCHMARKS:
        if data_dir is None:
            raise EvalDataError(f"benchmark {name!r} needs local task folders: pass --data-dir or set "
                                "$TEXT2TOKEN_DATA_DIR")
        plan = dict.fromkeys(list_task_folders(data_dir), FULL) if name == "all-local" else _plan(name, data_dir)
        specs = []
        for task, default_cut in plan.items():
            folder = find_task_folder(data_dir, task)
            if folder is None:
                raise EvalDataError(f"{data_dir / task}: task folder of benchmark {name!r} not found")
            specs.append(_local_spec(folder, default_cut if cut.is_full else cut))
        return sorted(specs, key=lambda s: (s.type, s.name))
    import mteb

    try:
        benchmark = mteb.get_benchmark(name)
    except KeyError:
        raise UnknownTaskError(f"unknown benchmark {name!r} (local: {', '.join(LOCAL_BENCHMARKS)}; or an mteb "
                               "benchmark name such as 'MTEB(eng, v2)')") from None
    return [_mteb_spec(task, cut) for task in benchmark.tasks]


def _plan(name: str, data_dir: Path) -> dict[str, TaskCut]:
    """The tasks of a fixed local benchmark, with "quick"'s optional task types where a folder exists."""
    plan = dict(BENCHMARKS[name])
    if name == "quick":
        for candidates in QUICK_IF_PRESENT.values():
            present = [(task, cut) for task, cut in candidates if find_task_folder(data_dir, task) is not None]
            if present:
                plan.setdefault(*present[0])
    return plan


def _local_spec(folder: TaskFolder, cut: TaskCut) -> TaskSpec:
    builtin = _get_mteb_task(folder.name)
    if builtin is not None and builtin.metadata.type != folder.type:
        raise EvalDataError(f"{folder.path}: files look like a {folder.type} task, but mteb's {folder.name} "
                            f"is {builtin.metadata.type}")
    main = builtin.metadata.main_score if builtin is not None else MAIN_SCORES[folder.type]
    return TaskSpec(folder.name, folder.type, main, "local", folder=folder, cut=cut)


def _mteb_spec(task: Any, cut: TaskCut) -> TaskSpec:
    if not cut.is_full:
        raise EvalError(f"task {task.metadata.name}: cutting a task (max_samples, max_doc_chars) is only "
                        "possible for local task folders")
    meta = task.metadata
    return TaskSpec(meta.name, meta.type, meta.main_score, "mteb", template=task)


@cache
def _mteb_task_names() -> frozenset[str]:
    import mteb

    return frozenset(task.metadata.name for task in mteb.get_tasks(exclude_superseded=False))


def _get_mteb_task(name: str) -> AbsTask | None:
    if name not in _mteb_task_names():
        return None
    import mteb

    return mteb.get_task(name)


# --- building a local task ---------------------------------------------------------------------


def build_local_task(folder: TaskFolder, cut: TaskCut = FULL) -> AbsTask:
    """mteb's task object for a local folder (its own class, or a local subclass), data loaded."""
    rows = _apply_cut(folder.type, _read_cached(folder), cut)
    builtin = _get_mteb_task(folder.name)
    task = builtin if builtin is not None else _local_task_class(folder.name, folder.type, folder.notes or "")()
    subset = "default"
    if task.metadata.is_multilingual:
        subset = _english_subset(task, folder)
        task.hf_subsets = [subset]
    task.filter_eval_splits(["test"])
    if builtin is None and folder.type == "Clustering":  # no more draws than documents
        task.max_documents_per_cluster = min(LOCAL_DOCUMENTS_PER_CLUSTER, len(rows["test"]))
    dataset = _DATASET_BUILDERS[folder.type](task, rows)
    wrap = task.metadata.is_multilingual or folder.type in _RETRIEVAL_LIKE  # as mteb's own loaders store them
    task.dataset = {subset: dataset} if wrap else dataset
    task.data_loaded = True
    return task


_READ_CACHE: dict[tuple[Path, str], dict[str, list[dict[str, Any]]]] = {}


def _read_cached(folder: TaskFolder) -> dict[str, list[dict[str, Any]]]:
    """Rows of a folder, read once per process and content fingerprint."""
    key = (folder.path.resolve(), folder.fingerprint())
    if key not in _READ_CACHE:
        _READ_CACHE.clear()  # hold one task's rows at a time
        _READ_CACHE[key] = folder.read()
    return _READ_CACHE[key]


def _english_subset(task: AbsTask, folder: TaskFolder) -> str:
    subsets = task.metadata.hf_subsets_to_langscripts
    if "en" in subsets:
        return "en"
    for subset, langs in subsets.items():
        if langs == ["eng-Latn"]:
            return subset
    raise EvalDataError(f"{folder.path}: mteb's {folder.name} has no English subset to put the local data in")


@cache
def _local_task_class(name: str, task_type: str, notes: str) -> type[AbsTask]:
    """A subclass of mteb's abstract task of ``task_type`` with local metadata; it never loads from the hub."""
    from mteb.abstasks import (
        AbsTaskClassification,
        AbsTaskClustering,
        AbsTaskPairClassification,
        AbsTaskRetrieval,
        AbsTaskSTS,
    )
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.abstasks.text.summarization import AbsTaskSummarization

    bases = {
        "STS": AbsTaskSTS,
        "PairClassification": AbsTaskPairClassification,
        "Classification": AbsTaskClassification,
        "Clustering": AbsTaskClustering,
        "Retrieval": AbsTaskRetrieval,
        "Reranking": AbsTaskRetrieval,  # mteb 2: reranking is retrieval over each query's candidates
        "Summarization": AbsTaskSummarization,
    }
    metadata = TaskMetadata(
        name=name,
        dataset={"path": f"local/{name}", "revision": "local"},
        description=notes or f"Local task folder {name}.",
        type=task_type,
        category="t2c" if task_type in ("Classification", "Clustering") else "t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score=MAIN_SCORES[task_type],
    )
    attrs: dict[str, Any] = {"metadata": metadata, "__doc__": f"Local task {name} ({task_type}).",
                             "text2token_local": True}
    if task_type == "Classification":
        attrs["samples_per_label"] = LOCAL_SAMPLES_PER_LABEL
    if task_type == "Clustering":
        attrs["max_fraction_of_documents_to_embed"] = None
        attrs["max_documents_per_cluster"] = LOCAL_DOCUMENTS_PER_CLUSTER
    if task_type == "Summarization":  # the range of the folder's relevance scores is set when its data is
        attrs["min_score"], attrs["max_score"] = 0, 1

    def load_data(self: AbsTask, *args: Any, **kwargs: Any) -> None:
        if not self.data_loaded:
            raise EvalError(f"local task {name} has no data; build it with "
                            "text2token.evaluation.tasks.build_local_task")

    attrs["load_data"] = load_data
    safe = "".join(ch if ch.isalnum() else "_" for ch in name)
    return type(f"Local_{safe}", (bases[task_type],), attrs)


def _apply_cut(task_type: str, rows: dict[str, list[dict[str, Any]]], cut: TaskCut) -> dict[str, list[dict[str, Any]]]:
    if cut.is_full:
        return rows
    rows = dict(rows)
    if task_type == "Reranking":  # draw among the queries mteb scores (with a positive and a negative)
        rows["test"] = [r for r in rows["test"] if r["positive"] and r["negative"]]
    if task_type != "Retrieval":  # reranking: queries with their candidates; summarization: texts
        if cut.max_samples is not None:
            rows["test"] = _sample(rows["test"], cut.max_samples, cut.seed)
        return rows
    corpus = rows["corpus"]
    if cut.max_samples is not None and cut.max_samples < len(corpus):
        judged = {row["did"] for row in rows["qrels"]}
        keep = {i for i, doc in enumerate(corpus) if doc["id"] in judged}
        others = [i for i in range(len(corpus)) if i not in keep]
        room = max(0, cut.max_samples - len(keep))
        keep |= set(random.Random(cut.seed).sample(others, min(room, len(others))))
        corpus = [corpus[i] for i in sorted(keep)]
    if cut.max_doc_chars is not None:
        corpus = [{**doc, "text": doc["text"][: cut.max_doc_chars]} for doc in corpus]
    rows["corpus"] = corpus
    return rows


def _sample(rows: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    if n >= len(rows):
        return rows
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), n))]


def _sts(task: Any, rows: dict[str, list[dict[str, Any]]]) -> Any:
    from datasets import Dataset, DatasetDict

    first, second = task.column_names
    test = rows["test"]
    return DatasetDict({"test": Dataset.from_dict({
        first: [r["s1"] for r in test], second: [r["s2"] for r in test], "score": [float(r["score"]) for r in test],
    })})


def _pair(task: Any, rows: dict[str, list[dict[str, Any]]]) -> Any:
    from datasets import Dataset, DatasetDict

    test = rows["test"]
    return DatasetDict({"test": Dataset.from_dict({
        task.input1_column_name: [r["s1"] for r in test],
        task.input2_column_name: [r["s2"] for r in test],
        task.label_column_name: [int(r["label"]) for r in test],
    })})


def _classification(task: Any, rows: dict[str, list[dict[str, Any]]]) -> Any:
    """Train and test in file order (mteb's undersampling depends on it); string labels become ids."""
    from datasets import Dataset, DatasetDict

    labels = {r["label"] for split in ("train", "test") for r in rows[split]}
    if all(isinstance(label, int) for label in labels):
        ids = {label: label for label in labels}
    else:
        ids = {name: i for i, name in enumerate(sorted(labels, key=str))}
    return DatasetDict({split: Dataset.from_dict({
        task.input_column_name: [r["text"] for r in rows[split]],
        task.label_column_name: [ids[r["label"]] for r in rows[split]],
    }) for split in ("train", "test")})


def _clustering(task: Any, rows: dict[str, list[dict[str, Any]]]) -> Any:
    from datasets import Dataset, DatasetDict

    test = rows["test"]
    return DatasetDict({"test": Dataset.from_dict({
        task.input_column_name: [r["text"] for r in test],
        task.label_column_name: [str(r["label"]) for r in test],
    })})


def _retrieval(task: Any, rows: dict[str, list[dict[str, Any]]]) -> Any:
    """mteb's retrieval split: corpus, queries (those with a judgement, as mteb's loader keeps), qrels."""
    relevant: dict[str, dict[str, int]] = {}
    for r in rows["qrels"]:
        relevant.setdefault(r["qid"], {})[r["did"]] = int(r["score"])
    queries = [q for q in rows["queries"] if q["id"] in relevant]
    if not queries:
        raise EvalDataError(f"{task.metadata.name}: no query of queries.jsonl has a judgement in qrels.jsonl")
    return _retrieval_split(rows["corpus"], queries, relevant, None)


def _retrieval_split(corpus: list[dict], queries: list[dict], relevant: dict, top_ranked: dict | None) -> Any:
    """mteb 2's test split of a retrieval task (reranking: with each query's candidates as ``top_ranked``)."""
    from datasets import Dataset

    return {"test": {
        "corpus": Dataset.from_dict({k: [d[k] for d in corpus] for k in ("id", "title", "text")}),
        "queries": Dataset.from_dict({k: [q[k] for q in queries] for k in ("id", "text")}),
        "relevant_docs": relevant,
        "top_ranked": top_ranked,
    }}


def _reranking(task: Any, rows: dict[str, list[dict[str, Any]]]) -> Any:
    """mteb 2's reranking split from ``{query, positive, negative}`` rows, as mteb's own converter of that
    layout builds it (``AbsTaskReranking.transform_old_dataset_format``): ids ``{split}_query{i}`` with ``i``
    counted over the kept rows, candidates ``apositive_...``/``negative_...`` (positives first, which only
    matters for ties), relevance 1 and 0, and each query's candidates as its ``top_ranked`` list."""
    kept = [r for r in rows["test"] if r["positive"] and r["negative"]]
    if not kept:
        raise EvalDataError(f"{task.metadata.name}: no line of test.jsonl has both a positive and a negative "
                            "document (mteb leaves such queries out)")
    corpus, queries = [], []
    relevant: dict[str, dict[str, int]] = {}
    top_ranked: dict[str, list[str]] = {}
    for index, row in enumerate(kept):
        qid = f"test_query{index}"
        queries.append({"id": qid, "text": row["query"]})
        candidates = [(f"apositive_{qid}_{i:05d}", text, 1) for i, text in enumerate(row["positive"])]
        candidates += [(f"negative_{qid}_{i:05d}", text, 0) for i, text in enumerate(row["negative"])]
        for did, text, relevance in candidates:
            corpus.append({"id": did, "title": "", "text": text})
            relevant.setdefault(qid, {})[did] = relevance
            top_ranked.setdefault(qid, []).append(did)
    return _retrieval_split(corpus, queries, relevant, top_ranked)


def _summarization(task: Any, rows: dict[str, list[dict[str, Any]]]) -> Any:
    """mteb's summarization split; a local task's relevance range is the folder's own (mteb normalizes the
    scores to [0, 1] with it, which leaves its correlations unchanged)."""
    from datasets import Dataset, DatasetDict

    test = rows["test"]
    if not any(len(set(r["relevance"])) > 1 for r in test):
        raise EvalDataError(f"{task.metadata.name}: every text's machine summaries have one relevance score; "
                            "mteb skips such texts, so nothing would be scored")
    if _is_local(task):
        scores = [float(x) for r in test for x in r["relevance"]]
        task.min_score, task.max_score = min(scores), max(scores)
    return DatasetDict({"test": Dataset.from_dict({
        task.text_column_name: [r["text"] for r in test],
        task.human_summaries_column_name: [r["human_summaries"] for r in test],
        task.machine_summaries_column_name: [r["machine_summaries"] for r in test],
        task.relevancy_column_name: [[float(x) for x in r["relevance"]] for r in test],
    })})


def _is_local(task: Any) -> bool:
    """Whether a task object is a local subclass (not one of mteb's own tasks)."""
    return bool(getattr(task, "text2token_local", False))


_RETRIEVAL_LIKE = ("Retrieval", "Reranking")

_DATASET_BUILDERS = {
    "STS": _sts,
    "PairClassification": _pair,
    "Classification": _classification,
    "Clustering": _clustering,
    "Retrieval": _retrieval,
    "Reranking": _reranking,
    "Summarization": _summarization,
}
