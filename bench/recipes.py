"""Train one recipe (a file of configs/recipes/ plus overrides) and score it: one row of the quality table.

    HF_HUB_OFFLINE=1 python -m bench.recipes NAME --recipe configs/recipes/default.yaml \\
        --set steps=5 stage2_steps=40 --tasks STSBenchmark SICK-R --work runs/recipes
    HF_HUB_OFFLINE=1 python -m bench.recipes base-last --untrained --pooling last --tasks ...
    python -m bench.recipes --table --work runs/recipes            # the rows so far, as markdown
    python -m bench.recipes --json results/quality.json --work runs/recipes --rows NAME ...

Each row goes to WORK/rows.jsonl (name, recipe, overrides, pooling, train seconds, texts seen, scores x 100).
Training and scoring are the product's own (`text2token.train`, `text2token.evaluation.evaluate` with its
score cache in WORK/eval-cache), so a row is exactly what `text2token train --config RECIPE ...` then
`text2token eval RUN --tasks ...` give. A finished run folder of the same configuration is reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

QUICK = ["AmazonCounterfactualClassification", "Banking77Clustering-proxy", "TwitterSemEval2015", "SciFact",
         "STSBenchmark"]


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", nargs="?", help="row name (also the run folder's name under WORK)")
    p.add_argument("--work", default="runs/recipes")
    p.add_argument("--recipe", help="recipe file (YAML)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides (YAML values)")
    p.add_argument("--untrained", action="store_true", help="score the base model (no training)")
    p.add_argument("--model", default=None, help="backbone of an untrained row (default: the embedded SmolLM2)")
    p.add_argument("--pooling", default=None, help="pooling of an untrained row")
    p.add_argument("--of", metavar="ROW", help="score the finished run of row ROW (no training) under this row's name, "
                   "with --adapter-scale or --max-length")
    p.add_argument("--adapter-scale", type=float, default=None, metavar="S",
                   help="load the run with this weight-space interpolation toward its base (TrainConfig.adapter_scale)")
    p.add_argument("--max-length", type=int, default=None, metavar="N",
                   help="score with this many tokens per text (default: the run's own max_length; an untrained "
                        "model's default is 128), recorded in the row as eval_max_length")
    p.add_argument("--tasks", nargs="+", default=None, help="task names (default: the quick suite)")
    p.add_argument("--benchmark", default=None, help="quick or all-local instead of --tasks")
    p.add_argument("--max-samples", type=int, default=None, help="cut tasks (a cheap proxy)")
    p.add_argument("--cut", nargs="*", default=[], metavar="TASK=N",
                   help="cut these tasks to N rows (others as --max-samples says)")
    p.add_argument("--data-dir", default="../shared/data/evalsuite")
    p.add_argument("--table", action="store_true", help="print the rows of WORK/rows.jsonl as markdown")
    p.add_argument("--json", metavar="FILE", help="write the latest row of each name (or of --rows) as JSON")
    p.add_argument("--rows", nargs="*", default=None, help="rows for --table / --json (default: all)")
    p.add_argument("--default", nargs="*", default=[],
                   help="--json: the rows of the default recipe (with --merge, the file's other rows are marked again)")
    p.add_argument("--merge", action="store_true",
                   help="--json: keep the file's rows whose names are not among the rows written (an update); a row of "
                        "the same name is replaced, or extended with the new tasks where the new row reproduces "
                        "its scores exactly (a retrain of the same configuration)")
    return p.parse_args(argv)


def overrides(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set wants KEY=VALUE, got {pair!r}")
        out[key.replace("-", "_")] = yaml.safe_load(value)
    return out


def train(args, work: Path) -> tuple[Path, dict]:
    import text2token
    from text2token.config import TrainConfig
    from text2token.runfolder import read_train_config

    run = work / args.name
    values = overrides(args.set)
    values["output"] = str(run)
    config = TrainConfig.from_file(args.recipe, values) if args.recipe else TrainConfig.from_dict(values)
    record_file = run / "text2token_config.json"
    # the saved configuration read through TrainConfig: an option added since the run was trained counts at what
    # runs before it did (runfolder.SETTINGS_BEFORE_THEY_EXISTED; else its default), so the run is still reused
    if record_file.is_file() and TrainConfig.from_dict(read_train_config(run)).to_dict() == config.to_dict():
        print(f"{run}: finished run of this configuration, reused", file=sys.stderr)
    else:
        text2token.train(config, overwrite=True)
    return run, json.loads(record_file.read_text())


def texts_seen(record: dict) -> int:
    return sum(stage.get("texts", 0) for stage in record["training"]["stages"].values())


def main(argv=None) -> int:
    args = parse(argv)
    work = Path(args.work)
    rows_file = work / "rows.jsonl"
    if args.table or args.json:
        rows = latest_rows(rows_file, args.rows)
        if args.table:
            print(table(rows))
        if args.json:
            write_json(rows, Path(args.json), args.default, merge=args.merge)
        return 0
    if not args.name:
        raise SystemExit("name a row")
    work.mkdir(parents=True, exist_ok=True)
    from text2token.evaluation import evaluate

    if args.untrained:
        model, seconds, seen, pooling, hyper = (args.model or "smollm2-135m-instruct"), 0.0, 0, args.pooling, None
    else:
        if args.of:
            run = work / args.of
            record = json.loads((run / "text2token_config.json").read_text())
        else:
            run, record = train(args, work)
        from text2token.memory import release_memory

        release_memory()
        model, seconds, seen = str(run), record["training"]["seconds"], texts_seen(record)
        pooling, hyper = record["model"]["pooling"], record["hyperparameters"]
    tasks = None if args.benchmark else (args.tasks or QUICK)
    cuts = {k: int(v) for k, v in (c.split("=", 1) for c in args.cut)}
    groups: dict = {}
    if args.benchmark:
        groups[(args.max_samples, None)] = None
    for task in tasks or []:
        # SciFact as the quick suite cuts it: 1,000 documents of at most 1,000 characters
        key = (cuts.get(task, 1000 if task == "SciFact" else args.max_samples), 1000 if task == "SciFact" else None)
        groups.setdefault(key, []).append(task)
    started = time.time()
    scores, precision = {}, None
    for (max_samples, max_doc_chars), group in groups.items():
        results = evaluate(model, group, benchmark=args.benchmark if group is None else None, data_dir=args.data_dir,
                           cache_dir=work / "eval-cache", pooling=args.pooling if args.untrained else None,
                           max_samples=max_samples, max_doc_chars=max_doc_chars, adapter_scale=args.adapter_scale,
                           max_length=args.max_length)
        scores.update({r["task"]: round(100 * r["main_score"], 2) for r in results["results"]})
        precision = results["results"][0].get("precision")
    row_overrides = overrides(args.set)
    if args.adapter_scale is not None:
        row_overrides["adapter_scale"] = args.adapter_scale
    if args.of:
        row_overrides["of"] = args.of
    if args.max_length is not None:
        row_overrides["eval_max_length"] = args.max_length
    row = {"name": args.name, "recipe": args.recipe, "overrides": row_overrides, "pooling": pooling or "mean",
           "train_seconds": seconds, "texts_seen": seen, "scores": scores, "cuts": {**cuts, "SciFact": "1000 docs x 1000 chars"},
           "precision": precision, "eval_seconds": round(time.time() - started, 1),
           "hyperparameters": hyper, "date": time.strftime("%Y-%m-%d %H:%M")}
    with rows_file.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(table([row]))
    return 0


def latest_rows(path: Path, names: list[str] | None) -> list[dict]:
    rows: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        row = json.loads(line)
        key = row["name"]
        if key in rows:  # the same name scored on more tasks: merge the scores
            merged = {**rows[key]["scores"], **row["scores"]} if row.get("train_seconds") == rows[key].get(
                "train_seconds") else row["scores"]
            row = {**row, "scores": merged}
        rows[key] = row
    if names:
        missing = [n for n in names if n not in rows]
        if missing:
            raise SystemExit(f"no row named {', '.join(missing)} in {path}")
        return [rows[n] for n in names]
    return list(rows.values())


def mean(values) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 2) if values else None


def table(rows: list[dict]) -> str:
    """Markdown: a row per model, the quick-suite mean, the mean over every task scored, a column per task."""
    tasks = list(dict.fromkeys(t for r in rows for t in r["scores"]))
    short = {t: t.replace("Classification", "Cls").replace("Clustering-proxy", "Clu").replace("SentEval-", "")
             .replace("TweetSentimentExtraction", "TweetSent").replace("AmazonCounterfactual", "AmazonCF")
             .replace("TwitterSemEval2015", "TwitterSemEval") for t in tasks}
    head = ["row", "train s", "texts", "quick mean", "all mean", *[short[t] for t in tasks]]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        quick = [r["scores"][t] for t in QUICK if t in r["scores"]]
        cells = [r["name"], f"{r['train_seconds']:.0f}", str(r["texts_seen"]),
                 f"{mean(quick):.2f}" if len(quick) == len(QUICK) else "",
                 f"{mean(r['scores'].values()):.2f}" if len(r["scores"]) == len(tasks) else ""]
        cells += [f"{r['scores'][t]:.2f}" if t in r["scores"] else "" for t in tasks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reproduces(new: dict, old: dict) -> bool:
    """Whether ``new`` is a retrain of ``old``'s row: the same recipe and overrides, and the same score on every
    task both have (at least one). Training here is deterministic on one thread, so a retrain of the same
    configuration reproduces every score exactly; its new tasks may then join the old row."""
    shared = set(new["scores"]) & set(old.get("scores", {}))
    return (bool(shared) and new.get("recipe") == old.get("recipe") and new.get("overrides") == old.get("overrides")
            and all(new["scores"][t] == old["scores"][t] for t in shared))


def write_json(rows: list[dict], path: Path, default: list[str], merge: bool = False) -> None:
    before = json.loads(path.read_text(encoding="utf-8")) if merge and path.is_file() else []
    kept = {r["name"]: r for r in before}  # --merge: the file's rows stay, in their order, each replaced or
    if default:  # extended in its place by a row of the same name; the default recipe moved: the rows say so too
        before = [{**r, "is_default": r["name"] in default} for r in before]
    written = {}
    for r in rows:
        old = kept.get(r["name"])
        if old is not None and reproduces(r, old):  # a retrain that reproduced the row: extend it, keep its time
            print(f"{r['name']}: the retrain reproduced {len(set(r['scores']) & set(old['scores']))} task(s) "
                  f"exactly; its other tasks join the file's row (train seconds {old['train_seconds']})",
                  file=sys.stderr)
            r = {**r, "train_seconds": old["train_seconds"], "texts_seen": old["texts_seen"],
                 "scores": {**old["scores"], **r["scores"]}, "precision": old.get("precision", r.get("precision"))}
        quick = [r["scores"][t] for t in QUICK if t in r["scores"]]
        written[r["name"]] = {
            "name": r["name"], "recipe": r["recipe"], "overrides": r["overrides"], "is_default": r["name"] in default,
            "pooling": r["pooling"], "train_seconds": r["train_seconds"], "texts_seen": r["texts_seen"],
            "scores": r["scores"], "quick_mean": mean(quick) if len(quick) == len(QUICK) else None,
            "all_mean": mean(r["scores"].values()), "n_tasks": len(r["scores"]),  # all_mean: over these tasks
            "precision": r.get("precision")}
    out = [written.pop(r["name"], r) for r in before] + list(written.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
