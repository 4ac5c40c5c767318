"""The method's two stages, chained (METHOD.md): stage 1 trains an adapter on data-driven targets, the
adapter is merged, the merged model is the frozen teacher of stage 2's model-derived targets, and stage 2
trains a fresh adapter on them.

:func:`train` reads as that chain. The pieces each own their part, multi-process coordination included:
the run folder (:class:`text2token.runfolder.RunFolder`; its ``shared`` view decides and writes on the main
process), the corpus (:func:`text2token.data.corpus_split`), the targets (:mod:`text2token.targets`: each
process builds its blocks, every process gets them all), one stage's training on the Trainer
(:func:`text2token.training.train_stage`) and the losses (:mod:`text2token.objective`). With ``objective:
simcse`` (the LLM2Vec-style baseline, :mod:`text2token.contrastive`) the run has one stage, ``simcse``, and
``text2token.load`` opens it unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import torch

from . import distributed as dist
from .backbone import load_backbone
from .config import TrainConfig
from .data import corpus_split
from .errors import RunFolderError
from .lora import lora_targets
from .memory import release_memory
from .model import Text2TokenModel, apply_adapters, resolve_length_groups
from .precision import resolve as resolve_precision
from .runfolder import FORMAT_VERSION, RunFolder, backbone_reference
from .targets import build_stage1_targets, build_stage2_targets, mix_targets
from .training import train_stage

log = logging.getLogger(__name__)


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Run the configured stages; return the run folder, loadable with ``text2token.load``.

    One process writes a run folder at a time: it holds the folder's lock (see
    :meth:`RunFolder.lock`) from the moment the folder is made or resumed until training returns."""
    started = time.time()
    # under `accelerate launch`/torchrun: the main process decides and writes, see text2token/distributed.py
    dist.start()
    dist.quiet_other_ranks()
    if not config.output:
        raise RunFolderError("no output folder: pass --output RUN_DIR")
    folder = RunFolder(config.output)
    lock = folder.lock()
    if resume:
        folder.shared.prepare(config, resume=True, overwrite=False)
        dist.on_main(lock.acquire)
    try:
        return _train(config, folder, lock, resume, overwrite, started)
    finally:
        if dist.is_main():  # no collective here: this may run on one failing rank alone
            lock.release()


def _train(config: TrainConfig, folder: RunFolder, lock, resume: bool, overwrite: bool, started: float) -> Path:
    shared = folder.shared
    if resume:
        config = _saved_config(folder)
        if shared.is_finished() and all(shared.stage_finished(s) for s in config.stages):
            log.warning("%s already finished training: nothing to resume", folder.path)  # its record stays as it is
            return folder.path
        shared.check_backbone(config.model)  # never onto other weights than the run started with
    # what a later load needs, taken now: a relative local backbone path holds from any folder
    backbone = backbone_reference(config.model)
    corpus, stats = corpus_split(config, dist.world_size())  # bad data fails before any folder is made
    dist.check_same_everywhere((len(corpus["all"]), _digest(corpus["all"])), "corpus")
    if not resume:  # refuse a taken folder now, but make it only once backbone and targets are known good
        shared.check_not_locked()
        shared.prepare(config, resume=False, overwrite=overwrite, check_only=True)
    model, tokenizer, _ = load_backbone(config.model, attention=config.attention, dtype=getattr(torch, config.dtype))
    lora_targets(model, config.lora_target_modules)  # an unknown module name fails here, before the folder is made
    stage1 = (None if resume or "data" not in config.stages
              else build_stage1_targets(tokenizer, corpus["data"], config, model))
    if not resume:
        dist.on_main(lock.acquire)  # then checked again: another process may have taken the folder meanwhile
        shared.prepare(config, resume=False, overwrite=overwrite)

    summary = {"corpus": {**stats.__dict__, "problems": stats.problems}, "stages": {}}
    for stage in config.stages:
        if shared.stage_finished(stage):  # a resumed run: the stage's adapter is merged as it was trained
            log.info("%s: finished adapter found, skipping", folder.stage_dir(stage).name)
            model = apply_adapters(model, [folder.adapter_dir(stage)])
            done = shared.read_stage_summary(stage)
            if done is not None:  # the finished stage's numbers, kept across a resume
                summary["stages"][stage] = done
            continue
        stage_started = time.time()
        texts, targets, info = _stage_inputs(stage, model, tokenizer, corpus, config, folder, stage1)
        if stage == "simcse" or config.contrastive_weight > 0:  # SimCSE's two dropout views of each text
            from .contrastive import prepare_dropout

            info["dropout"] = prepare_dropout(model, config)
        model, trained = _train_and_merge(model, tokenizer, texts, targets, config, stage, folder, resume)
        info.update(texts=len(texts), **trained, seconds=round(time.time() - stage_started, 1))
        summary["stages"][stage] = info
        shared.write_stage_summary(stage, info)

    record = {
        "format_version": FORMAT_VERSION,
        "objective": config.objective,
        "model": {"backbone": backbone, "pooling": config.pooling,
                  "attention": config.attention, "max_length": config.max_length, "prompt": config.prompt},
        "adapters": [str(folder.adapter_dir(stage).relative_to(folder.path)) for stage in config.stages],
        "stages": config.stages,
        "hyperparameters": config.to_dict(),
        "training": {**summary, "precision": resolve_precision(config.precision),
                     "length_groups": resolve_length_groups(config.length_groups),
                     "seconds": round(time.time() - started, 1)},
    }
    shared.write_record(record, config.stages)
    log.info("run saved to %s", folder.path)
    return folder.path


