"""Validation in one place, before any folder is made (issue 13, item 2) and the `train` flags generated from
TrainConfig's fields (issue 16, item 3).

Every numeric TrainConfig field is swept through `text2token train` with zero, a negative number, inf, nan
and a wrong type: exit code 2, one error line naming the field, no traceback, no run folder, and training
is never reached (``stages.train`` is replaced by a function that fails the test). No model is loaded."""

from __future__ import annotations

import json
import math

import pytest

import text2token.stages as stages
from text2token.runfolder import TRAIN_CONFIG, RunFolder
from text2token.cli import MODEL_FLAGS, build_parser, config_overrides, main
from text2token.config import (
    MAX_SEED, Range, TrainConfig, check_value, config_fields, field_type, numeric_fields, scalar_type,
)
from text2token.errors import ConfigError

# Where 0 is a valid value (decided per field; the rules in config.py must agree, see the test below)
ZERO_ALLOWED = {"lora_dropout", "weight_decay", "warmup_ratio", "max_grad_norm", "seed", "save_total_limit",
                "dataloader_num_workers", "simcse_dropout", "contrastive_weight", "teacher_mix", "head_filter",
                "adapter_scale", "anchor_weight", "lm_weight"}
NUMERIC = ["steps", "stage2_steps", "batch_size", "grad_accum", "lr", "stage2_lr", "max_length", "max_chars", "tau",
           "background_samples", "target_max_k", "target_min_mass", "lora_r", "lora_alpha", "lora_dropout",
           "weight_decay", "warmup_ratio", "max_grad_norm", "seed", "save_steps", "save_total_limit",
           "logging_steps", "dataloader_num_workers", "simcse_temperature", "simcse_dropout", "contrastive_weight",
           "teacher_mix", "head_filter", "anchor_weight", "lm_weight", "adapter_scale"]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def bad_texts(name: str) -> list[str]:
    """Command-line values that field ``name`` must refuse."""
    rule = config_fields()[name].metadata["rule"]
    texts = ["-1", "inf", "-inf", "nan", "abc"]
    if not rule.allows(0):
        texts.append("0")
    if scalar_type(field_type(name)) is int:
        texts.append("1.5")
    if rule.high is not None:
        texts.append(str(rule.high + 1))
    return texts


SWEEP = [(name, text) for name in NUMERIC for text in bad_texts(name)]


@pytest.fixture()
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training was reached with a bad value")

    monkeypatch.setattr(stages, "train", refuse)


@pytest.fixture()
def captured(monkeypatch, tmp_path):
    """Replace training by a recorder: the config (and keywords) `train` would have trained with."""
    seen = {}

    def record(config, **kwargs):
        seen.update(config=config, **kwargs)
        return tmp_path / "recorded-run"

    monkeypatch.setattr(stages, "train", record)
    return seen


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("text2token: error: "), err
    return lines[0]


def train_argv(model, corpus, out, *extra):
    return ["train", "--model", str(model), "--data", str(corpus), "--output", str(out), *map(str, extra)]


# ------------------------------------------------------------------ the rules, once, in the fields
def test_every_numeric_field_has_a_rule_and_zero_is_decided_per_field():
    assert numeric_fields() == NUMERIC  # a new numeric field must join the sweep (and get a rule)
    rules = {name: config_fields()[name].metadata["rule"] for name in NUMERIC}
    assert all(isinstance(rule, Range) for rule in rules.values())
    assert {name for name, rule in rules.items() if rule.allows(0)} == ZERO_ALLOWED
    assert all(not rule.allows(-1) and not rule.allows(math.inf) and not rule.allows(math.nan)
               for rule in rules.values())
    assert rules["seed"].allows(MAX_SEED) and not rules["seed"].allows(MAX_SEED + 1)
    assert rules["warmup_ratio"].allows(1.0) and not rules["lora_dropout"].allows(1.0)
    assert rules["target_min_mass"].allows(1.0) and not rules["target_min_mass"].allows(0.0)


