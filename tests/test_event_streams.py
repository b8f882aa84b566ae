"""Event streams on a real server and real sockets, through a test route.

The route ``/stream`` answers with an :class:`~objstore.eventstream.EventStream`
the test controls; ``/stream?key=K`` also subscribes it to the server's hub, as
the events route will. Everything else is the server's own routing.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from objstore.config import Config
from objstore.eventstream import PING, EventStream
from objstore.http import HttpRequest, HttpResponse
from objstore.protocol import Update
from objstore.server import ObjstoreServer

from .helpers import http_request

CORS = ("Access-Control-Allow-Origin", "https://app.example")
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
    b"Connection: close\r\nAccess-Control-Allow-Origin: https://app.example\r\n\r\n"
)
REQUEST = b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class StreamingServer(ObjstoreServer):
    """A real server whose ``/stream`` route answers with an event stream the test drives."""

    def __init__(self, config: Config, heartbeat: float) -> None:
        super().__init__(config)
        self.heartbeat = heartbeat
        self.streams: list[EventStream] = []
        #: Each stream whose on_close was called, once per call.
        self.closed: list[EventStream] = []
        #: When set, /stream-later answers once it is set.
        self.answer_now = asyncio.Event()

    def _route(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse] | None:
        path, _, query = request.target.partition("?")
        if path == "/stream":
            return self._stream_response(parse_qs(query).get("key", [None])[0])
        if path == "/stream-later":
            return self._later()
        return super()._route(request)

    def _stream_response(self, key: str | None) -> HttpResponse:
        stream = EventStream(heartbeat=self.heartbeat)

        def on_close() -> None:
            self.closed.append(stream)
            self.hub.drop(stream)

        stream.on_close = on_close
        if key is not None:
            self.hub.subscribe_rev(stream, key)
        self.streams.append(stream)
        return HttpResponse(HTTPStatus.OK, b"", "text/event-stream", [CORS], stream=stream)

    async def _later(self) -> HttpResponse:
        response = self._stream_response(None)
        await self.answer_now.wait()
        return response


StartStreaming = Callable[..., Awaitable[StreamingServer]]


@pytest.fixture
async def start_streaming(tmp_path: Path) -> AsyncIterator[StartStreaming]:
    """Start streaming servers on port 0; those the test did not stop are stopped at the end."""
    started: list[StreamingServer] = []

    async def start(heartbeat: float = 60.0, **overrides: Any) -> StreamingServer:
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "cache_dir": tmp_path}
        settings.update(overrides)
        server = StreamingServer(Config(**settings), heartbeat)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        if not getattr(server, "stopped", False):
            await server.stop()


async def stop(server: StreamingServer) -> None:
    await server.stop()
    server.stopped = True  # type: ignore[attr-defined]


async def open_stream(
    server: StreamingServer, request: bytes = REQUEST, *, receive_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect, send *request* and read the head, which must be the stream's."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(request)
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == HEAD
    return reader, writer


async def next_event(reader: asyncio.StreamReader, timeout: float = 5) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\n\n"), timeout)


async def eventually(condition: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def update_event(key: str, value: str, rev: int) -> bytes:
    data = f'{{"key":"{key}","value":{value},"rev":{rev}}}'
    return f"id: {rev}\nevent: update\ndata: {data}\n\n".encode()


async def test_head_is_exact_and_events_arrive_as_sent(start_streaming: StartStreaming) -> None:
    """The head has no length and says close; events queued before and after it arrive."""
    server = await start_streaming()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(REQUEST)
    await eventually(lambda: len(server.streams) == 1)
    stream = server.streams[0]
    stream.send("reset", b'{"key":"k"}')
    stream.deliver(Update("k", b"1", 4))
    stream.send("ready", b'{"rev":4}', 4)
    expected = (
        HEAD
        + b'event: reset\ndata: {"key":"k"}\n\n'
        + update_event("k", "1", 4)
        + b'id: 4\nevent: ready\ndata: {"rev":4}\n\n'
    )
    received = await asyncio.wait_for(reader.readexactly(len(expected)), 5)
    assert received == expected
    writer.close()


async def test_updates_published_through_the_hub_reach_the_stream(
    start_streaming: StartStreaming,
) -> None:
    """A stream subscribed to the hub receives a POST /set's update in the revision form."""
    server = await start_streaming()
    reader, writer = await open_stream(server, b"GET /stream?key=k HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await http_request(server.port, "POST", "/set", '{"key":"k","value":[1]}')
    assert answer.status == 200
    id_line, event_line, data_line, _, _ = (await next_event(reader)).split(b"\n")
    data = json.loads(data_line.removeprefix(b"data: "))
    assert (id_line, event_line) == (b"id: %d" % data.pop("rev"), b"event: update")
    assert data == {"key": "k", "value": [1]}
    writer.close()
    await eventually(lambda: server.hub.subscribers("k") == 0)
    assert server.closed == server.streams


async def test_on_close_is_called_once_when_the_client_closes(
    start_streaming: StartStreaming,
) -> None:
    """A client closing its connection ends the stream: on_close once, out of the hub."""
    server = await start_streaming()
    _, writer = await open_stream(server, b"GET /stream?key=k HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.close()
    await eventually(lambda: server.closed == server.streams)
    await asyncio.sleep(0.1)
    assert len(server.closed) == 1
    assert server.hub.subscribers("k") == 0
    assert server._http_connections == set()


async def test_client_closing_its_side_ends_the_stream(start_streaming: StartStreaming) -> None:
    """A half-close from the client (end of input) ends the stream and the connection."""
    server = await start_streaming()
    reader, writer = await open_stream(server)
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert server.closed == server.streams
    writer.close()


async def test_input_after_the_request_is_dropped(start_streaming: StartStreaming) -> None:
    """Requests pipelined after the stream's, and later bytes, get no answer; events go on."""
    server = await start_streaming()
    reader, writer = await open_stream(server, REQUEST + b"GET /get/k HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.write(b"GET /get/k HTTP/1.1\r\nHost: x\r\n\r\n" + b"\x00garbage" * 1000)
    await writer.drain()
    await asyncio.sleep(0.2)
    server.streams[0].deliver(Update("k", b"2", 9))
    assert await next_event(reader) == update_event("k", "2", 9)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)
    assert server.closed == []
    writer.close()


async def test_keep_alive_timeout_does_not_end_a_stream(start_streaming: StartStreaming) -> None:
    """A stream outlives the HTTP idle timeout, with no heartbeat due meanwhile."""
    server = await start_streaming(http_timeout=0.2)
    reader, writer = await open_stream(server)
    await asyncio.sleep(0.8)
    server.streams[0].deliver(Update("k", b"3", 10))
    assert await next_event(reader) == update_event("k", "3", 10)
    assert server.closed == []
    writer.close()


async def test_idle_stream_gets_a_heartbeat(start_streaming: StartStreaming) -> None:
    """A stream that sent nothing for the heartbeat interval sends the ping comment."""
    server = await start_streaming(heartbeat=0.2)
    reader, writer = await open_stream(server)
    assert await next_event(reader, timeout=2) == PING
    assert await next_event(reader, timeout=2) == PING
    writer.close()


async def test_congested_stream_conflates_and_catches_up_with_the_latest(
    start_streaming: StartStreaming,
) -> None:
    """While its client reads nothing a stream holds one update per key; once it reads,
    it gets the latest of each, with ids in increasing order."""
    server = await start_streaming()
    reader, writer = await open_stream(server, receive_buffer=4096)
    writer.transport.pause_reading()  # type: ignore[attr-defined]
    stream = server.streams[0]
    pad = '"' + "x" * 32_000 + '"'
    rev = 0
    while not stream.congested:
        rev += 1
        assert rev < 2000, "the stream never became congested"
        stream.deliver(Update("a", pad.encode(), rev))
        await asyncio.sleep(0.001)
    sent_before = rev
    for _ in range(500):
        for key in ("a", "b"):
            rev += 1
            stream.deliver(Update(key, pad.encode(), rev))
    assert stream.held == 2
    stream.send("ready", b"{}", rev)
    writer.transport.resume_reading()  # type: ignore[attr-defined]
    ids = []
    while (event := await next_event(reader)).startswith(b"id: ") and b"event: ready" not in event:
        ids.append(int(event.split(b"\n", 1)[0][4:]))
    assert ids == sorted(ids)
    assert ids[-2:] == [rev - 1, rev]
    assert len(ids) < sent_before + 10
    await eventually(lambda: not stream.congested)
    writer.close()


async def test_stalled_stream_is_closed_once(start_streaming: StartStreaming) -> None:
    """A stream whose client reads nothing for the stall timeout is closed; on_close once."""
    server = await start_streaming(stall_timeout=0.5)
    _, writer = await open_stream(server, b"GET /stream?key=a HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.transport.pause_reading()  # type: ignore[attr-defined]
    stream = server.streams[0]
    rev = 0
    while not stream.congested:
        rev += 1
        assert rev < 2000, "the stream never became congested"
        stream.deliver(Update("a", b'"' + b"x" * 32_000 + b'"', rev))
        await asyncio.sleep(0.001)
    await eventually(lambda: server.closed == [stream], timeout=3)
    assert server.hub.subscribers("a") == 0
    await eventually(lambda: not server._http_connections)
    writer.close()


async def test_stopping_the_server_ends_streams_cleanly(start_streaming: StartStreaming) -> None:
    """stop() writes what a stream has queued, closes it (on_close once) and returns."""
    server = await start_streaming()
    reader, writer = await open_stream(server)
    server.streams[0].deliver(Update("k", b"5", 11))
    await asyncio.wait_for(stop(server), 5)
    assert await asyncio.wait_for(reader.read(), 5) == update_event("k", "5", 11)
    assert server.closed == server.streams
    writer.close()


async def test_stream_answered_later_starts_when_ready(start_streaming: StartStreaming) -> None:
    """A stream answer that comes from an awaitable is started like one answered at once."""
    server = await start_streaming()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /stream-later HTTP/1.1\r\nHost: x\r\n\r\n")
    await eventually(lambda: len(server.streams) == 1)
    server.streams[0].deliver(Update("k", b"6", 12))
    server.answer_now.set()
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == HEAD
    assert await next_event(reader) == update_event("k", "6", 12)
    writer.close()


async def test_stream_whose_client_left_before_the_answer_is_closed(
    start_streaming: StartStreaming,
) -> None:
    """A stream made for a client that left before its head went out still ends, once."""
    server = await start_streaming()
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /stream-later HTTP/1.1\r\nHost: x\r\n\r\n")
    await eventually(lambda: len(server.streams) == 1)
    writer.close()
    await asyncio.sleep(0.1)
    server.answer_now.set()
    await eventually(lambda: server.closed == server.streams)
    await eventually(lambda: not server._http_connections)
    await asyncio.sleep(0.1)
    assert len(server.closed) == 1


def parse_event_stream(text: str) -> list[tuple[str, str, str]]:
    """Events as ``EventSource`` dispatches them: (type, data, lastEventId).

    Follows the WHATWG HTML "event stream interpretation" rules; an event not
    ended by a blank line is not dispatched.
    """
    events: list[tuple[str, str, str]] = []
    data, event_type, last_id = "", "", ""
    text = text.removeprefix("\ufeff")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for line in lines[:-1]:  # the last piece is not ended by a line break
        if not line:
            if data:
                events.append((event_type or "message", data.removesuffix("\n"), last_id))
            data, event_type = "", ""
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id" and "\0" not in value:
            last_id = value
    return events


async def test_a_browser_reads_the_events_as_meant(start_streaming: StartStreaming) -> None:
    """Parsed by the WHATWG rules: types, multi-line data, ids kept across id-less events."""
    server = await start_streaming(heartbeat=0.1)
    reader, writer = await open_stream(server)
    stream = server.streams[0]
    stream.send("reset", b'{"prefix":"p/"}')
    stream.deliver(Update("p/a", b"1", 17))
    stream.deliver(Update("p/b", b"2", 30))
    stream.send("ready", b'{"rev":31}', 31)
    await asyncio.sleep(0.3)  # a few pings among the events
    stream.deliver(Update("p/a", None, 32))
    stream.send("note", b"two\nlines")
    received = b""
    while not received.endswith(b"data: lines\n\n"):
        received += await asyncio.wait_for(reader.read(65536), 5)
    assert PING in received
    assert parse_event_stream(received.decode("utf-8")) == [
        ("reset", '{"prefix":"p/"}', ""),
        ("update", '{"key":"p/a","value":1,"rev":17}', "17"),
        ("update", '{"key":"p/b","value":2,"rev":30}', "30"),
        ("ready", '{"rev":31}', "31"),
        ("update", '{"key":"p/a","value":null,"rev":32,"deleted":true}', "32"),
        ("note", "two\nlines", "32"),
    ]
    writer.close()
