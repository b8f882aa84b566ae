"""Hostile HTTP against the real server: smuggling, Host rules, unread answers, trickles."""

from __future__ import annotations

import asyncio
import json
import socket

from objstore.server import ObjstoreServer

from .conftest import StartServer
from .helpers import http_request, raw_http


def answers(raw: bytes) -> list[tuple[int, object]]:
    """The status and JSON body of every answer in *raw*, a stream of HTTP responses."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(line.partition(":")[2])
            for line in lines
            if line.lower().startswith("content-") and line.lower().startswith("content-length")
        )
        found.append((int(lines[0].split(" ")[1]), json.loads(rest[:length])))
        raw = rest[length:]
    return found


BARE_LF = "invalid request head: a line ends with a bare LF or CR; end lines with CRLF"


def set_body(key: str, value: object) -> bytes:
    return json.dumps({"key": key, "value": value}).encode()


def set_request(key: str, value: object) -> bytes:
    body = set_body(key, value)
    return b"POST /set HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_content_length_of_a_non_ascii_digit_is_400(server: ObjstoreServer) -> None:
    """Content-Length: \\xb2 (a digit to str.isdigit) is refused with 400, not a dropped socket."""
    raw = await raw_http(
        server.port, b"POST /set HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n"
    )
    assert answers(raw) == [(400, {"error": "invalid Content-Length header: '\xb2'"})]


async def test_conflicting_content_lengths_are_400_and_close(server: ObjstoreServer) -> None:
    """Two different Content-Length headers get 400, and the body is never read as a request."""
    hidden = set_request("smuggled", 1)
    raw = await raw_http(
        server.port,
        b"POST /set HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n%s"
        % (len(hidden), hidden),
    )
    assert answers(raw) == [
        (400, {"error": f"more than one Content-Length header: 0, {len(hidden)}; send one"})
    ]
    assert (await http_request(server.port, "GET", "/get/smuggled")).json()["value"] is None


async def test_bare_lf_in_the_head_is_400_and_close(server: ObjstoreServer) -> None:
    """A bare LF in the head is refused: a Content-Length behind it cannot hide a request."""
    hidden = set_request("smuggled", 2)
    raw = await raw_http(
        server.port,
        b"GET /get/k HTTP/1.1\r\nHost: x\r\nX-Note: a\nContent-Length: %d\r\n\r\n%s"
        % (len(hidden), hidden),
    )
    assert answers(raw) == [
        (
            400,
            {"error": BARE_LF},
        )
    ]
    assert (await http_request(server.port, "GET", "/get/smuggled")).json()["value"] is None


async def test_content_length_with_transfer_encoding_is_400(server: ObjstoreServer) -> None:
    """Content-Length together with Transfer-Encoding is refused with 400."""
    raw = await raw_http(
        server.port,
        b"POST /set HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    assert [status for status, _ in answers(raw)] == [400]


async def test_control_character_in_a_header_value_is_400(server: ObjstoreServer) -> None:
    """A control character in a header value is refused with 400."""
    raw = await raw_http(server.port, b"GET /get/k HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n")
    assert answers(raw) == [
        (400, {"error": "invalid header value: control characters are not allowed"})
    ]


async def test_http11_request_without_host_is_400(server: ObjstoreServer) -> None:
    """An HTTP/1.1 request without Host is refused with 400."""
    raw = await raw_http(server.port, b"GET /get/k HTTP/1.1\r\n\r\n")
    assert answers(raw) == [
        (
            400,
            {"error": "missing Host header; an HTTP/1.1 request must name the server it is for"},
        )
    ]


async def test_two_host_headers_are_400(server: ObjstoreServer) -> None:
    """A request with two Host headers is refused with 400."""
    raw = await raw_http(server.port, b"GET /get/k HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert answers(raw) == [(400, {"error": "more than one Host header; send exactly one"})]


async def test_absolute_form_target_is_routed_by_its_path(server: ObjstoreServer) -> None:
    """GET http://host:port/get/k is answered as GET /get/k."""
    raw = await raw_http(
        server.port,
        b"GET http://127.0.0.1:%d/get/k?x=1 HTTP/1.1\r\nHost: elsewhere\r\n"
        b"Connection: close\r\n\r\n" % server.port,
    )
    assert answers(raw) == [(200, {"key": "k", "value": None})]


async def test_pipelining_without_reading_stops_the_server_reading(
    start_server: StartServer,
) -> None:
    """Pipelining without reading answers holds at most 64 KiB plus one answer in the server."""
    server = await start_server()
    await http_request(server.port, "POST", "/set", set_body("big", "x" * 10_000))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.setblocking(False)
    _, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"GET /get/big HTTP/1.1\r\nHost: x\r\n\r\n" * 20_000)
    await asyncio.sleep(0.5)
    (connection,) = server._http_connections
    # The transport's high-water mark, and the one answer that went over it.
    assert 0 < connection.transport.get_write_buffer_size() <= 64 * 1024 + 10_200
    writer.transport.abort()


async def test_a_client_that_reads_nothing_is_cut_off(start_server: StartServer) -> None:
    """A connection whose answers are not read for the HTTP timeout is aborted, answers dropped."""
    server = await start_server(http_timeout=0.5)
    await http_request(server.port, "POST", "/set", set_body("big", "x" * 10_000))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(b"GET /get/big HTTP/1.1\r\nHost: x\r\n\r\n" * 2_000)  # 20 MB of answers
    await asyncio.sleep(1.5)
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    received = 0
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            received += len(chunk)
    except ConnectionResetError:
        pass
    writer.close()
    assert received < 2_000 * 10_000
    assert not server._http_connections


async def test_a_body_trickled_a_byte_at_a_time_is_cut_off(start_server: StartServer) -> None:
    """A body sent a byte at a time must still arrive by its deadline, or the connection closes."""
    server = await start_server(http_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /set HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 4 and not reader.at_eof():
        writer.write(b" ")
        await asyncio.sleep(0.1)
        try:
            await asyncio.wait_for(reader.read(1), 0.01)
        except TimeoutError:
            continue
    assert reader.at_eof()
    assert loop.time() - started < 1.5
    writer.close()
