"""The blocking client against a real server (run in a thread, the server on the test's loop)."""

from __future__ import annotations

import asyncio

import pytest

import objstore.client.sync
from objstore.client import (
    Change,
    ConflictError,
    ConnectionLostError,
    Delete,
    Entry,
    Incr,
    InvalidKeyError,
    Set,
)

from .conftest import StartServer
from .helpers import free_port


async def test_every_operation_answers_as_in_asyncio(ws_url: str) -> None:
    """set, get, entry, patch, incr, delete, keys and batch give the documented results."""

    def run() -> list[object]:
        with objstore.client.sync.connect(ws_url) as store:
            return [
                store.set("p/a", {"x": 1}),
                store.get("p/a"),
                store.entry("p/a"),
                store.patch("p/a", {"y": 2}),
                store.incr("n", by=4),
                store.delete("p/a"),
                store.get("p/a"),
                list(store.keys(prefix="", page=1)),
                [(i.key, i.rev, i.size) for i in store.key_details(page=1)],
                store.batch([Set("p/b", 1), Incr("n"), Delete("zz")]),
            ]

    assert await asyncio.to_thread(run) == [
        1,
        {"x": 1},
        Entry("p/a", {"x": 1}, 1),
        {"x": 1, "y": 2},
        4,
        True,
        None,
        ["n"],
        [("n", 3, 1)],
        [5, 5, False],
    ]


async def test_conflict_raises_with_the_current_revision(ws_url: str) -> None:
    """A stale if_rev raises ConflictError carrying the key's rev and value."""

    def run() -> tuple[int, object]:
        with objstore.client.sync.connect(ws_url) as store:
            store.set("a", "now")
            try:
                store.set("a", "late", if_rev=0)
            except ConflictError as exc:
                return exc.rev, exc.value
        raise AssertionError("no conflict")

    assert await asyncio.to_thread(run) == (1, "now")


async def test_server_errors_raise_their_class(ws_url: str) -> None:
    """An invalid key raises InvalidKeyError, and the connection stays usable."""

    def run() -> object:
        with objstore.client.sync.connect(ws_url) as store:
            with pytest.raises(InvalidKeyError):
                store.get("")
            return store.set("a", 1)

    assert await asyncio.to_thread(run) == 1


async def test_watch_is_a_blocking_iterator(ws_url: str) -> None:
    """watch() yields the snapshot, ready, then later changes; next() takes a timeout."""

    def run() -> list[Change | None]:
        with objstore.client.sync.connect(ws_url) as store:
            store.set("k", 1)
            with store.watch(key="k") as watch:
                seen: list[Change | None] = [next(watch), next(watch)]
                store.set("k", 2)
                seen.append(watch.next(timeout=5))
                seen.append(watch.next(timeout=0.1))
                return seen

    assert await asyncio.to_thread(run) == [
        Change("update", "k", 1, 1),
        Change("ready", rev=1),
        Change("update", "k", 2, 2),
        None,
    ]


async def test_connecting_to_nothing_raises_connection_lost() -> None:
    """connect to a port where nothing listens raises ConnectionLostError."""
    url = f"ws://127.0.0.1:{free_port()}/ws"

    def run() -> None:
        with objstore.client.sync.connect(url, open_timeout=2):
            pass

    with pytest.raises(ConnectionLostError, match="cannot connect"):
        await asyncio.to_thread(run)


async def test_requests_wait_for_the_reconnection(start_server: StartServer) -> None:
    """A blocking request during a restart is answered by the new server."""
    port = free_port()
    server = await start_server(port=port)
    store = objstore.client.sync.connect(f"ws://127.0.0.1:{port}/ws", min_backoff=0.05)
    await asyncio.to_thread(store.open)
    try:
        await asyncio.to_thread(store.set, "a", 1)
        await server.stop()
        pending = asyncio.create_task(asyncio.to_thread(store.get, "a"))
        await asyncio.sleep(0.3)
        await start_server(port=port)
        assert await asyncio.wait_for(pending, 10) == 1
    finally:
        await asyncio.to_thread(store.close)


async def test_without_reconnect_a_request_after_a_loss_fails(start_server: StartServer) -> None:
    """With reconnect=False, a request after the server stopped raises ConnectionLostError."""
    server = await start_server()
    store = objstore.client.sync.connect(f"ws://127.0.0.1:{server.port}/ws", reconnect=False)
    await asyncio.to_thread(store.open)
    try:
        await server.stop()
        await asyncio.sleep(0.1)
        with pytest.raises(ConnectionLostError):
            await asyncio.to_thread(store.get, "a")
    finally:
        await asyncio.to_thread(store.close)
