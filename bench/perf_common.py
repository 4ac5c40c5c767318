"""Shared helpers of the performance benchmarks (bench/train_throughput.py, encode_throughput.py,
utilisation.py, targets_memory.py, scaling.py).

- ``abab``: time two (or more) functions alternately, A B A B ..., so that a slow drift of the
  machine (other jobs, thermal, frequency) hits both equally; the figure that matters is the
  per-round ratio, not an absolute time.
- Memory: the peak resident set size of this process (``VmHWM``), which Linux lets a process reset
  by writing ``5`` to ``/proc/self/clear_refs``; so one process can measure the peak of several
  phases one after the other. A child process's peak comes from ``os.wait4`` (``ru_maxrss``).
- ``tiny_backbone``: a tiny random Llama with a byte-level BPE tokenizer trained on the sentences
  below, for the ``--tiny`` mode of every script (seconds, no download, no data folder needed).
- ``real_sentences``: a seeded sample of the real corpus (``../shared/data/corpus``).
"""

from __future__ import annotations

import os
import random
import re
import statistics
import time
from pathlib import Path

DATA_DIR = Path(os.environ.get("TEXT2TOKEN_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
CORPUS_DIR = DATA_DIR / "corpus"

TINY_SENTENCES = [
    "The cat sat on the mat and looked at the garden.",
    "Economists study inflation, interest rates and unemployment.",
    "A quick brown fox jumps over the lazy dog near the river.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The orchestra played a symphony by Beethoven in the concert hall.",
    "Volcanoes erupt when magma rises through cracks in the crust.",
    "Football players trained on the field before the championship match.",
    "The library holds thousands of books about history and science, art, music and the law of the sea.",
    "Rain fell.",
    "Computers process data using binary numbers and logic gates; engineers design them in large teams.",
    "In 1984 the river flooded the old town twice.",
    "She wrote three novels, two plays and a long book of poems about the mountains of her childhood.",
]


# ------------------------------------------------------------------------------ timing
def abab(functions: dict, rounds: int, warmup: bool = True) -> dict[str, list[float]]:
    """Seconds of each call of each function, called in turn (A B A B ...) for ``rounds`` rounds.

    Each function runs once untimed first (``warmup``): caches, allocator, lazy optimizer state.
    """
    if warmup:
        for fn in functions.values():
            fn()
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def ratios(times: dict[str, list[float]], slow: str, fast: str) -> list[float]:
    """Per-round ``time(slow) / time(fast)``: how many times faster ``fast`` is, round by round."""
    return [s / f for s, f in zip(times[slow], times[fast])]


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt_ratio(values: list[float]) -> str:
    s = summary(values)
    return f"{s['median']:.2f}x (rounds {s['min']:.2f}-{s['max']:.2f}, n={s['n']})"


# ------------------------------------------------------------------------------ memory
def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        match = re.search(key + r":\s+(\d+) kB", f.read())
    return int(match.group(1)) * 1024 if match else 0


def rss() -> int:
    """Resident set size of this process now, bytes."""
    return _status("VmRSS")


def peak_rss() -> int:
    """Peak resident set size of this process since start or the last :func:`reset_peak`, bytes."""
    return _status("VmHWM")


def reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux ``clear_refs``); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def gib(n: float) -> float:
    return n / 2**30


def run_child(argv: list[str], env: dict | None = None, timeout: float | None = None) -> tuple[int, int, float, str]:
    """Run a child process; return ``(exit status, peak RSS bytes, seconds, stdout+stderr)``.

    The peak comes from ``os.wait4`` (``ru_maxrss``, kB on Linux): the same figure as
    ``/usr/bin/time -v``'s "Maximum resident set size", for that child alone.
    """
    import subprocess
    import tempfile

    with tempfile.TemporaryFile("w+") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = None if timeout is None else t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        return proc.returncode, usage.ru_maxrss * 1024, seconds, log.read()


# ------------------------------------------------------------------------------ data and models
def real_sentences(n: int, seed: int = 0, files: int = 1) -> list[str]:
    """``n`` non-blank sentences of the real corpus, a seeded sample (mixed lengths)."""
    paths = sorted(CORPUS_DIR.glob("wiki_sentences_0*.txt"))[:files]
    if not paths:
        raise SystemExit(f"no corpus in {CORPUS_DIR}: set TEXT2TOKEN_DATA_DIR, or use --tiny")
    lines = [line.strip() for p in paths for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    return random.Random(seed).sample(lines, n)


def tiny_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` sentences of mixed length built from :data:`TINY_SENTENCES` (for ``--tiny``)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.choice([1, 1, 1, 2, 3])
        out.append(" ".join(rng.choice(TINY_SENTENCES) for _ in range(k)))
    return out


def tiny_backbone(folder: Path, vocab_size: int = 400, hidden: int = 32, layers: int = 2, seed: int = 0) -> str:
    """A tiny random LlamaForCausalLM with a byte-level BPE tokenizer (no BOS; pad != eos), saved in ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TINY_SENTENCES * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")
    fast.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True, eos_token_id=0, pad_token_id=1,
                         initializer_range=0.2)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return str(folder)


def non_embedding_params(model) -> int:
    """Parameters of the transformer blocks and final norm: those every token multiplies (not the embedding
    table, which is a lookup; not the LM head, which Text2Token applies to one pooled vector per text)."""
    from text2token.model import causal_lm

    lm = causal_lm(model)
    skip = {id(lm.get_input_embeddings().weight), id(lm.get_output_embeddings().weight)}
    return sum(p.numel() for n, p in lm.named_parameters() if id(p) not in skip and "lora_" not in n)


def machine() -> str:
    import platform

    import torch

    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}")


def load_smollm2():
    """The default backbone (embedded SmolLM2-135M-Instruct), fp32, as training loads it."""
    from text2token.backbone import load_backbone

    model, tokenizer, _ = load_backbone(None)
    return model, tokenizer
