"""Other websites against a real server: WebSocket hijacking, CSRF, DNS rebinding, CORS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from objstore.server import ObjstoreServer

from .conftest import StartServer
from .helpers import HttpAnswer, http_request, raw_http, recv_json

EVIL = "http://evil.example"
APP = "http://localhost:5173"


async def refused_upgrade(port: int, origin: str) -> InvalidStatus:
    """Open a WebSocket from *origin*; return the refusal (fails if it is accepted)."""
    with pytest.raises(InvalidStatus) as refusal:
        async with connect(f"ws://127.0.0.1:{port}/ws", origin=Origin(origin)):
            pass
    return refusal.value


async def stored(port: int, key: str) -> object:
    """The value of *key*, read over a WebSocket without Origin."""
    async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send(json.dumps({"action": "get", "key": key}))
        reply = await recv_json(ws)
    return reply["value"]


async def post_set(port: int, body: str, **headers: str) -> HttpAnswer:
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return await http_request(port, "POST", "/set", body, named)


async def test_upgrade_from_another_website_is_refused(server: ObjstoreServer) -> None:
    """A WebSocket from a page on another site is refused with 403 and a JSON body saying why."""
    refusal = await refused_upgrade(server.port, EVIL)
    assert refusal.response.status_code == 403
    assert json.loads(refusal.response.body) == {
        "error": "origin http://evil.example is not allowed; "
        "start objstore with --allow-origin http://evil.example to allow it"
    }


async def test_upgrade_from_null_origin_is_refused(server: ObjstoreServer) -> None:
    """A WebSocket from a sandboxed frame or a file:// page (Origin: null) is refused."""
    refusal = await refused_upgrade(server.port, "null")
    assert refusal.response.status_code == 403
    assert json.loads(refusal.response.body)["error"].startswith("origin null (a sandboxed")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_upgrade_from_own_origin_works(server: ObjstoreServer, host: str) -> None:
    """A page served by the server itself (its console) opens a WebSocket and sets values."""
    origin = Origin(f"http://{host}:{server.port}")
    async with connect(f"ws://127.0.0.1:{server.port}/ws", origin=origin) as ws:
        await ws.send('{"action": "set", "key": "k", "value": 1}')
        await ws.send('{"action": "get", "key": "k"}')
        assert await recv_json(ws) == {"key": "k", "value": 1}


async def test_upgrade_without_origin_works(server: ObjstoreServer) -> None:
    """A client that sends no Origin (a script, a native client) connects as before."""
    assert await stored(server.port, "k") is None


async def test_post_from_another_website_is_refused(
    server: ObjstoreServer, cache_dir: Path
) -> None:
    """A form-like text/plain POST /set from another site is 403 and stores nothing."""
    answer = await post_set(
        server.port, '{"key": "k", "value": "pwned"}', origin=EVIL, content_type="text/plain"
    )
    assert answer.status == 403
    assert answer.json()["error"].startswith("origin http://evil.example is not allowed")
    assert "access-control-allow-origin" not in answer.headers
    assert await stored(server.port, "k") is None
    assert not (cache_dir / "k.json").exists()


async def test_get_from_another_website_is_served_without_cors(server: ObjstoreServer) -> None:
    """A read from another site is answered, without CORS headers, so its page cannot read it."""
    answer = await http_request(server.port, "GET", "/get/k", headers={"Origin": EVIL})
    assert answer.status == 200
    assert "access-control-allow-origin" not in answer.headers


async def test_rebound_host_is_refused(server: ObjstoreServer) -> None:
    """GET /get/k naming another host (DNS rebinding) is 403 on a loopback server."""
    request = (
        f"GET /get/k HTTP/1.1\r\nHost: evil.example:{server.port}\r\nConnection: close\r\n\r\n"
    )
    head, _, body = (await raw_http(server.port, request.encode())).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert json.loads(body) == {
        "error": f"host evil.example:{server.port} is not allowed on a loopback address "
        f"(it could be DNS rebinding); open http://localhost:{server.port} instead, "
        "or name a reverse proxy's host with --allow-origin"
    }


