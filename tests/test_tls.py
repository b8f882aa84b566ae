"""TLS against a real server: wss:// and https:// on one port, with certificates of a test CA."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

import objstore.client
import objstore.client.sync
from objstore.client import Change, ConnectionLostError
from objstore.server import ObjstoreServer

from .conftest import StartServer
from .helpers import HttpAnswer, TlsFiles, _parse_answer, raw_http, tls_files


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return tls_files(tmp_path / "tls")


@pytest.fixture
async def server(start_server: StartServer, tls: TlsFiles) -> ObjstoreServer:
    return await start_server(tls_cert=tls.cert, tls_key=tls.key)


class HttpsConnection:
    """One kept-alive HTTPS connection: requests written and answers read one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext) -> HttpsConnection:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        return cls(reader, writer)

    async def ask(self, method: str, path: str, body: str | None = None) -> HttpAnswer:
        data = (body or "").encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + data)
        raw_head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        answer = _parse_answer(raw_head)
        length = int(answer.headers["content-length"])
        answer.body = await asyncio.wait_for(self.reader.readexactly(length), 5)
        return answer

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def https(server: ObjstoreServer, tls: TlsFiles) -> AsyncIterator[HttpsConnection]:
    connection = await HttpsConnection.open(server.port, tls.client_context())
    yield connection
    await connection.close()


def wss_url(server: ObjstoreServer) -> str:
    return f"wss://localhost:{server.port}/ws"


async def test_client_sets_and_gets_over_wss(server: ObjstoreServer, tls: TlsFiles) -> None:
    """The asyncio client given the CA's context sets and gets over wss://."""
    async with objstore.client.connect(wss_url(server), ssl=tls.client_context()) as store:
        rev = await store.set("a", {"x": 1})
        assert (rev, await store.get("a")) == (1, {"x": 1})


async def test_watch_over_wss_gets_changes(server: ObjstoreServer, tls: TlsFiles) -> None:
    """A watch over wss:// gets its ready change, then a change made by another client."""
    context = tls.client_context()
    async with (
        objstore.client.connect(wss_url(server), ssl=context) as watcher,
        objstore.client.connect(wss_url(server), ssl=context) as writer,
        watcher.watch(key="k") as watch,
    ):
        assert await anext(watch) == Change("ready", rev=0)
        rev = await writer.set("k", "v")
        assert await anext(watch) == Change("update", "k", "v", rev)


async def test_blocking_client_over_wss(server: ObjstoreServer, tls: TlsFiles) -> None:
    """The blocking client given the CA's context sets and gets over wss://."""

    def use() -> object:
        with objstore.client.sync.connect(wss_url(server), ssl=tls.client_context()) as store:
            store.set("b", [1, 2])
            return store.get("b")

    assert await asyncio.to_thread(use) == [1, 2]


async def test_client_without_the_ca_is_refused(server: ObjstoreServer) -> None:
    """A client that does not trust the certificate refuses the server, and says why."""
    store = objstore.client.connect(wss_url(server), reconnect=False)
    with pytest.raises(ConnectionLostError) as refused:
        await store.open()
    assert str(refused.value) == (
        f"cannot connect to {wss_url(server)}: its certificate is not trusted (unable to get "
        "local issuer certificate); pass ssl= an SSLContext that trusts it, like "
        "ssl.create_default_context(cafile=...)"
    )


async def test_https_keeps_the_connection_for_set_then_get(https: HttpsConnection) -> None:
    """POST /set then GET /get/{key} are answered on one HTTPS connection."""
    posted = await https.ask("POST", "/set", '{"key": "k", "value": 5}')
    got = await https.ask("GET", "/get/k")
    assert (posted.status, posted.json()) == (200, {"key": "k", "value": 5})
    assert (got.status, got.json(), got.headers.get("connection")) == (
        200,
        {"key": "k", "value": 5},
        None,
    )


