"""--durability memory and sync against a real server: what reaches disk, and when."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from objstore import diskio
from objstore.cli import _banner, parse_config
from objstore.foldernames import JOURNAL_NAME, file_name, spare_name
from objstore.server import ObjstoreServer

from .conftest import StartServer
from .helpers import assert_silent, http_request, recv_json


async def ask(ws: ClientConnection, message: dict[str, Any]) -> Any:
    """Send *message* and return the next message received."""
    await ws.send(json.dumps(message))
    return await recv_json(ws)


def ws_url(server: ObjstoreServer) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


# -- the flag ------------------------------------------------------------------------------


def test_durability_defaults_to_async() -> None:
    """Without the flag or the variable, writes are written behind, as before."""
    assert parse_config([], {}).durability == "async"


def test_durability_is_read_from_the_environment() -> None:
    """OBJSTORE_DURABILITY sets the mode, in any case."""
    assert parse_config([], {"OBJSTORE_DURABILITY": "SYNC"}).durability == "sync"


def test_an_unknown_durability_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A mode that does not exist exits 2 naming the modes and the value given."""
    with pytest.raises(SystemExit) as raised:
        parse_config(["--durability", "fast"], {})
    assert raised.value.code == 2
    assert "--durability must be one of memory, async, sync, got 'fast'" in capsys.readouterr().err


async def test_the_banner_says_when_nothing_is_kept(start_server: StartServer) -> None:
    """With memory the banner says no folder is used and that values are lost at a stop."""
    banner = _banner(await start_server(durability="memory"))
    assert "  Cache      none: values are kept in memory only and lost when it stops\n" in banner
    assert "  Durability memory (--durability memory): nothing is written to disk\n" in banner


async def test_the_banner_says_when_writes_are_synced(start_server: StartServer) -> None:
    """With sync the banner says each write is on disk before it is acknowledged."""
    banner = _banner(await start_server(durability="sync"))
    assert "  Durability sync: each write is on disk (fsync) before it is acknowledged\n" in banner


async def test_the_banner_says_nothing_of_the_default(start_server: StartServer) -> None:
    """The default, async, adds no line to the banner."""
    assert "Durability" not in _banner(await start_server())


# -- the flush itself ------------------------------------------------------------------------


