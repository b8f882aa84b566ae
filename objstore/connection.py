"""The websockets ``ServerConnection`` subclass: request bodies, and the fast message path.

Everything objstore relies on beyond the documented API of websockets lives
in this module, and ``tests/test_websockets_canary.py`` fails loudly when an
upgrade of websockets changes it. What it relies on:

* websockets 17 refuses a request with a body before ``process_request`` runs
  (``Request.parse`` rejects a non-zero Content-Length and any
  Transfer-Encoding), so ``POST /set`` cannot reach the router as it is;
* ``ServerConnection.data_received`` (the asyncio protocol callback) is where
  the bytes of the request enter websockets;
* ``ServerConnection.process_event`` receives every parsed frame, and
  ``Connection.pause_writing``/``resume_writing`` are the transport's flow
  control callbacks, which also maintain ``Connection.paused``.

Request bodies: this class reads the request head itself; when it announces a
body, it takes the body off the stream, removes the body headers from the head,
and only then hands the head to websockets. The body is then available to
``process_request`` as :attr:`ObjstoreConnection.request_body`. Requests
without a body, WebSocket upgrades among them, pass through untouched after
their head, at the cost of one search for the end of the head.

Messages: data frames are handled as they are parsed, in the callback that
received them, instead of travelling through websockets' message queue and a
task per connection; this cuts the cost of a message by several times.
Outgoing frames are written to the transport directly by the connection's
:class:`~objstore.outbox.Outbox`: server frames are unmasked, so one encoded
frame serves every subscriber, and frames of one loop turn go out in one
write. Control frames (ping, pong, close) stay with websockets.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import OPEN, Event

from .errors import ClientError, InvalidMessage, LengthRequired, PayloadTooLarge
from .session import ClientSession

__all__ = ["ObjstoreConnection", "strip_body_headers"]

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


class ObjstoreConnection(ServerConnection):
    """A server connection that reads HTTP bodies and handles messages as they arrive."""

    #: Largest body accepted; set by the server from its config.
    max_body_size = 16 * 1024 * 1024
    #: Seconds a congested connection may go without draining before it is closed.
    stall_timeout = 60.0
    #: Makes the session of a connection once it is open; set by the server.
    session_factory: Callable[[ObjstoreConnection], ClientSession]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session: ClientSession | None = None
        self._fragments: list[bytes] | None = None
        self._fragmented_text = False
        self._stall: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None
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

    # -- the WebSocket side ------------------------------------------------------------

    def client_session(self) -> ClientSession:
        """The session of this connection, made on first use."""
        session = self.session
        if session is None:
            session = self.session = self.session_factory(self)
            if self.paused:
                session.outbox.pause()
        return session

    def process_event(self, event: Event) -> None:
        if self.request is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake request
            return
        opcode = event.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if event.fin:
                self._receive(bytes(event.data), opcode is Opcode.TEXT)
            else:
                self._fragments = [bytes(event.data)]
                self._fragmented_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            # websockets' parser has checked that a fragmented message is open
            # and that the message stays within max_size.
            fragments = self._fragments
            if fragments is not None:
                fragments.append(bytes(event.data))
                if event.fin:
                    self._fragments = None
                    self._receive(b"".join(fragments), self._fragmented_text)
        else:
            super().process_event(event)  # ping, pong, close

    def _receive(self, data: bytes, text: bool) -> None:
        message: str | bytes = data
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self._close_soon(CloseCode.INVALID_DATA, "invalid UTF-8 in a text frame")
                return
        self.client_session().receive(message)

    def write_frames(self, frames: list[bytes]) -> None:
        """Write complete frames to the socket, unless the connection is closing."""
        if self.protocol.state is OPEN:
            self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.session is not None:
            self.session.outbox.pause()
        if self.protocol.state is OPEN:
            # While it cannot take our data, take none of its requests either.
            self.transport.pause_reading()
            self._stall = self.loop.call_later(self.stall_timeout, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
            self.transport.resume_reading()
        if self.session is not None:
            self.session.outbox.resume()

    def _stalled(self) -> None:
        self._stall = None
        self._close_soon(
            CloseCode.POLICY_VIOLATION,
            f"too slow: nothing could be sent for {self.stall_timeout:g} seconds",
        )

    def _close_soon(self, code: CloseCode, reason: str) -> None:
        if self._closing is None:
            self._closing = self.loop.create_task(self.close(code, reason))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        super().connection_lost(exc)

    # -- request bodies ----------------------------------------------------------------

    def _pass_through(self) -> None:
        self._state = _State.PASS
        data = bytes(self._buffer)
        self._buffer.clear()
        super().data_received(data)
