"""The websockets ``ServerConnection`` subclass that reads HTTP request bodies.

Everything objstore relies on beyond the documented API of websockets lives
in this module, and ``tests/test_websockets_canary.py`` fails loudly when an
upgrade of websockets changes it. What it relies on:

* websockets 17 refuses a request with a body before ``process_request`` runs
  (``Request.parse`` rejects a non-zero Content-Length and any
  Transfer-Encoding), so ``POST /set`` cannot reach the router as it is;
* ``ServerConnection.data_received`` (the asyncio protocol callback) is where
  the bytes of the request enter websockets.

So this class reads the request head itself; when it announces a body, it
takes the body off the stream, removes the body headers from the head, and
only then hands the head to websockets. The body is then available to
``process_request`` as :attr:`HttpServerConnection.request_body`. Requests
without a body, WebSocket upgrades among them, pass through untouched after
their head, at the cost of one search for the end of the head.
"""

from __future__ import annotations

import enum
import re
from typing import Any

from websockets.asyncio.server import ServerConnection

from .errors import ClientError, InvalidMessage, LengthRequired, PayloadTooLarge

__all__ = ["HttpServerConnection", "strip_body_headers"]

#: A request head longer than this is passed to websockets, which rejects it.
_MAX_HEAD = 64 * 1024
_HEAD_END = b"\r\n\r\n"
_BODY_HEADER = re.compile(rb"^(content-length|transfer-encoding|expect)[ \t]*:(.*)$", re.I)


class _State(enum.Enum):
    HEAD = "head"  # reading the request head
    BODY = "body"  # reading a body of known length
    DISCARD = "discard"  # the body is read or refused; ignore what follows
    PASS = "pass"  # no body: everything goes to websockets


def strip_body_headers(head: bytes) -> tuple[bytes, dict[bytes, list[bytes]]]:
    """Split the body-framing headers off a request head.

    Returns the head without ``Content-Length``, ``Transfer-Encoding`` and
    ``Expect`` lines, and those headers' values by lowercase name.
    """
    kept: list[bytes] = []
    found: dict[bytes, list[bytes]] = {}
    for line in head[: -len(_HEAD_END)].split(b"\r\n"):
        match = _BODY_HEADER.match(line)
        if match:
            found.setdefault(match.group(1).lower(), []).append(match.group(2).strip())
        else:
            kept.append(line)
    return b"\r\n".join(kept) + _HEAD_END, found


def _content_length(values: list[bytes]) -> int:
    if len(set(values)) != 1 or not values[0].isdigit():
        shown = b", ".join(values).decode("latin-1")
        raise InvalidMessage(f"invalid Content-Length header: {shown!r}")
    return int(values[0])


class HttpServerConnection(ServerConnection):
    """A server connection that also reads the body of plain HTTP requests."""

    #: Largest body accepted; set by the server from its config.
    max_body_size = 16 * 1024 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state = _State.HEAD
        self._buffer = bytearray()
        self._remaining = 0
        self._head = b""
        #: The body of the request, once read; empty when it had none.
        self.request_body = b""
        #: Why the body was refused, if it was; the router answers with it.
        self.body_error: ClientError | None = None

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state is _State.PASS:
            super().data_received(data)
        elif state is _State.HEAD:
            self._read_head(data)
        elif state is _State.BODY:
            self._read_body(data)
        # DISCARD: websockets answers and closes; what a client sends meanwhile is dropped.

    def eof_received(self) -> None:
        if self._state is _State.HEAD and self._buffer:
            # An incomplete head: let websockets see it and give up as usual.
            super().data_received(bytes(self._buffer))
            self._buffer.clear()
        super().eof_received()

    def _read_head(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(_HEAD_END)
        if end < 0:
            if len(self._buffer) > _MAX_HEAD:
                self._pass_through()
            return
        end += len(_HEAD_END)
        stripped, found = strip_body_headers(bytes(self._buffer[:end]))
        try:
            length = self._body_length(found)
        except ClientError as exc:
            self.body_error = exc
            self._state = _State.DISCARD
            self._buffer.clear()
            super().data_received(stripped)
            return
        if length == 0:
            # No body: the common case, WebSocket upgrades included.
            self._pass_through()
            return
        rest = bytes(self._buffer[end:])
        self._buffer.clear()
        self._head = stripped
        if found.get(b"expect", [b""])[0].lower() == b"100-continue":
            # curl waits for this before sending bodies over 1 KiB.
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._remaining = length
        self._state = _State.BODY
        self._read_body(rest)

    def _body_length(self, found: dict[bytes, list[bytes]]) -> int:
        if b"transfer-encoding" in found:
            raise LengthRequired(
                "invalid body: chunked transfer encoding is not supported; "
                "send the body with a Content-Length header"
            )
        length = _content_length(found.get(b"content-length", [b"0"]))
        if length > self.max_body_size:
            raise PayloadTooLarge(
                f"body too large: {length} bytes, over the limit of {self.max_body_size}"
            )
        return length

    def _read_body(self, data: bytes) -> None:
        if data:
            self._buffer += data[: self._remaining]
            self._remaining -= min(len(data), self._remaining)
        if self._remaining == 0:
            self.request_body = bytes(self._buffer)
            self._buffer.clear()
            self._state = _State.DISCARD
            super().data_received(self._head)

    def _pass_through(self) -> None:
        self._state = _State.PASS
        data = bytes(self._buffer)
        self._buffer.clear()
        super().data_received(data)
