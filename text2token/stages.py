"""The two stages, chained: stage 1 (data-driven targets) → merge → stage 2 (model-derived
targets, teacher = the merged stage-1 model) with a fresh adapter.

The run folder's layout and files belong to :mod:`text2token.runfolder` (:class:`RunFolder`); with
``objective: simcse`` (the LLM2Vec-style baseline, :mod:`text2token.contrastive`) the run has one
stage, ``simcse``, and ``text2token.load`` opens it unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from . import distributed as dist
from .backbone import load_backbone
from .lora import lora_targets
from .memory import release_memory
from .config import TrainConfig
from .data import read_corpus
from .errors import DataError, RunFolderError
from .files import atomic_torch_save
from .model import Text2TokenModel, apply_adapters
from .runfolder import (FORMAT_VERSION, RUN_CONFIG, STAGE_DIRS, STAGE_SUMMARY, TRAIN_CONFIG, RunFolder,  # noqa: F401
                        backbone_reference, read_train_config)
from .targets import DataDrivenTargets, background_distribution, teacher_targets
from .objective import head_directions
from .precision import resolve as resolve_precision
from .targets.model_derived import mean_teacher_logits
from .training import train_stage

log = logging.getLogger(__name__)
# FORMAT_VERSION, RUN_CONFIG, STAGE_DIRS, STAGE_SUMMARY, TRAIN_CONFIG and read_train_config stay importable
# from here (bench/ and older code do); they belong to text2token.runfolder


def save_adapter(peft_model, folder: Path) -> None:
    """Save an adapter to a temporary folder, then rename: never a half-written adapter."""
    from .files import atomic_path

    with atomic_path(folder, directory=True) as tmp:
        peft_model.save_pretrained(str(tmp))


def prepare_run_dir(config: TrainConfig, resume: bool, overwrite: bool, check_only: bool = False) -> Path:
    """The run folder, checked and made (see :meth:`text2token.runfolder.RunFolder.prepare`)."""
    if not config.output:
        raise RunFolderError("no output folder: pass --output RUN_DIR")
    return RunFolder(config.output).prepare(config, resume=resume, overwrite=overwrite, check_only=check_only)


def corpus_split(config: TrainConfig, world_size: int = 1):
    """Read each stage's corpus once; shuffle it (seeded) and give each stage its own texts.

    With one corpus for both stages (``data``), stage 2 takes the texts after stage 1's. With
    ``stage1_data`` / ``stage2_data``, each stage draws from its own corpus, and ``"all"`` (the
    stage-2 background's sample) is the stage-2 corpus, as in the prototype.
    """
    need = {s: config.steps_of[s] * config.batch_size * config.grad_accum * world_size for s in config.stages}
    sources = {stage: tuple(config.data_of(stage)) for stage in ("data", "model")}
    read: dict[tuple, list[str]] = {}
    stats = None
    for stage in ("model", "data"):  # the stage-2 corpus is the one the summary describes when both differ
        if stage not in config.stages and not (stage == "model" and "simcse" in config.stages):
            continue
        if sources[stage] not in read:
            texts, found = read_corpus(list(sources[stage]), config.data_field, config.max_chars)
            log.info("corpus %s: %s", ", ".join(sources[stage]), found.summary())
            order = list(range(len(texts)))
            random.Random(config.seed).shuffle(order)
            read[sources[stage]] = [texts[i] for i in order]
            stats = stats or found
    shuffled2 = read.get(sources["model"]) or read[sources["data"]]
    # exactly steps x global batch texts (the corpus repeated if it is smaller): every step sees a
    # full batch, so a run gives the same batches whatever the number of processes
    stage1 = _cycle(read[sources["data"]], need.get("data", 0)) if "data" in need else []
    if sources["data"] == sources["model"]:
        # stage 2 takes the texts after stage 1's where the corpus is large enough, else wraps around
        start = len(stage1) % len(shuffled2)
        rotated = shuffled2[start:] + shuffled2[:start]
    else:
        rotated = shuffled2
    stage2 = _cycle(rotated, need.get("model", 0))
    simcse = _cycle(shuffled2, need.get("simcse", 0))  # the texts of stage 1 then stage 2 of a Text2Token run
    return {"data": stage1, "model": stage2, "simcse": simcse, "all": shuffled2}, stats


def _cycle(items: list, count: int) -> list:
    """The first ``count`` items of ``items`` repeated end to end."""
    if len(items) >= count:
        return items[:count]
    return [items[i % len(items)] for i in range(count)]


def target_block(config: TrainConfig) -> int:
    """Texts per block (and per teacher batch) of target building: the global batch, at most
    ``distributed.MAX_BLOCK``. It depends on the global batch only, not on how many processes share it."""
    return max(1, min(config.batch_size * config.grad_accum * dist.world_size(), dist.MAX_BLOCK))


def build_stage1_targets(tokenizer, texts: list[str], config: TrainConfig, model=None):
    """Data-driven targets for ``texts``. With several processes each builds its own blocks of
    texts (IDF counts summed over all), and the targets are gathered so every rank holds all.
    ``weighting: prompt_attention`` needs the base ``model`` (:mod:`text2token.targets.prompt_attention`)."""
    blocks = dist.block_ranges(len(texts), target_block(config))
    builder = DataDrivenTargets(tokenizer, stop_words=config.stop_words)
    if config.weighting == "prompt_attention":
        from .targets.prompt_attention import attention_per_token, smoothed

        rows = []
        for a, b in blocks:
            attention = attention_per_token(model, tokenizer, texts[a:b], config.max_length, config.prompt)
            rows += [(ids, smoothed(att, ids)) for (ids, _), att in zip(builder(texts[a:b]), attention)]
        targets = dist.gather_lists(rows)
        return _keep_nonempty(texts, targets)
    if config.weighting == "idf":
        df = np.zeros(0)
        for a, b in blocks:
            counts = builder.document_frequencies(texts[a:b])
            df = counts if not len(df) else df + counts
        if not len(df):
            df = builder.document_frequencies([])
        df = dist.all_reduce_sum(torch.from_numpy(df)).numpy()
        builder = DataDrivenTargets.with_idf(tokenizer, document_frequencies=df, num_documents=len(texts),
                                             stop_words=config.stop_words)
    targets = dist.gather_lists([q for a, b in blocks for q in builder(texts[a:b])])
    return _keep_nonempty(texts, targets)


def _keep_nonempty(texts: list[str], targets: list):
    """Drop texts whose target is empty (a warning says how many); an error if none is left."""
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


def _cached_stage2_targets(cache: Path, fingerprint: dict, count: int, tau: float, head_filter: int = 0):
    if not cache.is_file():
        return None
    saved = torch.load(cache, weights_only=False)
    if saved.get("tokenizer") != fingerprint:
        raise RunFolderError(f"{cache} was built with another tokenizer or vocabulary "
                             f"({saved.get('tokenizer')} vs {fingerprint}); delete it to rebuild")
    if saved.get("texts") == count and saved.get("tau") == tau and saved.get("head_filter", 0) == head_filter:
        log.info("stage 2: reusing teacher targets from %s", cache)
        return saved["targets"], saved["background"]
    return None


def build_stage2_targets(teacher: Text2TokenModel, texts: list[str], background_texts: list[str],
                         config: TrainConfig, cache: Path):
    """Background and sparse teacher targets, computed once and cached in the run folder.

    With several processes: each rank runs the teacher over its own blocks of texts (one block is
    one teacher batch of :func:`target_block` texts, so a text is batched with the same neighbours
    whatever the world size);
    the background's logit sums are all-reduced, the targets gathered in order. The main process
    writes the cache; on resume it reads it and sends it to every rank (no shared disk needed).
    """
    fingerprint = tokenizer_fingerprint(teacher.tokenizer)
    saved = dist.on_main(_cached_stage2_targets, cache, fingerprint, len(texts), config.tau, config.head_filter)
    if saved is not None:
        return saved
    teacher.model.to(dist.local_device())
    quiet = not dist.is_main()
    remove = head_directions(teacher.model, config.head_filter)
    with torch.autocast(teacher.device.type, dtype=torch.bfloat16,
                        enabled=resolve_precision(config.precision, teacher.device.type) == "bf16"):
        return _teacher_pass(teacher, texts, background_texts, config, cache, fingerprint, quiet, remove)


def _teacher_pass(teacher, texts, background_texts, config, cache, fingerprint, quiet, remove):
    # this rank's blocks of texts, each one teacher batch; the teacher's forward pass shows one bar over them
    block = target_block(config)
    logit_sum = mean_teacher_logits(teacher, background_texts, block, show_progress=not quiet, remove=remove,
                                    blocks=dist.block_ranges(len(background_texts), block))
    background = background_distribution(dist.all_reduce_sum(logit_sum), len(background_texts))
    targets, kept_mass = teacher_targets(teacher, texts, background, config.tau, block, config.target_max_k,
                                         config.target_min_mass, show_progress=not quiet, remove=remove,
                                         blocks=dist.block_ranges(len(texts), block))
    targets = dist.gather_lists(targets)
    kept_mass = min(dist.gather_lists([kept_mass]))
    background = background.cpu()
    log.info("stage 2: %d teacher targets, smallest mass kept %.6f", len(targets), kept_mass)
    payload = {"tokenizer": fingerprint, "texts": len(texts), "tau": config.tau, "head_filter": config.head_filter,
               "background": background,
               "targets": targets, "kept_mass": kept_mass}
    dist.on_main(atomic_torch_save, cache, payload)
    return targets, background


def _digest(texts: list[str]) -> str:
    import hashlib

    h = hashlib.sha1()
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


_backbone_reference = backbone_reference  # kept for older imports


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
        run = dist.on_main(prepare_run_dir, config, resume=True, overwrite=False)
        dist.on_main(_acquire, lock)
    try:
        return _train(config, folder, lock, resume, overwrite, started)
    finally:
        if dist.is_main():  # no collective here: this may run on one failing rank alone
            lock.release()


def _acquire(lock) -> None:
    lock.acquire()


def _train(config: TrainConfig, folder: RunFolder, lock, resume: bool, overwrite: bool, started: float) -> Path:
    run = folder.path
    if resume:
        saved = dist.on_main(folder.read_train_config)
        config = TrainConfig.from_dict(saved, source=str(folder.train_config_file))
        config = dist.on_main(folder.resolve_paths, config)  # relative paths: from the folder the run started in
        if dist.on_main(lambda: folder.is_finished() and all(folder.stage_finished(s) for s in config.stages)):
            log.warning("%s already finished training: nothing to resume", run)  # its record stays as it is
            return run
        dist.on_main(folder.check_backbone, config.model)  # never onto other weights than the run started with
    # what a later load needs, taken now: a relative local backbone path holds from any folder
    backbone = backbone_reference(config.model)
    world_size = dist.world_size()
    corpus, stats = corpus_split(config, world_size)  # bad data fails before any folder is made
    dist.check_same_everywhere((len(corpus["all"]), _digest(corpus["all"])), "corpus")
    if not resume:  # refuse a taken folder now, but make it only once backbone and targets are known good
        dist.on_main(folder.check_not_locked)
        dist.on_main(prepare_run_dir, config, resume=False, overwrite=overwrite, check_only=True)
    model, tokenizer, source = load_backbone(config.model, attention=config.attention, dtype=getattr(torch, config.dtype))
    lora_targets(model, config.lora_target_modules)  # an unknown module name fails here, before the folder is made
    stage1 = (None if resume or "data" not in config.stages
              else build_stage1_targets(tokenizer, corpus["data"], config, model))
    if not resume:
        dist.on_main(_acquire, lock)  # then checked again: another process may have taken the folder meanwhile
        run = dist.on_main(prepare_run_dir, config, resume=False, overwrite=overwrite)
    summary = {"corpus": {**stats.__dict__, "problems": stats.problems}, "stages": {}}
    adapters = []
    for stage in config.stages:
        stage_dir = folder.stage_dir(stage)
        adapter_dir = folder.adapter_dir(stage)
        if dist.on_main(folder.stage_finished, stage):
            log.info("%s: finished adapter found, skipping", stage_dir.name)
            model = apply_adapters(model, [adapter_dir])
            adapters.append(str(adapter_dir.relative_to(run)))
            done = dist.on_main(folder.read_stage_summary, stage)
            if done is not None:  # the finished stage's numbers, kept across a resume
                summary["stages"][stage] = done
            continue
        stage_started = time.time()
        info = {}
        if stage == "data":
            texts, targets, skipped = stage1 or build_stage1_targets(tokenizer, corpus["data"], config, model)
            info["empty_targets_skipped"] = skipped
        elif stage == "simcse":
            from .contrastive import prepare_dropout

            texts, targets = corpus["simcse"], None
            info["dropout"] = prepare_dropout(model, config)
        else:
            model.eval()
            teacher = Text2TokenModel(model, tokenizer, config.pooling, config.attention, config.max_length,
                                      config.prompt, name="teacher")
            sample = corpus["all"] if config.background_samples is None else corpus["all"][: config.background_samples]
            texts = corpus["model"]
            targets, _ = build_stage2_targets(teacher, texts, sample, config, folder.targets_file(stage))
            info["background_texts"] = len(sample)
        if stage != "simcse" and config.contrastive_weight > 0:  # the joint objective's two dropout views
            from .contrastive import prepare_dropout

            info["dropout"] = prepare_dropout(model, config)
        for p in model.parameters():
            p.requires_grad_(False)
        peft_model, trainer = train_stage(model, tokenizer, texts, targets, config, stage, stage_dir, resume=resume)
        dist.on_main(folder.save_adapter, peft_model, stage)
        model = peft_model.merge_and_unload()
        losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
        steps = trainer.state.global_step
        del peft_model, trainer
        release_memory()  # the stage's activations and optimizer state go back to the OS before the next phase
        adapters.append(str(adapter_dir.relative_to(run)))
        info.update(texts=len(texts), steps=steps, seconds=round(time.time() - stage_started, 1),
                    first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None)
        summary["stages"][stage] = info
        dist.on_main(folder.write_stage_summary, stage, info)
    record = {
        "format_version": FORMAT_VERSION,
        "objective": config.objective,
        "model": {"backbone": backbone, "pooling": config.pooling,
                  "attention": config.attention, "max_length": config.max_length, "prompt": config.prompt},
        "adapters": adapters,
        "stages": config.stages,
        "hyperparameters": config.to_dict(),
        "training": {**summary, "precision": resolve_precision(config.precision),
                     "seconds": round(time.time() - started, 1)},
    }
    dist.on_main(folder.write_record, record, config.stages)
    log.info("run saved to %s", run)
    return run
