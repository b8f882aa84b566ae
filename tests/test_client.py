"""The asyncio client against a real server: every operation, watches, errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

import objstore.client
from objstore.client import (
    Change,
    ConflictError,
    ConnectionLostError,
    Delete,
    Entry,
    Incr,
    InvalidKeyError,
    InvalidMessageError,
    InvalidValueError,
    Patch,
    Set,
    Store,
    TooLargeError,
)

from .conftest import StartServer


@pytest.fixture
async def store(ws_url: str) -> AsyncIterator[Store]:
    async with objstore.client.connect(ws_url) as connected:
        yield connected


async def until_ready(watch: objstore.client.Watch) -> list[Change]:
    changes = []
    async for change in watch:
        changes.append(change)
        if change.kind == "ready":
            return changes
    raise AssertionError("the watch ended before its ready change")


async def test_set_returns_the_new_revision(store: Store) -> None:
    """set replies with the revision of the write, counting up."""
    assert [await store.set("a", 1), await store.set("b", 2)] == [1, 2]


async def test_get_returns_the_value_or_none(store: Store) -> None:
    """get gives the stored value, and None for a missing key."""
    await store.set("a", {"x": [1, 2]})
    assert (await store.get("a"), await store.get("missing")) == ({"x": [1, 2]}, None)


async def test_entry_returns_value_and_revision(store: Store) -> None:
    """entry gives Entry(key, value, rev), rev 0 when missing."""
    rev = await store.set("a", "v")
    assert await store.entry("a") == Entry("a", "v", rev)
    assert await store.entry("missing") == Entry("missing", None, 0)


async def test_delete_says_whether_a_value_was_removed(store: Store) -> None:
    """delete is True for a key with a value, then False."""
    await store.set("a", 1)
    assert [await store.delete("a"), await store.delete("a")] == [True, False]
    assert await store.get("a") is None


async def test_patch_merges_and_returns_the_new_value(store: Store) -> None:
    """patch applies an RFC 7386 merge patch and returns the result."""
    await store.set("doc", {"a": 1, "b": 2})
    assert await store.patch("doc", {"b": None, "c": 3}) == {"a": 1, "c": 3}


async def test_incr_adds_and_returns_the_new_number(store: Store) -> None:
    """incr starts a missing key at 0 and adds by (default 1)."""
    assert [await store.incr("n"), await store.incr("n", by=5), await store.incr("n", -2.5)] == [
        1,
        6,
        3.5,
    ]


async def test_if_rev_applies_on_a_match(store: Store) -> None:
    """A set with the key's current revision applies."""
    rev = await store.set("a", 1)
    assert await store.set("a", 2, if_rev=rev) == rev + 1


async def test_conflict_carries_the_current_revision_and_value(store: Store) -> None:
    """A set with a stale if_rev raises ConflictError with the key's rev and value."""
    rev = await store.set("a", "now")
    with pytest.raises(ConflictError) as caught:
        await store.set("a", "late", if_rev=rev - 1 if rev > 1 else 99)
    assert (caught.value.code, caught.value.rev, caught.value.value) == ("conflict", rev, "now")
    assert await store.get("a") == "now"


async def test_if_rev_zero_creates_only(store: Store) -> None:
    """if_rev=0 on an existing key is a conflict; delete, patch and incr take if_rev too."""
    await store.set("a", 1)
    for write in (
        store.set("a", 2, if_rev=0),
        store.delete("a", if_rev=0),
        store.patch("a", {}, if_rev=0),
        store.incr("a", if_rev=0),
    ):
        with pytest.raises(ConflictError):
            await write
    assert await store.get("a") == 1


async def test_ttl_expires_the_key(store: Store) -> None:
    """A set with ttl is gone after it."""
    await store.set("t", 1, ttl=0.2)
    await asyncio.sleep(0.5)
    assert await store.get("t") is None


