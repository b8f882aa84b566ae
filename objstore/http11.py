"""HTTP/1.1 on a kept-alive connection, sans I/O: bytes in, requests out; responses to bytes.

Owns the wire format of plain HTTP requests (request line, headers, a body of
known length) and of responses, with keep-alive, pipelining and limits. A
request that asks for a WebSocket upgrade is handed back whole, so that
websockets performs the handshake. Knows nothing of sockets, asyncio, routes
or websockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus

from .errors import ClientError

__all__ = [
    "MAX_HEAD_SIZE",
    "BadRequest",
    "Request",
    "RequestReader",
    "serialize_response",
]

#: Longest request head (request line and headers) accepted.
MAX_HEAD_SIZE = 16 * 1024
_HEAD_END = b"\r\n\r\n"
_METHOD_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class BadRequest(ClientError):
    """A request that cannot be read; answered with *status* and the connection closed."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Request:
    """One complete request: its head, parsed, and its body."""

    method: str
    target: str
    http10: bool
    #: Header names in lowercase; a repeated header keeps its last value.
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


def _parse_head(head: bytes) -> Request:
    request_line, _, header_block = head.partition(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _METHOD_CHARS:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "invalid HTTP request line")
    method, target, version = parts
    if version not in {b"HTTP/1.1", b"HTTP/1.0"}:
        raise BadRequest(
            HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.1 and HTTP/1.0 are supported"
        )
    headers: dict[str, str] = {}
    if header_block:
        for line in header_block.split(b"\r\n"):
            name, colon, value = line.partition(b":")
            if not colon or not name or name[-1] in b" \t" or name[0] in b" \t":
                raise BadRequest(HTTPStatus.BAD_REQUEST, "invalid HTTP header line")
            headers[name.lower().decode("latin-1")] = value.strip().decode("latin-1")
    try:
        target_text = target.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "the request target is not ASCII") from None
    return Request(method.decode("ascii"), target_text, version == b"HTTP/1.0", headers)


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
                return None
            request = _parse_head_cached(bytes(buffer[:end]))
            if request.is_upgrade:
                request.raw = bytes(buffer[: end + len(_HEAD_END)])
                request.after = bytes(buffer[end + len(_HEAD_END) :])
                buffer.clear()
                return request
            del buffer[: end + len(_HEAD_END)]
            self._needed = self._body_length(request)
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

    def _body_length(self, request: Request) -> int:
        if "transfer-encoding" in request.headers:
            raise BadRequest(
                HTTPStatus.LENGTH_REQUIRED,
                "invalid body: chunked transfer encoding is not supported; "
                "send the body with a Content-Length header",
            )
        text = request.headers.get("content-length")
        if text is None:
            return 0
        if not text.isdigit():
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"invalid Content-Length header: {text!r}")
        length = int(text)
        if length > self._max_body:
            raise BadRequest(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body too large: {length} bytes, over the limit of {self._max_body}",
            )
        return length


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
