"""Shared fixtures: tiny random backbones (Llama, Qwen2) with a byte-level BPE tokenizer."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TEXT2TOKEN_PRECISION", "fp32")  # what precision "auto" means in tests: not the CPU's choice

import pytest
import torch
from t2t_testdata import SENTENCES

CORPUS = SENTENCES * 3


def make_tokenizer(path):
    """A byte-level BPE tokenizer trained on CORPUS; no BOS, pad = eos (like SmolLM2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")
    fast.save_pretrained(path)
    return fast


def make_model(path, arch: str, vocab_size: int, seed: int = 0):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  tie_word_embeddings=True, eos_token_id=0, pad_token_id=1,
                  initializer_range=0.2)  # a larger init than usual, so the tied LM head can express sharp distributions
    config = LlamaConfig(**common) if arch == "llama" else Qwen2Config(**common)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    return model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Paths of tiny random Llama and Qwen2 causal LMs sharing one byte-level BPE tokenizer."""
    out = {}
    for arch in ("llama", "qwen2"):
        path = tmp_path_factory.mktemp(f"tiny-{arch}")
        tok = make_tokenizer(path)
        make_model(path, arch, len(tok))
        out[arch] = str(path)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tiny_models):
    return tiny_models["llama"]


@pytest.fixture()
def corpus_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(CORPUS) + "\n")
    return path


@pytest.fixture()
def one_thread():
    """One intra-op thread (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``): the arithmetic of
    a one-thread subprocess such as the crash runner, and much faster on 2 shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def word_tokenizer(tmp_path_factory):
    """A word-level tokenizer with known ids, so expected targets can be worked out by hand."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "cat": 2, "sat": 3, "mat": 4, "CAT": 5, "dog": 6, "_": 7, "x_y": 8}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
