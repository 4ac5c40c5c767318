"""Training one stage on the transformers Trainer.

The Trainer (through accelerate) brings multi-GPU (DDP, FSDP, DeepSpeed), bf16, gradient
accumulation, checkpoints, resume and logging backends. What it trains is the stage's loss module
(:func:`text2token.objective.build_objective`), which goes through the (possibly DDP-wrapped)
module's ``forward`` so gradient sync works, on fresh LoRA adapters (:func:`text2token.lora.add_lora`)
and batches of :mod:`text2token.batches`. What is ours here: saving only the LoRA adapter in checkpoints; crash-safe checkpoints (a completion marker written
last, old checkpoints deleted only after it, a full disk reported in one line); and the stop on a
non-finite loss or gradient.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import safetensors.torch
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from .errors import DiskFullError, NonFiniteError, RunFolderError
from .files import free_space, is_disk_full
from .batches import Collator, TargetDataset, TextCollator, TextDataset
from .lora import add_lora
from .objective import build_objective
from .pooling import TextEncoder
from .precision import resolve as resolve_precision

# the checkpoint format (completion marker, sizes and checksums) belongs to text2token.runfolder;
# these names stay importable from here
from .runfolder import (ADAPTER_FILE, CHECKPOINTS, COMPLETE_FILE, STAGE_LOG, _checkpoints, complete_checkpoints,  # noqa: F401
                        is_complete, kept_checkpoint_note, last_checkpoint, last_verified_checkpoint,
                        mark_complete, remove_incomplete_checkpoints, remove_old_checkpoints, trim_log)


class StageTrainer(Trainer):
    """A Trainer whose checkpoints hold only the LoRA adapter, and which stops on NaN/inf."""

    # token count of each training text, set for ``group_by_length``: batches of similar length
    lengths: list[int] | None = None
    # the objective's terms since the last log record: name -> (sum, count)
    _terms: dict[str, tuple[float, int]] | None = None

    def _get_train_sampler(self, train_dataset=None):
        if self.lengths is None:
            return super()._get_train_sampler(train_dataset)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        # seeded: the same batches on a resume (a stage is one pass over its texts)
        return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                    lengths=self.lengths, generator=torch.Generator().manual_seed(self.args.seed))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = outputs["loss"]
        if not torch.isfinite(loss.detach()).all():
            raise NonFiniteError(f"non-finite loss ({loss.item()}) at step {self.state.global_step + 1}; "
                                 f"training stopped. {kept_checkpoint_note(self.args.output_dir)}")
        if model.training:  # the objective's terms (kl, contrastive, anchor), averaged into the next log record
            terms = self._terms or {}
            for key, value in outputs.items():
                if key != "loss" and torch.is_tensor(value) and value.numel() == 1:
                    total, count = terms.get(key, (0.0, 0))
                    terms[key] = (total + float(value), count + 1)
            self._terms = terms
        return (loss, outputs) if return_outputs else loss

    def log(self, logs, *args, **kwargs):
        terms = self._terms
        if terms and "loss" in logs:
            logs.update({key: round(total / count, 6) for key, (total, count) in terms.items()})
            self._terms = {}
        super().log(logs, *args, **kwargs)

    def _save_checkpoint(self, model, trial):
        """The Trainer's checkpoint, made crash-safe.

        transformers writes a checkpoint's files in place, one after the other (adapter, optimizer,
        scheduler, RNG state, trainer state) and then deletes old checkpoints beyond
        ``save_total_limit``. Here the folder gets :data:`COMPLETE_FILE` once all its files are
        flushed to disk, and old checkpoints are deleted only after that. A failed save (a full disk)
        removes the partial folder, keeps the previous checkpoint and says so in one line.
        """
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        keep, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            if self.args.should_save:
                (folder / COMPLETE_FILE).unlink(missing_ok=True)
            super()._save_checkpoint(model, trial)
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                mark_complete(folder, self.state.global_step)
        except Exception as exc:
            if not self.args.should_save:
                raise
            full = is_disk_full(exc, folder.parent)
            shutil.rmtree(folder, ignore_errors=True)
            what = "disk full" if full else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            message = (f"{what} while saving {folder.name} in {folder.parent} ({free_space(folder.parent)} free); "
                       f"training stopped{'; free some space' if full else ''}. {kept_checkpoint_note(folder.parent)}")
            if full:
                raise DiskFullError(message) from exc
            if isinstance(exc, OSError):
                raise RunFolderError(message) from exc
            raise
        finally:
            self.args.save_total_limit = keep
        if self.args.should_save:
            remove_old_checkpoints(folder.parent, keep)

    def _peft(self):
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False).peft_model

    def _save(self, output_dir=None, state_dict=None):
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        self._peft().save_pretrained(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        from peft import set_peft_model_state_dict

        weights = safetensors.torch.load_file(os.path.join(resume_from_checkpoint, ADAPTER_FILE))
        set_peft_model_state_dict(self._peft(), weights)


class FiniteGradients(TrainerCallback):
    """Stops training, naming the step, when a gradient is NaN or infinite."""

    def __init__(self, objective):
        self.objective = objective

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        for name, p in self.objective.named_parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                raise NonFiniteError(f"non-finite gradient in {name} at step {state.global_step + 1}; "
                                     f"training stopped. {kept_checkpoint_note(args.output_dir)}")


class JsonlLog(TrainerCallback):
    """Appends every logged record (loss, lr, grad norm, ...) to a JSONL file, main process only."""

    def __init__(self, path: Path, stage: str):
        self.path, self.stage = Path(path), stage

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"stage": self.stage, "step": state.global_step, **logs}
            try:
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError as exc:
                if not is_disk_full(exc, self.path.parent):
                    from .files import os_cause

                    raise RunFolderError(f"cannot write {self.path} at step {state.global_step} ({os_cause(exc)}); "
                                         f"training stopped. {kept_checkpoint_note(args.output_dir)}") from exc
                raise DiskFullError(f"disk full while writing {self.path} at step {state.global_step}; training "
                                    f"stopped; free some space. {kept_checkpoint_note(args.output_dir)}") from exc


class StageProgress(TrainerCallback):
    """One progress bar per stage, with the loss and the seconds per step in its postfix.

    It replaces the Trainer's own bar, which also prints every log record as a raw dict; the records
    go to the stage's ``log.jsonl`` (:class:`JsonlLog`) instead."""

    def __init__(self, stage: str):
        self.stage, self.bar, self.started = stage, None, None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            import time

            from tqdm.auto import tqdm

            label = {"data": "stage 1 (data targets)", "model": "stage 2 (model targets)"}.get(self.stage, self.stage)
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=label, unit="step",
                            dynamic_ncols=True)
            self.started, self.first = time.time(), state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            import time

            done = max(1, state.global_step - self.first)
            self.bar.set_postfix(loss=f"{float(logs['loss']):.3g}", s_per_step=f"{(time.time() - self.started) / done:.1f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def training_arguments(config, stage: str, output_dir: Path) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=config.steps_of[stage],
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr_of[stage],
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=math.ceil(config.warmup_ratio * config.steps_of[stage]),
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        bf16=resolve_precision(config.precision) == "bf16",
        seed=config.seed,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        report_to=config.report_to,
        remove_unused_columns=False,
        dataloader_num_workers=config.dataloader_num_workers,
        disable_tqdm=False,
        use_cpu=not torch.cuda.is_available(),
    )