async def test_ephemeral_key_goes_with_its_connection(ws_url: str, store: Store) -> None:
    """An ephemeral key is deleted when the connection that wrote it closes."""
    async with objstore.client.connect(ws_url) as owner:
        await owner.set("online/alice", True, ephemeral=True)
        assert await store.get("online/alice") is True
    for _ in range(50):
        if await store.get("online/alice") is None:
            break
        await asyncio.sleep(0.02)
    assert await store.get("online/alice") is None


async def test_entries_and_changes_tell_deadline_and_presence(ws_url: str, store: Store) -> None:
    """An entry and a watched change say a key's deadline (ms since the epoch) and whether it
    is ephemeral."""
    before = int(time.time() * 1000)
    await store.set("t", 1, ttl=60)
    entry = await store.entry("t")
    assert before + 60_000 <= (entry.expires or 0) <= int(time.time() * 1000) + 60_000
    assert entry.ephemeral is False
    async with objstore.client.connect(ws_url) as owner:
        await owner.set("e", 2, ephemeral=True)
        assert (await store.entry("e")).ephemeral is True
        changes = store.watch(prefix="")
        seen = [await anext(changes) for _ in range(3)]
        await changes.aclose()
    assert [(c.key, c.expires, c.ephemeral) for c in seen[:2]] == [
        ("t", entry.expires, False),
        ("e", None, True),
    ]
    assert seen[2].kind == "ready"


async def test_keys_pages_through_every_key(store: Store) -> None:
    """keys yields every key of the prefix in order, across pages."""
    for name in ["p/c", "p/a", "q/z", "p/b"]:
        await store.set(name, 1)
    assert [key async for key in store.keys(prefix="p/", page=2)] == ["p/a", "p/b", "p/c"]
    assert [key async for key in store.keys(prefix="")] == ["p/a", "p/b", "p/c", "q/z"]


async def test_key_details_tell_revision_time_size_and_deadline(store: Store) -> None:
    """key_details pages like keys, each key with what the server knows of it."""
    before = int(time.time() * 1000)
    await store.set("p/a", {"x": 1})
    await store.set("p/b", 2, ttl=30)
    await store.set("p/c", "e", ephemeral=True)
    await store.set("q", 0)
    found = [info async for info in store.key_details("p/", page=2)]
    after = int(time.time() * 1000)
    assert [(i.key, i.rev, i.size, i.ephemeral) for i in found] == [
        ("p/a", 1, 7, False),
        ("p/b", 2, 1, False),
        ("p/c", 3, 3, True),
    ]
    assert all(i.changed is not None and before <= i.changed <= after for i in found)
    assert found[0].expires is None
    assert found[1].expires is not None
    assert before + 30_000 <= found[1].expires <= after + 30_000


async def test_batch_returns_each_ops_result(store: Store) -> None:
    """A batch applies every op and returns what each returns alone."""
    await store.set("b", 1)
    results = await store.batch(
        [Set("a", 1), Incr("n", 2), Incr("n", 3), Delete("b"), Patch("d", {"x": 1})]
    )
    assert results == [2, 2, 5, True, {"x": 1}]


async def test_batch_error_names_the_op(store: Store) -> None:
    """A failing op fails the whole batch; the error carries its index."""
    rev = await store.set("b", 1)
    with pytest.raises(ConflictError) as caught:
        await store.batch([Set("a", 1), Delete("b", if_rev=rev + 7)])
    assert (caught.value.op, caught.value.rev, caught.value.value) == (1, rev, 1)
    assert await store.get("a") is None


async def test_errors_mirror_the_protocol_codes(store: Store) -> None:
    """Invalid keys, values, messages and limits raise their own classes."""
    with pytest.raises(InvalidKeyError, match="invalid key"):
        await store.set("", 1)
    await store.set("s", "text")
    with pytest.raises(InvalidValueError):
        await store.incr("s")
    with pytest.raises(InvalidMessageError):
        await store.set("a", 1, ttl=-1)
    with pytest.raises(TooLargeError):
        await store.batch([Set(f"k{i}", i) for i in range(1001)])


