"""The subscription table, with plain recording subscribers and no sockets."""

from __future__ import annotations

from objstore.hub import Hub, Subscriber
from objstore.protocol import Update


class Recorder:
    """A subscriber that keeps what it is given."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.subscribed: list[str] | None = None

    def deliver(self, update: Update) -> None:
        self.frames.append((update.key, update.payload))


def update(key: str, value: bytes) -> Update:
    return Update(key, value)


def test_publish_reaches_subscribers_of_the_key_only() -> None:
    """publish delivers to the key's subscribers and returns how many."""
    hub, a, b = Hub(), Recorder(), Recorder()
    hub.subscribe(a, "k")
    hub.subscribe(b, "other")
    assert hub.publish(update("k", b"1")) == 1
    assert a.frames == [("k", b'{"key":"k","value":1}')]
    assert b.frames == []


def test_subscribing_twice_delivers_once() -> None:
    """A second subscribe to the same key changes nothing."""
    hub, a = Hub(), Recorder()
    hub.subscribe(a, "k")
    hub.subscribe(a, "k")
    hub.publish(update("k", b"1"))
    assert a.frames == [("k", b'{"key":"k","value":1}')]


def test_unsubscribe_removes_empty_entries() -> None:
    """Unsubscribing the last subscriber leaves no trace of the key or subscriber."""
    hub, a = Hub(), Recorder()
    hub.subscribe(a, "k")
    hub.unsubscribe(a, "k")
    hub.unsubscribe(a, "never")  # harmless
    assert hub.subscribers("k") == 0
    assert hub.subscriber_count == 0
    assert hub.publish(update("k", b"1")) == 0


def test_drop_removes_every_subscription() -> None:
    """drop forgets all keys of a subscriber and keeps the others'."""
    hub, a, b = Hub(), Recorder(), Recorder()
    for key in ("x", "y"):
        hub.subscribe(a, key)
    hub.subscribe(b, "x")
    hub.drop(a)
    assert hub.keys_of(a) == frozenset()
    assert hub.subscribers("x") == 1
    assert hub.subscribers("y") == 0
    hub.publish(update("x", b"2"))
    assert (a.frames, b.frames) == ([], [("x", b'{"key":"x","value":2}')])


def test_fan_out_is_given_the_subscribers_of_the_key_once_per_publish() -> None:
    """A hub made with its own fan-out hands it each update and that key's subscribers."""
    calls: list[tuple[set[Subscriber], Update]] = []
    hub, a, b = Hub(fan_out=lambda subs, u: calls.append((set(subs), u))), Recorder(), Recorder()
    hub.subscribe(a, "k")
    hub.subscribe(b, "k")
    hub.subscribe(b, "other")
    sent = update("k", b"1")
    assert hub.publish(sent) == 2
    assert calls == [({a, b}, sent)]
    assert a.frames == b.frames == []  # delivery is the fan-out's
