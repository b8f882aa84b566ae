"""What each connection has yet to send: batched per loop turn, latest value per key when slow.

Owns the outgoing side of one subscriber, sans I/O. While the connection keeps
up, frames are collected during one turn of the event loop and written
together (one system call for many updates) in the order they were produced.
Once its socket is congested, at most one update per key is held (the latest
replaces the older), so a subscriber that stops reading costs bounded memory;
when the socket drains, the held frames are written and it is up to date.
Replies (to get, subscribe, errors) are never dropped. An outbox is also
its connection's subscriber in the :class:`~objstore.hub.Hub`, and
:func:`deliver_to_all` is the hub's loop over them. Knows nothing of asyncio
or websockets: writing and scheduling are injected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol, cast

from .updates import Update

if TYPE_CHECKING:
    from .hub import Subscriber
    from .tallies import ServerTallies

__all__ = [
    "TURN_BUDGET",
    "CountedFanOut",
    "FlushScheduler",
    "Flushable",
    "FrameWriter",
    "Outbox",
    "deliver_rev_to_all",
    "deliver_to_all",
]


class FrameWriter(Protocol):
    """Where an outbox writes its frames: the connection's transport."""

    def write_frames(self, frames: list[bytes]) -> None:
        """Write *frames* (complete WebSocket frames) in order, without blocking."""


class Flushable(Protocol):
    """What :class:`FlushScheduler` flushes: an outbox, or an event stream."""

    def flush(self) -> None:
        """Write what was queued in this turn of the loop."""


class _Reply:
    """A unique key for a reply held while congested: replies are never conflated."""

    __slots__ = ()


class Outbox:
    """The frames one connection has yet to send; its subscriber in the hub."""

    __slots__ = ("_batch", "_held", "_mark_dirty", "_writer", "replied", "subscribed")

    def __init__(self, writer: FrameWriter, mark_dirty: Callable[[Outbox], None]) -> None:
        self._writer = writer
        self._mark_dirty = mark_dirty
        self._batch: list[bytes] | None = None  # no list while idle
        #: Frames held while congested, by key (or by a unique token for a reply).
        self._held: dict[object, bytes] | None = None
        #: The keys its connection is subscribed to, kept by the hub.
        self.subscribed: list[str] | None = None
        #: Bytes of replies queued since the last flush (see FlushScheduler).
        self.replied = 0

    @property
    def congested(self) -> bool:
        """True while the socket is not accepting more data."""
        return self._held is not None

    @property
    def held(self) -> int:
        """Number of frames held back while congested."""
        return 0 if self._held is None else len(self._held)

    def deliver(self, update: Update) -> None:
        """Queue *update*; while congested it replaces any held update of its key."""
        deliver_to_all((self,), update)

    def deliver_rev(self, update: Update) -> None:
        """Queue *update* in its revision form, as :meth:`deliver` does."""
        _queue((self,), update.key, update.rev_ws_frame)

    def reply(self, frame: bytes) -> None:
        """Queue a reply; it is sent after everything queued before it, and never dropped."""
        self.replied += len(frame)
        held = self._held
        if held is None:
            batch = self._batch
            if batch is None:
                self._batch = [frame]
                self._mark_dirty(self)
            else:
                batch.append(frame)
        else:
            held[_Reply()] = frame

    def flush(self) -> None:
        """Write the frames collected in this turn of the loop."""
        self.replied = 0
        batch = self._batch
        if batch is not None:
            self._batch = None
            self._writer.write_frames(batch)

    def pause(self) -> None:
        """The socket is congested: hold frames from now on, one update per key."""
        if self._held is None:
            self._held = {}

    def resume(self) -> None:
        """The socket drained: write what was held, latest values only."""
        held = self._held
        self._held = None
        if held:
            self.flush()
            self._writer.write_frames(list(held.values()))


def deliver_to_all(subscribers: Iterable[Subscriber], update: Update) -> None:
    """Queue *update* on every outbox of *subscribers*: the hub's loop over them.

    :meth:`Outbox.deliver` once per outbox, written out in the loop: with 50
    clients each seeing 1,500 updates a second, delivering took a quarter of
    the event loop's busy time, most of it in calls; this loop halves that.
    Subscriptions made without a request id are WebSocket ones, so every
    subscriber here is an outbox; event streams take the revision form
    (:func:`deliver_rev_to_all`).
    """
    _queue(cast("Iterable[Outbox]", subscribers), update.key, update.ws_frame)


def deliver_rev_to_all(subscribers: Iterable[Subscriber], update: Update) -> None:
    """Queue the revision form of *update* on every subscriber: the hub's loop over them.

    Outboxes are served in the loop; other subscribers (event streams) through
    their ``deliver_rev``.
    """
    _queue_rev(subscribers, update)