def test_check_value_names_the_field():
    with pytest.raises(ConfigError, match=r"^stage2_lr must be positive and finite, got 0\.0$"):
        check_value("stage2_lr", 0.0)
    with pytest.raises(ConfigError, match=r"^seed must be in \[0, 4294967294\], got -1$"):
        check_value("seed", -1)
    with pytest.raises(ConfigError, match=r"^warmup_ratio must be in \[0, 1\], got -0\.1$"):
        check_value("warmup_ratio", -0.1)
    with pytest.raises(ConfigError, match=r"^logging_steps must be at least 1, got 0$"):
        check_value("logging_steps", 0)
    with pytest.raises(ConfigError, match=r"^lr must be of type float, got 'x' \(str\)$"):
        check_value("lr", "x")
    check_value("background_samples", None)  # None: all texts
    check_value("max_grad_norm", 0.0)  # no clipping


# ------------------------------------------------------------------ the sweep, through the command line
@pytest.mark.parametrize("name, text", SWEEP, ids=[f"{n}={t}" for n, t in SWEEP])
def test_sweep_bad_numeric_flags_exit_2_in_one_line_naming_the_field(tiny_llama, corpus_file, tmp_path, capsys,
                                                                    no_training, name, text):
    out = tmp_path / "run"
    assert main(train_argv(tiny_llama, corpus_file, out, f"{flag(name)}={text}")) == 2  # = : "-inf" is no option
    line = one_error_line(capsys)
    assert line.startswith(f"text2token: error: {name} must be "), line
    assert repr(text) in line or text.lstrip("-") in line  # the value given is shown
    assert not out.exists()


@pytest.mark.parametrize("value", [0, -1, ".inf", ".nan", "abc", "true"])
@pytest.mark.parametrize("name", NUMERIC)
def test_sweep_bad_numeric_values_in_a_config_file(tiny_llama, corpus_file, tmp_path, capsys, no_training,
                                                   name, value):
    if value == 0 and name in ZERO_ALLOWED:
        pytest.skip("0 is valid here")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"{name}: {value}\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(recipe), *train_argv(tiny_llama, corpus_file, out)[1:]]) == 2
    assert one_error_line(capsys).startswith(f"text2token: error: {name} must be ")
    assert not out.exists()


# the cases the issue lists, with the whole message
ISSUE_CASES = [
    (["--stage2-lr", "0"], "stage2_lr must be positive and finite, got 0.0"),
    (["--stage2-lr=-5e-5"], "stage2_lr must be positive and finite, got -5e-05"),
    (["--logging-steps", "0"], "logging_steps must be at least 1, got 0"),
    (["--seed", "-3"], "seed must be in [0, 4294967294], got -3"),
    (["--background-samples", "0"], "background_samples must be at least 1, got 0"),
    (["--background-samples", "-8"], "background_samples must be at least 1, got -8"),
    (["--lr", "inf"], "lr must be positive and finite, got inf"),
    (["--target-max-k", "0"], "target_max_k must be at least 1, got 0"),
    (["--warmup-ratio", "-0.1"], "warmup_ratio must be in [0, 1], got -0.1"),
    (["--dataloader-num-workers", "-1"], "dataloader_num_workers must be at least 0, got -1"),
    (["--lora-target-modules", "q proj"], "lora_target_modules: 'q proj' is not a module name"),
    (["--lora-target-modules", "q_proj", "c_attn"], "lora_target_modules: no linear layer named c_attn in "
                                                    "LlamaForCausalLM"),
    (["--prompt", "no placeholder"], "the prompt template must contain '{text}'"),
    (["--report-to", "nowhere"], "unknown report_to 'nowhere'"),
    (["--precision", "fp8"], "unknown precision 'fp8': choose one of auto, fp32, bf16"),
]


