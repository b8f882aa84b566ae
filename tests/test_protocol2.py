"""Parsing the messages of protocol 2 and encoding their replies, without a server."""

from __future__ import annotations

import json

import pytest

from objstore.commands import (
    Batch,
    Delete,
    Get,
    Incr,
    Keys,
    Patch,
    Set,
    Subscribe,
    SubscribePrefix,
    Unsubscribe,
    UnsubscribePrefix,
)
from objstore.errors import ClientError, Conflict, StorageError
from objstore.protocol import parse_message
from objstore.replies import encode_error_reply, encode_keys, encode_ok, encode_reset


def parse(message: object) -> object:
    return parse_message(json.dumps(message))


@pytest.mark.parametrize(
    ("message", "command"),
    [
        ({"action": "get", "key": "k", "id": 1}, Get("k", 1)),
        ({"action": "get", "key": "k", "id": "a"}, Get("k", "a")),
        ({"action": "set", "key": "k", "value": 1, "id": 2}, Set("k", b"1", 2)),
        (
            {"action": "set", "key": "k", "value": 1, "ifRev": 0, "ttl": 1.5, "ephemeral": True},
            Set("k", b"1", None, 0, 1.5, True),
        ),
        ({"action": "delete", "key": "k"}, Delete("k")),
        ({"action": "delete", "key": "k", "ifRev": 4, "id": 3}, Delete("k", 3, 4)),
        ({"action": "patch", "key": "k", "value": {"a": None}}, Patch("k", {"a": None})),
        ({"action": "incr", "key": "k"}, Incr("k")),
        ({"action": "incr", "key": "k", "by": -2.5, "ttl": 3}, Incr("k", -2.5, None, None, 3.0)),
        ({"action": "keys"}, Keys()),
        (
            {"action": "keys", "prefix": "p/", "after": "p/1", "limit": 7, "id": 9},
            Keys("p/", "p/1", 7, 9),
        ),
        ({"action": "subscribe", "key": "k", "since": 0, "id": 1}, Subscribe("k", 1, 0)),
        ({"action": "subscribe", "prefix": ""}, SubscribePrefix("")),
        ({"action": "subscribe", "prefix": "p", "since": 5, "id": 1}, SubscribePrefix("p", 1, 5)),
        ({"action": "unsubscribe", "prefix": "p", "id": 1}, UnsubscribePrefix("p", 1)),
        ({"action": "unsubscribe", "key": "k", "id": 1}, Unsubscribe("k", 1)),
        (
            {
                "action": "batch",
                "id": 1,
                "ops": [
                    {"action": "set", "key": "a", "value": [1]},
                    {"action": "delete", "key": "b", "ifRev": 2},
                ],
            },
            Batch((Set("a", b"[1]"), Delete("b", None, 2)), 1),
        ),
        ({"action": "set", "key": "k", "value": "batch"}, Set("k", b'"batch"')),
    ],
)
def test_protocol_2_messages_parse_to_their_commands(message: object, command: object) -> None:
    """Every action and field of protocol 2 reaches its typed command."""
    assert parse(message) == command


