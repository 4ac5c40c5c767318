"""Evaluation throughput: texts encoded per model with and without the encoder's text memo.

``text2token.evaluation.MtebEncoder`` encodes each distinct text once per model (pair tasks repeat
sentences; the tasks of one run share texts). This script runs ``text2token.evaluation.evaluate`` on a
benchmark twice in one process, once as shipped and once with the memo bypassed (every text mteb asks for
is encoded, as a plain mteb encoder does), and prints per task the texts asked for, the texts encoded, the
seconds of each arm and whether the scores agree. The memo arm runs first (one pass each; no alternation).

By default the model is a stub (deterministic hash vectors, 32 dimensions, no network): it counts texts in
seconds, and its wall times are the evaluators' own overhead. ``--model`` scores a real model (a run folder,
a backbone) instead, whose wall times are the minutes per model before and after.

    python -m bench.eval_texts --benchmark all-local                          # counts, a few minutes
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python -m bench.eval_texts --benchmark quick --model RUN_OR_BACKBONE

Prints a markdown table and, last, one line of JSON with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np


class HashModel:
    """The embedding protocol of ``text2token.load`` with hash vectors: the same text, the same vector."""

    name = "hash-stub"
    embedding_dim = 32

    def encode(self, texts, batch_size=32, normalize=False, show_progress=False):
        out = np.empty((len(texts), self.embedding_dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
            out[i] = np.random.default_rng(seed).standard_normal(self.embedding_dim)
        return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", default="quick", help="quick or all-local (default quick)")
    p.add_argument("--tasks", nargs="*", default=None, help="task names instead of --benchmark")
    p.add_argument("--data-dir", default="../shared/data/evalsuite")
    p.add_argument("--model", default=None, help="a model to score (default: the hash stub)")
    p.add_argument("--precision", default="auto")
    args = p.parse_args(argv)

    from text2token.evaluation import encoder as encoder_module
    from text2token.evaluation import evaluate

    shipped = encoder_module.MtebEncoder.encode
    asked: dict[str, int] = {}
    encoded: dict[str, int] = {}

    def count(task: str, n_asked: int, n_encoded: int) -> None:
        asked[task] = asked.get(task, 0) + n_asked
        encoded[task] = encoded.get(task, 0) + n_encoded

    def memo(self, inputs, *, task_metadata, **kwargs):  # as shipped, counted
        before = self.encoded
        out = shipped(self, inputs, task_metadata=task_metadata, **kwargs)
        count(task_metadata.name, len(out), self.encoded - before)
        return out

    def no_memo(self, inputs, *, task_metadata, **kwargs):  # every text mteb asks for, repeats included
        texts = [text for batch in inputs for text in batch["text"]]
        count(task_metadata.name, len(texts), len(texts))
        if not texts:
            return np.zeros((0, self.model.embedding_dim), dtype=np.float32)
        return np.asarray(self.model.encode(texts, batch_size=int(kwargs.get("batch_size", 32))), dtype=np.float32)

    model = HashModel() if args.model is None else args.model
    where = dict(tasks=args.tasks) if args.tasks else dict(benchmark=args.benchmark)
    arms: dict[str, dict] = {}
    for arm, method in (("memo", memo), ("no_memo", no_memo)):  # one encoder per arm: tasks share its memo
        asked.clear()
        encoded.clear()
        encoder_module.MtebEncoder.encode = method
        t0 = time.perf_counter()
        try:
            results = evaluate([model], data_dir=args.data_dir, use_cache=False, show_progress=False,
                               precision=args.precision, **where)
        finally:
            encoder_module.MtebEncoder.encode = shipped
        seconds = {e["task"]: e["evaluation_time"] for e in results["results"]}
        scores = {e["task"]: round(100 * e["main_score"], 4) for e in results["results"]}
        arms[arm] = {"wall_s": round(time.perf_counter() - t0, 1), "asked": dict(asked), "encoded": dict(encoded),
                     "task_s": seconds, "scores": scores}
        print(f"{arm}: {sum(encoded.values())} of {sum(asked.values())} texts encoded, "
              f"{arms[arm]['wall_s']:.0f} s", flush=True)

    m, n = arms["memo"], arms["no_memo"]
    print("\n| task | texts asked | encoded, memo | encoded, no memo | s, memo | s, no memo | same score |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for task in m["scores"]:
        same = "yes" if abs(m["scores"][task] - n["scores"][task]) < 1e-6 else f"no ({m['scores'][task]} vs {n['scores'][task]})"
        print(f"| {task} | {n['asked'].get(task, 0)} | {m['encoded'].get(task, 0)} | {n['encoded'].get(task, 0)} | "
              f"{m['task_s'][task]:.1f} | {n['task_s'][task]:.1f} | {same} |")
    print(f"| **all** | {sum(n['asked'].values())} | {sum(m['encoded'].values())} | {sum(n['encoded'].values())} | "
          f"{m['wall_s']:.1f} (wall) | {n['wall_s']:.1f} (wall) | |")
    print(json.dumps({"model": getattr(model, "name", model), "where": where, "arms": arms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
