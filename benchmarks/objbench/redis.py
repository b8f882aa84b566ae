"""A redis-server of a run's own, for --backend redis: fresh, on a free loopback port.

Started with `--save "" --appendonly no` by default (the store lives in memory for the
run; other persistence settings may be given), pinned to the server CPU, stopped by its pid
when the run ends. Knows nothing of objstore or scenarios.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from .procs import BenchError, free_port, spawn, stop

__all__ = ["RedisServer", "redis_ping"]


def redis_ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis answers PING on 127.0.0.1:*port*."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """redis-server on 127.0.0.1:PORT with its files in *folder*, pinned to *cpu*;
    *persistence*: its command-line settings of snapshots and the append-only file."""

    def __init__(
        self,
        program: str,
        folder: Path,
        cpu: int | None,
        persistence: tuple[str, ...] = ("--save", "", "--appendonly", "no"),
    ) -> None:
        self.program = program
        self.folder = folder
        self.cpu = cpu
        self.persistence = persistence
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 10) -> None:
        """Start it and wait until it answers PING; BenchError when it does not."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "redis.log"
        cmd = [
            self.program,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--dir",
            str(self.folder),
            *self.persistence,
            "--logfile",
            str(log),
        ]
        self.proc = spawn(
            cmd,
            cpu=self.cpu,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not redis_ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(
                    f"redis-server did not start on port {self.port}: {self.log_tail(300)}"
                )
            time.sleep(0.01)

    def log_tail(self, n: int = 400) -> str:
        """The last *n* characters of its log, on one line ("" without a log)."""
        try:
            return " ".join((self.folder / "redis.log").read_text(errors="replace")[-n:].split())
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM by pid (SIGKILL after 20 s)."""
        if self.proc is not None:
            stop(self.proc, signal.SIGTERM, 20)