async def test_a_value_python_cannot_encode_is_refused_locally(store: Store) -> None:
    """A NaN never leaves the client: InvalidValueError, and the connection stays usable."""
    with pytest.raises(InvalidValueError, match="invalid value"):
        await store.set("a", float("nan"))
    assert await store.set("a", 1) == 1


async def test_watch_key_gives_snapshot_ready_then_changes(store: Store) -> None:
    """A key watch starts with the current value, a ready change, then every change."""
    rev = await store.set("k", 1)
    async with store.watch(key="k") as watch:
        assert await until_ready(watch) == [
            Change("update", "k", 1, rev),
            Change("ready", rev=rev),
        ]
        await store.set("k", 2)
        await store.delete("k")
        assert [await anext(watch), await anext(watch)] == [
            Change("update", "k", 2, rev + 1),
            Change("update", "k", None, rev + 2, deleted=True),
        ]


async def test_watch_prefix_sees_new_keys_only_of_its_prefix(store: Store) -> None:
    """A prefix watch gets changes of keys created later, and none outside the prefix."""
    async with store.watch(prefix="p/") as watch:
        assert await until_ready(watch) == [Change("ready", rev=0)]
        await store.set("q/x", 1)
        rev = await store.set("p/new", 2)
        assert await anext(watch) == Change("update", "p/new", 2, rev)


async def test_watch_reports_expiry(store: Store) -> None:
    """An expired key arrives as a deletion with expired=True."""
    async with store.watch(key="t") as watch:
        await until_ready(watch)
        rev = await store.set("t", 1, ttl=0.1)
        first = await anext(watch)
        assert first == Change("update", "t", 1, rev, expires=first.expires)
        assert first.expires is not None
        change = await asyncio.wait_for(anext(watch), 5)
        assert (change.deleted, change.expired, change.rev) == (True, True, rev + 1)


async def test_watch_since_gives_only_later_changes(store: Store) -> None:
    """A watch with since= gets only the keys changed after that revision."""
    old = await store.set("p/a", 1)
    newer = await store.set("p/b", 2)
    async with store.watch(prefix="p/", since=old) as watch:
        assert await until_ready(watch) == [
            Change("update", "p/b", 2, newer),
            Change("ready", rev=newer),
        ]


async def test_two_watches_of_one_target_both_get_changes(store: Store) -> None:
    """Closing one of two watches of the same prefix leaves the other subscribed."""
    first = store.watch(prefix="p/")
    second = store.watch(prefix="p/")
    await until_ready(first)
    await until_ready(second)
    await first.aclose()
    rev = await store.set("p/a", 1)
    assert await asyncio.wait_for(anext(second), 5) == Change("update", "p/a", 1, rev)
    await second.aclose()


async def test_an_overlapping_watch_still_gets_its_snapshot(store: Store) -> None:
    """A watch started while another covers its keys still receives its whole snapshot."""
    old = await store.set("p/old", 1)
    async with store.watch(prefix="") as everything:
        await until_ready(everything)
        async with store.watch(prefix="p/") as watch:
            fresh = await store.set("p/new", 2)
            changes = await until_ready(watch)
    assert Change("update", "p/old", 1, old) in changes
    assert changes[-1].kind == "ready"
    assert fresh > old


async def test_a_refused_watch_raises_its_error(store: Store) -> None:
    """A watch of an invalid key raises InvalidKeyError when read."""
    with pytest.raises(InvalidKeyError):
        await anext(store.watch(key=""))


async def test_connecting_to_nothing_raises_connection_lost() -> None:
    """connect to a port where nothing listens fails with ConnectionLostError."""
    from .helpers import free_port

    with pytest.raises(ConnectionLostError, match=r"cannot connect to ws://127\.0\.0\.1"):
        async with objstore.client.connect(f"ws://127.0.0.1:{free_port()}/ws", open_timeout=2):
            pass


