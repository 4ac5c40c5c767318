"""Training one stage on the transformers Trainer.

The Trainer (through accelerate) brings multi-GPU (DDP, FSDP, DeepSpeed), bf16, gradient
accumulation, checkpoints, resume and logging backends. What is ours: the loss module,
which goes through the (possibly DDP-wrapped) module's ``forward`` so gradient sync works;
saving only the LoRA adapter in checkpoints; and the stop on a non-finite loss or gradient.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import safetensors.torch
import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from .errors import NonFiniteError
from .model import embed, vocab_logits
from .objective import kl_loss, pad_targets
from .pooling import TextEncoder

ADAPTER_FILE = "adapter_model.safetensors"


class TargetDataset(torch.utils.data.Dataset):
    """Texts with their sparse targets ``(ids, weights)``."""

    def __init__(self, texts: list[str], targets: list):
        assert len(texts) == len(targets)
        self.texts, self.targets = texts, targets

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, i):
        return {"text": self.texts[i], "target": self.targets[i]}


class Collator:
    """Tokenizes a batch of texts and pads its targets."""

    def __init__(self, text_encoder: TextEncoder):
        self.text_encoder = text_encoder

    def __call__(self, rows):
        batch = self.text_encoder([r["text"] for r in rows])
        batch["target_ids"], batch["target_weights"] = pad_targets([r["target"] for r in rows])
        return batch


class TokenTargetObjective(nn.Module):
    """Loss module: KL(q ‖ softmax(W_lm · e(x))) for a peft-wrapped causal LM."""

    def __init__(self, peft_model, pooling: str):
        super().__init__()
        self.peft_model = peft_model
        self.pooling = pooling

    def forward(self, input_ids, attention_mask, position_ids, target_ids, target_weights):
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        logits = vocab_logits(self.peft_model, embed(self.peft_model, batch, self.pooling))
        return {"loss": kl_loss(logits, target_ids, target_weights)}


class StageTrainer(Trainer):
    """A Trainer whose checkpoints hold only the LoRA adapter, and which stops on NaN/inf."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = outputs["loss"]
        if not torch.isfinite(loss.detach()).all():
            raise NonFiniteError(
                f"non-finite loss ({loss.item()}) at step {self.state.global_step + 1}; training stopped. "
                f"The last good checkpoint is kept in {self.args.output_dir}"
            )
        return (loss, outputs) if return_outputs else loss

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

    def __init__(self, objective: TokenTargetObjective):
        self.objective = objective

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        for name, p in self.objective.named_parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                raise NonFiniteError(
                    f"non-finite gradient in {name} at step {state.global_step + 1}; training stopped. "
                    f"The last good checkpoint is kept in {args.output_dir}"
                )


class JsonlLog(TrainerCallback):
    """Appends every logged record (loss, lr, grad norm, ...) to a JSONL file, main process only."""

    def __init__(self, path: Path, stage: str):
        self.path, self.stage = Path(path), stage

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"stage": self.stage, "step": state.global_step, **logs}
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def add_lora(model, config):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.lora_target_modules, bias="none")
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return get_peft_model(model, lora)


def training_arguments(config, stage: str, output_dir: Path) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=config.steps_of[stage],
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr_of[stage],
        lr_scheduler_type="linear",
        warmup_steps=math.ceil(config.warmup_ratio * config.steps_of[stage]),
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        bf16=config.bf16,
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
    """Train a fresh LoRA adapter on ``model`` for one stage; return the peft model and its trainer."""
    from transformers import set_seed

    set_seed(config.seed + (0 if stage == "data" else 1))  # the adapter's init must not depend on history
    peft_model = add_lora(model, config)
    objective = TokenTargetObjective(peft_model, config.pooling)
    encoder = TextEncoder(tokenizer, config.pooling, config.max_length, config.prompt)
    args = training_arguments(config, stage, stage_dir / "checkpoints")
    trainer = StageTrainer(
        model=objective,
        args=args,
        train_dataset=TargetDataset(texts, targets),
        data_collator=Collator(encoder),
        callbacks=[FiniteGradients(objective), JsonlLog(stage_dir / "log.jsonl", stage)],
    )
    checkpoint = last_checkpoint(stage_dir / "checkpoints") if resume else None
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return peft_model, trainer


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint (adapter and trainer state both written), if any."""
    if not folder.is_dir():
        return None
    done = []
    for path in folder.glob("checkpoint-*"):
        try:
            step = int(path.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if (path / ADAPTER_FILE).is_file() and (path / "trainer_state.json").is_file():
            done.append((step, path))
    return max(done)[1] if done else None
