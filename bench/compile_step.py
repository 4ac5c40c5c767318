"""torch.compile on a CPU: a default-recipe training step with the decoder blocks compiled against eager.

The step is the package's own loss module (``TokenTargetObjective`` with the joint objective: the KL on two
dropout views plus SimCSE's term at weight 3, last pooling), LoRA r 16 on all linear layers
(``text2token.lora.add_lora``), bf16 autocast as ``precision: auto`` picks on this CPU, AdamW, grad-norm clip 1.0,
on a randomly initialised model of SmolLM2-135M's shape (speed does not depend on the weights' values) and a
fixed batch of 32 texts of 33-64 tokens. The compiled arm compiles each decoder block (regional compilation:
one block's graph, reused by all 30; inductor's C++ back end fuses RMSNorm, RoPE, SiLU-mul and autocast's
casts). Both arms share the same parameters and optimizer in one process and alternate A B B A per round, so
drift cancels in the ratio; the compile time (the compiled arm's first steps) is reported apart.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python -m bench.compile_step --rounds 2
    python -m bench.compile_step --tiny --rounds 1      # a tiny shape, seconds: checks that the script runs

Prints a line per timed block and, last, one line of JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="a tiny shape (for checking the script)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of A B B A (default 2)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per arm and block (default 3)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    args = p.parse_args(argv)

    from transformers import AutoModelForCausalLM, LlamaConfig

    from bench.gpu_step import TINY, make_batch, train_step
    from text2token.config import TrainConfig
    from text2token.lora import add_lora
    from text2token.objective import TokenTargetObjective

    torch.manual_seed(0)
    config = LlamaConfig(**(TINY if args.tiny else SMOLLM2_135M), eos_token_id=0, pad_token_id=1)
    model = AutoModelForCausalLM.from_config(config)
    for q in model.parameters():
        q.requires_grad_(False)
    peft_model = add_lora(model, TrainConfig(gradient_checkpointing=False))  # as measured (docs/performance.md)
    objective = TokenTargetObjective(peft_model, "last", contrastive_weight=3.0).train()
    trainable = [q for q in objective.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    batch = make_batch(config.vocab_size, args.batch_size, args.seq_len, "last", 20, torch.device("cpu"),
                       torch.Generator().manual_seed(0))

    blocks = model.model.layers
    eager = list(blocks)
    compiled = [torch.compile(block) for block in eager]  # shares each block's parameters

    def use(arm: str) -> None:
        for i, block in enumerate(compiled if arm == "compiled" else eager):
            blocks[i] = block

    def step() -> float:
        return train_step(objective, batch, trainable, optimizer, "cpu", args.precision == "bf16")

    def timed(arm: str, n: int) -> list[float]:
        use(arm)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            step()
            out.append(time.perf_counter() - t0)
        return out

    t0 = time.perf_counter()
    first = timed("compiled", 2)  # compiles forward and backward graphs
    compile_s = time.perf_counter() - t0
    print(f"compiled arm's first 2 steps (compilation included): {compile_s:.1f} s", flush=True)
    timed("eager", 1)  # warm-up of the eager arm
    per_step: dict[str, list[float]] = {"eager": [], "compiled": []}
    for r in range(args.rounds):
        order = ("eager", "compiled", "compiled", "eager") if r % 2 == 0 else ("compiled", "eager", "eager", "compiled")
        for arm in order:
            times = timed(arm, args.steps)
            per_step[arm].extend(times)
            print(f"round {r} {arm}: {statistics.median(times):.2f} s/step (median of {len(times)})", flush=True)
    e, c = statistics.median(per_step["eager"]), statistics.median(per_step["compiled"])
    print(json.dumps({"shape": "tiny" if args.tiny else "smollm2-135m", "precision": args.precision,
                      "batch": [args.batch_size, args.seq_len], "threads": torch.get_num_threads(),
                      "compile_s_first_two_steps": round(compile_s, 1), "first_steps_s": [round(x, 2) for x in first],
                      "s_per_step": {k: [round(x, 3) for x in v] for k, v in per_step.items()},
                      "median_eager": round(e, 3), "median_compiled": round(c, 3), "speedup": round(e / c, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
