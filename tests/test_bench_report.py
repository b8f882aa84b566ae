"""The pure parts of the benchmarks (benchmarks/objbench): summaries, verdicts, tables, wrk."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from objbench.procs import BenchError
from objbench.report import render_summary, render_table
from objbench.results import (
    Metric,
    RunResult,
    build_rows,
    fmt,
    ratio_of,
    summarize,
    target_text,
    verdict,
)
from objbench.wrk import parse_wrk

# Captured from `wrk -t1 -c10 -d1s --latency http://127.0.0.1:P/get/k` against objstore.
WRK_LATENCY = """\
Running 1s test @ http://127.0.0.1:37969/get/k
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.31ms    1.40ms   8.12ms   84.67%
    Req/Sec    10.12k     1.76k   14.19k    90.00%
  Latency Distribution
     50%  686.00us
     75%    1.88ms
     90%    3.35ms
     99%    6.23ms
  10155 requests in 1.01s, 1.13MB read
Requests/sec:  10077.20
Transfer/sec:      1.12MB
"""

# Captured from `wrk -t1 -c10 -d1s http://127.0.0.1:P/nothing` (404s, no --latency).
WRK_NON_2XX = """\
Running 1s test @ http://127.0.0.1:37969/nothing
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms    1.30ms   7.85ms   84.27%
    Req/Sec    11.35k     1.24k   12.94k    54.55%
  12416 requests in 1.10s, 3.07MB read
  Non-2xx or 3xx responses: 12416
Requests/sec:  11287.63
Transfer/sec:      2.79MB
"""

RPS = Metric("rps", "requests per second", "ratio>=", 1.0)
CPU = Metric("cpu", "CPU µs per request", "ratio<=", 0.8)
OK = Metric("ok", "every answer right", "==", True)
NOTE = Metric("note", "for scale")


def run(scenario: str, server: str, rnd: int, **values: object) -> RunResult:
    return RunResult(scenario, server, rnd, dict(values))


def test_summarize_takes_the_median_of_numbers() -> None:
    """Numbers are summarized by their median."""
    assert summarize([3, 1, 2]) == 2


def test_summarize_takes_all_of_booleans() -> None:
    """Booleans are summarized by all()."""
    assert summarize([True, False, True]) is False


def test_summarize_joins_distinct_texts() -> None:
    """Texts are summarized by their distinct values, in order."""
    assert summarize(["0", "signal 15", "0"]) == "0, signal 15"


def test_summarize_skips_missing_and_nan() -> None:
    """None and NaN are left out; nothing left gives None."""
    assert summarize([None, math.nan, 4.0]) == 4.0
    assert summarize([None, math.nan]) is None


def test_ratio_is_none_without_a_reference() -> None:
    """The ratio needs two numbers and a reference that is not 0."""
    assert ratio_of(3.0, 2.0) == 1.5
    assert ratio_of(3.0, 0) is None
    assert ratio_of(True, 1.0) is None


def test_verdict_of_a_ratio_at_least() -> None:
    """A "ratio>=" target holds at the bound and fails below it."""
    assert verdict(RPS, 100, 1.0) is True
    assert verdict(RPS, 99, 0.99) is False


def test_verdict_of_a_ratio_at_most() -> None:
    """A "ratio<=" target holds at the bound and fails above it."""
    assert verdict(CPU, 8, 0.8) is True
    assert verdict(CPU, 9, 0.9) is False


def test_verdict_of_an_absolute_bound() -> None:
    """A "<" target compares objstore's own value, strictly."""
    startup = Metric("seconds", "start-up, s", "<", 1.0)
    assert verdict(startup, 0.99, None) is True
    assert verdict(startup, 1.0, None) is False


def test_verdict_is_none_without_target_or_ratio() -> None:
    """No target, or no ratio to judge, gives no verdict."""
    assert verdict(NOTE, 5, 1.0) is None
    assert verdict(RPS, 5, None) is None


def test_target_texts() -> None:
    """Targets read as the table has always shown them."""
    assert target_text(CPU) == "ratio <= 0.8"
    assert target_text(RPS) == "ratio >= 1.00"
    assert target_text(Metric("s", "s", "<", 1.0)) == "< 1.00"
    assert target_text(OK) == "yes"
    assert target_text(NOTE) is None


def test_fmt_of_each_kind() -> None:
    """Values are shown with thousands separators, two or three digits, yes/no, n/a."""
    assert [fmt(v) for v in (None, True, 12345, 1234.5, 12.34, 1.234, 0.1234, 0.001234)] == [
        "n/a",
        "yes",
        "12,345",
        "1,234",
        "12.3",
        "1.23",
        "0.123",
        "0.0012",
    ]


def test_rows_take_medians_ratio_and_verdict() -> None:
    """A row holds each server's median over rounds, their ratio and the verdict."""
    results = [
        run("http", "objstore", 1, rps=100.0),
        run("http", "objstore", 2, rps=300.0),
        run("http", "objstore", 3, rps=200.0),
        run("http", "reference", 1, rps=100.0),
    ]
    (row,) = build_rows([("http", [RPS])], results)
    assert (row.metric, row.objstore, row.reference, row.ratio, row.target, row.met) == (
        "http: requests per second",
        200.0,
        100.0,
        2.0,
        "ratio >= 1.00",
        True,
    )