async def test_a_write_in_flight_fails_when_the_connection_drops() -> None:
    """A request whose reply never comes fails with ConnectionLostError once the socket closes."""

    async def swallow_then_close(connection: ServerConnection) -> None:
        await connection.recv()
        await connection.close()

    async with serve(swallow_then_close, "127.0.0.1", 0) as silent:
        port = silent.sockets[0].getsockname()[1]
        async with objstore.client.connect(f"ws://127.0.0.1:{port}/ws", reconnect=False) as store:
            with pytest.raises(ConnectionLostError, match="lost before the reply"):
                await asyncio.wait_for(store.set("a", 1), 5)


async def test_without_reconnect_requests_after_a_loss_fail_at_once(
    start_server: StartServer,
) -> None:
    """With reconnect=False, a request after the server went away raises ConnectionLostError."""
    server = await start_server()
    async with objstore.client.connect(
        f"ws://127.0.0.1:{server.port}/ws", reconnect=False
    ) as store:
        await store.set("a", 1)
        await server.stop()
        await asyncio.sleep(0.1)
        with pytest.raises(ConnectionLostError):
            await asyncio.wait_for(store.get("a"), 5)


async def test_requests_wait_for_the_reconnection(start_server: StartServer) -> None:
    """A request sent while the server restarts is answered by the new server."""
    from .helpers import free_port

    port = free_port()
    server = await start_server(port=port)
    async with objstore.client.connect(f"ws://127.0.0.1:{port}/ws", min_backoff=0.05) as store:
        await store.set("a", 1)
        await server.stop()
        pending = asyncio.create_task(store.get("a"))
        await asyncio.sleep(0.3)
        await start_server(port=port)
        assert await asyncio.wait_for(pending, 10) == 1


async def test_a_request_gives_up_after_open_timeout(start_server: StartServer) -> None:
    """With the server gone for good, a request fails after open_timeout, not hangs."""
    server = await start_server()
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with objstore.client.connect(url, open_timeout=0.5, min_backoff=0.05) as store:
        await server.stop()
        await asyncio.sleep(0.1)
        with pytest.raises(ConnectionLostError, match="no connection to"):
            await asyncio.wait_for(store.get("a"), 5)


async def test_a_watch_resumes_across_a_restart(start_server: StartServer) -> None:
    """A watch gets the changes made while its server was down, once, after a ready."""
    from .helpers import free_port

    port = free_port()
    server = await start_server(port=port)
    url = f"ws://127.0.0.1:{port}/ws"
    async with objstore.client.connect(url, min_backoff=0.05) as store:
        first = await store.set("p/a", 1)
        async with store.watch(prefix="p/") as watch:
            await until_ready(watch)
            await server.stop()
            server = await start_server(port=port)
            async with objstore.client.connect(url) as other:
                second = await other.set("p/b", 2)
            assert await until_ready(watch) == [
                Change("update", "p/b", 2, second),
                Change("ready", rev=second),
            ]
    assert second > first


async def test_a_since_the_server_cannot_serve_gives_a_reset(store: Store) -> None:
    """A watch since a revision ahead of the store yields a reset, the full state, then ready."""
    rev = await store.set("p/a", 1)
    async with store.watch(prefix="p/", since=rev + 100) as watch:
        assert await until_ready(watch) == [
            Change("reset"),
            Change("update", "p/a", 1, rev),
            Change("ready", rev=rev),
        ]


async def test_a_watch_resumed_after_a_hand_edit_is_reset(
    start_server: StartServer, cache_dir: Path
) -> None:
    """A value file changed while the server was down empties its history: the watch is reset."""
    from .helpers import free_port

    port = free_port()
    server = await start_server(port=port)
    async with objstore.client.connect(f"ws://127.0.0.1:{port}/ws", min_backoff=0.05) as store:
        await store.set("a", 1)
        async with store.watch(key="a") as watch:
            await until_ready(watch)
            await server.stop()
            (cache_dir / "a.json").write_text("2", encoding="utf-8")
            await start_server(port=port)
            changes = await until_ready(watch)
    assert [(c.kind, c.key, c.value) for c in changes] == [
        ("reset", None, None),
        ("update", "a", 2),
        ("ready", None, None),
    ]
