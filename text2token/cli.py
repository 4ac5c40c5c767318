"""Command line: ``text2token train | encode | demo | eval | export | inspect | analyze | analyze-retrieval``. It only parses and calls the library."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import sys
from pathlib import Path

from .config import AT_LEAST_1
from .errors import Text2TokenError


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error told in one line (``text2token: error: ...``, exit code 2) like every
    other error of the command line; ``--help`` shows the usage."""

    def error(self, message):
        message = " ".join(message.split())
        self.exit(2, f"text2token: error: {message} (see `{self.prog} --help`)\n")


def number_flag(kind: type, rule):
    """An argparse ``type``: a number of ``kind`` (int or float) that ``rule`` (a
    :class:`text2token.config.Range`) allows; anything else is a one-line usage error saying the range."""
    what = f"{'an integer' if kind is int else 'a number'} {rule.describe()}"

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not rule.allows(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    convert.__name__ = what
    return convert


positive_int = number_flag(int, AT_LEAST_1)


# ------------------------------------------------------------------ flags generated from TrainConfig
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return " ".join(map(str, value)) or "none"
    return repr(value) if isinstance(value, str) and (" " in value or not value) else str(value)


def _field_help(f, override: bool = False) -> str:
    from .config import OneOf

    text = f.metadata.get("help", "")
    rule = f.metadata.get("rule")
    if override:  # what the field is, not its training default
        what = {"max_length": "max tokens per text"}.get(f.name, f.name.replace("_", " "))
        text = f"override the model's own {what}"
        if isinstance(rule, OneOf) and not callable(rule.names):
            text += f": {' or '.join(rule.choices())}"
    else:
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if default not in (None, []) and "(default" not in text:
            text += f" (default: {_default_text(default)})"
    return text.replace("%", "%%")  # argparse formats help with %


def add_config_flags(parser, names=None) -> None:
    """One flag per TrainConfig field (``--batch-size`` for ``batch_size``), with the field's help and default.

    A flag is left out of the parsed namespace unless given (so the config file's value or the
    field's default stands), and parses leniently (:func:`text2token.config.parse_flag`): a bad
    value reaches :meth:`TrainConfig.validate`, which names the field in one line."""
    from .config import scalar_type, config_fields, field_type, parse_flag

    fields = config_fields()
    for name in names or fields:
        f = fields[name]
        options = {k: v for k, v in f.metadata.get("flag", {}).items() if k != "from_flag"}
        kwargs = {"dest": name, "default": argparse.SUPPRESS, "help": _field_help(f)}
        kind = scalar_type(field_type(name))
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = functools.partial(parse_flag, name)
            kwargs["metavar"] = {int: "N", float: "X"}.get(kind, "PATH" if name.endswith("data") else None)
        kwargs.update(options)
        parser.add_argument(_flag(name), **kwargs)


def config_overrides(args) -> dict:
    """The TrainConfig values of the flags given on the command line (see :func:`add_config_flags`)."""
    from .config import config_fields

    values = {}
    for name, f in config_fields().items():
        if name in vars(args):
            value = getattr(args, name)
            convert = f.metadata.get("flag", {}).get("from_flag")
            values[name] = convert(value) if convert and isinstance(value, list) else value
    return values


MODEL_FLAGS = ("pooling", "attention", "max_length", "adapter_scale")  # TrainConfig fields a loaded model's settings override


def add_model_flags(parser) -> None:
    """``--pooling``, ``--attention``, ``--max-length``, ``--adapter-scale``: override a run's (or a base LM's) own
    settings, checked
    by the TrainConfig fields' rules (a bad value is a one-line usage error); not given: ``None``."""
    from .config import config_fields

    fields = config_fields()
    for name in MODEL_FLAGS:
        parser.add_argument(_flag(name), type=_checked(name), metavar={"max_length": "N", "adapter_scale": "SCALE"}.get(name),
                            help=_field_help(fields[name], override=True))


def _checked(name: str):
    """An argparse ``type`` for the value of field ``name``, checked as TrainConfig checks it."""
    from .config import check_value, parse_flag
    from .errors import ConfigError

    def convert(text: str):
        value = parse_flag(name, text)
        try:
            check_value(name, value)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    convert.__name__ = name
    return convert


# ------------------------------------------------------------------ train
def _add_train(sub):
    p = sub.add_parser("train", help="train an embedder with Text2Token (stage 1 and/or stage 2)",
                       description="Train an embedding model from a decoder LM by token target prediction. "
                       "Every setting has a flag and a key of the same name in --config files (flags win).")
    p.add_argument("--config", help="YAML or JSON file with the same keys as the flags (flags win)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint, "
                   "with the settings it was started with (a flag that would change one is refused)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--bf16", action="store_true", default=None, help="the same as --precision bf16")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from .config import TrainConfig
    from .errors import ConfigError

    overrides = config_overrides(args)
    if args.bf16:
        if overrides.get("precision", "bf16") != "bf16":
            raise ConfigError(f"--bf16 contradicts --precision {overrides['precision']}")
        overrides["precision"] = "bf16"
    if args.resume:
        _check_resume_flags(args, overrides)
        from .stages import train

        with _resumable_on_write_error(args.resume):
            run = train(TrainConfig(output=args.resume), resume=True)
    else:
        # every value is checked here, before a model is loaded or a folder made
        config = TrainConfig.from_file(args.config, overrides) if args.config else TrainConfig.from_dict(overrides, "flags")
        if "stages" in overrides and config.objective == "simcse":
            raise ConfigError("--stages does not apply to objective simcse: it trains one stage (simcse)")
        stages = [s for s in config.stages if s != "simcse"] or ["model"]
        if not all(config.data_of(s) for s in stages):
            raise Text2TokenError("no training data: pass --data FILE (or set `data` in --config)")
        _check_lora_names(config)
        from .precision import describe, resolve
        from .stages import train

        print(describe(resolve(config.precision), config.precision), file=sys.stderr)
        _check_prompt_room(config)
        with _resumable_on_write_error(config.output):
            run = train(config, overwrite=args.overwrite)
    from .distributed import is_main

    if is_main():  # under accelerate launch / torchrun, say it once
        print(f"run saved to {run}; load it with text2token.load({str(run)!r})")
    return 0


def _check_resume_flags(args, overrides: dict) -> None:
    """``--resume RUN`` continues RUN with its saved settings: a flag (or --config key) that agrees with them
    is accepted, one that would change them is refused in one line naming each."""
    from .config import TrainConfig
    from .errors import ConfigError

    if args.overwrite:
        raise ConfigError("--overwrite does not apply to --resume: a resumed run keeps its folder")
    given = TrainConfig.read_file(args.config) if args.config else {}
    given.update(overrides)
    if not given:
        return
    from .runfolder import RunFolder

    folder = RunFolder(args.resume)
    run = folder.prepare(TrainConfig(output=args.resume), resume=True, overwrite=False)  # checks, makes nothing
    saved = TrainConfig.from_dict(folder.read_train_config(), source=str(run))
    wanted = TrainConfig.from_dict({**saved.to_dict(), **given}, source=args.config or "flags")  # bad values: named
    changed = []
    for key in dict.fromkeys("precision" if k == "bf16" else k for k in given):
        if key == "output":
            same = Path(given["output"]).expanduser().resolve() == run.expanduser().resolve()
        else:
            same = getattr(wanted, key) == getattr(saved, key)
        if not same:
            changed.append(f"{_flag(key)} {_default_text(getattr(wanted, key))} (the run has "
                           f"{_default_text(str(run) if key == 'output' else getattr(saved, key))})")
    if changed:
        raise ConfigError(f"--resume continues {run} with the settings it was started with, and these would change "
                          f"them: {'; '.join(changed)}. Drop them, or start a new run with another --output")


@contextlib.contextmanager
def _resumable_on_write_error(output):
    """A write that failed mid-run (no permission, a read-only or failing disk; not a full disk, which says
    its own) is one line naming the path and the cause, and, once the run folder holds a run, how to go on:
    what was written before stays, and ``--resume`` continues from there."""
    from .errors import WriteError
    from .runfolder import RunFolder

    try:
        yield
    except WriteError as exc:
        if output and RunFolder(output).is_started():
            raise WriteError(f"{exc}; training stopped, what it saved before is kept: make the folder writable, "
                             f"then continue with `text2token train --resume {output}`",
                             exc.errno, exc.strerror, exc.filename) from exc
        raise


def _check_prompt_room(config) -> None:
    """With last pooling the prompt template must leave room for text within ``max_length`` tokens: checked
    on the backbone's tokenizer before training makes a folder (else a folder that --resume cannot finish)."""
    if config.pooling != "last":
        return
    try:
        from .backbone import load_tokenizer, resolve_backbone

        tokenizer = load_tokenizer(resolve_backbone(config.model))
    except Exception:  # noqa: BLE001 - a backbone that cannot be read is reported by training, as before
        return
    from .pooling import TextEncoder

    TextEncoder(tokenizer, config.pooling, config.max_length, config.prompt)  # a ConfigError naming max_length


def _check_lora_names(config) -> None:
    """Module names in ``lora_target_modules`` must exist in the backbone: checked on its skeleton (built
    from its config on the meta device, no weights read) before training starts and makes a folder."""
    if not isinstance(config.lora_target_modules, list):
        return
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from .backbone import resolve_backbone

        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_backbone(config.model)))
    except Exception:  # noqa: BLE001 - a backbone that cannot be read is reported by training, as before
        return
    from .lora import lora_targets

    lora_targets(skeleton, config.lora_target_modules)


