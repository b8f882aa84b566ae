"""The fast JSON path behaves as the standard library's, value for value and error for error."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from objstore import jsonvalues
from objstore.errors import InvalidKey, InvalidValue
from objstore.keys import validate_key
from objstore.protocol import encode_key

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def outcome(function: Any, argument: Any) -> tuple[str, Any]:
    """What *function* gives for *argument*: its result, or its error type and message."""
    try:
        return ("ok", function(argument))
    except (ValueError, InvalidValue) as exc:
        return (type(exc).__name__, str(exc))


def same_json(a: bytes, b: bytes) -> bool:
    """Equal once parsed: number formatting (1e-07 or 1e-7) may differ, values may not."""
    return bool(json.loads(a) == json.loads(b))


def test_orjson_is_used_where_installed() -> None:
    """The default install brings orjson, and the fast path uses it."""
    pytest.importorskip("orjson")
    assert jsonvalues.BACKEND == "orjson"


@given(json_values)
def test_decode_matches_the_standard_library(value: Any) -> None:
    """Any JSON text decodes to the same value, integer for integer (no float for 2**70)."""
    text = json.dumps(value)
    decoded = jsonvalues.decode(text)
    assert decoded == jsonvalues.decode_stdlib(text)
    assert json.dumps(decoded) == json.dumps(jsonvalues.decode_stdlib(text))


@given(json_values)
def test_encode_matches_the_standard_library(value: Any) -> None:
    """Any value encodes to compact UTF-8 JSON meaning the same as the standard library's."""
    fast, reference = jsonvalues.encode(value), jsonvalues.encode_stdlib(value)
    assert same_json(fast, reference)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        '{"a": 1,}',
        "[NaN]",
        "[Infinity]",
        "-Infinity",
        "1e400",
        '"\\ud800"',
        '"\\udc00x"',
        "[1] [2]",
        "[" * 200 + "]" * 200,
        '{"a": ' * 129 + "1" + "}" * 129,
        "18446744073709551616",
        "-9223372036854775809",
        "123456789012345678901234567890.5",
    ],
)
def test_odd_texts_give_what_the_standard_library_gives(text: str) -> None:
    """Refusals carry the standard library's message; big numbers keep their exact value."""
    assert outcome(jsonvalues.decode, text) == outcome(jsonvalues.decode_stdlib, text)


def test_values_the_fast_encoder_refuses_get_the_standard_errors() -> None:
    """A lone surrogate fails as it always did; a huge integer is encoded exactly."""
    assert outcome(jsonvalues.encode, {"a": "\udc00"}) == outcome(
        jsonvalues.encode_stdlib, {"a": "\udc00"}
    )
    assert jsonvalues.encode([2**100]) == b"[1267650600228229401496703205376]"


@given(json_values, st.sampled_from([None, 1, 2]))
def test_compact_of_a_file_text_is_the_encoding_of_its_value(
    value: Any, indent: int | None
) -> None:
    """Any UTF-8 JSON text, spaced or not, compacts to the encoding of its decoded value."""
    data = json.dumps(value, indent=indent, ensure_ascii=False).encode("utf-8")
    expected = jsonvalues.encode(jsonvalues.decode(data.decode("utf-8")))
    assert jsonvalues.compact(data) == expected
    assert same_json(jsonvalues.compact_stdlib(data), expected)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xef\xbb\xbf{}",
        b'"\xed\xa0\x80"',
        b'"\xff"',
        b"[NaN]",
        b"1e400",
        b"[" * 200 + b"]" * 200,
        b"18446744073709551616",
        b'{"a": 1}\x00',
    ],
)
def test_compact_refuses_as_the_standard_library_does(data: bytes) -> None:
    """Texts the fast path refuses give the standard library's error, or keep their value."""

    def compact_outcome(function: Any) -> tuple[str, Any]:
        try:
            return ("ok", function(data))
        except (ValueError, InvalidValue) as exc:  # UnicodeDecodeError is a ValueError
            return (type(exc).__name__, str(exc))

    assert compact_outcome(jsonvalues.compact) == compact_outcome(jsonvalues.compact_stdlib)


@given(st.text(min_size=1, max_size=40))
def test_keys_encode_as_the_standard_library_writes_them(text: str) -> None:
    """A valid key's JSON string is byte for byte what json writes (no escapes added)."""
    try:
        key = validate_key(text)
    except InvalidKey:
        return
    assert encode_key(key) == json.JSONEncoder(ensure_ascii=False).encode(key).encode()


OUT_OF_RANGE = [
    "1e400",
    "-1e400",
    "1E400",
    "2e308",
    "1e+0400",
    "1" + "0" * 309 + ".0",
    "2" + "0" * 209 + "e99",
]


