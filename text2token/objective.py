"""The training objectives, each a loss module with one interface: ``forward(**batch) -> {"loss": ..., ...}``,
built for a stage by :func:`build_objective`.

Text2Token (:class:`TokenTargetObjective`): KL(q ‖ p_θ) with p_θ = softmax(W_lm · e(x)) in fp32.

Targets are sparse, so the loss needs only the log-probabilities at the target's tokens:
KL(q ‖ p) = Σ_t q_t (log q_t − log p_t), summed over the target's support.

Options beyond the paper (RESULTS.md says what each did): the joint objective (:func:`joint_loss`: the KL
on two dropout views plus SimCSE's in-batch contrastive term; on by default), the head filter
(:func:`head_directions`: the LM head's dominant singular directions, which raise frequent tokens for every
text, projected out of e(x) before the loss), and the anchor (:func:`anchor_loss`: a term that keeps e(x)
near the untrained model's own prompt embedding of the same text, e_0(x); or, :func:`contrastive_anchor_loss`,
makes e(x) pick its own e_0(x) among the batch's), and the next-token term (:class:`NextTokenLoss`: the backbone's
own causal-LM loss on the prompt-wrapped text, as the SimCSE paper's auxiliary MLM term, to keep the backbone a
language model while the embedding trains).

The SimCSE baseline (:class:`SimCSEObjective`, :func:`simcse_loss`; its dropout set-up and the method's
description are in :mod:`text2token.contrastive`): two dropout views of each text, in-batch negatives.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ANCHORS
from .model import embed, resolve_length_groups, vocab_logits


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
    kl = kl_loss(logits, target_ids.repeat(2, 1), target_weights.repeat(2, 1))
    contrastive = simcse_loss(first, second_all, temperature, offset)
    return kl + weight * contrastive, kl, contrastive


def anchor_loss(embeddings: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Mean over the rows of ``1 - cos(e_i, e0_i)``: how far the trained embeddings ``[m, d]`` have turned away
    from the untrained model's ``anchors`` ``[n, d]`` of the same texts (``m`` a multiple of ``n``: the views of
    the joint objective are stacked, each compared with its text's anchor)."""
    if embeddings.dim() != 2 or anchors.dim() != 2 or embeddings.shape[1] != anchors.shape[1] \
            or embeddings.shape[0] % anchors.shape[0]:
        raise ValueError(f"expected [k*n, d] embeddings and [n, d] anchors, got {tuple(embeddings.shape)} and "
                         f"{tuple(anchors.shape)}")
    anchors = anchors.float().repeat(embeddings.shape[0] // anchors.shape[0], 1)
    return (1.0 - F.cosine_similarity(embeddings.float(), anchors, dim=-1)).mean()


def contrastive_anchor_loss(embeddings: torch.Tensor, anchors: torch.Tensor,
                            temperature: float = 0.05) -> torch.Tensor:
    """SimCSE's in-batch loss with the untrained model's embeddings as the other view: each row of ``embeddings``
    ``[m, d]`` must pick its own text's anchor among the batch's ``anchors`` ``[n, d]`` (``m`` a multiple of
    ``n``: each stacked view is scored on its own, so a text's other view is never a negative), averaged over the
    views. Unlike :func:`anchor_loss` it keeps what tells texts apart in e_0, not e_0's shared direction."""
    if embeddings.dim() != 2 or anchors.dim() != 2 or embeddings.shape[0] % anchors.shape[0]:
        raise ValueError(f"expected [k*n, d] embeddings and [n, d] anchors, got {tuple(embeddings.shape)} and "
                         f"{tuple(anchors.shape)}")
    views = embeddings.split(anchors.shape[0])
    return torch.stack([simcse_loss(view, anchors, temperature) for view in views]).mean()


def base_embeddings(peft_model, batch: dict[str, torch.Tensor], pooling: str, groups: int = 1) -> torch.Tensor:
    """e_0(x): the untrained model's embeddings of a batch (the LoRA adapters switched off, no dropout, no
    gradient). The anchor's reference; the backbone is frozen, so e_0 of a text never changes."""
    was_training = peft_model.training
    peft_model.eval()
    try:
        with torch.no_grad(), peft_model.disable_adapter():
            return embed(peft_model, batch, pooling, groups).detach()
    finally:
        peft_model.train(was_training)


def simcse_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.05, offset: int = 0) -> torch.Tensor:
    """Cross-entropy of ``cos(a_i, b_j) / temperature`` over ``j``, the positive of row ``i`` being ``b[offset + i]``.

    ``a``: ``[n, d]`` first views; ``b``: ``[m, d]`` second views, ``m >= offset + n`` (``b`` may hold the
    second views of other processes too, ``offset`` is where this process's own rows start).
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected [n, d] and [m, d] embeddings, got {tuple(a.shape)} and {tuple(b.shape)}")
    if offset + a.shape[0] > b.shape[0]:
        raise ValueError(f"positives out of range: rows {offset}..{offset + a.shape[0] - 1} of {b.shape[0]}")
    logits = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / temperature
    labels = torch.arange(offset, offset + a.shape[0], device=a.device)
    return F.cross_entropy(logits, labels)


def two_views(model, batch: dict[str, torch.Tensor], pooling: str, groups: int = 1, on_hidden=None) -> torch.Tensor:
    """``[2n, d]``: the embeddings of a batch of ``n`` texts, then of the same texts again. One forward pass over
    the batch stacked twice: each row gets its own dropout masks, exactly as two passes would, at the cost of one.
    ``on_hidden``: see :func:`text2token.model.embed`."""
    return embed(model, {k: v.repeat(2, 1) for k, v in batch.items()}, pooling, groups, on_hidden)


class NextTokenLoss:
    """The backbone's own next-token (causal-LM) cross-entropy over the hidden states of a training forward pass,
    collected as :func:`text2token.model.embed`'s ``on_hidden`` hook (one call per sub-batch) and averaged over
    every position whose next token is a real one (padding excluded). It scores the prompt-wrapped text the
    embedding is read from, through the frozen LM head in fp32 (:func:`text2token.model.vocab_logits`)."""

    def __init__(self, model):
        self.model = model
        self.total = None
        self.count = 0

    def __call__(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        mask = batch["attention_mask"] > 0
        valid = mask[:, :-1] & mask[:, 1:]
        if not valid.any():
            return
        logits = vocab_logits(self.model, hidden[:, :-1][valid])
        nll = F.cross_entropy(logits, batch["input_ids"][:, 1:][valid], reduction="sum")
        self.total = nll if self.total is None else self.total + nll
        self.count += int(valid.sum())

    def value(self) -> torch.Tensor:
        """The mean over the positions seen (0 when none had a next token)."""
        if self.total is None:
            return torch.zeros((), device=next(self.model.parameters()).device)
        return self.total / self.count


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All processes' ``x`` concatenated (gradients flow back to each), and where this process's rows start."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0), dist.get_rank() * x.shape[0]


class TokenTargetObjective(nn.Module):
    """Loss module: KL(q ‖ softmax(W_lm · e(x))) for a peft-wrapped causal LM.

    ``contrastive_weight > 0``: the joint objective (:func:`joint_loss`): each text
    twice through dropout in one stacked pass, the KL on both views, plus that weight times SimCSE's
    in-batch loss (negatives gathered across processes). ``head_filter``: directions ``[dim, k]``
    removed from e(x) before the vocabulary projection (:func:`head_directions`). ``anchor_weight > 0``: plus
    that weight times :func:`anchor_loss` (``anchor="cosine"``) or :func:`contrastive_anchor_loss`
    (``"contrastive"``) against the untrained model's embeddings (one more forward pass, without gradient, per
    step). ``lm_weight > 0``: plus that weight times :class:`NextTokenLoss` over the same forward pass (every view,
    every position). ``length_groups``: each forward pass as that many length-sorted sub-batches (:func:`embed`).
    """

    needs_targets = True

    def __init__(self, peft_model, pooling: str, contrastive_weight: float = 0.0, temperature: float = 0.05,
                 head_filter: torch.Tensor | None = None, anchor_weight: float = 0.0, anchor: str = "cosine",
                 length_groups: int = 1, lm_weight: float = 0.0):
        super().__init__()
        self.peft_model = peft_model
        self.pooling = pooling
        self.groups = length_groups
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature
        self.anchor_weight = anchor_weight
        if anchor not in ANCHORS:
            raise ValueError(f"unknown anchor {anchor!r}: use one of {', '.join(ANCHORS)}")
        self.anchor = anchor
        self.lm_weight = lm_weight
        self.register_buffer("head_filter", head_filter, persistent=False)

    def forward(self, input_ids, attention_mask, position_ids, target_ids, target_weights):
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        anchors = base_embeddings(self.peft_model, batch, self.pooling, self.groups) if self.anchor_weight > 0 else None
        next_token = NextTokenLoss(self.peft_model) if self.lm_weight > 0 else None
        if self.contrastive_weight <= 0:
            e = embed(self.peft_model, batch, self.pooling, self.groups, next_token)
            out = {"loss": kl_loss(vocab_logits(self.peft_model, e, self.head_filter), target_ids, target_weights)}
        else:
            n = input_ids.shape[0]
            e = two_views(self.peft_model, batch, self.pooling, self.groups, next_token)
            second_all, offset = gather_with_grad(e[n:])
            loss, kl, contrastive = joint_loss(vocab_logits(self.peft_model, e, self.head_filter), target_ids,
                                               target_weights, e[:n], second_all, offset, self.contrastive_weight,
                                               self.temperature)
            out = {"loss": loss, "kl": kl.detach(), "contrastive": contrastive.detach()}
        if anchors is not None:
            anchor = anchor_loss(e, anchors) if self.anchor == "cosine" else \
                contrastive_anchor_loss(e, anchors, self.temperature)
            out["loss"] = out["loss"] + self.anchor_weight * anchor
            out["anchor"] = anchor.detach()
        if next_token is not None:
            lm = next_token.value()
            out["loss"] = out["loss"] + self.lm_weight * lm
            out["lm"] = lm.detach()
        return out


class SimCSEObjective(nn.Module):
    """Loss module of the SimCSE baseline for a peft-wrapped causal LM (same interface as TokenTargetObjective)."""

    needs_targets = False

    def __init__(self, peft_model, pooling: str, temperature: float = 0.05, length_groups: int = 1):
        super().__init__()
        self.peft_model = peft_model
        self.pooling = pooling
        self.groups = length_groups
        self.temperature = temperature

    def views(self, input_ids, attention_mask, position_ids) -> tuple[torch.Tensor, torch.Tensor]:
        """Two embeddings of each text (see :func:`two_views`)."""
        e = two_views(self.peft_model, {"input_ids": input_ids, "attention_mask": attention_mask,
                                        "position_ids": position_ids}, self.pooling, self.groups)
        n = input_ids.shape[0]
        return e[:n], e[n:]

    def forward(self, input_ids, attention_mask, position_ids):
        a, b = self.views(input_ids, attention_mask, position_ids)
        b_all, offset = gather_with_grad(b)
        return {"loss": simcse_loss(a, b_all, self.temperature, offset)}


def build_objective(peft_model, base_model, config, stage: str) -> nn.Module:
    """The loss module of ``stage``: SimCSE's for the baseline's one stage (``simcse``), else Text2Token's
    (the KL, joint with SimCSE's term when ``contrastive_weight > 0``). Its ``needs_targets`` says whether
    the batches carry targets. ``base_model``: the backbone the head filter's directions are taken from."""
    groups = resolve_length_groups(config.length_groups)
    if stage == "simcse":
        return SimCSEObjective(peft_model, config.pooling, config.simcse_temperature, groups)
    return TokenTargetObjective(peft_model, config.pooling, config.contrastive_weight, config.simcse_temperature,
                                head_directions(base_model, config.head_filter), config.anchor_weight,
                                config.anchor, groups, config.lm_weight)
