"""wrk runs against a server, and the parsing of wrk's report.

Owns the command line (one thread, N keep-alive connections, --latency), the Lua scripts of
the write scenarios, the server's CPU time around the run, and the reading of requests/s,
totals, errors and the latency percentiles from wrk's text. parse_wrk is pure.
"""

from __future__ import annotations

import re
import signal
import subprocess
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .procs import BenchError, main_thread_seconds, spawn, stop
from .servers import Server

__all__ = [
    "POST_SET",
    "PUT_KEYS",
    "WrkOptions",
    "WrkReport",
    "WrkRun",
    "parse_wrk",
    "run_wrk",
]

#: `POST /set` of key PREFIX<n % KEYS> = {"i": n} (PREFIX and KEYS replaced before use).
POST_SET = """\
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, "/set", nil,
    string.format('{"key":"PREFIX%d","value":{"i":%d}}', n % KEYS, n))
end
"""

#: `PUT /keys/PREFIX<n % KEYS>` with the body {"i": n} (objstore's REST resource).
PUT_KEYS = """\
local n = 0
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, "/keys/PREFIX" .. (n % KEYS), nil, string.format('{"i":%d}', n))
end
"""

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


class WrkOptions(Protocol):
    """What a wrk run needs."""

    @property
    def wrk(self) -> str | None: ...
    @property
    def client_cpu(self) -> int | None: ...


@dataclass(frozen=True)
class WrkReport:
    """What wrk printed: totals, errors and (with --latency) percentiles in ms."""

    requests_per_s: float
    requests: int
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None


@dataclass(frozen=True)
class WrkRun:
    """A wrk report with the server's CPU seconds during the run."""

    report: WrkReport
    #: From /proc/PID/stat (clock ticks).
    cpu_s: float
    #: From schedstat (ns), and the main thread's alone; None when unreadable.
    sched_s: float | None
    main_s: float | None


def parse_wrk(text: str) -> WrkReport:
    """Read wrk's report; BenchError when it holds no request rate or total."""
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if not rps or not total:
        raise BenchError(f"no figures in wrk's output: {' '.join(text.split())[:400]}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    pct = {
        p: float(v) * _UNITS_MS[u]
        for p, v, u in re.findall(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    }
    return WrkReport(
        requests_per_s=float(rps.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=dict(
            zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True)
        )
        if sock
        else {},
        p50_ms=pct.get("50"),
        p99_ms=pct.get("99"),
    )


def run_wrk(
    server: Server,
    opts: WrkOptions,
    work: Path,
    *,
    path: str,
    connections: int,
    seconds: int,
    script: str | None = None,
    name: str = "wrk",
) -> WrkRun:
    """`wrk -t1 -cN -dS --latency [-s script] URL` on the client CPU, the server's CPU read
    before and after; BenchError when wrk fails or is missing."""
    if not opts.wrk:
        raise BenchError("wrk is needed here; give --wrk or install it")
    cmd = [opts.wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        lua = work / f"{name}.lua"
        lua.write_text(script)
        cmd += ["-s", str(lua)]
    cmd.append(f"http://127.0.0.1:{server.port}{path}")
    before = server.cpu()
    sched_before, main_before = server.last_sched, main_thread_seconds(server.pid)
    out_path = work / f"{name}.out"
    with open(out_path, "wb") as out:
        proc = spawn(
            cmd,
            cpu=opts.client_cpu,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        with suppress(subprocess.TimeoutExpired):
            proc.wait(seconds + 60)
        code = stop(proc, signal.SIGTERM, 5)
    after = server.cpu()
    sched_after, main_after = server.last_sched, main_thread_seconds(server.pid)
    text = out_path.read_text(errors="replace")
    if code != 0:
        raise BenchError(f"wrk failed (exit {code}): {' '.join(text.split())[:400]}")
    return WrkRun(
        report=parse_wrk(text),
        cpu_s=after - before,
        sched_s=None
        if sched_before is None or sched_after is None
        else sched_after - sched_before,
        main_s=None if main_before is None or main_after is None else main_after - main_before,
    )
