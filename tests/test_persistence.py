"""Persistence: real files in a real folder, read back by a restarted server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from objstore.keys import file_name, sidecar_name
from objstore.server import ObjstoreServer

from .conftest import Connect, StartServer
from .helpers import http_request, recv_json


async def test_values_survive_a_restart(start_server: StartServer, cache_dir: Path) -> None:
    """Values set before a stop are loaded by the next server on the same folder."""
    first = await start_server()
    await http_request(first.port, "POST", "/set", '{"key": "player-position", "value": {"x": 1}}')
    await http_request(
        first.port, "POST", "/set", '{"key": "Mixed Case/ключ", "value": [true, null]}'
    )
    await first.stop()
    second = await start_server()
    assert len(second.store) == 2
    answer = await http_request(second.port, "GET", "/get/Mixed%20Case/%D0%BA%D0%BB%D1%8E%D1%87")
    assert answer.json() == {"key": "Mixed Case/ключ", "value": [True, None]}


async def test_file_holds_the_value_itself(start_server: StartServer, cache_dir: Path) -> None:
    """A plain key is stored as {key}.json whose content is the value, readable by a person."""
    server = await start_server()
    await http_request(
        server.port, "POST", "/set", '{"key": "player-position", "value": {"x": 100, "y": 200}}'
    )
    assert (cache_dir / "player-position.json").read_text() == '{"x":100,"y":200}\n'
    assert sorted(p.name for p in cache_dir.iterdir()) == [
        ".objstore.journal",
        ".objstore.lock",
        ".objstore.meta",
        "player-position.json",
    ]


async def test_websocket_set_is_written_without_a_request_to_wait(
    server: ObjstoreServer, client: Connect, cache_dir: Path
) -> None:
    """A WebSocket set reaches its file, without a stop."""
    async with client() as ws:
        await ws.send('{"action": "set", "key": "k", "value": 42}')
        await ws.send('{"action": "get", "key": "k"}')
        await recv_json(ws)
    await server.store.flush()
    assert (cache_dir / "k.json").read_text() == "42\n"


async def test_original_style_cache_loads(start_server: StartServer, cache_dir: Path) -> None:
    """Files written by the original server (verbatim names, pretty JSON) load unchanged."""
    cache_dir.mkdir()
    (cache_dir / "player-position.json").write_text(json.dumps({"x": 100, "y": 200}, indent=2))
    (cache_dir / "Score Board.json").write_text(
        json.dumps([{"name": "ann", "score": 3}], indent=2)
    )
    (cache_dir / "null-value.json").write_text("null")
    server = await start_server()
    assert (await http_request(server.port, "GET", "/get/player-position")).json()["value"] == {
        "x": 100,
        "y": 200,
    }
    assert (await http_request(server.port, "GET", "/get/Score%20Board")).json()["value"] == [
        {"name": "ann", "score": 3}
    ]
    assert server.store.get("null-value") == b"null"
    # The verbatim name is renamed to the canonical one; content is untouched.
    assert not (cache_dir / "Score Board.json").exists()
    assert json.loads((cache_dir / file_name("Score Board")).read_text()) == [
        {"name": "ann", "score": 3}
    ]
    assert (cache_dir / "player-position.json").read_text() == json.dumps(
        {"x": 100, "y": 200}, indent=2
    )


async def test_corrupt_file_is_set_aside_and_the_rest_loads(
    start_server: StartServer, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt file is logged and renamed, never deleted, and every other key loads."""
    cache_dir.mkdir()
    (cache_dir / "good.json").write_text('{"ok": true}')
    (cache_dir / "broken.json").write_text('{"half": ')
    (cache_dir / "empty.json").write_text("")
    server = await start_server()
    assert server.store.get("good") == b'{"ok":true}'
    assert "broken" not in server.store
    assert "empty" not in server.store
    names = sorted(p.name for p in cache_dir.iterdir() if not p.name.startswith(".objstore."))
    assert len(names) == 3
    assert "good.json" in names
    aside = [n for n in names if n.endswith(".corrupt")]
    assert len(aside) == 2
    assert any(n.startswith("broken.json.") for n in aside)
    assert (
        cache_dir / next(n for n in aside if n.startswith("broken"))
    ).read_text() == '{"half": '
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("cannot load broken.json" in w for w in warnings)


async def test_leftover_temp_files_are_removed(start_server: StartServer, cache_dir: Path) -> None:
    """Temporary files left by a crash mid-write are removed at startup."""
    cache_dir.mkdir()
    (cache_dir / "k.json").write_text("1")
    (cache_dir / ".k.json.abc123.tmp").write_text("2")
    server = await start_server()
    assert server.load_report.temp_files_removed == 1
    assert sorted(p.name for p in cache_dir.iterdir()) == [
        ".objstore.journal",
        ".objstore.lock",
        ".objstore.meta",
        "k.json",
    ]
    assert server.store.get("k") == b"1"


async def test_long_key_survives_a_restart(start_server: StartServer, cache_dir: Path) -> None:
    """A key too long for a file name is stored under a hashed name with its key beside it."""
    key = "ключ/" * 100  # 900 UTF-8 bytes
    first = await start_server()
    await http_request(first.port, "POST", "/set", json.dumps({"key": key, "value": "long"}))
    await first.stop()
    name = file_name(key)
    assert len(name.encode()) < 255
    assert (cache_dir / sidecar_name(name)).read_text(encoding="utf-8") == key
    second = await start_server()
    assert second.store.get(key) == b'"long"'


async def test_unwritable_cache_reports_the_failure(
    server: ObjstoreServer, client: Connect, cache_dir: Path
) -> None:
    """When a file cannot be written, HTTP answers 500 and a WebSocket setter gets an error."""
    # A folder under a key's file name: a file cannot replace it, for root too.
    (cache_dir / "k.json").mkdir()
    (cache_dir / "w.json").mkdir()
    answer = await http_request(server.port, "POST", "/set", '{"key": "k", "value": 1}')
    assert answer.status == 500
    assert answer.json()["error"].startswith('could not save key "k" to ')
    async with client() as ws:
        await ws.send('{"action": "set", "key": "w", "value": 2}')
        error = await recv_json(ws)
        assert error["error"].startswith('could not save key "w" to ')
        # The value stays in memory and the connection keeps working.
        await ws.send('{"action": "get", "key": "w"}')
        assert await recv_json(ws) == {"key": "w", "value": 2}