def test_rows_of_scenarios_that_did_not_run_are_left_out() -> None:
    """Only the scenarios with results make rows."""
    rows = build_rows([("http", [RPS]), ("sse", [NOTE])], [run("http", "objstore", 1, rps=1.0)])
    assert [r.scenario for r in rows] == ["http"]


def test_a_failed_objstore_run_fails_its_targets() -> None:
    """With no objstore value and a failed run, a target row is not met."""
    failed = RunResult("http", "objstore", 1, error="wrk failed")
    rows = build_rows([("http", [RPS, NOTE])], [failed, run("http", "reference", 1, rps=5.0)])
    assert [(r.met, r.errors) for r in rows] == [
        (False, {"objstore": 1, "reference": 0}),
        (None, {"objstore": 1, "reference": 0}),
    ]


def test_reference_from_another_scenario() -> None:
    """A metric may compare with another scenario's reference median of the same invocation."""
    acked = Metric("ws", "acked / persist", "ratio>=", 1.5, reference_from=("persist", "sets"))
    results = [
        run("acked", "objstore", 1, ws=30_000),
        run("acked", "reference", 1, ws=None),
        run("persist", "reference", 1, sets=15_000),
    ]
    (row,) = build_rows([("acked", [acked])], results)
    assert (row.objstore, row.reference, row.ratio, row.met) == (30_000, 15_000, 2.0, True)


def test_reference_from_a_scenario_that_did_not_run_leaves_the_row_out() -> None:
    """Without the other scenario in the invocation, that row is not shown."""
    acked = Metric("ws", "acked / persist", "ratio>=", 1.5, reference_from=("persist", "sets"))
    assert build_rows([("acked", [acked])], [run("acked", "objstore", 1, ws=1)]) == []


def test_render_table() -> None:
    """The Markdown table: medians, failures, ratio, target and verdict per row."""
    results = [
        run("http", "objstore", 1, rps=50.0, cpu=4.0, ok=True),
        run("http", "reference", 1, rps=100.0, cpu=8.0, ok=True),
        RunResult("http", "reference", 2, error="wrk failed"),
    ]
    rows = build_rows([("http", [RPS, CPU, OK])], results)
    assert render_table(rows, 1).splitlines() == [
        "| Metric | objstore (median of 1) | reference (median of 1) "
        "| objstore / reference | Target | Met |",
        "| --- | --- | --- | --- | --- | --- |",
        "| http: requests per second | 50.0 | 100 (1 failed) | 0.50 | ratio >= 1.00 | NO |",
        "| http: CPU µs per request | 4.00 | 8.00 (1 failed) | 0.50 | ratio <= 0.8 | yes |",
        "| http: every answer right | yes | yes (1 failed) |  | yes | yes |",
    ]


def test_render_summary_of_consecutive_invocations() -> None:
    """The summary shows each invocation's ratio and whether the target held every time."""
    first = build_rows(
        [("http", [RPS, NOTE])],
        [run("http", "objstore", 1, rps=120.0), run("http", "reference", 1, rps=100.0)],
    )
    second = build_rows(
        [("http", [RPS, NOTE])],
        [run("http", "objstore", 1, rps=90.0), run("http", "reference", 1, rps=100.0)],
    )
    assert render_summary([first, second]).splitlines() == [
        "| Metric | Target | #1 | #2 | Held 2 times in a row |",
        "| --- | --- | --- | --- | --- |",
        "| http: requests per second | ratio >= 1.00 | 1.20 (yes) | 0.90 (NO) | NO |",
    ]


def test_run_result_json_holds_values_round_and_error() -> None:
    """The raw record keeps the values, the round, the wall time and the error."""
    result = RunResult("http", "objstore", 2, {"rps": 1.0}, error="boom", wall_s=3.5)
    assert result.to_json() == {"rps": 1.0, "error": "boom", "wall_s": 3.5, "round": 2}


def test_parse_wrk_with_latency() -> None:
    """Requests/s, the total and the p50/p99 (in ms) are read from wrk --latency."""
    report = parse_wrk(WRK_LATENCY)
    assert (
        report.requests_per_s,
        report.requests,
        report.non_2xx,
        report.socket_errors,
        report.p50_ms,
        report.p99_ms,
    ) == (10077.2, 10155, 0, {}, 0.686, 6.23)


def test_parse_wrk_counts_non_2xx() -> None:
    """Non-2xx answers are counted; without --latency there are no percentiles."""
    report = parse_wrk(WRK_NON_2XX)
    assert (report.requests, report.non_2xx, report.p50_ms, report.p99_ms) == (
        12416,
        12416,
        None,
        None,
    )


def test_parse_wrk_reads_socket_errors() -> None:
    """The socket error line is read into its four counts."""
    text = WRK_NON_2XX.replace(
        "  Non-2xx", "  Socket errors: connect 0, read 3, write 1, timeout 7\n  Non-2xx"
    )
    assert parse_wrk(text).socket_errors == {"connect": 0, "read": 3, "write": 1, "timeout": 7}


def test_parse_wrk_without_figures_is_an_error() -> None:
    """Output without a request rate raises BenchError naming what wrk printed."""
    with pytest.raises(BenchError, match="unable to connect"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_every_objbench_module_declares_its_surface() -> None:
    """Each module of the package has __all__, and each listed name is defined."""
    import importlib
    import pkgutil

    import objbench

    names = [i.name for i in pkgutil.walk_packages(objbench.__path__, "objbench.")]
    assert len(names) >= 13
    for name in names:
        module = importlib.import_module(name)
        assert all(hasattr(module, n) for n in module.__all__), name
