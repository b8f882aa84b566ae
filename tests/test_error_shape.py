"""The error shape is a contract: every error is {"error": "<one sentence>"}."""

from __future__ import annotations

import json

from objstore.server import ObjstoreServer

from .conftest import Connect
from .helpers import http_request, recv_json
from .test_bad_input import BAD_MESSAGES


def assert_error_shape(reply: object) -> None:
    assert isinstance(reply, dict)
    assert list(reply) == ["error"]
    message = reply["error"]
    assert isinstance(message, str)
    assert message
    assert message[0].islower()
    assert "Traceback" not in message
    assert "\n" not in message


async def test_every_websocket_error_has_the_shape(client: Connect) -> None:
    """Each WebSocket error reply is an object with one string field, "error"."""
    async with client() as ws:
        for message, _ in BAD_MESSAGES:
            await ws.send(message)
            assert_error_shape(await recv_json(ws))


async def test_every_http_error_has_the_shape(server: ObjstoreServer) -> None:
    """Each HTTP error answer is JSON with one string field, "error"."""
    requests = [
        ("GET", "/nope", None),
        ("GET", "/get/", None),
        ("GET", "/get/%FF", None),
        ("GET", "/set", None),
        ("POST", "/get/k", ""),
        ("POST", "/set", "not json"),
        ("POST", "/set", "[]"),
        ("POST", "/set", '{"key": "k"}'),
        ("POST", "/set", '{"key": 1, "value": 1}'),
    ]
    for method, path, body in requests:
        answer = await http_request(server.port, method, path, body)
        assert answer.status >= 400
        assert answer.headers["content-type"] == "application/json"
        assert_error_shape(json.loads(answer.body))


async def test_every_error_with_an_id_has_the_coded_shape(client: Connect) -> None:
    """An error answering a message with an id is {"id", "error", "code"} (a conflict adds
    the key's state, a batch the op), with a code from the stable set."""
    from objstore.errors import ERROR_CODES

    messages = [
        '{"action": "get", "key": "", "id": 1}',
        '{"action": "nope", "id": 1}',
        '{"action": "set", "key": "k", "ttl": -1, "value": 1, "id": 1}',
        '{"action": "keys", "limit": 5000, "id": 1}',
        '{"action": "incr", "key": "text", "id": 1}',
        '{"action": "batch", "ops": [{"action": "get", "key": "k"}], "id": 1}',
        '{"action": "set", "key": "k", "value": 1, "ifRev": 7, "id": 1}',
    ]
    async with client() as ws:
        await ws.send('{"action": "set", "key": "text", "value": "x", "id": 0}')
        await recv_json(ws)
        for message in messages:
            await ws.send(message)
            reply = await recv_json(ws)
            assert list(reply)[:3] == ["id", "error", "code"]
            assert set(reply) <= {"id", "error", "code", "rev", "value", "op"}
            assert reply["code"] in ERROR_CODES
            assert_error_shape({"error": reply["error"]})
