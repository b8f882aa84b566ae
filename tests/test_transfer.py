"""``objstore import`` and ``objstore export`` against a real redis-server and real servers.

The commands run as the real program (``python -m objstore import|export`` as a
subprocess, awaited so that servers of this process keep serving meanwhile);
values are written and read back by WebSocket clients of real servers, on the
cache folder and on Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from websockets.asyncio.client import ClientConnection, connect

from objstore.config import Config
from objstore.foldernames import file_name
from objstore.folderread import read_folder
from objstore.server import ObjstoreServer
from objstore.store import Store

from .helpers import free_port, recv_json
from .realredis import RedisProcess

StartServer = Callable[..., Awaitable[ObjstoreServer]]

#: Keys that are hard for a file system: unicode, separators, dot names, device names,
#: keys differing only in case, control characters, the longest key (hashed name).
TRICKY_KEYS = [
    "héllo wörld ✓",
    "emoji 🎉",
    "a/b",
    "a\\b",
    "..",
    ".",
    ".hidden",
    "CON",
    "con.txt",
    "Foo",
    "foo",
    "FOO",
    "line\nbreak",
    "%41",
    "~tilde",
    "é" * 512,
    "k" * 1000,
]
VALUES: dict[str, Any] = {
    **{key: {"key": key, "n": number} for number, key in enumerate(TRICKY_KEYS)},
    "big": 123456789012345678901234567890,
    "negative big": -98765432109876543210,
    "nested": {"a": [1, {"b": [None, True, 1.5, "é", {"c": {"d": []}}]}], "e": {}},
    "text": "plain",
}
TTL_KEY = "session/ttl"


class Ran(NamedTuple):
    code: int
    stdout: str
    stderr: str


async def objstore(*args: str) -> Ran:
    """Run ``python -m objstore ARGS`` (this checkout's, by PYTHONPATH) to its end."""
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "objstore",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def listing(folder: Path) -> list[tuple[str, int, int]]:
    """Every entry of *folder*: name, size and modification time (ns)."""
    with os.scandir(folder) as entries:
        return sorted(
            (entry.name, entry.stat().st_size, entry.stat().st_mtime_ns) for entry in entries
        )


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path / "redis").start()
    yield process
    process.stop()


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Start servers on port 0; every one started is stopped at the end."""
    started: list[ObjstoreServer] = []

    async def start_server(**overrides: Any) -> ObjstoreServer:
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
        settings.setdefault("cache_dir", tmp_path / "unused")
        settings.update(overrides)
        server = ObjstoreServer(Config(**settings))
        await server.start()
        started.append(server)
        return server

    yield start_server
    for server in started:
        await server.stop()


def ws(server: ObjstoreServer) -> Any:
    return connect(f"ws://127.0.0.1:{server.port}/ws", max_size=None)


async def request(client: ClientConnection, **message: Any) -> Any:
    """Send *message* with an id and return the reply to it (skipping updates)."""
    await client.send(json.dumps(message))
    while True:
        reply = await recv_json(client)
        if reply.get("id") == message["id"]:
            return reply


async def fill(server: ObjstoreServer) -> None:
    """Set every key of VALUES, and TTL_KEY with a time to live of 60 s."""
    async with ws(server) as client:
        for number, (key, value) in enumerate(VALUES.items()):
            reply = await request(client, action="set", key=key, value=value, id=number)
            assert reply["ok"] is True, reply
        reply = await request(client, action="set", key=TTL_KEY, value="t", ttl=60, id=-1)
        assert reply["ok"] is True, reply


async def read_all(server: ObjstoreServer) -> tuple[dict[str, Any], int | None]:
    """The value of every key of VALUES, and the deadline of TTL_KEY (ms)."""
    found: dict[str, Any] = {}
    async with ws(server) as client:
        for number, key in enumerate(VALUES):
            reply = await request(client, action="get", key=key, id=number)
            found[key] = reply["value"]
        reply = await request(client, action="get", key=TTL_KEY, id=-1)
        assert reply["value"] == "t"
    return found, reply.get("expires")


async def filled_folder(folder: Path) -> None:
    """A cache folder written by a file-store server: VALUES and TTL_KEY; stopped."""
    server = ObjstoreServer(Config(host="127.0.0.1", port=0, cache_dir=folder))
    await server.start()
    try:
        await fill(server)
    finally:
        await server.stop()


def assert_about_a_minute_left(expires: int | None) -> None:
    assert expires is not None
    left = expires / 1000 - time.time()
    assert 50 < left <= 60, left


async def test_a_round_trip_keeps_every_value_and_deadline_and_leaves_the_folder_alone(
    start: StartServer, redis: RedisProcess, tmp_path: Path
) -> None:
    """Folder -> import -> Redis -> export -> folder: servers on Redis and on the new
    folder serve every tricky key with its value and the TTL key with ~60 s left; the
    imported folder is unchanged (names, sizes, modification times)."""
    folder, out = tmp_path / "cache", tmp_path / "exported"
    await filled_folder(folder)
    before = listing(folder)
    ran = await objstore("import", str(folder), "--redis", redis.url)
    assert (ran.code, ran.stderr) == (0, "")
    assert f"{len(VALUES) + 1} keys" in ran.stdout
    assert listing(folder) == before
    shared = await start(redis_url=redis.url)
    values, expires = await read_all(shared)
    assert values == VALUES
    assert_about_a_minute_left(expires)
    ran = await objstore("export", str(out), "--redis", redis.url)
    assert (ran.code, ran.stderr) == (0, "")
    assert f"{len(VALUES) + 1} keys" in ran.stdout
    assert (out / file_name("k" * 1000)).exists()
    served = await start(cache_dir=out)
    values, expires = await read_all(served)
    assert values == VALUES
    assert_about_a_minute_left(expires)


async def test_import_refuses_a_redis_store_that_has_keys(
    start: StartServer, redis: RedisProcess, tmp_path: Path
) -> None:
    """Without --overwrite, a store with keys is refused: exit 3, one line with the count
    and the flag, nothing written."""
    folder = tmp_path / "cache"
    await filled_folder(folder)
    shared = await start(redis_url=redis.url)
    async with ws(shared) as client:
        await request(client, action="set", key="a/b", value="kept", id=1)
    ran = await objstore("import", str(folder), "--redis", redis.url)
    assert ran.code == 3
    assert ran.stderr == (
        f"objstore: the Redis store at {redis.url} already holds 1 key; add --overwrite to "
        "replace keys of the same name and keep the others, or import into an empty store\n"
    )
    assert ran.stdout == ""
    async with ws(shared) as client:
        assert (await request(client, action="get", key="a/b", id=1))["value"] == "kept"
        assert (await request(client, action="get", key="big", id=2))["value"] is None


async def test_import_with_overwrite_replaces_keys_of_the_same_name_and_keeps_others(
    start: StartServer, redis: RedisProcess, tmp_path: Path
) -> None:
    """--overwrite: a key of the folder replaces the Redis key of its name (even an
    ephemeral one, now permanent); a key only in Redis stays."""
    folder = tmp_path / "cache"
    await filled_folder(folder)
    shared = await start(redis_url=redis.url)
    async with ws(shared) as owner, ws(shared) as client:
        await request(client, action="set", key="a/b", value="old", id=1)
        await request(client, action="set", key="only/redis", value="stays", id=2)
        await request(owner, action="set", key="foo", value="mine", ephemeral=True, id=3)
        ran = await objstore("import", str(folder), "--redis", redis.url, "--overwrite")
        assert (ran.code, ran.stderr) == (0, "")
        assert f": {len(VALUES) + 1} keys (" in ran.stdout
        assert "; 2 of them replaced;" in ran.stdout
        replaced = await request(client, action="get", key="a/b", id=4)
        assert replaced["value"] == VALUES["a/b"]
        kept = await request(client, action="get", key="only/redis", id=5)
        assert kept["value"] == "stays"
    async with ws(shared) as client:
        # The owner is gone: its key would have gone with it, had the import not replaced it.
        foo = await request(client, action="get", key="foo", id=6)
        assert (foo["value"], foo.get("ephemeral")) == (VALUES["foo"], None)


async def test_export_refuses_a_folder_that_is_not_empty(
    redis: RedisProcess, tmp_path: Path
) -> None:
    """An export into a folder holding anything is refused: exit 3, one line; the folder
    is left as it was."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = listing(out)
    ran = await objstore("export", str(out), "--redis", redis.url)
    assert ran.code == 3
    assert ran.stderr == (
        f"objstore: cannot export to {out}: it is not empty (1 entry); give a new or empty "
        "folder, so that the export does not mix with older files\n"
    )
    assert listing(out) == before


