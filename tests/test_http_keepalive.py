"""Kept-alive HTTP: many requests on one connection, pipelined, with timeouts and limits."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from objstore.server import ObjstoreServer

from .conftest import StartServer
from .helpers import recv_json


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode()


def post(body: str) -> bytes:
    head = f"POST /set HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n\r\n"
    return f"{head}{body}".encode()


async def test_many_requests_on_one_connection(server: ObjstoreServer) -> None:
    """Requests one after another on the same connection are all answered; it stays open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for n in range(20):
        writer.write(post(json.dumps({"key": "k", "value": n})))
        status, headers, body = await read_response(reader)
        assert (status, json.loads(body)) == (200, {"key": "k", "value": n})
        assert "connection" not in headers
        writer.write(get("/get/k"))
        assert json.loads((await read_response(reader))[2]) == {"key": "k", "value": n}
    writer.close()


async def test_pipelined_requests_are_answered_in_order(server: ObjstoreServer) -> None:
    """Requests sent together, a set among them, are answered in the order sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(get("/get/p") + post('{"key": "p", "value": 1}') + get("/get/p") + get("/nope"))
    answers = [await read_response(reader) for _ in range(4)]
    assert [a[0] for a in answers] == [200, 200, 200, 404]
    assert json.loads(answers[0][2]) == {"key": "p", "value": None}
    assert json.loads(answers[2][2]) == {"key": "p", "value": 1}
    writer.close()


async def test_connection_close_is_honoured(server: ObjstoreServer) -> None:
    """With Connection: close the server answers, says so, and closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(get("/get/k", "Connection: close\r\n"))
    _, headers, _ = await read_response(reader)
    assert headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_http10_closes_after_one_request(server: ObjstoreServer) -> None:
    """An HTTP/1.0 request without keep-alive gets one answer and a closed connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /get/k HTTP/1.0\r\n\r\n")
    status, headers, _ = await read_response(reader)
    assert (status, headers["connection"]) == (200, "close")
    assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_idle_connection_is_closed_after_the_timeout(start_server: StartServer) -> None:
    """A kept-alive connection idle for longer than the HTTP timeout is closed."""
    server = await start_server(http_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(get("/get/k"))
    await read_response(reader)
    assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_unfinished_request_is_closed_after_the_timeout(start_server: StartServer) -> None:
    """A connection that never finishes its request head is closed after the timeout."""
    server = await start_server(http_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /get/k HTTP/1.1\r\nHost")
    assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_bad_request_line_is_400_and_closes(server: ObjstoreServer) -> None:
    """A malformed request gets 400 with the error shape, then the connection closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"HELLO\r\n\r\n")
    status, _, body = await read_response(reader)
    assert (status, json.loads(body)) == (400, {"error": "invalid HTTP request line"})
    assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_oversized_head_is_431(server: ObjstoreServer) -> None:
    """A request head over 16 KiB is refused with 431."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /get/k HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    status, _, body = await read_response(reader)
    assert (status, json.loads(body)) == (431, {"error": "request head over 16384 bytes"})


async def test_websocket_upgrade_after_http_on_the_same_connection(
    server: ObjstoreServer,
) -> None:
    """A connection may answer HTTP requests, then switch to WebSocket."""
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ws.send('{"action": "set", "key": "u", "value": 1}')
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(get("/get/u"))
    assert json.loads((await read_response(reader))[2]) == {"key": "u", "value": 1}
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 ")
    writer.close()


async def test_upgrade_to_unknown_path_is_404(server: ObjstoreServer) -> None:
    """A WebSocket upgrade to a path that is not a WebSocket endpoint is refused."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"GET /elsewhere HTTP/1.1\r\nHost: localhost\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    status, _, _ = await read_response(reader)
    assert status == 404


async def test_stopping_closes_idle_http_connections(start_server: StartServer) -> None:
    """Stopping the server closes kept-alive HTTP connections promptly."""
    server = await start_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(get("/get/k"))
    await read_response(reader)
    await asyncio.wait_for(server.stop(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_websocket_clients_still_work_beside_http(server: ObjstoreServer) -> None:
    """HTTP keep-alive traffic and WebSocket clients share the server."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ws.send('{"action": "subscribe", "key": "mix"}')
        await ws.send('{"action": "get", "key": "mix"}')
        await recv_json(ws)
        writer.write(post('{"key": "mix", "value": "via http"}'))
        await read_response(reader)
        assert await recv_json(ws) == {"key": "mix", "value": "via http"}
    writer.close()


async def test_head_sent_a_byte_at_a_time_is_cut_off(start_server: StartServer) -> None:
    """Trickling a request head does not keep a connection open past the HTTP timeout."""
    server = await start_server(http_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = b"GET /get/k HTTP/1.1\r\nX-Slow: " + b"a" * 100
    started = asyncio.get_running_loop().time()
    closed = False
    for byte in head:
        writer.write(bytes([byte]))
        await asyncio.sleep(0.05)
        if reader.at_eof() or writer.is_closing():
            closed = True
            break
        try:
            await asyncio.wait_for(reader.read(1), 0.001)
        except TimeoutError:
            continue
        closed = True
        break
    assert closed
    assert asyncio.get_running_loop().time() - started < 3
