"""The HTTP routes, against a real server over real sockets."""

from __future__ import annotations

import json

import pytest

from objstore.server import ObjstoreServer

from .conftest import Connect, StartServer
from .helpers import http_request, raw_http, recv_json


async def test_get_missing_key_is_null(server: ObjstoreServer) -> None:
    """GET /get/{key} of a missing key is 200 with a null value, as JSON."""
    answer = await http_request(server.port, "GET", "/get/nothing")
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"key": "nothing", "value": None}


async def test_post_set_then_get(server: ObjstoreServer) -> None:
    """POST /set stores the value, replies with it, and GET /get returns it."""
    answer = await http_request(
        server.port, "POST", "/set", '{"key": "k", "value": {"x": [1, 2]}}'
    )
    assert answer.status == 200
    assert answer.json() == {"key": "k", "value": {"x": [1, 2]}}
    assert (await http_request(server.port, "GET", "/get/k")).json() == {
        "key": "k",
        "value": {"x": [1, 2]},
    }


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/get/a%20b", "a b"),
        ("/get/a/b", "a/b"),
        ("/get/%C3%A9t%C3%A9", "été"),
        ("/get/q%3Fx", "q?x"),
    ],
)
async def test_get_percent_decodes_the_key(server: ObjstoreServer, path: str, key: str) -> None:
    """The key in the path is percent-decoded; keys with a slash work."""
    await http_request(server.port, "POST", "/set", json.dumps({"key": key, "value": key}))
    assert (await http_request(server.port, "GET", path)).json() == {"key": key, "value": key}


async def test_get_ignores_the_query_string(server: ObjstoreServer) -> None:
    """A query string after the key is not part of the key."""
    await http_request(server.port, "POST", "/set", '{"key": "k", "value": 1}')
    assert (await http_request(server.port, "GET", "/get/k?t=123")).json() == {
        "key": "k",
        "value": 1,
    }


async def test_post_set_publishes_to_websocket_subscribers(
    server: ObjstoreServer, client: Connect
) -> None:
    """A set over HTTP reaches WebSocket subscribers like a WebSocket set."""
    async with client() as ws:
        await ws.send('{"action": "subscribe", "key": "k"}')
        await ws.send('{"action": "get", "key": "k"}')
        await recv_json(ws)
        await http_request(server.port, "POST", "/set", '{"key": "k", "value": "from http"}')
        assert await recv_json(ws) == {"key": "k", "value": "from http"}


async def test_post_set_with_expect_continue(server: ObjstoreServer) -> None:
    """A body sent after Expect: 100-continue (curl does it above 1 KiB) is accepted."""
    body = json.dumps({"key": "big", "value": "x" * 5000})
    answer = await http_request(server.port, "POST", "/set", body, {"Expect": "100-continue"})
    assert answer.status == 200
    assert answer.json() == {"key": "big", "value": "x" * 5000}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("not json", "invalid JSON: Expecting value: line 1 column 1 (char 0)"),
        ("[1]", "invalid body: expected a JSON object, got [1]"),
        ('{"value": 1}', "invalid key: expected a non-empty string, got null"),
        ('{"key": "", "value": 1}', 'invalid key: expected a non-empty string, got ""'),
        ('{"key": "k"}', 'invalid body: missing "value" (send null to store null)'),
        ('{"key": "k", "value": NaN}', "invalid JSON: NaN is not allowed; JSON has no NaN"),
        ("", 'invalid body: empty; send {"key": "...", "value": ...} as JSON'),
    ],
)
async def test_post_set_bad_body_is_400(server: ObjstoreServer, body: str, error: str) -> None:
    """A bad POST /set body gets 400 with a specific error and stores nothing."""
    answer = await http_request(server.port, "POST", "/set", body)
    assert answer.status == 400
    assert answer.json() == {"error": error}
    assert len(server.store) == 0


async def test_post_set_body_not_utf8_is_400(server: ObjstoreServer) -> None:
    """A body that is not UTF-8 gets 400."""
    answer = await http_request(server.port, "POST", "/set", b"\xff\xfe")
    assert (answer.status, answer.json()) == (400, {"error": "invalid body: not UTF-8 text"})


