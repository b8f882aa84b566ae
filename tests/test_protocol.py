"""The sans-I/O protocol and strict JSON values: no sockets, no event loop."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from objstore import jsonvalues
from objstore.errors import InvalidKey, InvalidMessage, InvalidValue
from objstore.protocol import (
    Get,
    Set,
    Subscribe,
    Unsubscribe,
    encode_error,
    encode_update,
    parse_message,
    parse_set_body,
)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ('{"action": "subscribe", "key": "k"}', Subscribe("k")),
        ('{"action": "unsubscribe", "key": "k"}', Unsubscribe("k")),
        ('{"action": "get", "key": "k"}', Get("k")),
        ('{"action": "set", "key": "k", "value": {"foo": "bar"}}', Set("k", b'{"foo":"bar"}')),
        ('{"action": "set", "key": "k", "value": null}', Set("k", b"null")),
        ('{"key": "k", "value": "é", "action": "set"}', Set("k", '"é"'.encode())),
    ],
)
def test_parse_message(text: str, command: object) -> None:
    """Each action parses into its command, with the value as compact JSON."""
    assert parse_message(text) == command


@pytest.mark.parametrize("action", ["[1]", '{"a": 1}'])
def test_an_action_that_is_not_a_string_is_an_invalid_action(action: str) -> None:
    """An action that is a list or an object is refused as an invalid action, not a crash."""
    with pytest.raises(InvalidMessage, match=r"^invalid action: expected one of .*, got "):
        parse_message('{"action": ' + action + ', "key": "k"}')


def test_parse_message_accepts_utf8_bytes() -> None:
    """A binary frame holding UTF-8 JSON parses like text."""
    assert parse_message('{"action": "get", "key": "ключ"}'.encode()) == Get("ключ")


def test_parse_message_rejects_non_utf8_bytes() -> None:
    """Bytes that are not UTF-8 raise InvalidMessage."""
    with pytest.raises(
        InvalidMessage, match=r"^invalid message: binary frame is not UTF-8 JSON text$"
    ):
        parse_message(b"\xff")


def test_parse_set_body() -> None:
    """The POST /set body parses into a Set."""
    assert parse_set_body(b'{"key": "k", "value": [1]}') == Set("k", b"[1]")


def test_encode_update_is_compact_json() -> None:
    """An update is {"key": K, "value": V} with V inserted as given."""
    assert encode_update('a"b', b'{"x":1}') == b'{"key":"a\\"b","value":{"x":1}}'
    assert json.loads(encode_update("é", None)) == {"key": "é", "value": None}


def test_encode_error_is_the_one_error_shape() -> None:
    """An error is {"error": "<message>"}."""
    assert encode_error(InvalidMessage("invalid message: x")) == b'{"error":"invalid message: x"}'


def test_encode_error_survives_a_lone_surrogate() -> None:
    """An error quoting a lone surrogate is still valid UTF-8 JSON."""
    encoded = encode_error('invalid action: got "\ud800"')
    assert json.loads(encoded.decode("utf-8")) == {"error": 'invalid action: got "\ud800"'}


def test_decode_rejects_nan() -> None:
    """NaN is not JSON."""
    with pytest.raises(InvalidValue, match="NaN is not allowed"):
        jsonvalues.decode("[NaN]")


def test_decode_accepts_the_deepest_allowed_nesting() -> None:
    """A value nested exactly MAX_DEPTH levels deep is accepted."""
    depth = jsonvalues.MAX_DEPTH
    assert jsonvalues.depth_exceeds(jsonvalues.decode("[" * depth + "]" * depth), depth) is False


def test_decode_rejects_one_level_deeper() -> None:
    """One level more than MAX_DEPTH is rejected."""
    depth = jsonvalues.MAX_DEPTH + 1
    with pytest.raises(InvalidValue, match="nested deeper than 128 levels"):
        jsonvalues.decode('{"a": ' * depth + "1" + "}" * depth)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    """Brackets inside strings are text, not nesting."""
    text = json.dumps("[" * 1000)
    assert jsonvalues.decode(text) == "[" * 1000


def test_encode_rejects_lone_surrogate() -> None:
    """A value holding a lone surrogate cannot be encoded as UTF-8."""
    with pytest.raises(InvalidValue, match="lone surrogate"):
        jsonvalues.encode({"a": "\udc00"})


def test_encode_keeps_unicode_unescaped() -> None:
    """Non-ASCII text is kept as UTF-8, not \\u escapes, so files stay readable."""
    assert jsonvalues.encode({"name": "Zoë 🎮"}) == '{"name":"Zoë 🎮"}'.encode()


def nested(depth: int) -> str:
    """An array nested *depth* levels deep."""
    return "[" * depth + "]" * depth


def test_a_value_may_nest_the_deepest_allowed_inside_a_message() -> None:
    """The message object does not count: a 128-deep value is accepted."""
    text = '{"action": "set", "key": "k", "value": ' + nested(128) + "}"
    assert parse_message(text) == Set("k", nested(128).encode())


def test_a_value_one_level_deeper_is_refused_inside_a_message() -> None:
    """A 129-deep value in a message is refused."""
    text = '{"action": "set", "key": "k", "value": ' + nested(129) + "}"
    with pytest.raises(InvalidValue, match=r"^invalid JSON: nested deeper than 128 levels$"):
        parse_message(text)


def test_a_set_body_may_hold_the_deepest_allowed_value() -> None:
    """The POST /set body counts depth as a message does."""
    body = ('{"key": "k", "value": ' + nested(128) + "}").encode()
    assert parse_set_body(body) == Set("k", nested(128).encode())


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ('{"action": "get", "action": "set", "key": "k", "value": 1}', "action"),
        ('{"action": "get", "\\u0061ction": "set", "key": "k", "value": 1}', "action"),
        ('{"action": "get", "key": "a", "k\\u0065y": "b"}', "key"),
    ],
)
def test_a_message_repeating_a_name_is_refused(text: str, name: str) -> None:
    """A repeated member of the message is refused, however it is spelt."""
    with pytest.raises(InvalidMessage) as caught:
        parse_message(text)
    assert (
        str(caught.value) == f'invalid message: duplicate member "{name}"; send each member once'
    )


def test_names_repeated_inside_a_value_keep_the_last() -> None:
    """Only the message object is checked: inside a value, the last of a name wins."""
    text = '{"action": "set", "key": "k", "value": {"a": 1, "a": 2}}'
    assert parse_message(text) == Set("k", b'{"a":2}')


def test_a_set_body_repeating_a_name_is_refused() -> None:
    """The POST /set body is an envelope too."""
    with pytest.raises(InvalidMessage) as caught:
        parse_set_body(b'{"key": "a", "value": 1, "key": "b"}')
    assert str(caught.value) == 'invalid body: duplicate member "key"; send each member once'


def test_a_number_out_of_range_is_refused_in_a_message() -> None:
    """1e400 in a value is refused, not stored as null."""
    with pytest.raises(InvalidValue, match=r"^invalid JSON: 1e400 is out of range; "):
        parse_message('{"action": "set", "key": "k", "value": 1e400}')


SET_NAMES = st.sampled_from(["action", "key", "value"])
SET_VALUES = st.sampled_from(
    ['"set"', '"k:1"', '"k"', "1", '{"a:b":{"c":1}}', '[":",{"x":2}]', '{"i":1}', "null"]
)


@st.composite
def set_messages(draw: st.DrawFn) -> str:
    """Set messages as clients write them, some repeating a member, with colons about."""
    key = draw(st.sampled_from(['"k"', '"k:1"', '"::"']))
    members = [("action", '"set"'), ("key", key), ("value", draw(SET_VALUES))]
    members += draw(st.lists(st.tuples(SET_NAMES, SET_VALUES), max_size=2))
    order = draw(st.permutations(members))
    space = draw(st.sampled_from(["", " "]))
    return "{" + ",".join(f'"{n}"{space}:{space}{v}' for n, v in order) + "}"


def assert_refused_exactly_if_repeating(text: str) -> None:
    """*text*, a set message, is refused as repeating a member if and only if it does."""
    names = [name for name, _ in json.loads(text, object_pairs_hook=list)]
    if len(set(names)) < len(names):
        with pytest.raises(InvalidMessage, match="duplicate member"):
            parse_message(text)
    else:
        assert isinstance(parse_message(text), Set)


@given(set_messages())
def test_set_messages_with_a_repeated_member_are_refused_exactly(text: str) -> None:
    """The counting shortcut for sets refuses exactly the messages that repeat a name."""
    assert_refused_exactly_if_repeating(text)


#: Members of protocol 2 and unknown ones, with values that hold colons or nest.
EXTRA_MEMBERS = st.sampled_from(
    [
        ("id", "7"),
        ("id", '"a:b"'),
        ("id", '"::"'),
        ("x:y", "1"),
        ("x:y", '"c:d"'),
        ("x:y", "true"),
        ("x:y", "null"),
        ("x:y", '{"e":1}'),
        ("other", '[":",{"f":2}]'),
    ]
)


@st.composite
def extended_set_messages(draw: st.DrawFn) -> str:
    """Set messages with an id or unknown members, some repeating a member."""
    key = draw(st.sampled_from(['"k"', '"k:1"']))
    members = [("action", '"set"'), ("key", key), ("value", draw(SET_VALUES))]
    members += draw(st.lists(EXTRA_MEMBERS, min_size=1, max_size=3))
    members += draw(st.lists(st.tuples(SET_NAMES, SET_VALUES), max_size=1))
    order = draw(st.permutations(members))
    return "{" + ",".join(f'"{n}":{v}' for n, v in order) + "}"


@given(extended_set_messages())
def test_sets_with_more_members_repeating_one_are_refused_exactly(text: str) -> None:
    """The counting shortcut for sets with an id or other members refuses exactly the
    messages that repeat a name."""
    assert_refused_exactly_if_repeating(text)


def test_a_set_with_an_id_alone_takes_the_defaults_of_the_other_fields() -> None:
    """`{"action": "set", "key", "value", "id"}` is a set with that id and nothing more;
    a bad key or a missing value is refused with the id to answer."""
    assert parse_message('{"action":"set","key":"k","value":{"a":1},"id":"r:1"}') == Set(
        "k", b'{"a":1}', "r:1"
    )
    with pytest.raises(InvalidKey) as caught:
        parse_message('{"action":"set","key":"","value":1,"id":5}')
    assert caught.value.request_id == 5
