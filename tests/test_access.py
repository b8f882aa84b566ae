"""Access control against the real server: every operation x every kind of client, over
WebSocket (handshake header and auth message), REST, the original HTTP routes and SSE."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from objstore.server import ObjstoreServer

from .conftest import StartServer
from .helpers import assert_silent, http_request, recv_json
from .test_sse import events

DISPLAY = "display-token-0123456789"
KITCHEN = "kitchen-token-0123456789"
ADMIN = "admin-token-0123456789ab"
WRONG = "wrong-token-0123456789ab"
RULES = f"""
[anonymous]
read = ["public/"]

[tokens.display]
token = "{DISPLAY}"
read = ["scores/"]

[tokens.kitchen]
token = "{KITCHEN}"
write = ["sensors/kitchen/"]

[tokens.admin]
token = "{ADMIN}"
read = [""]
write = [""]
"""
TOKENS = {"none": None, "display": DISPLAY, "kitchen": KITCHEN, "admin": ADMIN}


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "permissions.toml"
    path.write_text(RULES)
    return path


@pytest.fixture
async def server(start_server: StartServer, rules_file: Path) -> ObjstoreServer:
    server = await start_server(auth_file=rules_file)
    # What every test starts from, set by the admin.
    async with ws_as(server, ADMIN) as ws:
        for key, value in {
            "scores/a": 1,
            "scores/b": 2,
            "public/x": "hi",
            "sensors/kitchen/t": 20,
            "secret/s": "shh",
        }.items():
            assert (await ask(ws, {"action": "set", "key": key, "value": value}))["ok"]
    return server


def headers_for(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def ws_as(server: ObjstoreServer, token: str | None) -> Any:
    return connect(
        f"ws://127.0.0.1:{server.port}/ws", additional_headers=headers_for(token), max_size=None
    )


_ids = iter(range(1, 10**9))


async def ask(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    """Send *message* with a fresh id; return its reply (skipping updates)."""
    request_id = next(_ids)
    await ws.send(json.dumps({**message, "id": request_id}))
    while True:
        reply: dict[str, Any] = await recv_json(ws)
        if reply.get("id") == request_id:
            return reply


# operation -> (message, {client: expected}) where expected is "ok" or "forbidden".
WS_MATRIX: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "get readable": (
        {"action": "get", "key": "scores/a"},
        {"none": "forbidden", "display": "ok", "kitchen": "forbidden", "admin": "ok"},
    ),
    "get public": (
        {"action": "get", "key": "public/x"},
        {"none": "ok", "display": "forbidden", "kitchen": "forbidden", "admin": "ok"},
    ),
    "set scores": (
        {"action": "set", "key": "scores/a", "value": 9},
        {"none": "forbidden", "display": "forbidden", "kitchen": "forbidden", "admin": "ok"},
    ),
    "set sensor": (
        {"action": "set", "key": "sensors/kitchen/t", "value": 21},
        {"none": "forbidden", "display": "forbidden", "kitchen": "ok", "admin": "ok"},
    ),
    "patch sensor": (
        {"action": "patch", "key": "sensors/kitchen/p", "value": {"a": 1}},
        {"none": "forbidden", "display": "forbidden", "kitchen": "ok", "admin": "ok"},
    ),
    "incr sensor": (
        {"action": "incr", "key": "sensors/kitchen/n"},
        {"none": "forbidden", "display": "forbidden", "kitchen": "ok", "admin": "ok"},
    ),
    "delete sensor": (
        {"action": "delete", "key": "sensors/kitchen/gone"},
        {"none": "forbidden", "display": "forbidden", "kitchen": "ok", "admin": "ok"},
    ),
    "delete scores": (
        {"action": "delete", "key": "scores/b"},
        {"none": "forbidden", "display": "forbidden", "kitchen": "forbidden", "admin": "ok"},
    ),
    "keys all": (
        {"action": "keys"},
        {"none": "ok", "display": "ok", "kitchen": "forbidden", "admin": "ok"},
    ),
    "keys secret": (
        {"action": "keys", "prefix": "secret/"},
        {"none": "forbidden", "display": "forbidden", "kitchen": "forbidden", "admin": "ok"},
    ),
    "subscribe key": (
        {"action": "subscribe", "key": "scores/a"},
        {"none": "forbidden", "display": "ok", "kitchen": "forbidden", "admin": "ok"},
    ),
    "subscribe prefix": (
        {"action": "subscribe", "prefix": ""},
        {"none": "ok", "display": "ok", "kitchen": "forbidden", "admin": "ok"},
    ),
    "unsubscribe": (
        {"action": "unsubscribe", "key": "secret/s"},
        {"none": "ok", "display": "ok", "kitchen": "ok", "admin": "ok"},
    ),
    "batch": (
        {
            "action": "batch",
            "ops": [
                {"action": "set", "key": "sensors/kitchen/b", "value": 1},
                {"action": "set", "key": "scores/c", "value": 1},
            ],
        },
        {"none": "forbidden", "display": "forbidden", "kitchen": "forbidden", "admin": "ok"},
    ),
}


async def close_of(ws: ClientConnection) -> tuple[int, str]:
    """Read *ws* until the server closes it; the close code and reason it sent."""
    try:
        while True:
            await recv_json(ws)
    except ConnectionClosed as closed:
        frame = closed.rcvd
    if frame is None:
        raise AssertionError("the connection ended without a close frame")
    return frame.code, frame.reason


def outcome(reply: dict[str, Any]) -> str:
    if reply.get("ok") is True:
        return "ok"
    return str(reply.get("code"))


@pytest.mark.parametrize("via", ["header", "auth message"])
async def test_every_operation_for_every_client(server: ObjstoreServer, via: str) -> None:
    """Each operation is allowed or refused with forbidden as the rules say, for each
    client, whether the token comes in the handshake or in an auth message."""
    got: dict[str, dict[str, str]] = {}
    for client, token in TOKENS.items():
        async with ws_as(server, token if via == "header" else None) as ws:
            if via == "auth message" and token is not None:
                reply = await ask(ws, {"action": "auth", "token": token})
                assert (reply["ok"], reply["name"]) == (True, client)
            for name, (message, _) in WS_MATRIX.items():
                got.setdefault(name, {})[client] = outcome(await ask(ws, message))
    assert got == {name: expected for name, (_, expected) in WS_MATRIX.items()}


async def test_a_refusal_names_the_token_or_asks_for_one(server: ObjstoreServer) -> None:
    async with ws_as(server, DISPLAY) as ws:
        reply = await ask(ws, {"action": "set", "key": "scores/a", "value": 1})
        assert reply["error"] == (
            'forbidden: token "display" may not do this: writing key "scores/a"'
        )
    async with ws_as(server, None) as ws:
        reply = await ask(ws, {"action": "get", "key": "scores/a"})
        assert reply["error"] == (
            'forbidden: reading key "scores/a" needs a token; present a token '
            "(Authorization: Bearer TOKEN, or an auth message)"
        )


async def test_a_refusal_never_tells_whether_a_key_exists(server: ObjstoreServer) -> None:
    """A forbidden read of a key that exists and one that does not get the same answer."""
    async with ws_as(server, DISPLAY) as ws:
        there = await ask(ws, {"action": "get", "key": "secret/s"})
        missing = await ask(ws, {"action": "get", "key": "secret/none"})
    assert there["error"].replace("secret/s", "K") == missing["error"].replace("secret/none", "K")
    for key in ("secret/s", "secret/none"):
        answer = await http_request(
            server.port, "GET", f"/keys/{key}", headers=headers_for(DISPLAY)
        )
        assert answer.status == 403


async def test_the_original_messages_without_ids_are_checked_too(server: ObjstoreServer) -> None:
    async with ws_as(server, DISPLAY) as ws:
        await ws.send(json.dumps({"action": "set", "key": "scores/a", "value": 5}))
        reply = await recv_json(ws)
        assert reply["code"] == "forbidden"
        await ws.send(json.dumps({"action": "get", "key": "scores/a"}))
        assert await recv_json(ws) == {"key": "scores/a", "value": 1}


async def test_listing_and_prefix_subscriptions_cover_only_readable_keys(
    server: ObjstoreServer,
) -> None:
    async with ws_as(server, DISPLAY) as ws:
        assert (await ask(ws, {"action": "keys"}))["keys"] == ["scores/a", "scores/b"]
        paged = await ask(ws, {"action": "keys", "limit": 1, "after": "scores/a"})
        assert (paged["keys"], paged["next"]) == (["scores/b"], None)
        await ws.send(json.dumps({"action": "subscribe", "prefix": "", "id": "s"}))
        snapshot = [await recv_json(ws) for _ in range(3)]
        assert [m.get("key") for m in snapshot] == ["scores/a", "scores/b", None]
        async with ws_as(server, ADMIN) as admin:
            await ask(admin, {"action": "set", "key": "secret/s", "value": "new"})
            await ask(admin, {"action": "set", "key": "scores/z", "value": 26})
        update = await recv_json(ws)
        assert (update["key"], update["value"]) == ("scores/z", 26)
        # Unsubscribing the prefix asked for ends the narrower subscriptions it was made of.
        assert (await ask(ws, {"action": "unsubscribe", "prefix": ""}))["ok"]
        async with ws_as(server, ADMIN) as admin:
            await ask(admin, {"action": "set", "key": "scores/a", "value": 100})
        await assert_silent(ws)


async def test_a_resume_covers_only_readable_keys(server: ObjstoreServer) -> None:
    async with ws_as(server, ADMIN) as admin:
        since = (await ask(admin, {"action": "get", "key": "secret/s"}))["rev"]
        await ask(admin, {"action": "set", "key": "secret/s", "value": 2})
        await ask(admin, {"action": "set", "key": "scores/b", "value": 3})
    async with ws_as(server, DISPLAY) as ws:
        await ws.send(json.dumps({"action": "subscribe", "prefix": "", "since": since, "id": 1}))
        first, reply = await recv_json(ws), await recv_json(ws)
        assert (first["key"], first["value"]) == ("scores/b", 3)
        assert reply["reset"] is False


async def test_a_conflict_on_a_key_the_token_cannot_read_hides_its_value(
    server: ObjstoreServer,
) -> None:
    async with ws_as(server, KITCHEN) as ws:
        reply = await ask(
            ws, {"action": "set", "key": "sensors/kitchen/t", "value": 1, "ifRev": 999}
        )
    assert reply["code"] == "conflict"
    assert "rev" in reply
    assert "value" not in reply


async def test_an_unknown_token_is_refused_at_the_handshake(server: ObjstoreServer) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with ws_as(server, WRONG):
            pass
    assert caught.value.response.status_code == 401
    body = json.loads(caught.value.response.body)
    assert body["code"] == "forbidden"
    assert caught.value.response.headers["WWW-Authenticate"] == 'Bearer realm="objstore"'


async def test_unknown_tokens_in_auth_messages_end_the_connection_after_five(
    server: ObjstoreServer,
) -> None:
    async with ws_as(server, None) as ws:
        for _ in range(4):
            reply = await ask(ws, {"action": "auth", "token": WRONG})
            assert reply["code"] == "forbidden"
            assert reply["error"].startswith("forbidden: unknown token")
        # Still anonymous, still connected.
        assert (await ask(ws, {"action": "get", "key": "public/x"}))["value"] == "hi"
        await ws.send(json.dumps({"action": "auth", "token": WRONG, "id": "last"}))
        assert await close_of(ws) == (1008, "too many unknown tokens")


# -- HTTP -------------------------------------------------------------------------------

# request -> {client: status}
HTTP_MATRIX: dict[tuple[str, str, str | None], dict[str, int]] = {
    ("GET", "/get/scores/a", None): {"none": 401, "display": 200, "kitchen": 403, "admin": 200},
    ("GET", "/get/public/x", None): {"none": 200, "display": 403, "kitchen": 403, "admin": 200},
    ("POST", "/set", '{"key": "sensors/kitchen/t", "value": 1}'): {
        "none": 401,
        "display": 403,
        "kitchen": 200,
        "admin": 200,
    },
    ("GET", "/keys/scores/a", None): {"none": 401, "display": 200, "kitchen": 403, "admin": 200},
    ("PUT", "/keys/sensors/kitchen/t", "5"): {
        "none": 401,
        "display": 403,
        "kitchen": 200,
        "admin": 200,
    },
    ("PATCH", "/keys/sensors/kitchen/p", '{"a": 1}'): {
        "none": 401,
        "display": 403,
        "kitchen": 200,
        "admin": 200,
    },
    ("DELETE", "/keys/scores/b", None): {
        "none": 401,
        "display": 403,
        "kitchen": 403,
        "admin": 204,
    },
    ("GET", "/keys?prefix=secret/", None): {
        "none": 401,
        "display": 403,
        "kitchen": 403,
        "admin": 200,
    },
    ("GET", "/keys", None): {"none": 200, "display": 200, "kitchen": 403, "admin": 200},
    ("GET", "/test", None): {"none": 200, "display": 200, "kitchen": 200, "admin": 200},
    ("GET", "/client.js", None): {"none": 200, "display": 200, "kitchen": 200, "admin": 200},
}


async def test_http_routes_for_every_client(server: ObjstoreServer) -> None:
    """The original routes and REST: 401 without a token, 403 with one that may not."""
    got: dict[tuple[str, str, str | None], dict[str, int]] = {}
    for request in HTTP_MATRIX:
        method, path, body = request
        for client, token in TOKENS.items():
            answer = await http_request(server.port, method, path, body, headers_for(token))
            got.setdefault(request, {})[client] = answer.status
            if answer.status == 401:
                assert answer.headers["www-authenticate"] == 'Bearer realm="objstore"'
                assert answer.json()["code"] == "forbidden"
    assert got == HTTP_MATRIX


async def test_an_unknown_token_gets_401_on_every_data_route(server: ObjstoreServer) -> None:
    for method, path, body in HTTP_MATRIX:
        answer = await http_request(server.port, method, path, body, headers_for(WRONG))
        expected = 200 if path in ("/test", "/client.js") else 401
        assert (path, answer.status) == (path, expected)


async def test_another_scheme_is_not_taken_for_no_token(server: ObjstoreServer) -> None:
    answer = await http_request(
        server.port, "GET", "/get/public/x", headers={"Authorization": "Basic YTpi"}
    )
    assert answer.status == 401


async def test_http_listing_covers_only_readable_keys(server: ObjstoreServer) -> None:
    answer = await http_request(server.port, "GET", "/keys", headers=headers_for(None))
    assert answer.json() == {"keys": ["public/x"], "next": None}


async def test_event_streams_are_checked_and_narrowed(server: ObjstoreServer) -> None:
    answer = await http_request(server.port, "GET", "/events?key=secret/s", headers={})
    assert answer.status == 401
    answer = await http_request(
        server.port, "GET", "/events?prefix=secret/", headers=headers_for(DISPLAY)
    )
    assert answer.status == 403
    async with events(server, "prefix=", headers_for(DISPLAY)) as stream:
        first = await stream.until_ready()
        assert [json.loads(data).get("key") for _, data, _ in first[:-1]] == [
            "scores/a",
            "scores/b",
        ]
        async with ws_as(server, ADMIN) as admin:
            await ask(admin, {"action": "set", "key": "secret/s", "value": 0})
            await ask(admin, {"action": "set", "key": "scores/a", "value": 7})
        (event,) = await stream.next()
        assert json.loads(event[1])["key"] == "scores/a"


# -- reloading ----------------------------------------------------------------------------


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():  # noqa: ASYNC110  # polls the server, not a local flag
            await asyncio.sleep(0.05)


async def test_a_changed_file_applies_at_once_and_closes_who_lost_rights(
    server: ObjstoreServer, rules_file: Path
) -> None:
    """Rules change under load: the display loses scores/ and is closed; the kitchen,
    unchanged, keeps its connection and its writes go on."""
    async with ws_as(server, DISPLAY) as display, ws_as(server, KITCHEN) as kitchen:
        await ask(display, {"action": "subscribe", "prefix": "scores/"})

        async def write_on() -> list[str]:
            message = {"action": "incr", "key": "sensors/kitchen/n"}
            return [outcome(await ask(kitchen, message)) for _ in range(300)]

        writing = asyncio.create_task(write_on())
        await asyncio.sleep(0.02)
        rules_file.write_text(RULES.replace('read = ["scores/"]', 'read = ["public/"]'))
        server.access.reload()  # as the file watch or SIGHUP would
        assert await close_of(display) == (1008, "permissions changed; reconnect")
        assert await writing == ["ok"] * 300
    async with ws_as(server, DISPLAY) as display:
        assert outcome(await ask(display, {"action": "get", "key": "scores/a"})) == "forbidden"
        assert outcome(await ask(display, {"action": "get", "key": "public/x"})) == "ok"


async def test_the_file_is_watched(server: ObjstoreServer, rules_file: Path) -> None:
    """Without a signal, a change to the file is picked up within about a second."""
    rules_file.write_text(RULES.replace('read = ["public/"]', 'read = ["scores/"]', 1))

    async def anonymous_reads_scores() -> bool:
        answer = await http_request(server.port, "GET", "/get/scores/a")
        return answer.status == 200

    await eventually(anonymous_reads_scores)


async def test_a_broken_file_at_reload_keeps_the_rules(
    server: ObjstoreServer, rules_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rules_file.write_text("[tokens.display\n")
    assert server.access.reload() is False
    assert "permissions not reloaded, the previous ones stay in force" in caplog.text
    answer = await http_request(server.port, "GET", "/get/scores/a", headers=headers_for(DISPLAY))
    assert answer.status == 200


async def test_a_single_token_guards_everything(start_server: StartServer) -> None:
    server = await start_server(token=ADMIN)
    assert (await http_request(server.port, "GET", "/get/a")).status == 401
    answer = await http_request(server.port, "GET", "/get/a", headers=headers_for(ADMIN))
    assert answer.status == 200


async def test_without_tokens_everybody_may_do_everything(start_server: StartServer) -> None:
    server = await start_server()
    answer = await http_request(server.port, "POST", "/set", '{"key": "a", "value": 1}')
    assert answer.status == 200


async def stream_status(server: ObjstoreServer, query: str, token: str | None) -> int:
    """The status of ``GET /events?QUERY`` (the head only: a stream stays open)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    lines = [f"GET /events?{query} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{name}: {value}" for name, value in headers_for(token).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    return int(head.split(b" ", 2)[1])


SSE_MATRIX: dict[str, dict[str, int]] = {
    "key=scores/a": {"none": 401, "wrong": 401, "display": 200, "kitchen": 403, "admin": 200},
    "key=public/x": {"none": 200, "wrong": 401, "display": 403, "kitchen": 403, "admin": 200},
    "prefix=": {"none": 200, "wrong": 401, "display": 200, "kitchen": 403, "admin": 200},
    "prefix=secret/": {"none": 401, "wrong": 401, "display": 403, "kitchen": 403, "admin": 200},
}


async def test_event_streams_for_every_client(server: ObjstoreServer) -> None:
    """Each stream opens (200) or is refused (401, 403) as the rules say, per client."""
    clients = {**TOKENS, "wrong": WRONG}
    got = {
        query: {
            client: await stream_status(server, query, token) for client, token in clients.items()
        }
        for query in SSE_MATRIX
    }
    assert got == SSE_MATRIX