@pytest.mark.parametrize("extra, message", ISSUE_CASES, ids=[" ".join(e) for e, _ in ISSUE_CASES])
def test_issue_cases_are_one_line_before_any_folder(tiny_llama, corpus_file, tmp_path, capsys, no_training,
                                                    extra, message):
    out = tmp_path / "run"
    assert main(train_argv(tiny_llama, corpus_file, out, *extra)) == 2
    assert message in one_error_line(capsys)
    assert not out.exists()


def test_target_max_k_0_in_a_config_file(tiny_llama, corpus_file, tmp_path, capsys, no_training):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"target_max_k": 0, "stages": ["data", "model"]}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(recipe), *train_argv(tiny_llama, corpus_file, out)[1:]]) == 2
    assert one_error_line(capsys) == "text2token: error: target_max_k must be at least 1, got 0"
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "-4", "abc"])
def test_encode_max_length_is_checked_before_the_model_loads(tmp_path, capsys, value):
    texts = tmp_path / "in.txt"
    texts.write_text("a text\n")
    out = tmp_path / "out.npy"
    # the model does not exist: had the flag passed, the error would be about the model
    assert main(["encode", str(tmp_path / "no-model"), "--input", str(texts), "--output", str(out),
                 "--max-length", value]) == 2
    line = one_error_line(capsys)
    assert line.startswith("text2token: error: argument --max-length: max_length must be")
    assert "text2token encode --help" in line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


@pytest.mark.parametrize("argv, message", [
    (["encode", "m", "--input", "x", "--output", "y", "--batch-size", "0"], "argument --batch-size: expected an "
                                                                             "integer at least 1, got '0'"),
    (["encode", "m", "--input", "x", "--output", "y", "--chunk-size", "-2"], "argument --chunk-size"),
    (["encode", "m", "--input", "x", "--output", "y", "--pooling", "max"], "unknown pooling 'max'"),
    (["eval", "m", "--tasks", "t", "--max-length", "0"], "argument --max-length: max_length must be at least 1"),
    (["eval", "m", "--tasks", "t", "--batch-size", "nan"], "argument --batch-size: expected an integer at least 1"),
    (["inspect", "m", "text", "--top-k", "0"], "argument --top-k: expected an integer at least 1, got '0'"),
    (["inspect", "m", "text", "--attention", "sideways"], "unknown attention 'sideways'"),
    (["analyze", "m", "--data", "x", "--sample", "-1"], "argument --sample"),
    (["analyze", "m", "--data", "x", "--seed", "1.5"], "argument --seed: invalid int value: '1.5'"),
    (["analyze-retrieval", "m", "--task-dir", "d", "--alpha", "inf"],
     "argument --alpha: expected a number in [0, 1], got 'inf'"),
    (["demo", "--steps", "0"], "argument --steps: expected an integer at least 1, got '0'"),
    (["encode", "m"], "the following arguments are required: --input, --output"),
])
def test_other_commands_numeric_flags_are_one_line_usage_errors(capsys, argv, message):
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert message in line and f"see `text2token {argv[0]} --help`" in line


# ------------------------------------------------------------------ flags generated from the fields
OLD_SPELLINGS = {  # every train flag of the hand-written parser, with a value and what it must give
    "--model": ("m", "m"), "--data": ("a.txt", ["a.txt"]), "--stage1-data": ("p.txt", ["p.txt"]),
    "--stage2-data": ("s.txt", ["s.txt"]), "--data-field": ("body", "body"), "--output": ("o", "o"),
    "--pooling": ("mean", "mean"), "--attention": ("bidirectional", "bidirectional"),
    "--stages": ("both", ["data", "model"]), "--objective": ("text2token", "text2token"),
    "--simcse-temperature": ("0.1", 0.1), "--simcse-dropout": ("0.2", 0.2), "--steps": ("7", 7),
    "--stage2-steps": ("9", 9), "--batch-size": ("4", 4), "--grad-accum": ("2", 2), "--lr": ("1e-3", 1e-3),
    "--stage2-lr": ("2e-5", 2e-5), "--max-length": ("24", 24), "--tau": ("0.001", 0.001),
    "--background-samples": ("8", 8), "--weighting": ("idf", "idf"), "--stop-words": ("sklearn", "sklearn"),
    "--lora-target-modules": ("attention", "attention"), "--contrastive-weight": ("0", 0.0),
    "--head-filter": ("2", 2), "--lora-r": ("4", 4), "--lora-alpha": ("8", 8), "--lora-dropout": ("0.1", 0.1),
    "--seed": ("3", 3), "--save-steps": ("2", 2), "--logging-steps": ("1", 1),
    "--report-to": ("tensorboard", "tensorboard"), "--precision": ("fp32", "fp32"),
    "--lr-scheduler": ("linear", "linear"), "--dtype": ("bfloat16", "bfloat16"),
}


