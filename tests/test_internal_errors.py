"""A bug met while handling one message costs that message, never the connection."""

from __future__ import annotations

import logging

import pytest

from objstore import session
from objstore.server import ObjstoreServer

from .conftest import Connect
from .helpers import http_request, recv_json


def fail(*args: object) -> None:
    """Stands in for a method with a bug."""
    raise RuntimeError("secret detail of the bug")


async def test_a_failing_command_gets_an_internal_error_and_the_connection_stays(
    server: ObjstoreServer,
    client: Connect,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An exception in the service is answered, logged once with context, and serving goes on."""
    monkeypatch.setattr(server.service, "_subscribe_key", fail)
    async with client() as ws:
        await ws.send('{"action": "subscribe", "key": "k"}')
        assert await recv_json(ws) == {
            "error": 'internal error: could not handle this "subscribe" message; '
            "see the server log"
        }
        await ws.send('{"action": "set", "key": "k", "value": 1}')
        await ws.send('{"action": "get", "key": "k"}')
        assert await recv_json(ws) == {"key": "k", "value": 1}
        address = f"127.0.0.1:{ws.local_address[1]}"
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in failures] == [
        f"{address}: internal error while handling a 'subscribe' message"
    ]
    assert failures[0].exc_info is not None
    assert failures[0].exc_info[0] is RuntimeError


async def test_a_failing_parse_gets_an_internal_error_and_the_connection_stays(
    client: Connect, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception while parsing is answered without naming an action, then serving goes on."""
    async with client() as ws:
        monkeypatch.setattr(session, "parse_message", fail)
        await ws.send('{"action": "get", "key": "k"}')
        assert await recv_json(ws) == {
            "error": "internal error: could not handle this message; see the server log"
        }
        monkeypatch.undo()
        await ws.send('{"action": "get", "key": "k"}')
        assert await recv_json(ws) == {"key": "k", "value": None}
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(": ", 1)[1] for r in failures] == [
        "internal error while parsing a message"
    ]


async def test_a_failing_http_route_answers_500_and_serving_goes_on(
    server: ObjstoreServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a route gets a 500 with the error shape, logged, not a dropped connection."""
    monkeypatch.setattr("objstore.http.keys_route", fail)
    answer = await http_request(server.port, "GET", "/keys/k")
    assert answer.status == 500
    assert answer.json() == {"error": "internal error; see the server log"}
    assert (await http_request(server.port, "GET", "/get/k")).status == 200
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in failures] == ["HTTP request GET /keys/k failed"]
