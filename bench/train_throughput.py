"""Training throughput, measured side by side: Text2Token step vs SimCSE step, stage 2 vs stage 1,
length-grouped vs random batches, bf16 autocast vs fp32; and a check that stored sparse stage-2
targets give the dense loss.

Every timed step is the Trainer's step on the package's own modules: the collator
(``text2token.training.Collator`` / ``TextCollator``: tokenise and pad), the loss module
(``TokenTargetObjective`` / ``contrastive.SimCSEObjective``) forward, backward, grad-norm clip 1.0,
the optimizer the Trainer builds from ``training_arguments`` (AdamW), ``zero_grad``. One backbone
with one LoRA (``add_lora``, r=16 on all linear layers) serves both objectives; before a SimCSE
step the attention dropout is set to ``simcse_dropout`` (0.3) as ``prepare_dropout`` does, and
back to the backbone's 0.0 before a Text2Token step. Both use mean pooling and causal attention.
In round r both sides get the same texts (the r-th batch of the same corpus slice), and the sides
alternate A B A B, so machine drift cancels in the per-round ratio.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_throughput.py                 # SmolLM2, batch 32 x 64
    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_throughput.py --sections simcse stage2 --rounds 5
    .venv/bin/python bench/train_throughput.py --tiny                            # a tiny random model, seconds

Sections: ``simcse`` (texts/s ratio, goal >= 2.0), ``stage2`` (stage-2 step / stage-1 step, goal
<= 1.05, plus the sparse-vs-dense loss check, goal |diff| < 1e-4, on real teacher outputs),
``grouping`` (length-grouped batches, transformers' ``LengthGroupedSampler``, vs random batches),
``bf16`` (bf16 autocast, as ``TrainingArguments(bf16=True)`` runs it on a CPU, vs fp32),
``collate`` (share of a step spent tokenising: what caching tokenised texts could save),
``dropout`` (LoRA dropout folded into A, ``training.fold_lora_dropout``, vs peft's). glibc's
malloc settings are compared in separate processes by bench/targets_memory.py (in one process the
heap grown by earlier steps serves later ones whatever the setting).
The last line is JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import perf_common as pc  # noqa: E402

SECTIONS = ("simcse", "stage2", "grouping", "bf16", "collate", "dropout")


class Bench:
    """One backbone, one LoRA, the optimizer the Trainer would build, and step functions."""

    def __init__(self, model, tokenizer, batch_size: int, max_length: int, workdir: Path):
        from transformers import Trainer

        from text2token.config import TrainConfig
        from text2token.contrastive import SimCSEObjective, set_attention_dropout
        from text2token.pooling import TextEncoder
        from text2token.training import (Collator, TextCollator, TokenTargetObjective, add_lora,
                                         training_arguments)

        self.config = TrainConfig(batch_size=batch_size, max_length=max_length, steps=10)
        for p in model.parameters():
            p.requires_grad_(False)
        torch.manual_seed(0)
        self.peft_model = add_lora(model, self.config)
        self.tokenizer = tokenizer
        self.encoder = TextEncoder(tokenizer, "mean", max_length)
        self.t2t = TokenTargetObjective(self.peft_model, "mean").train()
        self.simcse = SimCSEObjective(self.peft_model, "mean", self.config.simcse_temperature).train()
        self.collate_t2t, self.collate_texts = Collator(self.encoder), TextCollator(self.encoder)
        self.set_dropout = lambda p: set_attention_dropout(self.peft_model, p)
        self.trainable = [p for p in self.peft_model.parameters() if p.requires_grad]
        args = training_arguments(self.config, "data", workdir)
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
        self.optimizer_name = f"{cls.__name__}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
        self.optimizer = cls(self.trainable, **kwargs)
        self.max_grad_norm = args.max_grad_norm

    def step(self, objective: str, rows: list[dict], bf16: bool = False, pack=None) -> float:
        """One training step on ``rows`` (dicts with ``text``, and ``target`` for Text2Token); returns the loss.

        ``pack``: a ``saved_tensors_hooks`` pack function to see what the forward pass keeps for backward."""
        import contextlib

        if objective == "simcse":
            self.set_dropout(self.config.simcse_dropout)
            batch, module = self.collate_texts(rows), self.simcse
        else:
            self.set_dropout(0.0)
            batch, module = self.collate_t2t(rows), self.t2t
        hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t) if pack else contextlib.nullcontext()
        with hooks, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = module(**batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())


def stage1_rows(texts: list[str], tokenizer) -> list[dict]:
    from text2token.targets import DataDrivenTargets

    targets = DataDrivenTargets(tokenizer)(texts)
    return [{"text": t, "target": q} for t, q in zip(texts, targets) if len(q[0])]


def batches_of(rows: list, size: int) -> list[list]:
    return [rows[i:i + size] for i in range(0, len(rows) - size + 1, size)]


def section_simcse(bench: Bench, batches: list, rounds: int) -> dict:
    # both sides of a round use the same batch (the r-th); the last batch is the warm-up's
    times = {"text2token": [], "simcse": []}
    bench.step("text2token", batches[-1]), bench.step("simcse", batches[-1])  # warm-up
    for r in range(rounds):
        for name in ("text2token", "simcse"):
            t0 = time.perf_counter()
            bench.step(name, batches[r % (len(batches) - 1)])
            times[name].append(time.perf_counter() - t0)
    speed = pc.ratios(times, "simcse", "text2token")  # equal texts per step: time ratio = texts/s ratio
    size = len(batches[0])
    return {"text2token_texts_per_s": size * len(times["text2token"]) / sum(times["text2token"]),
            "simcse_texts_per_s": size * len(times["simcse"]) / sum(times["simcse"]),
            "ratio": pc.summary(speed), "ratio_rounds": speed, "times": times, "goal": ">= 2.0",
            "met": pc.summary(speed)["median"] >= 2.0}


def teacher_outputs(model, tokenizer, texts: list[str], background_texts: list[str], batch_size: int,
                    max_length: int, tau: float):
    """Real teacher outputs with the package's stage-2 code: background, sparse targets, dense targets."""
    from text2token.model import Text2TokenModel, embed, vocab_logits
    from text2token.targets import background_distribution, model_derived_target, teacher_targets
    from text2token.targets.model_derived import mean_teacher_logits

    teacher = Text2TokenModel(model, tokenizer, "mean", "causal", max_length, name="teacher")
    model.eval()
    t0 = time.perf_counter()
    background = background_distribution(mean_teacher_logits(teacher, background_texts, batch_size, False),
                                         len(background_texts))
    t_background = time.perf_counter() - t0
    t0 = time.perf_counter()
    sparse, kept = teacher_targets(teacher, texts, background, tau, batch_size, show_progress=False)
    t_targets = time.perf_counter() - t0
    with torch.inference_mode():
        dense = []
        for index, batch in teacher.batches(texts, batch_size):
            probs = torch.softmax(vocab_logits(model, embed(model, batch, "mean")), -1)
            dense.append((index, model_derived_target(probs, background, tau)))
    q = torch.zeros(len(texts), dense[0][1].shape[1])
    for index, rows in dense:
        q[torch.as_tensor(index)] = rows
    return background, sparse, kept, q, {"background_s": t_background, "background_texts": len(background_texts),
                                         "targets_s": t_targets, "target_texts": len(texts)}