def _add_encode(sub):
    p = sub.add_parser("encode", help="embed texts (one per line, or JSONL) into a .npy file")
    p.add_argument("model", help="run folder, hub id, local folder or .gguf of a base LM")
    p.add_argument("--input", required=True, help="text file, one text per line (or .jsonl/.json with --field, as train reads it), or a folder "
                   "of them (its files in sorted order)")
    p.add_argument("--output", required=True, help="where to write the float32 array (.npy)")
    p.add_argument("--field", default="text", help="JSONL field (default: text)")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N", help="texts per batch (default 32)")
    p.add_argument("--normalize", action="store_true", help="unit-length embeddings")
    add_model_flags(p)
    p.add_argument("--chunk-size", type=positive_int, default=4096, metavar="N",
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
    from .encoding import check_output, count_rows, encode_file, parse_shard
    from .model import load

    shard = parse_shard(args.shard)
    check_output(Path(args.input), Path(args.output))  # never the input, never a folder: before the model loads
    rows = count_rows(Path(args.input), args.field)  # a missing, empty or malformed input fails before the model loads
    model = load(args.model, pooling=args.pooling, attention=args.attention, max_length=args.max_length,
                 adapter_scale=args.adapter_scale)
    model.model.to(args.device or local_device())
    from .precision import describe, resolve

    model.precision = resolve(args.precision, model.device.type)  # after the move: the device decides "auto"
    print(describe(model.precision, args.precision), file=sys.stderr)
    result = encode_file(model, Path(args.input), Path(args.output), field=args.field, batch_size=args.batch_size,
                         normalize=args.normalize, chunk_size=args.chunk_size, shard=shard, restart=args.restart,
                         model_key=_model_key(args.model, args), show_progress=True, rows=rows)
    if result.complete:
        print(f"wrote {result.rows} x {result.dim} embeddings to {args.output}")
    else:
        i, n = result.shard
        print(f"shard {i}/{n}: rows {result.start}-{result.stop} written; {args.output} appears when every "
              "shard is done")
    return 0


def _model_key(name: str | None, args=None) -> str:
    """What identifies the model of an encode (to resume only with the same one): path and mtime, and the
    model flags given (``--pooling`` ... ``--adapter-scale``)."""
    given = "".join(f"+{flag}={getattr(args, flag)}" for flag in MODEL_FLAGS
                    if getattr(args, flag, None) is not None)
    return _model_files_key(name) + given


def _model_files_key(name: str | None) -> str:
    if not name:
        return "default"
    path = Path(name).expanduser()
    if not path.exists():
        return name
    from .runfolder import RUN_CONFIG

    stamp = [f for f in (path / RUN_CONFIG, path / "config.json", path) if f.exists()][0]
    key = f"{path.resolve()}@{stamp.stat().st_mtime_ns}"
    if (path / RUN_CONFIG).is_file():  # a run folder: its backbone's weights are part of the model too
        from .runfolder import RunFolder

        key += f"+backbone:{RunFolder(path).backbone_digest()}"
    return key


def _add_demo(sub):
    p = sub.add_parser("demo", help="train the default recipe briefly on the embedded SmolLM2 offline and show what changed")
    p.add_argument("--output", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--steps", type=positive_int, default=None, help="stage-1 steps (default from the demo recipe)")
    p.add_argument("--stage2-steps", type=positive_int, default=None,
                   help="stage-2 steps (default from the demo recipe)")
    p.add_argument("--data-dir", default=None, help="folder of ../shared/data (corpus/ and evalsuite/)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing demo run (default: reuse it)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(output=args.output, steps=args.steps, stage2_steps=args.stage2_steps,
                    data_dir=args.data_dir, overwrite=args.overwrite)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="text2token", description=__doc__.splitlines()[0])
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or a usage error already told in one line (2)
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("text2token").setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if argv is None and args.command in HEAVY_COMMANDS:  # the command line itself, not a call from Python
            _use_jemalloc()
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


HEAVY_COMMANDS = ("train", "eval", "encode", "demo")  # those that run the model: worth the allocator's re-exec


def _use_jemalloc() -> None:
    """Re-execute with jemalloc preloaded where ``TEXT2TOKEN_ALLOCATOR`` asks for it (text2token.memory; off by
    default), and say so once."""
    from .memory import allocator_line, reexec_with_jemalloc

    reexec_with_jemalloc()
    line = allocator_line()
    if line:
        print(line, file=sys.stderr)


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
