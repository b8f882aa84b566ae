"""HTTP/1.1 on a kept-alive connection, sans I/O: bytes in, events out; responses to bytes.

Owns the wire format of plain HTTP requests (request line, headers, a body of
known length) and of responses, and the keep-alive state machine of a
connection (:class:`KeepAlive`): which request to answer next, when to send
``100 Continue``, when to stop reading, when to close and why, and the
deadlines of each state as numbers given "now". A request that asks for a
WebSocket upgrade is handed back whole, so that websockets performs the
handshake. Knows nothing of sockets, asyncio, routes or websockets.

The reader is strict where leniency lets two parsers disagree about where a
request ends (RFC 9112 section 11.2, request smuggling): every line ends with
CRLF, a header line is ``token ":" value`` without obsolete folding or control
characters, ``Content-Length`` is ASCII digits and stated once (or repeated
identically), ``Transfer-Encoding`` is refused, and an HTTP/1.1 request names
exactly one ``Host``. Every refusal closes the connection, since nothing after
it can be trusted.

Memory of a connection's reader: at most :data:`MAX_HEAD_SIZE` of an
unfinished head, or the body of the request being read (at most the
``max_body`` given), plus what one read of the transport adds while the
connection is not reading (:class:`KeepAlive` asks its owner to stop reading
as soon as a request cannot be answered at once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools

from .errors import ClientError

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
]

#: Longest request head (request line and headers) accepted.
MAX_HEAD_SIZE = 16 * 1024
#: Slowest body accepted, in bytes per second: a request must arrive whole within
#: the HTTP timeout plus its body's length at this rate, counted from its first byte.
MIN_BODY_RATE = 64 * 1024
_HEAD_END = b"\r\n\r\n"
_METHOD_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_ABSOLUTE_FORM = re.compile(r"(?i:https?)://([^/?#]*)(.*)", re.DOTALL)
_MAX_LENGTH_DIGITS = 20


class BadRequest(ClientError):
    """A request that cannot be read; answered with *status* and the connection closed."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _bad(message: str) -> BadRequest:
    return BadRequest(HTTPStatus.BAD_REQUEST, message)


def _bare_lf() -> BadRequest:
    return _bad("invalid request head: a line ends with a bare LF or CR; end lines with CRLF")


def _shown(data: bytes, limit: int = 40) -> str:
    """*data* as a Python literal, cut to *limit* bytes, for an error message."""
    return repr(data[:limit].decode("latin-1")) + ("..." if len(data) > limit else "")


