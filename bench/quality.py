"""The quality experiment: Text2Token against LLM2Vec-style SimCSE on the same backbone.

On the embedded SmolLM2-135M-Instruct and the Wikipedia sentences of ../shared/data/corpus, it
trains (a) Text2Token stage 1 only, (b) stage 1 + stage 2, (b') the same with last pooling and the
PromptEOL template, (c) SimCSE on as many texts as (b), (d) SimCSE for the wall-clock time of (b),
(c') and (d') the same numbers of SimCSE steps as (c) and (d) with last pooling and the template,
and evaluates them with the untrained baselines (mean and last+PromptEOL pooling, causal and
bidirectional attention) on the quick offline suite
(`text2token eval --benchmark quick`: one small task per type, SciFact cut to 1,000 documents of at
most 1,000 characters). Then the ablations: pooling, attention, stage-2 τ, learning rate and steps,
each scored on STSBenchmark and TwitterSemEval2015 (or the tasks of --ablation-tasks). Every run
holds its learning rate constant (--lr-scheduler) and trains with bf16 autocast (--no-bf16 for fp32).

    HF_HUB_OFFLINE=1 python -m bench.quality --work runs/quality            # main table
    HF_HUB_OFFLINE=1 python -m bench.quality --work runs/quality --ablations pooling attention tau lr steps

Cheap where it can be: an ablation value equal to the main recipe reuses the main run, τ variants
train only stage 2 on top of the main run's stage 1, and the steps ablation evaluates the kept
checkpoints of the main stage-1 and SimCSE runs (constant rate: a checkpoint at step k is that run
stopped at k). Everything is resumable: a finished run folder is reused, and scores are cached by
`text2token eval`'s score cache, so a rerun only does what is missing. Results (tables, training
time and texts seen per model, the exact command) are written to RESULTS.md (--results).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from pathlib import Path

from text2token.runfolder import STAGE_DIRS, STAGE_SUMMARY, RunFolder

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
    p.add_argument("--lr-scheduler", default="constant",
                   help="the demo's constant rate (linear decay over so few steps halves the mean rate)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast for every training run (about 2x faster on this CPU); --no-bf16 for fp32")
    p.add_argument("--save-steps", type=int, default=20,
                   help="checkpoint every N steps, all kept (the steps ablation evaluates them)")
    p.add_argument("--simcse-lr", type=float, default=None, help="SimCSE learning rate (default: --lr)")
    p.add_argument("--pooling", default="mean", choices=("mean", "last"))
    p.add_argument("--attention", default="causal", choices=("causal", "bidirectional"))
    p.add_argument("--tau", type=float, default=1e-5)
    p.add_argument("--benchmark", default="quick")
    p.add_argument("--tasks", nargs="+", default=None, help="main-table tasks instead of --benchmark")
    p.add_argument("--ablations", nargs="*", default=None, choices=ABLATIONS,
                   help="run these ablations instead of the main table")
    p.add_argument("--ablation-tasks", nargs="+", default=["STSBenchmark", "TwitterSemEval2015"])
    p.add_argument("--results", default="RESULTS.md")
    p.add_argument("--skip-baselines", action="store_true")
    p.add_argument("--long", action="store_true",
                   help="the longer-training comparison instead of the main table: stage 1 + 2 at --steps/--stage2-steps "
                        "against SimCSE at equal wall-clock, both at --pooling, with a learning curve from checkpoints")
    p.add_argument("--curve-every", type=int, default=40, help="--long: checkpoint spacing of the learning curve")
    p.add_argument("--simcse-steps", type=int, default=None,
                   help="--long: SimCSE steps (default: stage 1 + 2's time at SimCSE's pace measured by an earlier "
                        "SimCSE run of this work folder with the same pooling, batch and length)")
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
                    max_length=a.max_length, lr=a.lr, lr_scheduler=a.lr_scheduler,
                    precision="bf16" if a.bf16 else "fp32", tau=a.tau,
                    background_samples=512, save_steps=a.save_steps, save_total_limit=1000, logging_steps=5,
                    seed=42, stages=["data", "model"], contrastive_weight=0.0,  # this experiment's recipes: the KL alone
                    stop_words="nltk", gradient_checkpointing=False)  # the defaults when it ran (2026-11-29)
        base.update(overrides)
        return base

    def train(self, name, **overrides):
        """Train (or reuse) the run ``name``; return (run folder, seconds, texts seen)."""
        import text2token

        cfg = self.config(**overrides)
        same = self.same_as(cfg, name)
        if same is not None:
            return same
        name = self.unique_name(name, cfg)
        run = self.work / name
        if name not in self.timings or not RunFolder(run).is_finished():
            print(f"\n=== training {name}: {json.dumps({k: v for k, v in overrides.items()})}", flush=True)
            start = time.perf_counter()
            text2token.train(output=str(run), overwrite=True, **cfg)
            seconds = time.perf_counter() - start
            stages = ["simcse"] if cfg.get("objective") == "simcse" else cfg.get("stages", ["data", "model"])
            steps = sum(cfg["stage2_steps"] if s == "model" else cfg["steps"] for s in stages)
            self.record(name, seconds, steps * cfg["batch_size"], overrides, cfg)
        t = self.timings[name]
        return run, t["seconds"], t["texts_seen"]

    def trained(self, name):
        """A run trained earlier in this work folder: (run folder, seconds, texts seen)."""
        t = self.timings.get(name)
        if t is None or not RunFolder(self.work / name).is_finished():
            sys.exit(f"quality: run {name} is missing from {self.work}: run the main table first")
        return self.work / name, t["seconds"], t["texts_seen"]

    def record(self, name, seconds, texts_seen, overrides, cfg, **extra):
        self.timings[name] = {"seconds": seconds, "texts_seen": texts_seen, "config": overrides, "full": cfg, **extra}
        self.timing_path.write_text(json.dumps(self.timings, indent=1))

    def unique_name(self, name, cfg):
        """``name``, or ``name`` with a hash of ``cfg`` when the work folder already holds a run of that name trained
        otherwise (an ablation rerun with another --pooling, for example)."""
        recorded = self.timings.get(name, {}).get("full")
        if recorded is None or recorded == cfg:
            return name
        digest = hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]
        return f"{name}-{digest}"

    def same_as(self, cfg, name):
        """The trained run (folder, seconds, texts seen) with configuration ``cfg`` under another name, if any:
        an ablation value equal to the main recipe reuses the main run."""
        for other, t in self.timings.items():
            if other != name and t.get("full") == cfg and RunFolder(self.work / other).is_finished():
                print(f"=== {name}: same configuration as {other}, reusing it", flush=True)
                return self.trained(other)
        return None

    def train_stage2_from(self, name, source, **overrides):
        """Stage 2 only, on top of the finished stage 1 of run ``source`` (same stage-1 settings): a τ ablation
        costs a stage-2 run, not a whole run. Time and texts seen count both stages."""
        import shutil

        import text2token
        from text2token.config import TrainConfig

        cfg = self.config(**overrides)
        same = self.same_as(cfg, name)
        if same is not None:
            return same
        src_run, _, _ = self.trained(source)
        name = self.unique_name(name, cfg)
        run = self.work / name
        if name not in self.timings or not RunFolder(run).is_finished():
            print(f"\n=== training {name} (stage 2 on {source}'s stage 1): {json.dumps(overrides)}", flush=True)
            config = TrainConfig(**cfg, output=str(run))
            RunFolder(config.output).prepare(config, resume=False, overwrite=True)
            shutil.copytree(src_run / STAGE_DIRS["data"], run / STAGE_DIRS["data"],
                            ignore=shutil.ignore_patterns("checkpoints"))
            start = time.perf_counter()
            text2token.train(config, resume=True)
            stage1_seconds = json.loads((src_run / STAGE_DIRS["data"] / STAGE_SUMMARY).read_text())["seconds"]
            self.record(name, stage1_seconds + time.perf_counter() - start,
                        (cfg["steps"] + cfg["stage2_steps"]) * cfg["batch_size"], overrides, cfg, stage1_from=source)
        t = self.timings[name]
        return run, t["seconds"], t["texts_seen"]

    def checkpoint_run(self, name, source, step, stage=None):
        """A run folder holding checkpoint ``step`` of the one-stage run ``source``, or of its first ``stage``
        (constant learning rate, so its weights are those of that run stopped there). Time: the stage's time,
        pro rata."""
        import shutil

        src_run, src_seconds, _ = self.trained(source)
        src = RunFolder(src_run)
        src_record = src.read_record()
        if stage is None:
            (stage,) = src_record["stages"]
        elif stage != src_record["stages"][0]:
            sys.exit(f"quality: {stage} is not the first stage of {source}")
        if len(src_record["stages"]) > 1:  # the first stage's own time
            src_seconds = src_record["training"]["stages"][stage]["seconds"]
        run = self.work / name
        if name not in self.timings or not RunFolder(run).is_finished():
            shutil.rmtree(run, ignore_errors=True)
            try:
                src.checkpoint_as_run(step, run, stage)
            except Exception as exc:  # an incomplete checkpoint: train the source with --save-steps dividing step
                sys.exit(f"quality: {exc}")
            total = src_record["hyperparameters"]["steps"]
            self.record(name, src_seconds * step / total, step * src_record["hyperparameters"]["batch_size"],
                        {"steps": step}, None, checkpoint_of=source)
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


def runs_table(exp, runs, tasks=None, benchmark=None, baselines=()):
    """Evaluate trained runs ``{label: (run folder, seconds, texts seen)}`` and untrained ``baselines``
    (refs as for :meth:`Experiment.evaluate`), and return the table with train time and texts seen."""
    refs = list(baselines) + [(label, str(run), None, None) for label, (run, _, _) in runs.items()]
    scores, info = exp.evaluate(refs, tasks=tasks, benchmark=benchmark)
    extra = {label: {"train time (s)": f"{sec:.0f}", "texts seen": texts} for label, (_, sec, texts) in runs.items()}
    extra.update({label: {"train time (s)": "0", "texts seen": 0} for label, *_ in baselines})
    return table(scores, info, extra)


def main_table(exp):
    a = exp.args
    total_steps = a.steps + a.stage2_steps
    runs = {}
    runs["Text2Token stage 1"] = exp.train("t2t-s1", stages=["data"], steps=total_steps)
    runs["Text2Token stage 1 + 2"] = exp.train("t2t-s1s2")
    if a.pooling != "last":  # the untrained model is strongest with last + PromptEOL: train that too
        runs["Text2Token stage 1 + 2, last + PromptEOL"] = exp.train("t2t-s1s2-last", pooling="last")
    simcse = dict(objective="simcse", lr=a.simcse_lr or a.lr)
    runs["SimCSE (equal texts)"] = exp.train("simcse-texts", steps=total_steps, **simcse)
    if a.pooling != "last":  # the equal-texts peer of (b')
        runs["SimCSE (equal texts), last + PromptEOL"] = exp.train("simcse-texts-last", steps=total_steps,
                                                                   pooling="last", **simcse)
    # equal wall-clock: the steps SimCSE fits into stage 1 + 2's time, at its own measured pace
    t2t_seconds = runs["Text2Token stage 1 + 2"][1]
    per_step = runs["SimCSE (equal texts)"][1] / total_steps
    time_steps = max(1, round(t2t_seconds / per_step))
    runs["SimCSE (equal time)"] = exp.train("simcse-time", steps=time_steps, **simcse)
    if a.pooling != "last":  # the fair peer of (b'): SimCSE with the same pooling and prompt, as many steps as (d)
        runs["SimCSE (equal time), last + PromptEOL"] = exp.train("simcse-time-last", steps=time_steps, pooling="last",
                                                                  **simcse)

    baselines = [] if a.skip_baselines else [(n, a.model or "smollm2-135m-instruct", p, att)
                                              for n, (p, att) in BASELINES.items()]
    return runs_table(exp, runs, a.tasks, None if a.tasks else a.benchmark, baselines)


def simcse_pace(exp, cfg):
    """Seconds per step of an earlier SimCSE run in this work folder trained like ``cfg`` would be (same pooling,
    attention, batch, length, precision), or None."""
    keys = ("pooling", "attention", "batch_size", "max_length", "precision")
    paces = [t["seconds"] / t["full"]["steps"] for t in exp.timings.values()
             if (t.get("full") or {}).get("objective") == "simcse" and all(t["full"].get(k) == cfg[k] for k in keys)]
    return max(paces) if paces else None  # the slowest: never give SimCSE less time than Text2Token had


def long_table(exp):
    """Stage 1 + 2 at --steps/--stage2-steps against SimCSE at equal wall-clock, both at --pooling: the full suite
    on stage 1 (its last checkpoint), stage 1 + 2 and SimCSE, and a learning curve on --ablation-tasks from the
    checkpoints every --curve-every steps."""
    a = exp.args
    tag = f"{a.pooling}-{a.steps}-{a.stage2_steps}"
    t2t = exp.train(f"long-t2t-s1s2-{tag}")
    t2t_name = t2t[0].name  # the run's own name: an identical earlier run is reused under its name
    simcse = dict(objective="simcse", lr=a.simcse_lr or a.lr)
    steps = a.simcse_steps
    if steps is None:
        pace = simcse_pace(exp, exp.config(**simcse))
        if pace is None:
            sys.exit("quality: --long needs SimCSE's pace: run the main table with this --pooling first, or pass "
                     "--simcse-steps")
        steps = max(1, round(t2t[1] / pace))
    sim = exp.train(f"long-simcse-{a.pooling}-{steps}", steps=steps, **simcse)
    simcse_name = sim[0].name
    s1 = exp.checkpoint_run(f"{t2t_name}-stage1", t2t_name, a.steps, stage="data")
    prompt = ", last + PromptEOL" if a.pooling == "last" else ""
    runs = {f"Text2Token stage 1 (step {a.steps}){prompt}": s1,
            f"Text2Token stage 1 + 2 ({a.steps} + {a.stage2_steps}){prompt}": t2t,
            f"SimCSE (equal time, {steps} steps){prompt}": sim}
    main = runs_table(exp, runs, a.tasks, None if a.tasks else a.benchmark)

    curve = {}
    for k in range(a.curve_every, a.steps, a.curve_every):
        curve[f"Text2Token stage 1, step {k}"] = exp.checkpoint_run(f"{t2t_name}-stage1-{k}", t2t_name, k, stage="data")
    curve[f"Text2Token stage 1, step {a.steps}"] = s1
    curve[f"Text2Token stage 1 + 2, step {a.steps} + {a.stage2_steps}"] = t2t
    for k in range(a.curve_every, steps, a.curve_every):
        curve[f"SimCSE, step {k}"] = exp.checkpoint_run(f"{simcse_name}-{k}", simcse_name, k)
    curve[f"SimCSE, step {steps}"] = sim
    return main + "\n\nLearning curve (checkpoints of the same runs):\n\n" + runs_table(exp, curve, a.ablation_tasks)


def ablation(exp, name):
    """One ablation table. Variants equal to a main-table run reuse it; τ variants train stage 2 on the main
    run's stage 1; the steps ablation evaluates the checkpoints of the main stage-1-only and SimCSE runs."""
    a = exp.args
    total_steps = a.steps + a.stage2_steps
    s12 = "stage 1 + 2"
    variants = {  # label -> (how, argument)
        "pooling": [(f"mean ({s12})", ("train", dict(pooling="mean"))),
                    (f"last + PromptEOL ({s12})", ("train", dict(pooling="last")))],
        "attention": [(f"causal ({s12})", ("train", dict(attention="causal"))),
                      (f"bidirectional ({s12})", ("train", dict(attention="bidirectional")))],
        "tau": [(f"tau={t:g} ({s12})", ("stage2", dict(tau=t))) for t in (1e-5, 1e-3, 1e-1)],
        "lr": [(f"lr={lr:g} ({s12})", ("train", dict(lr=lr))) for lr in (5e-5, 1e-4, 3e-4)],
        "steps": [(f"Text2Token stage 1, step {k}", ("checkpoint", ("t2t-s1", k)))
                  for k in range(a.save_steps, total_steps + 1, a.save_steps)]
                 + [(f"SimCSE, step {k}", ("checkpoint", ("simcse-texts", k)))
                    for k in range(a.save_steps, total_steps + 1, a.save_steps)],
    }[name]
    runs = {}
    for label, (how, arg) in variants:
        run_name = f"abl-{name}-{label.split(' (')[0]}".replace("=", "").replace(" ", "-").replace(",", "")
        if how == "train":
            runs[label] = exp.train(run_name, **arg)
        elif how == "stage2":
            runs[label] = exp.train_stage2_from(run_name, "t2t-s1s2", **arg)
        else:
            source, step = arg
            runs[label] = (exp.trained(source) if step == total_steps
                           else exp.checkpoint_run(f"abl-steps-{source}-{step}", source, step))
    return runs_table(exp, runs, a.ablation_tasks)


def main(argv=None):
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    exp = Experiment(args)
    command = "HF_HUB_OFFLINE=1 python bench/quality.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    sections = []
    if args.long:
        sections.append((f"Longer training, {args.pooling} pooling", long_table(exp)))
    elif args.ablations is None:
        sections.append(("Main table", main_table(exp)))
    else:
        for name in args.ablations:
            context = "" if (args.pooling, args.attention) == ("mean", "causal") else f", {args.pooling} pooling, {args.attention}"
            sections.append((f"Ablation: {name}{context}", ablation(exp, name)))
    text = "\n\n".join(f"### {title}\n\n`{command}`\n\n{body}" for title, body in sections)
    print("\n" + text)
    out = Path(args.results)
    with out.open("a", encoding="utf-8") as f:
        f.write(f"\n<!-- {time.strftime('%Y-%m-%d %H:%M')} -->\n{text}\n")
    print(f"\nappended to {out}")


if __name__ == "__main__":
    main()