def _stage_inputs(stage: str, model, tokenizer, corpus: dict, config: TrainConfig, folder: RunFolder, stage1):
    """What ``stage`` trains on: its texts, their targets (None for SimCSE) and what the run record keeps of them.

    * ``data`` (stage 1): the data-driven targets, the tokens of each text itself (built before the folder
      was made, ``stage1``, unless the run is resumed);
    * ``model`` (stage 2): the model-derived targets of the model so far, frozen as the teacher, against a
      background over a sample of the corpus;
    * ``simcse``: the texts alone.
    """
    if stage == "data":
        texts, targets, skipped = stage1 or build_stage1_targets(tokenizer, corpus["data"], config, model)
        info = {"empty_targets_skipped": skipped}
        if config.teacher_mix > 0:  # the base model with the prompt as a second teacher (beyond the paper)
            model.eval()
            teacher = Text2TokenModel(model, tokenizer, config.pooling, config.attention, config.max_length,
                                      config.prompt, name="teacher")
            sample = _background_sample(corpus, config)
            own, _ = build_stage2_targets(teacher, texts, sample, config, folder.targets_file(stage),
                                          label="stage 1: teacher_mix")
            targets = mix_targets(targets, own, config.teacher_mix)
            info.update(teacher_mix=config.teacher_mix, background_texts=len(sample))
        return texts, targets, info
    if stage == "model":
        model.eval()
        teacher = Text2TokenModel(model, tokenizer, config.pooling, config.attention, config.max_length,
                                  config.prompt, name="teacher")
        sample = _background_sample(corpus, config)
        targets, _ = build_stage2_targets(teacher, corpus["model"], sample, config, folder.targets_file(stage))
        return corpus["model"], targets, {"background_texts": len(sample)}
    return corpus["simcse"], None, {}


def _background_sample(corpus: dict, config: TrainConfig) -> list[str]:
    """The texts stage 2's background is averaged over (``background_samples`` of the whole corpus)."""
    return corpus["all"] if config.background_samples is None else corpus["all"][: config.background_samples]


def _train_and_merge(model, tokenizer, texts, targets, config: TrainConfig, stage: str, folder: RunFolder,
                     resume: bool):
    """Train a fresh adapter for ``stage`` on the frozen ``model``, save it, merge it in; return the merged model
    and the stage's steps and first and last loss."""
    for p in model.parameters():
        p.requires_grad_(False)
    peft_model, trainer = train_stage(model, tokenizer, texts, targets, config, stage, folder.stage_dir(stage),
                                      resume=resume)
    folder.shared.save_adapter(peft_model, stage)
    merged = peft_model.merge_and_unload()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    steps = trainer.state.global_step
    del peft_model, trainer
    release_memory()  # the stage's activations and optimizer state go back to the OS before the next phase
    return merged, {"steps": steps, "first_loss": losses[0] if losses else None,
                    "last_loss": losses[-1] if losses else None}


def _saved_config(folder: RunFolder) -> TrainConfig:
    """A resumed run's own configuration, its relative paths taken from the folder the run started in."""
    saved = folder.shared.read_train_config()
    config = TrainConfig.from_dict(saved, source=str(folder.train_config_file))
    return folder.shared.resolve_paths(config)


def _digest(texts: list[str]) -> str:
    h = hashlib.sha1()
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()
