"""HTTP/1.1 on a kept-alive connection, sans I/O: bytes in, events out; responses to bytes.

Owns the keep-alive state machine of a server's connection
(:class:`KeepAlive`): which request to answer next, when to send
``100 Continue``, when to stop reading, when to close and why, and the
deadlines of each state as numbers given "now"; and the bytes of responses.
Requests are read by :mod:`objstore.httprequests`. Knows nothing of sockets,
asyncio, routes or websockets.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from .httprequests import MAX_HEAD_SIZE, BadRequest, Request, RequestReader

__all__ = [
    "CONTINUE",
    "MAX_HEAD_SIZE",
    "MIN_BODY_RATE",
    "BadRequest",
    "Close",
    "Continue",
    "Event",
    "KeepAlive",
    "Request",
    "RequestReader",
    "serialize_response",
    "serialize_stream_head",
]

#: Slowest body accepted, in bytes per second: a request must arrive whole within
#: the HTTP timeout plus its body's length at this rate, counted from its first byte.
MIN_BODY_RATE = 64 * 1024


class Continue:
    """Event: write ``100 Continue``; the client waits for it before sending its body."""

    __slots__ = ()


#: The one :class:`Continue` event.
CONTINUE = Continue()


@dataclass(frozen=True, slots=True)
class Close:
    """Event: close the connection, after answering *error* if there is one."""

    #: Why: ``"bad request"``, ``"not kept alive"``, ``"end of input"``, ``"stopping"``.
    reason: str
    error: BadRequest | None = None


#: What :meth:`KeepAlive.next_event` returns: a request to answer (or to upgrade),
#: an interim answer to send, or the end of the connection.
Event = Request | Continue | Close

# States of a KeepAlive:
_READING = 0  # reading the next request (or waiting for one)
_ANSWERING = 1  # a request was handed out; its answer is not written yet
_DONE = 2  # closed, or upgraded to another protocol


class KeepAlive:
    """The HTTP side of a kept-alive connection, sans I/O: h11's shape, a server's needs.

    Inputs: bytes received (:meth:`receive_data`), the end of them
    (:meth:`receive_eof`), an answer written (:meth:`answer_written`), the
    transport's flow control (:meth:`pause_writing`, :meth:`resume_writing`) and
    the wish to stop (:meth:`close_when_idle`). Outputs: :meth:`next_event`,
    whether to read (:attr:`wants_data`), and when the connection times out
    (:attr:`deadline`, :meth:`expire`). Times are plain numbers given by the
    caller, all on one clock.

    One request is answered at a time, in order: pipelined requests wait in the
    reader until the answer before them is written, and none is handed out
    while the transport's buffer is full (between :meth:`pause_writing` and
    :meth:`resume_writing`), so a client that sends without reading costs at
    most the transport's high-water mark, one answer and the reader's buffer.

    Deadlines, each *timeout* seconds unless said otherwise:

    * idle, between requests: from the last answer written (or the connection);
    * a request: from its first byte (or from the answer written before it, for
      a pipelined one), it must have arrived whole within the timeout plus its
      body's length at :data:`MIN_BODY_RATE` (a byte at a time never extends it);
    * writes not taken: from :meth:`pause_writing`, the client must read within
      the timeout, whatever else it does;
    * none while an answer is being made (``POST /set`` waits for the disk).
    """

    __slots__ = (
        "_close_reason",
        "_eof",
        "_idle_since",
        "_paused_since",
        "_reader",
        "_request_since",
        "_state",
        "_timeout",
        "keep_alive",
    )

    def __init__(self, max_body: int, timeout: float, now: float) -> None:
        self._reader = RequestReader(max_body)
        self._timeout = timeout
        self._state = _READING
        self._idle_since = now
        #: When the request being read started (None: no byte of it yet).
        self._request_since: float | None = None
        self._paused_since: float | None = None
        self._eof = False
        self._close_reason: str | None = None
        #: Whether the answer being made keeps the connection open (say so in it).
        self.keep_alive = True

    # -- inputs ------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes received from the client."""
        if self._state == _DONE:
            return
        if self._request_since is None and self._state == _READING:
            self._request_since = now
        self._reader.feed(data)

    def receive_eof(self) -> None:
        """The client sends no more; requests already received are still answered."""
        self._eof = True

    def answer_written(self, now: float) -> None:
        """The answer to the request handed out is written (as :attr:`keep_alive` said)."""
        if self._state != _ANSWERING:
            return
        self._state = _READING
        self._idle_since = now
        self._request_since = now if self._reader.buffered else None
        if not self.keep_alive and self._close_reason is None:
            self._close_reason = "not kept alive"

    def answered_whole(self, now: float) -> None:
        """A request received whole while :attr:`idle` was answered at once, unparsed.

        The connection stays as it was, waiting for the next request, from *now*.
        """
        self._idle_since = now

    def pause_writing(self, now: float) -> None:
        """The transport's buffer is full: hand out no request until it drains."""
        if self._paused_since is None:
            self._paused_since = now

    def resume_writing(self, now: float) -> None:
        """The transport's buffer drained."""
        self._paused_since = None
        if self._request_since is not None:
            self._request_since = max(self._request_since, now)

    def close_when_idle(self) -> None:
        """Close once the answer being made is written, or now if there is none."""
        self._close_reason = "stopping"
        self.keep_alive = False

    # -- outputs -----------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """What to do next, or None until an input changes something."""
        if self._state != _READING:
            return None
        if self._close_reason is not None:
            self._state = _DONE
            return Close(self._close_reason)
        if self._paused_since is not None:
            return None
        reader = self._reader
        try:
            request = reader.next_request()
        except BadRequest as exc:
            self._state = _DONE
            return Close("bad request", exc)
        if request is None:
            if self._eof:
                self._state = _DONE
                return Close("end of input")
            if reader.continue_expected:
                reader.continue_expected = False
                return CONTINUE
            return None
        if request.is_upgrade:
            self._state = _DONE
            return request
        self._state = _ANSWERING
        self._request_since = None
        self.keep_alive = request.keep_alive
        return request

    @property
    def wants_data(self) -> bool:
        """Whether the connection should read: it is waiting for a request's bytes."""
        return self._state == _READING and self._paused_since is None and not self._eof

    @property
    def idle(self) -> bool:
        """Whether the connection waits for a new request, with no byte of one received.

        Then bytes that make one whole request may be answered without this
        machine (:meth:`answered_whole`): it would hand out that request and
        nothing else, and keep the connection open after its answer.
        """
        return (
            self._state == _READING
            and self._request_since is None
            and self._close_reason is None
            and self._paused_since is None
            and not self._eof
        )

    @property
    def buffered(self) -> bool:
        """Whether bytes of a next request are already received."""
        return self._reader.buffered > 0

    @property
    def writing_paused(self) -> bool:
        """Whether the transport's buffer is full (its client does not read)."""
        return self._paused_since is not None

    @property
    def deadline(self) -> float | None:
        """When the connection times out unless an input comes first; None: never."""
        state = self._state
        if state == _DONE:
            return None
        if self._paused_since is not None:
            return self._paused_since + self._timeout
        if state == _ANSWERING:
            return None
        since = self._request_since
        if since is None:
            return self._idle_since + self._timeout
        return since + self._timeout + self._reader.body_size / MIN_BODY_RATE

    def expire(self, now: float) -> bool:
        """Whether the deadline has passed; if so, the connection is done and must close."""
        deadline = self.deadline
        if deadline is None or now < deadline:
            return False
        self._state = _DONE
        return True


