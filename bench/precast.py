"""Pre-cast frozen weights: a default-recipe training step with the backbone stored in bf16 (``dtype: bfloat16``)
against the default fp32 storage, both under bf16 autocast (``precision: bf16``).

Autocast re-casts every frozen fp32 weight to bf16 at each call (it caches casts only of weights that require
grad), so storing the frozen weights in bf16 once could save that work. Both arms run the product's own
``text2token.train`` on the embedded SmolLM2 with the default recipe (joint objective, last + PromptEOL, LoRA r 16
on all linear layers; LoRA stays fp32), batch 32 x 64, in one process. A step's time is the difference between a
run of ``--long`` steps and one of ``--short`` steps divided by their difference, so loading and the first step's
warm-up cancel (one untimed run first takes the process's one-time costs); arms alternate A B B A per round so drift cancels in the ratio.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python -m bench.precast --data CORPUS.txt --rounds 1

Prints a line per run and, last, one line of JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def run_seconds(data: str, dtype: str, steps: int, folder: Path) -> float:
    from text2token import train
    from text2token.config import TrainConfig

    config = TrainConfig(data=[data], output=str(folder), steps=steps, batch_size=32, max_length=64,
                         precision="bf16", dtype=dtype, save_steps=1000, logging_steps=1000, seed=42,
                         gradient_checkpointing=False)  # as measured (docs/performance.md)
    started = time.perf_counter()
    train(config, overwrite=True)
    return time.perf_counter() - started


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="training corpus (one text per line)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--short", type=int, default=1)
    p.add_argument("--long", type=int, default=4)
    args = p.parse_args(argv)
    import torch

    arms = ("float32", "bfloat16")
    per_step: dict[str, list[float]] = {a: [] for a in arms}
    with tempfile.TemporaryDirectory() as tmp:
        run_seconds(args.data, arms[0], args.short, Path(tmp) / "warm-up")  # one-time costs out of the first arm
        for r in range(args.rounds):
            for arm in (arms if r % 2 == 0 else arms[::-1]) + (arms[::-1] if r % 2 == 0 else arms):
                short = run_seconds(args.data, arm, args.short, Path(tmp) / f"{arm}-s")
                long = run_seconds(args.data, arm, args.long, Path(tmp) / f"{arm}-l")
                step = (long - short) / (args.long - args.short)
                per_step[arm].append(step)
                print(f"round {r} {arm}: {args.short} steps {short:.1f} s, {args.long} steps {long:.1f} s, "
                      f"{step:.2f} s/step", flush=True)
    fp32, bf16 = statistics.median(per_step["float32"]), statistics.median(per_step["bfloat16"])
    print(json.dumps({"s_per_step": per_step, "median_fp32_storage": round(fp32, 2),
                      "median_bf16_storage": round(bf16, 2), "speedup": round(fp32 / bf16, 3),
                      "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
