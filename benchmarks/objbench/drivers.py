"""The load generator (benchmarks/loadgen.ts under Bun) and the readings taken around it.

Owns reading its JSON lines with a deadline, and the server's CPU time read at its phase
markers ({"phase": "start"/"end"}) or its named marks ({"mark": NAME}). Knows nothing of
which scenario runs, nor of the table.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol

from .procs import ROOT, BenchError, cpu_seconds, main_thread_seconds, spawn, stop
from .servers import Server

__all__ = [
    "LOADGEN",
    "LineReader",
    "Loadgen",
    "LoadgenOptions",
    "between",
    "log_fields",
    "main_between",
    "measure_marks",
    "measure_phase",
    "per_op_us",
]

LOADGEN = ROOT / "benchmarks" / "loadgen.ts"


class LoadgenOptions(Protocol):
    """What starting the load generator needs."""

    @property
    def bun(self) -> Path: ...
    @property
    def client_cpu(self) -> int | None: ...


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
        opts: LoadgenOptions,
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


def _checked(result: dict[str, Any] | None, code: int, gen: Loadgen, server: Server) -> None:
    if result is None:
        raise BenchError(
            f"the load generator printed no result (exit {code}); stderr: {gen.stderr_tail()}; "
            f"server: {server.log_tail(300)}"
        )
    if "error" in result:
        raise BenchError(f"load generator: {result['error']}; server: {server.log_tail(300)}")


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
    _checked(result, code, gen, server)
    assert result is not None
    if start is None or end is None:
        raise BenchError("the load generator printed no phase markers")
    if sched[0] is not None and sched[1] is not None:
        result["server_cpu_s_schedstat"] = round(sched[1] - sched[0], 6)
    result["server_cpu_s"] = round(end - start, 6)
    if own[3] > own[2]:
        # Busy fraction of the load generator's CPU: near 1 would make it the bottleneck.
        result["loadgen_cpu_fraction"] = round((own[1] - own[0]) / (own[3] - own[2]), 3)
    return result, start, end


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
    _checked(result, code, gen, server)
    assert result is not None
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


def log_fields(errors: tuple[int, str]) -> dict[str, Any]:
    """The server-log part of every scenario's result: how many errors, and the last."""
    return {"server_log_errors": errors[0], "server_log_last_error": errors[1]}


def per_op_us(cpu_s: float, ops: float) -> float | None:
    """Microseconds of CPU per operation; None when there was no operation."""
    return cpu_s * 1e6 / ops if ops else None