def test_flush_to_disk_uses_fsync_on_linux(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Elsewhere than macOS a file is flushed with os.fsync."""
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        diskio.flush_to_disk(fd, "linux")
    finally:
        os.close(fd)
    assert calls == [fd]


def test_flush_to_disk_asks_the_drive_to_flush_on_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    """On macOS F_FULLFSYNC is asked for, and fsync is not needed after it."""
    import fcntl

    calls: list[tuple[str, int, int]] = []
    monkeypatch.setattr(fcntl, "F_FULLFSYNC", 51, raising=False)
    monkeypatch.setattr(fcntl, "fcntl", lambda fd, op: calls.append(("fcntl", fd, op)))
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(("fsync", fd, 0)))
    diskio.flush_to_disk(7, "darwin")
    assert calls == [("fcntl", 7, 51)]


def test_flush_to_disk_falls_back_to_fsync_where_the_full_flush_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file system that refuses F_FULLFSYNC still gets an fsync."""
    import fcntl

    calls: list[str] = []

    def refuse(fd: int, op: int) -> None:
        calls.append("fcntl")
        raise OSError(45, "Operation not supported")

    monkeypatch.setattr(fcntl, "F_FULLFSYNC", 51, raising=False)
    monkeypatch.setattr(fcntl, "fcntl", refuse)
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync"))
    diskio.flush_to_disk(7, "darwin")
    assert calls == ["fcntl", "fsync"]


def test_a_folder_is_not_flushed_on_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows cannot open a folder to flush it: nothing is opened or flushed."""
    calls: list[str] = []
    monkeypatch.setattr(os, "open", lambda *args: calls.append("open"))
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync"))
    diskio.flush_folder(str(tmp_path), "win32")
    assert calls == []


def test_a_folder_is_flushed_through_its_own_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Linux the folder is opened and fsynced, and the descriptor closed."""
    flushed: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    diskio.flush_folder(str(tmp_path), "linux")
    assert flushed == [str(tmp_path)]


# -- memory ----------------------------------------------------------------------------------


async def test_memory_creates_no_cache_folder(start_server: StartServer, cache_dir: Path) -> None:
    """With memory, sets are acknowledged and no folder, file or lock is ever made."""
    server = await start_server(durability="memory")
    async with client_for(server) as ws:
        assert await ask(ws, {"action": "set", "key": "k", "value": 1, "id": 1}) == {
            "id": 1,
            "ok": True,
            "rev": 1,
        }
        await ask(ws, {"action": "set", "key": "t", "value": 1, "ttl": 60, "id": 2})
    await server.stop()
    assert not cache_dir.exists()


async def test_memory_keeps_revisions_ttl_and_resume_within_the_process(
    start_server: StartServer,
) -> None:
    """Revisions, deadlines and a resume from a revision work as with a folder."""
    server = await start_server(durability="memory")
    async with client_for(server) as ws, client_for(server) as watcher:
        await ask(ws, {"action": "set", "key": "a", "value": 1, "id": 1})
        await ask(ws, {"action": "set", "key": "b", "value": 2, "ttl": 0.2, "id": 2})
        await ask(ws, {"action": "set", "key": "a", "value": 3, "id": 3})
        await watcher.send(json.dumps({"action": "subscribe", "prefix": "", "id": 9, "since": 1}))
        first = [await recv_json(watcher) for _ in range(3)]
        assert (first[0]["key"], first[0]["rev"]) == ("b", 2)
        assert first[1:] == [
            {"key": "a", "value": 3, "rev": 3},
            {"id": 9, "ok": True, "rev": 3, "reset": False},
        ]
        assert await recv_json(watcher) == {
            "key": "b",
            "value": None,
            "rev": 4,
            "deleted": True,
            "expired": True,
        }


async def test_memory_keeps_ephemeral_keys_until_their_owner_leaves(
    start_server: StartServer,
) -> None:
    """An ephemeral key of a memory server goes with its connection, subscribers told."""
    server = await start_server(durability="memory")
    async with client_for(server) as watcher:
        await ask(watcher, {"action": "subscribe", "prefix": "online/", "id": 0})
        async with client_for(server) as player:
            reply = await ask(
                player,
                {"action": "set", "key": "online/ann", "value": 1, "ephemeral": True, "id": 1},
            )
            assert reply == {"id": 1, "ok": True, "rev": 1}
            assert (await recv_json(watcher))["rev"] == 1
        assert await recv_json(watcher) == {
            "key": "online/ann",
            "value": None,
            "rev": 2,
            "deleted": True,
        }


async def test_memory_starts_empty_every_time(start_server: StartServer) -> None:
    """Nothing of a stopped memory server comes back at the next start."""
    server = await start_server(durability="memory")
    async with client_for(server) as ws:
        await ask(ws, {"action": "set", "key": "k", "value": 1, "id": 1})
    await server.stop()
    server = await start_server(durability="memory")
    assert (len(server.store), server.store.rev) == (0, 0)


# -- sync ------------------------------------------------------------------------------------


class DiskWatch:
    """Records what is flushed to disk (by path), and can hold the folder's flush."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.flushed: list[str] = []
        self.folder_flushes = 0
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        real = diskio.flush_to_disk

        def flush_to_disk(fd: int, platform: str = "linux") -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if os.path.isdir(path):
                self.entered.set()
                self.release.wait(10)
                self.folder_flushes += 1
            real(fd, platform)
            self.flushed.append(path)

        for module in ("diskio", "swapwrite", "statefiles"):
            monkeypatch.setattr(f"objstore.{module}.flush_to_disk", flush_to_disk)

    def reset(self) -> None:
        """Forget what was flushed so far (the state files, at start)."""
        self.flushed.clear()
        self.folder_flushes = 0
        self.entered.clear()


pytestmark_linux = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to name what is flushed"
)


@pytestmark_linux
async def test_sync_acknowledges_once_the_journal_is_flushed_then_flushes_the_file(
    start_server: StartServer, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With sync, an acknowledged set's journal record is fsynced before the ack; then its
    file and its folder are fsynced."""
    watch = DiskWatch(monkeypatch)
    server = await start_server(durability="sync")
    watch.reset()
    journal = str(cache_dir.resolve() / JOURNAL_NAME)
    async with client_for(server) as ws:
        for rev in (1, 2):  # a first write (rename), then a rewrite (name exchange)
            watch.flushed.clear()
            reply = await ask(ws, {"action": "set", "key": "k", "value": rev, "id": rev})
            assert reply == {"id": rev, "ok": True, "rev": rev}
            assert watch.flushed[:1] == [journal]
            await server.store.flush()
            # The value is flushed in the spare, before it takes the file's name.
            assert watch.flushed == [
                journal,
                str(cache_dir.resolve() / spare_name(file_name("k"))),
                str(cache_dir.resolve()),
            ]


@pytestmark_linux
async def test_sync_post_set_answers_once_the_file_and_the_folder_are_flushed(
    start_server: StartServer, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With sync, POST /set answers once the value's file and then its folder are fsynced."""
    watch = DiskWatch(monkeypatch)
    server = await start_server(durability="sync")
    watch.reset()
    answer = await http_request(server.port, "POST", "/set", '{"key": "k", "value": 1}')
    assert answer.status == 200
    assert watch.flushed == [
        str(cache_dir.resolve() / spare_name(file_name("k"))),
        str(cache_dir.resolve()),
    ]


@pytestmark_linux
async def test_sync_publishes_only_once_the_write_is_on_disk(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain set reaches subscribers only after its folder flush, which the test holds."""
    watch = DiskWatch(monkeypatch)
    server = await start_server(durability="sync")
    watch.reset()
    async with client_for(server) as ws, client_for(server) as watcher:
        await ask(watcher, {"action": "subscribe", "key": "k", "id": 0})
        watch.release.clear()
        await ws.send(json.dumps({"action": "set", "key": "k", "value": 1}))
        await asyncio.to_thread(watch.entered.wait, 5)
        await assert_silent(watcher, 0.3)
        watch.release.set()
        assert await recv_json(watcher) == {"key": "k", "value": 1, "rev": 1}


async def test_async_publishes_before_the_write(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without sync, subscribers hear of a set while its file is still being written."""
    server = await start_server()
    assert server.store.folder is not None
    disk = threading.Event()
    write = server.store.folder.write

    def slow_write(key: str, data: bytes) -> None:
        disk.wait(10)
        write(key, data)

    monkeypatch.setattr(server.store.folder, "write", slow_write)
    async with client_for(server) as ws, client_for(server) as watcher:
        await ask(watcher, {"action": "subscribe", "key": "k", "id": 0})
        await ws.send(json.dumps({"action": "set", "key": "k", "value": 1}))
        assert await recv_json(watcher) == {"key": "k", "value": 1, "rev": 1}
        disk.set()


@pytestmark_linux
async def test_sync_shares_one_folder_flush_among_concurrent_writers(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledged sets queued while a batch is flushed are flushed together: 20 sets made
    during the first one's folder flush cost one more journal flush, not 20."""
    watch = DiskWatch(monkeypatch)
    server = await start_server(durability="sync")
    watch.reset()
    async with client_for(server) as first:
        others = [await client_for(server).__aenter__() for _ in range(20)]
        try:
            watch.release.clear()
            await first.send(json.dumps({"action": "set", "key": "k0", "value": 0, "id": 0}))
            await asyncio.to_thread(watch.entered.wait, 5)
            for number, ws in enumerate(others, 1):
                await ws.send(
                    json.dumps({"action": "set", "key": f"k{number}", "value": 1, "id": 1})
                )
            await asyncio.sleep(0.2)  # all of them queued behind the held flush
            watch.release.set()
            replies = [await recv_json(ws) for ws in [first, *others]]
        finally:
            for ws in others:
                await ws.close()
    assert [reply["ok"] for reply in replies] == [True] * 21
    assert watch.flushed.count(str(server.config.cache_dir.resolve() / JOURNAL_NAME)) == 2


@pytestmark_linux
async def test_sync_publishes_in_revision_order(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain sets, acknowledged sets, ephemeral sets and deletions reach a subscriber in the
    order of their revisions, though some wait for the disk and some do not; of those that
    waited for the same batch, the latest of each key."""
    watch = DiskWatch(monkeypatch)
    server = await start_server(durability="sync")
    watch.reset()
    async with client_for(server) as ws, client_for(server) as watcher:
        await ask(watcher, {"action": "subscribe", "prefix": "", "id": 0})
        watch.release.clear()
        messages: list[dict[str, Any]] = [
            {"action": "set", "key": "a", "value": 1},
            {"action": "set", "key": "b", "value": 2, "id": 1},
            {"action": "set", "key": "e", "value": 3, "ephemeral": True, "id": 2},
            {"action": "set", "key": "a", "value": 4},
            {"action": "delete", "key": "e", "id": 3},
            {"action": "delete", "key": "b"},
        ]
        for message in messages:
            await ws.send(json.dumps(message))
        await asyncio.sleep(0.2)
        watch.release.set()
        received = [await recv_json(watcher)]
        while received[-1]["rev"] < 6:
            received.append(await recv_json(watcher))
        await assert_silent(watcher)
    revs = [update["rev"] for update in received]
    assert revs == sorted(set(revs))
    # Updates waiting for the same batch keep only the latest of each key: b=2 and e=3 are
    # replaced by their deletions, and a=1 by a=4 unless a=1 was taken by the first batch.
    assert [(update["key"], update["rev"]) for update in received[-3:]] == [
        ("a", 4),
        ("e", 5),
        ("b", 6),
    ]
    assert revs in ([1, 4, 5, 6], [4, 5, 6])


@pytestmark_linux
async def test_sync_holds_one_update_per_key_while_the_disk_is_slow(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key set 1,000 times while a flush is held costs one waiting update, not 1,000:
    subscribers get the latest, after the one being written (unless the first set's
    update came just as its batch was taken, and so waited for the next batch, where the
    latest replaced it)."""
    watch = DiskWatch(monkeypatch)
    server = await start_server(durability="sync")
    watch.reset()
    async with client_for(server) as ws, client_for(server) as watcher:
        await ask(watcher, {"action": "subscribe", "key": "k", "id": 0})
        watch.release.clear()
        await ws.send(json.dumps({"action": "set", "key": "k", "value": 0}))
        await asyncio.to_thread(watch.entered.wait, 5)
        for value in range(1, 1000):
            await ws.send(json.dumps({"action": "set", "key": "k", "value": value}))
        await ask(ws, {"action": "get", "key": "k", "id": 1})  # all of them applied
        watch.release.set()
        received = [await recv_json(watcher)]
        if received[0]["value"] != 999:
            received.append(await recv_json(watcher))
        await assert_silent(watcher)
    assert received[-1] == {"key": "k", "value": 999, "rev": 1000}
    assert received[:-1] in ([], [{"key": "k", "value": 0, "rev": 1}])


def client_for(server: ObjstoreServer) -> Any:
    from websockets.asyncio.client import connect

    return connect(ws_url(server))
