"""Who is subscribed to which key, and delivery of updates to them.

Owns the subscription table: subscriptions to a key and to a prefix of keys,
each made in the original's form (updates ``{"key", "value"}``) or with a
request id (updates with their revision). A subscriber is anything with
``deliver`` and ``deliver_rev`` methods; the hub knows nothing of sockets or
storage, so the same hub serves WebSocket connections and Server-Sent Events.
An update is encoded once per form by its publisher and the same object goes
to every subscriber. A subscriber that several of its subscriptions cover
receives each update once, in the revision form if any of them asks for it.

Cost: while nobody holds a prefix subscription or a revision-form one, a
publish is one dictionary lookup, as in the original. Otherwise it also looks
up the key's prefix of each distinct length that some subscription has.
Memory: a plain key subscription is a list entry on the subscriber and a set
entry here; the other kinds add an entry in a table of the hub.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Protocol

from .updates import Update

__all__ = ["FanOut", "Hub", "Subscriber", "deliver_each", "deliver_rev_each"]


class Subscriber(Hashable, Protocol):
    """Receives updates of the keys it subscribed to."""

    #: The keys it is subscribed to, kept by the hub; None when there are none.
    #: Held by the subscriber rather than in a table of the hub: one dict entry
    #: less per connection (10,000 idle clients hold one key each).
    subscribed: list[str] | None

    def deliver(self, update: Update) -> None:
        """Queue *update* for sending; must neither block nor change subscriptions."""

    def deliver_rev(self, update: Update) -> None:
        """Queue *update* in its revision form, as :meth:`deliver` does."""


#: Delivers one update to every subscriber of its key.
FanOut = Callable[[set[Subscriber], Update], None]


def deliver_each(subscribers: set[Subscriber], update: Update) -> None:
    """The plain fan-out: each subscriber's ``deliver``."""
    for subscriber in subscribers:
        subscriber.deliver(update)


def deliver_rev_each(subscribers: set[Subscriber], update: Update) -> None:
    """The fan-out of the revision form: each subscriber's ``deliver_rev``."""
    for subscriber in subscribers:
        subscriber.deliver_rev(update)


# The kinds of subscription kept in Hub._extended (plain key ones are on the subscriber).
_REV_KEY = 1
_PREFIX = 2
_REV_PREFIX = 3


