"""The websockets ``ServerConnection`` subclass: kept-alive HTTP, and the fast message path.

Everything objstore relies on beyond the documented API of websockets lives
in this module, and ``tests/test_websockets_canary.py`` fails loudly when an
upgrade of websockets changes it. What it relies on:

* ``ServerConnection`` is the asyncio protocol of the connection: its
  ``connection_made`` starts websockets' handling (the handshake task), and
  ``data_received``, ``eof_received`` and ``connection_lost`` feed it;
* ``ServerConnection.process_event`` receives every parsed frame after the
  handshake request;
* ``Connection.pause_writing``/``resume_writing`` are the transport's flow
  control callbacks, and maintain ``Connection.paused``;
* ``connection.protocol.state`` tells whether frames may still be written;
  ``protocol.current_size`` is None unless a fragmented message is open, and
  ``protocol.max_message_size`` is the ``max_size`` the server was given;
* websockets' parser reads frames from wherever the bytes it was last fed
  stopped, so feeding it whole frames only keeps it at a frame boundary.

HTTP: websockets answers one HTTP request per connection, then closes it, and
refuses request bodies. So a connection starts in HTTP mode, where it hands
its transport's callbacks to an :class:`~objstore.httpconnection.HttpMode`,
which reads requests (:mod:`objstore.http11`), answers them through the one
router (:func:`objstore.http.route`) and keeps the connection alive. Only when
a request asks for a WebSocket upgrade is websockets started on the connection
(``connection_made``), with the request; from then on it is a websockets
connection whose handshake calls ``process_request``.

Messages: whole text and binary frames, which is what clients send nearly
always, are taken apart here (:mod:`objstore.wsframes`) and handled in the
callback that received them, instead of going through websockets' parser, its
message queue and a task per connection. Every other frame (ping, pong,
close, fragments, anything malformed) is handed to websockets whole, which
answers, assembles or fails the connection as it always does. Outgoing
frames are written to the transport directly by the connection's
:class:`~objstore.outbox.Outbox`: server frames are unmasked, so one encoded
frame serves every subscriber, and frames of one loop turn go out in one
write. Control frames (ping, pong, close) stay with websockets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import CONNECTING, OPEN, Event

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover  # websockets built without its C extension
    from websockets.utils import apply_mask

from .http11 import Request
from .httpconnection import HttpHandler, HttpMode
from .session import ClientSession
from .wsframes import SIMPLE_BINARY, SIMPLE_TEXT, frame_extent, is_masked

__all__ = ["HttpHandler", "ObjstoreConnection"]

logger = logging.getLogger("objstore.http")

_WEBSOCKETS_LOGGER = logging.getLogger("objstore.websockets")
_PING = b"\x89\x00"  # a ping frame with an empty payload
_NO_HEADERS = Headers()


class _NoMessages:
    """Stands in for websockets' queue of received messages, which objstore bypasses.

    websockets makes one per connection (about 1 KB); a shared stand-in that only
    accepts being closed keeps that memory for the connections themselves.
    """

    def close(self) -> None:
        pass


_NO_MESSAGES = _NoMessages()
#: Shared stand-ins for per-connection containers objstore leaves empty: websockets
#: fills pending_pings only in ping(), which objstore does not call, and reads
#: extensions, of which none are negotiated.
_NO_PINGS: dict[bytes, tuple[asyncio.Future[float], float]] = {}
_NO_EXTENSIONS: list[Any] = []

# Who reads the frames of an upgraded connection (_State.framing):
_FRAMES_HELD = 0  # nobody yet: the handshake is not done, frames wait for it
_FRAMES_OURS = 1  # this module, handing websockets every frame it does not take whole
_FRAMES_WEBSOCKETS = 2  # websockets alone: the connection is closing
_SIMPLE_FIRST_BYTES = frozenset((SIMPLE_TEXT, SIMPLE_BINARY))


class _State:
    """objstore's own state of a connection."""

    __slots__ = (
        "closing",
        "fragmented_text",
        "fragments",
        "frames",
        "framing",
        "http",
        "ping_sent",
        "session",
        "stall",
        "websocket",
    )

    def __init__(self) -> None:
        # HTTP mode, from connection_made until the connection closes or upgrades.
        self.http: HttpMode | None = None
        # WebSocket mode.
        self.websocket = False
        self.framing = _FRAMES_HELD
        #: Received bytes not handled yet: the start of a frame, or frames
        #: that came before the handshake was done.
        self.frames: bytes | None = None
        self.session: ClientSession | None = None
        self.fragments: list[bytes] | None = None
        self.fragmented_text = False
        self.stall: asyncio.TimerHandle | None = None
        self.closing: asyncio.Task[None] | None = None
        #: When the keepalive ping still unanswered was sent (loop time).
        self.ping_sent: float | None = None


