"""Resume under chaos: a reader cut off at random, resuming from its highest revision, ends exact.

One writer makes a few thousand random sets, deletes and patches over 50 keys
while a reader subscribes to every key (prefix ``""``) with ``since`` set to
the highest revision it has seen, applies what it receives, and after a
random number of messages drops its connection without a close handshake
(the transport aborted) and starts again. At the end the reader resumes once
more and must hold exactly the server's state. Before the reader starts, the
store has seen more changes than its history keeps, so the first
subscription (``since: 0``) is a reset with a full snapshot; every later
one, across a clean restart too, is told only what changed. Updates on one
connection come in revision order, which is what makes the highest revision
seen a safe place to resume from. In the slow variant the reader has a small
receive window, values are 16 KB and it stops reading now and then, so the
server holds only the latest update of each key for it while congested.

Until a close frame received while the server is closing is read (the test
expected to fail at the end), the restart waits websockets' close timeout
(10 s) for each connection open at the time.

The randomness is seeded: the seed is printed (pytest shows it on failure),
and ``OBJSTORE_CHAOS_SEED=<seed>`` repeats a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from objstore.config import Config
from objstore.keyspace import HISTORY_SIZE
from objstore.server import ObjstoreServer

from .conftest import StartServer
from .helpers import RawWebSocket, client_frame, recv_json

KEYS = [f"k{number:02}" for number in range(50)]
#: Random writes after the first fill.
WRITES = 4000
#: A reader drops its connection after 1 to this many messages.
MOST_MESSAGES = 50


def seeded() -> random.Random:
    seed = int(os.environ.get("OBJSTORE_CHAOS_SEED") or random.randrange(2**32))
    print(f"seed {seed}: OBJSTORE_CHAOS_SEED={seed} repeats this run")
    return random.Random(seed)


def random_write(rng: random.Random, padding: str = "") -> dict[str, Any]:
    key = rng.choice(KEYS)
    kind = rng.random()
    if kind < 0.15:
        return {"action": "delete", "key": key}
    if kind < 0.45:
        patch = {
            name: rng.choice([None, rng.randrange(100), "x"]) for name in rng.sample("abc", 2)
        }
        return {"action": "patch", "key": key, "value": patch}
    value = rng.choice([rng.randrange(1000), {"v": rng.randrange(1000)}, "text", [1, [2]]])
    if padding:
        value = {"v": value, "padding": padding}
    return {"action": "set", "key": key, "value": value}


@dataclass
class Stage:
    """The server of the moment, and how the run goes."""

    url: str
    port: int
    writer_done: bool = False
    #: Added to every value set, to make them large.
    padding: str = ""
    #: Whether the reader stops reading now and then, long enough to congest its socket.
    slow: bool = False
    writes_sent: int = 0
    #: Set once half of the writes are sent.
    halfway: asyncio.Event = field(default_factory=asyncio.Event)


async def reconnect(stage: Stage, *, small_window: bool = False) -> ClientConnection:
    """Connect to the server of the moment, waiting while it is down.

    *small_window*: a small receive buffer, so that a pause in reading soon congests
    the server's side of the connection.
    """
    while True:
        sock = socket.socket()
        if small_window:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", stage.port))
            return await connect(stage.url, sock=sock, ping_interval=None, max_size=None)
        except OSError:
            sock.close()
            await asyncio.sleep(0.02)


async def write(stage: Stage, rng: random.Random) -> None:
    """Send WRITES random writes; reconnect when cut.

    Every 100th has an id and is waited for (its file is written and flushed),
    which paces the writer by the disk.
    """
    ws = await reconnect(stage)
    try:
        while stage.writes_sent < WRITES:
            message = random_write(rng, stage.padding)
            with_id = stage.writes_sent % 100 == 99
            if with_id:
                message["id"] = stage.writes_sent
            try:
                await ws.send(json.dumps(message))
                if with_id:
                    await recv_json(ws, timeout=30)
            except ConnectionClosed:
                ws = await reconnect(stage)
            stage.writes_sent += 1
            if stage.writes_sent == WRITES // 2:
                stage.halfway.set()
            # Let the reader and the server have their turns between writes.
            await asyncio.sleep(0)
    finally:
        await ws.close()
    stage.writer_done = True


@dataclass
class Reader:
    """A client that keeps every key's value and the highest revision it has seen."""

    stage: Stage
    rng: random.Random
    state: dict[str, Any] = field(default_factory=dict)
    highest: int = 0
    #: (since, reset) of every subscription that got its reply.
    replies: list[tuple[int, bool]] = field(default_factory=list)
    #: The ``since`` of every subscription that began with a reset message.
    resets: list[int] = field(default_factory=list)
    cut: int = 0
    received: int = 0
    subscriptions: int = 0

    def apply(self, message: dict[str, Any], since: int, last: int) -> int:
        """Apply *message*; return the revision it brings (a reset brings none).

        *last* is the revision of the update before it on this connection: updates
        come in revision order, so that a client cut off midway has every change up
        to the highest revision it received.
        """
        if message.get("reset") is True and "rev" not in message:
            assert message == {"reset": True, "prefix": ""}
            assert last == 0
            self.resets.append(since)
            self.state.clear()
            return last
        assert set(message) <= {"key", "value", "rev", "deleted"}, message
        assert message["rev"] > last, (message, last)
        self.received += 1
        if message.get("deleted"):
            self.state.pop(message["key"], None)
        else:
            self.state[message["key"]] = message["value"]
        self.highest = max(self.highest, message["rev"])
        rev: int = message["rev"]
        return rev

    async def session(self, *, final: bool) -> None:
        """Subscribe from the highest revision and read; unless *final*, drop it at random."""
        ws = await reconnect(self.stage, small_window=self.stage.slow)
        self.subscriptions += 1
        request_id = self.subscriptions
        since = self.highest
        budget = None if final else self.rng.randint(1, MOST_MESSAGES)
        last = 0
        try:
            await ws.send(
                json.dumps({"action": "subscribe", "prefix": "", "since": since, "id": request_id})
            )
            while budget is None or budget > 0:
                try:
                    message = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    if self.stage.writer_done and not final:
                        break
                    continue
                decoded = json.loads(message)
                if decoded.get("id") == request_id:
                    assert decoded["ok"] is True, decoded
                    self.replies.append((since, decoded["reset"]))
                    if final:
                        return
                else:
                    last = self.apply(decoded, since, last)
                if budget is not None:
                    budget -= 1
                if self.stage.slow and self.rng.random() < 0.01:
                    await asyncio.sleep(0.8)
        except ConnectionClosed:
            return  # the server went away: start again
        finally:
            if final:
                await ws.close()
            else:
                # Gone at once, no close frame: a lost network.
                ws.transport.abort()
        self.cut += 1

    async def run(self) -> None:
        while not self.stage.writer_done:
            await self.session(final=False)
        await self.session(final=True)


