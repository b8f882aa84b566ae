"""HTTP/1.1 requests, sans I/O: bytes in, complete requests out, strictly.

Owns the wire format of plain HTTP requests: request line, headers, a body of
known length, and the limits on them. A request that asks for a WebSocket
upgrade is handed back whole, so that websockets performs the handshake.
Knows nothing of sockets, asyncio, routes, websockets, nor of what comes
after a request (that is :mod:`objstore.http11`).

Strict where leniency lets two parsers disagree about where a request ends
(RFC 9112 section 11.2, request smuggling). llhttp, Node.js's parser (through
httptools), reads the grammar of every new head: every line ends with CRLF, a
header line is ``token ":" value`` without obsolete folding or control
characters other than HTAB, ``Content-Length`` is ASCII digits and appears
once, and not beside ``Transfer-Encoding``. This module adds what llhttp
leaves to its user: HTTP/1.0 and 1.1 only, printable ASCII targets, exactly
one ``Host`` on HTTP/1.1, absolute-form targets, no ``Transfer-Encoding`` at
all, and the limits. Every refusal closes the connection, since nothing after
it can be trusted.

Memory of a reader: at most :data:`MAX_HEAD_SIZE` of an unfinished head, or
the body of the request being read (at most the ``max_body`` given), plus
whatever its owner feeds it while not taking requests (the keep-alive machine
stops reading then: one read of the transport, 256 KiB at most).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools

from .errors import ClientError

__all__ = ["MAX_HEAD_SIZE", "BadRequest", "Request", "RequestReader"]

#: Longest request head (request line and headers) accepted.
MAX_HEAD_SIZE = 16 * 1024
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
    #: Whether the connection stays open after the response (read once per head).
    keep_alive: bool
    #: Whether this asks to switch to the WebSocket protocol (read once per head).
    is_upgrade: bool
    body: bytes = b""
    #: The raw head, for a WebSocket upgrade (which websockets reads again).
    raw: bytes = field(default=b"", repr=False)
    #: Everything received after the head of a WebSocket upgrade: its first frames.
    after: bytes = field(default=b"", repr=False)


def _keeps_alive(headers: dict[str, str], http10: bool) -> bool:
    connection = headers.get("connection")
    if connection is None:
        return not http10
    if http10:
        return "keep-alive" in connection.lower()
    return "close" not in connection.lower()


def _asks_upgrade(headers: dict[str, str]) -> bool:
    upgrade = headers.get("upgrade")
    return upgrade is not None and "websocket" in upgrade.lower()


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
    return Request(
        method.decode("ascii"),
        target_text,
        http10,
        headers,
        _keeps_alive(headers, http10),
        _asks_upgrade(headers),
    )


#: Heads seen lately, parsed: clients that poll send the same head again and again.
_parsed_heads: dict[bytes, tuple[str, str, bool, dict[str, str], bool, bool]] = {}
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
        _parsed_heads[head] = (
            request.method,
            request.target,
            request.http10,
            request.headers,
            request.keep_alive,
            request.is_upgrade,
        )
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
