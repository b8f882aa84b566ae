"""The websockets ``ServerConnection`` subclass: kept-alive HTTP, and the fast message path.

Everything objstore relies on beyond the documented API of websockets lives
in :mod:`objstore.wsinternals`, the base class of this one.

HTTP: websockets answers one HTTP request per connection, then closes it, and
refuses request bodies. So a connection starts in HTTP mode, where it hands
its transport's callbacks to an :class:`~objstore.httpconnection.HttpMode`,
which reads requests (:mod:`objstore.http11`), answers them through the one
router (:func:`objstore.http.route`) and keeps the connection alive. Only when
a request asks for a WebSocket upgrade is websockets started on the connection
(``connection_made``), with the request; from then on it is a websockets
connection whose handshake calls ``process_request``.

Messages: whole text and binary frames, which is what clients send nearly
always, are taken apart here (:mod:`objstore.wssplitter`) and handled in the
callback that received them, instead of going through websockets' parser, its
message queue and a task per connection. Every other frame (ping, pong,
close, fragments, anything malformed) is handed to websockets whole, which
answers, assembles or fails the connection as it always does.

Flow control: a connection stops handling its messages as soon as its
replies, or the messages of this turn of the loop, pass the turn's budget
(:class:`~objstore.outbox.FlushScheduler`), and while its socket does not take
what is written; it stops reading too, and goes on when the socket drains.
So whatever a client sends, what it costs is bounded: the bytes of one read
and one incomplete frame (at most ``--max-size``) on the way in; the
transport's buffer (32 KiB before it says it is full), one turn's budget
(64 KiB) and the largest reply (a value, at most ``--max-size``) on the way
out, and while congested one pending update per subscribed key. Outgoing
frames are written to the transport directly by the connection's
:class:`~objstore.outbox.Outbox`: server frames are unmasked, so one encoded
frame serves every subscriber, and frames of one loop turn go out in one
write. Control frames (ping, pong, close) stay with websockets.

TLS: the transport is then asyncio's TLS transport (uvloop's on uvloop), which
hands on decrypted bytes through the same callbacks, so nothing above changes
but two things: there is no half-close (a client's close_notify ends the
connection once what is answered by then is written), and the TLS layer adds
its buffers to the bounds: up to 256 KiB of received bytes not yet decrypted
while reading is paused, and on the way out the write buffer's limit applies
to the TLS layer, with the socket's own 64 KiB buffer below it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from websockets.frames import CloseCode, Frame, Opcode

from .http11 import Request
from .httpconnection import HttpHandler, HttpMode
from .outbox import TURN_BUDGET, FlushScheduler
from .repeatanswers import RepeatAnswers
from .session import ClientSession
from .tallies import ServerTallies
from .wsinternals import WebsocketsConnection
from .wssplitter import FRAME, MESSAGE_TEXT, REFUSED, FrameSplitter

__all__ = ["HttpHandler", "ObjstoreConnection"]

logger = logging.getLogger("objstore.http")

_PING = b"\x89\x00"  # a ping frame with an empty payload
#: The high-water mark of a connection's write buffer in HTTP mode (asyncio's default);
#: websockets sets its own (32 KiB) once a connection upgrades.
_HTTP_WRITE_LIMIT = 64 * 1024

# Who reads the frames of an upgraded connection (_State.framing):
_FRAMES_HELD = 0  # nobody yet: the handshake is not done, frames wait for it
_FRAMES_OURS = 1  # this module, handing websockets every frame it does not take whole
_FRAMES_WEBSOCKETS = 2  # websockets alone: the connection is closing


class _State:
    """objstore's own state of a connection."""

    __slots__ = (
        "closing",
        "deferred",
        "fragmented_size",
        "fragmented_text",
        "fragments",
        "framing",
        "http",
        "ping_sent",
        "session",
        "splitter",
        "stall",
        "websocket",
    )

    def __init__(self) -> None:
        # HTTP mode, from connection_made until the connection closes or upgrades.
        self.http: HttpMode | None = None
        # WebSocket mode.
        self.websocket = False
        self.framing = _FRAMES_HELD
        #: Received bytes not handled yet: the start of a frame, frames that came
        #: before the handshake was done, or frames held back by flow control.
        self.splitter: FrameSplitter | None = None
        #: Frames are held back until the turn's flush, or until the socket drains.
        self.deferred = False
        self.session: ClientSession | None = None
        #: A fragmented message in progress: its frames, kind and size so far.
        self.fragments: list[bytes] | None = None
        self.fragmented_text = False
        self.fragmented_size: int | None = None
        self.stall: asyncio.TimerHandle | None = None
        self.closing: asyncio.Task[None] | None = None
        #: When the keepalive ping still unanswered was sent (loop time).
        self.ping_sent: float | None = None


