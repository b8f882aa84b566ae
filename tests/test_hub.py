"""The subscription table, with plain recording subscribers and no sockets."""

from __future__ import annotations

from objstore.hub import Hub, Subscriber
from objstore.protocol import ExpiredUpdate, Update


class Recorder:
    """A subscriber that keeps what it is given."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.subscribed: list[str] | None = None

    def deliver(self, update: Update) -> None:
        self.frames.append((update.key, update.payload))

    def deliver_rev(self, update: Update) -> None:
        self.frames.append((update.key, update.rev_payload))


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


def test_prefix_subscriptions_receive_matching_keys_only() -> None:
    """A prefix covers every key that starts with it, including keys made later."""
    hub, a = Hub(), Recorder()
    hub.subscribe_prefix(a, "p/", rev_form=False)
    hub.publish(Update("p/1", b"1", 5))
    hub.publish(Update("q/1", b"1", 6))
    hub.publish(Update("p", b"1", 7))
    assert a.frames == [("p/1", b'{"key":"p/1","value":1}')]


def test_empty_prefix_matches_every_key() -> None:
    """The prefix "" covers the whole store."""
    hub, a = Hub(), Recorder()
    hub.subscribe_prefix(a, "", rev_form=True)
    hub.publish(Update("x", b"1", 3))
    assert a.frames == [("x", b'{"key":"x","value":1,"rev":3}')]


def test_a_key_covered_several_times_is_delivered_once_in_the_revision_form() -> None:
    """Key and prefix subscriptions of one subscriber give one update; the id form wins."""
    hub, a = Hub(), Recorder()
    hub.subscribe(a, "p/1")
    hub.subscribe_prefix(a, "p/", rev_form=False)
    hub.subscribe_prefix(a, "p", rev_form=True)
    assert hub.publish(Update("p/1", b"2", 9)) == 1
    assert a.frames == [("p/1", b'{"key":"p/1","value":2,"rev":9}')]


def test_deletions_in_both_forms() -> None:
    """A deletion is null in the original form, and marked deleted (and expired) with revs."""
    hub, plain, rev = Hub(), Recorder(), Recorder()
    hub.subscribe(plain, "k")
    hub.subscribe_rev(rev, "k")
    hub.publish(ExpiredUpdate("k", 4))
    assert plain.frames == [("k", b'{"key":"k","value":null}')]
    assert rev.frames == [("k", b'{"key":"k","value":null,"rev":4,"deleted":true,"expired":true}')]


def test_unsubscribe_prefix_ends_only_that_prefix() -> None:
    """Ending one prefix leaves key subscriptions and other prefixes in place."""
    hub, a = Hub(), Recorder()
    hub.subscribe(a, "p/1")
    hub.subscribe_prefix(a, "p/", rev_form=True)
    hub.subscribe_prefix(a, "p", rev_form=True)
    assert hub.unsubscribe_prefix(a, "p/") is True
    assert hub.unsubscribe_prefix(a, "p/") is False
    assert hub.prefixes_of(a) == 1
    hub.unsubscribe_prefix(a, "p")
    hub.publish(Update("p/1", b"1", 2))
    assert a.frames == [("p/1", b'{"key":"p/1","value":1}')]


def test_drop_forgets_every_kind_of_subscription() -> None:
    """A closed connection's key, id-form and prefix subscriptions all go."""
    hub, a = Hub(), Recorder()
    hub.subscribe(a, "k")
    hub.subscribe_rev(a, "j")
    hub.subscribe_prefix(a, "p", rev_form=False)
    assert hub.subscriber_count == 1
    hub.drop(a)
    assert hub.subscriber_count == 0
    for key in ("k", "j", "p1"):
        assert hub.publish(Update(key, b"1", 1)) == 0
    assert a.frames == []


def test_subscriber_count_counts_each_subscriber_once() -> None:
    """A subscriber with several kinds of subscription counts once, until it has none."""
    hub, a = Hub(), Recorder()
    hub.subscribe_rev(a, "j")
    hub.subscribe(a, "k")
    assert hub.subscriber_count == 1
    hub.unsubscribe_any(a, "j")
    assert hub.subscriber_count == 1
    hub.unsubscribe(a, "k")
    assert hub.subscriber_count == 0
