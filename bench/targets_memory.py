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

    mark("imports")
    config = TrainConfig(data=[args.data], batch_size=args.batch_size, max_length=args.max_length, steps=args.steps,
                         stages=["data"], gradient_checkpointing=args.gc, bf16=args.bf16, save_steps=10**6,
                         logging_steps=1, model=args.model)
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
    print(json.dumps({"phases": phases, "weights_gib": pc.gib(weights), "train_s": seconds,
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


RUNS = {  # name: (batch, max_length, gradient checkpointing, bf16, extra environment)
    "32x64": (32, 64, False, False, {}),
    "32x128": (32, 128, False, False, {}),
    "32x128gc": (32, 128, True, False, {}),
    "32x64bf16": (32, 64, False, True, {}),
    "32x64gc": (32, 64, True, False, {}),
    # glibc malloc with a fixed mmap threshold: large freed blocks go back to the system at once
    # instead of staying in the heap (the dynamic threshold rises to the size of freed blocks)
    "32x64mmap": (32, 64, False, False, {"MALLOC_MMAP_THRESHOLD_": "131072"}),
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
        else:
            record["log_tail"] = log[-2000:]
        out[name] = record
        print(f"[{name}: peak {record['peak_gib']:.2f} GiB, {seconds:.0f} s, exit {code}]", file=sys.stderr, flush=True)
    default = out.get("32x64")
    return {"runs": out, "goal": "<= 4 GiB for 32x64", "met": None if default is None else default["peak_gib"] <= 4}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--parts", nargs="+", choices=("targets", "memory"), default=["targets", "memory"])
    parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=["32x64", "32x128", "32x128gc"])
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
    result["seconds"] = round(time.time() - started, 1)
    print_tables(result)
    print(json.dumps(result, default=float))
    return 0


def print_tables(r: dict) -> None:
    print(f"machine: {r['machine']}")
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
              "fp32 weights | steps | train s |")
        print("|---|---|---|---|---|---|---|---|")
        for name, m in r["memory"]["runs"].items():
            p = m.get("phases", {})
            label = (f"batch {m['batch']} x {m['max_length']}" + (", gradient checkpointing" if m["gradient_checkpointing"]
                                                                   else "") + (", bf16" if m["bf16"] else "")
                     + "".join(f", {k}={v}" for k, v in m.get("env", {}).items()))
            if m["exit"] != 0:
                print(f"| {label} | failed (exit {m['exit']}) | | | | | | |")
                continue
            print(f"| {label} | {m['peak_gib']:.2f} GiB | {p['imports']['rss_after_gib']:.2f} GiB | "
                  f"{p['load_backbone']['peak_gib']:.2f} / {p['load_backbone']['rss_after_gib']:.2f} GiB | "
                  f"{p['train_stage']['peak_gib']:.2f} GiB | {m['weights_gib']:.2f} GiB | {m['steps']} | "
                  f"{m['train_s']:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
