"""The sans-I/O HTTP/1.1 reader and writer: bytes in, requests out, no sockets."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from objstore.http11 import (
    CONTINUE,
    BadRequest,
    Close,
    KeepAlive,
    Request,
    RequestReader,
    serialize_response,
    serialize_stream_head,
)


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


def test_obsolete_line_folding_is_refused() -> None:
    """A header line that starts with a space (obs-fold) is refused with 400."""
    reader = RequestReader(10)
    reader.feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n")
    with pytest.raises(BadRequest) as error:
        reader.next_request()
    assert (error.value.status, str(error.value)) == (
        HTTPStatus.BAD_REQUEST,
        "invalid header line: obsolete line folding is not allowed; one line per header",
    )


def test_a_repeated_content_length_is_refused_even_when_equal() -> None:
    """Content-Length twice, even with one value, is refused (RFC 9110 8.6 allows either)."""
    reader = RequestReader(10)
    reader.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na")
    with pytest.raises(BadRequest, match=r"^more than one Content-Length header: 1, 1; send one$"):
        reader.next_request()


def test_absolute_form_target_gives_path_and_host() -> None:
    """An absolute-form target becomes its path and query; its authority replaces Host."""
    reader = RequestReader(10)
    reader.feed(b"GET HTTP://127.0.0.1:3000?x=1 HTTP/1.1\r\nHost: elsewhere\r\n\r\n")
    request = reader.next_request()
    assert request is not None
    assert (request.target, request.headers["host"]) == ("/?x=1", "127.0.0.1:3000")


def test_bytes_that_cannot_start_a_request_are_refused_at_once() -> None:
    """A head whose first byte cannot start a method is refused before it ends."""
    reader = RequestReader(10)
    reader.feed(b"\x16\x03\x01")  # a TLS client hello
    with pytest.raises(BadRequest, match=r"^invalid HTTP request line$"):
        reader.next_request()


# -- the keep-alive state machine --------------------------------------------------------

GET = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"


def test_pipelined_requests_are_handed_out_one_answer_at_a_time() -> None:
    """The next request comes only once the answer to the one before is written."""
    machine = KeepAlive(100, 10.0, 0.0)
    machine.receive_data(GET * 2, 0.0)
    assert isinstance(machine.next_event(), Request)
    assert (machine.next_event(), machine.wants_data) == (None, False)
    machine.answer_written(1.0)
    assert isinstance(machine.next_event(), Request)


def test_no_request_is_handed_out_while_writing_is_paused() -> None:
    """While the transport's buffer is full nothing is read; its client has the timeout to read."""
    machine = KeepAlive(100, 10.0, 0.0)
    machine.receive_data(GET * 2, 0.0)
    assert isinstance(machine.next_event(), Request)
    machine.pause_writing(1.0)
    machine.answer_written(1.0)
    assert (machine.next_event(), machine.wants_data, machine.deadline) == (None, False, 11.0)
    machine.resume_writing(2.0)
    assert isinstance(machine.next_event(), Request)


def test_a_request_must_arrive_within_its_deadline_however_it_trickles() -> None:
    """Bytes of a request do not move its deadline: timeout plus body size at 64 KiB/s."""
    machine = KeepAlive(1 << 20, 10.0, 0.0)
    machine.receive_data(b"POST /set HTTP/1.1\r\nHost: x\r\n", 1.0)
    machine.receive_data(b"Content-Length: 655360\r\n\r\n", 5.0)
    assert machine.next_event() is None
    machine.receive_data(b"a", 6.0)
    assert machine.deadline == 1.0 + 10.0 + 10.0
    assert machine.expire(20.9) is False
    assert machine.expire(21.0) is True
    assert machine.deadline is None


def test_idle_deadline_counts_from_the_last_answer() -> None:
    """Between requests the connection may stay idle for the timeout after the last answer."""
    machine = KeepAlive(100, 10.0, 0.0)
    assert machine.deadline == 10.0
    machine.receive_data(GET, 3.0)
    assert isinstance(machine.next_event(), Request)
    assert machine.deadline is None  # the answer is being made
    machine.answer_written(4.0)
    assert machine.deadline == 14.0


def test_end_of_input_answers_what_came_then_closes() -> None:
    """After the client's EOF, requests already received are answered, then the connection ends."""
    machine = KeepAlive(100, 10.0, 0.0)
    machine.receive_data(GET, 0.0)
    machine.receive_eof()
    assert isinstance(machine.next_event(), Request)
    machine.answer_written(0.0)
    assert machine.next_event() == Close("end of input")


def test_connection_close_ends_after_the_answer() -> None:
    """A request with Connection: close is answered saying so, then the connection ends."""
    machine = KeepAlive(100, 10.0, 0.0)
    machine.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + GET, 0.0)
    assert isinstance(machine.next_event(), Request)
    assert machine.keep_alive is False
    machine.answer_written(0.0)
    assert machine.next_event() == Close("not kept alive")


def test_a_bad_request_ends_the_connection_with_its_error() -> None:
    """A request that cannot be read gives a Close carrying the error to answer."""
    machine = KeepAlive(100, 10.0, 0.0)
    machine.receive_data(b"GET / HTTP/1.1\r\n\r\n", 0.0)
    event = machine.next_event()
    assert isinstance(event, Close)
    assert event.reason == "bad request"
    assert event.error is not None
    assert event.error.status == HTTPStatus.BAD_REQUEST
    assert machine.next_event() is None


def test_continue_is_asked_once_before_the_body() -> None:
    """A request expecting 100-continue gives one CONTINUE event, then its request."""
    machine = KeepAlive(100, 10.0, 0.0)
    machine.receive_data(
        b"POST /set HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", 0.0
    )
    assert machine.next_event() is CONTINUE
    assert machine.next_event() is None
    machine.receive_data(b"{}", 0.0)
    assert isinstance(machine.next_event(), Request)


def test_stopping_waits_for_the_answer_being_made() -> None:
    """Asked to close while answering, the answer says Connection: close, then it ends."""
    machine = KeepAlive(100, 10.0, 0.0)
    machine.receive_data(GET, 0.0)
    assert isinstance(machine.next_event(), Request)
    machine.close_when_idle()
    assert (machine.next_event(), machine.keep_alive) == (None, False)
    machine.answer_written(0.0)
    assert machine.next_event() == Close("stopping")


def test_no_content_answer_has_no_length_nor_type() -> None:
    """A 204 carries neither Content-Length nor Content-Type, as RFC 9110 asks."""
    answer = serialize_response(
        HTTPStatus.NO_CONTENT, b"", "application/json", [("Vary", "Origin")], True
    )
    assert answer == b"HTTP/1.1 204 No Content\r\nCache-Control: no-store\r\nVary: Origin\r\n\r\n"


def test_stream_head_has_no_length_and_closes() -> None:
    """A streamed answer's head: type, no-store, Connection: close, extra headers, no length."""
    head = serialize_stream_head(HTTPStatus.OK, "text/event-stream", [("Vary", "Origin")])
    assert head == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
        b"Connection: close\r\nVary: Origin\r\n\r\n"
    )
