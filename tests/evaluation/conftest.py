"""Fixtures of the evaluation tests: a deterministic fake embedder and tiny task folders in tmp_path."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


class HashEmbedder:
    """Bag of hashed words with the ``text2token.load`` protocol; counts its encode calls and texts."""

    def __init__(self, dim: int = 64, name: str = "fake/hash-embedder") -> None:
        self.embedding_dim = dim
        self.name = name
        self.calls = 0
        self.texts: list[str] = []

    def encode(self, texts, batch_size=32, normalize=False, show_progress=False):
        self.calls += 1
        self.texts.extend(texts)
        return embed(texts, self.embedding_dim, normalize)


def embed(texts, dim=64, normalize=False):
    out = np.zeros((len(texts), dim), dtype=np.float32)
    out[:, 0] = 0.1  # no zero vector for an empty text
    for i, text in enumerate(texts):
        for word in re.findall(r"\w+", text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            out[i, 1 + h % (dim - 1)] += 1.0
    if normalize:
        out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


STS_ROWS = [
    {"s1": "a cat sat on the mat", "s2": "a cat sat on the mat", "score": 5.0},
    {"s1": "a cat sat on the mat", "s2": "a cat sat on a rug", "score": 3.5},
    {"s1": "dogs run in the park", "s2": "a dog runs in a park", "score": 2.5},
    {"s1": "the stock market fell", "s2": "a cat sat on the mat", "score": 0.0},
    {"s1": "rain falls in spring", "s2": "snow falls in winter", "score": 1.5},
    {"s1": "bright sun over the sea", "s2": "bright sun over the ocean", "score": 4.0},
]
PAIR_ROWS = [
    {"s1": "the cat sat on the mat", "s2": "the cat sat on the mat today", "label": 1},
    {"s1": "stocks fell sharply", "s2": "the cat sat", "label": 0},
    {"s1": "rain in spain", "s2": "rain in spain falls", "label": 1},
    {"s1": "blue sky", "s2": "green grass grows", "label": 0},
]
FRUIT = ["apple banana", "fresh apple juice", "banana bread", "apple pie", "ripe banana", "apple tree", "banana split"]
VEHICLE = ["car truck", "red car", "big truck", "car engine", "truck driver", "fast car", "truck wheels"]
CLASS_TRAIN = [{"text": t, "label": label} for label, ts in (("fruit", FRUIT), ("vehicle", VEHICLE)) for t in ts[:5]]
CLASS_TEST = [{"text": t, "label": label} for label, ts in (("fruit", FRUIT), ("vehicle", VEHICLE)) for t in ts[5:]]
CLUSTER_ROWS = [  # three clusters of ten: three core words each, plus one word of a document's own
    {"text": f"{core} {label[:3]}{i}", "label": label}
    for label, core in (("fruit", "apple banana cherry"), ("vehicle", "car truck engine"),
                        ("music", "jazz guitar drum"))
    for i in range(10)
]
CORPUS = [
    {"id": "d1", "title": "Apples", "text": "apple orchard harvest in autumn"},
    {"id": "d2", "title": "", "text": "car engine repair manual"},
    {"id": "d3", "title": "", "text": "ocean waves and surfing"},
    {"id": "d4", "title": "", "text": "mountain hiking trails"},
    {"id": "d5", "title": "", "text": "jazz music history"},
    {"id": "d6", "title": "", "text": "baking bread at home"},
]
QUERIES = [{"id": "q1", "text": "apple harvest"}, {"id": "q2", "text": "engine repair"},
           {"id": "q3", "text": "surfing ocean waves"}, {"id": "q4", "text": "a query without judgement"}]
QRELS = [{"qid": f"q{i}", "did": f"d{i}", "score": 1} for i in (1, 2, 3)]


def make_data_dir(root: Path) -> Path:
    """One tiny task folder of each type, as in ../shared/data/README.md."""
    write_jsonl(root / "TinySTS" / "test.jsonl", STS_ROWS)
    write_jsonl(root / "TinyPairs" / "test.jsonl", PAIR_ROWS)
    write_jsonl(root / "TinyClassification" / "train.jsonl", CLASS_TRAIN)
    write_jsonl(root / "TinyClassification" / "test.jsonl", CLASS_TEST)
    write_jsonl(root / "TinyClusters" / "test.jsonl", CLUSTER_ROWS)
    write_jsonl(root / "TinyRetrieval" / "corpus.jsonl", CORPUS)
    write_jsonl(root / "TinyRetrieval" / "queries.jsonl", QUERIES)
    write_jsonl(root / "TinyRetrieval" / "qrels.jsonl", QRELS)
    return root


@pytest.fixture(autouse=True, scope="session")
def _one_openmp_thread():
    """k-means in mteb's clustering spins OpenMP threads; on a busy 2-core machine one is much faster."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="session")
def kit():
    """The helpers and tiny data of this module, for tests (test modules cannot import a conftest)."""
    return SimpleNamespace(
        HashEmbedder=HashEmbedder, embed=embed, write_jsonl=write_jsonl, make_data_dir=make_data_dir,
        STS_ROWS=STS_ROWS, PAIR_ROWS=PAIR_ROWS, CLASS_TRAIN=CLASS_TRAIN, CLASS_TEST=CLASS_TEST,
        CLUSTER_ROWS=CLUSTER_ROWS, CORPUS=CORPUS, QUERIES=QUERIES, QRELS=QRELS,
    )


@pytest.fixture()
def fake_model():
    return HashEmbedder()


@pytest.fixture()
def data_dir(tmp_path):
    return make_data_dir(tmp_path / "evalsuite")


@pytest.fixture(scope="module")
def module_data_dir(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("evalsuite"))


@pytest.fixture()
def run_folder(tmp_path, monkeypatch):
    """A fake text2token run folder whose loading (text2token.load) returns a counting HashEmbedder."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "text2token_config.json").write_text('{"pooling": "mean"}')
    (folder / "model.safetensors").write_bytes(b"weights")
    loaded: list[HashEmbedder] = []

    def fake_load(spec, pooling, attention, max_length, precision="fp32"):
        model = HashEmbedder(name=Path(spec).name)
        loaded.append(model)
        return model

    monkeypatch.setattr("text2token.evaluation.encoder.load_text2token_model", fake_load)
    return folder, loaded