def test_old_flag_spellings_still_parse_to_the_same_values():
    argv = ["train"]
    for name, (text, _) in OLD_SPELLINGS.items():
        argv += [name, text]
    argv += ["--gradient-checkpointing", "--group-by-length"]
    values = config_overrides(build_parser().parse_args(argv))
    expected = {name[2:].replace("-", "_"): value for name, (_, value) in OLD_SPELLINGS.items()}
    assert values == {**expected, "gradient_checkpointing": True, "group_by_length": True}
    config = TrainConfig.from_dict(values)
    assert (config.stages, config.lr_of, config.steps_of) == (["data", "model"], {"data": 1e-3, "model": 2e-5},
                                                             {"data": 7, "model": 9})


def test_every_field_has_a_flag_and_no_flag_restates_a_default():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    options = {opt: action for action in train._actions for opt in action.option_strings}
    for name, f in config_fields().items():
        assert flag(name) in options, name
        assert f.metadata["help"], name
        assert options[flag(name)].default is not None  # SUPPRESS: a flag not given sets nothing
    assert config_overrides(parser.parse_args(["train"])) == {}  # so the file's or the field's default stands
    assert TrainConfig.from_dict(config_overrides(parser.parse_args(["train"]))) == TrainConfig()
    # the help shows the field's own default (the hand-written help once said 0 for contrastive_weight)
    assert f"(default: {TrainConfig().contrastive_weight})" in options["--contrastive-weight"].help
    assert TrainConfig().contrastive_weight == 3.0
    assert "(default: 1000)" in options["--steps"].help and "(default: 32)" in options["--batch-size"].help
    helptext = train.format_help()
    for name in ("prompt", "max_chars", "target_max_k", "target_min_mass", "lora_target_modules", "weight_decay",
                 "warmup_ratio", "max_grad_norm", "save_total_limit", "dataloader_num_workers"):
        assert flag(name) in helptext  # the ten fields that had no flag


def test_new_flags_reach_the_config(tiny_llama, corpus_file, tmp_path, captured):
    out = tmp_path / "run"
    assert main(train_argv(tiny_llama, corpus_file, out, "--prompt", "Text: {text} in one word:", "--max-chars",
                           "500", "--target-max-k", "8", "--target-min-mass", "0.9", "--weight-decay", "0.01",
                           "--warmup-ratio", "0.1", "--max-grad-norm", "0", "--save-total-limit", "0",
                           "--dataloader-num-workers", "1", "--background-samples", "none",
                           "--lora-target-modules", "q_proj", "v_proj", "--no-group-by-length")) == 0
    c = captured["config"]
    assert (c.prompt, c.max_chars, c.target_max_k, c.target_min_mass) == ("Text: {text} in one word:", 500, 8, 0.9)
    assert (c.weight_decay, c.warmup_ratio, c.max_grad_norm, c.save_total_limit) == (0.01, 0.1, 0.0, 0)
    assert (c.dataloader_num_workers, c.background_samples, c.group_by_length) == (1, None, False)
    assert c.lora_target_modules == ["q_proj", "v_proj"]  # names of the tiny Llama's layers: the check passes
    assert captured["overwrite"] is False and not out.exists()


