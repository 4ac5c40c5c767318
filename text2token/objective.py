"""The training objective: KL(q ‖ p_θ) with p_θ = softmax(W_lm · e(x)) in fp32.

Targets are sparse, so the loss needs only the log-probabilities at the target's tokens:
KL(q ‖ p) = Σ_t q_t (log q_t − log p_t), summed over the target's support.

Two options beyond the paper (each off by default; RESULTS.md says what they did):
the joint objective (:func:`joint_loss`: the KL on two dropout views plus SimCSE's in-batch
contrastive term), and the head filter (:func:`head_directions`: the LM head's dominant singular
directions, which raise frequent tokens for every text, projected out of e(x) before the loss).
"""

from __future__ import annotations

import numpy as np
import torch


def pad_targets(targets: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack sparse targets into ``ids [B, K]`` and ``weights [B, K]`` (padding weight 0)."""
    width = max(1, max(len(ids) for ids, _ in targets))
    ids = torch.zeros((len(targets), width), dtype=torch.long)
    weights = torch.zeros((len(targets), width), dtype=torch.float32)
    for i, (row_ids, row_w) in enumerate(targets):
        ids[i, : len(row_ids)] = torch.as_tensor(row_ids, dtype=torch.long)
        weights[i, : len(row_w)] = torch.as_tensor(row_w, dtype=torch.float32)
    return ids, weights


def kl_loss(logits: torch.Tensor, target_ids: torch.Tensor, target_weights: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(q ‖ softmax(logits)) for sparse targets q."""
    log_p = torch.log_softmax(logits.float(), dim=-1).gather(-1, target_ids)
    w = target_weights.float()
    log_q = torch.where(w > 0, w.clamp(min=1e-30).log(), torch.zeros_like(w))
    return (w * (log_q - log_p)).sum(-1).mean()


def dense_kl_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The same loss for a dense target ``[B, V]``: the reference the sparse form must match."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    q = target.float()
    return torch.where(q > 0, q * (q.clamp(min=1e-30).log() - log_p), torch.zeros_like(q)).sum(-1).mean()


def head_directions(model, k: int) -> torch.Tensor | None:
    """The ``k`` dominant right singular vectors of the LM head ``W_lm`` (``[dim, k]``, orthonormal, fp32).

    Every text's logits share them: along them W_lm · e mostly lifts the same frequent tokens for any
    e(x). Projected out of e(x) (``vocab_logits(..., remove=...)``), the loss and the stage-2 targets see
    only the text-specific part of the vocabulary distribution. ``k = 0``: None (no filter)."""
    if k <= 0:
        return None
    from .model import causal_lm

    weight = causal_lm(model).get_output_embeddings().weight.detach().float().cpu()
    if k >= weight.shape[1]:
        raise ValueError(f"head_filter {k} removes every direction of a {weight.shape[1]}-dimensional embedding")
    _, _, vh = torch.linalg.svd(weight, full_matrices=False)
    return vh[:k].T.contiguous()


def joint_loss(logits: torch.Tensor, target_ids: torch.Tensor, target_weights: torch.Tensor,
               first: torch.Tensor, second_all: torch.Tensor, offset: int, weight: float,
               temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """KL over both views' ``logits`` ``[2n, V]`` (targets ``[n, K]``, one per text) plus ``weight`` x SimCSE's
    loss of ``first`` ``[n, d]`` against ``second_all`` (see :func:`text2token.contrastive.simcse_loss`).
    Returns ``(total, kl, contrastive)``."""
    from .contrastive import simcse_loss

    kl = kl_loss(logits, target_ids.repeat(2, 1), target_weights.repeat(2, 1))
    contrastive = simcse_loss(first, second_all, temperature, offset)
    return kl + weight * contrastive, kl, contrastive
