"""Subscribers that stop reading: bounded memory, the latest value, nobody else slowed."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .conftest import Connect, StartServer
from .helpers import recv_json
from .test_program import Launcher

PAD = "x" * 1000  # 1 KB updates


async def synced_subscriber(ws: ClientConnection, key: str) -> None:
    await ws.send(json.dumps({"action": "subscribe", "key": key}))
    await ws.send(json.dumps({"action": "get", "key": "sync"}))
    assert (await recv_json(ws))["key"] == "sync"


async def publish(ws: ClientConnection, key: str, numbers: range) -> None:
    for n in numbers:
        await ws.send(json.dumps({"action": "set", "key": key, "value": {"n": n, "pad": PAD}}))


async def read_until(ws: ClientConnection, last: int, timeout: float) -> list[int]:
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            update = json.loads(await ws.recv())
            seen.append(update["value"]["n"])
            if seen[-1] == last:
                return seen


async def drain_until_closed(ws: ClientConnection) -> None:
    async with asyncio.timeout(30):
        while True:
            await ws.recv()


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


@pytest.mark.skipif(sys.platform != "linux", reason="reads server memory from /proc")
async def test_stopped_subscriber_costs_bounded_memory_and_gets_the_latest_value(
    tmp_path: Path,
) -> None:
    """60,000 updates of 1 KB to a subscriber that reads nothing grow the server by < 10 MB;
    a subscriber that keeps up gets every update in order; the stopped one, once it reads
    again, has the latest value within a second."""
    launcher = Launcher("source", [sys.executable, "-m", "objstore"], None)
    program = launcher.start(tmp_path)
    try:
        url = f"ws://127.0.0.1:{program.port}/ws"
        # max_queue=1: the client stops taking frames off the socket once one is waiting.
        async with connect(url, max_queue=1) as slow, connect(url) as fast, connect(url) as pub:
            await synced_subscriber(slow, "hot")
            await synced_subscriber(fast, "hot")
            before = rss_kib(program.process.pid)
            count = 60_000
            received: list[int] = []
            for start in range(0, count, 50):  # paced so that `fast` can keep up
                await publish(pub, "hot", range(start, start + 50))
                received += await read_until(fast, start + 49, 30)
            grown = rss_kib(program.process.pid) - before
            assert received == list(range(count))
            assert grown < 10 * 1024, f"server grew by {grown} KiB"
            started = time.monotonic()
            seen = await read_until(slow, count - 1, 1.0)
            assert time.monotonic() - started < 1.0
            assert len(seen) < count  # it was conflated, not sent everything
    finally:
        code, err = program.stop()
        assert code == 0, err


async def test_subscriber_that_never_drains_is_closed_with_a_reason(
    start_server: StartServer,
) -> None:
    """A connection blocked for longer than the stall timeout is closed with 1008."""
    server = await start_server(stall_timeout=0.5)
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with connect(url, max_queue=1) as slow, connect(url) as pub:
        await synced_subscriber(slow, "hot")
        slow.transport.pause_reading()  # read nothing at all
        value = "y" * 64_000
        for n in range(400):  # 25 MB: more than the socket buffers hold
            await pub.send(
                json.dumps({"action": "set", "key": "hot", "value": {"n": n, "v": value}})
            )
        await pub.send(json.dumps({"action": "get", "key": "sync"}))
        await recv_json(pub, timeout=30)
        await asyncio.sleep(1.0)
        slow.transport.resume_reading()
        with pytest.raises(ConnectionClosed) as closed:
            await drain_until_closed(slow)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        assert closed.value.rcvd.reason == "too slow: nothing could be sent for 0.5 seconds"
    await asyncio.sleep(0.1)
    assert server.hub.subscribers("hot") == 0


async def test_large_updates_are_framed_correctly(client: Connect) -> None:
    """Updates of every frame length form (7, 16 and 64 bits) reach the client intact."""
    async with client(max_size=None) as ws:
        await ws.send(json.dumps({"action": "subscribe", "key": "big"}))
        for size in (10, 200, 70_000):
            await ws.send(json.dumps({"action": "set", "key": "big", "value": "z" * size}))
            assert await recv_json(ws) == {"key": "big", "value": "z" * size}
