"""Stage-1 target building time on the whole corpus, and peak memory of short training runs.

1. Data-driven targets for the full corpus (``../shared/data/corpus``, 500k sentences): the time
   of ``text2token.stages.build_stage1_targets`` (what ``train`` runs: scikit-learn stop words,
   fast-tokenizer batch calls, distinct ids), with the corpus read (``read_corpus``) timed apart.
   Before it, on a slice, A B rounds of the same builder called per block of 32 texts (the block
   ``build_stage1_targets`` used to tokenise at a time) against larger blocks, with the outputs
   compared id for id.
2. Peak resident memory of short SmolLM2 training runs, each in its own child process (peak from
   ``os.wait4``'s ``ru_maxrss``, the figure ``/usr/bin/time -v`` prints). The child runs what
   ``text2token.train`` runs for stage 1 (``load_backbone``, ``build_stage1_targets``,
   ``train_stage`` on the Trainer) on the real corpus, a few steps, and reports the peak of each
   phase (``VmHWM``, reset between phases through ``/proc/self/clear_refs``) so the total can be
   explained: weights, targets, Trainer set-up, steps.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/targets_memory.py                       # both parts
    HF_HUB_OFFLINE=1 .venv/bin/python bench/targets_memory.py --parts memory --runs 32x64 32x128 32x128gc
    .venv/bin/python bench/targets_memory.py --tiny
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perf_common as pc  # noqa: E402

GIB = 2**30


def child(args) -> int:
    """One short stage-1 training run; prints one JSON line with the peak memory of each phase."""
    import torch

    phases = {}

    def mark(name):
        phases[name] = {"peak_gib": pc.gib(pc.peak_rss()), "rss_after_gib": pc.gib(pc.rss())}
        pc.reset_peak()

    mark("start")
    from text2token.backbone import load_backbone
    from text2token.config import TrainConfig
    from text2token.data import read_corpus
    from text2token.stages import build_stage1_targets
    from text2token.training import train_stage

    if os.environ.get("TEXT2TOKEN_BENCH_PEFT_DROPOUT"):  # measure peft's own LoRA dropout, not the folded one
        import text2token.training

        text2token.training.fold_lora_dropout = lambda peft_model, enable=True: 0
    import text2token.training

    step_times = []
    real_step = text2token.training.StageTrainer.training_step

    def timed_step(self, *a, **k):  # forward + backward of one step (the optimizer step is tiny: LoRA only)
        t0 = time.perf_counter()
        try:
            return real_step(self, *a, **k)
        finally:
            step_times.append(time.perf_counter() - t0)

    text2token.training.StageTrainer.training_step = timed_step
    mark("imports")
    config = TrainConfig(data=[args.data], batch_size=args.batch_size, max_length=args.max_length, steps=args.steps,
                         stages=["data"], gradient_checkpointing=args.gc, precision="bf16" if args.bf16 else "fp32",
                         save_steps=10**6, logging_steps=1, model=args.model, pooling="mean", contrastive_weight=0.0)
    texts, _ = read_corpus(config.data, limit=args.batch_size * args.steps)
    mark("corpus")
    model, tokenizer, _ = load_backbone(config.model)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    mark("load_backbone")
    texts, targets, _ = build_stage1_targets(tokenizer, texts, config)
    mark("targets")
    for p in model.parameters():
        p.requires_grad_(False)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        _, trainer = train_stage(model, tokenizer, texts, targets, config, "data", Path(tmp))
    seconds = time.time() - t0
    mark("train_stage")
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    print(json.dumps({"phases": phases, "weights_gib": pc.gib(weights), "train_s": seconds, "step_times": step_times,
                      "steps": trainer.state.global_step, "losses": losses, "threads": torch.get_num_threads()}))
    return 0


def blocks_compare(texts: list[str], tokenizer, rounds: int, sizes=(32, 4096)) -> dict:
    from text2token.targets import DataDrivenTargets

    builder = DataDrivenTargets(tokenizer)

    def run(size):
        return [q for a in range(0, len(texts), size) for q in builder(texts[a:a + size])]

    outs = {}

    def arm(size):
        def fn():
            outs[size] = run(size)
        return fn

    times = pc.abab({str(s): arm(s) for s in sizes}, rounds, warmup=False)
    same = all(len(a[0]) == len(b[0]) and (a[0] == b[0]).all() and (a[1] == b[1]).all()
               for a, b in zip(outs[sizes[0]], outs[sizes[1]]))
    return {"texts": len(texts), "times": times, "speed": pc.summary(pc.ratios(times, str(sizes[0]), str(sizes[1]))),
            "identical": same}


def part_targets(args) -> dict:
    from text2token.backbone import load_tokenizer, resolve_backbone
    from text2token.config import TrainConfig
    from text2token.data import read_corpus
    from text2token.stages import build_stage1_targets

    if args.tiny:
        folder = pc.tiny_backbone(Path(args.tmp) / "tiny")
        tokenizer = load_tokenizer(folder)
        corpus = Path(args.tmp) / "corpus.txt"
        corpus.write_text("\n".join(pc.tiny_sentences(2000)) + "\n")
        sources = [str(corpus)]
    else:
        tokenizer = load_tokenizer(resolve_backbone(None))
        sources = [str(p) for p in sorted(pc.CORPUS_DIR.glob("wiki_sentences_0*.txt"))]
    t0 = time.perf_counter()
    texts, stats = read_corpus(sources, limit=args.limit)
    read_s = time.perf_counter() - t0
    compare = blocks_compare(texts[: args.compare_texts], tokenizer, args.rounds)
    t0 = time.perf_counter()
    kept, targets, skipped = build_stage1_targets(tokenizer, texts, TrainConfig(batch_size=32))
    build_s = time.perf_counter() - t0
    return {"texts": len(texts), "read_s": read_s, "build_s": build_s, "texts_per_s": len(texts) / build_s,
            "skipped_empty": skipped, "mean_target_tokens": sum(len(q[0]) for q in targets) / len(targets),
            "blocks": compare, "goal": "< 180 s", "met": build_s < 180,
            "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "(unset: on)")}


def part_breakdown(args) -> dict:
    """What the training step keeps for backward, by module: the tensors autograd saves during one forward
    of the loss module (``torch.autograd.graph.saved_tensors_hooks``; storages counted once, weights excluded),
    attributed to the innermost module running when each was saved, layer numbers folded together."""
    import re
    from collections import defaultdict

    import torch

    from text2token.config import TrainConfig
    from text2token.pooling import TextEncoder
    from text2token.training import Collator, TokenTargetObjective, add_lora, fold_lora_dropout
    from train_throughput import stage1_rows

    if args.tiny:
        from text2token.backbone import load_backbone

        model, tokenizer, _ = load_backbone(pc.tiny_backbone(Path(args.tmp) / "tiny-bd"))
        texts = pc.tiny_sentences(200)
    else:
        model, tokenizer = pc.load_smollm2()
        texts = pc.real_sentences(200, seed=4)
    for p in model.parameters():
        p.requires_grad_(False)
    peft_model = add_lora(model, TrainConfig())
    objective = TokenTargetObjective(peft_model, "mean").train()
    encoder = TextEncoder(tokenizer, "mean", 64)
    rows = stage1_rows(texts, tokenizer)
    rows.sort(key=lambda r: -len(encoder.token_ids([r["text"]])[0]))
    batch = Collator(encoder)(rows[::len(rows) // 32][:32])  # 32 texts of spread lengths, the longest first
    params = {p.untyped_storage().data_ptr() for p in peft_model.parameters()}
    stack: list[str] = []
    out = {}
    for mode in ("fp32 peft dropout", "fp32", "bf16"):
        precision = mode.split()[0]
        fold_lora_dropout(peft_model, enable="peft" not in mode)
        names = {m: re.sub(r"\.\d+\.", ".N.", n) for n, m in peft_model.named_modules()}
        hooks = []
        for module in peft_model.modules():
            hooks.append(module.register_forward_pre_hook(lambda m, i: stack.append(names[m])))
            hooks.append(module.register_forward_hook(lambda m, i, o: stack.pop() and None))  # None: output kept
        seen, by = set(), defaultdict(int)

        def pack(t):
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key not in params and key not in seen:
                seen.add(key)
                where = stack[-1] if stack else "(loss, outside the model)"
                where = where.split("layers.N.")[-1].replace(".default", "")
                by[where] += storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = objective(**batch)["loss"]
        loss.backward()
        peft_model.zero_grad(set_to_none=True)
        for h in hooks:
            h.remove()
        total = sum(by.values())
        groups = defaultdict(int)
        for where, n in by.items():
            group = ("LoRA dropout: its noise (fp32, the size of the layer input)" if "lora_dropout" in where else
                     "LoRA A: its input (peft: the dropped-out copy; folded: the layer input and a 1-byte mask)"
                     if "lora_A" in where else
                     "attention (projections, RoPE, scores)" if where.startswith("self_attn") else
                     "MLP (gate, up, SiLU, product)" if where.startswith("mlp") else
                     "RMSNorm" if "layernorm" in where or where.endswith("norm") else "other")
            groups[group] += n
        out[mode] = {"saved_gib": pc.gib(total), "groups_gib": {k: pc.gib(v) for k, v in
                                                                     sorted(groups.items(), key=lambda kv: -kv[1])},
                          "top_gib": {k: pc.gib(v) for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:12]}}
    mask = batch["attention_mask"]
    layers = model.config.num_hidden_layers
    return {"batch": list(mask.shape), "real_tokens": int(mask.sum()), "padded_tokens": int(mask.numel()),
            "layers": layers, "bytes_per_token_per_layer_fp32": out["fp32"]["saved_gib"] * 2**30 / mask.numel() / layers,
            **out}


RUNS = {  # name: (batch, max_length, gradient checkpointing, bf16, extra environment)
    "32x64": (32, 64, False, False, {}),
    "32x64peft": (32, 64, False, False, {"TEXT2TOKEN_BENCH_PEFT_DROPOUT": "1"}),
    # glibc: large blocks mapped (freed ones go back to the system at once instead of staying in the heap),
    # with transparent huge pages for them (without, every fresh 4 KiB page faults: much slower steps)
    "32x64thp": (32, 64, False, False, {"MALLOC_MMAP_THRESHOLD_": "131072", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}),
    "32x128": (32, 128, False, False, {}),
    "32x128gc": (32, 128, True, False, {}),
    "32x64bf16": (32, 64, False, True, {}),
    "32x64gc": (32, 64, True, False, {}),

}


def part_memory(args) -> dict:
    model = None
    data = None
    if args.tiny:
        model = pc.tiny_backbone(Path(args.tmp) / "tiny-mem")
        data = Path(args.tmp) / "corpus-mem.txt"
        data.write_text("\n".join(pc.tiny_sentences(200)) + "\n")
    else:
        data = sorted(pc.CORPUS_DIR.glob("wiki_sentences_0*.txt"))[0]
    out = {}
    for name in args.runs:
        batch, length, gc, bf16, env = RUNS[name]
        if args.tiny:
            batch = 4
        argv = [sys.executable, __file__, "--child", "--data", str(data), "--batch-size", str(batch),
                "--max-length", str(length), "--steps", str(args.steps)]
        argv += ["--gc"] if gc else []
        argv += ["--bf16"] if bf16 else []
        argv += ["--model", model] if model else []
        code, peak, seconds, log = pc.run_child(argv, env={"HF_HUB_OFFLINE": "1", **env}, timeout=args.timeout)
        record = {"batch": batch, "max_length": length, "gradient_checkpointing": gc, "bf16": bf16, "env": env,
                  "exit": code, "peak_gib": pc.gib(peak), "seconds": seconds}
        lines = [line for line in log.splitlines() if line.startswith("{")]
        if code == 0 and lines:
            record.update(json.loads(lines[-1]))
            # the child resets its peak between phases (clear_refs), which also resets what the kernel reports
            # as ru_maxrss at exit: the process's peak is the largest phase peak
            record["peak_gib"] = max([record["peak_gib"]] + [p["peak_gib"] for p in record["phases"].values()])
        else:
            record["log_tail"] = log[-2000:]
        out[name] = record
        print(f"[{name}: peak {record['peak_gib']:.2f} GiB, {seconds:.0f} s, exit {code}]", file=sys.stderr, flush=True)
    default = out.get("32x64")
    return {"runs": out, "goal": "<= 4 GiB for 32x64", "met": None if default is None else default["peak_gib"] <= 4}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--parts", nargs="+", choices=("targets", "memory", "breakdown"),
                        default=["targets", "memory", "breakdown"])
    parser.add_argument("--runs", nargs="+", choices=sorted(RUNS),
                        default=["32x64peft", "32x64", "32x128", "32x128gc"])
    parser.add_argument("--steps", type=int, default=3, help="training steps per memory run")
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds of the block-size comparison")
    parser.add_argument("--compare-texts", type=int, default=50000)
    parser.add_argument("--limit", type=int, help="read at most this many corpus texts")
    parser.add_argument("--timeout", type=float, default=900)
    # child mode (internal)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--max-length", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--gc", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    started = time.time()
    result = {"machine": pc.machine(), "tiny": args.tiny}
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        if args.tiny:
            args.compare_texts = min(args.compare_texts, 500)
        if "targets" in args.parts:
            result["targets"] = part_targets(args)
        if "memory" in args.parts:
            result["memory"] = part_memory(args)
        if "breakdown" in args.parts:
            result["breakdown"] = part_breakdown(args)
    result["seconds"] = round(time.time() - started, 1)
    print_tables(result)
    print(json.dumps(result, default=float))
    return 0


def print_tables(r: dict) -> None:
    print(f"machine: {r['machine']}")
    if "breakdown" in r:
        b = r["breakdown"]
        modes = ("fp32 peft dropout", "fp32", "bf16")
        print(f"kept for backward by one Text2Token step, batch {b['batch'][0]} x {b['batch'][1]} "
              f"({b['real_tokens']} real of {b['padded_tokens']} tokens), {b['layers']} layers "
              f"({b['bytes_per_token_per_layer_fp32'] / 1024:.0f} KiB per token per layer in fp32, LoRA dropout folded)")
        print("| kept by | fp32, peft's LoRA dropout | fp32, dropout folded (default) | bf16 autocast, folded |")
        print("|---|---|---|---|")
        groups = sorted({g for m in modes for g in b[m]["groups_gib"]}, key=lambda g: -b[modes[0]]["groups_gib"].get(g, 0))
        for group in groups + ["total"]:
            cells = [b[m]["saved_gib"] if group == "total" else b[m]["groups_gib"].get(group, 0) for m in modes]
            print(f"| {group} | " + " | ".join(f"{1024 * n:.0f} MiB" for n in cells) + " |")
    if "targets" in r:
        t = r["targets"]
        b = t["blocks"]
        print(f"stage-1 targets: {t['texts']} texts in {t['build_s']:.1f} s ({t['texts_per_s']:.0f} texts/s; "
              f"goal < 180 s: {'met' if t['met'] else 'NOT met'}); corpus read {t['read_s']:.1f} s; "
              f"{t['mean_target_tokens']:.1f} target tokens per text; {t['skipped_empty']} empty")
        print(f"tokenising in blocks of 4096 vs 32 texts ({b['texts']} texts): "
              f"{b['speed']['median']:.2f}x faster (rounds {b['speed']['min']:.2f}-{b['speed']['max']:.2f}); "
              f"identical targets: {b['identical']}")
    if "memory" in r:
        print("| run | peak RSS (whole process) | after imports | load_backbone peak / after | training peak | "
              "fp32 weights | steps | forward+backward s per step |")
        print("|---|---|---|---|---|---|---|---|")
        for name, m in r["memory"]["runs"].items():
            p = m.get("phases", {})
            label = (f"batch {m['batch']} x {m['max_length']}" + (", gradient checkpointing" if m["gradient_checkpointing"]
                                                                   else "") + (", bf16" if m["bf16"] else "")
                     + "".join({"TEXT2TOKEN_BENCH_PEFT_DROPOUT": ", peft's LoRA dropout"}.get(k, f", {k}={v}")
                               for k, v in m.get("env", {}).items()))
            if m["exit"] != 0:
                print(f"| {label} | failed (exit {m['exit']}) | | | | | | |")
                continue
            print(f"| {label} | {m['peak_gib']:.2f} GiB | {p['imports']['rss_after_gib']:.2f} GiB | "
                  f"{p['load_backbone']['peak_gib']:.2f} / {p['load_backbone']['rss_after_gib']:.2f} GiB | "
                  f"{p['train_stage']['peak_gib']:.2f} GiB | {m['weights_gib']:.2f} GiB | {m['steps']} | "
                  f"{' / '.join(f'{t:.1f}' for t in m['step_times'])} |")


if __name__ == "__main__":
    sys.exit(main())
