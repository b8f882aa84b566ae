"""Benchmarks of objstore against the reference (the original's Bun server), same protocol.

    python benchmarks/run.py [--rounds 3] [--quick] [--json FILE]
        [--scenarios fanout100,fanout1000,game,persist,http,idle,startup,prefix10k,acked,
                     acked_sync,acked_memory]
        [--reference PATH/TO/run.sh] [--bun PATH/TO/bun]

Linux only (it reads /proc). Every server is started fresh, on a free port of 127.0.0.1 and
with a fresh temporary cache folder, pinned to one CPU (--server-cpu, 0); the load generator
(benchmarks/loadgen.ts, run by Bun) and wrk are pinned to another (--client-cpu, 1), and so is
this script. Within a scenario the servers alternate: objstore then reference in round 1,
reference then objstore in round 2, and so on.

Server CPU time is utime + stime of the server's pid from /proc/PID/stat (fields 14 and 15, in
clock ticks; they cover all the process's threads), read when the load generator prints
{"phase":"start"} and {"phase":"end"}. The table shows the median over rounds of each metric
for each server, their ratio objstore/reference, and the targets. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOADGEN = ROOT / "benchmarks" / "loadgen.ts"
DEFAULT_REFERENCE = Path("..") / "shared" / "anchors" / "seed-bun" / "run.sh"
DEFAULT_BUN = Path("..") / "shared" / "anchors" / "seed-bun" / "node_modules" / ".bin" / "bun"
SERVERS = ("objstore", "reference")
ALL_SCENARIOS = (
    "fanout100",
    "fanout1000",
    "game",
    "persist",
    "http",
    "idle",
    "startup",
    "prefix10k",
    "acked",
    "acked_sync",
    "acked_memory",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")

FULL = {
    "fanout100": {"subscribers": 100, "sets": 2000},
    "fanout1000": {"subscribers": 1000, "sets": 300},
    "game": {"clients": 50, "keys": 50, "rate": 30, "seconds": 5},
    "persist": {"connections": 8, "keys": 1000, "sets": 50_000},
    "http": {"connections": 50, "seconds": 5},
    "idle": {"connections": 10_000},
    "startup": {"files": 100_000},
    "prefix10k": {
        "keys": 10_000,
        "repeats": 5,
        "subscribers": 20,
        "hot": 100,
        "rate": 1000,
        "seconds": 3,
    },
    "acked": {"connections": 8, "inflight": 16, "keys": 1000, "sets": 50_000, "seconds": 5},
}
FULL["acked_sync"] = FULL["acked_memory"] = FULL["acked"]
QUICK = {
    "fanout100": {"subscribers": 100, "sets": 300},
    "fanout1000": {"subscribers": 1000, "sets": 30},
    "game": {"clients": 50, "keys": 50, "rate": 30, "seconds": 2},
    "persist": {"connections": 8, "keys": 1000, "sets": 10_000},
    "http": {"connections": 50, "seconds": 2},
    "idle": {"connections": 2_000},
    "startup": {"files": 20_000},
    "prefix10k": {
        "keys": 10_000,
        "repeats": 2,
        "subscribers": 20,
        "hot": 100,
        "rate": 1000,
        "seconds": 1,
    },
    "acked": {"connections": 8, "inflight": 16, "keys": 1000, "sets": 10_000, "seconds": 2},
}
QUICK["acked_sync"] = QUICK["acked_memory"] = QUICK["acked"]


class BenchError(Exception):
    """A run that could not produce its numbers; the message says why."""


# --- processes ------------------------------------------------------------------------------

#: Every process this script started and has not yet reaped, by pid.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


TASKSET = shutil.which("taskset")


def spawn(cmd: list[str], *, cpu: int | None, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start *cmd* pinned to *cpu*, in a session of its own (Ctrl+C reaches only this script).

    taskset execs the command, so the pid is the command's own. The open-file limit was
    raised in this process (see main), and children inherit it.
    """
    if cpu is not None and TASKSET:
        cmd = [TASKSET, "-c", str(cpu), *cmd]
    proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
    _children[proc.pid] = proc
    if cpu is not None and not TASKSET:
        with suppress(OSError):
            os.sched_setaffinity(proc.pid, {cpu})
    return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    """Signal *proc* by its pid, wait for it (SIGKILL after *timeout*), return its exit code."""
    try:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        return proc.returncode
    finally:
        _children.pop(proc.pid, None)


def stop_all() -> None:
    for proc in list(_children.values()):
        with suppress(Exception):
            stop(proc, timeout=5)


