"""Detailed listings: each key's revision, time of last change, size, deadline and owner,
over WebSocket and REST, and the times across a clean stop and a crash."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from objstore.server import ObjstoreServer

from .conftest import Connect, StartServer
from .helpers import http_request, recv_json
from .test_program import Launcher


async def ask(ws: ClientConnection, message: dict[str, Any]) -> Any:
    await ws.send(json.dumps(message))
    return await recv_json(ws)


def now_ms() -> int:
    return int(time.time() * 1000)


async def details(ws: ClientConnection, **fields: Any) -> dict[str, dict[str, Any]]:
    reply = await ask(ws, {"action": "keys", "details": True, "id": "d", **fields})
    assert reply["ok"] is True, reply
    return {entry.pop("key"): entry for entry in reply["keys"]}


async def test_each_key_comes_with_what_a_console_shows(
    server: ObjstoreServer, client: Connect
) -> None:
    before = now_ms()
    async with client() as ws:
        await ask(ws, {"action": "set", "key": "a", "value": {"x": 1}, "id": 1})
        await ask(ws, {"action": "set", "key": "t", "value": 5, "ttl": 60, "id": 2})
        await ask(ws, {"action": "set", "key": "e", "value": "hi", "ephemeral": True, "id": 3})
        listed = await details(ws)
        after = now_ms()
        assert list(listed) == ["a", "e", "t"]
        for entry in listed.values():
            assert before <= entry.pop("changed") <= after
        expires = listed["t"].pop("expires")
        assert before + 60_000 <= expires <= after + 60_000
        assert listed == {
            "a": {"rev": 1, "size": len(b'{"x":1}')},
            "e": {"rev": 3, "size": len(b'"hi"'), "ephemeral": True},
            "t": {"rev": 2, "size": 1},
        }
        # Paging and prefixes work as for a plain listing.
        reply = await ask(
            ws, {"action": "keys", "details": True, "prefix": "", "limit": 1, "after": "a"}
        )
        assert [entry["key"] for entry in reply["keys"]] == ["e"]
        assert reply["next"] == "e"


async def test_a_key_changed_earlier_shows_an_earlier_time(
    server: ObjstoreServer, client: Connect
) -> None:
    """Times are marked once a second: a change is told late by at most about that."""
    async with client() as ws:
        first = now_ms()
        await ask(ws, {"action": "set", "key": "old", "value": 1, "id": 1})
        await asyncio.sleep(2.2)
        second = now_ms()
        await ask(ws, {"action": "set", "key": "new", "value": 2, "id": 2})
        listed = await details(ws)
        assert first <= listed["old"]["changed"] <= first + 1_500
        assert second <= listed["new"]["changed"] <= now_ms()
        # Setting it again moves its time.
        await ask(ws, {"action": "set", "key": "old", "value": 3, "id": 3})
        assert (await details(ws))["old"]["changed"] >= second


async def test_rest_lists_details_too(server: ObjstoreServer, client: Connect) -> None:
    async with client() as ws:
        await ask(ws, {"action": "set", "key": "p/a", "value": [1, 2], "id": 1})
    answer = await http_request(server.port, "GET", "/keys?prefix=p/&details=1")
    assert answer.status == 200
    (entry,) = answer.json()["keys"]
    assert entry["key"] == "p/a"
    assert entry["rev"] == 1
    assert entry["size"] == 5
    assert isinstance(entry["changed"], int)
    plain = await http_request(server.port, "GET", "/keys?prefix=p/&details=0")
    assert plain.json() == {"keys": ["p/a"], "next": None}
    bad = await http_request(server.port, "GET", "/keys?details=yes")
    assert bad.status == 400
    assert bad.json()["code"] == "invalid_message"


async def test_details_must_be_true_or_false(server: ObjstoreServer, client: Connect) -> None:
    async with client() as ws:
        reply = await ask(ws, {"action": "keys", "details": 1, "id": 7})
        assert reply == {
            "id": 7,
            "error": 'invalid message: "details" must be true or false, got 1',
            "code": "invalid_message",
        }


async def test_times_survive_a_clean_stop(start_server: StartServer, cache_dir: Path) -> None:
    server = await start_server()
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ask(ws, {"action": "set", "key": "a", "value": 1, "id": 1})
        await ask(ws, {"action": "set", "key": "b", "value": 2, "id": 2})
        was = await details(ws)
    await server.stop()
    # A value edited while the server is stopped has no known time any more.
    (cache_dir / "b.json").write_text("20")
    await asyncio.sleep(0.05)
    server = await start_server()
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        now = await details(ws)
    assert now["a"] == was["a"]
    assert now["b"]["changed"] is None
    assert now["b"]["rev"] > was["b"]["rev"]


@pytest.mark.skipif(sys.platform == "win32", reason="signals")
async def test_after_kill_9_times_are_not_known(tmp_path: Path) -> None:
    """After a crash every key takes a new revision, whose time is not claimed."""
    launcher = Launcher("source", [sys.executable, "-m", "objstore"], None)
    try:
        program = launcher.start(tmp_path)
        async with connect(f"ws://127.0.0.1:{program.port}/ws") as ws:
            await ask(ws, {"action": "set", "key": "a", "value": 1, "id": 1})
        await asyncio.to_thread(program.kill)
        program = launcher.start(tmp_path)
        async with connect(f"ws://127.0.0.1:{program.port}/ws") as ws:
            assert (await details(ws))["a"]["changed"] is None
            await ask(ws, {"action": "set", "key": "a", "value": 2, "id": 2})
            assert isinstance((await details(ws))["a"]["changed"], int)
    finally:
        for started in launcher.started:
            started.kill()
