"""Command line: ``text2token train | encode | demo | eval | export | inspect | analyze | analyze-retrieval``. It only parses and calls the library."""

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
    "report_to": str, "weighting": str, "objective": str, "simcse_temperature": float, "simcse_dropout": float,
    "dtype": str, "lr_scheduler": str, "stage1_data": None, "stage2_data": None, "stop_words": str,
    "lora_target_modules": None, "contrastive_weight": float, "head_filter": int, "precision": str,
}


def _add_train(sub):
    p = sub.add_parser("train", help="train an embedder with Text2Token (stage 1 and/or stage 2)",
                       description="Train an embedding model from a decoder LM by token target prediction.")
    p.add_argument("--config", help="YAML or JSON file with the same keys as the flags (flags win)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--model", help="hub id, local folder or .gguf file (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--data", nargs="+", help="text files (one text per line), JSONL files, folders, or a dataset name")
    p.add_argument("--stage1-data", nargs="+", help="stage-1 corpus instead of --data (the prototype: passages)")
    p.add_argument("--stage2-data", nargs="+", help="stage-2 corpus instead of --data (the prototype: sentences; "
                   "the background is taken over it)")
    p.add_argument("--data-field", help="JSONL/dataset field holding the text (default: text)")
    p.add_argument("--output", help="run folder to create")
    p.add_argument("--pooling", help="last (default: the PromptEOL template) or mean")
    p.add_argument("--attention", help="causal (default) or bidirectional")
    p.add_argument("--stages", nargs="+", help="data (default: stage 1), model, or both; not with --objective simcse")
    p.add_argument("--objective", help="text2token (default) or simcse (the LLM2Vec-style unsupervised SimCSE "
                   "baseline: one stage, --steps and --lr are its own)")
    p.add_argument("--simcse-temperature", type=float, help="SimCSE: cosine similarity / temperature (default 0.05)")
    p.add_argument("--simcse-dropout", type=float, help="SimCSE: attention dropout while training (default 0.3)")
    p.add_argument("--steps", type=int, help="stage-1 steps (default 1000)")
    p.add_argument("--stage2-steps", type=int, help="stage-2 steps (default: same as --steps)")
    p.add_argument("--batch-size", type=int, help="texts per device and step (default 32)")
    p.add_argument("--grad-accum", type=int, help="gradient accumulation steps (default 1)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-4, held constant)")
    p.add_argument("--stage2-lr", type=float, help="stage-2 learning rate (default: same as --lr)")
    p.add_argument("--max-length", type=int, help="max tokens per text (default 128)")
    p.add_argument("--tau", type=float, help="stage-2 target temperature (default 1e-5)")
    p.add_argument("--background-samples", type=int, help="corpus texts for the stage-2 background (default 2048)")
    p.add_argument("--weighting", help="stage-1 target weights: uniform (default), idf, or prompt_attention (the "
                   "attention the prompt's last token pays to each in-text token)")
    p.add_argument("--stop-words", help="stage-1 stop words: nltk (default, the prototype's list), sklearn, none")
    p.add_argument("--lora-target-modules", nargs="+", metavar="NAME",
                   help="LoRA on: all-linear, attention (q,k,v,o), qv, or module names")
    p.add_argument("--contrastive-weight", type=float,
                   help="joint objective: add SimCSE's in-batch term with this weight to the Text2Token KL "
                        "(two dropout views; default 0: off)")
    p.add_argument("--head-filter", type=int, metavar="K",
                   help="remove the LM head's K dominant singular directions from the projection the loss and "
                        "stage-2 targets use (default 0: off)")
    p.add_argument("--lora-r", type=int)
    p.add_argument("--lora-alpha", type=int)
    p.add_argument("--lora-dropout", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps (default 100)")
    p.add_argument("--logging-steps", type=int)
    p.add_argument("--report-to", help="none (default), tensorboard, wandb, ... (transformers integrations)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                   help="bf16 autocast or fp32; auto (default): bf16 where the hardware runs it fast")
    p.add_argument("--bf16", action="store_true", default=None, help="the same as --precision bf16")
    p.add_argument("--lr-scheduler", help="constant (default) or linear (decay to 0), or any transformers scheduler")
    p.add_argument("--dtype", help="backbone weights: float32 (default), bfloat16 (half the memory; GPUs), float16")
    p.add_argument("--gradient-checkpointing", action="store_true", default=None)
    p.add_argument("--group-by-length", action="store_true", default=None,
                   help="batches of texts of similar length: less padding, faster steps (default: random batches)")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from .config import TrainConfig
    from .errors import ConfigError
    from .stages import train

    if args.resume:
        run = train(TrainConfig(output=args.resume), resume=True)
    else:
        overrides = {k: getattr(args, k) for k in list(TRAIN_FLAGS) + ["gradient_checkpointing", "group_by_length"]
                     if getattr(args, k, None) is not None}
        if args.bf16:
            if overrides.get("precision", "bf16") != "bf16":
                raise ConfigError(f"--bf16 contradicts --precision {overrides['precision']}")
            overrides["precision"] = "bf16"
        modules = overrides.get("lora_target_modules")
        if modules and len(modules) == 1 and modules[0] in ("all-linear", "attention", "qv"):
            overrides["lora_target_modules"] = modules[0]
        if overrides.get("stages") == ["both"]:
            overrides["stages"] = ["data", "model"]
        config = TrainConfig.from_file(args.config, overrides) if args.config else TrainConfig.from_dict(overrides, "flags")
        if "stages" in overrides and config.objective == "simcse":
            raise ConfigError("--stages does not apply to objective simcse: it trains one stage (simcse)")
        stages = [s for s in config.stages if s != "simcse"] or ["model"]
        if not all(config.data_of(s) for s in stages):
            raise Text2TokenError("no training data: pass --data FILE (or set `data` in --config)")
        from .precision import describe, resolve

        print(describe(resolve(config.precision), config.precision), file=sys.stderr)
        run = train(config, overwrite=args.overwrite)
    from .distributed import is_main

    if is_main():  # under accelerate launch / torchrun, say it once
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
    p.add_argument("--chunk-size", type=int, default=4096,
                   help="lines read, encoded (length-sorted) and written at a time; memory does not grow "
                        "with the input (default 4096)")
    p.add_argument("--shard", metavar="I/N", help="encode only shard I of N (0 <= I < N), a contiguous range of "
                   "lines, into the same output; default under torchrun/accelerate launch: RANK/WORLD_SIZE")
    p.add_argument("--restart", action="store_true",
                   help="redo this shard's rows instead of continuing an interrupted encode (the default)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: this process's GPU if there is one)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="bf16 autocast or fp32; auto (default): bf16 where the hardware runs it fast")
    p.set_defaults(func=cmd_encode)


def cmd_encode(args) -> int:
    """Streaming, resumable, shardable: see text2token/encoding.py."""
    from .distributed import local_device
    from .encoding import count_rows, encode_file, parse_shard
    from .model import load

    shard = parse_shard(args.shard)
    rows = count_rows(Path(args.input), args.field)  # a missing, empty or malformed input fails before the model loads
    model = load(args.model, pooling=args.pooling, attention=args.attention, max_length=args.max_length)
    model.model.to(args.device or local_device())
    from .precision import describe, resolve

    model.precision = resolve(args.precision, model.device.type)  # after the move: the device decides "auto"
    print(describe(model.precision, args.precision), file=sys.stderr)
    result = encode_file(model, Path(args.input), Path(args.output), field=args.field, batch_size=args.batch_size,
                         normalize=args.normalize, chunk_size=args.chunk_size, shard=shard, restart=args.restart,
                         model_key=_model_key(args.model), show_progress=True, rows=rows)
    if result.complete:
        print(f"wrote {result.rows} x {result.dim} embeddings to {args.output}")
    else:
        i, n = result.shard
        print(f"shard {i}/{n}: rows {result.start}-{result.stop} written; {args.output} appears when every "
              "shard is done")
    return 0


def _model_key(name: str | None) -> str:
    """What identifies the model of an encode (to resume only with the same one): path and mtime."""
    if not name:
        return "default"
    path = Path(name).expanduser()
    if not path.exists():
        return name
    stamp = [f for f in (path / "text2token_config.json", path / "config.json", path) if f.exists()][0]
    return f"{path.resolve()}@{stamp.stat().st_mtime_ns}"


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
    from .analysis.cli import add_analysis_parsers

    add_analysis_parsers(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("text2token").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = int(args.func(args) or 0)
        _close_process_group()
        return code
    except Text2TokenError as exc:
        _close_progress_bars()
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())  # always one line
        print(f"text2token: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        print("text2token: interrupted", file=sys.stderr)
        return 130


def _close_process_group() -> None:
    """Close torch.distributed's process group after a successful command under torchrun / accelerate launch.

    Left open, gloo's worker threads can be torn down during interpreter exit and abort a rank whose
    work is done (torchrun then reports the run as failed). Not done after an error: a rank that
    failed alone would wait forever for the others in the collective teardown; the launcher stops them.
    """
    if "torch" in sys.modules:  # never import torch just to find out
        from .distributed import shutdown

        shutdown()


def _close_progress_bars() -> None:
    """Finish progress bars an error interrupted, so the error line comes last and on its own line."""
    try:
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", [])):
            bar.close()
    except Exception:  # never let cosmetics hide the error
        pass


if __name__ == "__main__":
    sys.exit(main())
