"""Does bf16 autocast change embedding quality? STSBenchmark (test) Spearman with and without it.

The base SmolLM2-135M-Instruct (no training; ``text2token.load(None)``), ``encode(...,
autocast=False)`` against ``encode(..., autocast=True)`` on the same sentences: Spearman x 100 of
the cosine similarity against the gold scores (mteb's STS main score), the smallest cosine between
the two precisions' vectors, and the time of one pass of each (a side note: the speed ratio is
measured side by side in bench/encode_throughput.py and bench/train_throughput.py). The bar for keeping bf16: the
score moves by less than 0.3.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bf16_quality.py                     # mean pooling
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bf16_quality.py --pooling mean last
    .venv/bin/python bench/bf16_quality.py --tiny
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

import numpy as np  # noqa: E402

import perf_common as pc  # noqa: E402


def sts_pairs(limit: int | None) -> list[tuple[str, str, float]]:
    path = pc.DATA_DIR / "evalsuite" / "STSBenchmark" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs = [(r["s1"], r["s2"], float(r["score"])) for r in rows]
    return pairs[:limit] if limit else pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--pooling", nargs="+", choices=("mean", "last"), default=["mean"])
    parser.add_argument("--limit", type=int, help="first N pairs only")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    from scipy.stats import spearmanr

    import text2token

    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            source = pc.tiny_backbone(Path(tmp) / "tiny")
            rng = random.Random(0)
            texts = pc.tiny_sentences(2 * (args.limit or 40))
            pairs = [(texts[2 * i], texts[2 * i + 1], rng.uniform(0, 5)) for i in range(len(texts) // 2)]
        else:
            source = None
            pairs = sts_pairs(args.limit)
        unique = sorted({t for a, b, _ in pairs for t in (a, b)})
        where = {t: i for i, t in enumerate(unique)}
        gold = np.array([s for _, _, s in pairs])
        out = {}
        for pooling in args.pooling:
            model = text2token.load(source, pooling=pooling)
            vectors, seconds = {}, {"fp32": [], "bf16": []}
            for name in ("fp32", "bf16"):  # one pass each; the comparison here is quality, timing is a side note
                t0 = time.perf_counter()
                vectors[name] = model.encode(unique, batch_size=args.batch_size, normalize=True,
                                             autocast=name == "bf16", show_progress=False)
                seconds[name].append(time.perf_counter() - t0)
            scores = {}
            for name, v in vectors.items():
                a = v[[where[p[0]] for p in pairs]]
                b = v[[where[p[1]] for p in pairs]]
                scores[name] = 100 * spearmanr(np.sum(a * b, axis=1), gold).statistic
            out[pooling] = {"spearman": scores, "delta": scores["bf16"] - scores["fp32"],
                            "min_cosine": float(np.min(np.sum(vectors["fp32"] * vectors["bf16"], axis=1))),
                            "seconds": {k: v[0] for k, v in seconds.items()},
                            "met": abs(scores["bf16"] - scores["fp32"]) < 0.3}
            del model
    result = {"machine": pc.machine(), "tiny": args.tiny, "pairs": len(pairs), "texts": len(unique), "results": out,
              "seconds": round(time.time() - started, 1)}
    print(f"machine: {result['machine']}; STSBenchmark test, {len(pairs)} pairs ({len(unique)} distinct sentences)")
    print("| pooling | Spearman fp32 | Spearman bf16 autocast | change | |change| < 0.3 | min cosine bf16 vs fp32 | encode s fp32 / bf16 |")
    print("|---|---|---|---|---|---|---|")
    for pooling, r in out.items():
        print(f"| {pooling} | {r['spearman']['fp32']:.2f} | {r['spearman']['bf16']:.2f} | {r['delta']:+.2f} | "
              f"{'yes' if r['met'] else 'no'} | {r['min_cosine']:.5f} | {r['seconds']['fp32']:.0f} / "
              f"{r['seconds']['bf16']:.0f} |")
    print(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
