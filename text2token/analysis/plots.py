"""PNG plots of an analysis, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_hit_at_k(alignment: dict[str, dict[str, Any]], path: Path) -> Path:
    """hit@k against k, one line per model (``alignment``: label -> token_alignment result)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, result in alignment.items():
        ks = [int(k) for k in result["hit_at_k"]]
        ax.plot(ks, [result["hit_at_k"][str(k)] for k in ks], marker="o", label=label)
    ax.set_xscale("log")
    ks = sorted({int(k) for r in alignment.values() for k in r["hit_at_k"]})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k (top-k decoded tokens)")
    ax.set_ylabel("hit@k (share of top-k in the text)")
    ax.set_title("Token alignment: hit@k by model (1 − hit@k = derived share)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_drift(drift: dict[str, Any], title: str, path: Path) -> Path:
    """Drift per principal direction by checkpoint, and hit@k / top-k overlap next to it."""
    plt = _pyplot()
    points = drift["points"]
    labels = [p["label"] for p in points]
    x = list(range(len(points)))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for j in range(drift["components"]):
        share = drift["explained_variance"][j]
        axes[0].plot(x, [p["shift"][j] for p in points], marker=".", label=f"PC{j + 1} ({share:.0%})")
        axes[1].plot(x, [p["abs_shift"][j] for p in points], marker=".", label=f"PC{j + 1}")
    axes[0].set_title("mean shift along PC / σ (signed)")
    axes[1].set_title("mean |shift| along PC / σ")
    axes[0].axhline(0, color="grey", lw=0.8)
    k = drift["top_k"]
    axes[2].plot(x, [p["hit_at_k"] for p in points], marker="o", label=f"hit@{k}")
    axes[2].plot(x, [p["top_k_overlap"] for p in points], marker="s", label=f"top-{k} overlap with base")
    axes[2].plot(x, [p["outside"] for p in points], marker="^", label="displacement outside the PCs")
    axes[2].set_ylim(0, 1.02)
    axes[2].set_title("decoded tokens and displacement")
    for ax in axes:
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
        ax.set_xlabel("checkpoint")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    axes[2].legend(fontsize=7)
    fig.suptitle(f"Representation drift: {title}", fontsize=10)
    return _save(fig, path)


def plot_losses(losses: dict[str, list[tuple[int, float]]], title: str, path: Path) -> Path:
    """Training loss against step, one panel per stage."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(losses), figsize=(5.5 * len(losses), 3.8), squeeze=False)
    for ax, (stage, series) in zip(axes[0], losses.items()):
        ax.plot([s for s, _ in series], [v for _, v in series], marker="." if len(series) < 50 else None)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Training loss: {title}", fontsize=10)
    return _save(fig, path)