class CountedFanOut:
    """One server's fan-outs (:func:`deliver_to_all`, :func:`deliver_rev_to_all`) for its
    hub, counting in its :class:`~objstore.tallies.ServerTallies` the updates delivered
    and those conflated: one addition per update published, not per subscriber."""

    __slots__ = ("tallies",)

    def __init__(self, tallies: ServerTallies) -> None:
        self.tallies = tallies

    def fan_out(self, subscribers: set[Subscriber], update: Update) -> None:
        """:func:`deliver_to_all`, counted."""
        tallies = self.tallies
        tallies.delivered += len(subscribers)
        conflated = _queue(cast("Iterable[Outbox]", subscribers), update.key, update.ws_frame)
        if conflated:
            tallies.conflated += conflated

    def fan_out_rev(self, subscribers: set[Subscriber], update: Update) -> None:
        """:func:`deliver_rev_to_all`, counted (the conflation of event streams aside)."""
        tallies = self.tallies
        tallies.delivered += len(subscribers)
        conflated = _queue_rev(subscribers, update)
        if conflated:
            tallies.conflated += conflated


def _queue_rev(subscribers: Iterable[Subscriber], update: Update) -> int:
    """The revision form of *update* to every subscriber: outboxes in :func:`_queue`'s
    loop, event streams through their ``deliver_rev``; return how many were conflated."""
    outboxes: list[Outbox] = []
    for subscriber in subscribers:
        if type(subscriber) is Outbox:
            outboxes.append(subscriber)
        else:
            subscriber.deliver_rev(update)
    return _queue(outboxes, update.key, update.rev_ws_frame) if outboxes else 0


def _queue(outboxes: Iterable[Outbox], key: str, frame: bytes) -> int:
    """Queue *frame*, an update of *key*, on every one of *outboxes*; return how many
    held updates it replaced (conflated)."""
    conflated = 0
    for outbox in outboxes:
        held = outbox._held
        if held is None:
            batch = outbox._batch
            if batch is None:
                outbox._batch = [frame]
                outbox._mark_dirty(outbox)
            else:
                batch.append(frame)
        else:
            # Moved to the end: held updates stay in revision order, so a client cut
            # off midway never holds a revision past an update it did not get.
            if held.pop(key, None) is not None:
                conflated += 1
            held[key] = frame
    return conflated


#: Bytes of messages (and of their replies) handled between two flushes, after which
#: connections hold their further messages until the flush: see FlushScheduler.
TURN_BUDGET = 64 * 1024


class FlushScheduler:
    """Flushes every outbox (or event stream) that has frames once per turn of the event loop.

    One callback per turn for all connections, rather than one per connection.

    It also keeps the turn's budget. Frames queued in a turn are written only
    at its end, so a turn that handles many messages queues all their updates
    and replies at once: on uvloop, which reads a socket until it is empty in
    one turn, 4 MB of updates reached each stalled subscriber's transport
    before it could say it was full. So connections count the bytes of the
    messages they handle in :attr:`spent`, and outboxes the bytes of the replies
    they queue (``Outbox.replied``); once either passes :data:`TURN_BUDGET`, a
    connection stops (having handled at least one message), defers the rest
    (:meth:`defer`), and goes on after the flush, when congested outboxes know
    it and hold only the latest update per key. What one outbox receives between two flushes
    is so bounded by the budget plus one message (and its fan-out) per connection
    that goes on. Connections held back take turns: the one that went first in a
    turn goes last in the next.
    """

    __slots__ = ("_call_soon", "_deferred", "_dirty", "_scheduled", "spent")

    def __init__(self, call_soon: Callable[[Callable[[], None]], object]) -> None:
        self._call_soon = call_soon
        self._dirty: list[Flushable] = []
        self._deferred: list[Callable[[], None]] = []
        self._scheduled = False
        #: Bytes handled since the last flush.
        self.spent = 0

    def __call__(self, outbox: Flushable) -> None:
        """Mark *outbox* as having frames to write at the end of this turn."""
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self.flush)
        self._dirty.append(outbox)

    def defer(self, callback: Callable[[], None]) -> None:
        """Call *callback* right after the next flush (which is scheduled if need be)."""
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self.flush)
        self._deferred.append(callback)

    def flush(self) -> None:
        """Write the frames of every marked outbox, then call what was deferred."""
        self._scheduled = False
        self.spent = 0
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for outbox in dirty:
                outbox.flush()
        deferred = self._deferred
        if deferred:
            self._deferred = []
            for callback in deferred:
                callback()
            again = self._deferred
            if len(again) > 1 and again[0] is deferred[0]:
                # The first to go spent the budget and the others had one message
                # each: the next turn starts with the next one, round-robin.
                again.append(again.pop(0))