_status_lines: dict[tuple[HTTPStatus, str, bool], bytes] = {}


def serialize_response(
    status: HTTPStatus,
    body: bytes,
    content_type: str,
    headers: list[tuple[str, str]],
    keep_alive: bool,
) -> bytes:
    """The bytes of a complete HTTP/1.1 response.

    A ``204 No Content`` (a CORS preflight's answer) and a ``304 Not Modified``
    have neither body nor ``Content-Length`` nor ``Content-Type``, as RFC 9110
    (8.6, 15.3.5, 15.4.5) asks.
    """
    if status is HTTPStatus.NO_CONTENT or status is HTTPStatus.NOT_MODIFIED:
        lines = [f"HTTP/1.1 {status.value} {status.phrase}", "Cache-Control: no-store"]
        if not keep_alive:
            lines.append("Connection: close")
        lines += [f"{name}: {value}" for name, value in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    start = _status_lines.get((status, content_type, keep_alive))
    if start is None:
        # Made once per status, type and keep-alive: most answers are one of a few.
        lines = [
            f"HTTP/1.1 {status.value} {status.phrase}",
            f"Content-Type: {content_type}",
            "Cache-Control: no-store",
        ]
        if not keep_alive:
            lines.append("Connection: close")
        start = _status_lines[(status, content_type, keep_alive)] = (
            "\r\n".join(lines) + "\r\nContent-Length: "
        ).encode("latin-1")
    if not headers:  # nearly every answer
        return b"%s%d\r\n\r\n%s" % (start, len(body), body)
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("latin-1")
    return b"%s%d\r\n%s\r\n%s" % (start, len(body), extra, body)


def serialize_stream_head(
    status: HTTPStatus, content_type: str, headers: list[tuple[str, str]]
) -> bytes:
    """The head of a response whose body is a stream that ends when the connection closes.

    No ``Content-Length``: the body is what the server sends until it closes,
    which ``Connection: close`` announces (RFC 9112, 6.3: the body then ends at
    the close, and the connection is not reused).
    """
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {content_type}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
