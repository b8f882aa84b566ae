"""The original protocol's scenarios: fan-out, the game, persisted sets, idle connections,
start-up with many keys.

Each function runs one server through its scenario and returns its values; the sizes and
the metrics (with issue 14's targets) are declared with it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import suppress
from typing import Any

from ..drivers import log_fields, measure_phase, per_op_us
from ..procs import BenchError, rss_kib
from ..results import Metric
from ..servers import Server, describe_exit, get_many
from .base import Ctx, scenario

__all__ = ["fanout", "game", "idle", "persist", "startup"]


def _fanout_metrics() -> list[Metric]:
    return [
        # The phase lasts a fraction of a second: clock ticks (10 ms) are too coarse to
        # judge it, so the target is on schedstat's nanoseconds.
        Metric(
            "cpu_us_per_delivery_schedstat",
            "server CPU µs per delivery (schedstat, ns resolution)",
            "ratio<=",
            0.8,
        ),
        Metric("all_last", "every subscriber got the last value", "==", True),
        Metric("cpu_us_per_delivery", "the same from clock ticks (10 ms resolution)"),
    ]


@scenario(
    "fanout100",
    full={"subscribers": 100, "sets": 2000},
    quick={"subscribers": 100, "sets": 300},
    metrics=_fanout_metrics(),
)
@scenario(
    "fanout1000",
    full={"subscribers": 1000, "sets": 300},
    quick={"subscribers": 1000, "sets": 30},
    metrics=_fanout_metrics(),
)
def fanout(ctx: Ctx) -> dict[str, Any]:
    """N subscribers of one key, one publisher pipelining M sets of it."""
    n, m = ctx.size["subscribers"], ctx.size["sets"]
    with ctx.server() as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        gen = ctx.loadgen("fanout", {"url": url, "subscribers": n, "sets": m})
        result, t0, t1 = measure_phase(server, gen, timeout=300)
        cpu = t1 - t0
        errors = server.log_errors()
    sched = result.get("server_cpu_s_schedstat")
    return {
        "cpu_us_per_delivery": per_op_us(cpu, result["deliveries"]),
        "cpu_us_per_delivery_schedstat": None
        if sched is None
        else per_op_us(sched, result["deliveries"]),
        "all_last": bool(result["all_last"]),
        "deliveries": result["deliveries"],
        "expected": result["expected"],
        "deliveries_per_s": result["deliveries_per_s"],
        "elapsed_s": result["elapsed"],
        "cpu_s": cpu,
        "cpu_s_schedstat": sched,
        "loadgen_cpu_fraction": result.get("loadgen_cpu_fraction"),
        "loadgen": result,
        **log_fields(errors),
    }


@scenario(
    "game",
    full={"clients": 50, "keys": 50, "rate": 30, "seconds": 5},
    quick={"clients": 50, "keys": 50, "rate": 30, "seconds": 2},
    metrics=[
        Metric("p99_ms", "p99 latency, ms", "ratio<=", 1.0),
        Metric("cpu_us_per_delivery", "server CPU µs per delivery", "ratio<=", 1.0),
        Metric("all_delivered", "every update delivered", "==", True),
        Metric("delivered_fraction", "delivered / expected"),
        Metric("p50_ms", "p50 latency, ms"),
        Metric("max_ms", "max latency, ms"),
    ],
)
def game(ctx: Ctx) -> dict[str, Any]:
    """50 clients each setting its own key 30 times a second, all subscribed to every key."""
    with ctx.server() as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        gen = ctx.loadgen("game", {"url": url, **ctx.size})
        result, t0, t1 = measure_phase(server, gen, timeout=ctx.size["seconds"] + 120)
        cpu = t1 - t0
        errors = server.log_errors()
    return {
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "max_ms": result["max_ms"],
        "delivered_fraction": result["received"] / result["expected"]
        if result["expected"]
        else None,
        "all_delivered": bool(result["all_delivered"]),
        "cpu_us_per_delivery": per_op_us(cpu, result["received"]),
        "cpu_s": cpu,
        "cpu_s_schedstat": result.get("server_cpu_s_schedstat"),
        "loadgen_cpu_fraction": result.get("loadgen_cpu_fraction"),
        "loadgen": result,
        **log_fields(errors),
    }


@scenario(
    "persist",
    full={"connections": 8, "keys": 1000, "sets": 50_000},
    quick={"connections": 8, "keys": 1000, "sets": 10_000},
    metrics=[
        Metric("sets_per_s", "sets per second", "ratio>=", 3.0),
        Metric("restart_ok", "every key right after SIGTERM + restart", "==", True),
        Metric("cpu_us_per_set", "server CPU µs per set (writes included)"),
        Metric("exit", "exit status on SIGTERM"),
    ],
)
def persist(ctx: Ctx) -> dict[str, Any]:
    """Pipelined sets over 8 connections, then SIGTERM, a restart, and every key read back."""
    expect_file = ctx.work / "expect.json"
    server = Server(
        ctx.kind,
        ctx.work / "cache",
        ctx.opts,
        ctx.work / "server.log",
        extra_args=ctx.opts.objstore_args if ctx.objstore else (),
        companions=ctx.companions if ctx.objstore else (),
    )
    try:
        server.start()
        server.wait_ready()
        url = f"ws://127.0.0.1:{server.port}/ws"
        gen = ctx.loadgen("persist", {"url": url, **ctx.size, "expect": expect_file})
        result, t0, t1 = measure_phase(server, gen, timeout=600)
        # Writes may go on after the last reply (write-behind): count them too, by waiting
        # until the server's CPU time stops moving (bounded).
        settled = server.cpu()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.3)
            now = server.cpu()
            if now == settled:
                break
            settled = now
        cpu, cpu_settled = t1 - t0, settled - t0
        code = server.stop(signal.SIGTERM, timeout=60)
    finally:
        server.stop()
    errors = server.log_errors()
    expected: dict[str, Any] = json.loads(expect_file.read_text())
    with ctx.server(log="server-restart.log", ready_timeout=120) as again:
        found = get_many(again.port, list(expected))
    mismatches = [k for k, v in expected.items() if found.get(k) != v]
    return {
        "sets_per_s": result["sets_per_s"],
        "cpu_us_per_set": per_op_us(cpu_settled, result["sets"]),
        "cpu_us_per_set_to_last_reply": per_op_us(cpu, result["sets"]),
        "exit_code": code,
        "exit": describe_exit(code),
        "restart_ok": not mismatches,
        "mismatches": len(mismatches),
        "mismatch_examples": {k: found.get(k) for k in mismatches[:3]},
        "keys_checked": len(expected),
        "elapsed_s": result["elapsed"],
        "loadgen_cpu_fraction": result.get("loadgen_cpu_fraction"),
        "loadgen": result,
        **log_fields(errors),
    }


@scenario(
    "idle",
    full={"connections": 10_000},
    quick={"connections": 2_000},
    metrics=[
        Metric(
            "kib_per_connection", "server memory KiB per subscribed connection", "ratio<=", 1.5
        ),
        Metric("rss_before_kib", "server RSS before connections, KiB"),
    ],
)
def idle(ctx: Ctx) -> dict[str, Any]:
    """RSS before and after C connections, each subscribed to one of 100 keys."""
    n = ctx.size["connections"]
    with ctx.server() as server:
        time.sleep(0.5)
        before = rss_kib(server.pid)
        url = f"ws://127.0.0.1:{server.port}/ws"
        gen = ctx.loadgen("idle", {"url": url, "connections": n}, stdin=True)
        ready = False
        after = None
        final: dict[str, Any] | None = None
        try:
            for obj in gen.lines(timeout=300):
                if "ready" in obj:
                    ready = True
                    time.sleep(1.0)  # let the server settle (buffers, GC)
                    if not server.alive():
                        raise BenchError(f"{ctx.kind} died: {server.log_tail()}")
                    after = rss_kib(server.pid)
                    break
                if "error" in obj:
                    raise BenchError(
                        f"load generator: {obj['error']}; server: {server.log_tail(300)}"
                    )
            if gen.proc.stdin is not None:
                with suppress(OSError):
                    gen.proc.stdin.close()
            if ready:
                with suppress(BenchError):
                    for obj in gen.lines(timeout=30):
                        if "scenario" in obj:
                            final = obj
                            break
        finally:
            code = gen.finish()
        if not ready or after is None:
            raise BenchError(
                f"idle connections never ready (loadgen exit {code}): {gen.stderr_tail()}"
            )
        errors = server.log_errors()
    return {
        "kib_per_connection": (after - before) / n,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "connections": n,
        "closed_early": (final or {}).get("closed_early"),
        **log_fields(errors),
    }


@scenario(
    "startup",
    full={"files": 100_000},
    quick={"files": 20_000},
    backends=("files",),  # the files are what is loaded; a Redis store is not read from them
    metrics=[
        Metric("seconds", "spawn to first handshake, s", "<", 1.0),
        Metric("keys_ok", "keys loaded (get of first and last key)", "==", True),
    ],
)
def startup(ctx: Ctx) -> dict[str, Any]:
    """Time from spawn to the first handshake with F files in the cache folder."""
    files = ctx.size["files"]
    cache = ctx.work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        with open(cache / f"k{i}.json", "w") as f:
            f.write(json.dumps({"i": i}))
    os.sync()  # no writeback of these files competes with the server's start
    last = f"k{files - 1}"
    with ctx.server(ready_timeout=180) as server:
        seconds = server.ready_after
        found = get_many(server.port, [last, "k0"], timeout=60)
        errors = server.log_errors()
    ok = found.get(last) == {"i": files - 1} and found.get("k0") == {"i": 0}
    return {
        "seconds": seconds,
        "keys_ok": ok,
        "files": files,
        "checked": {last: found.get(last), "k0": found.get("k0")},
        **log_fields(errors),
    }
