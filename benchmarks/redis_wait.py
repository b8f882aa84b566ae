"""What --redis-replicas costs: acknowledged sets per second with and without WAIT.

Starts a Redis primary and one replica (Debian's redis-server, free loopback ports,
stopped by process id) and, for each setting, one objstore on the primary; a Python
client keeps 4 connections x 32 acknowledged sets in flight for 3 s. Prints one line per
round and setting. The client is Python, so the figures are for the comparison between
the two settings, measured in the same run, not for objstore's top speed
(benchmarks/redis_scale.py measures that with the Bun load generator).

    python benchmarks/redis_wait.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.realredis import RedisProcess  # noqa: E402


async def load(port: int, seconds: float = 3, connections: int = 4, inflight: int = 32) -> float:
    """Acknowledged sets per second, *inflight* at a time on each of *connections*."""
    done = 0

    async def one(number: int) -> None:
        nonlocal done
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            sent = 0

            async def send() -> None:
                nonlocal sent
                message = {"action": "set", "key": f"k{number}/{sent % 100}", "value": sent}
                await ws.send(json.dumps({**message, "id": sent}))
                sent += 1

            for _ in range(inflight):
                await send()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                reply = json.loads(await ws.recv())
                assert reply.get("ok"), reply
                done += 1
                await send()

    await asyncio.gather(*(one(number) for number in range(connections)))
    return done / seconds


def start(url: str, replicas: int) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, "-m", "objstore", "--port", "0", "--redis", url]
    command += ["--redis-replicas", str(replicas)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert process.stdout is not None
    port = 0
    for line in process.stdout:
        found = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", line)
        if found:
            port = int(found.group(1))
        if line.startswith("Press"):
            return process, port
    raise RuntimeError("objstore did not start")


async def main(rounds: int) -> None:
    folder = Path(tempfile.mkdtemp())
    primary = RedisProcess(folder / "primary").start()
    replica = RedisProcess(folder / "replica", extra=(f"replicaof 127.0.0.1 {primary.port}",))
    replica.start().wait_replicating()
    try:
        for number in range(rounds):
            for replicas in (0, 1):
                process, port = start(primary.url, replicas)
                try:
                    rate = await load(port)
                finally:
                    process.terminate()
                    process.wait()
                print(f"round {number + 1}, --redis-replicas {replicas}: {rate:,.0f} sets/s")
    finally:
        replica.stop()
        primary.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args().rounds))