def train_stage(model, tokenizer, texts, targets, config, stage: str, stage_dir: Path,
                resume: bool = False):
    """Train a fresh LoRA adapter on ``model`` for one stage; return the peft model and its trainer.

    Stage ``simcse`` (objective simcse) trains the SimCSE baseline of :mod:`text2token.contrastive`
    on ``texts`` alone (``targets`` is ignored); ``data`` and ``model`` train Text2Token.
    """
    from transformers import set_seed

    set_seed(config.seed + (1 if stage == "model" else 0))  # the adapter's init must not depend on history
    peft_model = add_lora(model, config)
    encoder = TextEncoder(tokenizer, config.pooling, config.max_length, config.prompt)
    objective = build_objective(peft_model, model, config, stage)
    if objective.needs_targets:
        dataset, collator = TargetDataset(texts, targets), Collator(encoder)
    else:
        dataset, collator = TextDataset(texts), TextCollator(encoder)
    args = training_arguments(config, stage, stage_dir / CHECKPOINTS)
    trainer = StageTrainer(
        model=objective,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        callbacks=[FiniteGradients(objective), JsonlLog(stage_dir / STAGE_LOG, stage)],
    )
    from transformers.trainer_callback import ProgressCallback

    trainer.remove_callback(ProgressCallback)  # its bar prints raw log dicts; StageProgress shows them in the bar
    trainer.add_callback(StageProgress(stage))
    if config.group_by_length:
        trainer.lengths = [len(ids) for ids in encoder.token_ids(texts)]
    checkpoint = None
    if resume:  # the newest checkpoint whose files match their checksums; damaged and partial ones go
        checkpoint = last_verified_checkpoint(stage_dir / CHECKPOINTS, remove_damaged=trainer.args.should_save)
        if trainer.args.should_save:
            remove_incomplete_checkpoints(stage_dir / CHECKPOINTS)
            # the steps after the checkpoint are trained (and logged) again: their old records go
            trim_log(stage_dir / STAGE_LOG, int(checkpoint.name.split("-", 1)[1]) if checkpoint else 0)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return peft_model, trainer