def test_flags_win_over_the_config_file(tiny_llama, corpus_file, tmp_path, captured):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("steps: 50\nlr: 3.0e-4\nweight_decay: 0.1\n")
    assert main(["train", "--config", str(recipe), *train_argv(tiny_llama, corpus_file, tmp_path / "run")[1:],
                 "--steps", "2"]) == 0
    c = captured["config"]
    assert (c.steps, c.lr, c.weight_decay, c.batch_size) == (2, 3e-4, 0.1, 32)


def test_one_shared_set_of_model_flags():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in MODEL_FLAGS:
        helps = set()
        for command in ("encode", "eval", "inspect", "analyze", "analyze-retrieval"):
            action = next(a for a in commands[command]._actions if flag(name) in a.option_strings)
            assert action.default is None  # not given: the model's own setting
            helps.add(action.help)
        assert len(helps) == 1, name  # the same flag everywhere
    args = parser.parse_args(["inspect", "m", "t", "--pooling", "last", "--attention", "bidirectional",
                              "--max-length", "64"])
    assert (args.pooling, args.attention, args.max_length) == ("last", "bidirectional", 64)


def test_analysis_cli_uses_no_private_helper_of_evaluation_cli():
    import text2token.analysis.cli as analysis_cli
    import text2token.evaluation.cli as evaluation_cli

    private = {name for name in vars(evaluation_cli) if name.startswith("_") and not name.startswith("__")}
    imported = {name for name, value in vars(analysis_cli).items()
                if getattr(value, "__module__", None) == evaluation_cli.__name__}
    assert not imported and not any(vars(analysis_cli).get(name) is vars(evaluation_cli)[name] for name in private
                                    if name in vars(analysis_cli))


# ------------------------------------------------------------------ --resume with other flags
@pytest.fixture()
def started_run(tiny_llama, corpus_file, tmp_path):
    """A run folder as `train` leaves it before its first checkpoint (its saved TrainConfig only)."""
    config = TrainConfig(model=tiny_llama, data=[str(corpus_file)], output=str(tmp_path / "run"), steps=4,
                         batch_size=4, max_length=24, pooling="mean")
    run = RunFolder(config.output).prepare(config, resume=False, overwrite=False)
    return run, (run / TRAIN_CONFIG).read_text()


def test_resume_refuses_flags_that_would_change_the_run(started_run, tmp_path, capsys, no_training):
    run, saved = started_run
    elsewhere = tmp_path / "elsewhere"
    assert main(["train", "--resume", str(run), "--steps", "5", "--lr", "1", "--pooling", "last",
                 "--output", str(elsewhere)]) == 2
    line = one_error_line(capsys)
    assert f"--resume continues {run} with the settings it was started with" in line
    for change in ("--steps 5 (the run has 4)", "--lr 1.0 (the run has 0.0001)", "--pooling last (the run has mean)",
                   f"--output {elsewhere} (the run has {run})"):
        assert change in line
    assert (run / TRAIN_CONFIG).read_text() == saved and not elsewhere.exists()


def test_resume_checks_given_values_and_refuses_overwrite(started_run, capsys, no_training):
    run, saved = started_run
    assert main(["train", "--resume", str(run), "--steps", "0"]) == 2
    assert one_error_line(capsys) == "text2token: error: steps must be at least 1, got 0"
    assert main(["train", "--resume", str(run), "--overwrite"]) == 2
    assert "--overwrite does not apply to --resume" in one_error_line(capsys)
    assert (run / TRAIN_CONFIG).read_text() == saved


def test_resume_accepts_flags_that_agree_with_the_run(started_run, tmp_path, captured):
    run, saved = started_run
    recipe = tmp_path / "same.yaml"
    recipe.write_text("batch_size: 4\npooling: mean\n")
    assert main(["train", "--resume", str(run), "--config", str(recipe), "--steps", "4", "--max-length", "24",
                 "--output", str(run)]) == 0
    assert captured["resume"] is True and captured["config"].output == str(run)
    assert (run / TRAIN_CONFIG).read_text() == saved
