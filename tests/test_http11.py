"""The sans-I/O HTTP/1.1 reader and writer: bytes in, requests out, no sockets."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from objstore.http11 import BadRequest, RequestReader, serialize_response


def read_all(data: bytes, max_body: int = 1024) -> list[tuple[str, str, bytes]]:
    reader = RequestReader(max_body)
    reader.feed(data)
    requests = []
    while (request := reader.next_request()) is not None:
        requests.append((request.method, request.target, request.body))
    return requests


def test_request_fed_one_byte_at_a_time() -> None:
    """A request split into single bytes is read once it is complete."""
    reader = RequestReader(1024)
    data = b"POST /set HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    for byte in data[:-1]:
        reader.feed(bytes([byte]))
        assert reader.next_request() is None
    reader.feed(data[-1:])
    request = reader.next_request()
    assert request is not None
    assert (request.method, request.target, request.body) == ("POST", "/set", b"{}")


def test_pipelined_requests_come_out_in_order() -> None:
    """Several requests in one chunk are returned one by one, bodies attached."""
    data = (
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /set HTTP/1.1\r\nHost: x\r\ncontent-length: 3\r\n\r\nabc"
        b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert read_all(data) == [("GET", "/a", b""), ("POST", "/set", b"abc"), ("GET", "/b", b"")]


def test_keep_alive_rules() -> None:
    """HTTP/1.1 keeps alive unless told to close; HTTP/1.0 only when asked."""
    reader = RequestReader(10)
    reader.feed(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        b"GET / HTTP/1.0\r\n\r\n"
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    )
    alive = []
    while (request := reader.next_request()) is not None:
        alive.append(request.keep_alive)
    assert alive == [True, False, False, True]


def test_upgrade_request_is_returned_with_its_raw_bytes() -> None:
    """A WebSocket upgrade comes back with its raw head, for websockets, and what followed it."""
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
    reader = RequestReader(10)
    reader.feed(head + b"\x81\x00")
    request = reader.next_request()
    assert request is not None
    assert request.is_upgrade
    assert request.raw == head
    assert request.after == b"\x81\x00"
    assert reader.buffered == 0


def test_expect_continue_is_flagged_until_the_body_arrives() -> None:
    """A request that expects 100-continue is flagged while its body is missing."""
    reader = RequestReader(100)
    reader.feed(
        b"POST /set HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    )
    assert reader.next_request() is None
    assert reader.continue_expected is True
    reader.feed(b"{}")
    assert reader.next_request() is not None
    assert reader.continue_expected is False


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"HELLO\r\n\r\n", HTTPStatus.BAD_REQUEST, "invalid HTTP request line"),
        (
            b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
            HTTPStatus.BAD_REQUEST,
            "invalid HTTP request line",
        ),
        (
            b"GET / HTTP/2\r\n\r\n",
            HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
            "only HTTP/1.1 and HTTP/1.0 are supported",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n",
            HTTPStatus.BAD_REQUEST,
            "invalid HTTP header line",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            HTTPStatus.BAD_REQUEST,
            "invalid Content-Length header: '-1'",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "body too large: 11 bytes, over the limit of 10",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            HTTPStatus.LENGTH_REQUIRED,
            "invalid body: chunked transfer encoding is not supported; "
            "send the body with a Content-Length header",
        ),
    ],
)
def test_bad_requests(data: bytes, status: HTTPStatus, message: str) -> None:
    """Each unreadable request raises BadRequest with its status and message."""
    reader = RequestReader(10)
    reader.feed(data)
    with pytest.raises(BadRequest) as error:
        reader.next_request()
    assert (error.value.status, str(error.value)) == (status, message)


def test_serialize_response() -> None:
    """A response has status line, type, length, no-store, extra headers and the body."""
    data = serialize_response(HTTPStatus.OK, b"{}", "application/json", [("Allow", "GET")], False)
    assert data == (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
        b"Connection: close\r\nContent-Length: 2\r\nAllow: GET\r\n\r\n{}"
    )


def test_repeated_heads_give_equal_requests_with_their_own_bodies() -> None:
    """A head seen before parses to the same request; each keeps its own body."""
    reader = RequestReader(100)
    head = b"POST /set HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-Test: yes\r\n\r\n"
    reader.feed(head + b"abc" + head + b"xyz")
    first, second = reader.next_request(), reader.next_request()
    assert first is not None
    assert second is not None
    assert (first.method, first.target, first.headers) == ("POST", "/set", second.headers)
    assert second.headers == {"host": "x", "content-length": "3", "x-test": "yes"}
    assert (first.body, second.body) == (b"abc", b"xyz")


def test_a_bad_head_stays_bad_when_sent_again() -> None:
    """A head that cannot be parsed is refused every time it comes."""
    for _ in range(2):
        reader = RequestReader(100)
        reader.feed(b"GET / HTTP/2.0\r\n\r\n")
        with pytest.raises(BadRequest, match=r"only HTTP/1\.1 and HTTP/1\.0"):
            reader.next_request()