async def test_rebound_host_cannot_upgrade(server: ObjstoreServer) -> None:
    """A WebSocket upgrade naming another host is refused too, with the same answer."""
    request = (
        f"GET /ws HTTP/1.1\r\nHost: evil.example:{server.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    head, _, body = (await raw_http(server.port, request.encode())).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert json.loads(body)["error"].startswith(f"host evil.example:{server.port} is not allowed")


async def test_same_origin_post_keeps_any_content_type(server: ObjstoreServer) -> None:
    """The console's own POST /set is served whatever its content type, as before."""
    answer = await post_set(
        server.port,
        '{"key": "k", "value": 2}',
        origin=f"http://127.0.0.1:{server.port}",
        content_type="text/plain;charset=UTF-8",
    )
    assert (answer.status, answer.json()) == (200, {"key": "k", "value": 2})


async def test_curl_form_post_still_works(server: ObjstoreServer) -> None:
    """curl -d sends x-www-form-urlencoded and no Origin: still stored."""
    answer = await post_set(
        server.port,
        '{"key": "k", "value": 3}',
        content_type="application/x-www-form-urlencoded",
    )
    assert (answer.status, answer.json()) == (200, {"key": "k", "value": 3})


async def test_allowed_origin_may_upgrade(start_server: StartServer) -> None:
    """--allow-origin lets that site's pages open a WebSocket."""
    server = await start_server(allow_origins=(APP,))
    async with connect(f"ws://127.0.0.1:{server.port}/ws", origin=Origin(APP)) as ws:
        await ws.send('{"action": "get", "key": "k"}')
        assert await recv_json(ws) == {"key": "k", "value": None}


async def test_allowed_origin_gets_cors_headers(start_server: StartServer) -> None:
    """A read from an allowed origin carries Access-Control-Allow-Origin and Vary: Origin."""
    server = await start_server(allow_origins=(APP,))
    answer = await http_request(server.port, "GET", "/get/k", headers={"Origin": APP})
    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == APP
    assert answer.headers["vary"] == "Origin"


async def test_preflight_of_allowed_origin(start_server: StartServer) -> None:
    """A CORS preflight from an allowed origin is answered 204 with what it may send."""
    server = await start_server(allow_origins=(APP,))
    answer = await http_request(
        server.port,
        "OPTIONS",
        "/set",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert answer.status == 204
    assert answer.body == b""
    assert "content-length" not in answer.headers  # RFC 9110: a 204 has none
    assert "content-type" not in answer.headers
    assert {name: value for name, value in answer.headers.items() if "access" in name} == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        "access-control-allow-headers": (
            "Authorization, Content-Type, If-Match, If-None-Match, Last-Event-ID"
        ),
        "access-control-expose-headers": "ETag",
        "access-control-max-age": "600",
    }


async def test_preflight_of_other_origin_is_refused(start_server: StartServer) -> None:
    """A CORS preflight from an origin that is not allowed is 403."""
    server = await start_server(allow_origins=(APP,))
    answer = await http_request(
        server.port,
        "OPTIONS",
        "/set",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
    )
    assert answer.status == 403
    assert "access-control-allow-origin" not in answer.headers


async def test_allowed_origin_may_post_json(start_server: StartServer) -> None:
    """A JSON POST /set from an allowed origin is stored and readable by its page."""
    server = await start_server(allow_origins=(APP,))
    answer = await post_set(
        server.port, '{"key": "k", "value": 4}', origin=APP, content_type="application/json"
    )
    assert (answer.status, answer.json()) == (200, {"key": "k", "value": 4})
    assert answer.headers["access-control-allow-origin"] == APP
    assert await stored(server.port, "k") == 4


async def test_allowed_origin_may_not_post_text(
    start_server: StartServer, cache_dir: Path
) -> None:
    """A text/plain POST /set from an allowed origin is 415 and stores nothing."""
    server = await start_server(allow_origins=(APP,))
    answer = await post_set(
        server.port, '{"key": "k", "value": 5}', origin=APP, content_type="text/plain"
    )
    assert answer.status == 415
    assert answer.json() == {
        "error": "content type text/plain is not accepted from another origin; "
        "send the body as application/json"
    }
    assert answer.headers["access-control-allow-origin"] == APP
    assert await stored(server.port, "k") is None
    assert not (cache_dir / "k.json").exists()


async def test_star_allows_every_origin(start_server: StartServer) -> None:
    """--allow-origin * lets any site, and file:// pages, connect; CORS says *."""
    server = await start_server(allow_origins=("*",))
    async with connect(f"ws://127.0.0.1:{server.port}/ws", origin=Origin("null")) as ws:
        await ws.send('{"action": "get", "key": "k"}')
        assert await recv_json(ws) == {"key": "k", "value": None}
    answer = await post_set(
        server.port, '{"key": "k", "value": 6}', origin=EVIL, content_type="application/json"
    )
    assert answer.status == 200
    assert answer.headers["access-control-allow-origin"] == "*"
