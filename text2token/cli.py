"""Command line: ``text2token train | encode | demo | eval | export``. It only parses and calls the library."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import Text2TokenError

# flag name -> TrainConfig key, for flags that override the config file
TRAIN_FLAGS = {
    "model": str, "data": None, "data_field": str, "output": str, "pooling": str, "attention": str,
    "stages": None, "steps": int, "stage2_steps": int, "batch_size": int, "grad_accum": int, "lr": float,
    "stage2_lr": float, "max_length": int, "tau": float, "background_samples": int, "lora_r": int,
    "lora_alpha": int, "lora_dropout": float, "seed": int, "save_steps": int, "logging_steps": int,
    "report_to": str, "weighting": str,
}


def _add_train(sub):
    p = sub.add_parser("train", help="train an embedder with Text2Token (stage 1 and/or stage 2)",
                       description="Train an embedding model from a decoder LM by token target prediction.")
    p.add_argument("--config", help="YAML or JSON file with the same keys as the flags (flags win)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--model", help="hub id, local folder or .gguf file (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--data", nargs="+", help="text files (one text per line), JSONL files, folders, or a dataset name")
    p.add_argument("--data-field", help="JSONL/dataset field holding the text (default: text)")
    p.add_argument("--output", help="run folder to create")
    p.add_argument("--pooling", help="mean (default) or last (PromptEOL template)")
    p.add_argument("--attention", help="causal (default) or bidirectional")
    p.add_argument("--stages", nargs="+", help="data, model, or both (default: both)")
    p.add_argument("--steps", type=int, help="stage-1 steps (default 1000)")
    p.add_argument("--stage2-steps", type=int, help="stage-2 steps (default: same as --steps)")
    p.add_argument("--batch-size", type=int, help="texts per device and step (default 32)")
    p.add_argument("--grad-accum", type=int, help="gradient accumulation steps (default 1)")
    p.add_argument("--lr", type=float, help="learning rate (default 5e-5)")
    p.add_argument("--stage2-lr", type=float, help="stage-2 learning rate (default: same as --lr)")
    p.add_argument("--max-length", type=int, help="max tokens per text (default 128)")
    p.add_argument("--tau", type=float, help="stage-2 target temperature (default 1e-5)")
    p.add_argument("--background-samples", type=int, help="corpus texts for the stage-2 background (default 2048)")
    p.add_argument("--weighting", help="stage-1 target weights: uniform (default) or idf")
    p.add_argument("--lora-r", type=int)
    p.add_argument("--lora-alpha", type=int)
    p.add_argument("--lora-dropout", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps (default 100)")
    p.add_argument("--logging-steps", type=int)
    p.add_argument("--report-to", help="none (default), tensorboard, wandb, ... (transformers integrations)")
    p.add_argument("--bf16", action="store_true", default=None, help="bf16 mixed precision")
    p.add_argument("--gradient-checkpointing", action="store_true", default=None)
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from .config import TrainConfig
    from .stages import train

    if args.resume:
        run = train(TrainConfig(output=args.resume), resume=True)
    else:
        overrides = {k: getattr(args, k) for k in list(TRAIN_FLAGS) + ["bf16", "gradient_checkpointing"]
                     if getattr(args, k, None) is not None}
        if overrides.get("stages") == ["both"]:
            overrides["stages"] = ["data", "model"]
        config = TrainConfig.from_file(args.config, overrides) if args.config else TrainConfig.from_dict(overrides, "flags")
        if not config.data:
            raise Text2TokenError("no training data: pass --data FILE (or set `data` in --config)")
        run = train(config, overwrite=args.overwrite)
    print(f"run saved to {run}; load it with text2token.load({str(run)!r})")
    return 0


def _add_encode(sub):
    p = sub.add_parser("encode", help="embed texts (one per line, or JSONL) into a .npy file")
    p.add_argument("model", help="run folder, hub id, local folder or .gguf of a base LM")
    p.add_argument("--input", required=True, help="text file, one text per line (or .jsonl with --field)")
    p.add_argument("--output", required=True, help="where to write the float32 array (.npy)")
    p.add_argument("--field", default="text", help="JSONL field (default: text)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--normalize", action="store_true", help="unit-length embeddings")
    p.add_argument("--pooling", help="override the model's pooling (mean or last)")
    p.add_argument("--attention", help="override the model's attention (causal or bidirectional)")
    p.add_argument("--max-length", type=int)
    p.set_defaults(func=cmd_encode)


def cmd_encode(args) -> int:
    import numpy as np

    from .encoding import read_lines
    from .model import load
    from .files import atomic_save_npy

    texts = read_lines(Path(args.input), args.field)
    model = load(args.model, pooling=args.pooling, attention=args.attention, max_length=args.max_length)
    vectors = model.encode(texts, batch_size=args.batch_size, normalize=args.normalize, show_progress=True)
    atomic_save_npy(Path(args.output), vectors.astype(np.float32))
    print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {args.output}")
    return 0


def _add_demo(sub):
    p = sub.add_parser("demo", help="train both stages on the embedded SmolLM2 offline and show what changed")
    p.add_argument("--output", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--steps", type=int, default=None, help="stage-1 steps (default from the demo recipe)")
    p.add_argument("--stage2-steps", type=int, default=None)
    p.add_argument("--data-dir", default=None, help="folder of ../shared/data (corpus/ and evalsuite/)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing demo run (default: reuse it)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(output=args.output, steps=args.steps, stage2_steps=args.stage2_steps,
                    data_dir=args.data_dir, overwrite=args.overwrite)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="text2token", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", "-v", action="store_true", help="show library log messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_encode(sub)
    _add_demo(sub)
    from .evaluation.cli import add_eval_parser
    from .export import add_export_parser

    add_eval_parser(sub)
    add_export_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("text2token").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.func(args) or 0)
    except Text2TokenError as exc:
        print(f"text2token: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("text2token: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
