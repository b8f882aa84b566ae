"""How much memory the server holds per stored key, as the system sees it (RSS).

Starts the real program as a subprocess (``python -m objstore --port 0``) and
reads its resident set size from ``/proc/PID/status`` (Linux only):

- ``empty``: a server on an empty cache folder, the baseline;
- ``loaded``: a server that loaded --keys files at start;
- ``set``: a server on an empty folder after --keys sets over one WebSocket
  connection, once every value is on disk.

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


def value_of(index: int) -> object:
    """A value whose compact JSON is 30 bytes: {"n":7,"t":"xxxxxxxxxxxxxxxxx"}."""
    padding = 30 - len(f'{{"n":{index},"t":""}}')
    return {"n": index, "t": "x" * padding}


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


async def set_over_websocket(port: int, keys: int) -> None:
    async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        for index in range(keys):
            message = {"action": "set", "key": key_of(index), "value": value_of(index)}
            await ws.send(json.dumps(message))
        await ws.send(json.dumps({"action": "get", "key": key_of(keys - 1)}))
        await ws.recv()


def wait_for_file(path: Path) -> None:
    """Wait until the writer has written *path*, the last key set."""
    while not path.exists():
        time.sleep(0.1)


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
        print(f"empty server      {empty / 2**20:8.1f} MiB")

        prepare_folder(root / "loaded", keys)
        server = Server(root / "loaded")
        loaded = server.rss()
        server.stop()
        print(
            f"loaded at start   {loaded / 2**20:8.1f} MiB, "
            f"{(loaded - empty) / keys:6.0f} bytes per key"
        )

        (root / "set").mkdir()
        server = Server(root / "set")
        asyncio.run(set_over_websocket(server.port, keys))
        wait_for_file(root / "set" / f"{key_of(keys - 1)}.json")
        stored = server.rss()
        server.stop()
        print(
            f"set over a socket {stored / 2**20:8.1f} MiB, "
            f"{(stored - empty) / keys:6.0f} bytes per key"
        )


if __name__ == "__main__":
    main()
