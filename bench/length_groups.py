"""A training step with its forward pass split into length-sorted sub-batches (``length_groups``) against one
padded pass, on the same random batches, in one process.

Random batches of Wikipedia sentences are padded to their longest text, so at max length 64 about half the
tokens a step computes are padding (docs/performance.md, "Utilisation"). ``length_groups: N`` runs each batch
as N sub-batches of similar length, each padded only to its own longest text: the same texts, the same loss
(tests/test_length_groups.py), fewer tokens. Unlike ``group_by_length`` the batches stay random.

Each arm is the default recipe's loss and backward (the joint objective on two dropout views, last + PromptEOL,
LoRA r 16 on all linear layers, attention dropout 0.3) on the embedded SmolLM2, in the precision ``auto`` picks
(or ``--precision``), for ``--batches`` random batches of the corpus; for each batch every arm runs in turn, the
order alternating, so drift cancels in the ratios. No optimizer step (the same in every arm), so every arm sees
the same weights. Printed: each arm's median seconds per step, its speed against one padded pass (median of the
per-batch ratios, and the range), and the tokens computed; the last line is JSON.

Whole runs (the Trainer, AdamW, logging and all, a fresh process per run) are ``bench/cli_runs.py``'s job:
``--arm "--length-groups 1" --arm "--length-groups 8"``. (This script's own ``--runs`` mode, in-process A B B A
whole runs, was removed after commit 15c106b in favour of it.)

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python -m bench.length_groups --data CORPUS.txt           # max length 64
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python -m bench.length_groups --data CORPUS.txt --max-length 128 --checkpointing
    HF_HUB_OFFLINE=1 python -m bench.length_groups --data CORPUS.txt --max-length 128 --checkpointing --groups 8 --profile
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time


def groups_of(arm: str) -> int:
    """The sub-batch count of an arm (``"8"``; the twelfth session's ``"8:bernoulli"`` arms, from before the
    LoRA dropout masks went back to ``bernoulli_``'s draws, read as ``8``)."""
    return int(arm.split(":")[0])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="training corpus (one text per line)")
    p.add_argument("--groups", nargs="+", default=["1", "2", "4", "8"], help="arms: N sub-batches each")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (the CLI's default)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true",
                   help="instead of timing: torch.profiler over one step of the first arm (after a warm-up step), "
                        "the operators that took most of its CPU time")
    args = p.parse_args(argv)

    import torch

    from bench.encode_speed import cpu_name
    from text2token.backbone import load_backbone
    from text2token.batches import Collator
    from text2token.config import TrainConfig
    from text2token.contrastive import prepare_dropout
    from text2token.data import read_corpus
    from text2token.lora import add_lora
    from text2token.objective import TokenTargetObjective
    from text2token.pooling import TextEncoder
    from text2token.precision import resolve
    from text2token.targets import DataDrivenTargets

    config = TrainConfig(batch_size=args.batch_size, max_length=args.max_length,
                         gradient_checkpointing=args.checkpointing, precision=args.precision)
    precision = resolve(config.precision, "cpu")
    model, tok, _ = load_backbone(None)
    for param in model.parameters():
        param.requires_grad_(False)
    torch.manual_seed(args.seed)
    peft_model = add_lora(model, config)
    prepare_dropout(peft_model, config)
    peft_model.train()
    encoder = TextEncoder(tok, config.pooling, config.max_length, prompt=config.prompt)
    collate = Collator(encoder)
    targets = DataDrivenTargets(tok, stop_words=config.stop_words)
    texts, _ = read_corpus([args.data], max_chars=None)
    rng = random.Random(args.seed)
    batches = []
    while len(batches) < args.batches:
        chosen = rng.sample(texts, args.batch_size)
        rows = [{"text": t, "target": q} for t, q in zip(chosen, targets(chosen)) if len(q[0])]
        batches.append(collate(rows))
    objectives = {g: TokenTargetObjective(peft_model, config.pooling, config.contrastive_weight,
                                          config.simcse_temperature, length_groups=groups_of(g)).train()
                  for g in args.groups}

    def step(g, batch) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = objectives[g](**batch)["loss"]
        loss.backward()
        peft_model.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    step(args.groups[0], batches[0])  # warm-up
    if args.profile:
        return profile(lambda: step(args.groups[0], batches[-1]), args)
    seconds = {g: [] for g in args.groups}
    for i, batch in enumerate(batches):
        for g in (args.groups if i % 2 == 0 else args.groups[::-1]):
            seconds[g].append(step(g, batch))
        print(f"batch {i}: " + ", ".join(f"{g} group(s) {seconds[g][-1]:.2f} s" for g in args.groups), flush=True)

    def computed(g, batch) -> int:  # token positions run through the model for the two stacked views
        lengths = sorted(batch["attention_mask"].sum(1).tolist() * 2)
        parts = torch.tensor(lengths).tensor_split(min(groups_of(g), len(lengths)))
        return sum(len(part) * int(part.max()) for part in parts)

    real = sum(int(b["attention_mask"].sum()) * 2 for b in batches)
    flops = sum(step_flops(peft_model, b) for b in batches)  # the forward pass F of every batch, real tokens only
    peak = matmul_peak(torch.bfloat16 if precision == "bf16" else torch.float32)
    base = args.groups[0]
    result = {"machine": cpu_name(), "threads": torch.get_num_threads(), "precision": precision,
              "batch_size": args.batch_size, "max_length": args.max_length, "checkpointing": args.checkpointing,
              "batches": args.batches, "real_tokens": real, "forward_gflop": round(flops / 1e9, 1),
              "matmul_peak_gflops": round(peak / 1e9, 1), "arms": {}}
    print(f"{result['machine']}, {result['threads']} thread(s), {precision}, batch {args.batch_size} x max length "
          f"{args.max_length}, checkpointing {'on' if args.checkpointing else 'off'}, {args.batches} batches; "
          f"{precision} matmul peak {peak / 1e9:.0f} GFLOP/s (2048x576 @ 576x1536, best of 10)")
    print(f"| length_groups | s/step (median) | speed vs {base} (median of batches, range) | tokens computed / real "
          f"| GFLOP/s, 3F (2F) on real tokens | share of the matmul peak, 3F (2F) |")
    print("|---:|---:|---|---:|---:|---:|")
    for g in args.groups:
        ratios = [a / b for a, b in zip(seconds[base], seconds[g])]
        tokens = sum(computed(g, b) for b in batches)
        rate = flops / sum(seconds[g])  # F per second; a step is counted 3F (the convention) and 2F (LoRA's need)
        result["arms"][g] = {"s_per_step": round(statistics.median(seconds[g]), 3),
                             "speed": round(statistics.median(ratios), 3), "speed_min": round(min(ratios), 3),
                             "speed_max": round(max(ratios), 3), "tokens_over_real": round(tokens / real, 3),
                             "gflops_3f": round(3 * rate / 1e9, 1), "utilisation_3f": round(3 * rate / peak, 4),
                             "utilisation_2f": round(2 * rate / peak, 4)}
        print(f"| {g} | {statistics.median(seconds[g]):.2f} | {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}) | {tokens / real:.2f} | {3 * rate / 1e9:.0f} ({2 * rate / 1e9:.0f}) "
              f"| {300 * rate / peak:.1f} % ({200 * rate / peak:.1f} %) |")
    print(json.dumps(result))
    return result