@pytest.mark.parametrize(
    ("message", "code", "error"),
    [
        ({"action": "get", "key": "k", "id": 1.5}, "invalid_message", '"id" must be an integer'),
        ({"action": "get", "key": "k", "id": True}, "invalid_message", '"id" must be an integer'),
        ({"action": "get", "key": "k", "id": "x" * 65}, "invalid_message", "at most 64 bytes"),
        ({"action": "get", "key": "k", "id": 2**53}, "invalid_message", '"id" must be an integer'),
        (
            {"action": "set", "key": "k", "value": 1, "ifRev": -1},
            "invalid_message",
            '"ifRev" must be a revision',
        ),
        (
            {"action": "set", "key": "k", "value": 1, "ttl": 0},
            "invalid_message",
            '"ttl" must be a number',
        ),
        (
            {"action": "set", "key": "k", "value": 1, "ttl": 315360001},
            "invalid_message",
            "ten years",
        ),
        (
            {"action": "set", "key": "k", "value": 1, "ephemeral": 1},
            "invalid_message",
            '"ephemeral" must be true or false',
        ),
        ({"action": "incr", "key": "k", "by": "1"}, "invalid_message", '"by" must be a number'),
        ({"action": "incr", "key": "k", "by": True}, "invalid_message", '"by" must be a number'),
        ({"action": "keys", "limit": 0}, "invalid_message", '"limit" must be a positive integer'),
        ({"action": "keys", "limit": 1001}, "too_large", "over the most of 1000"),
        ({"action": "keys", "prefix": 5}, "invalid_key", "invalid prefix"),
        ({"action": "subscribe", "key": "k", "prefix": "p"}, "invalid_message", "not both"),
        (
            {"action": "subscribe", "key": "k", "since": "1"},
            "invalid_message",
            '"since" must be a revision',
        ),
        ({"action": "batch", "ops": {}}, "invalid_message", '"ops" must be an array'),
        (
            {"action": "batch", "ops": [{"action": "get", "key": "k"}]},
            "invalid_message",
            "invalid op",
        ),
        (
            {"action": "batch", "ops": [{"action": "set", "key": "k", "value": 1, "id": 1}]},
            "invalid_message",
            "an op has no id",
        ),
        (
            {"action": "batch", "ops": [{"action": "set", "key": "k", "value": 1}] * 1001},
            "too_large",
            "1001 operations",
        ),
        ({"action": "delete", "key": ""}, "invalid_key", "non-empty string"),
        ({"action": "patch", "key": "k"}, "invalid_value", 'missing "value"'),
    ],
)
def test_protocol_2_mistakes_have_their_code(message: object, code: str, error: str) -> None:
    """Each mistake raises a client error with its stable code and a specific message."""
    with pytest.raises(ClientError) as caught:
        parse(message)
    assert caught.value.code == code
    assert error in str(caught.value)


def test_an_error_carries_the_id_once_it_is_known() -> None:
    """A message with a valid id and a mistake gets an error that knows the id."""
    with pytest.raises(ClientError) as caught:
        parse({"action": "delete", "key": 5, "id": "x"})
    assert caught.value.request_id == "x"


def test_a_batch_error_names_the_op() -> None:
    """An op that is wrong is named by its index."""
    with pytest.raises(ClientError) as caught:
        parse(
            {
                "action": "batch",
                "ops": [{"action": "delete", "key": "a"}, {"action": "incr", "key": ""}],
            }
        )
    assert caught.value.op == 1


def test_a_batch_value_may_nest_as_deep_as_any_value() -> None:
    """Values in a batch get the same 128 levels as elsewhere, and no more."""
    deep = json.loads("[" * 128 + "]" * 128)
    batch = {"action": "batch", "ops": [{"action": "set", "key": "k", "value": deep}]}
    assert isinstance(parse(batch), Batch)
    batch["ops"][0]["value"] = [deep]  # type: ignore[index]
    with pytest.raises(ClientError, match="nested deeper than 128 levels"):
        parse(batch)


def test_replies_have_the_id_as_sent() -> None:
    """Integer and string ids are echoed with their type."""
    assert encode_ok(7, b',"rev":3') == b'{"id":7,"ok":true,"rev":3}'
    assert encode_ok('a"b') == b'{"id":"a\\"b","ok":true}'


def test_error_replies_carry_code_and_conflict_state() -> None:
    """A conflict reply holds the key's current revision and value."""
    conflict = Conflict("conflict: no", 4, b'{"a":1}')
    assert json.loads(encode_error_reply(conflict, 1)) == {
        "id": 1,
        "error": "conflict: no",
        "code": "conflict",
        "rev": 4,
        "value": {"a": 1},
    }
    assert json.loads(encode_error_reply(StorageError("disk full"), "s")) == {
        "id": "s",
        "error": "disk full",
        "code": "storage",
    }


def test_listing_and_reset_encodings() -> None:
    """The keys page and the reset message are exact."""
    assert encode_keys(["a", "é"], None) == ',"keys":["a","é"],"next":null'.encode()
    assert encode_reset("prefix", "p/") == b'{"reset":true,"prefix":"p/"}'
