"""A no-model reference for a pair-classification folder: average precision of the word Jaccard overlap
of the two texts (lower-cased \\w+ words) against the labels. RESULTS.md quotes it for TwitterSemEval2015.

    python -m bench.pair_overlap ../shared/data/evalsuite/TwitterSemEval2015   # or: python bench/pair_overlap.py ...
"""

import argparse
import re

from sklearn.metrics import average_precision_score

try:
    from .pair_topic import load_rows
except ImportError:  # run as a file (python bench/pair_overlap.py): its own folder is first on sys.path
    from pair_topic import load_rows


def words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task_dir", help="folder with test.jsonl rows {s1, s2, label}")
    args = p.parse_args(argv)
    rows = load_rows(args.task_dir)
    overlap = [len(words(r["s1"]) & words(r["s2"])) / max(1, len(words(r["s1"]) | words(r["s2"]))) for r in rows]
    ap = 100 * average_precision_score([r["label"] for r in rows], overlap)
    print(f"{len(rows)} pairs, positive share {sum(r['label'] for r in rows) / len(rows):.3f}, "
          f"word-Jaccard AP x100 {ap:.2f}")
    return ap


if __name__ == "__main__":
    main()
