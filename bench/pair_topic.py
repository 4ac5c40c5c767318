"""Why a model scores low on a pair-classification task whose pairs share a topic (TwitterSemEval2015).

In TwitterSemEval2015 both tweets of every pair, paraphrase or not, are about the same trending topic
("8 mile", ...). An embedding that mostly names a text's key tokens makes every such pair similar, so
cosine similarity separates paraphrases from non-paraphrases poorly. This script measures that, per model:

* AP x100 of the cosine similarity against the labels (the task's score);
* mean cosine of paraphrase pairs, of non-paraphrase pairs, and of random pairs (the first text of one
  row with the second text of a random other row: almost always another topic);
* topic share = (cos non-paraphrase - cos random) / (cos paraphrase - cos random): how much of the
  similarity a paraphrase earns a same-topic non-paraphrase gets too (1: none of it is about meaning);
* separation d' = (mean cos paraphrase - mean cos non-paraphrase) / pooled std;
* top-1 agreement: how often the two texts' embeddings decode (through the LM head) to the same top
  token, for paraphrase / non-paraphrase / random pairs.

    python -m bench.pair_topic ../shared/data/evalsuite/TwitterSemEval2015 \\
        smollm2-135m-instruct:last runs/quality/t2t-s1s2-last runs/quality/simcse-time-last

A model is a run folder, or a base model with an optional ``:mean`` / ``:last`` pooling suffix.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score


def load_rows(task_dir) -> list[dict]:
    """The checked rows {s1, s2, label} of a local pair-classification task folder."""
    from text2token.evaluation.localdata import TaskFolder, detect_type

    path = Path(task_dir)
    folder = TaskFolder(path.name, path, detect_type(path))
    if folder.type != "PairClassification":
        raise SystemExit(f"{path} is a {folder.type} task, not pair classification")
    return folder.read()["test"]


def random_pairs(rows, seed: int = 0) -> list[tuple[str, str]]:
    """The first text of each row with the second text of a random other row whose first text differs."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i, row in enumerate(rows):
        for _ in range(20):
            j = int(rng.integers(len(rows)))
            if j != i and rows[j]["s1"] != row["s1"]:
                pairs.append((row["s1"], rows[j]["s2"]))
                break
    return pairs


def pair_stats(cos_pos, cos_neg, cos_rand) -> dict:
    pos, neg, rand = (np.asarray(x, dtype=np.float64) for x in (cos_pos, cos_neg, cos_rand))
    pooled = np.sqrt((pos.var() + neg.var()) / 2)
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    gap = pos.mean() - rand.mean()
    return {"ap": 100 * average_precision_score(labels, np.r_[pos, neg]),
            "cos_paraphrase": pos.mean(), "cos_non_paraphrase": neg.mean(), "cos_random": rand.mean(),
            "topic_share": (neg.mean() - rand.mean()) / gap if gap > 0 else float("nan"),
            "d_prime": (pos.mean() - neg.mean()) / pooled if pooled > 0 else float("nan")}


def model_stats(model, rows, batch_size: int = 64) -> dict:
    rand = random_pairs(rows)
    texts = sorted({r["s1"] for r in rows} | {r["s2"] for r in rows})
    index = {t: i for i, t in enumerate(texts)}
    dense = model.encode(texts, batch_size=batch_size, normalize=True, show_progress=True)
    top1 = np.asarray(model.encode(texts, batch_size=batch_size, output="sparse", sparse_k=1).argmax(axis=1)).ravel()

    def cos(pairs):
        a = np.array([index[x] for x, _ in pairs], dtype=int)
        b = np.array([index[y] for _, y in pairs], dtype=int)
        return (dense[a] * dense[b]).sum(axis=1), float((top1[a] == top1[b]).mean()) if len(pairs) else float("nan")

    pos, agree_pos = cos([(r["s1"], r["s2"]) for r in rows if r["label"] == 1])
    neg, agree_neg = cos([(r["s1"], r["s2"]) for r in rows if r["label"] != 1])
    rnd, agree_rnd = cos(rand)
    return {**pair_stats(pos, neg, rnd), "top1_paraphrase": agree_pos, "top1_non_paraphrase": agree_neg,
            "top1_random": agree_rnd}


def open_model(spec: str):
    import text2token

    if Path(spec).exists():
        return text2token.load(spec)
    name, _, pooling = spec.partition(":")
    return text2token.load(name, pooling=pooling or None)


COLUMNS = [("ap", "AP", "{:.2f}"), ("cos_paraphrase", "cos para", "{:.3f}"),
           ("cos_non_paraphrase", "cos non-para", "{:.3f}"), ("cos_random", "cos random", "{:.3f}"),
           ("topic_share", "topic share", "{:.2f}"), ("d_prime", "d'", "{:.2f}"),
           ("top1_paraphrase", "top-1 same: para", "{:.2f}"), ("top1_non_paraphrase", "non-para", "{:.2f}"),
           ("top1_random", "random", "{:.2f}")]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task_dir", help="folder with test.jsonl rows {s1, s2, label}")
    p.add_argument("models", nargs="+", help="run folders or base models (NAME[:mean|:last])")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    rows = load_rows(args.task_dir)
    results = {spec: model_stats(open_model(spec), rows, args.batch_size) for spec in args.models}
    print("| model | " + " | ".join(head for _, head, _ in COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for spec, r in results.items():
        print(f"| {spec} | " + " | ".join(fmt.format(r[key]) for key, _, fmt in COLUMNS) + " |")
    return results


if __name__ == "__main__":
    main()
