"""What a new connection costs on websockets' own server: the floor of objstore's stack.

    python benchmarks/stackfloor.py [--connections 10000] [--rounds 3]
        [--reference PATH/TO/run.sh] [--bun PATH/TO/bun]

Three servers take the same wave of connections, one after the other, in each round:

* ``websockets``: websockets' asyncio server on uvloop (what objstore is built on), with
  a handler that answers a ``subscribe`` with a value and nothing else: no store, no
  routes, no access control; its ``process_request`` answers plain HTTP with 200;
* ``objstore``: ``python -m objstore``;
* ``reference``: the original's Bun server.

Each is pinned to CPU 0 and fresh; the load generator (``loadgen.ts connect``, pinned to
CPU 1) opens N connections, 256 handshakes in flight, each subscribing to one of 100
keys until it has the key's value. Reported per server (median of the rounds): new
connections per second, server CPU µs per connection (schedstat of the server's
threads between the wave's marks), and the server's RSS growth per open connection
(the connections of the wave, all still open, read when the last got its value).
If websockets' own server costs several times the reference per connection,
a target on connections can only be met by leaving that server.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from objbench.config import DEFAULT_BUN, DEFAULT_REFERENCE
from objbench.procs import (
    ROOT,
    free_port,
    raise_nofile,
    rss_kib,
    sched_seconds,
    spawn,
    stop,
    stop_all,
)

LOADGEN = ROOT / "benchmarks" / "loadgen.ts"

#: The floor: websockets' server with the least a client of this benchmark needs.
FLOOR_SERVER = textwrap.dedent(
    """
    import asyncio, http, json, sys
    import uvloop
    from websockets.asyncio.server import serve
    from websockets.http11 import Response
    from websockets.datastructures import Headers

    async def handler(ws):
        async for message in ws:
            data = json.loads(message)
            if data.get("action") == "subscribe":
                await ws.send(json.dumps({"key": data["key"], "value": {"k": 0}}))

    def plain_http(connection, request):
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        return Response(200, "OK", Headers([("Content-Length", "2")]), b"{}")

    async def main():
        async with serve(handler, "127.0.0.1", int(sys.argv[1]), compression=None,
                         ping_interval=None, process_request=plain_http, backlog=4096):
            print("ready", flush=True)
            await asyncio.Future()

    uvloop.run(main())
    """
)


def start(kind: str, port: int, work: Path, opts: argparse.Namespace) -> subprocess.Popen[bytes]:
    log = open(work / f"{kind}.log", "ab")  # noqa: SIM115  # closed with the process
    if kind == "websockets":
        script = work / "floor.py"
        script.write_text(FLOOR_SERVER)
        cmd = [opts.python, str(script), str(port)]
        env = None
    elif kind == "objstore":
        cmd = [
            opts.python,
            "-m",
            "objstore",
            "--port",
            str(port),
            "--cache-dir",
            str(work / "cache"),
            "--log-level",
            "warning",
        ]
        env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    else:
        cmd = [str(opts.reference)]
        env = {
            "PORT": str(port),
            "CACHE_DIR": str(work / "refcache"),
            "QUIET": "1",
            "PATH": "/usr/bin:/bin",
        }
    return spawn(cmd, cpu=0, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit("server never listened")


def one_run(kind: str, opts: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="stackfloor-") as tmp:
        work = Path(tmp)
        port = free_port()
        proc = start(kind, port, work, opts)
        try:
            wait_listening(port, proc)
            time.sleep(0.5)
            rss_before = rss_kib(proc.pid)
            gen = spawn(
                [
                    str(opts.bun),
                    str(LOADGEN),
                    "connect",
                    "--url",
                    f"ws://127.0.0.1:{port}/ws",
                    "--connections",
                    str(opts.connections),
                    "--inflight",
                    "256",
                    "--setup",
                    "0" if kind == "websockets" else "1",
                ],
                cpu=1,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.PIPE,
            )
            assert gen.stdout is not None
            marks: dict[str, float] = {}
            rss_open = None
            final: dict[str, Any] = {}
            for raw in gen.stdout:
                line = json.loads(raw)
                if "mark" in line:
                    marks[line["mark"]] = sched_seconds(proc.pid) or 0.0
                    if line["mark"] == "wave_end":  # every connection open (closed next)
                        rss_open = rss_kib(proc.pid)
                elif "scenario" in line or "error" in line:
                    final = line
                    break
            stop(gen, timeout=10)
            if "error" in final or final.get("failed"):
                raise SystemExit(f"{kind}: {final}")
            n = final["done"]
            return {
                "connections_per_s": final["connections_per_s"],
                "cpu_us_per_connection": (marks["wave_end"] - marks["wave_start"]) / n * 1e6,
                "kib_per_connection": (rss_open - rss_before) / n if rss_open else None,
            }
        finally:
            stop(proc, timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument("--reference", type=Path, default=ROOT / DEFAULT_REFERENCE)
    parser.add_argument("--bun", type=Path, default=ROOT / DEFAULT_BUN)
    opts = parser.parse_args(argv)
    raise_nofile()
    kinds = ("websockets", "objstore", "reference")
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    try:
        for round_ in range(opts.rounds):
            for kind in kinds if round_ % 2 == 0 else reversed(kinds):
                result = one_run(kind, opts)
                results[kind].append(result)
                print(f"round {round_ + 1} {kind}: {result}", file=sys.stderr, flush=True)
    finally:
        stop_all()
    fields = ("connections_per_s", "cpu_us_per_connection", "kib_per_connection")
    print(f"\n{opts.connections:,} connections, 256 in flight; medians of {opts.rounds} rounds\n")
    print("| Server | new connections/s | server CPU µs per connection | KiB per connection |")
    print("| --- | --- | --- | --- |")
    for kind in kinds:
        medians = [statistics.median(r[f] for r in results[kind]) for f in fields]
        print(f"| {kind} | {medians[0]:,.0f} | {medians[1]:.0f} | {medians[2]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
