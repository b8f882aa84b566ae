"""The commands of the protocol applied to the store and the hub, for every transport.

Owns what ``get``, ``set``, ``subscribe`` and ``unsubscribe`` do: a set stores,
persists and publishes one encoded update to every subscriber. WebSocket
connections and HTTP routes both call this module, so a set behaves the same
whichever way it arrives. Knows nothing of sockets or HTTP.
"""

from __future__ import annotations

from .hub import Hub, Subscriber
from .protocol import Command, Get, Set, Subscribe, Unsubscribe, Update, encode_update
from .store import Store
from .writer import FailureCallback, WriteResult

__all__ = ["StoreService"]


class StoreService:
    """Applies commands to a :class:`~objstore.store.Store` and a :class:`~objstore.hub.Hub`."""

    def __init__(self, store: Store, hub: Hub) -> None:
        self.store = store
        self.hub = hub

    def get(self, key: str) -> bytes:
        """The reply to a get: ``{"key": K, "value": V}``, with ``null`` for a missing key."""
        return encode_update(key, self.store.get(key))

    def set(self, key: str, value: bytes, on_failure: FailureCallback | None = None) -> Update:
        """Store, persist and publish *value*; return the update.

        The update is encoded once and the same bytes go to every subscriber;
        *on_failure* hears of a failed file write.
        """
        self.store.set(key, value, on_failure)
        return self._publish(key, value)

    def set_and_wait(self, key: str, value: bytes) -> tuple[Update, WriteResult]:
        """Like :meth:`set`, and return a future of the file write too."""
        result = self.store.set_and_wait(key, value)
        return self._publish(key, value), result

    def _publish(self, key: str, value: bytes) -> Update:
        update = Update(key, value)
        self.hub.publish(update)
        return update

    def subscribe(self, subscriber: Subscriber, key: str) -> bytes | None:
        """Subscribe; return the current value as an update, or None when the key has none."""
        self.hub.subscribe(subscriber, key)
        value = self.store.get(key)
        return None if value is None else encode_update(key, value)

    def unsubscribe(self, subscriber: Subscriber, key: str) -> None:
        """Stop updates of *key* to *subscriber*."""
        self.hub.unsubscribe(subscriber, key)

    def execute(
        self,
        subscriber: Subscriber,
        command: Command,
        on_failure: FailureCallback | None = None,
    ) -> bytes | None:
        """Apply *command* from *subscriber*; return its direct reply, if it has one.

        A set has no direct reply, as in the original: the setter hears of it
        through its own subscription, if it has one, and through *on_failure*
        if its value cannot be written to disk.
        """
        if isinstance(command, Set):
            self.set(command.key, command.value, on_failure)
            return None
        if isinstance(command, Get):
            return self.get(command.key)
        if isinstance(command, Subscribe):
            return self.subscribe(subscriber, command.key)
        if isinstance(command, Unsubscribe):
            self.unsubscribe(subscriber, command.key)
            return None
        raise AssertionError(f"unknown command {command!r}")  # pragma: no cover
