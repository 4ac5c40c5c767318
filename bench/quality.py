"""The quality experiment: Text2Token against LLM2Vec-style SimCSE on the same backbone.

On the embedded SmolLM2-135M-Instruct and the Wikipedia sentences of ../shared/data/corpus, it
trains (a) Text2Token stage 1 only, (b) stage 1 + stage 2, (c) SimCSE on as many texts as (b),
(d) SimCSE for the wall-clock time of (b), and evaluates them with the untrained baselines (mean
and last+PromptEOL pooling, causal and bidirectional attention) on the quick offline suite
(`text2token eval --benchmark quick`: one small task per type, SciFact cut to 1,000 documents of at
most 1,000 characters). Then the ablations: pooling, attention, stage-2 τ, learning rate and steps,
each scored on STSBenchmark (or the tasks of --ablation-tasks).

    HF_HUB_OFFLINE=1 python bench/quality.py --work runs/quality            # main table
    HF_HUB_OFFLINE=1 python bench/quality.py --work runs/quality --ablations pooling attention tau lr steps

Everything is resumable: a finished run folder is reused, and scores are cached by
`text2token eval`'s score cache, so a rerun only does what is missing. Results (tables, training
time and texts seen per model, the exact command) are written to RESULTS.md (--results).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

BASELINES = {  # name -> (pooling, attention)
    "base mean causal": ("mean", "causal"),
    "base last causal": ("last", "causal"),
    "base mean bidirectional": ("mean", "bidirectional"),
    "base last bidirectional": ("last", "bidirectional"),
}
ABLATIONS = ("pooling", "attention", "tau", "lr", "steps")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="runs/quality", help="folder for the run folders and the timing log")
    p.add_argument("--data-dir", default="../shared/data", help="folder with corpus/ and evalsuite/")
    p.add_argument("--model", default=None, help="backbone (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--texts", type=int, default=20000, help="corpus texts to read (first lines of the corpus)")
    p.add_argument("--steps", type=int, default=60, help="stage-1 steps")
    p.add_argument("--stage2-steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64, help="training max length (evaluation uses 128)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--simcse-lr", type=float, default=None, help="SimCSE learning rate (default: --lr)")
    p.add_argument("--pooling", default="mean", choices=("mean", "last"))
    p.add_argument("--attention", default="causal", choices=("causal", "bidirectional"))
    p.add_argument("--tau", type=float, default=1e-5)
    p.add_argument("--benchmark", default="quick")
    p.add_argument("--ablations", nargs="*", default=None, choices=ABLATIONS,
                   help="run these ablations instead of the main table")
    p.add_argument("--ablation-tasks", nargs="+", default=["STSBenchmark"])
    p.add_argument("--results", default="RESULTS.md")
    p.add_argument("--skip-baselines", action="store_true")
    return p.parse_args(argv)


class Experiment:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.timing_path = self.work / "timings.json"
        self.timings = json.loads(self.timing_path.read_text()) if self.timing_path.is_file() else {}
        self.corpus = self.work / "corpus.txt"
        if not self.corpus.is_file():
            files = sorted((Path(args.data_dir) / "corpus").glob("*.txt"))
            if not files:
                sys.exit(f"quality: no corpus/*.txt under {args.data_dir}")
            lines = []
            with files[0].open(encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        lines.append(line.strip())
                    if len(lines) >= args.texts:
                        break
            self.corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def config(self, **overrides):
        a = self.args
        base = dict(model=a.model, data=[str(self.corpus)], pooling=a.pooling, attention=a.attention,
                    steps=a.steps, stage2_steps=a.stage2_steps, batch_size=a.batch_size,
                    max_length=a.max_length, lr=a.lr, tau=a.tau, background_samples=512,
                    save_steps=10_000, logging_steps=5, seed=42)
        base.update(overrides)
        return base

    def train(self, name, **overrides):
        """Train (or reuse) the run ``name``; return (run folder, seconds, texts seen)."""
        import text2token

        run = self.work / name
        cfg = self.config(**overrides)
        if name not in self.timings or not (run / "text2token_config.json").is_file():
            print(f"\n=== training {name}: {json.dumps({k: v for k, v in overrides.items()})}", flush=True)
            start = time.perf_counter()
            text2token.train(output=str(run), overwrite=True, **cfg)
            seconds = time.perf_counter() - start
            stages = ["simcse"] if cfg.get("objective") == "simcse" else cfg.get("stages", ["data", "model"])
            steps = sum(cfg["stage2_steps"] if s == "model" else cfg["steps"] for s in stages)
            self.timings[name] = {"seconds": seconds, "texts_seen": steps * cfg["batch_size"], "config": overrides}
            self.timing_path.write_text(json.dumps(self.timings, indent=1))
        t = self.timings[name]
        return run, t["seconds"], t["texts_seen"]

    def evaluate(self, refs, tasks=None, benchmark=None):
        """refs: list of (label, spec, pooling, attention); returns {label: {task: score x100}}, task info."""
        from text2token.evaluation import evaluate

        scores, info = {}, {}
        for label, spec, pooling, attention in refs:
            print(f"\n=== evaluating {label}", flush=True)
            res = evaluate([spec], tasks, benchmark=benchmark, data_dir=str(Path(self.args.data_dir) / "evalsuite"),
                           pooling=pooling, attention=attention, cache_dir=str(self.work / "eval-cache"),
                           show_progress=True)
            scores[label] = {r["task"]: 100 * r["main_score"] for r in res["results"]}
            info.update({t["name"]: t for t in res["tasks"]})
        return scores, info


def table(scores, info, extra=None):
    from text2token.evaluation.table import TYPE_ORDER

    tasks = sorted(info.values(), key=lambda t: (TYPE_ORDER.index(t["type"]) if t["type"] in TYPE_ORDER else 99,
                                                  t["name"]))
    types = list(dict.fromkeys(t["type"] for t in tasks))
    extra = extra or {}
    extra_cols = list(next(iter(extra.values()), {}).keys())
    head = ["Model", *extra_cols, "Mean (Task)", "Mean (TaskType)", *types,
            *(t["name"] + ("†" if t.get("cut") else "") for t in tasks)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for label, row in scores.items():
        per_task = [row.get(t["name"]) for t in tasks]
        per_type = [sum(row[t["name"]] for t in tasks if t["type"] == k) / sum(t["type"] == k for t in tasks)
                    for k in types]
        cells = [label, *(str(extra.get(label, {}).get(c, "")) for c in extra_cols),
                 f"{sum(per_task) / len(per_task):.2f}", f"{sum(per_type) / len(per_type):.2f}",
                 *(f"{v:.2f}" for v in per_type), *(f"{v:.2f}" for v in per_task)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main_table(exp):
    a = exp.args
    total_steps = a.steps + a.stage2_steps
    runs = {}
    runs["Text2Token stage 1"] = exp.train("t2t-s1", stages=["data"], steps=total_steps)
    runs["Text2Token stage 1 + 2"] = exp.train("t2t-s1s2")
    simcse = dict(objective="simcse", lr=a.simcse_lr or a.lr)
    runs["SimCSE (equal texts)"] = exp.train("simcse-texts", steps=total_steps, **simcse)
    # equal wall-clock: the steps SimCSE fits into stage 1 + 2's time, at its own measured pace
    t2t_seconds = runs["Text2Token stage 1 + 2"][1]
    per_step = runs["SimCSE (equal texts)"][1] / total_steps
    runs["SimCSE (equal time)"] = exp.train("simcse-time", steps=max(1, round(t2t_seconds / per_step)), **simcse)

    refs = [] if a.skip_baselines else [(n, a.model or "smollm2-135m-instruct", p, att)
                                         for n, (p, att) in BASELINES.items()]
    refs += [(label, str(run), None, None) for label, (run, _, _) in runs.items()]
    scores, info = exp.evaluate(refs, benchmark=a.benchmark)
    extra = {label: {"train time (s)": f"{sec:.0f}", "texts seen": texts} for label, (_, sec, texts) in runs.items()}
    extra.update({n: {"train time (s)": "0", "texts seen": 0} for n, *_ in refs if n in BASELINES})
    return table(scores, info, extra)


def ablation(exp, name):
    a = exp.args
    tasks = a.ablation_tasks
    variants = {
        "pooling": [("mean", dict(pooling="mean")), ("last", dict(pooling="last"))],
        "attention": [("causal", dict(attention="causal")), ("bidirectional", dict(attention="bidirectional"))],
        "tau": [(f"tau={t:g}", dict(tau=t)) for t in (1e-5, 1e-3, 1e-1)],
        "lr": [(f"lr={lr:g}", dict(lr=lr)) for lr in (5e-5, 1e-4, 3e-4)],
        "steps": [(f"steps={s}", dict(stages=["data"], steps=s)) for s in (30, 60, 120)],
    }[name]
    refs, extra = [], {}
    for label, overrides in variants:
        run_name = f"abl-{name}-{label}".replace("=", "")
        base = dict(pooling=a.pooling, attention=a.attention, tau=a.tau, lr=a.lr, stages=["data", "model"])
        base.update(overrides)
        differs = {k: v for k, v in base.items() if v != exp.config().get(k, None) or k in overrides}
        run, seconds, texts = exp.train(run_name, **differs)
        refs.append((f"{name}: {label} (stage 1{' + 2' if 'model' in base['stages'] else ''})", str(run), None, None))
        extra[refs[-1][0]] = {"train time (s)": f"{seconds:.0f}", "texts seen": texts}
    scores, info = exp.evaluate(refs, tasks=tasks)
    return table(scores, info, extra)


def main(argv=None):
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    exp = Experiment(args)
    command = "HF_HUB_OFFLINE=1 python bench/quality.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    sections = []
    if args.ablations is None:
        sections.append(("Main table", main_table(exp)))
    else:
        for name in args.ablations:
            sections.append((f"Ablation: {name}", ablation(exp, name)))
    text = "\n\n".join(f"### {title}\n\n`{command}`\n\n{body}" for title, body in sections)
    print("\n" + text)
    out = Path(args.results)
    with out.open("a", encoding="utf-8") as f:
        f.write(f"\n<!-- {time.strftime('%Y-%m-%d %H:%M')} -->\n{text}\n")
    print(f"\nappended to {out}")


if __name__ == "__main__":
    main()
