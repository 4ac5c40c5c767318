r"""Stage 1: the data-driven target, uniform over the distinct tokens of the text.

For a text x: every run of non-word characters (and underscores, as the prototype's
``[\W_]+``) becomes a space, English stop words are dropped, the rest is tokenized with the
backbone's own tokenizer, and S(x) is the set of distinct token ids, minus special tokens and
tokens that decode to whitespace only. q_D(t | x) = 1 / |S(x)| for t in S(x).

Stop-word lists (:data:`STOP_WORD_LISTS`; the builder takes one by name, and ``TrainConfig.stop_words`` holds
the default): ``nltk``, NLTK's English list plus ``! , . ?`` as the paper's prototype uses it, shipped in this
package as data (NLTK downloads its lists at run time);
``sklearn``, scikit-learn's 318 words (which also drop "never", "nothing", "first", numbers);
``none``, every word kept (``TrainConfig``'s default: it scored higher in RESULTS.md).

:func:`build_stage1_targets` builds a corpus's targets: with several processes each builds its own blocks
of texts (IDF counts summed over all) and every rank receives them all.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..config import TrainConfig

log = logging.getLogger(__name__)
_NON_WORD = re.compile(r"[\W_]+")
STOP_WORD_LISTS = ("nltk", "sklearn", "none")


@lru_cache(maxsize=None)
def english_stop_words(name: str) -> frozenset[str]:
    """One of :data:`STOP_WORD_LISTS`, lower-case."""
    if name == "nltk":
        path = Path(__file__).with_name("data") / "nltk_english_stopwords.txt"
        lines = path.read_text(encoding="utf-8").splitlines()
        return frozenset(w.strip() for w in lines if w.strip() and not w.startswith("#"))
    if name == "sklearn":
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        return frozenset(ENGLISH_STOP_WORDS)
    if name == "none":
        return frozenset()
    raise ValueError(f"unknown stop-word list {name!r}: choose one of {', '.join(STOP_WORD_LISTS)}")


class DataDrivenTargets:
    """Builds q_D for any tokenizer; no token id is hard-coded."""

    def __init__(self, tokenizer, stop_words: frozenset[str] | str, weighting: str = "uniform",
                 idf: np.ndarray | None = None):
        """``stop_words``: a name of :data:`STOP_WORD_LISTS` or a set of words."""
        if weighting not in ("uniform", "idf"):
            raise ValueError(f"unknown weighting {weighting!r}: use 'uniform' or 'idf'")
        if weighting == "idf" and idf is None:
            raise ValueError("idf weighting needs document frequencies: use DataDrivenTargets.with_idf")
        self.tokenizer = tokenizer
        if isinstance(stop_words, str):
            self.stop_words = english_stop_words(stop_words)
        else:
            self.stop_words = frozenset(w.lower() for w in stop_words)
        self.weighting = weighting
        self.idf = idf
        self._excluded = self._excluded_ids(tokenizer)

    @staticmethod
    def _excluded_ids(tokenizer) -> frozenset[int]:
        excluded = set(tokenizer.all_special_ids)
        decoded = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        excluded.update(i for i, text in enumerate(decoded) if text.strip() == "")
        return frozenset(excluded)

    def clean(self, text: str) -> str:
        words = _NON_WORD.sub(" ", text).split()
        return " ".join(w for w in words if w.lower() not in self.stop_words)

    def token_sets(self, texts: list[str]) -> list[list[int]]:
        """S(x) for each text, ids in first-occurrence order (batched tokenization)."""
        cleaned = [self.clean(t) for t in texts]
        encoded = self.tokenizer(cleaned, add_special_tokens=False)["input_ids"] if cleaned else []
        return [list(dict.fromkeys(i for i in ids if i not in self._excluded)) for ids in encoded]

    def __call__(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(ids, weights)`` per text; an empty token set gives empty arrays."""
        out = []
        for ids in self.token_sets(texts):
            ids = np.asarray(ids, dtype=np.int64)
            if len(ids) == 0:
                out.append((ids, np.zeros(0, dtype=np.float32)))
                continue
            w = np.ones(len(ids), dtype=np.float64) if self.weighting == "uniform" else self.idf[ids]
            out.append((ids, (w / w.sum()).astype(np.float32)))
        return out

    def document_frequencies(self, corpus: list[str]) -> np.ndarray:
        """How many texts of ``corpus`` hold each token id (float64, summable across shards)."""
        df = np.zeros(max(len(self.tokenizer), max(self.tokenizer.get_vocab().values()) + 1), dtype=np.float64)
        for ids in self.token_sets(corpus):
            df[ids] += 1
        return df

    @classmethod
    def with_idf(cls, tokenizer, corpus: list[str] | None = None, document_frequencies: np.ndarray | None = None,
                 num_documents: int | None = None, **kwargs) -> "DataDrivenTargets":
        """Inverse-document-frequency weighting over ``corpus`` (an experiment option).

        Or from counts made elsewhere (for example summed over the shards of several processes):
        ``document_frequencies`` and ``num_documents`` instead of ``corpus``.
        """
        if document_frequencies is None:
            document_frequencies = cls(tokenizer, **kwargs).document_frequencies(corpus)
            num_documents = len(corpus)
        idf = np.log((1 + num_documents) / (1 + np.asarray(document_frequencies, dtype=np.float64))) + 1.0
        return cls(tokenizer, weighting="idf", idf=idf, **kwargs)


