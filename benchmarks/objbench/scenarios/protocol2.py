"""Protocol 2's scenarios, which the reference does not speak: a prefix of 10,000 keys, and
acknowledged sets (with --durability async, sync and memory).

The reference runs the nearest operation of the original protocol in the same run, for
scale; the acked row against the reference's persist compares issue 14's way.
"""

from __future__ import annotations

import statistics
from typing import Any

from ..drivers import between, log_fields, main_between, measure_marks, per_op_us
from ..procs import BenchError
from ..results import Metric
from ..wrk import POST_SET, run_wrk
from .base import Ctx, scenario

__all__ = ["acked", "prefix10k"]


@scenario(
    "prefix10k",
    full={
        "keys": 10_000,
        "repeats": 5,
        "subscribers": 20,
        "hot": 100,
        "rate": 1000,
        "seconds": 3,
    },
    quick={
        "keys": 10_000,
        "repeats": 2,
        "subscribers": 20,
        "hot": 100,
        "rate": 1000,
        "seconds": 1,
    },
    metrics=[
        Metric("subscribe_ms", "subscribe to p/ (10,000 keys) until its reply, ms"),
        Metric("subscribe_cpu_ms", "server CPU ms per such subscribe"),
        Metric(
            "snapshot_ok", "every snapshot complete (each key once) before the reply", "==", True
        ),
        Metric(
            "fan_cpu_us_per_set",
            "server CPU µs per set, 20 prefix subscribers (reference: key subscribers)",
        ),
        Metric("fan_main_us_per_set", "the same, the server's main thread alone"),
        Metric("key_cpu_us_per_set", "server CPU µs per set, 20 key subscribers"),
        Metric("key_main_us_per_set", "the same, the server's main thread alone"),
        Metric("prefix_over_key_cpu", "objstore's CPU per set, prefix / key subscribers"),
        Metric("fan_p99_ms", "p99 delivery latency, prefix subscribers (reference: key), ms"),
        Metric("key_p99_ms", "p99 delivery latency, key subscribers, ms"),
        Metric("prefix_all_delivered", "every update delivered (prefix)", "==", True),
        Metric("key_all_delivered", "every update delivered (key)", "==", True),
    ],
)
def prefix10k(ctx: Ctx) -> dict[str, Any]:
    """A prefix subscribe of 10,000 keys, and a paced fan-out to prefix and key subscribers."""
    # The reference has no prefix subscriptions: it runs the key-subscription fan-out only.
    # objstore alternates which fan-out comes first from one round to the next, so that
    # neither always runs right after the subscribes of (a).
    modes = ["prefix", "key"] if ctx.objstore else ["key"]
    if ctx.round % 2 == 0:
        modes.reverse()
    size = ctx.size
    with ctx.server() as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        args: dict[str, Any] = {"url": url, **size, "modes": ",".join(modes)}
        if not ctx.objstore:
            args["repeats"] = 0
        result, marks = measure_marks(server, ctx.loadgen("prefix10k", args), timeout=600)
        errors = server.log_errors()
    out: dict[str, Any] = {}
    subs = result.get("subscribe", [])
    if subs:
        cpus = [between(marks, f"sub{i}") for i in range(len(subs))]
        out["subscribe_ms"] = statistics.median(s["ms"] for s in subs)
        out["subscribe_cpu_ms"] = statistics.median(cpus) * 1e3
        out["snapshot_ok"] = all(s["snapshot"] == s["distinct"] == size["keys"] for s in subs)
    for mode in modes:
        fan = result[mode]
        cpu = between(marks, f"fan_{mode}")
        out[f"{mode}_cpu_us_per_set"] = per_op_us(cpu, fan["sets"])
        out[f"{mode}_cpu_us_per_delivery"] = per_op_us(cpu, fan["received"])
        main = main_between(marks, f"fan_{mode}")
        out[f"{mode}_main_us_per_set"] = None if main is None else per_op_us(main, fan["sets"])
        out[f"{mode}_p50_ms"] = fan["p50_ms"]
        out[f"{mode}_p99_ms"] = fan["p99_ms"]
        out[f"{mode}_all_delivered"] = bool(fan["all_delivered"])
    # The row that compares the servers: objstore's prefix subscribers against the
    # reference's key subscribers (the only way it can deliver the same updates).
    kept = "prefix" if "prefix" in modes else "key"
    out["fan_cpu_us_per_set"] = out[f"{kept}_cpu_us_per_set"]
    out["fan_main_us_per_set"] = out[f"{kept}_main_us_per_set"]
    out["fan_p99_ms"] = out[f"{kept}_p99_ms"]
    out["fan_order"] = ",".join(modes)
    if "prefix" in modes:
        key_cost = out["key_cpu_us_per_set"]
        out["prefix_over_key_cpu"] = out["prefix_cpu_us_per_set"] / key_cost if key_cost else None
    return {**out, "loadgen": result, "marks": marks, **log_fields(errors)}


