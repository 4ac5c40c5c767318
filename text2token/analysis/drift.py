"""Representation drift of a run along the base model's principal directions (METHOD.md, "Analysis").

Definitions:

- E_0: the base model's embeddings e(x) of a sample of texts (the run's backbone with the run's
  pooling, attention, max length and prompt, no adapter); μ its mean over the sample.
- Principal directions v_1..v_m: the top right singular vectors of E_0 − μ (PCA), each signed so
  that its largest-magnitude coordinate is positive; σ_j = the standard deviation of the base
  coordinates (E_0 − μ)·v_j, and ``explained_variance`` the share of the total variance along v_j.
- A checkpoint's embeddings E_c: the backbone with the adapters of the earlier stages merged (their
  finished ``stageN/adapter``) and the checkpoint's own adapter merged on top (``model.apply_adapters``).
- Coordinates P_c = (E_c − μ)·v_j, measured in the *base* frame (same μ and v_j for every checkpoint).
  Drift along v_j:
    ``shift`` = mean over texts of (P_c − P_0) / σ_j  (signed: where the cloud moves), and
    ``abs_shift`` = mean over texts of |P_c − P_0| / σ_j  (how far texts move, either way).
  ``outside`` = the share of the squared displacement ‖E_c − E_0‖² (summed over texts) that lies
  outside the span of v_1..v_m; ``relative_displacement`` = mean ‖E_c − E_0‖ / mean ‖E_0 − μ‖.
- Next to it, how the decoded top tokens change: ``hit_at_k`` (see :mod:`.tokens`) at each
  checkpoint, ``top_k_overlap`` = mean |top-k_c(x) ∩ top-k_0(x)| / k, and the top tokens of a few
  probe texts.

The base model is the first point (step 0, all drifts 0). Checkpoints come in stage order, then by step.
"""

from __future__ import annotations

import copy
import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunFolderError
from ..model import Text2TokenModel, apply_adapters
from ..runfolder import ADAPTER_FILES, RUN_CONFIG, STAGE_DIRS, RunFolder, is_run_folder  # noqa: F401 (re-exported)
from .errors import AnalysisError
from .tokens import TextTokens, top_token_ids


@dataclass(frozen=True)
class Checkpoint:
    """One saved adapter of a run: its stage, step and the adapters to merge before it."""

    stage: str          # "data", "model", or another stage name of the run
    folder: str         # stage folder name, e.g. "stage1"
    step: int
    path: Path
    prior: tuple[Path, ...] = field(default=())

    @property
    def label(self) -> str:
        return f"{self.folder}-{self.step}"


def _stage_dirs() -> dict[str, str]:
    return dict(STAGE_DIRS)


def list_checkpoints(run) -> list[Checkpoint]:
    """Every complete checkpoint of a finished run, in stage order then by step.

    A stage's checkpoint is applied on top of the finished adapters of the stages before it
    (the run's ``adapters`` list). A checkpoint that was not completely written (no completion
    marker, see ``runfolder.is_complete``) or lacks an adapter file is skipped.
    """
    folder = RunFolder(run)
    info = folder.read_record()
    stages = list(info.get("stages") or [])
    adapters = folder.adapters(info)
    out = []
    for index, stage in enumerate(stages):
        name = folder.stage_folder_name(stage)
        found = [(step, path) for step, path in folder.checkpoints(stage)
                 if all((path / f).is_file() for f in ADAPTER_FILES)]
        prior = tuple(adapters[:index])
        if found and len(prior) < index:
            raise RunFolderError(f"{folder.path}: the checkpoints of {name} need the finished adapters of the stages "
                                 f"before it, but {RUN_CONFIG} lists only {len(adapters)}")
        out.extend(Checkpoint(stage, name, step, path, prior) for step, path in sorted(found))
    return out


def base_of_run(run, pooling=None, attention=None, max_length=None, dtype=None) -> Text2TokenModel:
    """The run's backbone with its pooling, attention, max length and prompt, no adapter."""
    return RunFolder(run).load_base(Text2TokenModel, pooling, attention, max_length, dtype, name=f"{run} (base)")


def principal_directions(embeddings: np.ndarray, components: int):
    """``(mean, directions [m, d], sigma [m], explained_variance [m])`` of the rows of ``embeddings``."""
    n = embeddings.shape[0]
    if n < 2:
        raise AnalysisError("principal directions need at least 2 texts")
    x = embeddings.astype(np.float64)
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    m = max(1, min(components, len(s), n - 1))
    directions = vt[:m]
    # deterministic sign: the largest-magnitude coordinate of each direction is positive
    signs = np.sign(directions[np.arange(m), np.abs(directions).argmax(1)])
    directions = directions * np.where(signs == 0, 1.0, signs)[:, None]
    total = float((s ** 2).sum())
    sigma = s[:m] / np.sqrt(n - 1)
    explained = (s[:m] ** 2) / total if total > 0 else np.zeros(m)
    return mean, directions, sigma, explained