def cpu_seconds(pid: int) -> float:
    """utime + stime of *pid* (all its threads), in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2 :].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def sched_seconds(pid: int) -> float | None:
    """CPU time of *pid*'s live threads from /proc/PID/task/*/schedstat (ns resolution).

    Kept in the raw results next to the tick-based figure as a check of its resolution
    (a clock tick is 10 ms on most systems); threads that ended are not counted.
    """
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with suppress(OSError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except OSError:
        return None
    return total / 1e9


def main_thread_seconds(pid: int) -> float | None:
    """CPU time of *pid*'s main thread (its task of the same id) from schedstat (ns).

    objstore's event loop runs there (its file writes on a thread of their own), and so
    does Bun's JavaScript.
    """
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except OSError:
        return None


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ws_handshake(port: int, timeout: float = 2.0) -> bool:
    """One WebSocket opening handshake on /ws; True when the server answers 101."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.1 101")
    except OSError:
        return False


class Server:
    """One server process of either kind, on its own port and cache folder."""

    def __init__(
        self,
        kind: str,
        cache_dir: Path,
        opts: argparse.Namespace,
        log: Path,
        durability: str = "async",
        *,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        #: objstore's --durability (the reference has one way of writing).
        self.durability = durability
        #: More flags for objstore (like --redis URL).
        self.extra_args = extra_args
        self.cache_dir = cache_dir
        self.opts = opts
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        #: Seconds from spawn to the first successful handshake.
        self.ready_after = math.nan
        self.last_sched: float | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PORT", "CACHE_DIR", "HOST")}
        if self.kind == "objstore":
            cmd = [
                self.opts.python,
                "-m",
                "objstore",
                "--port",
                str(self.port),
                "--cache-dir",
                str(self.cache_dir),
                "--log-level",
                "warning",
            ]
            if self.durability != "async":  # a tree without the flag runs the default
                cmd += ["--durability", self.durability]
            cmd += self.extra_args
            env["PYTHONPATH"] = str(ROOT)
        else:
            cmd = [str(self.opts.reference)]
            env.update(PORT=str(self.port), CACHE_DIR=str(self.cache_dir), QUIET="1")
        with open(self.log, "ab") as log:
            self.started_at = time.perf_counter()
            self.proc = spawn(
                cmd,
                cpu=self.opts.server_cpu,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 60.0, interval: float = 0.002) -> float:
        """Poll handshakes until one succeeds; return seconds since spawn."""
        assert self.proc is not None
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.kind} exited with {self.proc.returncode} before accepting "
                    f"connections: {self.log_tail()}"
                )
            if ws_handshake(self.port):
                self.ready_after = time.perf_counter() - self.started_at
                return self.ready_after
            time.sleep(interval)
        raise BenchError(
            f"{self.kind} accepted no WebSocket handshake within {timeout:.0f} s; "
            f"its output: {self.log_tail()}"
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        """utime + stime in seconds; also keeps the schedstat figure in self.last_sched."""
        if not self.alive():
            raise BenchError(f"{self.kind} died: {self.log_tail()}")
        self.last_sched = sched_seconds(self.pid)
        return cpu_seconds(self.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        code = stop(self.proc, sig, timeout)
        return code

    def log_tail(self, n: int = 600) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return " ".join(text[-n:].split())

    def log_errors(self) -> tuple[int, str]:
        """Number of error lines in the server's output, and the last distinct one."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return 0, ""
        hits = [ln for ln in lines if re.search(r"ERROR|Error|error|Traceback|cannot", ln)]
        return len(hits), (hits[-1][:300] if hits else "")


@contextmanager
def running(
    kind: str,
    cache_dir: Path,
    opts: argparse.Namespace,
    log: Path,
    ready_timeout: float = 60.0,
    *,
    durability: str = "async",
) -> Iterator[Server]:
    server = Server(kind, cache_dir, opts, log, durability)
    try:
        server.start()
        server.wait_ready(ready_timeout)
        yield server
    finally:
        server.stop()


class LineReader:
    """Reads a child's stdout line by line with a deadline (no thread, no unbounded wait)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.eof = False
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)

    def readline(self, deadline: float) -> str | None:
        """The next line, or None at end of output; BenchError at the deadline."""
        while b"\n" not in self.buf:
            if self.eof:
                if self.buf:
                    line, self.buf = self.buf, b""
                    return line.decode(errors="replace")
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("the load generator did not finish in time")
            if self.sel.select(min(left, 1.0)):
                chunk = os.read(self.fd, 65536)
                if chunk:
                    self.buf += chunk
                else:
                    self.eof = True
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace")

    def close(self) -> None:
        self.sel.close()


class Loadgen:
    """benchmarks/loadgen.ts running under Bun, pinned to the client CPU."""

    def __init__(
        self,
        opts: argparse.Namespace,
        scenario: str,
        args: dict[str, Any],
        workdir: Path,
        stdin: bool = False,
    ) -> None:
        cmd = [str(opts.bun), str(LOADGEN), scenario]
        for name, value in args.items():
            cmd += [f"--{name}", str(value)]
        self.stderr_path = workdir / f"loadgen-{scenario}.err"
        with open(self.stderr_path, "wb") as err:
            self.proc = spawn(
                cmd,
                cpu=opts.client_cpu,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            )
        self.reader = LineReader(self.proc)

    def lines(self, timeout: float) -> Iterator[dict[str, Any]]:
        """Every JSON object the load generator prints, until it exits or *timeout* passes."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.reader.readline(deadline)
            if line is None:
                return
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                yield obj

    def stderr_tail(self) -> str:
        try:
            return " ".join(self.stderr_path.read_text(errors="replace")[-400:].split())
        except OSError:
            return ""

    def finish(self, timeout: float = 10) -> int:
        self.reader.close()
        if self.proc.stdin is not None:
            with suppress(OSError):
                self.proc.stdin.close()
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        return stop(self.proc, signal.SIGTERM, 5)


def measure_phase(
    server: Server, gen: Loadgen, timeout: float
) -> tuple[dict[str, Any], float, float]:
    """Run the load generator to its result line; return it and the server's CPU seconds
    read at its start and end markers."""
    start = end = None
    sched: list[float | None] = [None, None]
    own: list[float] = [0.0, 0.0, 0.0, 0.0]  # load generator CPU and wall clock at both markers
    result: dict[str, Any] | None = None
    try:
        for obj in gen.lines(timeout):
            phase = obj.get("phase")
            if phase == "start":
                start = server.cpu()
                sched[0] = server.last_sched
                with suppress(OSError):
                    own[0], own[2] = cpu_seconds(gen.proc.pid), time.monotonic()
            elif phase == "end":
                end = server.cpu()
                sched[1] = server.last_sched
                with suppress(OSError):
                    own[1], own[3] = cpu_seconds(gen.proc.pid), time.monotonic()
            elif "scenario" in obj:
                result = obj
                break
    finally:
        code = gen.finish()
    if result is None:
        raise BenchError(
            f"the load generator printed no result (exit {code}); stderr: {gen.stderr_tail()}; "
            f"server: {server.log_tail(300)}"
        )
    if "error" in result:
        raise BenchError(f"load generator: {result['error']}; server: {server.log_tail(300)}")
    if start is None or end is None:
        raise BenchError("the load generator printed no phase markers")
    if sched[0] is not None and sched[1] is not None:
        result["server_cpu_s_schedstat"] = round(sched[1] - sched[0], 6)
    result["server_cpu_s"] = round(end - start, 6)
    if own[3] > own[2]:
        # Busy fraction of the load generator's CPU: near 1 would make it the bottleneck.
        result["loadgen_cpu_fraction"] = round((own[1] - own[0]) / (own[3] - own[2]), 3)
    return result, start, end


def log_fields(errors: tuple[int, str]) -> dict[str, Any]:
    """The server-log part of every scenario's result: how many errors, and the last."""
    return {"server_log_errors": errors[0], "server_log_last_error": errors[1]}


def per_op_us(cpu_s: float, ops: float) -> float | None:
    return cpu_s * 1e6 / ops if ops else None


# --- scenarios ------------------------------------------------------------------------------


def scenario_fanout(
    kind: str, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    n, m = size["subscribers"], size["sets"]
    with running(kind, work / "cache", opts, work / "server.log") as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        gen = Loadgen(opts, "fanout", {"url": url, "subscribers": n, "sets": m}, work)
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
        "cpu_s_schedstat": result.get("server_cpu_s_schedstat"),
        "loadgen_cpu_fraction": result.get("loadgen_cpu_fraction"),
        "loadgen": result,
        **log_fields(errors),
    }


def scenario_game(
    kind: str, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    with running(kind, work / "cache", opts, work / "server.log") as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        gen = Loadgen(opts, "game", {"url": url, **size}, work)
        result, t0, t1 = measure_phase(server, gen, timeout=size["seconds"] + 120)
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


async def _get_many(port: int, keys: list[str], limit: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    async def run() -> dict[str, Any]:
        found: dict[str, Any] = {}
        async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None, ping_interval=None) as ws:
            for key in keys:
                await ws.send(json.dumps({"action": "get", "key": key}))
            for _ in keys:
                msg = json.loads(await ws.recv())
                if isinstance(msg, dict) and "key" in msg:
                    found[msg["key"]] = msg.get("value")
        return found

    return await asyncio.wait_for(run(), limit)


def get_many(port: int, keys: list[str], timeout: float = 60) -> dict[str, Any]:
    try:
        return asyncio.run(_get_many(port, keys, timeout))
    except (OSError, TimeoutError) as exc:
        raise BenchError(f"gets after restart failed: {exc!r}") from None
    except Exception as exc:  # websockets' own errors (connection closed...)
        raise BenchError(f"gets after restart failed: {exc!r}") from None


def describe_exit(code: int | None) -> str:
    if code is None:
        return "not started"
    if code < 0:
        return f"signal {-code}"
    return str(code)


def scenario_persist(
    kind: str, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    cache = work / "cache"
    expect_file = work / "expect.json"
    server = Server(kind, cache, opts, work / "server.log")
    try:
        server.start()
        server.wait_ready()
        url = f"ws://127.0.0.1:{server.port}/ws"
        gen = Loadgen(opts, "persist", {"url": url, **size, "expect": expect_file}, work)
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
    with running(kind, cache, opts, work / "server-restart.log", ready_timeout=120) as again:
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


def scenario_http(
    kind: str, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    with running(kind, work / "cache", opts, work / "server.log") as server:
        base = f"http://127.0.0.1:{server.port}"
        body = json.dumps({"key": "k", "value": {"hello": "world", "n": 1}}).encode()
        req = urllib.request.Request(
            f"{base}/set", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
        with urllib.request.urlopen(f"{base}/get/k", timeout=10) as resp:
            got = json.loads(resp.read())
        if got.get("value") != {"hello": "world", "n": 1}:
            raise BenchError(f"GET /get/k returned {got!r}")
        if opts.wrk:
            cmd = [
                opts.wrk,
                "-t1",
                f"-c{size['connections']}",
                f"-d{size['seconds']}s",
                f"{base}/get/k",
            ]
            before = server.cpu()
            sched_before = server.last_sched
            with open(work / "wrk.out", "wb") as out:
                proc = spawn(
                    cmd,
                    cpu=opts.client_cpu,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
                with suppress(subprocess.TimeoutExpired):
                    proc.wait(size["seconds"] + 60)
                code = stop(proc, signal.SIGTERM, 5)
            after = server.cpu()
            sched = (
                None
                if sched_before is None or server.last_sched is None
                else server.last_sched - sched_before
            )
            text = (work / "wrk.out").read_text(errors="replace")
            rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
            total = re.search(r"(\d+) requests in", text)
            if code != 0 or not rps or not total:
                raise BenchError(f"wrk failed (exit {code}): {' '.join(text.split())[:400]}")
            non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
            sock = re.search(
                r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
            )
            requests = int(total.group(1))
            result = {
                "tool": "wrk",
                "requests_per_s": float(rps.group(1)),
                "requests": requests,
                "non_2xx": int(non2xx.group(1)) if non2xx else 0,
                "socket_errors": dict(
                    zip(
                        ("connect", "read", "write", "timeout"),
                        map(int, sock.groups()),
                        strict=True,
                    )
                )
                if sock
                else {},
                "cpu_s_schedstat": sched,
            }
            cpu = after - before
        else:
            gen = Loadgen(
                opts,
                "http",
                {"url": base, "clients": size["connections"], "seconds": size["seconds"]},
                work,
            )
            lg, t0, t1 = measure_phase(server, gen, timeout=size["seconds"] + 60)
            cpu = t1 - t0
            requests = lg["requests"]
            result = {
                "tool": "loadgen",
                "requests_per_s": lg["requests_per_s"],
                "requests": requests,
                "non_2xx": lg["failed"],
                "socket_errors": {},
                "cpu_s_schedstat": lg.get("server_cpu_s_schedstat"),
            }
        errors = server.log_errors()
    return {
        **result,
        "cpu_us_per_request": per_op_us(cpu, requests),
        "cpu_s": cpu,
        **log_fields(errors),
    }


def scenario_idle(
    kind: str, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    n = size["connections"]
    with running(kind, work / "cache", opts, work / "server.log") as server:
        time.sleep(0.5)
        before = rss_kib(server.pid)
        url = f"ws://127.0.0.1:{server.port}/ws"
        gen = Loadgen(opts, "idle", {"url": url, "connections": n}, work, stdin=True)
        ready = False
        after = None
        final: dict[str, Any] | None = None
        try:
            lines = gen.lines(timeout=300)
            for obj in lines:
                if "ready" in obj:
                    ready = True
                    time.sleep(1.0)  # let the server settle (buffers, GC)
                    if not server.alive():
                        raise BenchError(f"{kind} died: {server.log_tail()}")
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


def scenario_startup(
    kind: str, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    files = size["files"]
    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        with open(cache / f"k{i}.json", "w") as f:
            f.write(json.dumps({"i": i}))
    os.sync()  # no writeback of these files competes with the server's start
    last = f"k{files - 1}"
    with running(kind, cache, opts, work / "server.log", ready_timeout=180) as server:
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


def measure_marks(
    server: Server, gen: Loadgen, timeout: float
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run the load generator to its result line; return it and the server's CPU seconds at
    each {"mark": NAME} it printed, from schedstat (ns) when readable, else from the ticks;
    and those of its main thread alone at "main:NAME".

    The phases of these scenarios are short (tens of milliseconds): ticks are too coarse.
    """
    marks: dict[str, float] = {}
    result: dict[str, Any] | None = None
    try:
        for obj in gen.lines(timeout):
            if "mark" in obj:
                name = str(obj["mark"])
                ticks = server.cpu()
                marks[name] = ticks if server.last_sched is None else server.last_sched
                main = main_thread_seconds(server.pid)
                if main is not None:
                    marks[f"main:{name}"] = main
            elif "scenario" in obj:
                result = obj
                break
    finally:
        code = gen.finish()
    if result is None:
        raise BenchError(
            f"the load generator printed no result (exit {code}); stderr: {gen.stderr_tail()}; "
            f"server: {server.log_tail(300)}"
        )
    if "error" in result:
        raise BenchError(f"load generator: {result['error']}; server: {server.log_tail(300)}")
    return result, marks


def between(marks: dict[str, float], name: str) -> float:
    """Server CPU seconds between the marks NAME_start and NAME_end."""
    try:
        return marks[f"{name}_end"] - marks[f"{name}_start"]
    except KeyError:
        raise BenchError(f"the load generator printed no marks for {name}") from None


def main_between(marks: dict[str, float], name: str) -> float | None:
    """The same for the server's main thread alone; None when it could not be read."""
    start, end = marks.get(f"main:{name}_start"), marks.get(f"main:{name}_end")
    return None if start is None or end is None else end - start


#: Runs of prefix10k so far, by server kind.
_prefix10k_runs: Counter[str] = Counter()


def scenario_prefix10k(
    kind: str, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    # The reference has no prefix subscriptions: it runs the key-subscription fan-out only.
    # objstore alternates which fan-out comes first from one round to the next, so that
    # neither always runs right after the subscribes of (a).
    _prefix10k_runs[kind] += 1
    modes = ["prefix", "key"] if kind == "objstore" else ["key"]
    if _prefix10k_runs[kind] % 2 == 0:
        modes.reverse()
    with running(kind, work / "cache", opts, work / "server.log") as server:
        url = f"ws://127.0.0.1:{server.port}/ws"
        args = {"url": url, **size, "modes": ",".join(modes)}
        if kind != "objstore":
            args["repeats"] = 0
        gen = Loadgen(opts, "prefix10k", args, work)
        result, marks = measure_marks(server, gen, timeout=600)
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


_WRK_POST_SET = """\
-- POST /set of key h<n % KEYS> = {"i": n}: as many keys as the acknowledged sets use.
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, "/set", nil, string.format('{"key":"h%d","value":{"i":%d}}', n % KEYS, n))
end
"""

_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk_post_set(
    server: Server, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """`POST /set` of distinct keys from K x M keep-alive connections for a few seconds (wrk)."""
    script = work / "post-set.lua"
    script.write_text(_WRK_POST_SET.replace("KEYS", str(size["keys"])))
    conns = size["connections"] * size["inflight"]
    cmd = [
        opts.wrk,
        "-t1",
        f"-c{conns}",
        f"-d{size['seconds']}s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{server.port}",
    ]
    server.cpu()
    before, main_before = server.last_sched, main_thread_seconds(server.pid)
    with open(work / "wrk-post.out", "wb") as out:
        proc = spawn(cmd, cpu=opts.client_cpu, stdout=out, stderr=subprocess.STDOUT)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(size["seconds"] + 60)
        code = stop(proc, signal.SIGTERM, 5)
    server.cpu()
    after, main_after = server.last_sched, main_thread_seconds(server.pid)
    text = (work / "wrk-post.out").read_text(errors="replace")
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if code != 0 or not rps or not total:
        raise BenchError(f"wrk failed (exit {code}): {' '.join(text.split())[:400]}")
    pct = {
        p: float(v) * _WRK_UNITS[u]
        for p, v, u in re.findall(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    }
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    requests = int(total.group(1))
    return {
        "http_sets_per_s": float(rps.group(1)),
        "http_p50_ms": pct.get("50"),
        "http_p99_ms": pct.get("99"),
        "http_cpu_us_per_set": None
        if before is None or after is None
        else per_op_us(after - before, requests),
        "http_main_us_per_set": None
        if main_before is None or main_after is None
        else per_op_us(main_after - main_before, requests),
        "http_requests": requests,
        "http_non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "http_connections": conns,
    }


def scenario_acked(
    kind: str,
    size: dict[str, int],
    opts: argparse.Namespace,
    work: Path,
    durability: str = "async",
) -> dict[str, Any]:
    """Acknowledged sets; objstore with *durability* (acked_sync, acked_memory), the
    reference as always (its POST /set, answered once its file is written)."""
    if not opts.wrk:
        raise BenchError("acked needs wrk for POST /set; give --wrk or install it")
    out: dict[str, Any] = {}
    with running(kind, work / "cache", opts, work / "server.log", durability=durability) as server:
        if kind == "objstore":  # the reference has no acknowledged WebSocket set
            url = f"ws://127.0.0.1:{server.port}/ws"
            args = {k: size[k] for k in ("connections", "inflight", "keys", "sets")}
            gen = Loadgen(opts, "acked", {"url": url, **args}, work)
            result, marks = measure_marks(server, gen, timeout=600)
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
        out.update(wrk_post_set(server, size, opts, work))
        errors = server.log_errors()
    # The rows that compare the servers: objstore's acknowledged WebSocket set against the
    # reference's POST /set, the reference's only write that answers once it is on disk.
    src = "ws" if kind == "objstore" else "http"
    for field in ("sets_per_s", "p50_ms", "p99_ms", "cpu_us_per_set", "main_us_per_set"):
        out[field] = out[f"{src}_{field}"]
    if kind == "objstore":
        out["ws_over_http"] = out["ws_sets_per_s"] / out["http_sets_per_s"]
    return {**out, **log_fields(errors)}


SCENARIOS: dict[str, Callable[[str, dict[str, int], argparse.Namespace, Path], dict[str, Any]]] = {
    "fanout100": scenario_fanout,
    "fanout1000": scenario_fanout,
    "game": scenario_game,
    "persist": scenario_persist,
    "http": scenario_http,
    "idle": scenario_idle,
    "startup": scenario_startup,
    "prefix10k": scenario_prefix10k,
    "acked": scenario_acked,
    "acked_sync": partial(scenario_acked, durability="sync"),
    "acked_memory": partial(scenario_acked, durability="memory"),
}


# --- the table ------------------------------------------------------------------------------

# (scenario, field, label, kind of target, target value). Kinds: "ratio<=", "ratio>=" compare
# objstore/reference; "<" and "==" compare objstore's own median; None: no target, for context.
METRICS: list[tuple[str, str, str, str | None, Any]] = [
    ("fanout100", "cpu_us_per_delivery", "fanout100: server CPU µs per delivery", "ratio<=", 1.5),
    ("fanout100", "all_last", "fanout100: every subscriber got the last value", "==", True),
    (
        "fanout100",
        "cpu_us_per_delivery_schedstat",
        "fanout100: the same from schedstat (ns resolution, check)",
        None,
        None,
    ),
    (
        "fanout1000",
        "cpu_us_per_delivery",
        "fanout1000: server CPU µs per delivery",
        "ratio<=",
        1.5,
    ),
    ("fanout1000", "all_last", "fanout1000: every subscriber got the last value", "==", True),
    (
        "fanout1000",
        "cpu_us_per_delivery_schedstat",
        "fanout1000: the same from schedstat (ns resolution, check)",
        None,
        None,
    ),
    ("game", "p99_ms", "game: p99 latency, ms", "<", 2.0),
    ("game", "all_delivered", "game: every update delivered", "==", True),
    ("game", "delivered_fraction", "game: delivered / expected", None, None),
    ("game", "p50_ms", "game: p50 latency, ms", None, None),
    ("game", "max_ms", "game: max latency, ms", None, None),
    ("game", "cpu_us_per_delivery", "game: server CPU µs per delivery", None, None),
    ("persist", "sets_per_s", "persist: sets per second", "ratio>=", 1.5),
    ("persist", "restart_ok", "persist: every key right after SIGTERM + restart", "==", True),
    ("persist", "cpu_us_per_set", "persist: server CPU µs per set (writes included)", None, None),
    ("persist", "exit", "persist: exit status on SIGTERM", None, None),
    (
        "http",
        "requests_per_s",
        "http: GET /get/k requests per second (wrk, 50 conns)",
        "ratio>=",
        0.5,
    ),
    ("http", "cpu_us_per_request", "http: server CPU µs per request", None, None),
    (
        "idle",
        "kib_per_connection",
        "idle: server memory KiB per subscribed connection",
        "ratio<=",
        3.0,
    ),
    ("idle", "rss_before_kib", "idle: server RSS before connections, KiB", None, None),
    ("startup", "seconds", "startup: spawn to first handshake, s", "<", 3.0),
    ("startup", "keys_ok", "startup: keys loaded (get of first and last key)", "==", True),
    (
        "prefix10k",
        "subscribe_ms",
        "prefix10k: subscribe to p/ (10,000 keys) until its reply, ms",
        None,
        None,
    ),
    ("prefix10k", "subscribe_cpu_ms", "prefix10k: server CPU ms per such subscribe", None, None),
    (
        "prefix10k",
        "snapshot_ok",
        "prefix10k: every snapshot complete (each key once) before the reply",
        "==",
        True,
    ),
    (
        "prefix10k",
        "fan_cpu_us_per_set",
        "prefix10k: server CPU µs per set, 20 prefix subscribers (reference: key subscribers)",
        None,
        None,
    ),
    (
        "prefix10k",
        "fan_main_us_per_set",
        "prefix10k: the same, the server's main thread alone",
        None,
        None,
    ),
    (
        "prefix10k",
        "key_cpu_us_per_set",
        "prefix10k: server CPU µs per set, 20 key subscribers",
        None,
        None,
    ),
    (
        "prefix10k",
        "key_main_us_per_set",
        "prefix10k: the same, the server's main thread alone",
        None,
        None,
    ),
    (
        "prefix10k",
        "prefix_over_key_cpu",
        "prefix10k: objstore's CPU per set, prefix / key subscribers",
        None,
        None,
    ),
    (
        "prefix10k",
        "fan_p99_ms",
        "prefix10k: p99 delivery latency, prefix subscribers (reference: key), ms",
        None,
        None,
    ),
    (
        "prefix10k",
        "key_p99_ms",
        "prefix10k: p99 delivery latency, key subscribers, ms",
        None,
        None,
    ),
    (
        "prefix10k",
        "prefix_all_delivered",
        "prefix10k: every update delivered (prefix)",
        "==",
        True,
    ),
    ("prefix10k", "key_all_delivered", "prefix10k: every update delivered (key)", "==", True),
    (
        "acked",
        "sets_per_s",
        "acked: sets/s, each awaited (objstore: WebSocket set with id; reference: POST /set)",
        None,
        None,
    ),
    ("acked", "p50_ms", "acked: p50 latency, ms (the same)", None, None),
    ("acked", "p99_ms", "acked: p99 latency, ms (the same)", None, None),
    ("acked", "cpu_us_per_set", "acked: server CPU µs per set (the same)", None, None),
    ("acked", "main_us_per_set", "acked: the same, the server's main thread alone", None, None),
    ("acked", "http_sets_per_s", "acked: POST /set per second (wrk, 128 connections)", None, None),
    ("acked", "http_p99_ms", "acked: POST /set p99 latency, ms", None, None),
    ("acked", "http_cpu_us_per_set", "acked: server CPU µs per POST /set", None, None),
    (
        "acked",
        "ws_over_http",
        "acked: objstore's WebSocket sets/s / its own POST /set",
        None,
        None,
    ),
    *[
        (
            f"acked_{mode}",
            field,
            f"acked_{mode}: {label} (objstore --durability {mode})",
            None,
            None,
        )
        for mode in ("sync", "memory")
        for field, label in (
            ("sets_per_s", "sets/s, each awaited (reference: POST /set)"),
            ("p50_ms", "p50 latency, ms"),
            ("p99_ms", "p99 latency, ms"),
            ("cpu_us_per_set", "server CPU µs per set"),
            ("http_sets_per_s", "POST /set per second"),
        )
    ],
]


def summarize(values: list[Any]) -> Any:
    """Median of numbers, all() of booleans, distinct texts joined; None when no value."""
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None
    if all(isinstance(v, bool) for v in values):
        return all(values)
    if all(isinstance(v, (int, float)) for v in values):
        return statistics.median(values)
    return ", ".join(dict.fromkeys(str(v) for v in values))


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (int, float)):
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


def build_table(results: dict[str, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    rows = []
    for scenario, field, label, kind, target in METRICS:
        if scenario not in results:
            continue
        med: dict[str, Any] = {}
        errors: dict[str, int] = {}
        for server in SERVERS:
            runs = results[scenario].get(server, [])
            med[server] = summarize([r.get(field) for r in runs if "error" not in r])
            errors[server] = sum("error" in r for r in runs)
        o, ref = med["objstore"], med["reference"]
        ratio = None
        if (
            isinstance(o, (int, float))
            and isinstance(ref, (int, float))
            and not isinstance(o, bool)
        ):
            ratio = o / ref if ref else None
        met: bool | None = None
        if kind == "ratio<=":
            met = None if ratio is None else ratio <= target
        elif kind == "ratio>=":
            met = None if ratio is None else ratio >= target
        elif kind == "<":
            met = None if not isinstance(o, (int, float)) else o < target
        elif kind == "==":
            met = None if o is None else o == target
        if kind is not None and o is None and errors["objstore"]:
            met = False
        rows.append(
            {
                "scenario": scenario,
                "metric": label,
                "objstore": o,
                "reference": ref,
                "ratio": ratio,
                "target": None
                if kind is None
                else f"{'ratio ' if kind.startswith('ratio') else ''}"
                f"{kind.removeprefix('ratio')} {fmt(target)}".replace("== yes", "yes"),
                "met": met,
                "errors": errors,
            }
        )
    return rows


def render_table(rows: list[dict[str, Any]], rounds: int) -> str:
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
        for server in SERVERS:
            text = fmt(row[server])
            if row["errors"][server]:
                text += (
                    f" ({row['errors'][server]} failed)"
                    if row[server] is not None
                    else " (failed)"
                )
            cells.append(text)
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}"
        met = (
            ""
            if row["target"] is None
            else ("n/a" if row["met"] is None else ("yes" if row["met"] else "NO"))
        )
        target = row["target"] or ""
        lines.append(f"| {row['metric']} | {cells[0]} | {cells[1]} | {ratio} | {target} | {met} |")
    return "\n".join(lines)


def brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + str(result["error"])[:500]
    keys = [
        k
        for k in result
        if not isinstance(result[k], (dict, list)) and k != "server_log_last_error"
    ]
    text = ", ".join(f"{k}={fmt(result[k])}" for k in keys[:8])
    if result.get("server_log_errors"):
        text += (
            f"; server logged {result['server_log_errors']} error line(s), "
            f"last: {result['server_log_last_error']}"
        )
    return text


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per scenario (default 3)")
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help=f"comma-separated, from {','.join(ALL_SCENARIOS)} (default all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 round, smaller sizes: a fast check"
    )
    parser.add_argument("--json", type=Path, help="save raw results to this file")
    parser.add_argument(
        "--reference",
        type=Path,
        default=DEFAULT_REFERENCE,
        help=f"run.sh of the reference server (default {DEFAULT_REFERENCE}, "
        "relative to the repository)",
    )
    parser.add_argument(
        "--bun",
        type=Path,
        default=DEFAULT_BUN,
        help=f"bun that runs the load generator (default {DEFAULT_BUN}, relative "
        "to the repository; else bun on PATH)",
    )
    parser.add_argument(
        "--python",
        default=None,
        help="Python that runs objstore (default .venv/bin/python of the "
        "repository if present, else this one)",
    )
    parser.add_argument(
        "--wrk",
        default=shutil.which("wrk"),
        help="wrk for the http scenario (default: on PATH; without it the "
        "load generator's fetch loop is used)",
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the servers run on (0)")
    parser.add_argument(
        "--client-cpu",
        type=int,
        default=1,
        help="CPU the load generator, wrk and this script run on (1)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.rounds = 1
    if opts.rounds < 1:
        parser.error("--rounds must be at least 1")
    opts.scenarios = [s.strip() for s in opts.scenarios.split(",") if s.strip()]
    unknown = [s for s in opts.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; from {', '.join(ALL_SCENARIOS)}")
    if not sys.platform.startswith("linux"):
        parser.error("Linux only: server CPU time and memory are read from /proc")
    opts.reference = (ROOT / opts.reference).resolve()
    if not opts.reference.is_file():
        parser.error(f"no reference server at {opts.reference}; give --reference PATH/TO/run.sh")
    bun = (ROOT / opts.bun).resolve()
    if not bun.is_file():
        found = shutil.which("bun")
        if not found:
            parser.error(f"no bun at {bun} nor on PATH; give --bun")
        bun = Path(found)
    opts.bun = bun
    if opts.python is None:
        venv = ROOT / ".venv" / "bin" / "python"
        opts.python = str(venv) if venv.exists() else sys.executable
    cpus = os.sched_getaffinity(0)
    if not {opts.server_cpu, opts.client_cpu} <= cpus or opts.server_cpu == opts.client_cpu:
        print(
            f"warning: CPUs {opts.server_cpu} and {opts.client_cpu} are not two distinct CPUs "
            f"of this process ({sorted(cpus)}); running unpinned",
            file=sys.stderr,
        )
        opts.server_cpu = opts.client_cpu = None
    return opts


def run_one(
    scenario: str, kind: str, size: dict[str, int], opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """One run of one scenario against one server; errors become {"error": ...}."""
    work.mkdir()
    t0 = time.monotonic()
    try:
        result = SCENARIOS[scenario](kind, size, opts, work)
    except BenchError as exc:
        result = {"error": str(exc)}
    except Exception as exc:  # a harness bug or an unexpected answer: report, go on
        result = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        stop_all()  # whatever a failed run left behind
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["wall_s"] = round(time.monotonic() - t0, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    sizes = QUICK if opts.quick else FULL
    _raise_nofile()
    if opts.client_cpu is not None:
        os.sched_setaffinity(0, {opts.client_cpu})

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    top = Path(tempfile.mkdtemp(prefix="objstore-bench-"))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    failures = 0
    started = time.monotonic()
    try:
        for scenario in opts.scenarios:
            size = sizes[scenario]
            results[scenario] = {s: [] for s in SERVERS}
            for rnd in range(opts.rounds):
                order = SERVERS if rnd % 2 == 0 else SERVERS[::-1]
                for kind in order:
                    work = top / f"{scenario}-{kind}-{rnd + 1}"
                    result = run_one(scenario, kind, size, opts, work)
                    result["round"] = rnd + 1
                    failures += "error" in result
                    results[scenario][kind].append(result)
                    print(
                        f"[{time.monotonic() - started:6.0f} s] {scenario} round {rnd + 1} "
                        f"{kind}: {brief(result)}",
                        file=sys.stderr,
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted: stopping everything started", file=sys.stderr)
        return 130
    finally:
        stop_all()
        if not opts.keep:
            shutil.rmtree(top, ignore_errors=True)
        else:
            print(f"temporary folders kept in {top}", file=sys.stderr)

    rows = build_table(results)
    print()
    print(
        f"objstore vs reference, {'quick, ' if opts.quick else ''}{opts.rounds} round(s); "
        f"server on CPU {opts.server_cpu}, load on CPU {opts.client_cpu}"
    )
    print()
    print(render_table(rows, opts.rounds))
    if opts.json:
        opts.json.write_text(
            json.dumps(
                {
                    "quick": opts.quick,
                    "rounds": opts.rounds,
                    "sizes": {s: sizes[s] for s in opts.scenarios},
                    "clock_ticks_per_s": CLK_TCK,
                    "results": results,
                    "table": rows,
                },
                indent=2,
                default=str,
            )
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
