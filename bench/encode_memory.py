"""Peak memory of `text2token encode` on 10k against 100k lines: streaming should not grow.

Builds a small random Llama (hidden 256, 2 layers, a BPE tokenizer trained here; nothing is
downloaded), writes generated text files of each size, and runs each encode in a child process,
reading that child's peak resident set size from ``os.wait4`` (``ru_maxrss``, the same figure as
``/usr/bin/time -v``'s "Maximum resident set size"). With ``--baseline`` it also measures the
in-memory path (read every line, ``model.encode`` all of them, ``np.save``) for comparison.

    HF_HUB_OFFLINE=1 nice -n 19 .venv/bin/python -m bench.encode_memory            # 10k and 100k lines
    .venv/bin/python -m bench.encode_memory --sizes 1000 5000 --hidden 64           # quicker
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("time year people way day man thing woman life child world school state family student group "
         "country problem hand part place case week company system program question work government number "
         "night point home water room mother area money story fact month lot right study book eye job word "
         "business issue side kind head house service friend father power hour game line end member law car "
         "city community name president team minute idea kid body information back parent face others level "
         "office door health person art war history party result change morning reason research girl guy "
         "moment air teacher force education river mountain music science data model energy light").split()

BASELINE = """
import sys, numpy as np, text2token
from text2token.encoding import read_lines
model, inp, out, bs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
texts = read_lines(__import__("pathlib").Path(inp))
vectors = text2token.load(model).encode(texts, batch_size=bs)
np.save(out, vectors)
"""


def build_model(folder: Path, hidden: int, layers: int) -> str:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([" ".join(WORDS)] * 10, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>")
    fast.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True, eos_token_id=0, pad_token_id=1)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return str(folder)


def write_lines(path: Path, count: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for _ in range(count):
            n = rng.randint(0, 40)  # about 1 line in 40 is blank
            f.write(" ".join(rng.choices(WORDS, k=n)).capitalize() + "\n")


def measure(cmd: list[str]) -> tuple[float, float]:
    """Peak RSS (MiB) and wall time (s) of one child process."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    started = time.time()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    stderr = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({child.returncode}):\n{stderr[-2000:]}")
    return usage.ru_maxrss / 1024, time.time() - started  # Linux reports KiB


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--baseline", action="store_true", help="also measure the in-memory encode")
    parser.add_argument("--workdir", help="keep files here (default: a temporary folder)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = build_model(work / "model", args.hidden, args.layers)
        rows = []
        for size in args.sizes:
            inp = work / f"lines-{size}.txt"
            write_lines(inp, size)
            out = work / f"vectors-{size}.npy"
            rss, wall = measure([sys.executable, "-m", "text2token.cli", "encode", model, "--input", str(inp),
                                 "--output", str(out), "--batch-size", str(args.batch_size),
                                 "--chunk-size", str(args.chunk_size)])
            row = {"lines": size, "stream_mib": rss, "stream_s": wall}
            if args.baseline:
                rss, wall = measure([sys.executable, "-c", BASELINE, model, str(inp), str(out) + ".baseline.npy",
                                     str(args.batch_size)])
                row.update(memory_mib=rss, memory_s=wall)
            rows.append(row)
            print(f"{size:>9,} lines: streaming encode peak RSS {row['stream_mib']:7.1f} MiB ({row['stream_s']:.1f} s)"
                  + (f"; in-memory encode {row['memory_mib']:7.1f} MiB ({row['memory_s']:.1f} s)"
                     if args.baseline else ""), flush=True)
        first, last = rows[0], rows[-1]
        print(f"output array of {last['lines']:,} lines: {last['lines'] * args.hidden * 4 / 2**20:.1f} MiB "
              f"(hidden size {args.hidden})")
        print(f"peak RSS ratio {last['lines']:,} / {first['lines']:,} lines: streaming "
              f"{last['stream_mib'] / first['stream_mib']:.3f}"
              + (f", in-memory {last['memory_mib'] / first['memory_mib']:.3f}" if args.baseline else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