@pytest.mark.parametrize("text", OUT_OF_RANGE)
@pytest.mark.parametrize("decode", [jsonvalues.decode, jsonvalues.decode_stdlib])
def test_numbers_out_of_the_double_range_are_refused(decode: Any, text: str) -> None:
    """A number beyond ±1.8e308 is refused by both paths, named in the error."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    with pytest.raises(InvalidValue) as caught:
        decode(f"[{text}]")
    assert str(caught.value) == (
        f"invalid JSON: {shown} is out of range; numbers must be within "
        "±1.7976931348623157e308 (send larger ones as strings)"
    )


def test_an_out_of_range_number_beside_a_big_integer_is_refused() -> None:
    """The pair that used to crash the encoder is refused when decoded."""
    with pytest.raises(InvalidValue, match=r"^invalid JSON: 1e400 is out of range; "):
        jsonvalues.decode("[1e400, 12345678901234567890123]")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1.7976931348623157e308", 1.7976931348623157e308),
        ("-1e308", -1e308),
        ("1e-400", 0.0),
        ('"1e400"', "1e400"),
        ("[1e99, 12345678901234567890123]", [1e99, 12345678901234567890123]),
    ],
)
def test_numbers_within_range_and_look_alikes_are_kept(text: str, value: Any) -> None:
    """The largest double, underflow to zero and "1e400" as a string all decode."""
    assert jsonvalues.decode(text) == value
    assert jsonvalues.decode_stdlib(text) == value


@st.composite
def number_literals(draw: st.DrawFn) -> str:
    """JSON numbers of up to 320 integer digits and exponents up to ±400, spelt every way."""
    digits = draw(st.integers(1, 320))
    text = draw(st.sampled_from(["", "-"])) + str(draw(st.integers(1, 9)))
    text += draw(st.sampled_from("09")) * (digits - 1)
    text += draw(st.sampled_from(["", ".5", ".000"]))
    # Often right at the edge: 1.8e308 has 309 digits before the point.
    near_the_edge = st.integers(-2, 2).map(lambda d: 309 - digits + d)
    exponent = draw(st.none() | st.integers(-400, 400) | near_the_edge)
    if exponent is not None:
        sign = "-" if exponent < 0 else draw(st.sampled_from(["", "+"]))
        zeros = "0" * draw(st.integers(0, 2))
        text += f"{draw(st.sampled_from('eE'))}{sign}{zeros}{abs(exponent)}"
    return text


@given(number_literals())
def test_every_overflowing_number_is_refused(text: str) -> None:
    """Whatever its spelling, a number is refused exactly when it overflows a double."""
    expected = json.loads(text)  # integers stay exact, overflowing floats become inf
    if isinstance(expected, float) and math.isinf(expected):
        with pytest.raises(InvalidValue, match="is out of range"):
            jsonvalues.decode_stdlib(text)
    else:
        assert jsonvalues.decode_stdlib(text) == expected


def test_an_integer_over_the_digit_limit_is_a_client_error() -> None:
    """An integer of more digits than Python converts is refused, not a crash."""
    limit = sys.get_int_max_str_digits()
    with pytest.raises(InvalidValue) as caught:
        jsonvalues.decode("[" + "7" * (limit + 1) + "]")
    assert str(caught.value) == (
        f"invalid JSON: a number has over {limit} digits; send it as a string"
    )


@pytest.mark.parametrize("decode", [jsonvalues.decode, jsonvalues.decode_stdlib])
def test_an_enclosing_level_does_not_count_toward_the_depth(decode: Any) -> None:
    """With one enclosing level, 129 levels of text (a 128-deep value) are accepted."""
    depth = jsonvalues.MAX_DEPTH + 1
    assert decode("[" * depth + "]" * depth, 1) is not None
    with pytest.raises(InvalidValue, match=r"^invalid JSON: nested deeper than 128 levels$"):
        decode("[" * (depth + 1) + "]" * (depth + 1), 1)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ('{"action": "get", "key": "k"}', None),
        ('{"action": "get", "action": "set"}', "action"),
        ('{"action": "get", "\\u0061ction": "set"}', "action"),
        ('{"a\\"b": 1, "a\\u0022b": 2}', 'a"b'),
        ('{"key": "action", "action": "get"}', None),
        ('{"value": {"a": 1, "a": 2}, "key": "k"}', None),
        ('{"value": {"key": 1}, "key": "k", "key": "j"}', "key"),
        ('{"": 1, "": 2}', ""),
    ],
)
def test_duplicate_name_finds_repeats_of_the_outermost_object(text: str, name: str | None) -> None:
    """Repeats are found however escaped; names inside values and nested repeats are not."""
    assert jsonvalues.duplicate_name(text, json.loads(text)) == name


def reference_duplicate(text: str) -> str | None:
    """The first repeated name of the outermost object, by a strict parse."""
    seen: set[str] = set()
    for name, _ in json.loads(text, object_pairs_hook=list):
        if name in seen:
            return str(name)
        seen.add(name)
    return None


NAMES = st.sampled_from(["action", "key", "value", "k", "", 'a"b', "é", "a\\b", "ke", "a:b", ":"])


def spell(name: str, escapes: list[bool]) -> str:
    """*name* as a JSON string, with the characters chosen by *escapes* as \\u escapes."""
    parts = []
    for char, escaped in zip(name, escapes + [False] * len(name), strict=False):
        parts.append(f"\\u{ord(char):04x}" if escaped else json.dumps(char)[1:-1])
    return '"' + "".join(parts) + '"'


@st.composite
def envelopes(draw: st.DrawFn) -> str:
    """A JSON object as a client might write it: repeated, escaped and nested names."""
    members = []
    for name in draw(st.lists(NAMES, max_size=6)):
        escapes = draw(st.lists(st.booleans(), max_size=len(name)))
        value = draw(
            st.one_of(
                NAMES.map(json.dumps),
                st.lists(st.tuples(NAMES, st.integers(0, 9)), max_size=3).map(
                    lambda pairs: "{" + ",".join(f"{json.dumps(n)}:{v}" for n, v in pairs) + "}"
                ),
                st.integers(-5, 5).map(str),
            )
        )
        space = draw(st.sampled_from(["", " ", "\n "]))
        members.append(f"{space}{spell(name, escapes)}{space}:{space}{value}")
    return "{" + ",".join(members) + "}"


@given(envelopes())
def test_duplicate_name_agrees_with_a_strict_parse(text: str) -> None:
    """On generated objects, the cheap check finds exactly the repeats a strict parse finds."""
    assert jsonvalues.duplicate_name(text, jsonvalues.decode(text)) == reference_duplicate(text)
