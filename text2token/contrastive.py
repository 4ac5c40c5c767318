"""The SimCSE baseline: LLM2Vec-style unsupervised contrastive training (METHOD.md, "Evaluation and peer").

Each text goes through the model twice in train mode; dropout makes the two embeddings differ.
The two embeddings of one text are a positive pair, the other texts of the batch are its
negatives: with ``a_i``, ``b_j`` the two views,

    loss = mean_i  -log softmax_j( cos(a_i, b_j) / temperature )[i]

(cross-entropy over the rows; temperature 0.05 as in SimCSE and LLM2Vec; the loss module is
:class:`text2token.objective.SimCSEObjective`, beside Text2Token's, and this module sets up the
dropout that makes the two views). Everything else is
the Text2Token machinery: the same backbone loader, pooling, LoRA, Trainer and run folder, so a
SimCSE run is opened, encoded, evaluated and exported exactly like a Text2Token run.

Dropout. The backbone's own config may have no active dropout (Llama, Mistral, Qwen2 ship
``attention_dropout: 0.0`` and have no hidden-state dropout). As LLM2Vec does, training sets the
attention-probability dropout to ``simcse_dropout`` (default 0.3, LLM2Vec's value) on every
attention module that has an ``attention_dropout`` attribute, and the LoRA adapters add their
own dropout (``lora_dropout``, default 0.05). Backbones without such an attribute (GPT-2 style
models) keep the dropout their config gives their ``nn.Dropout`` layers, plus the LoRA dropout;
a warning says so. A configuration with no dropout at all is refused: its two views would be
identical and the positives trivial. Dropout is only active in train mode; ``encode`` runs in
eval mode, and ``text2token.load`` rebuilds the backbone from its own config.

Multi-GPU. Under DDP the second views of all processes are gathered (with gradient), so every
text's negatives are the texts of the global batch, as in LLM2Vec; this needs the same batch
size on every process, which the Trainer's data loader gives (``even_batches``).
"""

from __future__ import annotations

import logging

from torch import nn

from .errors import ConfigError
from .model import causal_lm

log = logging.getLogger(__name__)


def set_attention_dropout(model, p: float) -> int:
    """Set the attention-probability dropout of every attention module that has one; return how many."""
    count = 0
    for module in causal_lm(model).modules():
        if isinstance(getattr(module, "attention_dropout", None), float) and not isinstance(module, nn.Dropout):
            module.attention_dropout = float(p)
            count += 1
    if count and hasattr(causal_lm(model).config, "attention_dropout"):
        causal_lm(model).config.attention_dropout = float(p)
    return count


def prepare_dropout(model, config) -> dict:
    """Switch on SimCSE's dropout (see the module docstring); return what is active, for the run record."""
    attention_modules = set_attention_dropout(model, config.simcse_dropout)
    other = [m.p for m in causal_lm(model).modules() if isinstance(m, nn.Dropout) and m.p > 0]
    if not attention_modules:
        log.warning("simcse: the backbone has no attention_dropout setting; simcse_dropout %.2f is not applied, "
                    "the dropout is the LoRA dropout (%.2f) and the model's own dropout layers (%d active)",
                    config.simcse_dropout, config.lora_dropout, len(other))
    active = {"attention_dropout": config.simcse_dropout if attention_modules else None,
              "attention_modules": attention_modules, "lora_dropout": config.lora_dropout,
              "model_dropout_layers": len(other)}
    if not (config.lora_dropout > 0 or other or (attention_modules and config.simcse_dropout > 0)):
        raise ConfigError("simcse needs dropout to make two views of a text: set simcse_dropout or lora_dropout "
                          "above 0")
    return active
