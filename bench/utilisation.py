"""Achieved FLOP/s of a Text2Token training step and of encoding, as a share of this machine's matmul peak.

The peak is measured here, in the same process: ``torch.matmul`` of square matrices (1024, 2048,
3072) in fp32 and in bf16, the best of several repeats (GFLOP/s = 2 n^3 / s); and the model's own
matmul shapes (tokens x 576 @ 576 x 1536 and back) for reference.

FLOPs counted (multiply-add = 2 FLOPs), for a batch of texts with n_i real tokens each:

    forward  F = 2 * P_lin * sum(n_i)                        dense matmuls of the transformer blocks
               + 4 * L * d_attn * sum(n_i^2)                   attention scores QK^T and weighted sum AV
               + 2 * B * d * V                                 vocabulary projection of the B pooled vectors
               + 2 * r * sum_over_adapted_linears(d_in + d_out) * sum(n_i)   LoRA A and B (training only)
    training  3 * F   ("model FLOPs": backward = 2 x forward, the usual convention)
              2 * F   (what LoRA needs: frozen weights get no weight gradient, so backward is one
                       input-gradient matmul per forward matmul; the LoRA weight gradients are tiny)

P_lin: the weights of the Linear layers of the blocks (embedding lookup excluded; the LM head is
the vocabulary term), L layers, d_attn = heads x head_dim, d hidden size, V vocabulary, r LoRA rank.
Real tokens only: padding is work done, not useful work, so it counts against utilisation (the
figure with padded tokens is printed too). Attention is counted in full (n^2, not n^2/2 for causal).
Utilisation = achieved FLOP/s / measured matmul peak of the same dtype.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/utilisation.py          # SmolLM2, batch 32 x 64, 256 texts to encode
    .venv/bin/python bench/utilisation.py --tiny
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


def matmul_gflops(m: int, k: int, n: int, dtype, repeats: int = 5, min_seconds: float = 0.2) -> float:
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(repeats):
        count, t0 = 0, time.perf_counter()
        while True:
            torch.matmul(a, b)
            count += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_seconds:
                break
        best = max(best, 2 * m * k * n * count / elapsed / 1e9)
    return best


def peaks(tiny: bool, hidden: int, intermediate: int) -> dict:
    sizes = (256, 512) if tiny else (1024, 2048, 3072)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        square = {n: matmul_gflops(n, n, n, dtype, repeats=2 if tiny else 4, min_seconds=0.05 if tiny else 0.3)
                  for n in sizes}
        model_shapes = {f"2048x{hidden}@{hidden}x{intermediate}": matmul_gflops(2048, hidden, intermediate, dtype,
                                                                               2, 0.05 if tiny else 0.3),
                        f"2048x{intermediate}@{intermediate}x{hidden}": matmul_gflops(2048, intermediate, hidden, dtype,
                                                                                     2, 0.05 if tiny else 0.3)}
        out[name] = {"peak_gflops": max(square.values()), "square": square, "model_shapes": model_shapes}
    return out


def model_dims(model, lora_r: int, adapted: int | None = None) -> dict:
    from text2token.model import causal_lm

    lm = causal_lm(model)
    cfg = lm.config
    blocks = lm.model.layers if hasattr(lm, "model") else lm.base_model.layers
    p_lin, lora_io = 0, 0
    for module in blocks.modules():
        if isinstance(module, torch.nn.Linear):
            if any(part in type(module).__module__ for part in ("peft",)):
                continue
            p_lin += module.weight.numel()
            lora_io += module.in_features + module.out_features
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return {"p_lin": p_lin, "layers": cfg.num_hidden_layers, "d_attn": cfg.num_attention_heads * head_dim,
            "d": cfg.hidden_size, "vocab": lm.get_output_embeddings().weight.shape[0],
            "lora_io": lora_io, "lora_r": lora_r, "intermediate": getattr(cfg, "intermediate_size", 4 * cfg.hidden_size)}


def forward_flops(dims: dict, lengths: list[int], lora: bool) -> float:
    tokens = sum(lengths)
    f = 2 * dims["p_lin"] * tokens + 4 * dims["layers"] * dims["d_attn"] * sum(n * n for n in lengths)
    f += 2 * len(lengths) * dims["d"] * dims["vocab"]
    if lora:
        f += 2 * dims["lora_r"] * dims["lora_io"] * tokens
    return f


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per precision")
    parser.add_argument("--encode-texts", type=int, default=256)
    args = parser.parse_args(argv)

    from text2token.model import Text2TokenModel
    from train_throughput import Bench, batches_of, stage1_rows

    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            from text2token.backbone import load_backbone

            model, tokenizer, _ = load_backbone(pc.tiny_backbone(Path(tmp) / "tiny"))
            texts = pc.tiny_sentences(args.batch_size * (args.steps + 1) + args.encode_texts)
        else:
            model, tokenizer = pc.load_smollm2()
            texts = pc.real_sentences(args.batch_size * (args.steps + 1) + args.encode_texts, seed=2)
        encode_texts, texts = texts[: args.encode_texts], texts[args.encode_texts:]
        dims = model_dims(model, 16)
        peak = peaks(args.tiny, dims["d"], dims["intermediate"])

        # encoding first (no LoRA yet): the inference path of Text2TokenModel.encode
        enc = Text2TokenModel(model, tokenizer, "mean", "causal", 128)
        enc_lengths = [len(ids) for ids in enc.text_encoder.token_ids(encode_texts)]
        padded = sum(len(b) * max(enc_lengths[i] for i in b) for b in
                     (sorted(range(len(enc_lengths)), key=lambda i: -enc_lengths[i])[j:j + args.batch_size]
                      for j in range(0, len(enc_lengths), args.batch_size)))
        encode = {}
        f_enc = forward_flops(dims, enc_lengths, lora=False)
        enc.encode(encode_texts[: args.batch_size], batch_size=args.batch_size)
        for name in ("fp32", "bf16"):
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                enc.encode(encode_texts, batch_size=args.batch_size, autocast=name == "bf16")
                times.append(time.perf_counter() - t0)
            s = min(times)
            encode[name] = {"seconds": s, "gflops": f_enc / s / 1e9,
                            "utilisation": f_enc / s / 1e9 / peak[name]["peak_gflops"]}
        encode_info = {"texts": len(encode_texts), "real_tokens": sum(enc_lengths), "padded_tokens": padded,
                       "forward_gflop": f_enc / 1e9, **encode}

        # training: the Text2Token step of bench/train_throughput.py (collate, forward, backward, clip, AdamW)
        bench = Bench(model, tokenizer, args.batch_size, args.max_length, Path(tmp) / "args")
        rows = stage1_rows(texts, tokenizer)
        batches = batches_of(rows, args.batch_size)[: args.steps + 1]
        lengths = [[len(ids) for ids in bench.encoder.token_ids([r["text"] for r in b])] for b in batches]
        f_train = [forward_flops(dims, ls, lora=True) for ls in lengths]
        f_padded = [forward_flops(dims, [max(ls)] * len(ls), lora=True) for ls in lengths]  # what is computed
        train = {}
        for name in ("fp32", "bf16"):
            bench.step("text2token", batches[-1], bf16=name == "bf16")
            per = []
            for i in range(args.steps):
                t0 = time.perf_counter()
                bench.step("text2token", batches[i], bf16=name == "bf16")
                per.append((time.perf_counter() - t0, f_train[i], f_padded[i]))
            gflops3 = [3 * f / s / 1e9 for s, f, _ in per]
            gflops2 = [2 * f / s / 1e9 for s, f, _ in per]
            padded2 = [2 * fp / s / 1e9 for s, _, fp in per]
            train[name] = {"step_s": statistics.median(s for s, _, _ in per),
                           "utilisation_2x_padded": statistics.median(padded2) / peak[name]["peak_gflops"],
                           "gflops_3x": statistics.median(gflops3), "gflops_2x": statistics.median(gflops2),
                           "utilisation_3x": statistics.median(gflops3) / peak[name]["peak_gflops"],
                           "utilisation_2x": statistics.median(gflops2) / peak[name]["peak_gflops"]}
        train_info = {"batch_size": args.batch_size, "max_length": args.max_length,
                      "real_tokens_per_step": statistics.mean(sum(ls) for ls in lengths[: args.steps]),
                      "padded_tokens_per_step": statistics.mean(len(ls) * max(ls) for ls in lengths[: args.steps]),
                      "forward_gflop_per_step": statistics.mean(f_train[: args.steps]) / 1e9, **train}
    result = {"machine": pc.machine(), "tiny": args.tiny, "dims": dims, "peak": peak, "encode": encode_info,
              "train": train_info, "seconds": round(time.time() - started, 1)}
    print(f"machine: {result['machine']}")
    print(f"matmul peak: fp32 {peak['fp32']['peak_gflops']:.0f} GFLOP/s, bf16 {peak['bf16']['peak_gflops']:.0f} GFLOP/s "
          f"(square {list(peak['fp32']['square'])}); model shapes fp32 "
          + ", ".join(f"{k} {v:.0f}" for k, v in peak["fp32"]["model_shapes"].items()) + "; bf16 "
          + ", ".join(f"{k} {v:.0f}" for k, v in peak["bf16"]["model_shapes"].items()))
    print("| work | precision | time | achieved GFLOP/s (real tokens) | share of matmul peak (real tokens) | "
          "2F on computed (padded) tokens |")
    print("|---|---|---|---|---|---|")
    for name in ("fp32", "bf16"):
        e = encode_info[name]
        print(f"| encode {encode_info['texts']} texts ({encode_info['real_tokens']} real / {encode_info['padded_tokens']} "
              f"padded tokens) | {name} | {e['seconds']:.2f} s | {e['gflops']:.0f} | {100 * e['utilisation']:.0f} % | "
              f"{100 * e['utilisation'] * encode_info['padded_tokens'] / encode_info['real_tokens']:.0f} % (F) |")
    for name in ("fp32", "bf16"):
        t = train_info[name]
        print(f"| training step {args.batch_size} x {args.max_length} ({train_info['real_tokens_per_step']:.0f} real / "
              f"{train_info['padded_tokens_per_step']:.0f} padded tokens) | {name} | {t['step_s']:.2f} s | "
              f"{t['gflops_3x']:.0f} (3F) / {t['gflops_2x']:.0f} (2F) | {100 * t['utilisation_3x']:.0f} % (3F) / "
              f"{100 * t['utilisation_2x']:.0f} % (2F) | {100 * t['utilisation_2x_padded']:.0f} % |")
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
