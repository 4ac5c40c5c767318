"""Step time and memory of one Text2Token training step on a Llama-3-8B-sized backbone.

The backbone is built in code (Llama-3-8B's shape: 32 layers, hidden 4096, MLP 14336, 32 heads,
8 KV heads, vocabulary 128256) with random weights, so nothing is downloaded. The step is the
package's own: LoRA on all linear layers (``text2token.lora.add_lora``), the loss module the
Trainer runs (``TokenTargetObjective``: pool, project with the frozen LM head in fp32, KL to a
sparse target), bf16 autocast as ``train --bf16`` does, gradient checkpointing, AdamW, grad-norm
clip 1.0. It also times one teacher forward pass (stage-2 target building, no gradients).

    python -m bench.gpu_step                      # on a GPU: the 8B shape, batch 16 x 128 tokens
    python -m bench.gpu_step --weights bf16       # frozen weights stored in bf16 instead of fp32
    python -m bench.gpu_step --tiny               # a tiny shape, runs anywhere (CPU included)

It stops timing steps after ``--budget`` seconds (default 240) so a run fits in five minutes,
and prints one line of JSON with the figures at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

LLAMA3_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                 rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False)


def train_step(objective, batch, trainable, optimizer, device_type: str, bf16: bool) -> float:
    """One optimizer step of the loss module on ``batch`` (autocast as the Trainer runs it, grad-norm clip 1.0)."""
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        loss = objective(**batch)["loss"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def make_batch(vocab: int, batch: int, seq_len: int, pooling: str, targets: int, device, generator):
    from text2token.objective import pad_targets
    from text2token.pooling import position_ids

    lengths = torch.randint(seq_len // 2, seq_len + 1, (batch,), generator=generator)
    ids = torch.randint(2, vocab, (batch, seq_len), generator=generator)
    mask = torch.zeros(batch, seq_len, dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        if pooling == "last":  # left padding
            mask[i, seq_len - n:] = 1
        else:
            mask[i, :n] = 1
    ids = ids.masked_fill(mask == 0, 1)
    rows = []
    for _ in range(batch):  # a stage-1-like target: uniform over a few distinct tokens
        t = torch.randperm(vocab - 2, generator=generator)[:targets] + 2
        rows.append((t.numpy(), (torch.ones(targets) / targets).numpy()))
    target_ids, target_weights = pad_targets(rows)
    batch_inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids(mask),
                    "target_ids": target_ids, "target_weights": target_weights}
    return {k: v.to(device) for k, v in batch_inputs.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny configuration (CPU is fine); for testing")
    parser.add_argument("--batch-size", type=int, default=16, help="texts per device and step (default 16)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per text at most (default 128)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10, after 2 warm-up steps)")
    parser.add_argument("--weights", choices=("fp32", "bf16"), default="fp32",
                        help="dtype of the frozen weights (default fp32, as `text2token train --bf16` loads them)")
    parser.add_argument("--pooling", choices=("mean", "last"), default="mean")
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--budget", type=float, default=240.0, help="stop timing steps after this many seconds")
    parser.add_argument("--device", help="default: cuda if available, else cpu")
    args = parser.parse_args(argv)

    from transformers import AutoModelForCausalLM, LlamaConfig

    from text2token.config import TrainConfig
    from text2token.lora import add_lora
    from text2token.objective import TokenTargetObjective

    started = time.time()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu" and not args.tiny:
        print("no GPU: the 8B configuration needs one; use --tiny to check the script on a CPU", file=sys.stderr)
        return 2
    cuda = device.type == "cuda"
    bf16 = cuda and torch.cuda.is_bf16_supported()
    config = LlamaConfig(**(TINY if args.tiny else LLAMA3_8B), eos_token_id=0, pad_token_id=1)
    dtype = torch.bfloat16 if args.weights == "bf16" else torch.float32
    torch.manual_seed(0)
    with device:  # random weights made on the device itself: no 32 GB on the host
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    built = time.time() - started
    train_config = TrainConfig(lora_r=args.lora_r, lora_alpha=2 * args.lora_r,
                               gradient_checkpointing=not args.no_gradient_checkpointing)
    for p in model.parameters():
        p.requires_grad_(False)
    peft_model = add_lora(model, train_config)
    objective = TokenTargetObjective(peft_model, args.pooling).train()
    trainable = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=5e-5, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    batch = make_batch(config.vocab_size, args.batch_size, args.seq_len, args.pooling, 20, device, generator)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def step():
        return train_step(objective, batch, trainable, optimizer, device.type, bf16)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    losses, times = [], []
    for i in range(2 + args.steps):
        sync()
        t0 = time.time()
        losses.append(step())
        sync()
        if i >= 2:
            times.append(time.time() - t0)
        if time.time() - started > args.budget and times:
            break
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    reserved = torch.cuda.max_memory_reserved(device) / 2**30 if cuda else None

    # stage-2 teacher pass: forward only, no gradients, same batch
    from text2token.model import embed, vocab_logits

    objective.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        sync()
        t0 = time.time()
        vocab_logits(peft_model, embed(peft_model, batch, args.pooling)).softmax(-1)
        sync()
        teacher = time.time() - t0

    tokens = int(batch["attention_mask"].sum())
    result = {
        "config": "tiny" if args.tiny else "llama3-8b", "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "trainable_m": round(sum(p.numel() for p in trainable) / 1e6, 2), "weights": args.weights,
        "bf16_autocast": bf16, "gradient_checkpointing": not args.no_gradient_checkpointing,
        "batch_size": args.batch_size, "seq_len": args.seq_len, "tokens_per_step": tokens,
        "timed_steps": len(times), "step_s_median": round(statistics.median(times), 4),
        "step_s_mean": round(statistics.fmean(times), 4), "tokens_per_s": round(tokens / statistics.median(times), 1),
        "teacher_forward_s": round(teacher, 4), "peak_allocated_gib": round(peak, 2) if peak else None,
        "peak_reserved_gib": round(reserved, 2) if reserved else None, "build_s": round(built, 1),
        "losses_finite": all(map(lambda x: x == x and abs(x) != float("inf"), losses)),
        "total_s": round(time.time() - started, 1),
    }
    print(f"{result['config']} on {result['device']}: {result['params_m']} M parameters, "
          f"{result['trainable_m']} M trainable (LoRA r={args.lora_r}); batch {args.batch_size} x {args.seq_len}: "
          f"step {result['step_s_median']} s (median of {len(times)}), teacher forward {result['teacher_forward_s']} s"
          + (f", peak memory {result['peak_allocated_gib']} GiB allocated / {result['peak_reserved_gib']} GiB reserved"
             if cuda else ""))
    print(json.dumps(result))
    return 0 if result["losses_finite"] else 1


if __name__ == "__main__":
    sys.exit(main())
