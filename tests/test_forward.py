"""The one batched forward pass (``Text2TokenModel.forward``): sparse encode, the analysis retrieval matrix,
top tokens and the stage-2 teacher all run through it, and give exactly what their own loops gave before.

The ``_old_*`` functions are the code each consumer ran before (its own batches -> embed -> vocab_logits ->
softmax / top-k loop), kept here as the reference."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import scipy.sparse
import torch

import text2token
from text2token import distributed as dist
from text2token.model import Text2TokenModel, embed, vocab_logits
from text2token.objective import head_directions
from text2token.targets import background_distribution, teacher_targets
from text2token.targets.model_derived import mean_teacher_logits, model_derived_target, sparsify
from t2t_testdata import SENTENCES

TEXTS = SENTENCES + ["", "Rain fell.", "A much longer text about rain, the city, people and the books they read."]


@torch.inference_mode()
def _old_loop(model, texts, batch_size, k, in_encode):
    """encode(output="sparse")'s loop (``in_encode``: embed under autocast(enabled=False)) or encode_views'."""
    k = min(k, model.model.get_output_embeddings().weight.shape[0])
    dense = np.zeros((len(texts), model.embedding_dim), dtype=np.float32)
    ids = np.zeros((len(texts), k), dtype=np.int64)
    weights = np.zeros((len(texts), k), dtype=np.float32)
    for index, batch in model.batches(texts, batch_size):
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=False) if in_encode else nullcontext():
            e = embed(model.model, batch, model.pooling)
        values, top = torch.softmax(vocab_logits(model.model, e), dim=-1).topk(k, dim=-1)
        dense[index] = e.float().cpu().numpy()
        ids[index], weights[index] = top.cpu().numpy(), values.float().cpu().numpy()
    return dense, ids, weights


def _old_csr(ids, weights, vocab, normalize=False):
    if normalize:
        weights /= np.maximum(np.linalg.norm(weights, axis=1, keepdims=True), 1e-12)
    matrix = scipy.sparse.csr_matrix((weights.ravel(), ids.ravel(), np.arange(0, ids.size + 1, ids.shape[1])),
                                     shape=(len(ids), vocab), dtype=np.float32)
    matrix.sort_indices()
    return matrix


@torch.inference_mode()
def _old_teacher(teacher, texts, background_texts, block, tau, remove, num_shards=1, shard=0):
    """targets.model_derived._teacher_pass as it was: one call per block, each block one teacher batch."""
    logit_sum = torch.zeros(teacher.model.get_output_embeddings().weight.shape[0], dtype=torch.float64)
    for a, b in dist.block_ranges(len(background_texts), block, num_shards, shard):
        total = None
        for _, batch in teacher.batches(background_texts[a:b], block):
            logits = vocab_logits(teacher.model, embed(teacher.model, batch, teacher.pooling), remove).double().sum(0)
            total = logits if total is None else total + logits
        logit_sum += total
    background = background_distribution(logit_sum, len(background_texts))
    targets, kept = [], 1.0
    for a, b in dist.block_ranges(len(texts), block, num_shards, shard):
        rows: list = [None] * (b - a)
        for index, batch in teacher.batches(texts[a:b], block):
            probs = torch.softmax(vocab_logits(teacher.model, embed(teacher.model, batch, teacher.pooling), remove), -1)
            out, mass = sparsify(model_derived_target(probs, background, tau))
            kept = min(kept, mass)
            for i, row in zip(index, out):
                rows[i] = row
        targets.extend(rows)
    return logit_sum, background, targets, kept


@pytest.fixture(scope="module")
def model(tiny_llama):
    return text2token.load(tiny_llama)


@pytest.fixture()
def calls(monkeypatch):
    """Every call of the one forward pass: its ``desc`` and what it was asked for."""
    seen = []
    original = Text2TokenModel.forward

    def counted(self, texts, batch_size=32, **kwargs):
        seen.append({"desc": kwargs.get("desc", "encode"), "vocab": kwargs.get("vocab"), "top_k": kwargs.get("top_k"),
                     "blocks": kwargs.get("blocks")})
        return original(self, texts, batch_size, **kwargs)

    monkeypatch.setattr(Text2TokenModel, "forward", counted)
    return seen


def _same_csr(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data)


@pytest.mark.parametrize("normalize", [False, True])
def test_sparse_encode_comes_from_the_one_forward_and_equals_the_old_loop(model, calls, normalize):
    got = model.encode(TEXTS, batch_size=3, output="sparse", sparse_k=9, normalize=normalize)
    assert [c["top_k"] for c in calls] == [9]
    calls.clear()
    dense, ids, weights = _old_loop(model, TEXTS, 3, 9, in_encode=True)
    assert np.array_equal(model.encode(TEXTS, batch_size=3), dense)  # and the dense encode
    _same_csr(got, _old_csr(ids, weights, model.vocab_size, normalize))
    assert model.encode([], output="sparse", sparse_k=4).shape == (0, model.vocab_size)


def test_retrieval_matrix_comes_from_the_one_forward_and_equals_the_old_loop(model, calls):
    from text2token.analysis.retrieval import encode_views

    dense, sparse = encode_views(model, TEXTS, sparse_k=7, batch_size=4)
    assert len(calls) == 1 and calls[0]["top_k"] == 7  # dense and sparse from one pass
    old_dense, ids, weights = _old_loop(model, TEXTS, 4, 7, in_encode=False)
    old_sparse = _old_csr(ids, weights, model.vocab_size)
    assert np.array_equal(dense, old_dense)
    _same_csr(sparse, old_sparse)
    _same_csr(sparse, model.encode(TEXTS, batch_size=4, output="sparse", sparse_k=7))  # one matrix builder


def test_top_tokens_and_distribution_come_from_the_one_forward(model, calls):
    from text2token.analysis.tokens import top_token_ids

    ids, probs = top_token_ids(model, TEXTS, 5, batch_size=4)
    distribution = model.encode(TEXTS, batch_size=4, output="distribution")
    top = torch.from_numpy(distribution).topk(5, dim=-1)
    assert np.array_equal(ids, top.indices.numpy()) and np.array_equal(probs, top.values.numpy())
    alone = torch.from_numpy(model.encode([TEXTS[0]], output="distribution")[0]).topk(3)  # top_tokens as it was
    assert model.top_tokens(TEXTS[0], 3) == [(model.tokenizer.decode([int(i)]), float(p))
                                             for p, i in zip(alone.values, alone.indices)]
    assert [c["desc"] for c in calls] == ["top tokens", "encode", "encode", "top tokens"]


@pytest.mark.parametrize("head_filter", [0, 2])
@pytest.mark.parametrize("num_shards", [1, 2])
def test_teacher_targets_come_from_the_one_forward_and_equal_the_old_loop(model, calls, head_filter, num_shards):
    teacher = Text2TokenModel(model.model, model.tokenizer, "mean", name="teacher")
    remove = head_directions(teacher.model, head_filter)
    texts, background_texts, block, tau = TEXTS[:9], TEXTS, 4, 1e-3
    for shard in range(num_shards):
        calls.clear()
        logit_sum = mean_teacher_logits(teacher, background_texts, block, show_progress=False, remove=remove,
                                        blocks=dist.block_ranges(len(background_texts), block, num_shards, shard))
        background = background_distribution(logit_sum, len(background_texts))
        targets, kept = teacher_targets(teacher, texts, background, tau, block, show_progress=False, remove=remove,
                                        blocks=dist.block_ranges(len(texts), block, num_shards, shard))
        assert [(c["desc"], c["vocab"]) for c in calls] == [("stage 2: background", "logits"),
                                                             ("stage 2: teacher targets", "probs")]
        old_sum, old_background, old_targets, old_kept = _old_teacher(teacher, texts, background_texts, block, tau,
                                                                      remove, num_shards, shard)
        assert torch.equal(logit_sum, old_sum) and torch.equal(background, old_background) and kept == old_kept
        assert len(targets) == len(old_targets) > 0
        for (ids, w), (old_ids, old_w) in zip(targets, old_targets):
            assert np.array_equal(ids, old_ids) and np.array_equal(w, old_w)
    # a rank with no texts: zero logits, no targets
    empty = mean_teacher_logits(teacher, background_texts, block, show_progress=False, blocks=[])
    assert torch.equal(empty, torch.zeros(teacher.vocab_size, dtype=torch.float64))
    assert teacher_targets(teacher, texts, background, tau, block, show_progress=False, blocks=[]) == ([], 1.0)


def test_one_progress_bar_counts_every_block(model, monkeypatch):
    import tqdm.auto

    bars = []
    real = tqdm.auto.tqdm

    class Bar(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    blocks = [(0, 4), (4, 8), (8, 10)]
    steps = list(model.forward(TEXTS, 4, blocks=blocks, show_progress=True, desc="stage 2: background"))
    assert len(bars) == 1 and bars[0].total == bars[0].n == 10 and bars[0].desc.startswith("stage 2: background")
    assert sorted(i for s in steps for i in s.index.tolist()) == list(range(10))
    # each block is batched on its own: its rows never share a batch with another block's
    assert all(len({a for a, b in blocks for i in s.index if a <= i < b}) == 1 for s in steps)
