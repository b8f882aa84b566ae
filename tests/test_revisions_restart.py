"""Revisions, deadlines and ephemeral keys across a clean stop, SIGTERM and kill -9."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from .conftest import StartServer
from .helpers import recv_json
from .test_program import Launcher, Program

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals")


async def ask(ws: ClientConnection, message: dict[str, Any]) -> Any:
    await ws.send(json.dumps(message))
    return await recv_json(ws)


async def replies(ws: ClientConnection, count: int) -> list[Any]:
    return [await recv_json(ws) for _ in range(count)]


@pytest.fixture
def source(tmp_path: Path) -> Any:
    launcher = Launcher("source", [sys.executable, "-m", "objstore"], None)
    yield launcher
    for program in launcher.started:
        program.kill()


def url(program: Program) -> str:
    return f"ws://127.0.0.1:{program.port}/ws"


async def test_a_clean_stop_keeps_every_revision_and_the_history(
    source: Launcher, tmp_path: Path
) -> None:
    """After SIGTERM, keys keep their revisions, the counter goes on, and resumes are exact."""
    program = source.start(tmp_path)
    async with connect(url(program)) as ws:
        await ask(ws, {"action": "set", "key": "a", "value": 1, "id": 1})
        await ask(ws, {"action": "set", "key": "b", "value": 2, "id": 2})
        await ask(ws, {"action": "delete", "key": "a", "id": 3})
    code, err = program.stop()
    assert code == 0, err
    program = source.start(tmp_path)
    async with connect(url(program)) as ws:
        assert await ask(ws, {"action": "get", "key": "b", "id": 1}) == {
            "id": 1,
            "ok": True,
            "key": "b",
            "value": 2,
            "rev": 2,
        }
        assert await ask(ws, {"action": "set", "key": "c", "value": 3, "id": 2}) == {
            "id": 2,
            "ok": True,
            "rev": 4,
        }
        await ws.send(json.dumps({"action": "subscribe", "prefix": "", "since": 1, "id": 3}))
        assert await replies(ws, 4) == [
            {"key": "b", "value": 2, "rev": 2},
            {"key": "a", "value": None, "rev": 3, "deleted": True},
            {"key": "c", "value": 3, "rev": 4},
            {"id": 3, "ok": True, "rev": 4, "reset": False},
        ]


async def test_after_kill_9_revisions_go_forward_and_resumes_reset(
    source: Launcher, tmp_path: Path
) -> None:
    """An unclean stop gives every key a new, higher revision, and a resume starts afresh."""
    program = source.start(tmp_path)
    async with connect(url(program)) as ws:
        for number in range(5):
            last = await ask(
                ws, {"action": "set", "key": f"k{number}", "value": number, "id": number}
            )
    await asyncio.to_thread(program.kill)
    program = source.start(tmp_path)
    async with connect(url(program)) as ws:
        got = await ask(ws, {"action": "get", "key": "k0", "id": 1})
        assert got["value"] == 0
        assert got["rev"] > last["rev"]
        await ws.send(
            json.dumps({"action": "subscribe", "key": "k4", "since": last["rev"], "id": 2})
        )
        reset, value, reply = await replies(ws, 3)
        assert reset == {"reset": True, "key": "k4"}
        assert value["value"] == 4
        assert value["rev"] > last["rev"]
        assert reply["reset"] is True


async def test_a_deadline_survives_kill_9(source: Launcher, tmp_path: Path) -> None:
    """A key set with a ttl is not made permanent by a crash: it is gone once due."""
    program = source.start(tmp_path)
    async with connect(url(program)) as ws:
        await ask(ws, {"action": "set", "key": "t", "value": 1, "ttl": 1.5, "id": 1})
    await asyncio.to_thread(program.kill)
    await asyncio.sleep(1.6)
    program = source.start(tmp_path)
    assert not (tmp_path / ".cache" / "t.json").exists()
    async with connect(url(program)) as ws:
        assert (await ask(ws, {"action": "get", "key": "t", "id": 1}))["value"] is None


async def test_a_deadline_survives_a_clean_restart(
    start_server: StartServer, cache_dir: Path
) -> None:
    """A key with a ttl keeps its deadline across a restart and expires on time after it."""
    server = await start_server()
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ask(ws, {"action": "set", "key": "t", "value": 1, "ttl": 1, "id": 1})
    deadline = server.store.deadline("t")
    await server.stop()
    server = await start_server()
    assert server.store.deadline("t") == deadline
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ask(ws, {"action": "subscribe", "key": "t", "id": 1})
        await recv_json(ws)
        update = await recv_json(ws, timeout=3)
        assert update["deleted"] is True
        assert update["expired"] is True
    await server.store.flush()
    assert not (cache_dir / "t.json").exists()


async def test_a_key_that_expired_while_stopped_is_gone_at_start(
    start_server: StartServer, cache_dir: Path
) -> None:
    """A deadline that passed while the server was down deletes the key and its file at start."""
    server = await start_server()
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ask(ws, {"action": "set", "key": "t", "value": 1, "ttl": 0.3, "id": 1})
        await ask(ws, {"action": "set", "key": "p", "value": 1, "id": 2})
    await server.stop()
    await asyncio.sleep(0.4)
    server = await start_server()
    assert "t" not in server.store
    assert "p" in server.store
    assert not (cache_dir / "t.json").exists()


async def test_ephemeral_keys_do_not_survive_a_restart(
    start_server: StartServer, cache_dir: Path
) -> None:
    """Ephemeral keys were never on disk; a permanent key made ephemeral loses its file."""
    server = await start_server()
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ask(ws, {"action": "set", "key": "e", "value": 1, "id": 1})
        await server.store.flush()
        assert (cache_dir / "e.json").exists()
        await ask(ws, {"action": "set", "key": "e", "value": 2, "ephemeral": True, "id": 2})
        await server.store.flush()
        assert not (cache_dir / "e.json").exists()
        await server.stop()
    server = await start_server()
    assert "e" not in server.store


async def test_state_files_are_hidden_beside_plain_value_files(
    start_server: StartServer, cache_dir: Path
) -> None:
    """Value files stay the plain value; revisions live in two hidden files."""
    server = await start_server()
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ask(ws, {"action": "set", "key": "k", "value": {"a": 1}, "ttl": 100, "id": 1})
    await server.stop()
    assert (cache_dir / "k.json").read_text() == '{"a":1}\n'
    assert sorted(p.name for p in cache_dir.iterdir()) == [
        ".objstore.journal",
        ".objstore.lock",
        ".objstore.meta",
        "k.json",
    ]


async def test_the_journal_is_folded_into_the_snapshot_when_it_grows(
    start_server: StartServer, cache_dir: Path
) -> None:
    """Many deadline changes do not grow the journal without end, and no deadline is lost."""
    server = await start_server()
    server.store.journal_limit = 8 * 1024
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        for number in range(5000):
            await ws.send(
                json.dumps({"action": "set", "key": f"t{number % 7}", "value": number, "ttl": 600})
            )
        await ask(ws, {"action": "set", "key": "p", "value": 1, "id": 1})
    await server.store.flush()
    assert (cache_dir / ".objstore.journal").stat().st_size < 8 * 1024 + 1024 * 60
    deadlines = {f"t{n}": server.store.deadline(f"t{n}") for n in range(7)}
    meta_lines = (cache_dir / ".objstore.meta").read_text().splitlines()
    assert '"clean":false' in meta_lines[0]
    assert server.store.state is not None
    await asyncio.to_thread(server.store.state.close)  # as if killed: no clean snapshot
    server.store.state.write_snapshot = lambda state, *_, **__: 0  # type: ignore[method-assign]
    await server.stop()
    server = await start_server()
    assert {f"t{n}": server.store.deadline(f"t{n}") for n in range(7)} == deadlines


async def test_ephemeral_keys_are_gone_after_kill_9(source: Launcher, tmp_path: Path) -> None:
    """Presence does not outlive a crash: an ephemeral key is absent after kill -9."""
    program = source.start(tmp_path)
    async with connect(url(program)) as ws:
        await ask(
            ws, {"action": "set", "key": "online/ann", "value": 1, "ephemeral": True, "id": 1}
        )
        await ask(ws, {"action": "set", "key": "score", "value": 2, "id": 2})
        await asyncio.to_thread(program.kill)
    program = source.start(tmp_path)
    async with connect(url(program)) as ws:
        assert await ask(ws, {"action": "keys", "id": 1}) == {
            "id": 1,
            "ok": True,
            "keys": ["score"],
            "next": None,
        }


async def test_a_deadline_set_again_and_again_does_not_grow_memory(
    start_server: StartServer,
) -> None:
    """Repeating a long ttl on one key keeps the deadline table bounded, and it still expires."""
    server = await start_server()
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        for number in range(5000):
            # Each deadline earlier than the one before: the stale ones never come first.
            ttl = 9e7 - number
            await ws.send(json.dumps({"action": "set", "key": "k", "value": number, "ttl": ttl}))
        await ask(ws, {"action": "set", "key": "k", "value": "last", "ttl": 0.2, "id": 1})
        assert len(server.store._deadlines) <= 2 * 1 + 64 + 1
        await asyncio.sleep(0.5)
        assert (await ask(ws, {"action": "get", "key": "k", "id": 2}))["value"] is None
