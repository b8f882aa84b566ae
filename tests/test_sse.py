"""``GET /events``: Server-Sent Events of a key or a prefix, against a real server.

Real sockets; events are read as a browser's ``EventSource`` reads them (the
WHATWG rules, parsed by :func:`tests.test_event_streams.parse_event_stream`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import ClientConnection

from objstore.keyspace import HISTORY_SIZE
from objstore.server import ObjstoreServer

from .conftest import Connect, StartServer
from .helpers import http_request, raw_http, recv_json
from .test_event_streams import parse_event_stream

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
    b"Connection: close\r\n\r\n"
)

Event = tuple[str, str, str]
ORIGIN = "https://app.example"


class EventReader:
    """One event stream, read from a raw socket: events as ``(type, data, lastEventId)``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = b""
        self.taken = 0

    async def next(self, count: int = 1, timeout: float = 5) -> list[Event]:
        """The next *count* events, waiting for them."""
        async with asyncio.timeout(timeout):
            while len(events := parse_event_stream(self.received.decode())) < self.taken + count:
                chunk = await self.reader.read(65536)
                assert chunk, f"the stream ended after {events}"
                self.received += chunk
        self.taken += count
        return events[self.taken - count : self.taken]

    async def until_ready(self, timeout: float = 5) -> list[Event]:
        """Every event up to and including the next ``ready``."""
        events: list[Event] = []
        while not events or events[-1][0] != "ready":
            events += await self.next(timeout=timeout)
        return events

    async def silent(self, timeout: float = 0.3) -> None:
        """Fail if an event arrives within *timeout* seconds."""
        with pytest.raises(TimeoutError):
            await self.next(timeout=timeout)


