"""The ``inspect``, ``analyze`` and ``analyze-retrieval`` sub-commands.

    text2token inspect MODEL TEXT [TEXT ...] [--top-k 20] [--json]
    text2token analyze MODEL [MODEL ...] --data FILE [--sample 200] [--output DIR] [--k 1 5 10 20 50]
    text2token analyze-retrieval MODEL --task-dir DIR [--alpha 0.5 ...] [--sparse-k 64]
        [--max-docs N] [--max-doc-chars N] [--output FILE]

MODEL is a run folder, a base LM (hub id, local folder, .gguf), or ``default`` for the embedded
SmolLM2. Errors are :class:`text2token.errors.Text2TokenError` subclasses, printed in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..cli import add_model_flags, number_flag, positive_int
from ..config import Range

DEFAULT_MODEL_NAMES = ("default", "-")


def _model_name(name: str) -> str | None:
    return None if name in DEFAULT_MODEL_NAMES and not Path(name).exists() else name


_alpha = number_flag(float, Range(0.0, 1.0))


def add_analysis_parsers(sub) -> None:
    """Register ``inspect``, ``analyze`` and ``analyze-retrieval`` on an argparse subparsers object."""
    p = sub.add_parser(
        "inspect", help="top decoded tokens of a text's embedding, marked 'in text' or 'derived'",
        description="Decode a text's embedding through the LM head (softmax(W_lm e(x))) and list its top-k "
                    "tokens with probabilities. A token is 'in text' when its id, or its stripped lowercase "
                    "decoded form, occurs among the text's own tokens (tokenizer(text), no template); "
                    "otherwise 'derived'.")
    p.add_argument("model", metavar="MODEL", help="run folder, base LM (hub id, folder, .gguf) or 'default'")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="text(s) to inspect")
    p.add_argument("--top-k", type=positive_int, default=20, metavar="K", help="tokens to list (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_model_flags(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "analyze", help="token alignment (hit@k), representation drift and loss curves of models",
        description="Over a sample of texts: hit@k of each model's decoded top tokens (share of the top k "
                    "that occur in the text) and the derived share 1 - hit@k; for a run folder also the drift "
                    "of its checkpoints along the base model's principal directions and its training loss "
                    "curves. Writes summary.json and PNG plots to --output.")
    p.add_argument("models", nargs="+", metavar="MODEL", help="run folders, base LMs, or 'default'")
    p.add_argument("--data", required=True, metavar="FILE", help="texts: one per line, or JSONL (--data-field)")
    p.add_argument("--data-field", default="text", help="JSONL field holding the text (default: text)")
    p.add_argument("--sample", type=positive_int, default=200, metavar="N", help="texts drawn at random (default 200)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--output", default="analysis", metavar="DIR", help="output folder (default: analysis)")
    p.add_argument("--k", type=positive_int, nargs="+", default=[1, 5, 10, 20, 50], metavar="K",
                   help="k values of hit@k (default 1 5 10 20 50)")
    p.add_argument("--components", type=positive_int, default=8, metavar="M",
                   help="principal directions followed by the drift (default 8)")
    p.add_argument("--drift-k", type=positive_int, default=10, metavar="K",
                   help="top-k of the decoded tokens followed along the checkpoints (default 10)")
    p.add_argument("--no-drift", action="store_true", help="skip the checkpoint drift")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_flags(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "analyze-retrieval", help="nDCG@10 of dense, sparse (decoded tokens) and hybrid retrieval on a task folder",
        description="Score a local retrieval task folder (corpus.jsonl, queries.jsonl, qrels.jsonl) with dense "
                    "cosine, the dot product of sparse lexical vectors (top --sparse-k probabilities of the decoded "
                    "distribution), and hybrid = alpha * minmax(dense) + (1 - alpha) * minmax(sparse) (min-max "
                    "per query over the corpus). Scores come from mteb's retrieval evaluator: dense equals "
                    "`text2token eval` on the same folder and cut.")
    p.add_argument("model", metavar="MODEL", help="run folder, base LM, or 'default'")
    p.add_argument("--task-dir", required=True, metavar="DIR", help="retrieval task folder, e.g. .../evalsuite/SciFact")
    p.add_argument("--alpha", type=_alpha, nargs="+", default=[0.5], metavar="A",
                   help="hybrid weight(s) of the dense score (default 0.5)")
    p.add_argument("--sparse-k", type=positive_int, default=64, metavar="K",
                   help="entries per sparse vector (default 64)")
    p.add_argument("--max-docs", type=positive_int, metavar="N",
                   help="cut the corpus to N documents, judged ones kept (eval's --max-samples)")
    p.add_argument("--max-doc-chars", type=positive_int, metavar="N", help="truncate documents to N characters")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N")
    p.add_argument("--output", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_flags(p)
    p.set_defaults(func=cmd_analyze_retrieval)


def _load(args):
    from ..model import load

    return load(_model_name(args.model), pooling=args.pooling, attention=args.attention, max_length=args.max_length,
                adapter_scale=args.adapter_scale)


def cmd_inspect(args) -> int:
    from .tokens import format_inspection, inspect_text

    model = _load(args)
    results = [inspect_text(model, text, args.top_k) for text in args.texts]
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=1, ensure_ascii=False))
    else:
        print("\n\n".join(format_inspection(r) for r in results))
    return 0


def cmd_analyze(args) -> int:
    from .report import analyze, format_summary

    summary = analyze([_model_name(m) for m in args.models], args.data, sample=args.sample, output=args.output,
                      ks=args.k, seed=args.seed, batch_size=args.batch_size, field=args.data_field,
                      components=args.components, drift=not args.no_drift, drift_k=args.drift_k,
                      pooling=args.pooling, attention=args.attention, max_length=args.max_length,
                      adapter_scale=args.adapter_scale, show_progress=not args.quiet)
    print(format_summary(summary))
    return 0


def cmd_analyze_retrieval(args) -> int:
    from .errors import AnalysisError
    from .retrieval import format_retrieval, retrieval_folder, score_retrieval

    retrieval_folder(args.task_dir)  # a bad folder fails before the model is loaded
    model = _load(args)
    result = score_retrieval(model, args.task_dir, alphas=args.alpha, sparse_k=args.sparse_k, max_docs=args.max_docs,
                             max_doc_chars=args.max_doc_chars, batch_size=args.batch_size,
                             show_progress=not args.quiet)
    if args.output:
        path = Path(args.output)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            raise AnalysisError(f"{path}: cannot write results ({exc.strerror})") from None
    print(format_retrieval(result))
    if args.output:
        print(f"wrote {args.output}")
    return 0