def loss_check(bench: Bench, texts: list[str], sparse: list, dense: torch.Tensor) -> dict:
    """kl_loss on the stored sparse targets vs dense_kl_loss on the full q_M, for the student's real logits."""
    from text2token.model import embed, vocab_logits
    from text2token.objective import dense_kl_loss, kl_loss, pad_targets

    diffs, values = [], []
    bench.peft_model.eval()
    with torch.inference_mode():
        for a in range(0, len(texts), bench.config.batch_size):
            batch = bench.encoder(texts[a:a + bench.config.batch_size])
            logits = vocab_logits(bench.peft_model, embed(bench.peft_model, batch, "mean"))
            ids, w = pad_targets(sparse[a:a + len(batch["input_ids"])])
            s = kl_loss(logits, ids, w).item()
            d = dense_kl_loss(logits, dense[a:a + len(batch["input_ids"])]).item()
            diffs.append(abs(s - d))
            values.append(d)
    bench.peft_model.train()
    return {"max_abs_diff": max(diffs), "losses": values, "goal": "< 1e-4", "met": max(diffs) < 1e-4}


def section_stage2(bench: Bench, model, tokenizer, rows: list[dict], background_texts: list[str],
                   rounds: int, tau: float) -> dict:
    size = bench.config.batch_size
    texts = [r["text"] for r in rows[: size * (rounds + 1)]]
    bench.peft_model.eval()
    with bench.peft_model.disable_adapter():  # the teacher: the backbone as it is (the stage-1 model in a run)
        background, sparse, kept, dense, cost = teacher_outputs(bench.peft_model, tokenizer, texts, background_texts,
                                                                size, bench.config.max_length, tau)
    bench.peft_model.train()
    s1 = batches_of(rows[: len(texts)], size)
    s2 = batches_of([{"text": t, "target": q} for t, q in zip(texts, sparse)], size)
    times = {"stage1": [], "stage2": []}
    bench.step("text2token", s1[-1]), bench.step("text2token", s2[-1])
    for r in range(rounds):
        for name, batches in (("stage1", s1), ("stage2", s2)):
            t0 = time.perf_counter()
            bench.step("text2token", batches[r])
            times[name].append(time.perf_counter() - t0)
    slow = pc.ratios(times, "stage2", "stage1")
    check = loss_check(bench, texts, sparse, dense)
    widths = {"stage1": sum(len(r["target"][0]) for r in rows[: len(texts)]) / len(texts),
              "stage2": sum(len(q[0]) for q in sparse) / len(texts)}
    step_per_text = sum(times["stage2"]) / (rounds * size)
    return {"ratio": pc.summary(slow), "ratio_rounds": slow, "times": times, "goal": "<= 1.05",
            "met": pc.summary(slow)["median"] <= 1.05, "mean_target_tokens": widths, "kept_mass": kept,
            "teacher": {**cost, "targets_s_per_text": cost["targets_s"] / len(texts),
                        "share_of_a_step_per_text": (cost["targets_s"] / len(texts)) / step_per_text},
            "loss_check": check}