async def test_post_set_too_large_is_413(start_server: StartServer) -> None:
    """A body over the size limit gets 413 without being read."""
    server = await start_server(max_size=2048)
    body = json.dumps({"key": "k", "value": "x" * 3000})
    answer = await http_request(server.port, "POST", "/set", body)
    assert answer.status == 413
    assert answer.json() == {"error": f"body too large: {len(body)} bytes, over the limit of 2048"}
    assert server.store.get("k") is None


async def test_chunked_body_is_411(server: ObjstoreServer) -> None:
    """A chunked body is refused with 411 and a message saying to send Content-Length."""
    data = (
        b"POST /set HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"key\r\n0\r\n\r\n'
    )
    raw = await raw_http(server.port, data)
    assert raw.startswith(b"HTTP/1.1 411 ")
    assert raw.endswith(
        b'{"error":"invalid body: chunked transfer encoding is not supported; '
        b'send the body with a Content-Length header"}'
    )


async def test_bad_content_length_is_400(server: ObjstoreServer) -> None:
    """A Content-Length that is not a number gets 400."""
    raw = await raw_http(
        server.port, b"POST /set HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 400 ")
    assert raw.endswith(b'{"error":"invalid Content-Length header: \'abc\'"}')


async def test_get_with_empty_key_is_400(server: ObjstoreServer) -> None:
    """GET /get/ without a key gets 400."""
    answer = await http_request(server.port, "GET", "/get/")
    assert (answer.status, answer.json()) == (
        400,
        {"error": 'invalid key: expected a non-empty string, got ""'},
    )


async def test_get_with_bad_percent_encoding_is_400(server: ObjstoreServer) -> None:
    """A percent-encoded key that is not UTF-8 gets 400."""
    answer = await http_request(server.port, "GET", "/get/%FF")
    assert (answer.status, answer.json()) == (
        400,
        {"error": "invalid key: the percent-encoded path is not UTF-8"},
    )


async def test_unknown_path_is_404(server: ObjstoreServer) -> None:
    """Unknown paths get 404 with a JSON error naming the routes."""
    answer = await http_request(server.port, "GET", "/nope")
    assert answer.status == 404
    assert answer.json() == {
        "error": 'not found: "/nope"; '
        "routes are GET /get/{key}, POST /set, /keys/{key}, GET /keys, GET /events, "
        "GET /test, GET /client.js and WebSocket /ws"
    }


@pytest.mark.parametrize(
    ("method", "path", "allowed"), [("GET", "/set", "POST"), ("POST", "/get/k", "GET")]
)
async def test_wrong_method_is_405(
    server: ObjstoreServer, method: str, path: str, allowed: str
) -> None:
    """A known path with the wrong method gets 405 and an Allow header."""
    answer = await http_request(server.port, method, path, "" if method == "POST" else None)
    assert answer.status == 405
    assert answer.headers["allow"] == allowed
    assert answer.json() == {"error": f"method {method} is not allowed on {path}; use {allowed}"}


async def test_test_page_is_served(server: ObjstoreServer) -> None:
    """GET /test serves the bundled HTML test page."""
    answer = await http_request(server.port, "GET", "/test")
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert b"<title>objstore test page</title>" in answer.body
    assert int(answer.headers["content-length"]) == len(answer.body)


async def test_client_module_is_served(server: ObjstoreServer) -> None:
    """GET /client.js serves the bundled JavaScript client as a module."""
    answer = await http_request(server.port, "GET", "/client.js")
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
    assert b"export async function connect(" in answer.body
    assert int(answer.headers["content-length"]) == len(answer.body)


async def test_client_module_refuses_other_methods(server: ObjstoreServer) -> None:
    """POST /client.js is 405, allowing GET."""
    answer = await http_request(server.port, "POST", "/client.js", "")
    assert answer.status == 405
    assert answer.headers["allow"] == "GET"


async def test_root_redirects_browsers_to_test_page(server: ObjstoreServer) -> None:
    """A browser opening / (no WebSocket upgrade) is sent to /test."""
    answer = await http_request(server.port, "GET", "/")
    assert answer.status == 302
    assert answer.headers["location"] == "/test"


async def test_ws_path_without_upgrade_is_426(server: ObjstoreServer) -> None:
    """A plain GET of /ws is told to upgrade."""
    answer = await http_request(server.port, "GET", "/ws")
    assert answer.status == 426
