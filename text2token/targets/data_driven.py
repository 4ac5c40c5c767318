r"""Stage 1: the data-driven target, uniform over the distinct tokens of the text.

For a text x: every run of non-word characters (and underscores, as the prototype's
``[\W_]+``) becomes a space, English stop words are dropped, the rest is tokenized with the
backbone's own tokenizer, and S(x) is the set of distinct token ids, minus special tokens and
tokens that decode to whitespace only. q_D(t | x) = 1 / |S(x)| for t in S(x).

Stop-word lists (:data:`STOP_WORD_LISTS`): ``nltk`` (default), NLTK's English list plus ``! , . ?``
as the prototype uses it, shipped in this package as data (NLTK downloads its lists at run time);
``sklearn``, scikit-learn's 318 words (which also drop "never", "nothing", "first", numbers);
``none``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np

_NON_WORD = re.compile(r"[\W_]+")
STOP_WORD_LISTS = ("nltk", "sklearn", "none")


@lru_cache(maxsize=None)
def english_stop_words(name: str = "nltk") -> frozenset[str]:
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

    def __init__(self, tokenizer, stop_words: frozenset[str] | str | None = None, weighting: str = "uniform",
                 idf: np.ndarray | None = None):
        """``stop_words``: a name of :data:`STOP_WORD_LISTS`, a set of words, or None (the default list)."""
        if weighting not in ("uniform", "idf"):
            raise ValueError(f"unknown weighting {weighting!r}: use 'uniform' or 'idf'")
        if weighting == "idf" and idf is None:
            raise ValueError("idf weighting needs document frequencies: use DataDrivenTargets.with_idf")
        self.tokenizer = tokenizer
        if stop_words is None or isinstance(stop_words, str):
            self.stop_words = english_stop_words(stop_words or "nltk")
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
