"""A full disk, a read-only folder, a folder deleted while running: real conditions, real server.

A tiny tmpfs gives a real full disk; ``chattr +i`` on the folder makes it refuse new
names, as a read-only folder does (a read-only remount is refused while the server
holds files open for writing). Tests that need them skip where they are not permitted.
Each test unmounts what it mounted, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from objstore.foldernames import file_name
from objstore.server import ObjstoreServer
from objstore.store import FOLD_CHECK_EVERY, UNJOURNALED_LIMIT

from .conftest import StartServer
from .helpers import http_request, recv_json


async def ask(ws: ClientConnection, message: dict[str, Any]) -> Any:
    """Send *message* and return the next message received."""
    await ws.send(json.dumps(message))
    return await recv_json(ws)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of its own, unmounted at the end; skipped where mounting is refused."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root in a Linux system): {exc}")
    try:
        yield mount_point
    finally:
        subprocess.run(["chattr", "-R", "-i", str(mount_point)], check=False, capture_output=True)
        unmounted = subprocess.run(["umount", str(mount_point)], check=False, capture_output=True)
        if unmounted.returncode:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


@pytest.fixture
def cache_dir(small_disk: Path) -> Path:
    """The cache folder, on the small disk (servers stop before it is unmounted)."""
    return small_disk / "cache"


def fill(disk: Path) -> Path:
    """Fill *disk* to the last byte with one file; return it."""
    filler = disk / "filler"
    chunk = b"\0" * (1 << 16)
    with open(filler, "wb", buffering=0) as stream:
        with contextlib.suppress(OSError):
            while True:
                stream.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                stream.write(b"\0")
    return filler


async def readiness(server: ObjstoreServer) -> int:
    return (await http_request(server.port, "GET", "/readyz")).status


async def ready_again(server: ObjstoreServer, seconds: float = 15) -> bool:
    """Wait until /readyz answers 200 (the retries run 0.1 s, 0.2 s, ... up to 5 s apart)."""
    for _ in range(int(seconds * 10)):
        if await readiness(server) == 200:
            return True
        await asyncio.sleep(0.1)
    return False


def stored(cache_dir: Path, key: str) -> Any:
    return json.loads((cache_dir / file_name(key)).read_bytes())


def every_file_parses(cache_dir: Path) -> bool:
    values = [p for p in cache_dir.iterdir() if p.name.endswith(".json")]
    for path in values:
        json.loads(path.read_bytes())
    return bool(values)


@contextlib.asynccontextmanager
async def client_of(server: ObjstoreServer) -> AsyncIterator[ClientConnection]:
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        yield ws


def immutable(path: Path, on: bool) -> None:
    """``chattr +i`` (or ``-i``) on *path*; skips the test where the file system refuses."""
    try:
        subprocess.run(
            ["chattr", "+i" if on else "-i", str(path)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"chattr is not available or not permitted here: {exc}")


BIG = "x" * 40_000  # needs new pages: a full tmpfs cannot take it


@pytest.mark.parametrize("durability", ["async", "sync"])
async def test_a_full_disk_fails_writes_and_heals_once_space_is_freed(
    start_server: StartServer, small_disk: Path, cache_dir: Path, durability: str
) -> None:
    """On a full disk, acknowledged sets are told `storage` and plain ones an error, the file
    keeps its
    last good value and /readyz says 503; once space is freed the pending value is written
    by itself and /readyz says 200."""
    server = await start_server(durability=durability)
    async with client_of(server) as ws:
        assert (await ask(ws, {"action": "set", "key": "k", "value": 1, "id": 1}))["ok"]
        await server.store.flush()  # acknowledged from the journal: now in its file too
        filler = fill(small_disk)
        reply = await ask(ws, {"action": "set", "key": "k", "value": BIG, "id": 2})
        assert (reply["code"], reply["id"]) == ("storage", 2)
        assert "no space left on device" in reply["error"].lower()
        await ws.send(json.dumps({"action": "set", "key": "plain", "value": BIG}))
        told = await recv_json(ws)  # the original protocol's error shape: no code
        assert list(told) == ["error"]
        assert told["error"].startswith('could not save key "plain" to ')
        assert told["error"].endswith(": No space left on device")
        assert stored(cache_dir, "k") == 1
        assert every_file_parses(cache_dir)
        assert await readiness(server) == 503
        filler.unlink()
        assert await ready_again(server)
    assert (stored(cache_dir, "k"), stored(cache_dir, "plain")) == (BIG, BIG)


async def test_sync_publishes_a_write_that_failed(
    start_server: StartServer, small_disk: Path
) -> None:
    """With sync, a write the disk refused is still published once tried: readers see it."""
    server = await start_server(durability="sync")
    async with client_of(server) as ws, client_of(server) as watcher:
        await ask(watcher, {"action": "subscribe", "key": "k", "id": 0})
        filler = fill(small_disk)
        reply = await ask(ws, {"action": "set", "key": "k", "value": BIG, "id": 1})
        assert reply["code"] == "storage"
        assert await recv_json(watcher) == {"key": "k", "value": BIG, "rev": 1}
        filler.unlink()


async def saved_then_read_only(
    server: ObjstoreServer, ws: ClientConnection, cache_dir: Path
) -> None:
    """Set k to 1, wait for its file, then make the folder refuse new names."""
    assert (await ask(ws, {"action": "set", "key": "k", "value": 1, "id": 1}))["ok"]
    await server.store.flush()
    immutable(cache_dir, True)


async def test_a_read_only_folder_fails_writes_and_heals_once_writable(
    start_server: StartServer, cache_dir: Path
) -> None:
    """A folder that refuses new names fails file writes with `storage` and keeps the old
    file, and the server writes the pending value by itself once the folder is writable."""
    server = await start_server()
    async with client_of(server) as ws:
        await saved_then_read_only(server, ws, cache_dir)
        try:
            reply = await http_request(server.port, "POST", "/set", '{"key": "k", "value": 2}')
            assert reply.status == 500
            assert "operation not permitted" in reply.body.decode().lower()
            assert stored(cache_dir, "k") == 1
            assert await readiness(server) == 503
        finally:
            immutable(cache_dir, False)
        assert await ready_again(server)
    assert stored(cache_dir, "k") == 2


async def test_a_read_only_folder_still_acknowledges_from_the_journal(
    start_server: StartServer, cache_dir: Path
) -> None:
    """An acknowledged set whose file cannot be written (a folder refusing new names) is
    acknowledged once in the journal, which it can still append to: a restart brings it
    back even if the file was never written."""
    server = await start_server()
    async with client_of(server) as ws:
        await saved_then_read_only(server, ws, cache_dir)
        try:
            reply = await ask(ws, {"action": "set", "key": "k", "value": 2, "id": 2})
            assert reply == {"id": 2, "ok": True, "rev": 2}
            await server.store.flush()  # the file write is tried: it fails
            assert await readiness(server) == 503
            assert stored(cache_dir, "k") == 1
            assert server.store.state is not None
            await asyncio.to_thread(server.store.state.close)  # as if killed
            server.store.state.write_snapshot = lambda *_, **__: 0  # type: ignore[method-assign]
            await server.stop()
        finally:
            immutable(cache_dir, False)
    assert stored(cache_dir, "k") == 1
    server = await start_server()
    assert server.store.get("k") == b"2"
    assert stored(cache_dir, "k") == 2


async def test_a_deleted_folder_is_created_again_with_every_key(
    start_server: StartServer, cache_dir: Path
) -> None:
    """After the folder is deleted, the next write creates it again and every key is written
    again, with the state files: a restart finds all keys at their revisions."""
    server = await start_server()
    async with client_of(server) as ws:
        for rev, key in enumerate(["a", "b", "c"], 1):
            await ask(ws, {"action": "set", "key": key, "value": rev, "id": rev})
        await asyncio.to_thread(shutil.rmtree, cache_dir)
        assert (await ask(ws, {"action": "set", "key": "d", "value": 4, "id": 4}))["ok"]
    await server.store.flush()
    assert {key: stored(cache_dir, key) for key in "abcd"} == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert await readiness(server) == 200
    await server.stop()
    server = await start_server()
    assert [server.store.revision(key) for key in "abcd"] == [1, 2, 3, 4]


async def test_journal_records_waiting_for_a_full_disk_stay_bounded(
    start_server: StartServer, small_disk: Path
) -> None:
    """Deadline records that cannot be appended are folded into one snapshot past the limit,
    and the deadlines are all there after the disk heals and the server restarts."""
    server = await start_server()
    store = server.store
    keys = [f"t{n}" for n in range(100)]
    for key in keys:
        store.write(key, b"1", ttl=3600)
    await store.flush()
    filler = fill(small_disk)
    for _ in range(120):  # 12,000 deadline records
        for key in keys:
            store.write(key, b"1", ttl=3600)
    await asyncio.sleep(0.2)
    assert store.writer.unjournaled <= UNJOURNALED_LIMIT + FOLD_CHECK_EVERY
    deadlines = {key: store.deadline(key) for key in keys}
    filler.unlink()
    assert await ready_again(server)
    await server.stop()
    server = await start_server()
    assert {key: server.store.deadline(key) for key in keys} == deadlines
