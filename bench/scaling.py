"""Scaling of a Text2Token training step: time and memory against batch size, length and vocabulary.

Every configuration runs the training step of bench/train_throughput.py (collate, forward,
backward, grad-norm clip, the Trainer's AdamW) on SmolLM2-135M-Instruct with LoRA r=16, fp32,
no gradient checkpointing. Texts are real corpus sentences joined end to end and cut at the
configuration's max length, so every row has exactly that many tokens (no padding: the table is
about shape, not about padding). The vocabulary row uses a random-initialised copy of SmolLM2's
config with Gemma-3's vocabulary size (262,144) and the same tokenizer (its ids are all below 49,152).

The configurations run in turn, round after round (A B C ... A B C ...), so drift hits all alike;
time is the median over rounds, shown relative to batch 32 x 64. Memory: what autograd keeps for
backward in the step's forward pass (``saved_tensors_hooks``, storages counted once, weights
excluded: the activations, which is what grows with batch and length), and the model's weights.
The resident set size is not used here: glibc keeps freed heap blocks, so in one process it shows
the largest configuration run so far (bench/targets_memory.py measures peaks, one process per run).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/scaling.py
    .venv/bin/python bench/scaling.py --tiny
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import perf_common as pc  # noqa: E402

GEMMA3_VOCAB = 262144


def long_rows(texts: list[str], tokenizer, count: int, join: int = 8) -> list[dict]:
    from text2token.targets import DataDrivenTargets

    joined = [" ".join(texts[i:i + join]) for i in range(0, join * count, join)]
    return [{"text": t, "target": q} for t, q in zip(joined, DataDrivenTargets(tokenizer)(joined))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds (after one warm-up round)")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--no-vocab", action="store_true", help="leave out the 262k-vocabulary model")
    args = parser.parse_args(argv)

    from transformers import AutoModelForCausalLM

    from text2token.pooling import TextEncoder
    from text2token.training import Collator
    from train_throughput import Bench

    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            from text2token.backbone import load_backbone

            model, tokenizer, _ = load_backbone(pc.tiny_backbone(Path(tmp) / "tiny"))
            texts = pc.tiny_sentences(8 * max(args.batches))
        else:
            model, tokenizer = pc.load_smollm2()
            texts = pc.real_sentences(8 * max(args.batches), seed=3)
        base_config = model.config
        rows = long_rows(texts, tokenizer, max(args.batches))
        benches = {"smollm2": Bench(model, tokenizer, max(args.batches), 64, Path(tmp) / "a")}
        vocab = {"smollm2": model.get_output_embeddings().weight.shape[0]}
        if not args.no_vocab:
            config = base_config.__class__.from_dict({**base_config.to_dict(), "vocab_size": GEMMA3_VOCAB
                                                      if not args.tiny else 4096})
            torch.manual_seed(0)
            big = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            benches["vocab262k"] = Bench(big, tokenizer, max(args.batches), 64, Path(tmp) / "b")
            vocab["vocab262k"] = big.get_output_embeddings().weight.shape[0]
        configs = [("smollm2", b, 64) for b in args.batches]
        configs += [("smollm2", 32 if not args.tiny else max(args.batches), n) for n in args.lengths if n != 64]
        if not args.no_vocab:
            configs.append(("vocab262k", 32 if not args.tiny else max(args.batches), 64))
        collators = {n: Collator(TextEncoder(tokenizer, "mean", n)) for _, _, n in configs}
        times = {c: [] for c in configs}
        kept = {c: 0 for c in configs}
        weights = {name: sum(p.numel() * p.element_size() for p in b.peft_model.parameters())
                   for name, b in benches.items()}
        for r in range(args.rounds + 1):
            for c in configs:
                name, b, n = c
                bench = benches[name]
                bench.collate_t2t = collators[n]
                seen = {}

                def pack(t):
                    seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
                    return t

                t0 = time.perf_counter()
                bench.step("text2token", rows[:b], pack=pack)
                seconds = time.perf_counter() - t0
                params = {p.untyped_storage().data_ptr() for p in bench.peft_model.parameters()}
                kept[c] = sum(n for ptr, n in seen.items() if ptr not in params)
                if r:  # round 0 is the warm-up
                    times[c].append(seconds)
    base = ("smollm2", 32 if not args.tiny else max(args.batches), 64)
    table = []
    for c in configs:
        name, b, n = c
        t = statistics.median(times[c])
        table.append({"model": name, "vocab": vocab[name], "batch": b, "max_length": n, "tokens": b * n,
                      "step_s": t, "relative_time": t / statistics.median(times[base]) if base in times else None,
                      "tokens_per_s": b * n / t, "saved_gib": pc.gib(kept[c]),
                      "weights_gib": pc.gib(weights[name])})
    result = {"machine": pc.machine(), "tiny": args.tiny, "rounds": args.rounds, "table": table,
              "seconds": round(time.time() - started, 1)}
    print(f"machine: {result['machine']}; fp32, LoRA r=16, no gradient checkpointing; median of {args.rounds} rounds")
    print("| vocabulary | batch x length | step time | vs 32 x 64 | tokens/s | kept for backward | weights |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['vocab']:,} | {row['batch']} x {row['max_length']} | {row['step_s']:.2f} s | "
              f"{row['relative_time']:.2f}x | {row['tokens_per_s']:.0f} | {row['saved_gib']:.2f} GiB | "
              f"{row['weights_gib']:.2f} GiB |")
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