async def test_a_subscriber_of_a_running_instance_sees_the_imported_keys(
    start: StartServer, redis: RedisProcess, tmp_path: Path
) -> None:
    """A client subscribed to every key on a running shared instance receives one update
    per imported key, with its value, in rising revisions."""
    folder = tmp_path / "cache"
    await filled_folder(folder)
    shared = await start(redis_url=redis.url)
    async with ws(shared) as watcher:
        reply = await request(watcher, action="subscribe", prefix="", id=1)
        assert reply["ok"] is True
        ran = await objstore("import", str(folder), "--redis", redis.url)
        assert ran.code == 0
        updates = [await recv_json(watcher) for _ in range(len(VALUES) + 1)]
    seen = {update["key"]: update["value"] for update in updates}
    assert seen == {**VALUES, TTL_KEY: "t"}
    revs = [update["rev"] for update in updates]
    assert revs == sorted(revs)
    assert len(set(revs)) == len(revs)


async def test_export_leaves_out_ephemeral_keys_and_counts_them(
    start: StartServer, redis: RedisProcess, tmp_path: Path
) -> None:
    """An ephemeral key (a live connection's) is not exported, and the summary says so."""
    out = tmp_path / "out"
    shared = await start(redis_url=redis.url)
    async with ws(shared) as client:
        await request(client, action="set", key="online/ann", value=1, ephemeral=True, id=1)
        await request(client, action="set", key="score", value=7, id=2)
        ran = await objstore("export", str(out), "--redis", redis.url)
    assert (ran.code, ran.stderr) == (0, "")
    assert "1 key (1 byte); 1 ephemeral key left out (presence of live connections)" in (
        ran.stdout
    )
    assert read_folder(str(out)).values == {"score": b"7"}