def section_grouping(bench: Bench, rows: list[dict], rounds: int, steps: int) -> dict:
    """Random batches (the Trainer's default sampler) vs transformers' LengthGroupedSampler, same texts."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    size = bench.config.batch_size
    lengths = [len(ids) for ids in bench.encoder.token_ids([r["text"] for r in rows])]
    g = torch.Generator().manual_seed(0)
    random_order = torch.randperm(len(rows), generator=g).tolist()
    grouped_order = list(LengthGroupedSampler(size, lengths=lengths, generator=torch.Generator().manual_seed(0)))
    sides = {}
    for name, order in (("random", random_order), ("grouped", grouped_order)):
        idx = [order[i:i + size] for i in range(0, len(order) - size + 1, size)]
        padded = sum(len(b) * max(lengths[i] for i in b) for b in idx)
        real = sum(lengths[i] for b in idx for i in b)
        sides[name] = {"batches": [[rows[i] for i in b] for b in idx], "padded_tokens": padded, "real_tokens": real}
    pick = random.Random(1)
    plan = {name: [pick.randrange(len(s["batches"])) for _ in range(rounds * steps)] for name, s in sides.items()}
    times = {"random": [], "grouped": []}
    bench.step("text2token", sides["random"]["batches"][0])
    for r in range(rounds):
        for name in ("random", "grouped"):
            t0 = time.perf_counter()
            for j in plan[name][r * steps:(r + 1) * steps]:
                bench.step("text2token", sides[name]["batches"][j])
            times[name].append(time.perf_counter() - t0)
    speed = pc.ratios(times, "random", "grouped")
    return {"ratio": pc.summary(speed), "ratio_rounds": speed, "times": times, "steps_per_round": steps,
            "total_ratio": sum(times["random"]) / sum(times["grouped"]),
            "pool_texts": len(rows),
            "padding_efficiency": {n: s["real_tokens"] / s["padded_tokens"] for n, s in sides.items()},
            "padded_tokens_ratio": sides["random"]["padded_tokens"] / sides["grouped"]["padded_tokens"]}


def section_bf16(bench: Bench, batches: list, rounds: int) -> dict:
    times = {"fp32": [], "bf16": []}
    bench.step("text2token", batches[-1]), bench.step("text2token", batches[-1], bf16=True)
    for r in range(rounds):
        for name in ("fp32", "bf16"):
            t0 = time.perf_counter()
            bench.step("text2token", batches[r % (len(batches) - 1)], bf16=name == "bf16")
            times[name].append(time.perf_counter() - t0)
    speed = pc.ratios(times, "fp32", "bf16")
    return {"ratio": pc.summary(speed), "ratio_rounds": speed, "times": times}


def section_dropout(bench: Bench, batches: list, rounds: int) -> dict:
    """peft's LoRA dropout vs the same dropout folded into A (``training.fold_lora_dropout``, the default).

    Each mode runs an untimed step after the switch, then the timed one: switching from the lean mode to
    the hungry one otherwise makes the first step fault in fresh memory."""
    from text2token.training import fold_lora_dropout

    times = {"peft_dropout": [], "folded": []}
    peaks = {"peft_dropout": [], "folded": []}
    for r in range(rounds + 1):
        for name in ("peft_dropout", "folded"):
            fold_lora_dropout(bench.peft_model, enable=name == "folded")
            # one untimed step after each switch: the allocator settles into this mode's footprint
            bench.step("text2token", batches[(r + 1) % len(batches)])
            before = pc.rss()
            pc.reset_peak()
            t0 = time.perf_counter()
            bench.step("text2token", batches[r % len(batches)])
            if r:  # round 0 warms up
                times[name].append(time.perf_counter() - t0)
                peaks[name].append(pc.gib(pc.peak_rss() - before))
    fold_lora_dropout(bench.peft_model, enable=True)
    slow = pc.ratios(times, "folded", "peft_dropout")
    return {"time_ratio": pc.summary(slow), "time_ratio_rounds": slow, "times": times, "step_rise_gib": peaks}


def section_collate(bench: Bench, batches: list, rounds: int) -> dict:
    t0 = time.perf_counter()
    for b in batches:
        bench.collate_t2t(b)
    collate = (time.perf_counter() - t0) / len(batches)
    t0 = time.perf_counter()
    for r in range(rounds):
        bench.step("text2token", batches[r % len(batches)])
    step = (time.perf_counter() - t0) / rounds
    return {"collate_s": collate, "step_s": step, "share": collate / step}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny random model and built-in texts (seconds)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--rounds", type=int, default=4, help="A B rounds per comparison (default 4)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--background", type=int, default=256, help="texts for the stage-2 background (default 256)")
    parser.add_argument("--group-pool", type=int, default=200,
                        help="batches in the pool the grouping draws from (default 200: 6,400 texts, so "
                             "LengthGroupedSampler sorts megabatches of 50 batches, as in a long run)")
    parser.add_argument("--group-steps", type=int, default=3, help="steps per timed round in the grouping section")
    parser.add_argument("--tau", type=float, default=1e-5)
    args = parser.parse_args(argv)

    started = time.time()
    size = args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            from text2token.backbone import load_backbone

            model, tokenizer, _ = load_backbone(pc.tiny_backbone(Path(tmp) / "tiny"))
            texts = pc.tiny_sentences(size * max(args.group_pool, args.rounds + 2) + args.background)
        else:
            model, tokenizer = pc.load_smollm2()
            texts = pc.real_sentences(size * max(args.group_pool, args.rounds + 2) + args.background)
        background_texts, texts = texts[: args.background], texts[args.background:]
        bench = Bench(model, tokenizer, size, args.max_length, Path(tmp) / "args")
        rows = stage1_rows(texts, tokenizer)
        batches = batches_of(rows[: size * (args.rounds + 1)], size)
        result = {"machine": pc.machine(), "batch_size": size, "max_length": args.max_length, "tiny": args.tiny,
                  "optimizer": bench.optimizer_name,
                  "trainable_params": sum(p.numel() for p in bench.trainable)}
        for section in args.sections:
            t0 = time.time()
            if section == "simcse":
                result[section] = section_simcse(bench, batches, args.rounds)
            elif section == "stage2":
                result[section] = section_stage2(bench, model, tokenizer, rows, background_texts, args.rounds,
                                                 args.tau)
            elif section == "grouping":
                result[section] = section_grouping(bench, rows[: size * args.group_pool], args.rounds,
                                                   args.group_steps)
            elif section == "bf16":
                result[section] = section_bf16(bench, batches, args.rounds)
            elif section == "dropout":
                result[section] = section_dropout(bench, batches, args.rounds)
            elif section == "collate":
                result[section] = section_collate(bench, batches, max(1, args.rounds // 2))
            result[section]["seconds"] = round(time.time() - t0, 1)
            print(f"[{section} done in {result[section]['seconds']} s] {json.dumps(result[section], default=float)}",
                  file=sys.stderr, flush=True)
    result["seconds"] = round(time.time() - started, 1)
    print_tables(result)
    print(json.dumps(result, default=float))
    return 0


def print_tables(r: dict) -> None:
    print(f"machine: {r['machine']}; batch {r['batch_size']} x max {r['max_length']} tokens; "
          f"optimizer {r['optimizer']}; {r['trainable_params'] / 1e6:.2f} M trainable")
    print("| comparison | measured (median of rounds, range) | goal | met |")
    print("|---|---|---|---|")
    if "simcse" in r:
        s = r["simcse"]
        print(f"| Text2Token step vs SimCSE step, texts/s | {pc.fmt_ratio(s['ratio_rounds'])} faster "
              f"({s['text2token_texts_per_s']:.2f} vs {s['simcse_texts_per_s']:.2f} texts/s) | >= 2.0x | "
              f"{'yes' if s['met'] else 'no'} |")
    if "stage2" in r:
        s = r["stage2"]
        print(f"| stage-2 step / stage-1 step, time | {pc.fmt_ratio(s['ratio_rounds'])} "
              f"(target tokens per text {s['mean_target_tokens']['stage2']:.1f} vs "
              f"{s['mean_target_tokens']['stage1']:.1f}) | <= 1.05x | {'yes' if s['met'] else 'no'} |")
        c = s["loss_check"]
        print(f"| stored sparse vs dense stage-2 loss, real teacher outputs | max abs diff {c['max_abs_diff']:.2e} "
              f"over {len(c['losses'])} batches (kept mass >= {s['kept_mass']:.7f}) | < 1e-4 | "
              f"{'yes' if c['met'] else 'no'} |")
        t = s["teacher"]
        print(f"| stage-2 teacher targets, once per text | {t['targets_s_per_text'] * 1000:.1f} ms per text "
              f"= {t['share_of_a_step_per_text']:.2f} of a stage-2 step's time per text | - | - |")
    if "grouping" in r:
        s = r["grouping"]
        print(f"| length-grouped vs random batches, texts/s | {s['total_ratio']:.2f}x faster over all "
              f"{len(s['ratio_rounds']) * s['steps_per_round']} steps of each; per round {pc.fmt_ratio(s['ratio_rounds'])} "
              f"(padding efficiency {s['padding_efficiency']['grouped']:.2f} vs {s['padding_efficiency']['random']:.2f};"
              f" padded tokens {s['padded_tokens_ratio']:.2f}x fewer) | - | - |")
    if "bf16" in r:
        print(f"| bf16 autocast vs fp32 Text2Token step, texts/s | {pc.fmt_ratio(r['bf16']['ratio_rounds'])} "
              f"faster | - | - |")
    if "dropout" in r:
        d = r["dropout"]
        print(f"| LoRA dropout folded into A vs peft's, step time | {pc.fmt_ratio(d['time_ratio_rounds'])} "
              f"(rise in RSS during a step {max(d['step_rise_gib']['folded']):.2f} vs "
              f"{max(d['step_rise_gib']['peft_dropout']):.2f} GiB) | - | - |")
    if "collate" in r:
        c = r["collate"]
        print(f"| tokenising + padding (collator) share of a step | {100 * c['share']:.2f} % "
              f"({c['collate_s'] * 1000:.1f} ms of {c['step_s']:.2f} s) | - | - |")


if __name__ == "__main__":
    sys.exit(main())
