"""The client's sans-I/O core and error tree, without sockets or a loop."""

from __future__ import annotations

import json
import ssl
from typing import Any

import pytest

from objstore.client import (
    Change,
    ConflictError,
    Delete,
    Incr,
    InvalidKeyError,
    InvalidMessageError,
    InvalidValueError,
    ObjstoreError,
    Op,
    Patch,
    Set,
    TooLargeError,
)
from objstore.client._core import (
    MAX_PENDING,
    Link,
    WatchState,
    backoff_delay,
    check_url,
    decode_batch,
)
from objstore.client.errors import error_from_reply


def update(key: str, rev: int, value: Any = 1, **extra: Any) -> str:
    return json.dumps({"key": key, "value": value, "rev": rev, **extra})


def drain(watch: WatchState) -> list[Change]:
    changes = []
    while (change := watch.pop()) is not None:
        changes.append(change)
    return changes


def subscribed(prefix: str = "p/", since: int | None = None) -> tuple[Link[str], WatchState]:
    """A link with one prefix watch whose subscription was acknowledged at revision 10."""
    watch = WatchState(prefix=prefix, since=since)
    link = Link[str]([watch])
    link.subscribe(watch)
    link.receive(json.dumps({"id": 1, "ok": True, "rev": 10}))
    drain(watch)
    return link, watch


def test_ops_spell_the_protocol() -> None:
    """Batch ops become the protocol's messages, optional fields only when given."""
    assert Set("a", 1, if_rev=0, ephemeral=True).message() == {
        "action": "set",
        "key": "a",
        "value": 1,
        "ifRev": 0,
        "ephemeral": True,
    }
    assert Delete("b", if_rev=3).message() == {"action": "delete", "key": "b", "ifRev": 3}
    assert Patch("c", {"x": None}, ttl=2.5).message() == {
        "action": "patch",
        "key": "c",
        "value": {"x": None},
        "ttl": 2.5,
    }
    assert Incr("n").message() == {"action": "incr", "key": "n", "by": 1}


def test_requests_count_ids_up_from_one() -> None:
    """Each request of a connection gets the next integer id."""
    link = Link[str]([])
    first = json.loads(link.request({"action": "get", "key": "a"}, dict, "t1"))
    second = json.loads(link.request({"action": "get", "key": "b"}, dict, "t2"))
    assert (first["id"], second["id"]) == (1, 2)


def test_a_value_that_is_not_json_is_refused_before_sending() -> None:
    """NaN cannot be sent: InvalidValueError, and no id is used up."""
    link = Link[str]([])
    with pytest.raises(InvalidValueError, match="invalid value"):
        link.request({"action": "set", "key": "a", "value": float("nan")}, dict, "t")
    assert json.loads(link.request({"action": "get", "key": "a"}, dict, "t"))["id"] == 1


def test_a_reply_completes_its_request() -> None:
    """The reply with a request's id completes its token with the decoded result."""
    link = Link[str]([])
    link.request({"action": "get", "key": "a"}, lambda reply: reply["rev"], "token")
    assert link.receive('{"id":1,"ok":true,"key":"a","value":2,"rev":7}') == (
        [("token", 7, None)],
        set(),
    )


def test_an_error_reply_becomes_the_error_of_its_code() -> None:
    """A conflict reply fails the request with a ConflictError carrying rev and value."""
    link = Link[str]([])
    link.request({"action": "set", "key": "a", "value": 1, "ifRev": 1}, dict, "token")
    (completed,), _ = link.receive(
        '{"id":1,"error":"conflict: key \\"a\\" is at revision 4, not 1","code":"conflict",'
        '"rev":4,"value":"v"}'
    )
    token, result, error = completed
    assert isinstance(error, ConflictError)
    assert (token, result, error.code, error.rev, error.value, error.op) == (
        "token",
        None,
        "conflict",
        4,
        "v",
        None,
    )


def test_error_codes_map_to_classes() -> None:
    """Each protocol code has its class; a batch error keeps its op index."""
    error = error_from_reply({"error": "too many", "code": "too_large", "op": 3})
    assert type(error) is TooLargeError
    assert (error.message, error.code, error.op) == ("too many", "too_large", 3)
    assert type(error_from_reply({"error": "x", "code": "invalid_key"})) is InvalidKeyError
    assert type(error_from_reply({"error": "x", "code": "brand_new"})) is ObjstoreError


def test_batch_results_are_what_each_op_returns_alone() -> None:
    """A batch reply decodes to rev, deleted and values, per op."""
    ops: list[Op] = [Set("a", 1), Delete("b"), Incr("n", 2), Patch("d", {"x": 1})]
    reply = {
        "results": [
            {"rev": 5},
            {"rev": 6, "deleted": True},
            {"rev": 7, "value": 2},
            {"rev": 8, "value": {"x": 1}},
        ]
    }
    assert decode_batch(ops)(reply) == [5, True, 2, {"x": 1}]


def test_a_lost_link_hands_back_every_waiting_token() -> None:
    """Requests in flight when the connection is lost are all returned, for failing."""
    link = Link[str]([])
    link.request({"action": "get", "key": "a"}, dict, "t1")
    link.request({"action": "get", "key": "b"}, dict, "t2")
    assert link.lose() == ["t1", "t2"]
    assert link.receive('{"id":1,"ok":true,"key":"a","value":null,"rev":0}') == ([], set())


