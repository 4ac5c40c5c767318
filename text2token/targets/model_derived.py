"""Stage 2: the model-derived target, tokens the stage-1 teacher predicts beyond the text.

Teacher: the stage-1 model with its adapter merged, frozen: p_1(t | x) = softmax(W_lm e_1(x)).
Background: b = softmax(mean over the corpus of the teacher's logits W_lm e_1(x)).
Ratio filter: r_t(x) = p_1(t | x) / (p_1(t | x) + b_t + 1e-8).
Target: q_M(· | x) = softmax(r(x) / tau), tau = 1e-5 by default.

The teacher's output never changes during stage 2, so targets are computed once per text
and kept sparsely (the top tokens that hold all but ``1 - min_mass`` of the target's mass),
instead of running the teacher at every training step.
"""

from __future__ import annotations

import numpy as np
import torch

RATIO_EPS = 1e-8


def model_derived_target(teacher_probs: torch.Tensor, background: torch.Tensor, tau: float) -> torch.Tensor:
    """q_M from teacher probabilities ``[..., V]`` and the background ``[V]`` (all fp32)."""
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    ratio = teacher_probs / (teacher_probs + background + RATIO_EPS)
    return torch.softmax(ratio.double() / tau, dim=-1).float()


def sparsify(target: torch.Tensor, max_k: int = 64, min_mass: float = 1 - 1e-6):
    """Keep the fewest top tokens of each row holding ``min_mass`` of it (at most ``max_k``).

    Returns a list of ``(ids, weights)`` arrays (weights renormalised to sum to 1) and the
    smallest mass kept in any row, so callers can report what was dropped.
    """
    k = min(max_k, target.shape[-1])
    values, ids = target.topk(k, dim=-1)
    cumulative = values.double().cumsum(-1)
    keep = (cumulative < min_mass).sum(-1) + 1
    keep = keep.clamp(max=k)
    rows, kept_mass = [], 1.0
    for row_ids, row_values, n, cum in zip(ids, values, keep.tolist(), cumulative):
        kept_mass = min(kept_mass, float(cum[n - 1]))
        w = row_values[:n].double()
        rows.append((row_ids[:n].cpu().numpy().astype(np.int64), (w / w.sum()).cpu().numpy().astype(np.float32)))
    return rows, kept_mass


@torch.inference_mode()
def mean_teacher_logits(teacher, texts: list[str], batch_size: int = 32, show_progress: bool = True,
                        remove: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of the teacher's logits W_lm e_1(x) over texts (``[V]`` fp64); ``remove``: see ``vocab_logits``."""
    from tqdm.auto import tqdm

    from ..model import embed, vocab_logits

    total = None
    bar = tqdm(total=len(texts), desc="stage 2: background", unit="text", disable=not show_progress)
    for _, batch in teacher.batches(texts, batch_size):
        logits = vocab_logits(teacher.model, embed(teacher.model, batch, teacher.pooling), remove).double().sum(0)
        total = logits if total is None else total + logits
        bar.update(batch["input_ids"].shape[0])
    bar.close()
    return total


def background_distribution(logit_sum: torch.Tensor, count: int) -> torch.Tensor:
    """b = softmax(mean teacher logits)."""
    return torch.softmax((logit_sum / count).double(), dim=-1).float()


@torch.inference_mode()
def teacher_targets(teacher, texts: list[str], background: torch.Tensor, tau: float, batch_size: int = 32,
                    max_k: int = 64, min_mass: float = 1 - 1e-6, show_progress: bool = True,
                    remove: torch.Tensor | None = None):
    """Sparse q_M for each text, in input order, and the smallest mass kept in any row."""
    from tqdm.auto import tqdm

    from ..model import embed, vocab_logits

    targets: list = [None] * len(texts)
    kept = 1.0
    bar = tqdm(total=len(texts), desc="stage 2: teacher targets", unit="text", disable=not show_progress)
    background = background.to(teacher.device)
    for index, batch in teacher.batches(texts, batch_size):
        probs = torch.softmax(vocab_logits(teacher.model, embed(teacher.model, batch, teacher.pooling), remove), dim=-1)
        rows, mass = sparsify(model_derived_target(probs, background, tau), max_k=max_k, min_mass=min_mass)
        kept = min(kept, mass)
        for i, row in zip(index, rows):
            targets[i] = row
        bar.update(len(index))
    bar.close()
    return targets, kept
