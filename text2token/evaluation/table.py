"""The results table, in the style of the MTEB leaderboard: a row per model, scores x 100.

Columns: the model, the mean over tasks, the mean over task types (each type's mean counted
once), each task type's mean, then every task grouped by type. A mean is left blank when one of
its tasks has no score. Tasks cut down for speed are marked with a dagger, tasks whose data
differs from MTEB's version with an asterisk; both are explained under the table.
"""

from __future__ import annotations

from typing import Any

TYPE_ORDER = ("BitextMining", "Classification", "Clustering", "PairClassification", "Reranking",
              "Retrieval", "STS", "Summarization")
CUT_MARK = "†"
UNFAITHFUL_MARK = "*"


def format_table(results: dict[str, Any]) -> str:
    """A Markdown table of ``results`` (the dict returned by :func:`~text2token.evaluation.evaluate`)."""
    tasks = sorted(results["tasks"], key=lambda t: (_type_rank(t["type"]), t["type"]))
    types = list(dict.fromkeys(t["type"] for t in tasks))
    scores = {(r["model"], r["task"]): r["main_score"] for r in results["results"]}

    header = ["Model", "Mean (Task)", "Mean (TaskType)", *types, *(_task_header(t) for t in tasks)]
    rows = []
    for model in results["models"]:
        label = model["label"]
        per_task = [scores.get((label, t["name"])) for t in tasks]
        per_type = [_mean([s for s, t in zip(per_task, tasks, strict=True) if t["type"] == kind]) for kind in types]
        rows.append([label, _mean(per_task), _mean(per_type), *per_type, *per_task])

    body = [[row[0], *(_fmt(v) for v in row[1:])] for row in rows]
    widths = [max(len(cells[i]) for cells in (header, *body)) for i in range(len(header))]
    rule = ["-" * widths[0], *("-" * (w - 1) + ":" for w in widths[1:])]
    lines = [_row(cells, widths) for cells in (header, rule, *body)]
    return "\n".join(lines + _footnotes(tasks))


def _task_header(task: dict[str, Any]) -> str:
    marks = (CUT_MARK if task.get("cut") else "") + (UNFAITHFUL_MARK if task.get("faithful") is False else "")
    return task["name"] + marks


def _footnotes(tasks: list[dict[str, Any]]) -> list[str]:
    notes = []
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


def _row(cells: list[str], widths: list[int]) -> str:
    padded = [cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))]
    return "| " + " | ".join(padded) + " |"
