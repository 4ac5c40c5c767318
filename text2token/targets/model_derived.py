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
                        remove: torch.Tensor | None = None, blocks=None) -> torch.Tensor:
    """The *sum* (not the mean) of the teacher's logits W_lm e_1(x) over texts: ``[V]`` fp64 on the
    teacher's device (zeros for no texts); divide by the count with :func:`background_distribution`.

    ``remove``: see ``vocab_logits``. ``blocks``: the ``(start, stop)`` ranges of ``texts`` to run, each
    batched on its own (see :meth:`Text2TokenModel.forward`); ``None``: all texts."""
    total = None
    for step in teacher.forward(texts, batch_size, vocab="logits", remove=remove, blocks=blocks,
                                show_progress=show_progress, desc="stage 2: background"):
        logits = step.logits.double().sum(0)
        total = logits if total is None else total + logits
    if total is None:
        return torch.zeros(teacher.vocab_size, dtype=torch.float64, device=teacher.device)
    return total


def background_distribution(logit_sum: torch.Tensor, count: int) -> torch.Tensor:
    """b = softmax(mean teacher logits), from their sum over ``count`` texts."""
    return torch.softmax((logit_sum / count).double(), dim=-1).float()


@torch.inference_mode()
def teacher_targets(teacher, texts: list[str], background: torch.Tensor, tau: float, batch_size: int = 32,
                    max_k: int = 64, min_mass: float = 1 - 1e-6, show_progress: bool = True,
                    remove: torch.Tensor | None = None, blocks=None):
    """Sparse q_M for each text, in input order, and the smallest mass kept in any row.

    ``blocks``: only the texts of these ``(start, stop)`` ranges, each batched on its own; the targets
    come in the order of the ranges."""
    blocks = [(0, len(texts))] if blocks is None else [(int(a), int(b)) for a, b in blocks]
    position = np.full(len(texts), -1, dtype=np.int64)  # a text's place among the returned targets
    count = 0
    for a, b in blocks:
        position[a:b] = np.arange(count, count + b - a)
        count += b - a
    targets: list = [None] * count
    kept = 1.0
    background = background.to(teacher.device)
    for step in teacher.forward(texts, batch_size, vocab="probs", remove=remove, blocks=blocks,
                                show_progress=show_progress, desc="stage 2: teacher targets"):
        rows, mass = sparsify(model_derived_target(step.probs, background, tau), max_k=max_k, min_mass=min_mass)
        kept = min(kept, mass)
        for i, row in zip(step.index, rows):
            targets[position[i]] = row
    return targets, kept
