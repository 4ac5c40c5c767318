"""Is a trained model's classification gap a matter of scale? MTEB's classification protocol fits scikit-learn's
LogisticRegression (C = 1, max_iter 100) on raw embeddings, so the embeddings' norm acts as the inverse strength of
its L2 penalty: a model whose vectors shrank is scored as if more regularised. This scores the untrained model and a
trained one on classification tasks, then the trained model's own vectors rescaled to the untrained model's mean
norm, and both at unit mean norm (each text encoded once; only the classifier runs again).

    HF_HUB_OFFLINE=1 python -m bench.embedding_scale RUN --tasks AmazonCounterfactualClassification SentEval-CR

Prints one JSON line: mean norms, the mean cosine between the two models' vectors of the same text, and the
scores (main score x 100) of each variant per task.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


class Memo:
    """A model behind the text2token protocol that encodes each text once and returns ``scale`` x its vector."""

    def __init__(self, model, name: str):
        self.model, self.name, self.embedding_dim = model, name, model.embedding_dim
        self.precision = getattr(model, "precision", "fp32")
        self.vectors: dict[str, np.ndarray] = {}
        self.scale = 1.0

    def encode(self, texts, batch_size: int = 32, normalize: bool = False, show_progress: bool = False):
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.model.encode(missing, batch_size=batch_size)))
        out = np.stack([self.vectors[t] for t in texts]).astype(np.float32) * self.scale
        return out / np.linalg.norm(out, axis=1, keepdims=True) if normalize else out


def compare(base: Memo, trained: Memo, score) -> dict:
    """``score(model) -> {task: main score x 100}`` for each variant, and the vectors' statistics."""
    scores = {"base": score(base), "trained": score(trained)}
    common = [t for t in base.vectors if t in trained.vectors]
    b = np.stack([base.vectors[t] for t in common])
    t = np.stack([trained.vectors[t] for t in common])
    nb, nt = np.linalg.norm(b, axis=1), np.linalg.norm(t, axis=1)
    trained.scale = float(nb.mean() / nt.mean())
    scores["trained_at_base_norm"] = score(trained)
    trained.scale, base.scale = 1.0 / float(nt.mean()), 1.0 / float(nb.mean())
    scores["trained_at_unit_norm"], scores["base_at_unit_norm"] = score(trained), score(base)
    trained.scale = base.scale = 1.0
    return {"texts": len(common), "norm_base": round(float(nb.mean()), 3), "norm_trained": round(float(nt.mean()), 3),
            "cos_trained_base": round(float(((b * t).sum(1) / nb / nt).mean()), 4), "scores": scores}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a trained run folder")
    p.add_argument("--base", default=None, help="the untrained backbone (default: the run's own base model)")
    p.add_argument("--tasks", nargs="+", default=["AmazonCounterfactualClassification", "SentEval-CR"])
    p.add_argument("--data-dir", default="../shared/data/evalsuite")
    p.add_argument("--precision", default="fp32")
    args = p.parse_args(argv)

    import text2token
    from text2token.evaluation import evaluate

    trained_model = text2token.load(args.run, precision=args.precision)
    # the untrained model as the quality table's untrained rows score it: the run's pooling, the default length
    base_model = text2token.load(args.base or trained_model.backbone, pooling=trained_model.pooling,
                                 precision=args.precision)

    def score(model):
        results = evaluate(model, args.tasks, data_dir=args.data_dir, show_progress=False)
        return {r["task"]: round(100 * r["main_score"], 2) for r in results["results"]}

    out = compare(Memo(base_model, "base"), Memo(trained_model, "trained"), score)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
