"""Processes of a benchmark run: starting them pinned, stopping them by pid, and /proc readers.

Owns every child process the run starts (so that all can be stopped on an error or Ctrl+C),
the open-file limit, and the readings of CPU time and memory. Knows nothing of servers,
scenarios or results. Linux only (/proc).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
from contextlib import suppress
from pathlib import Path
from typing import Any

__all__ = [
    "CLK_TCK",
    "ROOT",
    "BenchError",
    "cpu_seconds",
    "free_port",
    "main_thread_seconds",
    "raise_nofile",
    "rss_kib",
    "sched_seconds",
    "spawn",
    "stop",
    "stop_all",
]

#: The repository: servers and load generators run from there.
ROOT = Path(__file__).resolve().parent.parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
TASKSET = shutil.which("taskset")
#: Open files wanted for 10,000 connections closed and 10,000 opened at once (reconnect).
WANTED_NOFILE = 65536


class BenchError(Exception):
    """A run that could not produce its numbers; the message says why."""


#: Every process this run started and has not yet reaped, by pid.
_children: dict[int, subprocess.Popen[bytes]] = {}


def raise_nofile() -> None:
    """Raise the open-file limit to the hard limit (and the hard one, when permitted).

    Children inherit it: the servers and the load generator hold tens of thousands of sockets.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < WANTED_NOFILE:
        with suppress(ValueError, OSError):  # only a privileged process may
            resource.setrlimit(resource.RLIMIT_NOFILE, (WANTED_NOFILE, WANTED_NOFILE))
            soft, hard = WANTED_NOFILE, WANTED_NOFILE
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def spawn(cmd: list[str], *, cpu: int | None, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start *cmd* pinned to *cpu*, in a session of its own (Ctrl+C reaches only the runner).

    taskset execs the command, so the pid is the command's own. The open-file limit was
    raised in this process (see raise_nofile), and children inherit it.
    """
    if cpu is not None and TASKSET:
        cmd = [TASKSET, "-c", str(cpu), *cmd]
    proc: subprocess.Popen[bytes] = subprocess.Popen(cmd, start_new_session=True, **kwargs)
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
    """Stop every process started by spawn that is still running, each by its pid."""
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
    """VmRSS of *pid* in KiB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    """A port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
