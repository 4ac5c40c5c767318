"""The two stages, chained: stage 1 (data-driven targets) → merge → stage 2 (model-derived
targets, teacher = the merged stage-1 model) with a fresh adapter.

Run folder::

    RUN/train_config.json        the TrainConfig (what --resume reads)
    RUN/stage1/checkpoints/      Trainer checkpoints (adapter only, optimizer, RNG state)
    RUN/stage1/adapter/          the finished stage-1 adapter
    RUN/stage1/log.jsonl         loss, learning rate, grad norm per logging step
    RUN/stage2/targets.pt        background and sparse teacher targets (computed once)
    RUN/stage2/...               as stage 1
    RUN/text2token_config.json   written last: backbone, pooling, attention, adapters, hyper-parameters
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from pathlib import Path

import torch

from .backbone import DEFAULT_BACKBONE, load_backbone
from .config import TrainConfig
from .data import read_corpus
from .errors import DataError, RunFolderError
from .files import atomic_path, atomic_torch_save, atomic_write_text
from .model import RUN_CONFIG, Text2TokenModel, apply_adapters
from .targets import DataDrivenTargets, background_distribution, teacher_targets
from .targets.model_derived import mean_teacher_logits
from .training import train_stage

log = logging.getLogger(__name__)
TRAIN_CONFIG = "train_config.json"
STAGE_DIRS = {"data": "stage1", "model": "stage2"}
FORMAT_VERSION = 1


def save_adapter(peft_model, folder: Path) -> None:
    """Save an adapter to a temporary folder, then rename: never a half-written adapter."""
    with atomic_path(folder, directory=True) as tmp:
        peft_model.save_pretrained(str(tmp))


def prepare_run_dir(config: TrainConfig, resume: bool, overwrite: bool) -> Path:
    if not config.output:
        raise RunFolderError("no output folder: pass --output RUN_DIR")
    run = Path(config.output).expanduser()
    saved = run / TRAIN_CONFIG
    if resume:
        if not saved.is_file():
            raise RunFolderError(f"cannot resume {run}: it holds no {TRAIN_CONFIG}")
        return run
    if run.exists() and any(run.iterdir()):
        if saved.is_file() and json.loads(saved.read_text()) == config.to_dict() and not overwrite:
            raise RunFolderError(f"{run} already holds this run: continue it with `text2token train --resume {run}` "
                                 "or start again with --overwrite")
        if not overwrite:
            raise RunFolderError(f"{run} already exists and is not empty: choose another --output or pass --overwrite")
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, json.dumps(config.to_dict(), indent=2))
    return run


def corpus_split(config: TrainConfig, world_size: int = 1):
    """Read the corpus once; shuffle it (seeded) and give each stage its own texts."""
    need = {s: config.steps_of[s] * config.batch_size * config.grad_accum * world_size for s in config.stages}
    texts, stats = read_corpus(config.data, config.data_field, config.max_chars)
    log.info("corpus: %s", stats.summary())
    order = list(range(len(texts)))
    random.Random(config.seed).shuffle(order)
    shuffled = [texts[i] for i in order]
    stage1 = shuffled[: need.get("data", 0)]
    # stage 2 takes the texts after stage 1's where the corpus is large enough, else wraps around
    start = len(stage1) % len(shuffled)
    rotated = shuffled[start:] + shuffled[:start]
    stage2 = rotated[: need.get("model", 0)]
    return {"data": stage1, "model": stage2, "all": shuffled}, stats


def build_stage1_targets(tokenizer, texts: list[str], config: TrainConfig):
    builder = (DataDrivenTargets.with_idf(tokenizer, texts) if config.weighting == "idf"
               else DataDrivenTargets(tokenizer))
    targets = builder(texts)
    kept = [(t, q) for t, q in zip(texts, targets) if len(q[0])]
    skipped = len(texts) - len(kept)
    if not kept:
        raise DataError("every text's data-driven target is empty (only stop words, punctuation or whitespace): "
                        "nothing to train on")
    if skipped:
        log.warning("%d texts skipped: their data-driven target is empty (only stop words or punctuation)", skipped)
    return [t for t, _ in kept], [q for _, q in kept], skipped


def tokenizer_fingerprint(tokenizer) -> dict:
    import hashlib

    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    digest = hashlib.sha1(json.dumps(vocab).encode()).hexdigest()
    return {"vocab_size": len(tokenizer), "vocab_sha1": digest}


def build_stage2_targets(teacher: Text2TokenModel, texts: list[str], background_texts: list[str],
                         config: TrainConfig, cache: Path):
    """Background and sparse teacher targets, computed once and cached in the run folder."""
    fingerprint = tokenizer_fingerprint(teacher.tokenizer)
    if cache.is_file():
        saved = torch.load(cache, weights_only=False)
        if saved.get("tokenizer") != fingerprint:
            raise RunFolderError(f"{cache} was built with another tokenizer or vocabulary "
                                 f"({saved.get('tokenizer')} vs {fingerprint}); delete it to rebuild")
        if saved.get("texts") == len(texts) and saved.get("tau") == config.tau:
            log.info("stage 2: reusing teacher targets from %s", cache)
            return saved["targets"], saved["background"]
    logit_sum = mean_teacher_logits(teacher, background_texts, config.batch_size)
    background = background_distribution(logit_sum, len(background_texts))
    targets, kept_mass = teacher_targets(teacher, texts, background, config.tau, config.batch_size,
                                         config.target_max_k, config.target_min_mass)
    log.info("stage 2: %d teacher targets, smallest mass kept %.6f", len(targets), kept_mass)
    payload = {"tokenizer": fingerprint, "texts": len(texts), "tau": config.tau, "background": background,
               "targets": targets, "kept_mass": kept_mass}
    atomic_torch_save(cache, payload)
    return targets, background


def _backbone_reference(name: str | None) -> str:
    """What a later ``load`` needs: local paths made absolute, hub ids and the default as given."""
    if name is None:
        return DEFAULT_BACKBONE
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Run the configured stages; return the run folder, loadable with ``text2token.load``."""
    started = time.time()
    if resume:
        run = prepare_run_dir(config, resume=True, overwrite=False)
        config = TrainConfig.from_dict(json.loads((run / TRAIN_CONFIG).read_text()), source=str(run / TRAIN_CONFIG))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    corpus, stats = corpus_split(config, world_size)  # bad data fails before any folder is made
    if not resume:
        run = prepare_run_dir(config, resume=False, overwrite=overwrite)
    model, tokenizer, source = load_backbone(config.model, attention=config.attention)
    summary = {"corpus": {**stats.__dict__, "problems": stats.problems}, "stages": {}}
    adapters = []
    for stage in config.stages:
        stage_dir = run / STAGE_DIRS[stage]
        adapter_dir = stage_dir / "adapter"
        if adapter_dir.is_dir() and (adapter_dir / "adapter_config.json").is_file():
            log.info("%s: finished adapter found, skipping", stage_dir.name)
            model = apply_adapters(model, [adapter_dir])
            adapters.append(str(adapter_dir.relative_to(run)))
            continue
        stage_started = time.time()
        info = {}
        if stage == "data":
            texts, targets, skipped = build_stage1_targets(tokenizer, corpus["data"], config)
            info["empty_targets_skipped"] = skipped
        else:
            model.eval()
            teacher = Text2TokenModel(model, tokenizer, config.pooling, config.attention, config.max_length,
                                      config.prompt, name="teacher")
            sample = corpus["all"] if config.background_samples is None else corpus["all"][: config.background_samples]
            texts = corpus["model"]
            targets, _ = build_stage2_targets(teacher, texts, sample, config, stage_dir / "targets.pt")
            info["background_texts"] = len(sample)
        for p in model.parameters():
            p.requires_grad_(False)
        peft_model, trainer = train_stage(model, tokenizer, texts, targets, config, stage, stage_dir, resume=resume)
        save_adapter(peft_model, adapter_dir)
        model = peft_model.merge_and_unload()
        adapters.append(str(adapter_dir.relative_to(run)))
        losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
        info.update(texts=len(texts), steps=trainer.state.global_step, seconds=round(time.time() - stage_started, 1),
                    first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None)
        summary["stages"][stage] = info
    record = {
        "format_version": FORMAT_VERSION,
        "model": {"backbone": _backbone_reference(config.model), "pooling": config.pooling,
                  "attention": config.attention, "max_length": config.max_length, "prompt": config.prompt},
        "adapters": adapters,
        "stages": config.stages,
        "hyperparameters": config.to_dict(),
        "training": {**summary, "seconds": round(time.time() - started, 1)},
    }
    atomic_write_text(run / RUN_CONFIG, json.dumps(record, indent=2))
    log.info("run saved to %s", run)
    return run
