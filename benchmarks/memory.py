"""How much memory the server holds per stored key, as the system sees it (RSS).

Starts the real program as a subprocess (``python -m objstore --port 0``) and
reads its resident set size from ``/proc/PID/status`` (Linux only):

- ``empty``: a server on an empty cache folder, the baseline;
- ``loaded``: a server that loaded --keys files at start;
- ``set``: a server on an empty folder after --keys sets over one WebSocket
  connection, once every value is on disk;
- ``set again``: the same server once every key has been set a second time
  (what a burst of sets leaves behind in the allocator shows here).

Each figure is the server's RSS minus the empty server's, divided by the number
of keys. Keys are ``key-000000`` (10 bytes), values 30 bytes of compact JSON.

Usage: .venv/bin/python benchmarks/memory.py [--keys 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
BANNER_PORT = re.compile(r"ws://127\.0\.0\.1:(\d+)/ws")


def key_of(index: int) -> str:
    return f"key-{index:06d}"


def value_of(index: int, fill: str = "x") -> object:
    """A value whose compact JSON is 30 bytes: {"n":7,"t":"xxxxxxxxxxxxxxxxx"}."""
    padding = 30 - len(f'{{"n":{index},"t":""}}')
    return {"n": index, "t": fill * padding}


class Server:
    """The program on port 0, with *cache* as its folder."""

    def __init__(self, cache: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), CACHE_DIR=str(cache))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "objstore", "--port", "0", "--host", "127.0.0.1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = 0
        for line in self.process.stdout:
            match = BANNER_PORT.search(line)
            if match:
                self.port = int(match.group(1))
            if line.startswith("Press Ctrl+C"):
                break
        if not self.port:
            raise SystemExit("the server did not print its banner")

    def rss(self) -> int:
        """The server's resident set size in bytes, once it has settled."""
        time.sleep(1.0)
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert match is not None
        return int(match.group(1)) * 1024

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def prepare_folder(cache: Path, keys: int) -> None:
    cache.mkdir()
    for index in range(keys):
        data = json.dumps(value_of(index), separators=(",", ":"))
        (cache / f"{key_of(index)}.json").write_text(data, encoding="utf-8")


async def set_over_websocket(port: int, keys: int, fill: str) -> None:
    async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        for index in range(keys):
            message = {"action": "set", "key": key_of(index), "value": value_of(index, fill)}
            await ws.send(json.dumps(message))
        await ws.send(json.dumps({"action": "get", "key": key_of(keys - 1)}))
        await ws.recv()


def set_and_wait(server: Server, cache: Path, keys: int, fill: str) -> None:
    """Set every key over a WebSocket, then wait until the last one is on disk."""
    asyncio.run(set_over_websocket(server.port, keys, fill))
    last = cache / f"{key_of(keys - 1)}.json"
    expected = json.dumps(value_of(keys - 1, fill), separators=(",", ":")).encode()
    while not last.exists() or last.read_bytes().rstrip(b"\n") != expected:
        time.sleep(0.1)


def report(label: str, rss: int, empty: int, keys: int) -> None:
    print(f"{label:18}{rss / 2**20:8.1f} MiB, {(rss - empty) / keys:6.0f} bytes per key")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    args = parser.parse_args()
    keys: int = args.keys
    sample = len(key_of(0)), len(json.dumps(value_of(0), separators=(",", ":")))
    print(f"{keys} keys of {sample[0]} bytes, values of {sample[1]} bytes")
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        (root / "empty").mkdir()
        server = Server(root / "empty")
        empty = server.rss()
        server.stop()
        print(f"{'empty server':18}{empty / 2**20:8.1f} MiB")

        prepare_folder(root / "loaded", keys)
        server = Server(root / "loaded")
        report("loaded at start", server.rss(), empty, keys)
        server.stop()

        (root / "set").mkdir()
        server = Server(root / "set")
        set_and_wait(server, root / "set", keys, "x")
        report("set over a socket", server.rss(), empty, keys)
        set_and_wait(server, root / "set", keys, "y")
        report("set again", server.rss(), empty, keys)
        server.stop()


if __name__ == "__main__":
    main()
