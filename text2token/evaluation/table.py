"""The results table, in the style of the MTEB leaderboard: a row per model, scores x 100.

Columns: the model, the mean over tasks, the mean over task types (each type's mean counted
once), each task type's mean, then every task grouped by type. A mean is left blank when one of
its tasks has no score. Tasks cut down for speed are marked with a dagger, tasks whose data
differs from MTEB's version with an asterisk; both are explained under the table. When the
results hold published rows (``--compare``), a "Scores" column says which rows are published MTEB
scores and which were computed here, and a note names the results folder they come from.
"""

from __future__ import annotations

from typing import Any

TYPE_ORDER = ("BitextMining", "Classification", "Clustering", "PairClassification", "Reranking",
              "Retrieval", "STS", "Summarization")
CUT_MARK = "†"
PUBLISHED = "published"  # the values of a model's "source" (see text2token.evaluation.published)
COMPUTED = "computed here"
UNFAITHFUL_MARK = "*"


def format_table(results: dict[str, Any]) -> str:
    """A Markdown table of ``results`` (the dict returned by :func:`~text2token.evaluation.evaluate`)."""
    tasks = sorted(results["tasks"], key=lambda t: (_type_rank(t["type"]), t["type"]))
    types = list(dict.fromkeys(t["type"] for t in tasks))
    scores = {(r["model"], r["task"]): r["main_score"] for r in results["results"]}

    published = [m for m in results["models"] if m.get("source") == PUBLISHED]
    lead = ["Model", "Scores"] if published else ["Model"]
    header = [*lead, "Mean (Task)", "Mean (TaskType)", *types, *(_task_header(t) for t in tasks)]
    rows = []
    for model in results["models"]:
        label = model["label"]
        per_task = [scores.get((label, t["name"])) for t in tasks]
        per_type = [_mean([s for s, t in zip(per_task, tasks, strict=True) if t["type"] == kind]) for kind in types]
        source = [PUBLISHED if model.get("source") == PUBLISHED else COMPUTED] if published else []
        rows.append([label, *source, _mean(per_task), _mean(per_type), *per_type, *per_task])

    body = [[*row[:len(lead)], *(_fmt(v) for v in row[len(lead):])] for row in rows]
    widths = [max(len(cells[i]) for cells in (header, *body)) for i in range(len(header))]
    rule = [*("-" * widths[i] for i in range(len(lead))), *("-" * (w - 1) + ":" for w in widths[len(lead):])]
    lines = [_row(cells, widths, len(lead)) for cells in (header, rule, *body)]
    return "\n".join(lines + _footnotes(tasks, published))


def _task_header(task: dict[str, Any]) -> str:
    marks = (CUT_MARK if task.get("cut") else "") + (UNFAITHFUL_MARK if task.get("faithful") is False else "")
    return task["name"] + marks


def _footnotes(tasks: list[dict[str, Any]], published: list[dict[str, Any]] = ()) -> list[str]:
    notes = []
    if published:
        sources = "; ".join(f"{m['model']} at revision {m.get('revision') or '(none)'}" for m in published)
        folders = ", ".join(dict.fromkeys(str(m.get("results_dir")) for m in published))
        notes.append(f"{PUBLISHED}: MTEB scores read from {folders} ({sources}), same splits and subsets as the "
                     f"scores {COMPUTED}; {COMPUTED}: this evaluation")
    cut = [f"{t['name']} ({', '.join(f'{k}={v}' for k, v in t['cut'].items() if k != 'seed')})"
           for t in tasks if t.get("cut")]
    if cut:
        notes.append(f"{CUT_MARK} cut down for speed, not comparable to full-task scores: {'; '.join(cut)}")
    unfaithful = [t["name"] for t in tasks if t.get("faithful") is False]
    if unfaithful:
        notes.append(f"{UNFAITHFUL_MARK} local data differs from MTEB's version of the task: {', '.join(unfaithful)}")
    return ["", *notes] if notes else []


def _type_rank(kind: str) -> int:
    return TYPE_ORDER.index(kind) if kind in TYPE_ORDER else len(TYPE_ORDER)


def _mean(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _row(cells: list[str], widths: list[int], left: int = 1) -> str:
    padded = [*(c.ljust(w) for c, w in zip(cells[:left], widths[:left], strict=True)),
              *(c.rjust(w) for c, w in zip(cells[left:], widths[left:], strict=True))]
    return "| " + " | ".join(padded) + " |"
