"""One configuration object per run: defaults from METHOD.md, loadable from YAML/JSON,
overridable by command-line flags, saved with the run."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .backbone import ATTENTION_MODES
from .errors import ConfigError
from .pooling import POOLINGS, PROMPT_EOL

STAGES = ("data", "model")
DEFAULT_STAGES = ("data",)  # the default recipe (RESULTS.md): stage 1 with the joint objective
WEIGHTINGS = ("uniform", "idf", "prompt_attention")  # stage-1 target weights
DTYPES = ("float32", "bfloat16", "float16")  # dtype of the backbone weights while training
OBJECTIVES = ("text2token", "simcse")  # simcse: the LLM2Vec-style unsupervised SimCSE baseline (contrastive.py)
SIMCSE_STAGE = "simcse"  # the one stage of a SimCSE run


@dataclass
class TrainConfig:
    """Everything a Text2Token run depends on.

    The defaults are the best recipe this project has measured (RESULTS.md): last pooling with the
    PromptEOL prompt, stage 1 (data-driven targets) trained with the joint objective (the KL plus
    SimCSE's in-batch term, ``contrastive_weight``), lr 1e-4 held constant. The paper's recipe as its
    prototype runs it is ``configs/recipes/paper.yaml``."""

    model: str | None = None  # hub id, local folder or .gguf; None = embedded SmolLM2-135M-Instruct
    data: list[str] = field(default_factory=list)  # files, folders, or a Hugging Face dataset name
    # per-stage corpora (empty: ``data``). The prototype trains stage 1 on passages, stage 2 on sentences;
    # the stage-2 background is taken over the stage-2 corpus
    stage1_data: list[str] = field(default_factory=list)
    stage2_data: list[str] = field(default_factory=list)
    data_field: str = "text"  # JSONL / dataset field holding the text
    output: str | None = None
    pooling: str = "last"  # last-token pooling with the PromptEOL prompt (mean: average over tokens)
    attention: str = "causal"
    prompt: str = PROMPT_EOL  # template of `last` pooling
    stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES))
    steps: int = 1000  # stage-1 optimizer steps
    stage2_steps: int | None = None  # None: same as `steps`
    batch_size: int = 32  # per device
    grad_accum: int = 1
    lr: float = 1e-4
    stage2_lr: float | None = None  # None: same as `lr`
    max_length: int = 128
    max_chars: int = 20000  # texts longer than this are cut before tokenization
    tau: float = 1e-5
    background_samples: int | None = 2048  # corpus texts for the stage-2 background; None = all
    target_max_k: int = 64  # sparse stage-2 targets: at most this many tokens per text ...
    target_min_mass: float = 1 - 1e-6  # ... holding at least this share of the target's mass
    # stage-1 target weights: uniform (paper), idf, or prompt_attention (the prototype's unreported variant:
    # the attention the prompt's last token pays to each in-text token, targets/prompt_attention.py)
    weighting: str = "uniform"
    stop_words: str = "nltk"  # stage-1 stop words: nltk (the prototype's list), sklearn, none
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # which linear layers get LoRA: a preset (all-linear: attention and MLP; attention: the attention
    # projections, q,k,v,o as at the prototype's HEAD; qv: q and v, its earliest commits) or module names
    lora_target_modules: list[str] | str = "all-linear"
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    # constant (the prototype's rate in effect: its linear horizon is a whole epoch of 10M passages), linear
    # decay to 0, or any transformers scheduler name
    lr_scheduler: str = "constant"
    max_grad_norm: float = 1.0
    precision: str = "auto"  # bf16 autocast or fp32; auto: bf16 where the hardware runs it fast (precision.py)
    dtype: str = "float32"  # backbone weights: bfloat16 halves the memory of a large backbone (LoRA stays fp32)
    gradient_checkpointing: bool = False
    # batches of texts of similar token length (transformers' LengthGroupedSampler, seeded): less padding,
    # faster steps (README "Performance"); off by default, batches are then drawn at random as in the paper
    group_by_length: bool = False
    seed: int = 42
    save_steps: int = 100
    save_total_limit: int = 2
    logging_steps: int = 10
    report_to: list[str] | str = "none"  # any transformers logging integration: tensorboard, wandb, ...
    dataloader_num_workers: int = 0
    # objective: text2token (the method) or simcse (the LLM2Vec-style baseline: one stage, no targets;
    # `stages` must then stay unset or be [simcse], `steps`/`lr` are its steps and learning rate)
    objective: str = "text2token"
    simcse_temperature: float = 0.05  # cosine similarity / temperature
    simcse_dropout: float = 0.3  # attention dropout during SimCSE training (LLM2Vec's simcse_dropout)
    # beyond the paper: the joint objective. > 0 adds SimCSE's in-batch contrastive term (two dropout views,
    # simcse_temperature, simcse_dropout) with this weight to the Text2Token KL, which is then averaged
    # over both views, in every Text2Token stage
    contrastive_weight: float = 1.0
    # beyond the paper: remove the LM head's k dominant singular directions (the frequent-token bias
    # shared by all logits) from the vocabulary projection that the loss and the stage-2 targets use
    head_filter: int = 0

    def __post_init__(self):
        self.validate()

    def data_of(self, stage: str) -> list[str]:
        """The corpus of one stage: ``stage1_data`` / ``stage2_data`` where set, else ``data``."""
        own = {"data": self.stage1_data, "model": self.stage2_data}.get(stage)
        return list(own or self.data)

    # ------------------------------------------------------------ validation
    def validate(self) -> "TrainConfig":
        for name in ("data", "stage1_data", "stage2_data"):
            if isinstance(getattr(self, name), str):
                setattr(self, name, [getattr(self, name)])
        if isinstance(self.stages, str):
            self.stages = list(STAGES) if self.stages == "both" else [self.stages]
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}: choose one of {', '.join(OBJECTIVES)}")
        if self.objective == "simcse":
            # one stage; the text2token default (stages left unset) is accepted and replaced
            if self.stages not in (list(STAGES), list(DEFAULT_STAGES), [SIMCSE_STAGE]):
                raise ConfigError(f"stages {self.stages} do not apply to objective simcse: it trains one stage "
                                  f"({SIMCSE_STAGE!r}); leave stages unset")
            self.stages = [SIMCSE_STAGE]
            self.contrastive_weight = 0.0  # SimCSE's term is the whole objective; no KL to add it to
        elif SIMCSE_STAGE in self.stages:
            raise ConfigError(f"stage {SIMCSE_STAGE!r} needs objective: simcse (text2token stages: 'data', 'model')")
        bad = [s for s in self.stages if s not in STAGES + (SIMCSE_STAGE,)]
        if bad or not self.stages:
            raise ConfigError(f"unknown stage(s) {bad or self.stages}: use 'data', 'model' or both")
        self.stages = [s for s in STAGES + (SIMCSE_STAGE,) if s in self.stages]
        if self.pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}")
        from transformers.trainer_utils import SchedulerType

        if self.lr_scheduler not in {s.value for s in SchedulerType}:
            raise ConfigError(f"unknown lr_scheduler {self.lr_scheduler!r}: use linear, constant, cosine, ...")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        if self.attention not in ATTENTION_MODES:
            raise ConfigError(f"unknown attention {self.attention!r}: choose one of {', '.join(ATTENTION_MODES)}")
        for name in ("steps", "batch_size", "grad_accum", "max_length", "lora_r", "save_steps", "max_chars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.stage2_steps is not None and self.stage2_steps < 1:
            raise ConfigError(f"stage2_steps must be at least 1, got {self.stage2_steps}")
        for name in ("lr", "tau", "simcse_temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.target_min_mass <= 1:
            raise ConfigError(f"target_min_mass must be in (0, 1], got {self.target_min_mass}")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"unknown weighting {self.weighting!r}: use one of {', '.join(WEIGHTINGS)}")
        from .targets.data_driven import STOP_WORD_LISTS
        from .precision import PRECISIONS
        from .lora import LORA_PRESETS

        if self.stop_words not in STOP_WORD_LISTS:
            raise ConfigError(f"unknown stop_words {self.stop_words!r}: choose one of {', '.join(STOP_WORD_LISTS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if isinstance(self.lora_target_modules, str) and self.lora_target_modules not in LORA_PRESETS:
            raise ConfigError(f"unknown lora_target_modules {self.lora_target_modules!r}: a preset "
                              f"({', '.join(LORA_PRESETS)}) or a list of module names")
        if isinstance(self.lora_target_modules, list) and not self.lora_target_modules:
            raise ConfigError("lora_target_modules is an empty list: name at least one module, or a preset")
        if not (self.contrastive_weight >= 0 and math.isfinite(self.contrastive_weight)):
            raise ConfigError(f"contrastive_weight must be a finite number >= 0, got {self.contrastive_weight}")
        if self.head_filter < 0:
            raise ConfigError(f"head_filter must be 0 or more (directions removed), got {self.head_filter}")
        for name in ("lora_dropout", "simcse_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
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
    def from_file(cls, path: str | Path, overrides: dict | None = None) -> "TrainConfig":
        """Read YAML or JSON; ``overrides`` (for example command-line flags) win over the file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
        try:
            if path.suffix.lower() == ".json":
                values = json.loads(text)
            else:
                import yaml

                values = yaml.safe_load(text)
        except Exception as exc:  # yaml and json raise their own types
            raise ConfigError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from exc
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(values).__name__}")
        values = {k.replace("-", "_"): v for k, v in values.items()}
        values.update(overrides or {})
        return cls.from_dict(values, source=str(path))


def _check_type(name: str, value, hint) -> None:
    if _matches(value, hint):
        return
    raise ConfigError(f"{name} must be of type {_describe(hint)}, got {value!r} ({type(value).__name__})")


def _matches(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
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