async def test_rest_over_https_on_one_connection(https: HttpsConnection) -> None:
    """PUT then GET /keys/{key} over one HTTPS connection, with the revision as ETag."""
    put = await https.ask("PUT", "/keys/r", '"hello"')
    got = await https.ask("GET", "/keys/r")
    assert (put.status, got.status, got.json(), got.headers["etag"]) == (
        200,
        200,
        "hello",
        '"1"',
    )


async def test_event_stream_over_https(
    server: ObjstoreServer, tls: TlsFiles, https: HttpsConnection
) -> None:
    """GET /events over HTTPS sends the value, ready, then a later change."""
    await https.ask("PUT", "/keys/e", "1")
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=tls.client_context(), server_hostname="localhost"
    )
    try:
        writer.write(b"GET /events?key=e HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        ready = b'event: ready\ndata: {"rev":1}\n\n'
        first = await asyncio.wait_for(reader.readuntil(ready), 5)
        await https.ask("PUT", "/keys/e", "2")
        second = await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)
    finally:
        writer.close()
    assert first == b'id: 1\nevent: update\ndata: {"key":"e","value":1,"rev":1}\n\nid: 1\n' + ready
    assert second == b'id: 2\nevent: update\ndata: {"key":"e","value":2,"rev":2}\n\n'


async def test_plain_http_to_the_tls_port_is_closed_unanswered(
    server: ObjstoreServer, tls: TlsFiles
) -> None:
    """A plain-text request gets no answer and a closed connection; a wss client goes on."""
    async with objstore.client.connect(wss_url(server), ssl=tls.client_context()) as store:
        await store.set("before", 1)
        answer = await raw_http(server.port, b"GET /get/before HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (answer, await store.set("after", 2), await store.get("before")) == (b"", 2, 1)


async def test_plain_http_to_the_tls_port_logs_nothing(
    server: ObjstoreServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain-text request to the TLS port is no error of the server: nothing is logged."""
    caplog.set_level(logging.INFO)
    await raw_http(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.05)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_silent_client_is_dropped_after_the_http_timeout(
    start_server: StartServer, tls: TlsFiles
) -> None:
    """A connection that starts no TLS handshake is closed after --http-timeout."""
    server = await start_server(tls_cert=tls.cert, tls_key=tls.key, http_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        assert await asyncio.wait_for(reader.read(), 3) == b""
    finally:
        writer.close()


async def test_own_https_page_may_open_a_websocket(server: ObjstoreServer, tls: TlsFiles) -> None:
    """An upgrade with Origin https://localhost:{port} (the server's own page) is accepted."""
    origin = Origin(f"https://localhost:{server.port}")
    async with ws_connect(wss_url(server), ssl=tls.client_context(), origin=origin) as ws:
        await ws.send(json.dumps({"action": "get", "key": "x"}))
        assert json.loads(await ws.recv()) == {"key": "x", "value": None}


async def test_http_page_of_the_tls_port_is_not_own(server: ObjstoreServer, tls: TlsFiles) -> None:
    """An upgrade with Origin http://localhost:{port} is refused: that port serves https only."""
    origin = Origin(f"http://localhost:{server.port}")
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(wss_url(server), ssl=tls.client_context(), origin=origin):
            pass
    assert refused.value.response.status_code == 403


async def test_client_ending_its_tls_session_logs_nothing(
    server: ObjstoreServer, tls: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that answers its last request with close_notify leaves no warning behind."""
    caplog.set_level(logging.INFO)
    connection = await HttpsConnection.open(server.port, tls.client_context())
    assert (await connection.ask("GET", "/get/k")).status == 200
    await connection.close()  # close_notify: the end of the TLS session
    await asyncio.sleep(0.1)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_http_mode_write_buffer_is_64_kib_over_tls(
    server: ObjstoreServer, https: HttpsConnection
) -> None:
    """An HTTPS connection says it is full at 64 KiB, as a plain one, not at TLS's 512 KiB."""
    assert (await https.ask("GET", "/get/k")).status == 200
    (connection,) = server._http_connections
    assert connection.transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