class Hub:
    """A subscription table: keys to subscribers and subscribers to keys.

    *fan_out* delivers an update to the subscribers of its key; a transport
    whose subscribers are all of one kind can pass a loop written for them.
    """

    def __init__(
        self, fan_out: FanOut = deliver_each, fan_out_rev: FanOut = deliver_rev_each
    ) -> None:
        self._by_key: dict[str, set[Subscriber]] = {}
        self._subscriber_count = 0
        self._fan_out = fan_out
        self._fan_out_rev = fan_out_rev
        #: The other kinds: (kind, key or prefix) -> subscribers.
        self._tables: dict[tuple[int, str], set[Subscriber]] = {}
        #: Each subscriber's subscriptions of the other kinds.
        self._extended: dict[Subscriber, set[tuple[int, str]]] = {}
        #: How many prefixes of each length are subscribed to.
        self._prefix_lengths: dict[int, int] = {}

    def subscribe(self, subscriber: Subscriber, key: str) -> None:
        """Deliver later updates of *key* to *subscriber*; subscribing twice is harmless."""
        subscribers = self._by_key.setdefault(key, set())
        if subscriber not in subscribers:
            subscribers.add(subscriber)
            # A list, not a set: clients hold a few keys, and a set costs four
            # times a short list.
            if subscriber.subscribed is None:
                subscriber.subscribed = [key]
                if not self._extended or subscriber not in self._extended:
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
            if not self._extended or subscriber not in self._extended:
                self._subscriber_count -= 1

    def drop(self, subscriber: Subscriber) -> None:
        """Remove every subscription of *subscriber*, as when its connection closes."""
        if self._extended:
            for kind, name in list(self._extended.get(subscriber, ())):
                self._remove(subscriber, kind, name)
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
        if self._extended:
            return self._publish_all(update, subscribers)
        if not subscribers:
            return 0
        self._fan_out(subscribers, update)
        return len(subscribers)

    def _publish_all(self, update: Update, plain: set[Subscriber] | None) -> int:
        """Deliver to key and prefix subscribers of both forms, each subscriber once."""
        key = update.key
        tables = self._tables
        rev = set(tables.get((_REV_KEY, key), ()))
        others = set(plain) if plain else set()
        size = len(key)
        for length in self._prefix_lengths:
            if length <= size:
                prefix = key[:length]
                found = tables.get((_REV_PREFIX, prefix))
                if found:
                    rev |= found
                found = tables.get((_PREFIX, prefix))
                if found:
                    others |= found
        if rev:
            others -= rev
            self._fan_out_rev(rev, update)
        if others:
            self._fan_out(others, update)
        return len(rev) + len(others)

    # -- subscriptions with an id, and to prefixes ---------------------------------------

    def subscribe_rev(self, subscriber: Subscriber, key: str) -> None:
        """Deliver later changes of *key* to *subscriber* in the revision form."""
        self._add(subscriber, _REV_KEY, key)

    def subscribe_prefix(self, subscriber: Subscriber, prefix: str, rev_form: bool) -> None:
        """Deliver later changes of every key starting with *prefix* to *subscriber*."""
        self._add(subscriber, _REV_PREFIX if rev_form else _PREFIX, prefix)

    def unsubscribe_any(self, subscriber: Subscriber, key: str) -> bool:
        """End *subscriber*'s subscriptions to *key*, of either form; True if it had one."""
        had = key in (subscriber.subscribed or ())
        self.unsubscribe(subscriber, key)
        return self._remove(subscriber, _REV_KEY, key) or had

    def unsubscribe_prefix(self, subscriber: Subscriber, prefix: str) -> bool:
        """End *subscriber*'s subscriptions to exactly *prefix*; True if it had one."""
        plain = self._remove(subscriber, _PREFIX, prefix)
        return self._remove(subscriber, _REV_PREFIX, prefix) or plain

    def prefixes_of(self, subscriber: Subscriber) -> int:
        """Number of prefix subscriptions *subscriber* holds."""
        return sum(1 for kind, _ in self._extended.get(subscriber, ()) if kind != _REV_KEY)

    def _add(self, subscriber: Subscriber, kind: int, name: str) -> None:
        subscribers = self._tables.setdefault((kind, name), set())
        if subscriber in subscribers:
            return
        subscribers.add(subscriber)
        if kind != _REV_KEY and len(subscribers) == 1:
            size = len(name)
            self._prefix_lengths[size] = self._prefix_lengths.get(size, 0) + 1
        mine = self._extended.get(subscriber)
        if mine is None:
            mine = self._extended[subscriber] = set()
            if subscriber.subscribed is None:
                self._subscriber_count += 1
        mine.add((kind, name))

    def _remove(self, subscriber: Subscriber, kind: int, name: str) -> bool:
        subscribers = self._tables.get((kind, name))
        if subscribers is None or subscriber not in subscribers:
            return False
        subscribers.discard(subscriber)
        if not subscribers:
            del self._tables[(kind, name)]
            if kind != _REV_KEY:
                size = len(name)
                left = self._prefix_lengths[size] - 1
                if left:
                    self._prefix_lengths[size] = left
                else:
                    del self._prefix_lengths[size]
        mine = self._extended[subscriber]
        mine.discard((kind, name))
        if not mine:
            del self._extended[subscriber]
            if subscriber.subscribed is None:
                self._subscriber_count -= 1
        return True

    def subscribers(self, key: str) -> int:
        """Number of subscribers of *key* itself (prefix subscriptions aside), of either form."""
        plain = self._by_key.get(key, set())
        rev = self._tables.get((_REV_KEY, key))
        return len(plain | rev) if rev else len(plain)

    def keys_of(self, subscriber: Subscriber) -> frozenset[str]:
        """The keys *subscriber* is subscribed to."""
        return frozenset(subscriber.subscribed or ())

    @property
    def subscriber_count(self) -> int:
        """Number of subscribers with at least one subscription."""
        return self._subscriber_count

    def subscription_counts(self) -> tuple[int, int]:
        """Numbers of subscriptions to a key and to a prefix, of either form (for metrics:
        counted when asked, linear in the keys and prefixes subscribed to)."""
        keys = sum(map(len, self._by_key.values()))
        prefixes = 0
        for (kind, _), subscribers in self._tables.items():
            if kind == _REV_KEY:
                keys += len(subscribers)
            else:
                prefixes += len(subscribers)
        return keys, prefixes