async def test_import_skips_keys_whose_deadline_passed(
    redis: RedisProcess, start: StartServer, tmp_path: Path
) -> None:
    """A key whose deadline passed while the folder sat is skipped and counted."""
    folder = tmp_path / "cache"
    store = Store(folder)
    store.open()
    store.write("gone", b"1", ttl=0.05)
    store.write("here", b"2")
    assert await store.close() == []
    await asyncio.sleep(0.1)
    ran = await objstore("import", str(folder), "--redis", redis.url)
    assert ran.code == 0
    assert ": 1 key (1 byte); 1 expired key skipped;" in ran.stdout
    shared = await start(redis_url=redis.url)
    assert shared.storage.get("gone") is None
    assert shared.storage.get("here") == b"2"


async def test_import_skips_an_unreadable_file_names_it_and_leaves_it_in_place(
    redis: RedisProcess, start: StartServer, tmp_path: Path
) -> None:
    """A value file that is not JSON is named on stderr and skipped, not renamed (the
    server would set it aside); the other keys are imported."""
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "good.json").write_bytes(b'{"ok": true}')
    (folder / "bad.json").write_bytes(b"{not json")
    before = listing(folder)
    ran = await objstore("import", str(folder), "--redis", redis.url)
    assert ran.code == 0
    assert ran.stderr == (
        "objstore: skipped bad.json: JSONDecodeError: Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1)\n"
    )
    assert "1 key (11 bytes); 1 unreadable file skipped" in ran.stdout
    assert listing(folder) == before


async def test_import_refuses_a_folder_a_running_server_uses(
    redis: RedisProcess, start: StartServer, tmp_path: Path
) -> None:
    """A folder locked by a running file-store server is refused (exit 3), naming it."""
    folder = tmp_path / "cache"
    await start(cache_dir=folder)
    ran = await objstore("import", str(folder), "--redis", redis.url)
    assert ran.code == 3
    assert ran.stderr == (
        f"objstore: cannot import {folder}: it is in use by objstore (process {os.getpid()}); "
        "stop it first, so that the import reads a folder that does not change\n"
    )


@pytest.mark.parametrize("command", ["import", "export"])
async def test_an_unreachable_redis_exits_3_with_one_line_hiding_the_password(
    command: str, tmp_path: Path
) -> None:
    """Redis not listening: exit 3, one line naming the URL with its password hidden."""
    folder = tmp_path / "cache"
    folder.mkdir()
    if command == "export":
        folder = tmp_path / "new"
    port = free_port()
    ran = await objstore(command, str(folder), "--redis", f"redis://:s3cret@127.0.0.1:{port}/0")
    assert ran.code == 3
    assert ran.stderr.startswith(
        f"objstore: cannot use the Redis store at redis://:***@127.0.0.1:{port}/0: "
    )
    assert ran.stderr.count("\n") == 1
    assert "s3cret" not in ran.stderr
    assert not (tmp_path / "new").exists()


async def test_a_transfer_without_a_redis_url_is_a_usage_error(tmp_path: Path) -> None:
    """Neither --redis nor REDIS_URL: exit 2 with argparse's usage and what is missing."""
    ran = await objstore("export", str(tmp_path / "new"))
    assert ran.code == 2
    assert ran.stderr.endswith(
        "objstore export: error: --redis URL (or REDIS_URL) is needed: the Redis store to use\n"
    )
