"""One configuration object per run: defaults from METHOD.md, loadable from YAML/JSON,
overridable by command-line flags, saved with the run.

Each field of :class:`TrainConfig` carries, in its metadata, its help text (the ``train`` flag's
help: ``text2token train --help``) and the rule its value must follow (a :class:`Range` or a
:class:`OneOf`). :meth:`TrainConfig.validate` checks every field against its type and rule, so a
bad value is one :class:`~text2token.errors.ConfigError` naming the field, found before any model
is loaded or any run folder is made; the ``train`` flags are generated from the same fields
(:func:`text2token.cli.add_config_flags`), so a field's default is written once, here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .backbone import ATTENTION_MODES
from .errors import ConfigError
from .pooling import POOLINGS, PROMPT_EOL

STAGES = ("data", "model")
DEFAULT_STAGES = ("data",)  # the default recipe (RESULTS.md): stage 1 with the joint objective
WEIGHTINGS = ("uniform", "idf", "prompt_attention")  # stage-1 target weights
ANCHORS = ("cosine", "contrastive")  # forms of the anchor term (anchor_weight > 0)
DTYPES = ("float32", "bfloat16", "float16")  # dtype of the backbone weights while training
OBJECTIVES = ("text2token", "simcse")  # simcse: the LLM2Vec-style unsupervised SimCSE baseline (contrastive.py)
SIMCSE_STAGE = "simcse"  # the one stage of a SimCSE run
MAX_SEED = 2**32 - 2  # numpy's seeds stop at 2**32 - 1, and stage 2 trains with seed + 1


# ------------------------------------------------------------------ value rules
@dataclass(frozen=True)
class Range:
    """The numbers a numeric field takes: finite, from ``low`` to ``high`` (``None``: unbounded), each end
    included unless ``low_open`` / ``high_open``. ``None`` is not checked (a field typed ``... | None``)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def describe(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.high is None:
            if self.low is None:
                return "a finite number"
            if self.low_open:
                return "positive and finite" if self.low == 0 else f"a finite number > {low}"
            return f"at least {low}" if isinstance(self.low, int) else f"a finite number >= {low}"
        if self.low is None:
            return f"at most {high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"

    def check(self, name: str, value) -> str | None:
        return None if self.allows(value) else f"{name} must be {self.describe()}, got {value!r}"


def _number(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


AT_LEAST_0 = Range(0)  # an int
AT_LEAST_1 = Range(1)  # an int
POSITIVE = Range(0.0, low_open=True)  # a float
NON_NEGATIVE = Range(0.0)  # a float
DROPOUT = Range(0.0, 1.0, high_open=True)


@dataclass(frozen=True)
class OneOf:
    """A name from a fixed list; ``names`` may be a function (lists that need an import, looked up only
    when a value is checked)."""

    names: tuple | typing.Callable[[], tuple]

    def choices(self) -> tuple:
        return tuple(self.names() if callable(self.names) else self.names)

    def check(self, name: str, value) -> str | None:
        choices = self.choices()
        return None if value in choices else f"unknown {name} {value!r}: choose one of {', '.join(choices)}"


def _stop_word_lists() -> tuple:
    from .targets.data_driven import STOP_WORD_LISTS

    return STOP_WORD_LISTS


def _precisions() -> tuple:
    from .precision import PRECISIONS

    return PRECISIONS


def _schedulers() -> tuple:
    from transformers.trainer_utils import SchedulerType

    return tuple(s.value for s in SchedulerType)


def _check_prompt(name: str, value: str) -> str | None:
    if "{text}" not in value:
        return f"the prompt template must contain '{{text}}': {value!r}"
    try:
        value.format(text="")
    except (KeyError, IndexError, ValueError) as exc:
        return f"{name} {value!r} is not a template with one placeholder {{text}} ({type(exc).__name__}: {exc})"
    return None


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_lora_modules(name: str, value) -> str | None:
    from .lora import LORA_PRESETS

    if isinstance(value, str):
        if value not in LORA_PRESETS:
            return f"unknown {name} {value!r}: a preset ({', '.join(LORA_PRESETS)}) or a list of module names"
        return None
    if not value:
        return f"{name} is an empty list: name at least one module, or a preset"
    bad = [v for v in value if not _MODULE_NAME.fullmatch(v)]
    if bad:
        return (f"{name}: {', '.join(map(repr, bad))} is not a module name (the last part of a linear layer's "
                f"name, such as q_proj), nor a preset ({', '.join(LORA_PRESETS)}) on its own")
    return None


def _check_report_to(name: str, value) -> str | None:
    try:
        from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    except ImportError:  # another transformers layout: leave the check to the Trainer
        return None
    known = ("none", "all", *sorted(INTEGRATION_TO_CALLBACK))
    bad = [v for v in ([value] if isinstance(value, str) else value) if v not in known]
    return f"unknown {name} {', '.join(map(repr, bad))}: choose from {', '.join(known)}" if bad else None


def _check_not_empty(name: str, value: str) -> str | None:
    return None if value.strip() else f"{name} must not be empty"


def option(default=dataclasses.MISSING, help: str = "", *, rule=None, factory=None, **flag):
    """A :class:`TrainConfig` field with its help text, its value rule and extra options of its ``train``
    flag (``nargs``, ``metavar``, ``from_flag``: how the parsed flag becomes the value)."""
    metadata = {"help": help, "rule": rule, "flag": flag}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _one_or_list(values: list[str]):
    return values[0] if len(values) == 1 else values


def _stages_flag(values: list[str]):
    return list(STAGES) if values == ["both"] else values


def _lora_flag(values: list[str]):
    from .lora import LORA_PRESETS

    return values[0] if len(values) == 1 and values[0] in LORA_PRESETS else values


def _check_length_groups(name: str, value) -> str | None:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return None
    return f"{name} must be auto or an integer >= 1, got {value!r}"


@dataclass
class TrainConfig:
    """Everything a Text2Token run depends on.

    The defaults are the best recipe this project has measured (RESULTS.md): last pooling with the
    PromptEOL prompt, stage 1 (data-driven targets) trained with the joint objective (the KL plus
    SimCSE's in-batch term with weight 3, ``contrastive_weight``), lr 1e-4 held constant. The paper's recipe as its
    prototype runs it is ``configs/recipes/paper.yaml``.

    Each field's metadata holds its help text and its value rule (see :func:`option`)."""

    model: str | None = option(None, "hub id, local folder or .gguf file (default: the embedded "
                               "SmolLM2-135M-Instruct)")
    data: list[str] = option(help="text files (one text per line), JSONL files, folders, or a Hugging Face "
                             "dataset name", factory=list, nargs="+")
    # per-stage corpora (empty: ``data``). The prototype trains stage 1 on passages, stage 2 on sentences;
    # the stage-2 background is taken over the stage-2 corpus
    stage1_data: list[str] = option(help="stage-1 corpus instead of --data (the prototype: passages)",
                                    factory=list, nargs="+")
    stage2_data: list[str] = option(help="stage-2 corpus instead of --data (the prototype: sentences; the "
                                    "background is taken over it)", factory=list, nargs="+")
    data_field: str = option("text", "JSONL / dataset field holding the text", rule=_check_not_empty)
    output: str | None = option(None, "run folder to create")
    pooling: str = option("last", "last (the last token, with the --prompt template) or mean (average over "
                          "tokens)", rule=OneOf(POOLINGS))
    attention: str = option("causal", "causal or bidirectional", rule=OneOf(ATTENTION_MODES))
    prompt: str = option(PROMPT_EOL, "template of `last` pooling; {text} is replaced by the text", rule=_check_prompt)
    stages: list[str] = option(help="data (stage 1), model (stage 2), or both; not with --objective simcse",
                               factory=lambda: list(DEFAULT_STAGES), nargs="+", from_flag=_stages_flag)
    steps: int = option(1000, "stage-1 optimizer steps (objective simcse: its steps)", rule=AT_LEAST_1)
    stage2_steps: int | None = option(None, "stage-2 optimizer steps (default: same as --steps)", rule=AT_LEAST_1)
    batch_size: int = option(32, "texts per device and step", rule=AT_LEAST_1)
    grad_accum: int = option(1, "gradient accumulation steps", rule=AT_LEAST_1)
    lr: float = option(1e-4, "learning rate (held constant with the default --lr-scheduler)", rule=POSITIVE)
    stage2_lr: float | None = option(None, "stage-2 learning rate (default: same as --lr)", rule=POSITIVE)
    max_length: int = option(128, "max tokens per text", rule=AT_LEAST_1)
    max_chars: int = option(20000, "texts longer than this many characters are cut before tokenization",
                            rule=AT_LEAST_1)
    tau: float = option(1e-5, "stage-2 target temperature", rule=POSITIVE)
    background_samples: int | None = option(
        2048, "corpus texts for the stage-2 background (none: all)", rule=AT_LEAST_1)
    target_max_k: int = option(64, "sparse stage-2 targets: at most this many tokens per text ...", rule=AT_LEAST_1)
    target_min_mass: float = option(1 - 1e-6, "... holding at least this share of the target's mass",
                                    rule=Range(0.0, 1.0, low_open=True))
    # prompt_attention: the prototype's unreported variant (targets/prompt_attention.py)
    weighting: str = option("uniform", "stage-1 target weights: uniform (the paper), idf, or prompt_attention "
                            "(the attention the prompt's last token pays to each in-text token)",
                            rule=OneOf(WEIGHTINGS))
    stop_words: str = option("none", "stage-1 stop words: none (every word is a target), nltk (the paper's "
                             "and prototype's list), sklearn",
                             rule=OneOf(_stop_word_lists))
    lora_r: int = option(16, "LoRA rank", rule=AT_LEAST_1)
    lora_alpha: int = option(32, "LoRA alpha (the adapter's scale is alpha / r)", rule=AT_LEAST_1)
    lora_dropout: float = option(0.05, "dropout on the LoRA input", rule=DROPOUT)
    lora_target_modules: list[str] | str = option(
        "all-linear", "which linear layers get LoRA: a preset (all-linear: attention and MLP; attention: the "
        "attention projections, q,k,v,o as at the prototype's HEAD; qv: q and v, its earliest commits) or module "
        "names", rule=_check_lora_modules, nargs="+", metavar="NAME", from_flag=_lora_flag)
    weight_decay: float = option(0.0, "AdamW weight decay", rule=NON_NEGATIVE)
    warmup_ratio: float = option(0.0, "share of a stage's steps spent warming the learning rate up from 0",
                                 rule=Range(0.0, 1.0))
    lr_scheduler: str = option("constant", "constant (the prototype's rate in effect: its linear horizon is a "
                               "whole epoch of 10M passages), linear (decay to 0), or any transformers scheduler "
                               "name", rule=OneOf(_schedulers))
    max_grad_norm: float = option(1.0, "clip the gradient norm to this (0: no clipping)", rule=NON_NEGATIVE)
    precision: str = option("auto", "bf16 autocast or fp32; auto: bf16 where the hardware runs it fast "
                            "(precision.py)", rule=OneOf(_precisions))
    dtype: str = option("float32", "backbone weights: float32, bfloat16 (half the memory of a large backbone; "
                        "GPUs; LoRA stays fp32), float16", rule=OneOf(DTYPES))
    gradient_checkpointing: bool = option(True, "recompute activations in the backward pass: a default run "
                                          "peaks at 4.4-7.3 GiB instead of 17.5 (SmolLM2, 32 x 128 tokens, CPU), steps "
                                          "1.2-1.55x slower (docs/performance.md); --no-gradient-checkpointing for "
                                          "speed where memory allows")
    group_by_length: bool = option(False, "batches of texts of similar token length (transformers' "
                                   "LengthGroupedSampler, seeded): less padding, faster steps; off: batches are "
                                   "drawn at random as in the paper")
    length_groups: int | str = option(
        "auto", "run each batch's forward pass as N sub-batches of similar token length, each padded only to its "
        "own longest text: fewer padded tokens, the same random batch and the same loss (unlike group_by_length); "
        "1: one padded pass; auto: 8 on a CPU (a third fewer tokens computed; steps 1.2-1.6x faster side by side, "
        "whole runs about as fast on an AMX CPU: docs/performance.md), 1 on a GPU (not measured there)",
        rule=_check_length_groups, metavar="N|auto")
    seed: int = option(42, "seed of the corpus shuffle, the adapter's init and the batches",
                       rule=Range(0, MAX_SEED))
    save_steps: int = option(100, "checkpoint every N steps", rule=AT_LEAST_1, metavar="N")
    save_total_limit: int = option(2, "checkpoints kept per stage, the newest (0: all)", rule=AT_LEAST_0)
    logging_steps: int = option(10, "log loss, learning rate and gradient norm every N steps", rule=AT_LEAST_1,
                                metavar="N")
    report_to: list[str] | str = option("none", "none, all, or transformers logging integrations: tensorboard, "
                                        "wandb, ...", rule=_check_report_to, nargs="+", from_flag=_one_or_list)
    dataloader_num_workers: int = option(0, "data loader worker processes (0: load in the main process)",
                                         rule=AT_LEAST_0)
    objective: str = option("text2token", "text2token (the method) or simcse (the LLM2Vec-style unsupervised "
                            "SimCSE baseline: one stage, no targets, --steps and --lr are its own)",
                            rule=OneOf(OBJECTIVES))
    simcse_temperature: float = option(0.05, "SimCSE: cosine similarity / temperature", rule=POSITIVE)
    simcse_dropout: float = option(0.3, "SimCSE: attention dropout while training (LLM2Vec's simcse_dropout)",
                                   rule=DROPOUT)
    contrastive_weight: float = option(
        3.0, "joint objective (beyond the paper): > 0 adds SimCSE's in-batch contrastive term (two dropout "
        "views, --simcse-temperature, --simcse-dropout) with this weight to the Text2Token KL, then averaged "
        "over both views, in every Text2Token stage; 0: off", rule=NON_NEGATIVE)
    teacher_mix: float = option(0.0, "beyond the paper: stage-1 targets mix this share of the base model's own "
                                "model-derived target (stage 2's, the untrained model with the prompt as teacher) "
                                "into the data-driven one, to keep what the prompt already knows; 0: off (the paper)",
                                rule=Range(0.0, 1.0), metavar="SHARE")
    head_filter: int = option(0, "beyond the paper: remove the LM head's K dominant singular directions (the "
                              "frequent-token bias shared by all logits) from the projection the loss and the "
                              "stage-2 targets use; 0: off", rule=AT_LEAST_0, metavar="K")
    anchor_weight: float = option(0.0, "beyond the paper: > 0 adds this weight times 1 - cos(e(x), e_0(x)), e_0 the "
                                  "untrained model's own embedding of the text (adapters off, no dropout; one more "
                                  "forward pass a step), to keep what the prompt embedding already knows; 0: off",
                                  rule=NON_NEGATIVE, metavar="WEIGHT")
    anchor: str = option("cosine", "the anchor term's form: cosine (1 - cos(e(x), e_0(x))) or contrastive (e(x) "
                         "must pick its own e_0(x) among the batch's, an in-batch loss at the SimCSE temperature: "
                         "keeps what tells texts apart in the untrained embedding, not its shared direction)",
                         rule=OneOf(ANCHORS))
    lm_weight: float = option(0.0, "beyond the paper: > 0 adds this weight times the backbone's own next-token "
                              "(causal-LM) loss on the prompt-wrapped text, every position of the training forward "
                              "pass (the SimCSE paper's auxiliary MLM term for a decoder), to keep the backbone a "
                              "language model; 0: off", rule=NON_NEGATIVE, metavar="WEIGHT")
    adapter_scale: float = option(1.0, "beyond the paper: weight-space interpolation when the run is loaded "
                                  "(WiSE-FT): the weights used are base + SCALE x (trained - base); 1: the trained "
                                  "model, 0: the base model; training is not changed",
                                  rule=Range(0.0, 1.0), metavar="SCALE")

    def __post_init__(self):
        self.validate()

    def data_of(self, stage: str) -> list[str]:
        """The corpus of one stage: ``stage1_data`` / ``stage2_data`` where set, else ``data``."""
        own = {"data": self.stage1_data, "model": self.stage2_data}.get(stage)
        return list(own or self.data)

    # ------------------------------------------------------------ validation
    def validate(self) -> "TrainConfig":
        """Check every field's type and rule (one ConfigError naming the first bad field), then the rules
        between fields; normalise a string where a list is meant (``data: x.txt``, ``stages: both``)."""
        for name in ("data", "stage1_data", "stage2_data"):
            if isinstance(getattr(self, name), str):
                setattr(self, name, [getattr(self, name)])
        if isinstance(self.stages, str):
            self.stages = list(STAGES) if self.stages == "both" else [self.stages]
        for f in dataclasses.fields(self):
            check_value(f.name, getattr(self, f.name))
        if self.objective == "simcse":
            # one stage; the text2token default (stages left unset) is accepted and replaced
            if self.stages not in (list(STAGES), list(DEFAULT_STAGES), [SIMCSE_STAGE]):
                raise ConfigError(f"stages {self.stages} do not apply to objective simcse: it trains one stage "
                                  f"({SIMCSE_STAGE!r}); leave stages unset")
            for term in ("anchor_weight", "lm_weight"):
                if getattr(self, term) > 0:
                    raise ConfigError(f"{term} is a term of the text2token objective; objective simcse has none "
                                      f"(set {term}: 0)")
            self.stages = [SIMCSE_STAGE]
            self.contrastive_weight = 0.0  # SimCSE's term is the whole objective; no KL to add it to
        elif SIMCSE_STAGE in self.stages:
            raise ConfigError(f"stage {SIMCSE_STAGE!r} needs objective: simcse (text2token stages: 'data', 'model')")
        bad = [s for s in self.stages if s not in STAGES + (SIMCSE_STAGE,)]
        if bad or not self.stages:
            raise ConfigError(f"unknown stage(s) {bad or self.stages}: use 'data', 'model' or both")
        self.stages = [s for s in STAGES + (SIMCSE_STAGE,) if s in self.stages]
        return self

    # --------------------------------------------------------------- helpers
    @property
    def steps_of(self) -> dict[str, int]:
        if self.objective == "simcse":
            return {SIMCSE_STAGE: self.steps}
        return {"data": self.steps, "model": self.stage2_steps or self.steps}

    @property
    def lr_of(self) -> dict[str, float]:
        if self.objective == "simcse":
            return {SIMCSE_STAGE: self.lr}
        return {"data": self.lr, "model": self.stage2_lr or self.lr}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        values = dict(values)
        if "bf16" in values:  # before `precision`: bf16 true/false (configs and runs of earlier versions)
            bf16 = values.pop("bf16")
            if not isinstance(bf16, bool):
                raise ConfigError(f"{source}: bf16 must be true or false, got {bf16!r}")
            values.setdefault("precision", "bf16" if bf16 else "fp32")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def read_file(cls, path: str | Path) -> dict:
        """The keys and values of a YAML or JSON config file (``-`` in keys read as ``_``), not yet checked."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from exc
        try:
            if path.suffix.lower() == ".json":
                values = json.loads(text)
            else:
                import yaml

                values = yaml.safe_load(text)
        except Exception as exc:  # yaml and json raise their own types
            message = " ".join(str(exc).split())
            raise ConfigError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: "
                              f"{message}") from exc
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(values).__name__}")
        return {str(k).replace("-", "_"): v for k, v in values.items()}

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict | None = None) -> "TrainConfig":
        """Read YAML or JSON; ``overrides`` (for example command-line flags) win over the file."""
        values = cls.read_file(path)
        values.update(overrides or {})
        return cls.from_dict(values, source=str(path))


# ------------------------------------------------------------------ fields, one at a time
def config_fields() -> dict[str, dataclasses.Field]:
    """TrainConfig's fields by name, in declaration order (help, rule and flag options in ``.metadata``)."""
    return {f.name: f for f in dataclasses.fields(TrainConfig)}


def field_type(name: str):
    """The type hint of a TrainConfig field (``int``, ``float | None``, ``list[str] | str``, ...)."""
    return _hints()[name]


_HINTS: dict = {}


def _hints() -> dict:
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(TrainConfig))
    return _HINTS


def check_value(name: str, value) -> None:
    """Raise a one-line ConfigError naming ``name`` unless ``value`` has the field's type and follows its rule."""
    _check_type(name, value, field_type(name))
    rule = config_fields()[name].metadata.get("rule")
    if rule is None or value is None:
        return
    problem = rule.check(name, value) if hasattr(rule, "check") else rule(name, value)
    if problem:
        raise ConfigError(problem)


def numeric_fields() -> list[str]:
    """Names of the int and float fields (``... | None`` included), in declaration order."""
    return [name for name in config_fields() if scalar_type(field_type(name)) in (int, float)]


def scalar_type(hint):
    """``int`` for ``int`` and ``int | None``; the hint itself otherwise."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, _UNION) and len(args) == 1:
        return args[0]
    return hint


def parse_flag(name: str, text: str):
    """A command-line string as the value of field ``name``, as far as it parses: ``"8"`` gives 8 for an int
    field, ``"1e-4"`` 1e-4 for a float field, ``"none"`` None where the field may be None. A string that
    does not parse stays a string, so that :func:`check_value` reports it naming the field."""
    hint = field_type(name)
    scalar = scalar_type(hint)
    if set(typing.get_args(hint)) == {int, str}:  # a number or a word (length_groups: 8 or auto)
        try:
            return int(text)
        except ValueError:
            return text
    if scalar in (int, float):
        if scalar is not hint and text.strip().lower() in ("none", "null"):
            return None
        try:
            return scalar(text)
        except ValueError:
            return text
    return text


_UNION = getattr(__import__("types"), "UnionType", None)


def _check_type(name: str, value, hint) -> None:
    if _matches(value, hint):
        return
    raise ConfigError(f"{name} must be of type {_describe(hint)}, got {value!r} ({type(value).__name__})")


def _matches(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, _UNION):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (inner,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, inner) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list:
        return f"list of {_describe(args[0])}"
    if args:
        return " or ".join(_describe(a) for a in args)
    return "null" if hint is type(None) else hint.__name__
