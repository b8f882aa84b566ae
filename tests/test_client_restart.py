"""Watchers of both clients across many server restarts, with writers running."""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import objstore.client
import objstore.client.sync
from objstore.client import Change, ConnectionLostError, Delete, Incr, Set, Store

from .conftest import StartServer
from .helpers import free_port
from .test_program import Launcher

KEYS = [f"k/{i}" for i in range(20)]
RESTARTS = 8
KILLS = 3


@dataclass
class Follower:
    """What one watcher holds, and every revision it was given since its last reset."""

    held: dict[str, Any] = field(default_factory=dict)
    revs: list[int] = field(default_factory=list)
    resets: int = 0
    readies: int = 0

    def apply(self, change: Change) -> None:
        if change.kind == "reset":
            self.resets += 1
            self.held.clear()
            self.revs.clear()
        elif change.kind == "ready":
            self.readies += 1
        elif change.deleted:
            assert change.key is not None
            self.held.pop(change.key, None)
            self.revs.append(change.rev)
        else:
            assert change.key is not None
            self.held[change.key] = change.value
            self.revs.append(change.rev)


async def write_randomly(store: Store, seed: int, stop: asyncio.Event) -> int:
    """Random writes until *stop*; writes lost with the connection are simply dropped."""
    rng = random.Random(seed)
    acked = 0
    while not stop.is_set():
        key = rng.choice(KEYS)
        choice = rng.random()
        try:
            if choice < 0.4:
                await store.set(key, rng.randrange(1000))
            elif choice < 0.6:
                await store.incr(f"n/{seed}", 1)
            elif choice < 0.75:
                await store.delete(key)
            elif choice < 0.85:
                await store.patch(key, {"w": seed, "x": rng.randrange(9)})
            elif choice < 0.95:
                await store.batch([Set(key, seed), Incr(f"n/{seed}", 2), Delete(rng.choice(KEYS))])
            else:
                await store.set(f"online/{seed}", True, ephemeral=True)
            acked += 1
        except ConnectionLostError:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)
    return acked


async def follow(
    store: Store, follower: Follower, *, key: str | None = None, prefix: str | None = None
) -> None:
    async for change in store.watch(key=key, prefix=prefix):
        follower.apply(change)


def follow_blocking(url: str, follower: Follower, done: threading.Event) -> None:
    with objstore.client.sync.connect(url, min_backoff=0.02) as store:
        watch = store.watch(prefix="")
        while not done.is_set():
            change = watch.next(timeout=0.1)
            if change is not None:
                follower.apply(change)


async def test_watchers_end_with_the_servers_state_across_restarts(
    start_server: StartServer,
) -> None:
    """Restarted many times mid-watch, every watcher ends with the server's state, no repeats."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    server = await start_server(port=port)
    stop = asyncio.Event()
    async with (
        objstore.client.connect(url, min_backoff=0.02, max_backoff=0.2) as watching,
        objstore.client.connect(url, min_backoff=0.02, max_backoff=0.2) as writing,
    ):
        everything, some, one = Follower(), Follower(), Follower()
        blocking, blocking_done = Follower(), threading.Event()
        watchers = [
            asyncio.create_task(follow(watching, everything, prefix="")),
            asyncio.create_task(follow(watching, some, prefix="k/1")),
            asyncio.create_task(follow(watching, one, key="k/3")),
        ]
        thread = threading.Thread(target=follow_blocking, args=(url, blocking, blocking_done))
        thread.start()
        writers = [asyncio.create_task(write_randomly(writing, seed, stop)) for seed in range(3)]
        rng = random.Random(0)
        for _ in range(RESTARTS):
            await asyncio.sleep(rng.uniform(0.1, 0.3))
            await server.stop()
            await asyncio.sleep(rng.uniform(0.0, 0.15))
            server = await start_server(port=port)
        await asyncio.sleep(0.2)
        stop.set()
        acked = sum(await asyncio.gather(*writers))

        async with objstore.client.connect(url) as reader:
            final = {key: await reader.get(key) async for key in reader.keys(prefix="")}
            last = await reader.set("end", True)
        final["end"] = True

        # Updates reach a connection in revision order: once a watcher has the end
        # marker, so have the others of its connection, read or queued.
        for _ in range(1000):
            if all(f.revs and f.revs[-1] >= last for f in (everything, blocking)):
                break
            await asyncio.sleep(0.02)
        for _ in range(20):
            await asyncio.sleep(0.01)
        blocking_done.set()
        await asyncio.to_thread(thread.join)
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    assert acked > 100
    for follower, expected in [
        (everything, final),
        (blocking, final),
        (some, {k: v for k, v in final.items() if k.startswith("k/1")}),
        (one, {k: v for k, v in final.items() if k == "k/3"}),
    ]:
        assert follower.held == expected
        assert follower.revs == sorted(set(follower.revs))
        assert follower.resets == 0
        # A reconnection may span several restarts; each one ends with a ready change.
        assert 2 <= follower.readies <= RESTARTS + 1


async def test_watchers_are_reset_after_kill_9_and_end_with_the_servers_state(
    tmp_path: Path,
) -> None:
    """kill -9 mid-watch, writers running: each restart gives one reset, then the state."""
    port = free_port()
    launcher = Launcher("source", [sys.executable, "-m", "objstore"], None)
    args = ("--port", str(port), "--cache-dir", str(tmp_path / "cache"))
    program = await asyncio.to_thread(launcher.start, tmp_path, *args)
    url = f"ws://127.0.0.1:{port}/ws"
    stop = asyncio.Event()
    try:
        async with (
            objstore.client.connect(url, min_backoff=0.02, max_backoff=0.2) as watching,
            objstore.client.connect(url, min_backoff=0.02, max_backoff=0.2) as writing,
        ):
            everything = Follower()
            watcher = asyncio.create_task(follow(watching, everything, prefix=""))
            writers = [asyncio.create_task(write_randomly(writing, s, stop)) for s in range(2)]
            for kill in range(KILLS):
                for _ in range(1000):
                    if everything.readies == kill + 1:
                        break
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)
                await asyncio.to_thread(program.kill)
                program = await asyncio.to_thread(launcher.start, tmp_path, *args)
            stop.set()
            await asyncio.gather(*writers)
            async with objstore.client.connect(url) as reader:
                final = {key: await reader.get(key) async for key in reader.keys(prefix="")}
                last = await reader.set("end", True)
            final["end"] = True
            for _ in range(1000):
                if everything.revs and everything.revs[-1] >= last:
                    break
                await asyncio.sleep(0.02)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    finally:
        await asyncio.to_thread(program.kill)
    assert everything.held == final
    assert everything.revs == sorted(set(everything.revs))
    assert (everything.resets, everything.readies) == (KILLS, KILLS + 1)