_ACKED_FULL = {"connections": 8, "inflight": 16, "keys": 1000, "sets": 50_000, "seconds": 5}
_ACKED_QUICK = {"connections": 8, "inflight": 16, "keys": 1000, "sets": 10_000, "seconds": 2}


def _acked_metrics(mode: str | None) -> list[Metric]:
    if mode is not None:
        return [
            Metric(field, f"{label} (objstore --durability {mode})")
            for field, label in (
                ("sets_per_s", "sets/s, each awaited (reference: POST /set)"),
                ("p50_ms", "p50 latency, ms"),
                ("p99_ms", "p99 latency, ms"),
                ("cpu_us_per_set", "server CPU µs per set"),
                ("http_sets_per_s", "POST /set per second"),
            )
        ]
    return [
        Metric(
            "ws_sets_per_s",
            "objstore's acknowledged WebSocket sets/s / the reference's unacknowledged "
            "persist sets/s (same invocation)",
            "ratio>=",
            1.5,
            reference_from=("persist", "sets_per_s"),
        ),
        Metric(
            "sets_per_s",
            "sets/s, each awaited (objstore: WebSocket set with id; reference: POST /set)",
        ),
        Metric("p50_ms", "p50 latency, ms (the same)"),
        Metric("p99_ms", "p99 latency, ms (the same)"),
        Metric("cpu_us_per_set", "server CPU µs per set (the same)"),
        Metric("main_us_per_set", "the same, the server's main thread alone"),
        Metric("http_sets_per_s", "POST /set per second (wrk, 128 connections)"),
        Metric("http_p99_ms", "POST /set p99 latency, ms"),
        Metric("http_cpu_us_per_set", "server CPU µs per POST /set"),
        Metric("ws_over_http", "objstore's WebSocket sets/s / its own POST /set"),
    ]


@scenario("acked", full=_ACKED_FULL, quick=_ACKED_QUICK, metrics=_acked_metrics(None))
@scenario(
    "acked_sync",
    full=_ACKED_FULL,
    quick=_ACKED_QUICK,
    metrics=_acked_metrics("sync"),
    backends=("files",),
)
@scenario(
    "acked_memory",
    full=_ACKED_FULL,
    quick=_ACKED_QUICK,
    metrics=_acked_metrics("memory"),
    backends=("files",),
)
def acked(ctx: Ctx) -> dict[str, Any]:
    """Acknowledged sets; objstore with the scenario's durability (acked_sync, acked_memory),
    the reference as always (its POST /set, answered once its file is written)."""
    durability = {"acked_sync": "sync", "acked_memory": "memory"}.get(ctx.name, "async")
    size = ctx.size
    out: dict[str, Any] = {}
    with ctx.server(durability=durability) as server:
        if ctx.objstore:  # the reference has no acknowledged WebSocket set
            url = f"ws://127.0.0.1:{server.port}/ws"
            args = {k: size[k] for k in ("connections", "inflight", "keys", "sets")}
            result, marks = measure_marks(
                server, ctx.loadgen("acked", {"url": url, **args}), timeout=600
            )
            if result["failed"]:
                raise BenchError(f"{result['failed']} acknowledged sets failed: {result}")
            main = main_between(marks, "acked")
            out.update(
                ws_sets_per_s=result["sets_per_s"],
                ws_p50_ms=result["p50_ms"],
                ws_p99_ms=result["p99_ms"],
                ws_cpu_us_per_set=per_op_us(between(marks, "acked"), result["sets"]),
                ws_main_us_per_set=None if main is None else per_op_us(main, result["sets"]),
                loadgen=result,
            )
        conns = size["connections"] * size["inflight"]
        script = POST_SET.replace("PREFIX", "h").replace("KEYS", str(size["keys"]))
        run = run_wrk(
            server,
            ctx.opts,
            ctx.work,
            path="",
            connections=conns,
            seconds=size["seconds"],
            script=script,
            name="wrk-post",
        )
        rep = run.report
        out.update(
            http_sets_per_s=rep.requests_per_s,
            http_p50_ms=rep.p50_ms,
            http_p99_ms=rep.p99_ms,
            http_cpu_us_per_set=None
            if run.sched_s is None
            else per_op_us(run.sched_s, rep.requests),
            http_main_us_per_set=None
            if run.main_s is None
            else per_op_us(run.main_s, rep.requests),
            http_requests=rep.requests,
            http_non_2xx=rep.non_2xx,
            http_connections=conns,
        )
        errors = server.log_errors()
    # The rows that compare the servers: objstore's acknowledged WebSocket set against the
    # reference's POST /set, the reference's only write that answers once it is on disk.
    src = "ws" if ctx.objstore else "http"
    for name in ("sets_per_s", "p50_ms", "p99_ms", "cpu_us_per_set", "main_us_per_set"):
        out[name] = out[f"{src}_{name}"]
    if ctx.objstore:
        out["ws_over_http"] = out["ws_sets_per_s"] / out["http_sets_per_s"]
    return {**out, **log_fields(errors)}
