"""HTTP scenarios: GET /get/k and POST /set on both servers (wrk), objstore's REST resource
/keys/K next to the reference's routes for scale, and Server-Sent Events fan-out.

wrk runs one thread of keep-alive connections with --latency; the load generator's fetch
loop stands in for GET /get/k when wrk is missing.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from ..drivers import log_fields, measure_phase, per_op_us
from ..procs import BenchError
from ..results import Metric
from ..servers import Server
from ..wrk import POST_SET, PUT_KEYS, WrkRun, run_wrk
from .base import Ctx, scenario

__all__ = ["http", "http_post", "rest", "sse", "wrk_values"]

_VALUE = {"hello": "world", "n": 1}
_WRK_FULL = {"connections": 50, "seconds": 5}
_WRK_QUICK = {"connections": 50, "seconds": 2}


def _request(server: Server, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wrk_values(run: WrkRun, prefix: str = "") -> dict[str, Any]:
    """A wrk run's figures as a scenario's values, each name after *prefix*."""
    rep = run.report
    values = {
        "requests_per_s": rep.requests_per_s,
        "requests": rep.requests,
        "p50_ms": rep.p50_ms,
        "p99_ms": rep.p99_ms,
        "non_2xx": rep.non_2xx,
        "socket_errors": rep.socket_errors,
        "ok": rep.non_2xx == 0 and not any(rep.socket_errors.values()),
        "cpu_us_per_request": per_op_us(run.cpu_s, rep.requests),
        "cpu_us_per_request_schedstat": None
        if run.sched_s is None
        else per_op_us(run.sched_s, rep.requests),
        "cpu_s": run.cpu_s,
        "cpu_s_schedstat": run.sched_s,
    }
    return {f"{prefix}{k}": v for k, v in values.items()}


@scenario(
    "http",
    full=_WRK_FULL,
    quick=_WRK_QUICK,
    metrics=[
        Metric("requests_per_s", "GET /get/k requests per second (wrk, 50 conns)", "ratio>=", 1.0),
        Metric("p99_ms", "GET /get/k p99 latency, ms (wrk --latency)", "ratio<=", 1.5),
        Metric("cpu_us_per_request", "server CPU µs per request"),
        Metric("p50_ms", "GET /get/k p50 latency, ms"),
    ],
)
def http(ctx: Ctx) -> dict[str, Any]:
    """wrk's GET /get/k over keep-alive connections, after one POST /set of k."""
    size = ctx.size
    with ctx.server() as server:
        _request(server, "POST", "/set", {"key": "k", "value": _VALUE})
        got = _request(server, "GET", "/get/k")
        if got.get("value") != _VALUE:
            raise BenchError(f"GET /get/k returned {got!r}")
        if ctx.opts.wrk:
            run = run_wrk(
                server,
                ctx.opts,
                ctx.work,
                path="/get/k",
                connections=size["connections"],
                seconds=size["seconds"],
            )
            result = {"tool": "wrk", **wrk_values(run)}
        else:
            base = f"http://127.0.0.1:{server.port}"
            gen = ctx.loadgen(
                "http",
                {"url": base, "clients": size["connections"], "seconds": size["seconds"]},
            )
            lg, t0, t1 = measure_phase(server, gen, timeout=size["seconds"] + 60)
            result = {
                "tool": "loadgen",
                "requests_per_s": lg["requests_per_s"],
                "requests": lg["requests"],
                "non_2xx": lg["failed"],
                "cpu_us_per_request": per_op_us(t1 - t0, lg["requests"]),
                "cpu_s": t1 - t0,
                "cpu_s_schedstat": lg.get("server_cpu_s_schedstat"),
            }
        errors = server.log_errors()
    return {**result, **log_fields(errors)}


@scenario(
    "http_post",
    full=_WRK_FULL,
    quick=_WRK_QUICK,
    metrics=[
        Metric("requests_per_s", "POST /set requests per second (wrk, 50 conns)", "ratio>=", 1.0),
        Metric("p99_ms", "POST /set p99 latency, ms", "ratio<=", 1.5),
        Metric("cpu_us_per_request", "server CPU µs per POST /set"),
        Metric("ok", "every answer 2xx, no socket error", "==", True),
    ],
)
def http_post(ctx: Ctx) -> dict[str, Any]:
    """wrk's POST /set of {"key": "k<n % 1000>", "value": {"i": n}} over keep-alive."""
    size = ctx.size
    script = POST_SET.replace("PREFIX", "k").replace("KEYS", "1000")
    with ctx.server() as server:
        run = run_wrk(
            server,
            ctx.opts,
            ctx.work,
            path="",
            connections=size["connections"],
            seconds=size["seconds"],
            script=script,
            name="wrk-post",
        )
        errors = server.log_errors()
    return {**wrk_values(run), **log_fields(errors)}


