"""What a person reads: progress lines, the Markdown table, and the summary of invocations.

Owns the text only (same columns as always: objstore median, reference median, ratio,
target, met). Pure: takes rows and results, returns strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .config import SERVERS
from .results import Row, RunResult, fmt, rows_by_metric

__all__ = ["brief", "fmt", "progress_line", "render_summary", "render_table"]


def _met(row: Row) -> str:
    if row.target is None:
        return ""
    return "n/a" if row.met is None else ("yes" if row.met else "NO")


def render_table(rows: Sequence[Row], rounds: int) -> str:
    """The Markdown table of one invocation."""
    head = [
        "Metric",
        f"objstore (median of {rounds})",
        f"reference (median of {rounds})",
        "objstore / reference",
        "Target",
        "Met",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for row in rows:
        cells = []
        for server, value in zip(SERVERS, (row.objstore, row.reference), strict=True):
            text = fmt(value)
            failed = row.errors.get(server, 0)
            if failed:
                text += f" ({failed} failed)" if value is not None else " (failed)"
            cells.append(text)
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        target = row.target or ""
        lines.append(
            f"| {row.metric} | {cells[0]} | {cells[1]} | {ratio} | {target} | {_met(row)} |"
        )
    return "\n".join(lines)


def render_summary(invocations: Sequence[Sequence[Row]]) -> str:
    """Every metric with a target, its ratio (or objstore's value) in each invocation side by
    side, and whether the target held in every one."""
    n = len(invocations)
    head = ["Metric", "Target", *(f"#{i + 1}" for i in range(n)), f"Held {n} times in a row"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for label, rows in rows_by_metric(invocations).items():
        first = next(r for r in rows if r is not None)
        if first.target is None:
            continue
        cells = []
        for row in rows:
            if row is None:
                cells.append("missing")
                continue
            if not first.target.startswith("ratio"):
                shown = fmt(row.objstore)
            else:
                shown = "n/a" if row.ratio is None else f"{row.ratio:.2f}"
            cells.append(f"{shown} ({_met(row)})")
        held = all(row is not None and row.met for row in rows)
        lines.append(
            f"| {label} | {first.target} | {' | '.join(cells)} | {'yes' if held else 'NO'} |"
        )
    return "\n".join(lines)


def brief(result: Mapping[str, Any]) -> str:
    """A run's values in one line: the first eight scalars, and the server's logged errors."""
    if "error" in result:
        return "ERROR " + str(result["error"])[:500]
    keys = [
        k
        for k in result
        if not isinstance(result[k], (dict, list)) and not k.endswith("server_log_last_error")
    ]
    text = ", ".join(f"{k}={fmt(result[k])}" for k in keys[:8])
    if result.get("server_log_errors"):
        text += (
            f"; server logged {result['server_log_errors']} error line(s), "
            f"last: {result['server_log_last_error']}"
        )
    return text


def progress_line(elapsed: float, result: RunResult) -> str:
    """The line printed to stderr after each run."""
    values = result.values if result.error is None else {"error": result.error}
    return (
        f"[{elapsed:6.0f} s] {result.scenario} round {result.round} "
        f"{result.server}: {brief(values)}"
    )
