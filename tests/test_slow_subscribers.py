"""Subscribers that stop reading: bounded memory, the latest value, nobody else slowed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from objstore.config import Config
from objstore.server import ObjstoreServer

from .conftest import Connect, StartServer
from .helpers import recv_json
from .realredis import RedisProcess
from .test_program import Launcher

PAD = "x" * 1000  # 1 KB updates


@pytest.fixture(params=["files", "redis"])
async def start_server(
    request: pytest.FixtureRequest, cache_dir: Path, tmp_path: Path
) -> AsyncIterator[StartServer]:
    """Servers on the cache folder, and (the same tests again) on a real Redis: slow
    subscribers are each instance's own business whatever keeps the store."""
    redis = RedisProcess(tmp_path / "redis").start() if request.param == "redis" else None
    started: list[ObjstoreServer] = []

    async def start(**overrides: Any) -> ObjstoreServer:
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "cache_dir": cache_dir}
        if redis is not None:
            settings["redis_url"] = redis.url
        server = ObjstoreServer(Config(**{**settings, **overrides}))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()
    if redis is not None:
        redis.stop()


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


def masked_text_frame(payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    assert len(payload) < 126
    return (
        bytes([0x81, 0x80 | len(payload)])
        + mask
        + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    )


LOOPS = [pytest.param("uvloop", id="uvloop"), pytest.param("asyncio", id="asyncio")]


def start_program(tmp_path: Path, loop: str) -> Any:
    env = {"OBJSTORE_LOOP": "asyncio"} if loop == "asyncio" else {}
    return Launcher("source", [sys.executable, "-m", "objstore"], None).start(tmp_path, env=env)


async def peak_growth(pid: int, before: int, seconds: float) -> int:
    peak = before
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, rss_kib(pid))
        await asyncio.sleep(0.05)
    return peak - before


@pytest.mark.skipif(sys.platform != "linux", reason="reads server memory from /proc")
@pytest.mark.parametrize("loop", LOOPS)
async def test_gets_sent_together_by_a_client_that_reads_nothing_cost_bounded_memory(
    tmp_path: Path, loop: str
) -> None:
    """1,500 gets of a 1 MiB value in one write, never read, grow the server by < 40 MiB
    (the replies are handled only as the socket takes them), and a later client is served."""
    program = start_program(tmp_path, loop)
    try:
        url = f"ws://127.0.0.1:{program.port}/ws"
        async with connect(url, max_size=None, max_queue=1) as flood:
            await flood.send(json.dumps({"action": "set", "key": "big", "value": "b" * 2**20}))
            await synced_subscriber(flood, "unused")
            flood.transport.pause_reading()
            before = rss_kib(program.process.pid)
            get = masked_text_frame(json.dumps({"action": "get", "key": "big"}).encode())
            flood.transport.write(get * 1500)
            grown = await peak_growth(program.process.pid, before, 3)
            assert grown < 40 * 1024, f"server grew by {grown} KiB"
            async with connect(url) as other:
                await other.send(json.dumps({"action": "get", "key": "sync"}))
                assert await recv_json(other) == {"key": "sync", "value": None}
            flood.transport.abort()  # it reads nothing: no closing handshake
    finally:
        code, err = program.stop()
        assert code == 0, err


@pytest.mark.skipif(sys.platform != "linux", reason="reads server memory from /proc")
@pytest.mark.parametrize("loop", LOOPS)
async def test_stalled_subscribers_cost_bounded_memory_on_both_loops(
    tmp_path: Path, loop: str
) -> None:
    """16 subscribers that stop reading, 600 sets of 64 KB: the server grows < 24 MiB (on
    uvloop it held about 8 MiB per stalled subscriber before writes were bounded per turn)."""
    program = start_program(tmp_path, loop)
    try:
        url = f"ws://127.0.0.1:{program.port}/ws"
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(16):
                ws = await stack.enter_async_context(connect(url, max_queue=1))
                await synced_subscriber(ws, "hot")
                ws.transport.pause_reading()
                # They read nothing: end them without a closing handshake.
                stack.callback(ws.transport.abort)
            pub = await stack.enter_async_context(connect(url))
            before = rss_kib(program.process.pid)
            pad = "x" * 64_000
            for n in range(600):
                await pub.send(json.dumps({"action": "set", "key": "hot", "value": [n, pad]}))
            await pub.send(json.dumps({"action": "get", "key": "sync"}))
            await recv_json(pub, timeout=30)
            grown = await peak_growth(program.process.pid, before, 0.5)
            assert grown < 24 * 1024, f"server grew by {grown} KiB"
    finally:
        code, err = program.stop()
        assert code == 0, err