@asynccontextmanager
async def events(
    server: ObjstoreServer, query: str, headers: dict[str, str] | None = None
) -> AsyncIterator[EventReader]:
    """Open ``GET /events?QUERY``, check the head, and close the socket at the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    lines = [f"GET /events?{query} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == HEAD
        yield EventReader(reader, writer)
    finally:
        writer.close()


def update(key: str, value: object, rev: int, **more: bool) -> Event:
    data = {"key": key, "value": value, "rev": rev, **more}
    return ("update", json.dumps(data, separators=(",", ":"), ensure_ascii=False), str(rev))


def ready(rev: int) -> Event:
    return ("ready", f'{{"rev":{rev}}}', str(rev))


async def ask(ws: ClientConnection, message: dict[str, object]) -> dict[str, object]:
    """Send *message* (with an id) on a WebSocket and return its reply."""
    await ws.send(json.dumps(message))
    reply: dict[str, object] = await recv_json(ws)
    assert reply.get("ok") is True, reply
    return reply


async def eventually(condition: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def put(server: ObjstoreServer, key: str, value: str) -> None:
    answer = await http_request(server.port, "PUT", f"/keys/{key}", value)
    assert answer.status == 200, answer.body


# -- the snapshot ---------------------------------------------------------------------------


async def test_key_stream_sends_the_value_then_ready(server: ObjstoreServer) -> None:
    """?key=K sends the key's value with its revision, then ready with the store's."""
    await put(server, "k", '{"a": 1}')
    await put(server, "other", "2")
    async with events(server, "key=k") as stream:
        assert await stream.until_ready() == [update("k", {"a": 1}, 1), ready(2)]


async def test_key_stream_of_a_missing_key_sends_only_ready(server: ObjstoreServer) -> None:
    """?key=K of a key without a value sends ready alone."""
    await put(server, "other", "1")
    async with events(server, "key=k") as stream:
        assert await stream.until_ready() == [ready(1)]


async def test_prefix_stream_sends_the_snapshot_in_revision_order(
    server: ObjstoreServer,
) -> None:
    """?prefix=P sends every matching key, by revision (not key) order, then ready."""
    for key, value in (("p/b", "1"), ("p/a", "2"), ("q/x", "3"), ("p/c", "4"), ("p/b", "5")):
        await put(server, key, value)
    async with events(server, "prefix=p%2F") as stream:
        assert await stream.until_ready() == [
            update("p/a", 2, 2),
            update("p/c", 4, 4),
            update("p/b", 5, 5),
            ready(5),
        ]


async def test_empty_prefix_streams_every_key(server: ObjstoreServer) -> None:
    """?prefix= (empty) covers every key."""
    await put(server, "a", "1")
    await put(server, "%C3%A9", "2")
    async with events(server, "prefix=") as stream:
        assert await stream.until_ready() == [update("a", 1, 1), update("é", 2, 2), ready(2)]


# -- live updates ---------------------------------------------------------------------------


async def test_live_updates_from_websocket_and_rest(
    server: ObjstoreServer, client: Connect
) -> None:
    """After ready come the writes of WebSocket and REST clients, with their revisions."""
    async with events(server, "prefix=p%2F") as stream, client() as ws:
        assert await stream.until_ready() == [ready(0)]
        await ask(ws, {"action": "set", "key": "p/a", "value": [1], "id": 1})
        await ask(ws, {"action": "set", "key": "q/a", "value": [1], "id": 2})
        await put(server, "p/b", '"two"')
        await ask(ws, {"action": "patch", "key": "p/b", "value": {"x": 1}, "id": 3})
        await ask(ws, {"action": "incr", "key": "p/n", "by": 5, "id": 4})
        assert await stream.next(4) == [
            update("p/a", [1], 1),
            update("p/b", "two", 3),
            update("p/b", {"x": 1}, 4),
            update("p/n", 5, 5),
        ]
        await stream.silent()


async def test_deletions_say_deleted(server: ObjstoreServer, client: Connect) -> None:
    """A deletion, over WebSocket or REST, is an update with value null and deleted true."""
    await put(server, "k", "1")
    async with events(server, "key=k") as stream, client() as ws:
        await stream.until_ready()
        await ask(ws, {"action": "delete", "key": "k", "id": 1})
        await put(server, "k", "2")
        assert (await http_request(server.port, "DELETE", "/keys/k")).status == 204
        assert await stream.next(3) == [
            update("k", None, 2, deleted=True),
            update("k", 2, 3),
            update("k", None, 4, deleted=True),
        ]


async def test_expiry_says_expired(server: ObjstoreServer) -> None:
    """A key whose ttl runs out is an update with deleted and expired true."""
    async with events(server, "key=k") as stream:
        await stream.until_ready()
        await put(server, "k?ttl=0.1", "1")
        first, second = await stream.next(2)
        expires = json.loads(first[1])["expires"]
        assert first == ("update", f'{{"key":"k","value":1,"rev":1,"expires":{expires}}}', "1")
        assert second == update("k", None, 2, deleted=True, expired=True)


# -- resume ---------------------------------------------------------------------------------


async def history(server: ObjstoreServer) -> None:
    """p/a, p/b, p/c at 1-3, q/x at 4, p/a again at 5, p/b deleted at 6."""
    for key, value in (("p/a", "1"), ("p/b", "2"), ("p/c", "3"), ("q/x", "4"), ("p/a", "5")):
        await put(server, key, value)
    assert (await http_request(server.port, "DELETE", "/keys/p/b")).status == 204


async def test_since_within_the_history_sends_only_the_changes(server: ObjstoreServer) -> None:
    """?since=R sends each covered key changed after R, deletions included; no reset."""
    await history(server)
    async with events(server, "prefix=p%2F&since=3") as stream:
        assert await stream.until_ready() == [
            update("p/a", 5, 5),
            update("p/b", None, 6, deleted=True),
            ready(6),
        ]


async def test_since_the_current_revision_sends_only_ready(server: ObjstoreServer) -> None:
    """?since=NOW has nothing to send before ready."""
    await history(server)
    async with events(server, "key=p%2Fa&since=6") as stream:
        assert await stream.until_ready() == [ready(6)]


@pytest.mark.parametrize("since", ["7", "1000000"])
async def test_since_an_unknown_revision_resets(server: ObjstoreServer, since: str) -> None:
    """?since=R ahead of the store sends a reset event, then the full snapshot."""
    await history(server)
    async with events(server, f"prefix=p%2F&since={since}") as stream:
        assert await stream.until_ready() == [
            ("reset", '{"reset":true,"prefix":"p/"}', ""),
            update("p/c", 3, 3),
            update("p/a", 5, 5),
            ready(6),
        ]


async def test_key_stream_resets_with_its_key(server: ObjstoreServer) -> None:
    """The reset event of a key stream names the key."""
    await history(server)
    async with events(server, "key=p%2Fa&since=99") as stream:
        assert await stream.until_ready() == [
            ("reset", '{"reset":true,"key":"p/a"}', ""),
            update("p/a", 5, 5),
            ready(6),
        ]


async def test_last_event_id_stands_for_since(server: ObjstoreServer) -> None:
    """A Last-Event-ID header resumes as ?since= does."""
    await history(server)
    async with events(server, "prefix=p%2F", {"Last-Event-ID": "5"}) as stream:
        assert await stream.until_ready() == [update("p/b", None, 6, deleted=True), ready(6)]


async def test_last_event_id_wins_over_since(server: ObjstoreServer) -> None:
    """With both, the Last-Event-ID a reconnecting EventSource sends is the one used."""
    await history(server)
    async with events(server, "prefix=p%2F&since=0", {"Last-Event-ID": "5"}) as stream:
        assert await stream.until_ready() == [update("p/b", None, 6, deleted=True), ready(6)]


# -- bad requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "error", "code"),
    [
        (
            "key=a&prefix=b",
            "invalid events request: give exactly one of ?key=K and ?prefix=P",
            "invalid_message",
        ),
        (
            "",
            "invalid events request: give exactly one of ?key=K and ?prefix=P",
            "invalid_message",
        ),
        (
            "since=3",
            "invalid events request: give exactly one of ?key=K and ?prefix=P",
            "invalid_message",
        ),
        ("key=a&since=x", 'invalid since: expected a revision, got "x"', "invalid_message"),
        ("key=a&since=-1", 'invalid since: expected a revision, got "-1"', "invalid_message"),
        ("key=a&since=", 'invalid since: expected a revision, got ""', "invalid_message"),
        ("key=", 'invalid key: expected a non-empty string, got ""', "invalid_key"),
        ("key=%FF", "invalid query: not UTF-8 once percent-decoded", "invalid_message"),
    ],
)
async def test_bad_requests_are_400(
    server: ObjstoreServer, query: str, error: str, code: str
) -> None:
    """A request that names no single key or prefix, or a bad since, is 400 JSON."""
    answer = await http_request(server.port, "GET", f"/events?{query}")
    assert (answer.status, answer.headers["content-type"], answer.json()) == (
        400,
        "application/json",
        {"error": error, "code": code},
    )
    assert server.hub.subscriber_count == 0


async def test_a_bad_last_event_id_is_400(server: ObjstoreServer) -> None:
    """A Last-Event-ID that is not a revision is 400 JSON."""
    answer = await http_request(
        server.port, "GET", "/events?key=a", None, {"Last-Event-ID": "abc"}
    )
    assert (answer.status, answer.json()) == (
        400,
        {"error": 'invalid since: expected a revision, got "abc"', "code": "invalid_message"},
    )


async def test_a_superscript_since_is_400(server: ObjstoreServer) -> None:
    """A since of "²" (U+00B2, a digit to str.isdigit) is 400, not a dropped connection."""
    answer = await http_request(server.port, "GET", "/events?key=a&since=%C2%B2")
    assert answer.status == 400


async def test_a_superscript_last_event_id_is_400(server: ObjstoreServer) -> None:
    """A Last-Event-ID of byte 0xB2 (a superscript two in Latin-1) is 400."""
    raw = await raw_http(
        server.port,
        b"GET /events?key=a HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: \xb2\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 400 ")


async def test_post_is_405(server: ObjstoreServer) -> None:
    """POST /events is 405 with Allow: GET."""
    answer = await http_request(server.port, "POST", "/events?key=a", "{}")
    assert (answer.status, answer.headers["allow"], answer.json()) == (
        405,
        "GET",
        {"error": "method POST is not allowed on /events; use GET", "code": "invalid_message"},
    )


@pytest.mark.parametrize(
    ("allowed", "origin", "cors"), [(True, ORIGIN, True), (False, "https://evil.example", False)]
)
async def test_a_stream_for_another_origin_has_cors_headers_only_if_allowed(
    start_server: StartServer, allowed: bool, origin: str, cors: bool
) -> None:
    """A stream asked for by a page of an allowed origin carries the CORS headers; a page
    of another site is served without them, so its browser does not let it read."""
    server = await start_server(allow_origins=(ORIGIN,) if allowed else ())
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"GET /events?key=k HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\n\r\n".encode()
    )
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    assert head.startswith(HEAD.removesuffix(b"\r\n"))
    extra = head.removeprefix(HEAD.removesuffix(b"\r\n"))
    assert extra == (
        f"Access-Control-Allow-Origin: {ORIGIN}\r\nVary: Origin\r\n"
        "Access-Control-Expose-Headers: ETag\r\n\r\n".encode()
        if cors
        else b"\r\n"
    )


# -- the end of a stream --------------------------------------------------------------------


@pytest.mark.parametrize("query", ["key=k", "prefix=p%2F"])
async def test_closing_the_client_drops_the_subscription(
    server: ObjstoreServer, query: str
) -> None:
    """A client that closes its socket is unsubscribed: the hub has no subscriber left."""
    async with events(server, query) as stream:
        await stream.until_ready()
        assert server.hub.subscriber_count == 1
    await eventually(lambda: server.hub.subscriber_count == 0)
    await eventually(lambda: not server._http_connections)


async def test_two_streams_each_get_every_update(server: ObjstoreServer) -> None:
    """Two streams of one key are two subscribers and both receive each change."""
    async with events(server, "key=k") as one, events(server, "key=k") as two:
        await one.until_ready()
        await two.until_ready()
        assert server.hub.subscriber_count == 2
        await put(server, "k", "1")
        assert await one.next() == await two.next() == [update("k", 1, 1)]


async def test_since_older_than_the_history_resets(
    server: ObjstoreServer, client: Connect
) -> None:
    """?since=R from before the last 10,000 changes sends a reset and the full snapshot."""
    await put(server, "p/a", "0")
    async with client() as ws:
        for n in range(HISTORY_SIZE):
            await ws.send(json.dumps({"action": "set", "key": "q", "value": n}))
        await ask(ws, {"action": "set", "key": "q", "value": "last", "id": 1})
    rev = HISTORY_SIZE + 2
    async with events(server, "prefix=p%2F&since=1") as stream:
        assert await stream.until_ready() == [
            ("reset", '{"reset":true,"prefix":"p/"}', ""),
            update("p/a", 0, 1),
            ready(rev),
        ]
    async with events(server, "prefix=p%2F&since=2") as stream:
        assert await stream.until_ready() == [ready(rev)]
