"""Who is subscribed to which key, and delivery of updates to them.

Owns the subscription table. A subscriber is anything with a ``deliver``
method; the hub knows nothing of sockets or storage, so the same hub serves
WebSocket connections today and other transports later. An update is encoded
once by its publisher and the same object goes to every subscriber.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol

from .protocol import Update

__all__ = ["Hub", "Subscriber"]


class Subscriber(Hashable, Protocol):
    """Receives updates of the keys it subscribed to."""

    def deliver(self, update: Update) -> None:
        """Queue *update* for sending; must neither block nor change subscriptions."""


class Hub:
    """A subscription table: keys to subscribers and subscribers to keys."""

    def __init__(self) -> None:
        self._by_key: dict[str, set[Subscriber]] = {}
        # A list, not a set: most clients hold a few keys, and an empty set
        # costs four times a short list (10,000 idle clients hold one each).
        self._by_subscriber: dict[Subscriber, list[str]] = {}

    def subscribe(self, subscriber: Subscriber, key: str) -> None:
        """Deliver later updates of *key* to *subscriber*; subscribing twice is harmless."""
        subscribers = self._by_key.setdefault(key, set())
        if subscriber not in subscribers:
            subscribers.add(subscriber)
            self._by_subscriber.setdefault(subscriber, []).append(key)

    def unsubscribe(self, subscriber: Subscriber, key: str) -> None:
        """Stop delivering updates of *key* to *subscriber*, if it was subscribed."""
        subscribers = self._by_key.get(key)
        if subscribers is None or subscriber not in subscribers:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._by_key[key]
        keys = self._by_subscriber[subscriber]
        keys.remove(key)
        if not keys:
            del self._by_subscriber[subscriber]

    def drop(self, subscriber: Subscriber) -> None:
        """Remove every subscription of *subscriber*, as when its connection closes."""
        for key in self._by_subscriber.pop(subscriber, ()):
            subscribers = self._by_key[key]
            subscribers.discard(subscriber)
            if not subscribers:
                del self._by_key[key]

    def publish(self, update: Update) -> int:
        """Deliver *update* to every subscriber of its key; return how many there were."""
        subscribers = self._by_key.get(update.key)
        if not subscribers:
            return 0
        for subscriber in subscribers:
            subscriber.deliver(update)
        return len(subscribers)

    def subscribers(self, key: str) -> int:
        """Number of subscribers of *key*."""
        return len(self._by_key.get(key, ()))

    def keys_of(self, subscriber: Subscriber) -> frozenset[str]:
        """The keys *subscriber* is subscribed to."""
        return frozenset(self._by_subscriber.get(subscriber, ()))

    @property
    def subscriber_count(self) -> int:
        """Number of subscribers with at least one subscription."""
        return len(self._by_subscriber)
