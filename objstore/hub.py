"""Who is subscribed to which key, and delivery of updates to them.

Owns the subscription table. A subscriber is anything with a ``deliver``
method; the hub knows nothing of sockets or storage, so the same hub serves
WebSocket connections today and other transports later. An update is encoded
once by its publisher and the same object goes to every subscriber.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Protocol

from .protocol import Update

__all__ = ["FanOut", "Hub", "Subscriber", "deliver_each"]


class Subscriber(Hashable, Protocol):
    """Receives updates of the keys it subscribed to."""

    #: The keys it is subscribed to, kept by the hub; None when there are none.
    #: Held by the subscriber rather than in a table of the hub: one dict entry
    #: less per connection (10,000 idle clients hold one key each).
    subscribed: list[str] | None

    def deliver(self, update: Update) -> None:
        """Queue *update* for sending; must neither block nor change subscriptions."""


#: Delivers one update to every subscriber of its key.
FanOut = Callable[[set[Subscriber], Update], None]


def deliver_each(subscribers: set[Subscriber], update: Update) -> None:
    """The plain fan-out: each subscriber's ``deliver``."""
    for subscriber in subscribers:
        subscriber.deliver(update)


class Hub:
    """A subscription table: keys to subscribers and subscribers to keys.

    *fan_out* delivers an update to the subscribers of its key; a transport
    whose subscribers are all of one kind can pass a loop written for them.
    """

    def __init__(self, fan_out: FanOut = deliver_each) -> None:
        self._by_key: dict[str, set[Subscriber]] = {}
        self._subscriber_count = 0
        self._fan_out = fan_out

    def subscribe(self, subscriber: Subscriber, key: str) -> None:
        """Deliver later updates of *key* to *subscriber*; subscribing twice is harmless."""
        subscribers = self._by_key.setdefault(key, set())
        if subscriber not in subscribers:
            subscribers.add(subscriber)
            # A list, not a set: clients hold a few keys, and a set costs four
            # times a short list.
            if subscriber.subscribed is None:
                subscriber.subscribed = [key]
                self._subscriber_count += 1
            else:
                subscriber.subscribed.append(key)

    def unsubscribe(self, subscriber: Subscriber, key: str) -> None:
        """Stop delivering updates of *key* to *subscriber*, if it was subscribed."""
        subscribers = self._by_key.get(key)
        if subscribers is None or subscriber not in subscribers:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._by_key[key]
        keys = subscriber.subscribed
        assert keys is not None
        keys.remove(key)
        if not keys:
            subscriber.subscribed = None
            self._subscriber_count -= 1

    def drop(self, subscriber: Subscriber) -> None:
        """Remove every subscription of *subscriber*, as when its connection closes."""
        keys = subscriber.subscribed
        if keys is None:
            return
        subscriber.subscribed = None
        self._subscriber_count -= 1
        for key in keys:
            subscribers = self._by_key[key]
            subscribers.discard(subscriber)
            if not subscribers:
                del self._by_key[key]

    def publish(self, update: Update) -> int:
        """Deliver *update* to every subscriber of its key; return how many there were."""
        subscribers = self._by_key.get(update.key)
        if not subscribers:
            return 0
        self._fan_out(subscribers, update)
        return len(subscribers)

    def subscribers(self, key: str) -> int:
        """Number of subscribers of *key*."""
        return len(self._by_key.get(key, ()))

    def keys_of(self, subscriber: Subscriber) -> frozenset[str]:
        """The keys *subscriber* is subscribed to."""
        return frozenset(subscriber.subscribed or ())

    @property
    def subscriber_count(self) -> int:
        """Number of subscribers with at least one subscription."""
        return self._subscriber_count
