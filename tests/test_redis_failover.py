"""A primary that fails over under Sentinel: instances follow the new primary by themselves.

Real processes: a primary ``redis-server``, a replica of it, and one
``redis-sentinel`` watching them (quorum 1, a primary is down after 1 s of
silence), each on a free loopback port, stopped by process id. The objstore
instance runs in this process with ``--redis redis+sentinel://...``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from objstore.config import Config
from objstore.server import ObjstoreServer

from .helpers import recv_json
from .realredis import RedisProcess, SentinelProcess


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisProcess, RedisProcess, SentinelProcess]]:
    primary = RedisProcess(tmp_path / "primary").start()
    replica = RedisProcess(
        tmp_path / "replica", extra=(f"replicaof 127.0.0.1 {primary.port}",)
    ).start()
    replica.wait_replicating()
    sentinel = SentinelProcess(tmp_path / "sentinel", master_port=primary.port).start()
    yield primary, replica, sentinel
    for process in (sentinel, replica, primary):
        process.stop()


@pytest.fixture
async def instance(
    cluster: tuple[RedisProcess, RedisProcess, SentinelProcess], tmp_path: Path
) -> AsyncIterator[ObjstoreServer]:
    _, _, sentinel = cluster
    url = f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster/0"
    server = ObjstoreServer(Config(port=0, cache_dir=tmp_path / "unused", redis_url=url))
    await server.start()
    yield server
    await server.stop()


async def request(client: ClientConnection, **message: Any) -> Any:
    await client.send(json.dumps(message))
    while True:
        reply = await recv_json(client, timeout=10)
        if reply.get("id") == message["id"]:
            return reply


async def test_writes_resume_on_the_new_primary_after_a_failover(
    cluster: tuple[RedisProcess, RedisProcess, SentinelProcess], instance: ObjstoreServer
) -> None:
    """kill -9 of the primary: writes fail (code storage) until Sentinel promotes the
    replica, then succeed without a restart; every write acknowledged before the
    failover and replicated is still there; the time writes failed is printed."""
    primary, replica, _ = cluster
    async with connect(f"ws://127.0.0.1:{instance.port}/ws") as client:
        for n in range(100):
            assert (await request(client, action="set", key=f"k{n}", value=n, id=n))["ok"]
        await _wait_replicated(replica, 100)
        await asyncio.to_thread(primary.kill)
        failed_at = time.monotonic()
        failures = 0
        n = 100
        while True:
            reply = await request(client, action="set", key="after", value=n, id=n)
            if reply.get("ok"):
                break
            assert reply["code"] == "storage", reply
            failures += 1
            assert time.monotonic() - failed_at < 30, "no new primary after 30 s"
            await asyncio.sleep(0.1)
            n += 1
        print(f"writes failed for {time.monotonic() - failed_at:.1f} s ({failures} refused)")
        for m in range(100):
            assert (await request(client, action="get", key=f"k{m}", id=f"g{m}"))["value"] == m
    async with connect(f"ws://127.0.0.1:{instance.port}/ws") as fresh:
        read = await request(fresh, action="get", key="after", id="a")
        assert read["value"] == n


async def _wait_replicated(replica: RedisProcess, keys: int) -> None:
    import redis as redis_library

    client = redis_library.Redis(port=replica.port)
    try:
        deadline = time.monotonic() + 10
        while await asyncio.to_thread(client.hlen, "{objstore}:v") < keys:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        client.close()


async def test_with_replicas_required_a_write_waits_for_them_or_fails(
    cluster: tuple[RedisProcess, RedisProcess, SentinelProcess], tmp_path: Path
) -> None:
    """--redis-replicas 1: a write is acknowledged once the replica has it; with the
    replica paused it fails with code storage after a second, saying why."""
    _, replica, sentinel = cluster
    url = f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster/0"
    config = Config(port=0, cache_dir=tmp_path / "unused", redis_url=url, redis_replicas=1)
    server = ObjstoreServer(config)
    await server.start()
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as client:
            first = await request(client, action="set", key="k", value=1, id=1)
            assert first.get("ok") is True, first
            replica.pause()
            try:
                started = time.monotonic()
                reply = await request(client, action="set", key="k", value=2, id=2)
                assert time.monotonic() - started >= 0.9
            finally:
                replica.resume()
            assert reply["code"] == "storage"
            assert "confirmed by 0 of 1 replicas within 1000 ms" in reply["error"]
    finally:
        await server.stop()
