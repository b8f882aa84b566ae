"""Memory of a server whose clients stop reading: stalled subscribers, and a flood of gets.

Starts ``python -m objstore`` (on uvloop, then on asyncio's own loop) and prints how
much its resident memory grows in two cases:

* ``subscribers``: N subscribers of one hot key stop reading their sockets (they
  never call ``recv`` and their transports stop reading), and one publisher sets
  the key many times (2,000 sets of 64 KB by default). The server should keep
  about one pending update per key per stalled subscriber, whatever the number
  of sets.
* ``gets``: one client sets a 1 MiB value, then sends 1,500 ``get`` messages for it
  in one write and reads nothing. The server should stop handling its frames once
  its outgoing buffer is full.

Run from the repository (Linux, reads /proc)::

    .venv/bin/python benchmarks/stalled.py                  # 1, 8 and 64 subscribers
    .venv/bin/python benchmarks/stalled.py --subscribers 8 --loops uvloop

Figures are RSS growth in MiB, measured after the load and a short settle. Only
127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return kib / 1024


class Server:
    """``python -m objstore`` on a free port of 127.0.0.1, stopped by its process id."""

    def __init__(self, python: str, loop: str) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="objstore-stalled-")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CACHE_DIR": self.folder.name}
        if loop == "asyncio":
            env["OBJSTORE_LOOP"] = "asyncio"
        self.process = subprocess.Popen(
            [python, "-m", "objstore", "--port", "0", "--log-level", "warning"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            found = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", line)
            if found:
                self.url = f"ws://127.0.0.1:{found.group(1)}/ws"
                break
        else:
            raise RuntimeError("the server did not print its address")

    @property
    def rss(self) -> float:
        return rss_mib(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.folder.cleanup()


async def _sync(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"action": "get", "key": "sync"}))
    while json.loads(await ws.recv()).get("key") != "sync":
        pass


async def stalled_subscribers(server: Server, count: int, sets: int, size: int) -> float:
    """RSS growth (MiB) after *sets* sets of *size* bytes of a key with *count* stalled
    subscribers."""
    pad = "x" * size
    stalled = []
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            ws = await stack.enter_async_context(connect(server.url, max_queue=1))
            await ws.send(json.dumps({"action": "subscribe", "key": "hot"}))
            await _sync(ws)
            ws.transport.pause_reading()
            stalled.append(ws)
        publisher = await stack.enter_async_context(connect(server.url))
        await asyncio.sleep(0.2)
        before = server.rss
        for n in range(sets):
            await publisher.send(
                json.dumps({"action": "set", "key": "hot", "value": {"n": n, "pad": pad}})
            )
            if n % 500 == 499:
                await _sync(publisher)
        await _sync(publisher)
        await asyncio.sleep(0.5)
        return server.rss - before


async def get_flood(server: Server, gets: int) -> float:
    """RSS growth (MiB) after one client sends *gets* gets of a 1 MiB value and reads nothing."""
    async with connect(server.url, max_size=None, max_queue=1) as ws:
        await ws.send(json.dumps({"action": "set", "key": "big", "value": "b" * (1 << 20)}))
        await _sync(ws)
        ws.transport.pause_reading()
        await asyncio.sleep(0.2)
        before = server.rss
        message = json.dumps({"action": "get", "key": "big"}).encode()
        # One write of many masked frames, as a hostile client would send them.
        frames = b"".join(_masked_text_frame(message) for _ in range(gets))
        ws.transport.write(frames)
        peak = before
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            peak = max(peak, server.rss)
            await asyncio.sleep(0.05)
        return peak - before


def _masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", default="1,8,64", help="comma-separated counts")
    parser.add_argument("--sets", type=int, default=2000, help="sets of the hot key")
    parser.add_argument("--value-size", type=int, default=64_000, help="bytes per set")
    parser.add_argument("--gets", type=int, default=1500, help="gets of the 1 MiB value")
    parser.add_argument("--loops", default="uvloop,asyncio", help="comma-separated")
    parser.add_argument("--python", default=str(ROOT / ".venv/bin/python"))
    args = parser.parse_args()
    print("| loop | case | RSS growth |")
    print("| --- | --- | --- |")
    for loop in args.loops.split(","):
        for count in (int(n) for n in args.subscribers.split(",")):
            server = Server(args.python, loop)
            try:
                grown = await stalled_subscribers(server, count, args.sets, args.value_size)
            finally:
                server.stop()
            case = f"{count} stalled subscribers, {args.sets} sets of {args.value_size} B"
            print(f"| {loop} | {case} | {grown:.1f} MiB |")
        server = Server(args.python, loop)
        try:
            grown = await get_flood(server, args.gets)
        finally:
            server.stop()
        print(f"| {loop} | {args.gets} gets of 1 MiB, not read | {grown:.1f} MiB |")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