def step_flops(peft_model, batch) -> float:
    """FLOPs of the forward pass of one joint step on its real tokens (both stacked views; a multiply-add is 2):
    2 P n for the blocks' frozen linear weights, 2 r (d_in + d_out) n for the LoRA adapters, 4 L d_attn n^2 per
    text for attention scores and values, and 2 d V per row for the vocabulary projection (pooled vectors only).
    docs/performance.md ("Utilisation") counts a step as 3F, the usual convention, and 2F, what LoRA needs."""
    import torch
    from peft.tuners.lora import LoraLayer

    config = peft_model.get_base_model().config
    lora = [m for m in peft_model.modules() if isinstance(m, LoraLayer)]
    frozen = sum(m.get_base_layer().weight.numel() for m in lora)
    adapters = sum(a.weight.numel() + b.weight.numel() for m in lora for a, b in zip(m.lora_A.values(), m.lora_B.values()))
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    lengths = batch["attention_mask"].sum(1).to(torch.float64)
    tokens, squares, rows = 2 * float(lengths.sum()), 2 * float((lengths ** 2).sum()), 2 * len(lengths)
    return (2 * (frozen + adapters) * tokens + 4 * config.num_hidden_layers * config.num_attention_heads * head_dim
            * squares + 2 * rows * config.hidden_size * config.vocab_size)


def matmul_peak(dtype, shape=(2048, 576, 1536), repeats: int = 10) -> float:
    """FLOP/s of one matmul of the model's own shape in ``dtype``, the best of ``repeats``."""
    import torch

    m, k, n = shape
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * m * k * n / best


def profile(one_step, args, rows: int = 25) -> dict:
    """Where one step's CPU time goes: operators by self time (their own, not their callees'), largest first."""
    import torch
    from torch.profiler import ProfilerActivity, profile as profiler

    with profiler(activities=[ProfilerActivity.CPU]) as prof:
        seconds = one_step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"one step of arm {args.groups[0]} (batch {args.batch_size} x max length {args.max_length}, checkpointing "
          f"{'on' if args.checkpointing else 'off'}, {torch.get_num_threads()} thread(s)): {seconds:.2f} s "
          f"under the profiler, {total / 1e6:.2f} s of operators' self CPU time")
    print("| operator | calls | self CPU s | share |")
    print("|---|---:|---:|---:|")
    top = []
    for e in events[:rows]:
        share = e.self_cpu_time_total / total
        top.append({"op": e.key, "calls": e.count, "self_s": round(e.self_cpu_time_total / 1e6, 3),
                    "share": round(share, 4)})
        print(f"| `{e.key}` | {e.count} | {e.self_cpu_time_total / 1e6:.2f} | {100 * share:.1f} % |")
    result = {"arm": args.groups[0], "seconds": round(seconds, 3), "self_cpu_s": round(total / 1e6, 3), "top": top}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
