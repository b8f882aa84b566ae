"""Real Redis servers for the tests: Debian's ``redis-server`` and ``redis-sentinel``.

Each runs on a free loopback port in a folder of its own, started from a
config file written here, and is stopped by its process id (never by a name
pattern). Where the programs are missing the tests that need them skip, with
the reason; under CI (``OBJSTORE_REQUIRE_REDIS=1``, set by ``.ci/run``, which
installs them) they fail instead, so that a missing install step shows.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import pytest

from .helpers import free_port

__all__ = ["RedisProcess", "SentinelProcess", "need_redis", "redis_ping"]


def need_redis(program: str = "redis-server") -> str:
    """The path of *program*; skips the test when it is missing (fails under CI)."""
    path = shutil.which(program) or (
        f"/usr/bin/{program}" if os.path.exists(f"/usr/bin/{program}") else None
    )
    if path is None:
        reason = (
            f"{program} is not installed (Debian: apt-get install redis-server redis-sentinel)"
        )
        if os.environ.get("OBJSTORE_REQUIRE_REDIS"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def redis_ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis answers PING on 127.0.0.1:*port*."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisProcess:
    """One ``redis-server`` on 127.0.0.1, persistence on (AOF) so that a restart keeps data."""

    folder: Path
    port: int = field(default_factory=free_port)
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    program: str = "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def config(self) -> str:
        return "\n".join(
            [
                f"port {self.port}",
                "bind 127.0.0.1",
                "protected-mode yes",
                f"dir {self.folder}",
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                "maxmemory-policy noeviction",
                f"logfile {self.folder / 'redis.log'}",
                *self.extra,
                "",
            ]
        )

    def start(self, timeout: float = 10) -> Self:
        program = need_redis(self.program)
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "redis.conf"
        conf.write_text(self.config())
        self.process = subprocess.Popen(
            [program, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not redis_ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"{program} did not start on port {self.port}:\n{log}")
            time.sleep(0.02)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it by its process id: SIGTERM (a clean stop) or SIGKILL."""
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def wait_replicating(self, timeout: float = 10) -> None:
        """Wait until this replica's link to its primary is up (the first sync done)."""
        deadline = time.monotonic() + timeout
        while True:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"INFO replication\r\n")
                time.sleep(0.05)
                if b"master_link_status:up" in sock.recv(65536):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica on port {self.port} did not sync")
            time.sleep(0.05)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: the process hangs (a network partition, as clients see it)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@dataclass
class SentinelProcess(RedisProcess):
    """One ``redis-sentinel`` watching the primary *master_port* as ``mymaster``."""

    master_port: int = 0
    program: str = "redis-sentinel"

    def config(self) -> str:
        return "\n".join(
            [
                f"port {self.port}",
                "bind 127.0.0.1",
                f"dir {self.folder}",
                f"logfile {self.folder / 'redis.log'}",
                f"sentinel monitor mymaster 127.0.0.1 {self.master_port} 1",
                "sentinel down-after-milliseconds mymaster 1000",
                "sentinel failover-timeout mymaster 5000",
                "sentinel parallel-syncs mymaster 1",
                *self.extra,
                "",
            ]
        )
