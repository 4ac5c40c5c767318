"""The ``eval`` sub-command: parse arguments, call :func:`evaluate`, print the table.

    text2token eval MODEL [MODEL ...] (--tasks NAME [NAME ...] | --benchmark NAME)
        [--data-dir DIR] [--output results.json] [--pooling mean|last]
        [--attention causal|bidirectional] [--batch-size N] [--cache-dir DIR]
        [--mteb-results DIR] [--compare NAME [NAME ...] [--compare-results DIR]]

Errors are raised as :class:`text2token.errors.Text2TokenError` subclasses for the main CLI to
report in one line; :func:`main` does the same when this module is run on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..cli import Parser, add_model_flags, positive_int
from ..errors import Text2TokenError
from .errors import EvalError

DESCRIPTION = """\
Evaluate embedding models with MTEB's own tasks and scores. MODEL is a text2token run folder,
a base LM (hub id or local folder), or a sentence-transformers folder. Tasks are read from local
task folders (--data-dir, else $TEXT2TOKEN_DATA_DIR, else ../shared/data/evalsuite); a name with
no local folder is an MTEB task loaded from the hub (online only). Benchmarks: "quick" (a few
minutes, SciFact cut down), "all-local" (every local task, full), or an MTEB benchmark name such
as "MTEB(eng, v2)" (online). Scores are cached, so a rerun only computes what is missing.

examples:
  text2token eval runs/my-run HuggingFaceTB/SmolLM2-135M --benchmark quick
  text2token eval runs/my-run --tasks STSBenchmark SciFact --max-samples 1000 --output scores.json
  text2token eval runs/my-run --benchmark all-local --mteb-results mteb-results   # mteb's result files
  text2token eval runs/my-run --benchmark all-local --compare all-MiniLM-L6-v2 --compare-results ~/mteb-results"""


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``eval`` sub-command on an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "eval", help="evaluate models on MTEB tasks (local or online)", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help="run folder, base LM, or sentence-transformers folder")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--tasks", nargs="+", metavar="NAME", help="task names (local folder names or MTEB task names)")
    which.add_argument("--benchmark", metavar="NAME", help='"quick", "all-local", or an MTEB benchmark name')
    parser.add_argument("--data-dir", metavar="DIR", help="folder of local task folders (or its parent)")
    parser.add_argument("--output", metavar="FILE", help="write all scores as JSON to FILE")
    add_model_flags(parser)
    parser.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                        help="encoding batch size (default 32)")
    parser.add_argument("--cache-dir", metavar="DIR", help="score cache (default ~/.cache/text2token/eval)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write cached scores")
    parser.add_argument("--max-samples", type=positive_int, metavar="N",
                        help="cut local tasks to N evaluated rows (retrieval: N corpus documents, judged ones "
                             "kept); recorded in the results")
    parser.add_argument("--max-doc-chars", type=positive_int, metavar="N",
                        help="truncate retrieval documents to N characters; recorded in the results")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="encoding precision: bf16 autocast or fp32; auto (default) takes bf16 where the "
                             "hardware runs it fast (CUDA with bf16, a CPU with AVX512-BF16 or AMX); recorded "
                             "with every score")
    parser.add_argument("--mteb-results", metavar="DIR",
                        help="also write each model's results as mteb writes them: DIR/results/<model>/<revision>/"
                             "<task>.json with a model_meta.json (tasks cut down for speed are left out)")
    parser.add_argument("--compare", nargs="+", metavar="NAME",
                        help="add published MTEB scores of these models (full name or the part after the owner; "
                             "NAME@REVISION for one revision) as rows marked 'published'")
    parser.add_argument("--compare-results", metavar="DIR",
                        help="results folder for --compare, in mteb's results-repository layout (a clone of "
                             "github.com/embeddings-benchmark/results; default: mteb's cache, $MTEB_CACHE or "
                             "~/.cache/mteb)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_eval)
    return parser


def run_eval(args: argparse.Namespace) -> int:
    """Run the ``eval`` sub-command; raises Text2TokenError subclasses on user errors."""
    from ..precision import describe, resolve
    from .runner import evaluate
    from .table import format_table

    compare = getattr(args, "compare", None)
    compare_results = getattr(args, "compare_results", None)
    mteb_results = getattr(args, "mteb_results", None)
    if compare_results and not compare:
        raise EvalError("--compare-results needs --compare NAME (the published models to show)")
    if compare:  # a wrong name or folder is reported before any evaluation
        from .published import resolve_published

        resolve_published(compare, compare_results)
    if mteb_results and Path(mteb_results).exists() and not Path(mteb_results).is_dir():
        raise EvalError(f"{mteb_results}: --mteb-results must be a folder")
    if args.output:  # before any evaluation: a folder, a parent that is a file, a read-only folder
        from ..files import writable_problem

        problem = writable_problem(Path(args.output))
        if problem:
            raise EvalError(f"--output: {problem}")
    if not args.quiet:
        print(describe(resolve(args.precision), args.precision), file=sys.stderr)
    results = evaluate(
        args.models,
        args.tasks,
        benchmark=args.benchmark,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        batch_size=args.batch_size,
        pooling=args.pooling,
        attention=args.attention,
        max_length=args.max_length,
        adapter_scale=args.adapter_scale,
        max_samples=args.max_samples,
        max_doc_chars=args.max_doc_chars,
        show_progress=not args.quiet,
        precision=args.precision,
    )
    if mteb_results:
        from .mteb_results import write_mteb_results

        written = write_mteb_results(results, mteb_results)
        folders = sorted({str(path.parent) for path in written})
        print(f"mteb results: {len(written)} task file(s) in {', '.join(folders) or mteb_results}", file=sys.stderr)
    if compare:
        from .published import add_published

        results = add_published(results, compare, compare_results)
    if args.output:
        from ..errors import DiskFullError
        from ..files import atomic_write_text, os_cause

        path = Path(args.output)
        try:  # a temporary file in the same folder, fsync, rename: a failed write keeps the previous results
            atomic_write_text(path, json.dumps(results, indent=1) + "\n")
        except DiskFullError:
            raise
        except OSError as error:
            raise EvalError(f"{path}: cannot write results ({os_cause(error)})") from None
    print(format_table(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m text2token.evaluation.cli eval ...``: the sub-command on its own."""
    parser = Parser(prog="text2token")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Text2TokenError as error:
        print(f"text2token eval: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
