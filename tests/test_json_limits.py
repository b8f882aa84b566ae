"""The limits of JSON values, against the real server: range, depth and repeated names.

Over a WebSocket, over ``POST /set`` and in files loaded at start.
"""

from __future__ import annotations

import json
from pathlib import Path

from objstore.server import ObjstoreServer

from .conftest import Connect, StartServer
from .helpers import http_request, recv_json

OUT_OF_RANGE = (
    "invalid JSON: 1e400 is out of range; numbers must be within "
    "±1.7976931348623157e308 (send larger ones as strings)"
)


def nested(depth: int) -> str:
    """An array nested *depth* levels deep."""
    return "[" * depth + "]" * depth


async def test_a_value_nested_128_deep_is_stored_over_websocket(client: Connect) -> None:
    """The README allows 128 levels: a value that deep is stored and read back."""
    async with client() as ws:
        await ws.send('{"action": "set", "key": "deep", "value": ' + nested(128) + "}")
        await ws.send('{"action": "get", "key": "deep"}')
        assert await recv_json(ws) == {"key": "deep", "value": json.loads(nested(128))}


async def test_a_value_nested_128_deep_is_stored_over_http(server: ObjstoreServer) -> None:
    """POST /set accepts a value nested 128 levels deep."""
    body = '{"key": "deep", "value": ' + nested(128) + "}"
    answer = await http_request(server.port, "POST", "/set", body)
    assert (answer.status, answer.json()) == (
        200,
        {"key": "deep", "value": json.loads(body)["value"]},
    )


async def test_a_value_nested_129_deep_is_refused_over_http(server: ObjstoreServer) -> None:
    """POST /set refuses a value nested one level deeper than 128."""
    body = '{"key": "deep", "value": ' + nested(129) + "}"
    answer = await http_request(server.port, "POST", "/set", body)
    assert (answer.status, answer.json()) == (
        400,
        {"error": "invalid JSON: nested deeper than 128 levels"},
    )


async def test_a_number_out_of_range_is_refused_over_http(server: ObjstoreServer) -> None:
    """POST /set refuses 1e400 instead of storing null."""
    answer = await http_request(server.port, "POST", "/set", '{"key": "k", "value": 1e400}')
    assert (answer.status, answer.json()) == (400, {"error": OUT_OF_RANGE})
    assert (await http_request(server.port, "GET", "/get/k")).json() == {"key": "k", "value": None}


async def test_a_big_integer_is_still_stored_exactly(client: Connect) -> None:
    """Integers beyond 64 bits keep every digit, as before."""
    async with client() as ws:
        await ws.send('{"action": "set", "key": "big", "value": [12345678901234567890123, 1e308]}')
        await ws.send('{"action": "get", "key": "big"}')
        reply = await ws.recv()
        assert reply == '{"key":"big","value":[12345678901234567890123,1e+308]}'


async def test_a_body_repeating_a_name_is_refused_over_http(server: ObjstoreServer) -> None:
    """POST /set refuses a body that names "key" twice, even spelt with an escape."""
    body = '{"key": "a", "value": 1, "k\\u0065y": "b"}'
    answer = await http_request(server.port, "POST", "/set", body)
    assert (answer.status, answer.json()) == (
        400,
        {"error": 'invalid body: duplicate member "key"; send each member once'},
    )
    for key in ("a", "b"):
        answer = await http_request(server.port, "GET", f"/get/{key}")
        assert answer.json() == {"key": key, "value": None}


async def test_a_message_repeating_action_does_nothing(client: Connect) -> None:
    """{"action": "get", "action": "set", ...} is refused, and nothing is set."""
    async with client() as ws:
        await ws.send('{"action": "get", "action": "set", "key": "k", "value": 1}')
        assert await recv_json(ws) == {
            "error": 'invalid message: duplicate member "action"; send each member once'
        }
        await ws.send('{"action": "get", "key": "k"}')
        assert await recv_json(ws) == {"key": "k", "value": None}


async def test_files_out_of_range_or_too_deep_are_set_aside_at_start(
    start_server: StartServer, cache_dir: Path
) -> None:
    """At start, a file holding 1e400 or 129 levels is set aside; 128 levels load."""
    cache_dir.mkdir()
    (cache_dir / "huge.json").write_text("[1e400]")
    (cache_dir / "deep.json").write_text(nested(128))
    (cache_dir / "deeper.json").write_text(nested(129))
    server = await start_server()
    assert sorted(old for old, _ in server.load_report.set_aside) == ["deeper.json", "huge.json"]
    assert server.store.get("deep") == nested(128).encode()
    assert "huge" not in server.store