@dataclass(slots=True)
class Request:
    """One complete request: its head, parsed, and its body."""

    method: str
    #: The request target; for an absolute-form target (``http://host/path``),
    #: its path and query, and ``headers["host"]`` is then its authority.
    target: str
    http10: bool
    #: Header names in lowercase; a repeated header keeps its last value
    #: (``Content-Length`` and ``Host`` may not be repeated with other values).
    headers: dict[str, str]
    body: bytes = b""
    #: The raw head, for a WebSocket upgrade (which websockets reads again).
    raw: bytes = field(default=b"", repr=False)
    #: Everything received after the head of a WebSocket upgrade: its first frames.
    after: bytes = field(default=b"", repr=False)

    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after the response."""
        connection = self.headers.get("connection", "").lower()
        if self.http10:
            return "keep-alive" in connection
        return "close" not in connection

    @property
    def is_upgrade(self) -> bool:
        """Whether this asks to switch to the WebSocket protocol."""
        return "websocket" in self.headers.get("upgrade", "").lower()


class _Head:
    """Collects what llhttp reports of one request head (its callbacks)."""

    __slots__ = ("headers", "hosts", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.hosts = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp has checked both: a token, and a value without control characters.
        key = name.decode("ascii").lower()
        if key == "host":
            self.hosts += 1
        self.headers[key] = value.decode("latin-1").strip(" \t")


#: What llhttp's complaints mean for a client, by the start of its message.
_LLHTTP_REASONS = {
    "Invalid header token": "invalid HTTP header line",
    "Invalid header value char": "invalid header value: control characters are not allowed",
    "Transfer-Encoding can't be present with Content-Length": (
        "invalid body: both Content-Length and Transfer-Encoding are set; "
        "send Content-Length alone"
    ),
    "Request has invalid `Transfer-Encoding`": (
        "invalid body: chunked transfer encoding is not supported; "
        "send the body with a Content-Length header"
    ),
}


def _explain(head: bytes, reason: str) -> str:
    """The error message for a head llhttp refused with *reason* (only ever called then)."""
    fields = [line.partition(b":") for line in head.split(b"\r\n")[1:-2]]
    if any(name[:1] in (b" ", b"\t") for name, _, _ in fields):
        return "invalid header line: obsolete line folding is not allowed; one line per header"
    if "Content-Length" in reason:
        lengths = [
            value.strip(b" \t").decode("latin-1")
            for name, _, value in fields
            if name.lower() == b"content-length"
        ]
        if len(lengths) > 1:
            return f"more than one Content-Length header: {', '.join(lengths)}; send one"
        if lengths:
            return f"invalid Content-Length header: {lengths[0]!r}"
    for start, message in _LLHTTP_REASONS.items():
        if reason.startswith(start):
            return message
    return f"invalid HTTP request: {reason[:1].lower()}{reason[1:]}"


def _parse_head(head: bytes) -> Request:
    """Parse a request head, its final empty line included.

    llhttp (through httptools) reads the grammar, strictly: the line endings,
    header names and values, Content-Length and Transfer-Encoding. This adds
    what llhttp leaves to its user: the versions, methods and targets objstore
    serves, and the Host rules.
    """
    lines = head.count(b"\r\n")
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        raise _bare_lf()
    request_line, _, _ = head.partition(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _METHOD_CHARS:
        raise _bad("invalid HTTP request line")
    method, target, version = parts
    if version not in {b"HTTP/1.1", b"HTTP/1.0"}:
        raise BadRequest(
            HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.1 and HTTP/1.0 are supported"
        )
    if _TARGET.fullmatch(target) is None:
        raise _bad(f"invalid request target {_shown(target)}: only printable ASCII is allowed")
    parsed = _Head()
    try:
        httptools.HttpRequestParser(parsed).feed_data(head)
    except httptools.HttpParserUpgrade:
        pass  # the head is whole; whether objstore upgrades is decided below
    except httptools.HttpParserInvalidMethodError:
        raise _bad("invalid HTTP request line") from None
    except httptools.HttpParserError as exc:
        raise _bad(_explain(head, str(exc))) from None
    headers = parsed.headers
    http10 = version == b"HTTP/1.0"
    if parsed.hosts > 1:
        raise _bad("more than one Host header; send exactly one")
    if not parsed.hosts and not http10:
        raise _bad("missing Host header; an HTTP/1.1 request must name the server it is for")
    target_text = target.decode("ascii")
    if target_text[:1] != "/":
        absolute = _ABSOLUTE_FORM.fullmatch(target_text)
        if absolute is not None:
            # RFC 9112 3.2.2: the authority of an absolute-form target replaces Host.
            authority, rest = absolute.groups()
            if not authority:
                raise _bad(f"invalid request target {_shown(target)}: it names no host")
            headers["host"] = authority
            target_text = rest if rest[:1] == "/" else "/" + rest
    return Request(method.decode("ascii"), target_text, http10, headers)


#: Heads seen lately, parsed: clients that poll send the same head again and again.
_parsed_heads: dict[bytes, tuple[str, str, bool, dict[str, str]]] = {}
_PARSED_HEADS_KEPT = 256
_PARSED_HEAD_MAX_SIZE = 2048  # so that the heads kept take half a megabyte at most


def _parse_head_cached(head: bytes) -> Request:
    """:func:`_parse_head`, remembering the last few hundred distinct heads.

    Measured with ``benchmarks/run.py``, this took keep-alive ``GET`` from 0.59
    to 0.7 times the reference's rate.

    A request's headers are only ever read, so requests with the same head
    share one dictionary of them. Heads that fail to parse are not kept.
    """
    parsed = _parsed_heads.get(head)
    if parsed is not None:
        return Request(*parsed)
    request = _parse_head(head)
    if len(head) <= _PARSED_HEAD_MAX_SIZE:
        if len(_parsed_heads) >= _PARSED_HEADS_KEPT:
            _parsed_heads.clear()
        _parsed_heads[head] = (request.method, request.target, request.http10, request.headers)
    return request


class RequestReader:
    """Turns received bytes into complete requests, one at a time, in order."""

    __slots__ = ("_buffer", "_head", "_max_body", "_needed", "continue_expected")

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._buffer = bytearray()
        self._head: Request | None = None
        self._needed = 0
        #: Set when the request being read waits for ``100 Continue`` before its body.
        self.continue_expected = False

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buffer += data

    @property
    def reading_body(self) -> bool:
        """True once a request's head is read and its body is still arriving."""
        return self._head is not None

    @property
    def body_size(self) -> int:
        """The length of the body being read; 0 while reading a head."""
        return self._needed if self._head is not None else 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as part of a request."""
        return len(self._buffer)

    def next_request(self) -> Request | None:
        """The next complete request, or None until more bytes arrive.

        Raises :class:`BadRequest` for a request that cannot be read; nothing
        after it on the connection can be trusted, so the connection must close.
        """
        buffer = self._buffer
        request = self._head
        if request is None:
            end = buffer.find(_HEAD_END, 0, MAX_HEAD_SIZE + len(_HEAD_END))
            if end < 0:
                if len(buffer) > MAX_HEAD_SIZE:
                    raise BadRequest(
                        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                        f"request head over {MAX_HEAD_SIZE} bytes",
                    )
                if b"\n\n" in buffer:  # a head ended with bare LFs would never end
                    raise _bare_lf()
                if buffer and buffer[0] not in _METHOD_CHARS:  # no need to wait for the rest
                    raise _bad("invalid HTTP request line")
                return None
            request = _parse_head_cached(bytes(buffer[: end + len(_HEAD_END)]))
            if request.is_upgrade:
                request.raw = bytes(buffer[: end + len(_HEAD_END)])
                request.after = bytes(buffer[end + len(_HEAD_END) :])
                buffer.clear()
                return request
            del buffer[: end + len(_HEAD_END)]
            self._needed = self._body_length(request.headers)
            self._head = request
            self.continue_expected = (
                self._needed > len(buffer)
                and request.headers.get("expect", "").lower() == "100-continue"
            )
        needed = self._needed
        if len(buffer) < needed:
            return None
        if needed:
            request.body = bytes(buffer[:needed])
            del buffer[:needed]
        self._head = None
        self.continue_expected = False
        return request

    def _body_length(self, headers: dict[str, str]) -> int:
        text = headers.get("content-length")
        if "transfer-encoding" in headers:
            if text is not None:
                raise _bad(
                    "invalid body: both Content-Length and Transfer-Encoding are set; "
                    "send Content-Length alone"
                )
            raise BadRequest(
                HTTPStatus.LENGTH_REQUIRED,
                "invalid body: chunked transfer encoding is not supported; "
                "send the body with a Content-Length header",
            )
        if text is None:
            return 0
        values = {value.strip(" \t") for value in text.split(",")}
        if len(values) != 1:
            raise _bad(f"conflicting Content-Length headers: {text!r}; send one length")
        (value,) = values
        if not (value.isascii() and value.isdigit()):
            raise _bad(f"invalid Content-Length header: {value!r}")
        length = int(value) if len(value) <= _MAX_LENGTH_DIGITS else self._max_body + 1
        if length > self._max_body:
            raise BadRequest(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body too large: {value} bytes, over the limit of {self._max_body}",
            )
        return length


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
    """The bytes of a complete HTTP/1.1 response."""
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