def test_a_snapshot_is_delivered_in_revision_order_then_ready() -> None:
    """A fresh subscription's updates are held until its reply, then come with ready."""
    watch = WatchState(prefix="p/")
    link = Link[str]([watch])
    assert json.loads(link.subscribe(watch)) == {"action": "subscribe", "prefix": "p/", "id": 1}
    link.receive(update("p/a", 3))
    link.receive(update("p/b", 5, deleted=True, value=None))
    assert watch.pending() == 0
    link.receive('{"id":1,"ok":true,"rev":9}')
    assert drain(watch) == [
        Change("update", "p/a", 1, 3),
        Change("update", "p/b", None, 5, deleted=True),
        Change("ready", rev=9),
    ]


def test_updates_held_during_a_subscription_keep_each_keys_latest() -> None:
    """A live update seen through another subscription before the snapshot does not hide it."""
    watch = WatchState(prefix="p/")
    link = Link[str]([watch])
    link.subscribe(watch)
    link.receive(update("p/x", 50))
    link.receive(update("p/y", 30))
    link.receive(update("p/x", 50))
    link.receive('{"id":1,"ok":true,"rev":50}')
    assert [(c.key, c.rev) for c in drain(watch)] == [("p/y", 30), ("p/x", 50), (None, 50)]


def test_live_updates_outside_the_watch_are_ignored() -> None:
    """An update of a key the watch does not cover is not queued."""
    link, watch = subscribed("p/")
    link.receive(update("q/a", 11))
    assert watch.pending() == 0


def test_a_repeated_update_is_dropped() -> None:
    """An update at or below the highest revision delivered is not delivered again."""
    link, watch = subscribed()
    link.receive(update("p/a", 11))
    link.receive(update("p/a", 11))
    link.receive(update("p/b", 8))
    assert [c.rev for c in drain(watch)] == [11]


def test_resubscription_asks_since_the_highest_revision() -> None:
    """After a lost link, the watch resubscribes since the highest revision it delivered."""
    link, watch = subscribed()
    link.receive(update("p/a", 12))
    link.lose()
    relink = Link[str]([watch])
    assert json.loads(relink.subscribe(watch)) == {
        "action": "subscribe",
        "prefix": "p/",
        "since": 12,
        "id": 1,
    }


def test_an_empty_watch_resumes_from_its_ready_revision() -> None:
    """A watch that delivered nothing resumes since the revision its ready reply gave."""
    _, watch = subscribed()
    assert watch.subscribe_message() == {"action": "subscribe", "prefix": "p/", "since": 10}


def test_a_reset_is_an_explicit_change_and_lowers_the_bar() -> None:
    """A reset message gives a reset change; the full state then follows, old revisions too."""
    link, watch = subscribed()
    link.receive(update("p/a", 12))
    drain(watch)
    link.lose()
    relink = Link[str]([watch])
    relink.subscribe(watch)
    relink.receive('{"reset":true,"prefix":"p/"}')
    relink.receive(update("p/old", 4))
    relink.receive('{"id":1,"ok":true,"rev":13,"reset":true}')
    assert drain(watch) == [
        Change("reset"),
        Change("update", "p/old", 1, 4),
        Change("ready", rev=13),
    ]


def test_a_slow_reader_queue_conflates_by_key_past_its_bound() -> None:
    """Past MAX_PENDING queued changes, a key's new update replaces its queued one."""
    link, watch = subscribed()
    for rev in range(11, 11 + MAX_PENDING):
        link.receive(update(f"p/{rev}", rev))
    last = 10 + MAX_PENDING
    link.receive(update("p/11", last + 1, value="new"))
    assert watch.pending() == MAX_PENDING
    changes = drain(watch)
    assert (changes[0].key, changes[-1].key, changes[-1].value) == ("p/12", "p/11", "new")


def test_a_failed_subscription_ends_the_watch() -> None:
    """A subscribe error reply becomes the watch's error."""
    watch = WatchState(key="k")
    link = Link[str]([watch])
    link.subscribe(watch)
    link.receive('{"id":1,"error":"invalid key: too long","code":"invalid_key"}')
    assert isinstance(watch.error, InvalidKeyError)


def test_a_malformed_subscribe_reply_ends_the_watch() -> None:
    """A subscribe reply without a revision fails the watch instead of the reader."""
    watch = WatchState(key="k")
    link = Link[str]([watch])
    link.subscribe(watch)
    link.receive('{"id":1,"ok":true}')
    assert isinstance(watch.error, InvalidMessageError)


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    """Full jitter: each delay is within [0, min(max, min * 2**attempt)]."""
    for attempt, cap in [(0, 0.1), (3, 0.8), (30, 10.0)]:
        delays = [backoff_delay(attempt, 0.1, 10.0) for _ in range(200)]
        assert all(0 <= delay <= cap for delay in delays)
        assert max(delays) > cap / 2


def test_only_websocket_urls_are_taken() -> None:
    """An http:// url is refused with a sentence naming it."""
    with pytest.raises(ValueError, match=r"invalid url: 'http://h:1/ws'; give a ws://"):
        check_url("http://h:1/ws")


def test_check_url_refuses_ssl_with_a_plain_url() -> None:
    """An SSLContext with a ws:// url is a mistake said before connecting."""
    with pytest.raises(ValueError, match="ssl is given") as refused:
        check_url("ws://h:1/ws", ssl.create_default_context())
    assert str(refused.value) == (
        "ssl is given for 'ws://h:1/ws', which does not use TLS; give a wss:// url, or no ssl"
    )


def test_check_url_takes_ssl_with_a_wss_url() -> None:
    """An SSLContext with a wss:// url is what it is for."""
    check_url("wss://h:1/ws", ssl.create_default_context())  # no ValueError


def test_the_package_docstring_examples_pass() -> None:
    """The doctests of objstore.client run and pass."""
    import doctest

    import objstore.client

    results = doctest.testmod(objstore.client)
    assert (results.failed, results.attempted) == (0, 3)