# ---------------------------------------------------------------- a corpus's stage-1 targets, over every process
def target_block(config: TrainConfig) -> int:
    """Texts per block (and per teacher batch) of target building: the global batch, at most
    ``distributed.MAX_BLOCK``. It depends on the global batch only, not on how many processes share it."""
    from .. import distributed as dist

    return max(1, min(config.batch_size * config.grad_accum * dist.world_size(), dist.MAX_BLOCK))


def build_stage1_targets(tokenizer, texts: list[str], config: TrainConfig, model=None):
    """Data-driven targets for ``texts``. With several processes each builds its own blocks of
    texts (IDF counts summed over all), and the targets are gathered so every rank holds all.
    ``weighting: prompt_attention`` needs the base ``model`` (:mod:`text2token.targets.prompt_attention`)."""
    from .. import distributed as dist

    blocks = dist.block_ranges(len(texts), target_block(config))
    builder = DataDrivenTargets(tokenizer, stop_words=config.stop_words)
    if config.weighting == "prompt_attention":
        from .prompt_attention import attention_per_token, smoothed

        rows = []
        for a, b in blocks:
            attention = attention_per_token(model, tokenizer, texts[a:b], config.max_length, config.prompt)
            rows += [(ids, smoothed(att, ids)) for (ids, _), att in zip(builder(texts[a:b]), attention)]
        targets = dist.gather_lists(rows)
        return _keep_nonempty(texts, targets)
    if config.weighting == "idf":
        df = np.zeros(0)
        for a, b in blocks:
            counts = builder.document_frequencies(texts[a:b])
            df = counts if not len(df) else df + counts
        if not len(df):
            df = builder.document_frequencies([])
        import torch

        df = dist.all_reduce_sum(torch.from_numpy(df)).numpy()
        builder = DataDrivenTargets.with_idf(tokenizer, document_frequencies=df, num_documents=len(texts),
                                             stop_words=config.stop_words)
    targets = dist.gather_lists([q for a, b in blocks for q in builder(texts[a:b])])
    return _keep_nonempty(texts, targets)


def _keep_nonempty(texts: list[str], targets: list):
    """Drop texts whose target is empty (a warning says how many); an error if none is left."""
    kept = [(t, q) for t, q in zip(texts, targets) if len(q[0])]
    skipped = len(texts) - len(kept)
    if not kept:
        from ..errors import DataError

        raise DataError("every text's data-driven target is empty (only stop words, punctuation or whitespace): "
                        "nothing to train on")
    if skipped:
        log.warning("%d texts skipped: their data-driven target is empty (only stop words or punctuation)", skipped)
    return [t for t, _ in kept], [q for _, q in kept], skipped


def mix_targets(data_rows: list, teacher_rows: list, share: float) -> list:
    """Per text, ``(1 - share) * q_data + share * q_teacher`` as one sparse ``(ids, weights)`` row over the union
    of both rows' tokens (``teacher_mix``: the base model's model-derived target mixed into stage 1's)."""
    if len(data_rows) != len(teacher_rows):
        raise ValueError(f"{len(data_rows)} data-driven targets but {len(teacher_rows)} teacher targets")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    mixed = []
    for (ids_a, w_a), (ids_b, w_b) in zip(data_rows, teacher_rows):
        ids = np.concatenate([np.asarray(ids_a, dtype=np.int64), np.asarray(ids_b, dtype=np.int64)])
        weights = np.concatenate([(1.0 - share) * np.asarray(w_a, dtype=np.float64),
                                  share * np.asarray(w_b, dtype=np.float64)])
        unique, where = np.unique(ids, return_inverse=True)
        summed = np.bincount(where, weights=weights, minlength=len(unique))
        keep = summed > 0
        mixed.append((unique[keep], (summed[keep] / summed[keep].sum()).astype(np.float32)))
    return mixed
