"""The one result type of a run, the metrics scenarios declare, and the rows of the table.

Owns RunResult (one scenario, one server, one round: its values or its error), Metric (a
field a scenario reports, its label and target), summarizing rounds (median, all(),
distinct texts), the ratio objstore/reference and whether a target is met. Pure: no
processes, no printing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .config import SERVERS

__all__ = [
    "Metric",
    "Row",
    "RunResult",
    "TargetKind",
    "build_rows",
    "fmt",
    "ratio_of",
    "rows_by_metric",
    "summarize",
    "target_text",
    "verdict",
]

#: "ratio<=" and "ratio>=" compare objstore/reference; "<" and "==" objstore's own median.
TargetKind = Literal["ratio<=", "ratio>=", "<", "=="]


@dataclass(frozen=True)
class Metric:
    """One row of the table: a field of a scenario's values, and what it should be.

    With *reference_from* ("scenario", "field"), the reference column is that other
    scenario's reference median, when it ran in the same invocation (else the row is left out).
    """

    field: str
    label: str
    kind: TargetKind | None = None
    target: float | bool | None = None
    reference_from: tuple[str, str] | None = None


@dataclass
class RunResult:
    """One run of one scenario against one server: its values, or the error that stopped it."""

    scenario: str
    server: str
    round: int
    values: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The raw record of the JSON file: the values, the round, and the error if any."""
        out = dict(self.values)
        if self.error is not None:
            out["error"] = self.error
        out["wall_s"] = self.wall_s
        out["round"] = self.round
        return out


@dataclass(frozen=True)
class Row:
    """One line of the table: both medians, their ratio, the target and its verdict."""

    scenario: str
    metric: str
    objstore: Any
    reference: Any
    ratio: float | None
    target: str | None
    met: bool | None
    errors: dict[str, int]


def fmt(value: Any) -> str:
    """A value as the table shows it: n/a, yes/no, thousands separators, 2 or 3 digits."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 0.01:
            return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:.2f}"
        return f"{value:.2g}"
    return str(value)


def summarize(values: Iterable[Any]) -> Any:
    """Median of numbers, all() of booleans, distinct texts joined; None when no value."""
    kept = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not kept:
        return None
    if all(isinstance(v, bool) for v in kept):
        return all(kept)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in kept):
        return statistics.median(kept)
    return ", ".join(dict.fromkeys(str(v) for v in kept))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def ratio_of(objstore: Any, reference: Any) -> float | None:
    """objstore / reference when both are numbers and the reference is not 0."""
    if _number(objstore) and _number(reference) and reference:
        return float(objstore / reference)
    return None


def verdict(metric: Metric, objstore: Any, ratio: float | None) -> bool | None:
    """Whether the target holds; None when there is no target or nothing to judge."""
    kind, target = metric.kind, metric.target
    if kind is None or target is None:
        return None
    if kind == "ratio<=":
        return None if ratio is None else ratio <= target
    if kind == "ratio>=":
        return None if ratio is None else ratio >= target
    if kind == "<":
        return objstore < target if _number(objstore) else None
    return None if objstore is None else bool(objstore == target)


def target_text(metric: Metric) -> str | None:
    """The target as the table shows it: "ratio <= 1.5", "< 2", "yes"."""
    if metric.kind is None:
        return None
    if metric.kind == "==" and metric.target is True:
        return "yes"
    prefix = "ratio " if metric.kind.startswith("ratio") else ""
    return f"{prefix}{metric.kind.removeprefix('ratio')} {fmt(metric.target)}"


def build_rows(
    declared: Sequence[tuple[str, Sequence[Metric]]], results: Sequence[RunResult]
) -> list[Row]:
    """The table of one invocation: a row per declared metric of each scenario that ran."""
    by: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        by.setdefault((r.scenario, r.server), []).append(r)
    ran = {r.scenario for r in results}

    def median(scenario: str, server: str, name: str) -> tuple[Any, int]:
        runs = by.get((scenario, server), [])
        value = summarize(r.values.get(name) for r in runs if r.error is None)
        return value, sum(r.error is not None for r in runs)

    rows = []
    for scenario, metrics in declared:
        if scenario not in ran:
            continue
        for metric in metrics:
            o, o_errors = median(scenario, "objstore", metric.field)
            if metric.reference_from is None:
                ref, ref_errors = median(scenario, "reference", metric.field)
            elif metric.reference_from[0] in ran:
                other, name = metric.reference_from
                ref, ref_errors = median(other, "reference", name)
            else:
                continue
            ratio = ratio_of(o, ref)
            met = verdict(metric, o, ratio)
            if metric.kind is not None and o is None and o_errors:
                met = False
            rows.append(
                Row(
                    scenario=scenario,
                    metric=f"{scenario}: {metric.label}",
                    objstore=o,
                    reference=ref,
                    ratio=ratio,
                    target=target_text(metric),
                    met=met,
                    errors=dict(zip(SERVERS, (o_errors, ref_errors), strict=True)),
                )
            )
    return rows


def rows_by_metric(invocations: Sequence[Sequence[Row]]) -> Mapping[str, list[Row | None]]:
    """Each metric's row in every invocation (None where it was missing), in first-seen order."""
    out: dict[str, list[Row | None]] = {}
    for i, rows in enumerate(invocations):
        for row in rows:
            out.setdefault(row.metric, [None] * len(invocations))[i] = row
    return out
