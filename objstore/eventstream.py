"""Server-Sent Events for one subscriber, sans I/O: updates in, ``text/event-stream`` out.

Owns the event format (``id:``, ``event:`` and ``data:`` lines, the ``: ping``
comment), what a stream holds while its client does not read, its heartbeat
and its stall deadline, and the one call of its ``on_close``. An
:class:`EventStream` is a subscriber of the :class:`~objstore.hub.Hub`. Knows
nothing of asyncio, HTTP, routes or the store: the transport it writes to and
the turn's flush are given when the connection starts it, and times are plain
numbers given by the caller, as in :class:`~objstore.http11.KeepAlive`.

Memory: while its client keeps up, a stream holds the events of one turn of
the loop (written in one write at its end). Before it is started, and while
its socket is congested, it holds at most one update per key (the latest,
formatted: its key and value plus about 60 bytes), plus every other event queued by
:meth:`EventStream.send` in order (a route sends a few: ``reset``, ``ready``).
So a stream of a key subscription holds at most one update; of a prefix, one
per matching key (its current values included). Past that, the transport's buffer up to its
high-water mark (64 KiB on asyncio and uvloop) plus the one write that passed
it. A stream itself is one object of 12 slots (128 bytes); with its timer and
its hub entry, an idle stream's connection costs about 600 bytes more than an
idle kept-alive one. A congested stream is closed after the stall timeout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .permissions import EVERYTHING, Grant

if TYPE_CHECKING:
    from .updates import Update

__all__ = ["HEARTBEAT", "PING", "EventStream", "StreamTransport", "format_event"]

#: Seconds between heartbeats when nothing else was sent.
HEARTBEAT = 15.0
#: The heartbeat: a comment, which ``EventSource`` ignores, to keep proxies from
#: closing an idle stream.
PING = b": ping\n\n"


class StreamTransport(Protocol):
    """Where a stream writes: the connection's transport."""

    def write(self, data: bytes, /) -> None:
        """Write *data* without blocking."""

    def close(self) -> None:
        """Close once what was written is sent."""

    def abort(self) -> None:
        """Close at once, dropping what was not sent."""


def format_event(event: str, data: bytes, id: int | None = None) -> bytes:
    """One event in the ``text/event-stream`` format.

    *data* may hold line breaks (LF, CR or CRLF): each line becomes a ``data:``
    line, so that a client reads *data* back with LF between the lines. Raises
    ValueError for an event name that is empty or holds a line break.
    """
    if not event or "\n" in event or "\r" in event:
        raise ValueError(f"invalid event name: {event!r}; use a non-empty name on one line")
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    head = b"event: %s\n" % event.encode("utf-8")
    if id is not None:
        head = b"id: %d\n" % id + head
    return head + b"".join([b"data: " + line + b"\n" for line in lines]) + b"\n"


class _Event:
    """A unique key for an event other than an update: such events are never conflated."""

    __slots__ = ()