@scenario(
    "rest",
    full=_WRK_FULL,
    quick=_WRK_QUICK,
    metrics=[
        Metric("get_requests_per_s", "GET /keys/k per second (reference: GET /get/k, for scale)"),
        Metric("get_p99_ms", "GET /keys/k p99 latency, ms (reference: GET /get/k, for scale)"),
        Metric("get_cpu_us_per_request", "server CPU µs per GET /keys/k (reference: GET /get/k)"),
        Metric(
            "put_requests_per_s",
            "PUT /keys/k{n % 1000} per second (reference: POST /set, for scale)",
        ),
        Metric("put_p99_ms", "PUT p99 latency, ms (reference: POST /set, for scale)"),
        Metric("put_cpu_us_per_request", "server CPU µs per PUT (reference: POST /set)"),
        Metric("ok", "every answer 2xx, no socket error (both runs)", "==", True),
    ],
)
def rest(ctx: Ctx) -> dict[str, Any]:
    """objstore's GET and PUT /keys/K (wrk); the reference's GET /get/k and POST /set."""
    size = ctx.size
    keys = "1000"
    if ctx.objstore:
        get_path, put_script = "/keys/k", PUT_KEYS.replace("PREFIX", "k").replace("KEYS", keys)
    else:
        get_path, put_script = "/get/k", POST_SET.replace("PREFIX", "k").replace("KEYS", keys)
    with ctx.server() as server:
        if ctx.objstore:
            _request(server, "PUT", "/keys/k", _VALUE)
        else:
            _request(server, "POST", "/set", {"key": "k", "value": _VALUE})
        conns, seconds = size["connections"], size["seconds"]
        get = run_wrk(
            server, ctx.opts, ctx.work, path=get_path, connections=conns, seconds=seconds
        )
        put = run_wrk(
            server,
            ctx.opts,
            ctx.work,
            path="",
            connections=conns,
            seconds=seconds,
            script=put_script,
            name="wrk-put",
        )
        errors = server.log_errors()
    values = {**wrk_values(get, "get_"), **wrk_values(put, "put_")}
    values["ok"] = values["get_ok"] and values["put_ok"]
    return {**values, **log_fields(errors)}


@scenario(
    "sse",
    full={"streams": 100, "sets": 2000},
    quick={"streams": 100, "sets": 300},
    metrics=[
        Metric(
            "cpu_us_per_delivery",
            "server CPU µs per delivery (schedstat), 100 SSE streams "
            "(reference: 100 WebSocket subscribers, for scale)",
        ),
        Metric("all_last", "every stream got the last value", "==", True),
    ],
)
def sse(ctx: Ctx) -> dict[str, Any]:
    """objstore: streams of GET /events?key=s; the reference: WebSocket subscribers of one
    key; one publisher pipelines the sets over WebSocket."""
    n, m = ctx.size["streams"], ctx.size["sets"]
    with ctx.server() as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        if ctx.objstore:
            gen = ctx.loadgen("sse", {"url": url, "streams": n, "sets": m})
        else:
            gen = ctx.loadgen("fanout", {"url": url, "subscribers": n, "sets": m})
        result, t0, t1 = measure_phase(server, gen, timeout=300)
        errors = server.log_errors()
    # The phase lasts tens of milliseconds: clock ticks (10 ms) are too coarse for it.
    sched = result.get("server_cpu_s_schedstat")
    cpu = t1 - t0 if sched is None else sched
    return {
        "cpu_us_per_delivery": per_op_us(cpu, result["deliveries"]),
        "cpu_us_per_delivery_ticks": per_op_us(t1 - t0, result["deliveries"]),
        "all_last": bool(result["all_last"]),
        "deliveries": result["deliveries"],
        "expected": result["expected"],
        "cpu_s": cpu,
        "loadgen_cpu_fraction": result.get("loadgen_cpu_fraction"),
        "loadgen": result,
        **log_fields(errors),
    }