class ObjstoreConnection(WebsocketsConnection):
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
    #: Answers to repeated reads, shared by the server's connections (None: none kept).
    repeat_answers: RepeatAnswers | None = None
    #: Connections in HTTP mode, so that the server can close them when it stops.
    http_connections: set[ObjstoreConnection]
    #: Flushes outboxes once per turn and keeps the turn's budget; set by the server.
    turn: FlushScheduler
    #: The server's counts (slow clients closed); set by the server.
    tallies: ServerTallies
    #: Whether the transport is TLS (asyncio's SSL transport); set by the server.
    tls = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One attribute for all of objstore's state: websockets already sets
        # nearly 30, and past 30 CPython gives each instance a dict of its own
        # instead of sharing the attribute names (1.5 KB more per connection).
        self.ours = _State()

    @property
    def protocol_name(self) -> str:
        """What the connection carries now: ``websocket``, ``sse`` or ``http``."""
        ours = self.ours
        if ours.websocket:
            return "websocket"
        return "sse" if ours.http is not None and ours.http.streaming else "http"

    @property
    def session(self) -> ClientSession | None:
        """The session of an open WebSocket connection, once made."""
        return self.ours.session

    # -- lifecycle ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # websockets is started only for a WebSocket upgrade; see _upgrade().
        self.transport = transport  # type: ignore[assignment]
        if self.tls:
            # asyncio's TLS transport takes 512 KiB before it says it is full; the
            # plain one 64 KiB, which the bounds of HTTP mode are written for.
            self.transport.set_write_buffer_limits(_HTTP_WRITE_LIMIT)
        self.http_connections.add(self)
        self.ours.http = HttpMode(
            self.transport,
            self.loop,
            self.http_handler,
            max_body=self.max_body_size,
            timeout=self.http_timeout,
            upgrade=self._upgrade,
            ended=self._end_http,
            mark_dirty=self.turn,
            stall_timeout=self.stall_timeout,
            answers=self.repeat_answers,
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
            self.websockets_eof()
            return None
        if self.ours.http is not None:
            keep_open = self.ours.http.eof_received()
            # TLS has no half-close: asyncio ends the session on the client's
            # close_notify whatever this returns (and warns when it is True), so
            # only the answers written by now reach the client.
            return keep_open and not self.tls
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ours.stall is not None:
            self.ours.stall.cancel()
            self.ours.stall = None
        if self.ours.websocket:
            self.websockets_lost(exc)
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
        splitter = self.ours.splitter = FrameSplitter(self.max_message_size)
        if request.after:
            splitter.feed(request.after)
            self.transport.pause_reading()
        self.start_websockets(request.raw)

    def opened(self) -> asyncio.Future[None]:
        """The handshake is done: make the session; the future resolves when the connection ends.

        Frames that arrived meanwhile are handled right after this turn.
        """
        session = self.client_session()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s connected", session.address)
        self.ours.framing = _FRAMES_OURS
        splitter = self.ours.splitter
        if splitter is not None and splitter.buffered:
            self.ours.deferred = True
            self.turn.defer(self._resume_frames)
        return self.handshake_done()

    # -- WebSocket mode ----------------------------------------------------------------

    def client_session(self) -> ClientSession:
        """The session of this connection, made on first use."""
        session = self.ours.session
        if session is None:
            session = self.ours.session = self.session_factory(self)
            if self.paused:
                session.outbox.pause()
        return session

    def data_frame(self, frame: Frame) -> None:
        # websockets' parser has checked the frame, and that a fragmented
        # message stays within max_size.
        ours = self.ours
        opcode = frame.opcode
        if opcode is Opcode.CONT:
            fragments = ours.fragments
            if fragments is None:  # pragma: no cover  # websockets refuses it first
                return
            fragments.append(bytes(frame.data))
            if frame.fin:
                ours.fragments = ours.fragmented_size = None
                self._receive(b"".join(fragments), ours.fragmented_text)
            else:
                ours.fragmented_size = (ours.fragmented_size or 0) + len(frame.data)
        elif frame.fin:
            self._receive(bytes(frame.data), opcode is Opcode.TEXT)
        else:
            ours.fragments = [bytes(frame.data)]
            ours.fragmented_text = opcode is Opcode.TEXT
            ours.fragmented_size = len(frame.data)

    def pong_received(self) -> None:
        self.ours.ping_sent = None

    def _receive_frames(self, data: bytes) -> None:
        """Take bytes received on an upgraded connection (see :mod:`objstore.wssplitter`)."""
        ours = self.ours
        splitter = ours.splitter
        if splitter is None or ours.framing == _FRAMES_WEBSOCKETS:
            self.feed_websockets(data)
            return
        splitter.feed(data)
        if ours.framing == _FRAMES_HELD:
            if self.is_closing:
                ours.framing = _FRAMES_WEBSOCKETS
                self.feed_websockets(splitter.take_all())
            else:
                # The handshake is not over until opened() (websockets may still
                # be sending its answer): hold the frames until then.
                self.transport.pause_reading()
        elif not ours.deferred:
            self._handle_frames(splitter)

    def _handle_frames(self, splitter: FrameSplitter) -> None:
        """Handle the whole frames received, until none is left or flow control says stop.

        At least one message is handled per call while the socket takes data, so
        that every connection held back gets its turn after a flush.
        """
        ours = self.ours
        turn = self.turn
        outbox = self.client_session().outbox
        while self.is_open:
            if self.paused:
                # Go on once the socket drains (resume_writing): meanwhile the
                # outbox holds only the latest update per key.
                self._hold_frames()
                return
            item = splitter.next(ours.fragmented_size)
            if item is None:
                return
            kind, data = item
            if kind == FRAME:
                self.feed_websockets(data)
            elif kind == REFUSED:
                ours.framing = _FRAMES_WEBSOCKETS
                self.feed_websockets(data)
                return
            else:
                self._receive(data, kind == MESSAGE_TEXT)
                session = ours.session
                if session is not None and session.backlogged:
                    # Replies wait for the disk: read on once they have gone out.
                    self._hold_frames()
                    session.on_drained = self._backlog_drained
                    return
            if turn.spent >= TURN_BUDGET or outbox.replied >= TURN_BUDGET:
                # This turn has had its share: go on after the flush, when every
                # congested outbox knows it and conflates.
                self._hold_frames()
                turn.defer(self._resume_frames)
                return
        # Closing: websockets reads the rest, the client's answering close frame
        # included, so that the closing handshake ends without waiting for its timeout.
        ours.framing = _FRAMES_WEBSOCKETS
        self.feed_websockets(splitter.take_all())

    def _backlog_drained(self) -> None:
        self.turn.defer(self._resume_frames)

    def _hold_frames(self) -> None:
        """Stop reading and handling until _resume_frames."""
        self.ours.deferred = True
        self.transport.pause_reading()

    def _resume_frames(self) -> None:
        """Handle the frames held back, then read again unless held back anew."""
        ours = self.ours
        splitter = ours.splitter
        if not ours.deferred or splitter is None or self.paused:
            return  # resume_writing calls again once the socket drains
        ours.deferred = False
        if ours.framing == _FRAMES_OURS:
            self._handle_frames(splitter)
        if not ours.deferred and ours.stall is None:
            # Also while closing: the client's answering close frame must be read, or the
            # closing handshake waits for its timeout.
            self.transport.resume_reading()

    def _receive(self, data: bytes, text: bool) -> None:
        self.turn.spent += len(data)
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
        if self.is_open:
            self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.ours.http is not None:
            self.ours.http.pause_writing()
        if self.session is not None:
            self.session.outbox.pause()
        if self.ours.websocket and self.is_open:
            # While it cannot take our data, take none of its requests either.
            self.transport.pause_reading()
            self.ours.stall = self.loop.call_later(self.stall_timeout, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        ours = self.ours
        if ours.http is not None:
            ours.http.resume_writing()
        if ours.stall is not None:
            ours.stall.cancel()
            ours.stall = None
            if not ours.deferred:
                self.transport.resume_reading()
        if self.session is not None:
            self.session.outbox.resume()
        if ours.deferred:
            self.turn.defer(self._resume_frames)

    def send_keepalive(self, now: float, timeout: float | None) -> None:
        """Send a ping, or close the connection when the last one is unanswered after *timeout*.

        Called for every connection by one task of the server, rather than by a
        task per connection as websockets does (2 KB per connection saved).
        """
        ours = self.ours
        if not self.is_open or ours.stall is not None or ours.deferred:
            # A connection held back is not read from; the stall timeout rules.
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
        self.tallies.slow_closed += 1
        self._close_soon(
            CloseCode.POLICY_VIOLATION,
            f"too slow: nothing could be sent for {self.stall_timeout:g} seconds",
        )

    def close_soon(self, code: CloseCode, reason: str) -> None:
        """Close the connection with *code* and *reason* as soon as it can be."""
        self._close_soon(code, reason)

    def _close_soon(self, code: CloseCode, reason: str) -> None:
        if self.ours.closing is None:
            self.ours.closing = self.loop.create_task(self.close(code, reason))
