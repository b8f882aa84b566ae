"""The servers under test: objstore or the reference, each started fresh and stopped by pid.

Owns how each kind is started (command, environment, port, cache folder, log), readiness
(a WebSocket handshake), and a few reads through the protocol (gets after a restart).
Knows nothing of load generators, scenarios or results.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from .procs import ROOT, BenchError, cpu_seconds, free_port, sched_seconds, spawn, stop

__all__ = [
    "Server",
    "ServerOptions",
    "describe_exit",
    "get_many",
    "running",
    "ws_handshake",
]


class ServerOptions(Protocol):
    """What starting a server needs (Options has it, and so has an argparse namespace)."""

    @property
    def python(self) -> str: ...
    @property
    def reference(self) -> Path: ...
    @property
    def server_cpu(self) -> int | None: ...


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
        opts: ServerOptions,
        log: Path,
        durability: str = "async",
        *,
        extra_args: tuple[str, ...] = (),
        companions: tuple[int, ...] = (),
    ) -> None:
        self.kind = kind
        #: Pids whose CPU time counts as the server's (its redis-server, other instances).
        self.companions = companions
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
        """utime + stime in seconds; also keeps the schedstat figure in self.last_sched.

        Both include the companions' (a redis-server, other instances) when there are any.
        """
        if not self.alive():
            raise BenchError(f"{self.kind} died: {self.log_tail()}")
        pids = (self.pid, *self.companions)
        scheds = [sched_seconds(pid) for pid in pids]
        self.last_sched = None if None in scheds else sum(s for s in scheds if s is not None)
        return sum(cpu_seconds(pid) for pid in pids)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        return stop(self.proc, sig, timeout)

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
    opts: ServerOptions,
    log: Path,
    ready_timeout: float = 60.0,
    *,
    durability: str = "async",
    extra_args: tuple[str, ...] = (),
    companions: tuple[int, ...] = (),
) -> Iterator[Server]:
    """A started and ready server, stopped (by its pid) when the block ends."""
    server = Server(
        kind, cache_dir, opts, log, durability, extra_args=extra_args, companions=companions
    )
    try:
        server.start()
        server.wait_ready(ready_timeout)
        yield server
    finally:
        server.stop()


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
    """The values of *keys*, read with gets over one WebSocket connection."""
    try:
        return asyncio.run(_get_many(port, keys, timeout))
    except (OSError, TimeoutError) as exc:
        raise BenchError(f"gets after restart failed: {exc!r}") from None
    except Exception as exc:  # websockets' own errors (connection closed...)
        raise BenchError(f"gets after restart failed: {exc!r}") from None


def describe_exit(code: int | None) -> str:
    """An exit code as the table shows it: the number, or the signal that ended it."""
    if code is None:
        return "not started"
    if code < 0:
        return f"signal {-code}"
    return str(code)
