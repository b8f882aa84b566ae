"""New WebSocket connections: opened as fast as the client can (connect), and all closed and
reopened at once (reconnect), each subscribing to one of 100 keys until it has the value.

Both servers send a key's current value in answer to a subscribe (the original's README
and objstore's), so a connection is done at that first message; the load generator can add
a get after the subscribe (--get 1) for a server that would not.
"""

from __future__ import annotations

from typing import Any

from ..drivers import between, log_fields, main_between, measure_marks, per_op_us
from ..results import Metric
from .base import Ctx, scenario

__all__ = ["connect"]


def _metrics(what: str) -> list[Metric]:
    return [
        Metric(
            "connections_per_s",
            f"{what} per second, first connect to last value",
            "ratio>=",
            1.0,
        ),
        Metric("cpu_us_per_connection", "server CPU µs per connection (schedstat)"),
        Metric("main_us_per_connection", "the same, the server's main thread alone"),
        Metric("p50_ms", "connect to value, p50, ms"),
        Metric("p99_ms", "connect to value, p99, ms"),
        Metric("all_connected", "every connection got its value", "==", True),
    ]


@scenario(
    "connect",
    full={"connections": 10_000, "keys": 100, "inflight": 256},
    quick={"connections": 2_000, "keys": 100, "inflight": 256},
    metrics=_metrics("new connections (256 handshakes in flight)"),
)
@scenario(
    "reconnect",
    full={"connections": 10_000, "keys": 100, "inflight": 256},
    quick={"connections": 2_000, "keys": 100, "inflight": 256},
    metrics=_metrics("connections of the storm (all closed, all reopened at once)"),
)
def connect(ctx: Ctx) -> dict[str, Any]:
    """Keys c-0..c-99 set with POST /set; then the measured wave of new connections."""
    n = ctx.size["connections"]
    with ctx.server() as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        gen = ctx.loadgen("connect", {"url": url, **ctx.size, "mode": ctx.name})
        result, marks = measure_marks(server, gen, timeout=600)
        errors = server.log_errors()
    cpu = between(marks, "wave")
    main = main_between(marks, "wave")
    done = result["done"]
    return {
        "connections_per_s": result["connections_per_s"],
        "cpu_us_per_connection": per_op_us(cpu, n),
        "main_us_per_connection": None if main is None else per_op_us(main, n),
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "all_connected": done == n,
        "done": done,
        "failed": result["failed"],
        "first_error": result["first_error"],
        "elapsed_s": result["elapsed"],
        "cpu_s": cpu,
        "loadgen": result,
        **log_fields(errors),
    }