class EventStream:
    """The events one ``text/event-stream`` response has yet to send; a hub subscriber.

    Made by a route, which subscribes it, queues what the client must see first
    and sets :attr:`on_close`; started by the connection once the response's
    head is written. Until then, events wait as they do while congested. From
    the moment the response is returned, the connection sees that
    :attr:`on_close` is called; a route that awaits anything between making a
    stream and returning it must close it if it is cancelled (the connection
    cancels an answer being made when its client leaves).

    Each update is the event ``update`` with the update's revision as its id and
    its revision form as data (``Update.rev_payload``). While the stream is not
    started or its socket is congested, a newer update of a key replaces the
    one held and goes last: the held updates stay in revision order, so a
    client that reconnects from the last id it saw (``Last-Event-ID``) misses
    nothing, even when the connection breaks midway through a write.

    Heartbeats: the stream ticks every :attr:`heartbeat` seconds and writes
    :data:`PING` on a tick when nothing was written since the tick before.
    Stall: a stream whose socket has not drained for the stall timeout is
    aborted. Either way, and whoever ends it, :attr:`on_close` is called once.
    """

    __slots__ = (
        "__weakref__",
        "_batch",
        "_closed",
        "_mark_dirty",
        "_next_tick",
        "_paused_since",
        "_pending",
        "_stall_timeout",
        "_transport",
        "_wrote",
        "grant",
        "heartbeat",
        "on_close",
        "subscribed",
    )

    def __init__(self, *, heartbeat: float = HEARTBEAT) -> None:
        #: The keys it is subscribed to, kept by the hub.
        self.subscribed: list[str] | None = None
        #: Called once when the stream ends, for any reason: drop it from the hub there.
        self.on_close: Callable[[], None] | None = None
        #: Seconds between heartbeat ticks.
        self.heartbeat = heartbeat
        #: What its client may read; the route sets it.
        self.grant: Grant = EVERYTHING
        self._transport: StreamTransport | None = None
        self._mark_dirty: Callable[[EventStream], None] | None = None
        #: Events of this turn, in order, while the socket takes data.
        self._batch: list[bytes] | None = None
        #: Events held until started and while congested: updates by key, others
        #: by a unique token. Not named ``_held``: see outbox.deliver_to_all.
        self._pending: dict[object, bytes] | None = {}
        self._paused_since: float | None = None
        self._stall_timeout = math.inf
        self._next_tick = math.inf
        #: Whether anything was written since the last tick.
        self._wrote = False
        self._closed = False

    # -- what a route and the hub do -----------------------------------------------------

    def deliver(self, update: Update) -> None:
        """Queue *update* as an ``update`` event whose id is its revision."""
        self._queue_update(
            update.key, b"id: %d\nevent: update\ndata: %s\n\n" % (update.rev, update.rev_payload)
        )

    #: Streams always send the revision form.
    deliver_rev = deliver

    def send(self, event: str, data: bytes, id: int | None = None) -> None:
        """Queue an event other than an update (``reset``, ``ready``); never conflated."""
        if self._closed:
            return
        formatted = format_event(event, data, id)
        pending = self._pending
        if pending is None:
            self._append(formatted)
        else:
            pending[_Event()] = formatted

    def close(self) -> None:
        """End the stream: write what is queued, then close the connection.

        A congested connection is aborted instead (its client takes nothing).
        Calls :attr:`on_close`. Closing twice is harmless.
        """
        if self._closed:
            return
        transport = self._transport
        if transport is not None:
            if self._paused_since is None:
                self.flush()
                transport.close()
            else:
                transport.abort()
        self._finish()

    def permissions_changed(self, grant: Grant | None) -> None:
        """The rules changed what its client may read: end the stream (the browser's
        EventSource reconnects, under the new rules)."""
        self.close()

    @property
    def closed(self) -> bool:
        """Whether the stream has ended."""
        return self._closed

    @property
    def congested(self) -> bool:
        """Whether its socket is not taking data (updates are conflated meanwhile)."""
        return self._paused_since is not None

    @property
    def held(self) -> int:
        """Number of events held until started or while congested."""
        return 0 if self._pending is None else len(self._pending)

    # -- what the connection does ------------------------------------------------------

    def start(
        self,
        transport: StreamTransport,
        mark_dirty: Callable[[EventStream], None],
        *,
        stall_timeout: float,
        now: float,
    ) -> None:
        """Write to *transport* from now on; *mark_dirty* flushes the stream at the turn's end."""
        if self._closed:
            transport.close()
            return
        self._transport = transport
        self._mark_dirty = mark_dirty
        self._stall_timeout = stall_timeout
        self._next_tick = now + self.heartbeat
        pending = self._pending
        self._pending = None
        if pending:
            self._batch = list(pending.values())
            mark_dirty(self)

    def flush(self) -> None:
        """Write the events of this turn in one write."""
        batch = self._batch
        if batch is None:
            return
        self._batch = None
        assert self._transport is not None  # a batch is made only once started
        self._transport.write(batch[0] if len(batch) == 1 else b"".join(batch))
        self._wrote = True

    def pause_writing(self, now: float) -> None:
        """The socket is congested: hold one update per key from now on."""
        if self._paused_since is None:
            self._paused_since = now
            if self._pending is None and not self._closed:
                self._pending = {}

    def resume_writing(self, now: float) -> None:
        """The socket drained: write what was held."""
        self._paused_since = None
        pending = self._pending
        if pending is None or self._transport is None:
            return
        self._pending = None
        if pending:
            self.flush()
            self._transport.write(b"".join(pending.values()))
            self._wrote = True

    @property
    def deadline(self) -> float | None:
        """When :meth:`expire` has something to do; None once ended or before started."""
        if self._closed or self._transport is None:
            return None
        paused = self._paused_since
        if paused is None:
            return self._next_tick
        return min(self._next_tick, paused + self._stall_timeout)

    def expire(self, now: float) -> None:
        """Abort a stalled stream, or tick: a heartbeat if nothing was written since the last."""
        transport = self._transport
        if self._closed or transport is None:
            return
        paused = self._paused_since
        if paused is not None and now >= paused + self._stall_timeout:
            transport.abort()
            self._finish()
            return
        if now >= self._next_tick:
            if not self._wrote and paused is None and self._batch is None:
                transport.write(PING)
            self._wrote = False
            self._next_tick = now + self.heartbeat

    def lost(self) -> None:
        """The connection is gone: the stream ends (calls :attr:`on_close`)."""
        if not self._closed:
            self._finish()

    # -- internals ---------------------------------------------------------------------

    def _queue_update(self, key: str, event: bytes) -> None:
        if self._closed:
            return
        pending = self._pending
        if pending is None:
            self._append(event)
        else:
            # The newer goes last, so that held updates stay in revision order.
            pending.pop(key, None)
            pending[key] = event

    def _append(self, event: bytes) -> None:
        batch = self._batch
        if batch is None:
            self._batch = [event]
            assert self._mark_dirty is not None  # no pending dict means started
            self._mark_dirty(self)
        else:
            batch.append(event)

    def _finish(self) -> None:
        self._closed = True
        self._batch = None
        self._pending = None
        on_close = self.on_close
        self.on_close = None
        if on_close is not None:
            on_close()
