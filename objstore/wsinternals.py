"""Every use objstore makes of websockets beyond its documented API, in one place.

Owns the base class of objstore's connections, a websockets ``ServerConnection``
with the internals it relies on behind a few named methods, and the unmasking
function websockets uses. ``tests/test_wsinternals.py`` checks each of them by
its behaviour on a real connection, and fails loudly when an upgrade of
websockets changes one. What this module relies on:

* ``ServerConnection`` is the asyncio protocol of the connection: its
  ``connection_made`` starts websockets' handling (the handshake task), and
  ``Connection.data_received``, ``eof_received`` and ``connection_lost`` feed the
  sans-I/O protocol; so a connection can start as plain HTTP and hand itself to
  websockets later (:meth:`WebsocketsConnection.start_websockets`);
* ``ServerConnection.process_event`` receives the handshake request, then every
  frame parsed, which ``Connection.process_event`` would put in the message queue
  (``recv_messages``) that objstore bypasses;
* ``Connection.pause_writing``/``resume_writing`` are the transport's flow
  control callbacks and maintain ``Connection.paused``;
* ``protocol.state`` tells whether frames may still be written,
  ``protocol.current_size`` is the size of a fragmented message in progress (None
  between messages) and ``protocol.max_message_size`` is the server's ``max_size``;
* websockets' parser reads frames from wherever the bytes it was last fed
  stopped, so feeding it whole frames only keeps it at a frame boundary;
* per-connection objects that objstore never uses can be replaced by shared
  stand-ins: the message queue, the drain waiters, the pending pings, the
  extensions, the request and response kept after the handshake;
* importing websockets imports :mod:`importlib.metadata` but reads nothing from
  it, so the entry point (``objstore/__main__.py``) answers that import with a
  stand-in and a start does not load it.

Knows nothing of objstore's sessions, HTTP mode or messages.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.protocol import CONNECTING, OPEN, Event

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover  # websockets built without its C extension
    from websockets.utils import apply_mask

__all__ = ["WebsocketsConnection", "apply_mask"]

_WEBSOCKETS_LOGGER = logging.getLogger("objstore.websockets")
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


class WebsocketsConnection(ServerConnection):
    """A websockets server connection that starts only when told, and hands data frames on.

    Subclasses implement :meth:`data_frame` (text, binary and continuation frames
    parsed by websockets) and may override :meth:`pong_received`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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

    # -- handing the connection to websockets ------------------------------------------

    def start_websockets(self, request: bytes) -> None:
        """Start websockets on this connection (its transport set) with the upgrade request."""
        ServerConnection.connection_made(self, self.transport)
        self.recv_messages = _NO_MESSAGES  # type: ignore[assignment]
        Connection.data_received(self, request)

    def feed_websockets(self, data: bytes) -> None:
        """Give received bytes to websockets' parser: whole frames, or bytes it will refuse."""
        Connection.data_received(self, data)

    def websockets_eof(self) -> None:
        """Tell websockets that the client will send nothing more."""
        Connection.eof_received(self)

    def websockets_lost(self, exc: Exception | None) -> None:
        """Tell websockets that the connection is gone; it resolves the end future."""
        if self.connection_lost_waiter.cancelled():
            # Cancelled with the handler task at shutdown; websockets sets it.
            self.connection_lost_waiter = self.loop.create_future()
        Connection.connection_lost(self, exc)

    def handshake_done(self) -> asyncio.Future[None]:
        """Let go of what only the handshake needed; return a future of the connection's end.

        Call it from the connection handler. Awaiting websockets' own future
        directly (rather than one of ours) keeps one object less per connection.
        """
        self.response = None
        self.request_rcvd = None  # type: ignore[assignment]  # awaited by the handshake only
        request = self.request
        if request is not None:
            # Empty it in place, sharing constant strings. (Replacing the request
            # itself by a shared one measured 2 KiB more per connection, oddly.)
            request.headers = _NO_HEADERS
            request.path, request.method, request.protocol = "/ws", "GET", "HTTP/1.1"
        self.pending_pings = _NO_PINGS  # objstore pings without websockets
        self.protocol.extensions = _NO_EXTENSIONS  # none are negotiated: compression is off
        return self.connection_lost_waiter

    # -- state -------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True while frames may be written: the handshake is done and closing has not begun."""
        return self.protocol.state is OPEN

    @property
    def is_closing(self) -> bool:
        """True once the closing handshake has begun, or the connection is closed."""
        state = self.protocol.state
        return state is not OPEN and state is not CONNECTING

    @property
    def fragmented_size(self) -> int | None:
        """Bytes received so far of a fragmented message in progress; None between messages."""
        return self.protocol.current_size

    @property
    def max_message_size(self) -> int | None:
        """The largest message accepted (the server's ``max_size``)."""
        return self.protocol.max_message_size

    # -- frames ------------------------------------------------------------------------

    def process_event(self, event: Event) -> None:
        if self.request is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake request
            return
        opcode = event.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
            self.data_frame(event)
            return
        if opcode is Opcode.PONG:
            self.pong_received()
        super().process_event(event)  # ping, pong, close

    def data_frame(self, frame: Frame) -> None:
        """A text, binary or continuation frame that websockets parsed (and checked)."""
        raise NotImplementedError

    def pong_received(self) -> None:
        """A pong arrived."""
