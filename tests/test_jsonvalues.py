"""The fast JSON path behaves as the standard library's, value for value and error for error."""

from __future__ import annotations

import json
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


@given(st.text(min_size=1, max_size=40))
def test_keys_encode_as_the_standard_library_writes_them(text: str) -> None:
    """A valid key's JSON string is byte for byte what json writes (no escapes added)."""
    try:
        key = validate_key(text)
    except InvalidKey:
        return
    assert encode_key(key) == json.JSONEncoder(ensure_ascii=False).encode(key).encode()
