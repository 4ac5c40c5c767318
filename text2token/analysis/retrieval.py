"""Sparse lexical vectors and dense / sparse / hybrid retrieval on a local retrieval task folder.

A text gets two representations from one forward pass (:func:`encode_views`):

- dense: e(x), exactly what ``model.encode`` returns (and so what ``text2token eval`` scores);
- sparse: the ``sparse_k`` largest probabilities of p(· | x) = softmax(W_lm · e(x)) at their token
  ids, a ``scipy.sparse.csr_matrix`` [n, vocab] (as ``model.encode(output="sparse")``).

Scores of a query q against every document d of the corpus:

- ``dense``:  cos(e(q), e(d)) (mteb's own ``cos_sim``, as in the eval path);
- ``sparse``: the dot product of the sparse vectors, Σ_t w_q(t) · w_d(t);
- ``hybrid``: α · norm(dense) + (1 − α) · norm(sparse), where norm is min-max scaling over the
  corpus for that query: (s − min_d s) / (max_d s − min_d s), and 0 for every document when all
  its scores are equal. α = 1 ranks as dense, α = 0 as sparse.

Scoring runs through ``mteb.evaluate`` with mteb's own task object (the same one ``text2token eval``
builds for the folder, ``text2token.evaluation.tasks.build_local_task``): the documents' title and
text are joined by mteb, queries without a judgement dropped by mteb, and nDCG@10 (the main score of
SciFact) computed by mteb's retrieval evaluator (pytrec_eval). So the dense nDCG@10 equals
``text2token eval``'s for the same model, task folder and cut (``--max-docs``/``--max-doc-chars`` are
eval's ``--max-samples``/``--max-doc-chars``; the "quick" benchmark's SciFact is 1000/1000).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import AnalysisDataError, AnalysisError
from .tokens import vocab_size

MODES = ("dense", "sparse", "hybrid")
REPORTED = ("ndcg_at_10", "recall_at_100", "mrr_at_10")


def encode_views(model, texts: list[str], sparse_k: int = 64, batch_size: int = 32,
                 show_progress: bool | None = None):
    """``(dense float32 [n, dim], sparse csr [n, vocab])`` of texts in one forward pass each.

    Both come from the model's one forward pass (:meth:`Text2TokenModel.collect`) with ``encode``'s own
    batches and precision, so the dense rows are bit-identical to ``model.encode(texts, batch_size)`` and
    the sparse ones to ``model.encode(texts, batch_size, output="sparse", sparse_k=sparse_k)``
    (:func:`text2token.model.sparse_matrix` builds both).
    """
    from ..model import sparse_matrix

    if not isinstance(sparse_k, int) or sparse_k < 1:
        raise AnalysisError(f"sparse_k must be a positive integer, got {sparse_k!r}")
    texts = ["" if t is None else str(t) for t in texts]
    views = model.collect(texts, batch_size, dense=True, top_k=sparse_k, autocast=model.precision == "bf16",
                          show_progress=show_progress)
    return views["dense"], sparse_matrix(views["top_ids"], views["top_probs"], vocab_size(model))


def _min_max(scores: np.ndarray) -> np.ndarray:
    low = scores.min(axis=1, keepdims=True)
    span = scores.max(axis=1, keepdims=True) - low
    return np.where(span > 0, (scores - low) / np.where(span > 0, span, 1.0), 0.0)


def hybrid_scores(dense: np.ndarray, sparse: np.ndarray, alpha: float) -> np.ndarray:
    """α · minmax(dense) + (1 − α) · minmax(sparse), each min-max scaled per query (row) over the corpus."""
    if not 0.0 <= alpha <= 1.0:
        raise AnalysisError(f"alpha must be between 0 and 1, got {alpha}")
    return alpha * _min_max(np.asarray(dense, np.float64)) + (1 - alpha) * _min_max(np.asarray(sparse, np.float64))


def query_scores(mode: str, alpha: float, queries, docs) -> np.ndarray:
    """Scores ``[n_queries, n_docs]`` of one mode from ``(dense, sparse)`` views of queries and documents."""
    from mteb.similarity_functions import cos_sim

    dense = lambda: np.asarray(cos_sim(queries[0], docs[0]), dtype=np.float32)  # noqa: E731
    sparse = lambda: np.asarray((queries[1] @ docs[1].T).toarray(), dtype=np.float32)  # noqa: E731
    if mode == "dense":
        return dense()
    if mode == "sparse":
        return sparse()
    if mode == "hybrid":
        return hybrid_scores(dense(), sparse(), alpha)
    raise AnalysisError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")


class ViewSearch:
    """An mteb search model (``index`` + ``search``) scoring with dense, sparse or hybrid similarity.

    Encodings are cached by text list, so evaluating several modes encodes each text once.
    """

    def __init__(self, model, sparse_k: int = 64, batch_size: int = 32, show_progress: bool = True):
        from ..evaluation.encoder import model_meta

        self.model = model
        self.sparse_k = sparse_k
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.mode, self.alpha = "dense", 1.0
        self.mteb_model_meta = model_meta(model, name=Path(str(model.name)).name or "model",
                                          experiment={"analysis": "retrieval", "sparse_k": sparse_k})
        self._cache: dict[str, tuple[np.ndarray, Any]] = {}
        self._docs = None
        self._doc_ids: list[str] = []

    def _views(self, texts: list[str]):
        key = hashlib.sha256("\0".join(texts).encode()).hexdigest() + str(len(texts))
        if key not in self._cache:
            self._cache[key] = encode_views(self.model, texts, self.sparse_k, self.batch_size,
                                            show_progress=self.show_progress and len(texts) > 4 * self.batch_size)
        return self._cache[key]

    def _texts(self, dataset, task_metadata, prompt_type, num_proc) -> list[str]:
        """The texts mteb itself would hand an encoder (title and text joined for documents)."""
        from mteb._create_dataloaders import create_dataloader

        loader = create_dataloader(dataset, task_metadata=task_metadata, prompt_type=prompt_type,
                                   batch_size=self.batch_size, num_proc=num_proc)
        return [text for batch in loader for text in batch["text"]]

    def index(self, corpus, *, task_metadata, hf_split, hf_subset, encode_kwargs, num_proc=None, **kwargs) -> None:
        from mteb.types import PromptType

        self._doc_ids = [str(i) for i in corpus["id"]]
        self._docs = self._views(self._texts(corpus, task_metadata, PromptType.document, num_proc))

    def search(self, queries, *, task_metadata, hf_split, hf_subset, top_k, encode_kwargs, top_ranked=None,
               num_proc=None, **kwargs) -> dict[str, dict[str, float]]:
        from mteb.types import PromptType

        if self._docs is None:
            raise AnalysisError("search before index")
        if top_ranked is not None:
            raise AnalysisError("reranking tasks (with pre-ranked documents) are not supported")
        query_views = self._views(self._texts(queries, task_metadata, PromptType.query, num_proc))
        scores = torch.from_numpy(np.ascontiguousarray(query_scores(self.mode, self.alpha, query_views, self._docs)))
        values, index = torch.topk(scores, min(top_k, scores.shape[1]), dim=1)
        out: dict[str, dict[str, float]] = {}
        for qid, row_values, row_index in zip(queries["id"], values.tolist(), index.tolist()):
            out[str(qid)] = {self._doc_ids[i]: float(v) for i, v in zip(row_index, row_values)}
        return out


def retrieval_folder(task_dir):
    """The :class:`~text2token.evaluation.localdata.TaskFolder` of a retrieval task folder, checked."""
    from ..evaluation.localdata import find_task_folder

    path = Path(task_dir).expanduser()
    if not path.is_dir():
        raise AnalysisDataError(f"task folder not found: {path}")
    folder = find_task_folder(path.resolve().parent, path.resolve().name)
    if folder.type != "Retrieval":
        raise AnalysisDataError(f"{path} is a {folder.type} task folder, not a retrieval one "
                                "(corpus.jsonl, queries.jsonl, qrels.jsonl)")
    return folder


def score_retrieval(model, task_dir, alphas=(0.5,), sparse_k: int = 64, max_docs: int | None = None,
                    max_doc_chars: int | None = None, batch_size: int = 32, seed: int = 42,
                    show_progress: bool = True) -> dict[str, Any]:
    """nDCG@10 (and recall@100, MRR@10) of dense, sparse and hybrid (one per α) retrieval on a local
    retrieval task folder, each scored by mteb (see the module docstring).

    ``model``: a loaded ``Text2TokenModel``. Returns ``{"task", "cut", "sparse_k", "results": [{"mode",
    "alpha", "ndcg_at_10", ...}]}``.
    """
    import mteb

    from ..evaluation.runner import _quiet_mteb
    from ..evaluation.tasks import TaskCut, build_local_task

    alphas = [float(a) for a in alphas]
    for a in alphas:
        if not 0.0 <= a <= 1.0:
            raise AnalysisError(f"alpha must be between 0 and 1, got {a}")
    folder = retrieval_folder(task_dir)
    cut = TaskCut(max_samples=max_docs, max_doc_chars=max_doc_chars, seed=seed)
    searcher = ViewSearch(model, sparse_k, batch_size, show_progress)
    plan = [("dense", None), ("sparse", None), *(("hybrid", a) for a in alphas)]
    results = []
    for mode, alpha in plan:
        searcher.mode, searcher.alpha = mode, (1.0 if alpha is None else alpha)
        task = build_local_task(folder, cut)
        with _quiet_mteb():
            outcome = mteb.evaluate(searcher, task, cache=None, overwrite_strategy="always", co2_tracker=False,
                                    encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
                                    show_progress_bar=False)
        task_result = outcome.task_results[0]
        scores = task_result.scores["test"][0]
        results.append({"mode": mode, "alpha": alpha, "main_score": float(task_result.get_score()),
                        **{name: float(scores[name]) for name in REPORTED if name in scores}})
    return {
        "format": "text2token-retrieval-analysis/1",
        "model": str(model.name),
        "task": folder.name,
        "path": str(folder.path),
        "main_score_name": "ndcg_at_10",
        "cut": cut.to_dict(),
        "sparse_k": sparse_k,
        "normalisation": "hybrid = alpha * minmax(dense cosine) + (1 - alpha) * minmax(sparse dot), min-max per "
                         "query over the corpus",
        "results": results,
    }


def format_retrieval(result: dict[str, Any]) -> str:
    """An aligned table of :func:`score_retrieval`'s result (scores × 100)."""
    head = ["mode", "alpha", *[n.replace("_at_", "@") for n in REPORTED]]
    rows = [[r["mode"], "" if r["alpha"] is None else f"{r['alpha']:g}",
             *[f"{100 * r[n]:.2f}" if n in r else "" for n in REPORTED]] for r in result["results"]]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [f"{result['task']} ({result['path']}), model {result['model']}; sparse_k={result['sparse_k']}"
             + (f"; cut {result['cut']}" if result["cut"] else "; full task")]
    lines += ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in [head, ["-" * w for w in widths], *rows]]
    lines.append("hybrid = alpha * minmax(dense) + (1 - alpha) * minmax(sparse), min-max per query over the corpus")
    return "\n".join(lines)
