"""A training corpus with opinions in it: a diagnostic for the classification gap (RESULTS.md, twelfth session).

The default recipe trained on Wikipedia sentences scores just below the untrained model on the sentiment
classification tasks. This writes a corpus that mixes, one text per line, shuffled with a fixed seed:
``--wiki`` Wikipedia sentences (the experiment's usual corpus) with the *unlabelled training texts* of two
opinionated evaluation tasks, TweetSentimentExtraction (tweets) and AmazonCounterfactual (product-review
sentences). Their labels are never read, and any text that also occurs in a task's test split is dropped.

Those two tasks are then in-domain for a model trained on it (their test texts are unseen, their training
texts seen without labels: a user's own domain text); the other sentiment tasks (SentEval MR, CR, SST2,
SST5, MPQA) stay out of its domain. It is a diagnostic, not a recipe: nothing in the default uses it.

    python -m bench.opinion_corpus runs/data/mixed_opinion.txt        # 6,000 + 3,000 + 3,000 texts
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TASKS = ("TweetSentimentExtractionClassification", "AmazonCounterfactualClassification")


def texts(path: Path) -> list[str]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            text = " ".join(str(json.loads(line)["text"]).split())
            if len(text.split()) >= 4:
                out.append(text)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output", type=Path)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--wiki", type=int, default=6000, help="Wikipedia sentences")
    p.add_argument("--per-task", type=int, default=3000, help="training texts of each opinionated task")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    rng = random.Random(args.seed)
    suite = args.data / "evalsuite"
    test = set()
    for task in TASKS:
        test |= set(texts(suite / task / "test.jsonl"))
    mix = []
    for task in TASKS:
        pool = [t for t in texts(suite / task / "train.jsonl") if t not in test]
        rng.shuffle(pool)
        mix += pool[:args.per_task]
    wiki = [line.strip() for line in (args.data / "corpus" / "wiki_sentences_00.txt").open(encoding="utf-8")
            if line.strip()]
    rng.shuffle(wiki)
    mix += wiki[:args.wiki]
    rng.shuffle(mix)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(mix) + "\n", encoding="utf-8")
    print(f"{args.output}: {len(mix)} texts ({args.wiki} Wikipedia, {args.per_task} from each of {', '.join(TASKS)})")


if __name__ == "__main__":
    main()