class ObjstoreConnection(ServerConnection):
    """One client connection: kept-alive HTTP until it asks for a WebSocket, then messages."""

    #: Largest body accepted; set by the server from its config.
    max_body_size = 16 * 1024 * 1024
    #: Seconds a congested connection may go without draining before it is closed.
    stall_timeout = 60.0
    #: Seconds an HTTP connection may stay idle, or take to send a request.
    http_timeout = 10.0
    #: Makes the session of a connection once it is open; set by the server.
    session_factory: Callable[[ObjstoreConnection], ClientSession]
    #: Answers plain HTTP requests; set by the server.
    http_handler: HttpHandler
    #: Connections in HTTP mode, so that the server can close them when it stops.
    http_connections: set[ObjstoreConnection]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One attribute for all of objstore's state: websockets already sets
        # nearly 30, and past 30 CPython gives each instance a dict of its own
        # instead of sharing the attribute names (1.5 KB more per connection).
        self.ours = _State()
        # websockets wraps its logger in an adapter per connection; the plain
        # logger does as well without one more object each.
        self.logger = self.protocol.logger = _WEBSOCKETS_LOGGER
        # A random UUID per connection that nothing reads: 100 bytes each.
        self.id = self.protocol.id = None  # type: ignore[assignment]
        # Set now, in the same order for every instance, so that CPython keeps
        # sharing the attribute table (set later, it copied it: 1.6 KB each).
        self.transport = None  # type: ignore[assignment]
        self.recv_messages = _NO_MESSAGES  # type: ignore[assignment]
        # websockets keeps a deque here (760 bytes even when empty); it only
        # appends, removes and iterates, which a list does in 56.
        self.drain_waiters = []  # type: ignore[assignment]

    @property
    def session(self) -> ClientSession | None:
        """The session of an open WebSocket connection, once made."""
        return self.ours.session

    # -- lifecycle ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # websockets is started only for a WebSocket upgrade; see _upgrade().
        self.transport = transport  # type: ignore[assignment]
        self.http_connections.add(self)
        self.ours.http = HttpMode(
            self.transport,
            self.loop,
            self.http_handler,
            max_body=self.max_body_size,
            timeout=self.http_timeout,
            upgrade=self._upgrade,
            ended=self._end_http,
        )

    def data_received(self, data: bytes) -> None:
        http = self.ours.http
        if http is None:
            if self.ours.websocket:
                self._receive_frames(data)
            return  # an HTTP connection being closed: drop what comes
        http.data_received(data)

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio allows a bool
        if self.ours.websocket:
            return super().eof_received()
        if self.ours.http is not None:
            return self.ours.http.eof_received()
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ours.stall is not None:
            self.ours.stall.cancel()
            self.ours.stall = None
        if self.ours.websocket:
            if self.connection_lost_waiter.cancelled():
                self.connection_lost_waiter = self.loop.create_future()
            super().connection_lost(exc)
            if self.ours.session is not None:
                self.ours.session.close(self.close_code, self.close_reason or "")
            return
        if self.ours.http is not None:
            self.ours.http.connection_lost()

    def close_if_http(self) -> None:
        """Close an HTTP-mode connection, at once if idle, else after its response."""
        if self.ours.http is not None:
            self.ours.http.close_when_idle()

    # -- HTTP mode ---------------------------------------------------------------------

    def _end_http(self) -> None:
        self.ours.http = None
        self.http_connections.discard(self)

    def _upgrade(self, request: Request) -> None:
        """Hand the connection to websockets, with the request; what came after it waits."""
        self.ours.websocket = True
        # Frames that came with the request wait for the handshake to finish:
        # websockets is fed the request alone, so that its parser starts on a
        # frame boundary once the connection is open.
        self.ours.frames = request.after or None
        super().connection_made(self.transport)
        self.recv_messages = _NO_MESSAGES  # type: ignore[assignment]
        super().data_received(request.raw)

    def opened(self) -> asyncio.Future[None]:
        """The handshake is done: make the session; the future resolves when the connection ends.

        Also lets go of what only the handshake needed, the request and response
        headers.
        """
        self.response = None
        self.request_rcvd = None  # type: ignore[assignment]  # awaited by the handshake only
        request = self.request
        if request is not None:
            # Empty it in place, sharing constant strings. (Replacing the request
            # itself by a shared one measured 2 KiB more per connection, oddly.)
            request.headers = _NO_HEADERS
            request.path, request.method, request.protocol = "/ws", "GET", "HTTP/1.1"
        session = self.client_session()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s connected", session.address)
        self.pending_pings = _NO_PINGS  # objstore pings without it (see send_keepalive)
        self.protocol.extensions = _NO_EXTENSIONS  # none are negotiated: compression is off
        self.ours.framing = _FRAMES_OURS
        if self.ours.frames is not None:
            self.transport.resume_reading()
            self.loop.call_soon(self._receive_frames, b"")
        # websockets resolves this when the connection is lost. Awaiting it
        # directly (rather than a future of our own, or through shield) keeps
        # one object less per connection; connection_lost() below copes with
        # the one case that could cancel it, a task cancelled at shutdown.
        return self.connection_lost_waiter

    # -- WebSocket mode ----------------------------------------------------------------

    def client_session(self) -> ClientSession:
        """The session of this connection, made on first use."""
        session = self.ours.session
        if session is None:
            session = self.ours.session = self.session_factory(self)
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
                self.ours.fragments = [bytes(event.data)]
                self.ours.fragmented_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            # websockets' parser has checked that a fragmented message is open
            # and that the message stays within max_size.
            fragments = self.ours.fragments
            if fragments is not None:
                fragments.append(bytes(event.data))
                if event.fin:
                    self.ours.fragments = None
                    self._receive(b"".join(fragments), self.ours.fragmented_text)
        else:
            if opcode is Opcode.PONG:
                self.ours.ping_sent = None
            super().process_event(event)  # ping, pong, close

    def _receive_frames(self, data: bytes) -> None:
        """Handle bytes received on an upgraded connection.

        Whole masked text and binary frames within the size limit are unmasked
        and handled here. Any other frame goes to websockets once it has fully
        arrived, so websockets only ever parses whole frames; a header that
        websockets will refuse (unmasked, over the size limit) goes at once,
        with everything after it, and websockets fails the connection.
        """
        ours = self.ours
        held = ours.frames
        if held is not None:
            data = held + data
            ours.frames = None
        protocol = self.protocol
        if ours.framing != _FRAMES_OURS:
            if ours.framing == _FRAMES_HELD and protocol.state in (CONNECTING, OPEN):
                # The handshake is not over until opened() (websockets may still
                # be sending its answer): hold the frames until then.
                ours.frames = data
                self.transport.pause_reading()
            else:
                super().data_received(data)
            return
        limit = protocol.max_message_size
        size = len(data)
        pos = 0
        while pos < size and protocol.state is OPEN:
            extent = frame_extent(data, pos)
            if extent is None:
                break  # the header is still arriving
            start, length = extent
            if (limit is not None and length > limit) or not is_masked(data, pos):
                break
            end = start + length
            if end > size:
                ours.frames = data[pos:]  # the payload is still arriving
                return
            first = data[pos]
            if first in _SIMPLE_FIRST_BYTES and protocol.current_size is None:
                message = apply_mask(data[start:end], data[start - 4 : start])
                pos = end
                self._receive(message, first == SIMPLE_TEXT)
            else:
                frame = data[pos:end]
                pos = end
                super().data_received(frame)
        if pos < size:
            if protocol.state is OPEN and frame_extent(data, pos) is None:
                ours.frames = data[pos:]
            else:
                ours.framing = _FRAMES_WEBSOCKETS
                super().data_received(data[pos:])

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
        if self.ours.http is not None:
            self.ours.http.pause_writing()
        if self.session is not None:
            self.session.outbox.pause()
        if self.ours.websocket and self.protocol.state is OPEN:
            # While it cannot take our data, take none of its requests either.
            self.transport.pause_reading()
            self.ours.stall = self.loop.call_later(self.stall_timeout, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.ours.http is not None:
            self.ours.http.resume_writing()
        if self.ours.stall is not None:
            self.ours.stall.cancel()
            self.ours.stall = None
            self.transport.resume_reading()
        if self.session is not None:
            self.session.outbox.resume()

    def send_keepalive(self, now: float, timeout: float | None) -> None:
        """Send a ping, or close the connection when the last one is unanswered after *timeout*.

        Called for every connection by one task of the server, rather than by a
        task per connection as websockets does (2 KB per connection saved).
        """
        ours = self.ours
        if self.protocol.state is not OPEN or ours.stall is not None:
            # A congested connection is not read from; the stall timeout rules.
            ours.ping_sent = None
            return
        sent = ours.ping_sent
        if sent is None:
            ours.ping_sent = now
            self.transport.write(_PING)
        elif timeout is not None and now - sent >= timeout:
            self._close_soon(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _stalled(self) -> None:
        self.ours.stall = None
        self._close_soon(
            CloseCode.POLICY_VIOLATION,
            f"too slow: nothing could be sent for {self.stall_timeout:g} seconds",
        )

    def _close_soon(self, code: CloseCode, reason: str) -> None:
        if self.ours.closing is None:
            self.ours.closing = self.loop.create_task(self.close(code, reason))
