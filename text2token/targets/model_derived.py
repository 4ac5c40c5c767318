"""Stage 2: the model-derived target, tokens the stage-1 teacher predicts beyond the text.

Teacher: the stage-1 model with its adapter merged, frozen: p_1(t | x) = softmax(W_lm e_1(x)).
Background: b = softmax(mean over the corpus of the teacher's logits W_lm e_1(x)).
Ratio filter: r_t(x) = p_1(t | x) / (p_1(t | x) + b_t + 1e-8).
Target: q_M(· | x) = softmax(r(x) / tau), tau = 1e-5 by default.

The teacher's output never changes during stage 2, so targets are computed once per text
and kept sparsely (the top tokens that hold all but ``1 - min_mass`` of the target's mass),
instead of running the teacher at every training step.

:func:`build_stage2_targets` runs the teacher over a corpus (each process over its own blocks of texts) and
caches the background and targets in the run folder, so a resumed run does not run the teacher again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..model import Text2TokenModel

log = logging.getLogger(__name__)

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
                        remove: torch.Tensor | None = None, blocks=None, label: str = "stage 2") -> torch.Tensor:
    """The *sum* (not the mean) of the teacher's logits W_lm e_1(x) over texts: ``[V]`` fp64 on the
    teacher's device (zeros for no texts); divide by the count with :func:`background_distribution`.

    ``remove``: see ``vocab_logits``. ``blocks``: the ``(start, stop)`` ranges of ``texts`` to run, each
    batched on its own (see :meth:`Text2TokenModel.forward`); ``None``: all texts. ``label``: the progress
    bar's prefix (the stage the pass belongs to)."""
    total = None
    for step in teacher.forward(texts, batch_size, vocab="logits", remove=remove, blocks=blocks,
                                show_progress=show_progress, desc=f"{label}: background"):
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
                    remove: torch.Tensor | None = None, blocks=None, label: str = "stage 2"):
    """Sparse q_M for each text, in input order, and the smallest mass kept in any row.

    ``blocks``: only the texts of these ``(start, stop)`` ranges, each batched on its own; the targets
    come in the order of the ranges. ``label``: the progress bar's prefix."""
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
                                show_progress=show_progress, desc=f"{label}: teacher targets"):
        rows, mass = sparsify(model_derived_target(step.probs, background, tau), max_k=max_k, min_mass=min_mass)
        kept = min(kept, mass)
        for i, row in zip(step.index, rows):
            targets[position[i]] = row
    return targets, kept


# ---------------------------------------------------------------- a corpus's stage-2 targets, over every process
def tokenizer_fingerprint(tokenizer) -> dict:
    """The vocabulary's size and digest: cached targets are only reused with the same tokenizer."""
    import hashlib

    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    digest = hashlib.sha1(json.dumps(vocab).encode()).hexdigest()
    return {"vocab_size": len(tokenizer), "vocab_sha1": digest}


def _cached_stage2_targets(cache: Path, fingerprint: dict, count: int, tau: float, head_filter: int = 0,
                           label: str = "stage 2"):
    if not cache.is_file():
        return None
    saved = torch.load(cache, weights_only=False)
    if saved.get("tokenizer") != fingerprint:
        from ..errors import RunFolderError

        raise RunFolderError(f"{cache} was built with another tokenizer or vocabulary "
                             f"({saved.get('tokenizer')} vs {fingerprint}); delete it to rebuild")
    if saved.get("texts") == count and saved.get("tau") == tau and saved.get("head_filter", 0) == head_filter:
        log.info("%s: reusing teacher targets from %s", label, cache)
        return saved["targets"], saved["background"]
    return None


def build_stage2_targets(teacher: Text2TokenModel, texts: list[str], background_texts: list[str],
                         config: TrainConfig, cache: Path, label: str = "stage 2"):
    """Background and sparse teacher targets, computed once and cached in the run folder.

    ``label`` names the stage in progress bars and logs (stage 1's ``teacher_mix`` runs the same pass).

    With several processes: each rank runs the teacher over its own blocks of texts (one block is
    one teacher batch of :func:`target_block` texts, so a text is batched with the same neighbours
    whatever the world size);
    the background's logit sums are all-reduced, the targets gathered in order. The main process
    writes the cache; on resume it reads it and sends it to every rank (no shared disk needed).
    """
    from .. import distributed as dist
    from ..objective import head_directions
    from ..precision import resolve as resolve_precision

    fingerprint = tokenizer_fingerprint(teacher.tokenizer)
    saved = dist.on_main(_cached_stage2_targets, cache, fingerprint, len(texts), config.tau, config.head_filter,
                         label)
    if saved is not None:
        return saved
    teacher.model.to(dist.local_device())
    quiet = not dist.is_main()
    remove = head_directions(teacher.model, config.head_filter)
    with torch.autocast(teacher.device.type, dtype=torch.bfloat16,
                        enabled=resolve_precision(config.precision, teacher.device.type) == "bf16"):
        return _teacher_pass(teacher, texts, background_texts, config, cache, fingerprint, quiet, remove, label)


def _teacher_pass(teacher, texts, background_texts, config, cache, fingerprint, quiet, remove, label):
    # this rank's blocks of texts, each one teacher batch; the teacher's forward pass shows one bar over them
    from .. import distributed as dist
    from ..files import atomic_torch_save
    from .data_driven import target_block

    block = target_block(config)
    logit_sum = mean_teacher_logits(teacher, background_texts, block, show_progress=not quiet, remove=remove,
                                    blocks=dist.block_ranges(len(background_texts), block), label=label)
    background = background_distribution(dist.all_reduce_sum(logit_sum), len(background_texts))
    targets, kept_mass = teacher_targets(teacher, texts, background, config.tau, block, config.target_max_k,
                                         config.target_min_mass, show_progress=not quiet, remove=remove,
                                         blocks=dist.block_ranges(len(texts), block), label=label)
    targets = dist.gather_lists(targets)
    kept_mass = min(dist.gather_lists([kept_mass]))
    background = background.cpu()
    log.info("%s: %d teacher targets, smallest mass kept %.6f", label, len(targets), kept_mass)
    payload = {"tokenizer": fingerprint, "texts": len(texts), "tau": config.tau, "head_filter": config.head_filter,
               "background": background,
               "targets": targets, "kept_mass": kept_mass}
    dist.on_main(atomic_torch_save, cache, payload)
    return targets, background
