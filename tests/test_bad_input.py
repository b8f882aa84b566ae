"""Every malformed message gets its own error reply, and the connection stays open."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from objstore.server import ObjstoreServer

from .conftest import Connect
from .helpers import raw_http, recv_json

BAD_MESSAGES = [
    ("not json", "invalid JSON: Expecting value: line 1 column 1 (char 0)"),
    ("[1, 2]", "invalid message: expected a JSON object, got [1, 2]"),
    ('"set"', 'invalid message: expected a JSON object, got "set"'),
    (
        "{}",
        'invalid message: missing "action"; '
        'expected one of "subscribe", "unsubscribe", "set", "get", "delete", "patch", '
        '"incr", "keys", "batch", "auth"',
    ),
    (
        '{"action": "destroy", "key": "k"}',
        'invalid action: expected one of "subscribe", "unsubscribe", "set", "get", "delete", '
        '"patch", "incr", "keys", "batch", "auth", got "destroy"',
    ),
    (
        '{"action": 5, "key": "k"}',
        'invalid action: expected one of "subscribe", "unsubscribe", "set", "get", "delete", '
        '"patch", "incr", "keys", "batch", "auth", got 5',
    ),
    ('{"action": "get"}', "invalid key: expected a non-empty string, got null"),
    ('{"action": "subscribe", "key": ""}', 'invalid key: expected a non-empty string, got ""'),
    ('{"action": "set", "key": 5, "value": 1}', "invalid key: expected a non-empty string, got 5"),
    ('{"action": "get", "key": ["a"]}', 'invalid key: expected a non-empty string, got ["a"]'),
    (
        json.dumps({"action": "get", "key": "k" * 1025}),
        "invalid key: 1025 bytes in UTF-8, over the limit of 1024",
    ),
    (
        '{"action": "get", "key": "\\ud800"}',
        "invalid key: not valid Unicode (contains a lone surrogate)",
    ),
    ('{"action": "set", "key": "k"}', 'invalid set: missing "value" (send null to store null)'),
    (
        '{"action": "set", "key": "k", "value": NaN}',
        "invalid JSON: NaN is not allowed; JSON has no NaN",
    ),
    (
        '{"action": "set", "key": "k", "value": -Infinity}',
        "invalid JSON: -Infinity is not allowed; JSON has no -Infinity",
    ),
    (
        '{"action": "set", "key": "k", "value": ' + "[" * 200 + "]" * 200 + "}",
        "invalid JSON: nested deeper than 128 levels",
    ),
    (
        '{"action": "set", "key": "k", "value": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "invalid JSON: nested deeper than 128 levels",
    ),
    (
        '{"action": "set", "key": "k", "value": "\\udc00"}',
        "invalid value: not valid Unicode (contains a lone surrogate)",
    ),
    (
        '{"action": "set", "key": "k", "value": ' + "[" * 129 + "]" * 129 + "}",
        "invalid JSON: nested deeper than 128 levels",
    ),
    (
        '{"action": "set", "key": "k", "value": 1e400}',
        "invalid JSON: 1e400 is out of range; numbers must be within "
        "±1.7976931348623157e308 (send larger ones as strings)",
    ),
    (
        '{"action": "set", "key": "k", "value": -1E400}',
        "invalid JSON: -1E400 is out of range; numbers must be within "
        "±1.7976931348623157e308 (send larger ones as strings)",
    ),
    (
        '{"action": "set", "key": "k", "value": [1e400, 12345678901234567890123]}',
        "invalid JSON: 1e400 is out of range; numbers must be within "
        "±1.7976931348623157e308 (send larger ones as strings)",
    ),
    (
        '{"action": "set", "key": "k", "value": ' + "9" * 5000 + "}",
        "invalid JSON: a number has over 4300 digits; send it as a string",
    ),
    (
        '{"action": "get", "action": "set", "key": "k", "value": 1}',
        'invalid message: duplicate member "action"; send each member once',
    ),
    (
        '{"action": "get", "\\u0061ction": "set", "key": "k", "value": 1}',
        'invalid message: duplicate member "action"; send each member once',
    ),
    (
        '{"action": "set", "key": "k", "value": 1, "value": 2}',
        'invalid message: duplicate member "value"; send each member once',
    ),
]


@pytest.mark.parametrize(("message", "error"), BAD_MESSAGES)
async def test_bad_message_gets_specific_error(client: Connect, message: str, error: str) -> None:
    """Each malformed message is answered with its own error and the connection stays open."""
    async with client() as ws:
        await ws.send(message)
        assert await recv_json(ws) == {"error": error}
        await ws.send('{"action": "get", "key": "still-open"}')
        assert await recv_json(ws) == {"key": "still-open", "value": None}


async def test_binary_frame_not_utf8_gets_error(client: Connect) -> None:
    """A binary frame that is not UTF-8 gets an error and the connection stays open."""
    async with client() as ws:
        await ws.send(b"\xff\xfe\x00")
        assert await recv_json(ws) == {
            "error": "invalid message: binary frame is not UTF-8 JSON text"
        }
        await ws.send('{"action": "get", "key": "k"}')
        assert await recv_json(ws) == {"key": "k", "value": None}


async def test_rejected_messages_write_no_file(
    server: ObjstoreServer, client: Connect, cache_dir: Path
) -> None:
    """No rejected message creates a file (the original wrote undefined.json)."""
    async with client() as ws:
        for message, _ in BAD_MESSAGES:
            await ws.send(message)
            await recv_json(ws)
    await server.store.flush()
    assert sorted(path.name for path in cache_dir.iterdir()) == [
        ".objstore.journal",
        ".objstore.lock",
        ".objstore.meta",
    ]


async def test_unknown_fields_are_ignored(client: Connect) -> None:
    """Fields a message does not need are ignored, for forward compatibility."""
    async with client() as ws:
        await ws.send('{"action": "get", "key": "k", "extra": true, "version": 9}')
        assert await recv_json(ws) == {"key": "k", "value": None}


async def test_garbage_on_the_socket_does_not_disturb_others(
    server: ObjstoreServer, client: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage bytes, half handshakes and abrupt disconnects leave the server serving."""
    async with client() as ws:
        await raw_http(server.port, b"\x00\x01garbage\r\n\r\n")
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")  # never finished
        await writer.drain()
        writer.transport.abort()
        await ws.send('{"action": "get", "key": "k"}')
        assert await recv_json(ws) == {"key": "k", "value": None}
    assert [r for r in caplog.records if r.exc_info] == []