def drift_measures(base: np.ndarray, other: np.ndarray, mean: np.ndarray, directions: np.ndarray,
                   sigma: np.ndarray) -> dict[str, Any]:
    """Drift of ``other`` from ``base`` (same texts, same order) in the base frame (see the module docstring)."""
    base = base.astype(np.float64)
    other = other.astype(np.float64)
    delta = other - base
    coords = delta @ directions.T  # (P_c - P_0), the mean cancels
    safe = np.where(sigma > 0, sigma, 1.0)
    squared = float((delta ** 2).sum())
    inside = float((coords ** 2).sum())
    spread = float(np.linalg.norm(base - mean, axis=1).mean())
    return {
        "shift": (coords.mean(0) / safe).tolist(),
        "abs_shift": (np.abs(coords).mean(0) / safe).tolist(),
        "outside": max(0.0, 1.0 - inside / squared) if squared > 0 else 0.0,
        "relative_displacement": float(np.linalg.norm(delta, axis=1).mean() / spread) if spread > 0 else 0.0,
    }


def _token_view(model, texts, k, batch_size, rules, probe):
    ids, probs = top_token_ids(model, texts, k, batch_size, show_progress=False)
    marks = rules.marks_matrix(texts, ids)
    tokens = [[rules.decode(t) for t in ids[i, :5]] for i in range(min(probe, len(texts)))]
    return ids, marks, tokens


def representation_drift(run, texts: list[str], components: int = 8, top_k: int = 10, batch_size: int = 32,
                         probe: int = 3, pooling=None, attention=None, max_length=None,
                         show_progress: bool = True) -> dict[str, Any]:
    """Drift of a run's checkpoints along the base model's principal directions.

    Returns ``{"status": "ok", "components", "explained_variance", "sigma", "points": [...]}``, or
    ``{"status": "skipped", "note": ...}`` when the run has no checkpoints or the sample is too small.
    Each point: ``label, stage, step, shift, abs_shift, outside, relative_displacement, hit_at_k,
    top_k_overlap, probe_tokens`` (the base model is the first point).
    """
    from tqdm.auto import tqdm

    run = Path(run)
    if not is_run_folder(run):
        return {"status": "skipped", "note": f"{run} is not a run folder: no checkpoints, drift skipped"}
    checkpoints = list_checkpoints(run)
    if not checkpoints:
        return {"status": "skipped", "note": f"{run} has no checkpoints (stageN/checkpoints/checkpoint-N): "
                                             "drift skipped"}
    if len(texts) < 2:
        return {"status": "skipped", "note": "drift needs at least 2 texts in the sample: skipped"}

    base_model = base_of_run(run, pooling, attention, max_length)
    rules = TextTokens(base_model.tokenizer)
    make = dict(tokenizer=base_model.tokenizer, pooling=base_model.pooling, attention=base_model.attention,
                max_length=base_model.max_length, prompt=base_model.prompt)
    base = base_model.encode(texts, batch_size=batch_size, show_progress=False)
    mean, directions, sigma, explained = principal_directions(base, components)
    base_ids, base_marks, base_tokens = _token_view(base_model, texts, top_k, batch_size, rules, probe)
    k = base_ids.shape[1]

    def point(label, stage, step, embeddings, ids, marks, tokens):
        return {"label": label, "stage": stage, "step": step,
                **drift_measures(base, embeddings, mean, directions, sigma),
                "hit_at_k": float(marks.mean()),
                "top_k_overlap": float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, base_ids)])),
                "probe_tokens": tokens}

    points = [point("base", None, 0, base, base_ids, base_marks, base_tokens)]
    priors: dict[tuple[Path, ...], Any] = {(): base_model.model}
    for ckpt in tqdm(checkpoints, desc="checkpoints", unit="ckpt", disable=not show_progress):
        if ckpt.prior not in priors:
            priors[ckpt.prior] = apply_adapters(copy.deepcopy(base_model.model), list(ckpt.prior))
        merged = apply_adapters(copy.deepcopy(priors[ckpt.prior]), [ckpt.path])
        merged.eval()
        model = Text2TokenModel(merged, name=ckpt.label, **make)
        embeddings = model.encode(texts, batch_size=batch_size, show_progress=False)
        ids, marks, tokens = _token_view(model, texts, top_k, batch_size, rules, probe)
        points.append(point(ckpt.label, ckpt.stage, ckpt.step, embeddings, ids, marks, tokens))
        del model, merged
        gc.collect()
    return {
        "status": "ok",
        "texts": len(texts),
        "components": int(directions.shape[0]),
        "explained_variance": explained.tolist(),
        "sigma": sigma.tolist(),
        "top_k": k,
        "probe_texts": texts[:probe],
        "points": points,
    }
