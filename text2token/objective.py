"""The training objective: KL(q ‖ p_θ) with p_θ = softmax(W_lm · e(x)) in fp32.

Targets are sparse, so the loss needs only the log-probabilities at the target's tokens:
KL(q ‖ p) = Σ_t q_t (log q_t − log p_t), summed over the target's support.
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