async def server_state(url: str) -> tuple[dict[str, Any], int]:
    """Every key's value, read with ``keys`` and ``get``, and the store's revision."""
    state: dict[str, Any] = {}
    async with connect(url) as ws:
        await ws.send(json.dumps({"action": "keys", "limit": 1000, "id": "keys"}))
        listing = await recv_json(ws)
        assert listing["next"] is None
        for key in listing["keys"]:
            await ws.send(json.dumps({"action": "get", "key": key, "id": key}))
            reply = await recv_json(ws)
            state[key] = reply["value"]
        # A subscription to no key at all: its reply says the store's revision.
        await ws.send(json.dumps({"action": "subscribe", "prefix": "none/", "id": "rev"}))
        rev: int = (await recv_json(ws))["rev"]
    return state, rev


async def fill(url: str) -> None:
    """More sets than the history keeps, in batches, so that resuming from 0 is a reset."""
    sets = HISTORY_SIZE + 1000
    async with connect(url, max_size=None) as ws:
        for start in range(0, sets, 1000):
            ops = [
                {"action": "set", "key": KEYS[number % len(KEYS)], "value": number}
                for number in range(start, min(sets, start + 1000))
            ]
            await ws.send(json.dumps({"action": "batch", "ops": ops, "id": start}))
            assert (await recv_json(ws, timeout=30))["ok"] is True


async def run_chaos(cache_dir: Path, *, restart: bool = False, slow: bool = False) -> None:
    rng = seeded()
    config = Config(host="127.0.0.1", port=0, cache_dir=cache_dir, ping_interval=None)
    server = ObjstoreServer(config)
    await server.start()
    running = True
    try:
        stage = Stage(
            f"ws://127.0.0.1:{server.port}/ws",
            server.port,
            padding="x" * 16000 if slow else "",
            slow=slow,
        )
        await fill(stage.url)
        reader = Reader(stage, random.Random(rng.random()))
        # Something held from before, which the first resume's reset must drop.
        reader.state["gone"] = True
        writer = asyncio.create_task(write(stage, random.Random(rng.random())))
        reading = asyncio.create_task(reader.run())
        if restart:
            await stage.halfway.wait()
            port = server.port
            await server.stop()
            running = False
            # The same port, so that clients reconnect as they would to a restarted server.
            server = ObjstoreServer(Config(**{**_fields(config), "port": port}))
            await server.start()
            running = True
        await writer
        await reading
        state, rev = await server_state(stage.url)
        print(
            f"{reader.cut} cuts, {len(reader.replies)} resumes answered, "
            f"{reader.received} updates, store at revision {rev}"
        )
        assert reader.state == state
        assert reader.highest <= rev
        assert reader.cut >= (2 if slow else 10)
        # Only the subscriptions from 0 were resets; every resume from a revision the
        # reader saw was told only what changed.
        assert reader.resets[0] == 0
        assert set(reader.resets) == {0}
        assert all(reset is (since == 0) for since, reset in reader.replies)
        assert reader.replies[-1][0] > 0
    finally:
        if running:
            await server.stop()


def _fields(config: Config) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


async def test_a_resuming_reader_ends_with_the_servers_state(cache_dir: Path) -> None:
    """Cut off at random and resuming from its highest revision, a reader ends exact."""
    await run_chaos(cache_dir, restart=False)


async def test_a_resuming_reader_ends_exact_across_a_clean_restart(cache_dir: Path) -> None:
    """A clean restart in the middle keeps the history: resumes stay without reset."""
    await run_chaos(cache_dir, restart=True)


async def test_a_stopping_server_ends_the_connection_when_the_client_answers_its_close(
    start_server: StartServer,
) -> None:
    """The client's close frame answering the server's 1001 ends the TCP connection at once."""
    server = await start_server()
    ws = await RawWebSocket.connect(server.port)
    stopping = asyncio.create_task(server.stop())
    try:
        assert await ws.recv_frame() == (0x8, struct.pack("!H", 1001))
        await ws.send(client_frame(struct.pack("!H", 1001), opcode=0x8))
        assert await asyncio.wait_for(ws.reader.read(), 2) == b""
    finally:
        ws.close()
        await stopping


async def test_a_slow_resuming_reader_ends_with_the_servers_state(cache_dir: Path) -> None:
    """A reader that congests its socket, so gets only the latest update of a key, ends exact."""
    await run_chaos(cache_dir, slow=True)
