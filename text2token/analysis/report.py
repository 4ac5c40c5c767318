"""``analyze``: token alignment of several models over a sample of texts, the drift of each run's
checkpoints, its training loss curves; a JSON summary and PNG plots in one folder.

Files written to the output folder::

    summary.json            everything below, with the sample's size, seed and source
    hit_at_k.png            hit@k against k, one line per model
    drift_<model>.png       per run with checkpoints: drift per principal direction by checkpoint
    loss_<model>.png        per run: training loss of each stage (from stageN/log.jsonl)
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Any

from ..files import atomic_write_text
from .drift import is_run_folder, representation_drift
from .errors import AnalysisDataError, AnalysisError
from .tokens import DEFAULT_KS, check_ks, token_alignment

SUMMARY_FORMAT = "text2token-analysis/1"


def sample_texts(data, sample: int | None, seed: int = 0, field: str = "text") -> list[str]:
    """``sample`` texts drawn at random (seeded, kept in file order) from a text/JSONL file or a folder;
    all of them when ``sample`` is None or larger than the file. ``data`` may also be a list of texts."""
    from ..data import iter_texts

    if sample is not None and (not isinstance(sample, int) or sample < 1):
        raise AnalysisError(f"--sample must be a positive integer, got {sample!r}")
    if isinstance(data, (list, tuple)):
        texts = [str(t).strip() for t in data if t is not None and str(t).strip()]
        source = "the given texts"
    else:
        path = Path(data).expanduser()
        if not path.exists():
            raise AnalysisDataError(f"data file not found: {path}")
        texts = list(iter_texts([str(path)], field))
        source = str(path)
    if not texts:
        raise AnalysisDataError(f"empty sample: no usable text in {source} (blank lines and lines without "
                                f"the field {field!r} are skipped)")
    if sample is None or sample >= len(texts):
        return texts
    keep = sorted(random.Random(seed).sample(range(len(texts)), sample))
    return [texts[i] for i in keep]


def read_losses(run) -> dict[str, list[tuple[int, float]]]:
    """Loss by step of each stage of a run, from ``stageN/log.jsonl`` (the last record of a step wins,
    so a resumed run's repeated steps are counted once). Stages without a log are left out."""
    from ..runfolder import RunFolder

    folder = RunFolder(run)
    return folder.read_losses(folder.read_record().get("stages") or [])


def _slug(label: str, index: int, used: set[str]) -> str:
    name = Path(label.rstrip("/")).name or label
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or f"model{index}"
    if slug in used:
        slug = f"{slug}-{index}"
    used.add(slug)
    return slug


def analyze(models, data, sample: int | None = 200, output="analysis", ks=DEFAULT_KS, seed: int = 0,
            batch_size: int = 32, field: str = "text", components: int = 8, drift: bool = True,
            drift_k: int = 10, pooling: str | None = None, attention: str | None = None,
            max_length: int | None = None, adapter_scale: float | None = None, examples: int = 5,
            show_progress: bool = True) -> dict[str, Any]:
    """Analyse ``models`` (run folders, base LMs by name; ``None`` is the default backbone) on a sample
    of ``data``; write ``summary.json`` and the plots to ``output``; return the summary (with ``files``).

    Per model: token alignment (hit@k, derived@k; :mod:`.tokens`); per run folder, also the
    representation drift of its checkpoints (:mod:`.drift`; skipped with a note when there are none)
    and its loss curves. ``pooling``/``attention``/``max_length`` override every model's own, ``adapter_scale``
    every run folder's.
    """
    from tqdm.auto import tqdm

    from ..model import load
    from .plots import plot_drift, plot_hit_at_k, plot_losses

    ks = check_ks(ks)
    if not models:
        raise AnalysisError("no model to analyse")
    texts = sample_texts(data, sample, seed, field)
    out = Path(output).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AnalysisError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    started = time.time()
    summary: dict[str, Any] = {
        "format": SUMMARY_FORMAT,
        "data": str(data) if not isinstance(data, (list, tuple)) else None,
        "sample": {"texts": len(texts), "requested": sample, "seed": seed},
        "definitions": {
            "hit_at_k": "mean over texts of (top-k decoded tokens that are in the text) / k; a token is in "
                        "the text when its id, or its stripped lowercase decoded form, occurs among the text's "
                        "own tokens (tokenizer(text, add_special_tokens=False), specials excluded)",
            "derived_at_k": "1 - hit_at_k: share of top-k tokens not in the text",
            "drift": "per checkpoint, mean (shift) and mean absolute (abs_shift) change of the coordinates along "
                     "the base model's principal directions, in units of the base standard deviation",
        },
        "models": [],
        "notes": [],
        "files": {},
    }
    alignment: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for index, spec in enumerate(tqdm(list(models), desc="models", unit="model", disable=not show_progress)):
        label = str(spec) if spec is not None else "default backbone"
        slug = _slug(label, index, used)
        model = load(spec, pooling=pooling, attention=attention, max_length=max_length,
                     adapter_scale=adapter_scale if is_run_folder(spec) else None)
        result = token_alignment(model, texts, ks, batch_size, show_progress, examples)
        entry: dict[str, Any] = {"label": label, "pooling": model.pooling, "attention": model.attention,
                                 "run": is_run_folder(spec), "alignment": result}
        del model
        alignment[label] = result
        if entry["run"]:
            losses = read_losses(spec)
            entry["losses"] = {stage: [[s, v] for s, v in series] for stage, series in losses.items()}
            if losses:
                path = plot_losses(losses, label, out / f"loss_{slug}.png")
                summary["files"][f"loss {label}"] = str(path)
            else:
                summary["notes"].append(f"{label}: no training log (stageN/log.jsonl) to plot")
        else:
            summary["notes"].append(f"{label}: a base model, not a run folder: no checkpoints, drift and loss "
                                    "curves skipped")
        if drift and entry["run"]:
            result = representation_drift(spec, texts, components=components, top_k=drift_k, batch_size=batch_size,
                                          pooling=pooling, attention=attention, max_length=max_length,
                                          show_progress=show_progress)
            entry["drift"] = result
            if result["status"] == "ok":
                path = plot_drift(result, label, out / f"drift_{slug}.png")
                summary["files"][f"drift {label}"] = str(path)
            else:
                summary["notes"].append(f"{label}: {result['note']}")
        summary["models"].append(entry)
    summary["files"]["hit_at_k"] = str(plot_hit_at_k(alignment, out / "hit_at_k.png"))
    summary["files"]["summary"] = str(out / "summary.json")
    summary["seconds"] = round(time.time() - started, 1)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A short text report: hit@k per model, drift status, notes, and where the files are."""
    lines = [f"sample: {summary['sample']['texts']} texts (seed {summary['sample']['seed']})", ""]
    ks = [str(k) for k in summary["models"][0]["alignment"]["k"]] if summary["models"] else []
    head = ["model", *[f"hit@{k}" for k in ks], f"derived@{ks[-1]}" if ks else "derived"]
    rows = []
    for entry in summary["models"]:
        a = entry["alignment"]
        rows.append([entry["label"], *[f"{a['hit_at_k'][k]:.3f}" for k in ks],
                     f"{a['derived_at_k'][ks[-1]]:.3f}" if ks else ""])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))))
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    for entry in summary["models"]:
        d = entry.get("drift")
        if d and d["status"] == "ok":
            last = d["points"][-1]
            lines.append(f"drift {entry['label']}: {len(d['points']) - 1} checkpoints, {d['components']} directions; "
                         f"last ({last['label']}): mean |shift| PC1 {last['abs_shift'][0]:.3f} σ, "
                         f"top-{d['top_k']} overlap with base {last['top_k_overlap']:.2f}")
    lines += [f"note: {n}" for n in summary["notes"]]
    lines.append("")
    lines += [f"wrote {name}: {path}" for name, path in summary["files"].items()]
    return "\n".join(lines)
