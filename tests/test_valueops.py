"""Merge patch and increment on stored values: RFC 7386's examples, its laws, exact numbers."""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from objstore import jsonvalues
from objstore.errors import InvalidMessage, InvalidValue
from objstore.valueops import apply_patch, increment, merge_patch

# Few names, so that targets and patches share members.
names = st.text(alphabet="abc", max_size=2)
scalars = (
    st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
)
json_values = st.recursive(
    st.none() | scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(names, children, max_size=4),
    max_leaves=16,
)
# Without null anywhere: a null member of a patch means "remove".
null_free_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(names, children, max_size=4),
    max_leaves=16,
)
null_free_objects = st.dictionaries(names, null_free_values, max_size=4)
json_objects = st.dictionaries(names, json_values, max_size=4)


def canonical(value: Any) -> str:
    """*value* as JSON text with sorted names: equal only if equal as JSON (1 is not true)."""
    return json.dumps(value, sort_keys=True)


def diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that turns the null-free object *a* into the null-free object *b*."""
    patch: dict[str, Any] = {name: None for name in a if name not in b}
    for name, new in b.items():
        old = a.get(name)
        if isinstance(old, dict) and isinstance(new, dict):
            inner = diff(old, new)
            if inner:
                patch[name] = inner
        elif name not in a or canonical(old) != canonical(new):
            patch[name] = new
    return patch


def nested(depth: int) -> Any:
    """Objects nested *depth* levels deep: {"a": {"a": ... {} ...}}."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def depth_of(value: Any) -> int:
    """How many levels of objects nest in a value made by nested()."""
    depth = 0
    while isinstance(value, dict):
        depth += 1
        value = value.get("a")
    return depth


# RFC 7386, Appendix A: original, patch, result, in the RFC's order.
RFC_7386_EXAMPLES = [
    ('{"a":"b"}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'),
    ('{"a":"b"}', '{"a":null}', "{}"),
    ('{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'),
    ('{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'),
    ('{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}', '{"a":{"b":"d"}}'),
    ('{"a":[{"b":"c"}]}', '{"a":[1]}', '{"a":[1]}'),
    ('["a","b"]', '["c","d"]', '["c","d"]'),
    ('{"a":"b"}', '["c"]', '["c"]'),
    ('{"a":"foo"}', "null", "null"),
    ('{"a":"foo"}', '"bar"', '"bar"'),
    ('{"e":null}', '{"a":1}', '{"e":null,"a":1}'),
    ("[1,2]", '{"a":"b","c":null}', '{"a":"b"}'),
    ("{}", '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC_7386_EXAMPLES)
def test_merge_patch_gives_each_rfc_7386_example(original: str, patch: str, result: str) -> None:
    """merge_patch gives the result RFC 7386 Appendix A lists for each example."""
    merged = merge_patch(json.loads(original), json.loads(patch))
    assert canonical(merged) == canonical(json.loads(result))


@pytest.mark.parametrize(("original", "patch", "result"), RFC_7386_EXAMPLES)
def test_apply_patch_stores_each_rfc_7386_example(original: str, patch: str, result: str) -> None:
    """apply_patch turns the stored original into the RFC's result, byte for byte."""
    assert apply_patch(original.encode(), json.loads(patch)) == result.encode()


def test_patch_keeps_the_place_of_existing_members() -> None:
    """Replaced members keep their place; new members come after, in the patch's order."""
    assert apply_patch(b'{"a":1,"b":2}', {"c": 4, "a": 3}) == b'{"a":3,"b":2,"c":4}'


def test_patch_of_a_missing_key_starts_from_an_empty_object() -> None:
    """A missing key is patched as {}: its null members are dropped, at every level."""
    assert apply_patch(None, {"a": {"b": None, "c": 1}, "d": None}) == b'{"a":{"c":1}}'


def test_patch_that_is_not_an_object_replaces_a_missing_key() -> None:
    """A patch that is not an object becomes the value of a missing key."""
    assert apply_patch(None, [1, None]) == b"[1,null]"


def test_patch_that_is_not_an_object_replaces_the_value() -> None:
    """A number as the patch replaces an object, as RFC 7386 says (no error)."""
    assert apply_patch(b'{"a":1}', 5) == b"5"


def test_patch_of_a_number_starts_from_an_empty_object() -> None:
    """An object patch on a key holding a number discards the number."""
    assert apply_patch(b"42", {"a": 1}) == b'{"a":1}'


def test_patch_that_would_nest_too_deep_is_refused() -> None:
    """A result nested one level deeper than the limit is refused, naming the key."""
    with pytest.raises(InvalidValue) as caught:
        apply_patch(b"{}", nested(jsonvalues.MAX_DEPTH + 1), key="doc")
    assert str(caught.value) == (
        'invalid value: patching key "doc" would nest its value deeper than 128 levels; '
        "send a shallower patch"
    )


def test_patch_that_nests_to_the_limit_is_kept() -> None:
    """A result nested exactly as deep as the limit is stored."""
    stored = apply_patch(None, nested(jsonvalues.MAX_DEPTH))
    assert depth_of(json.loads(stored)) == jsonvalues.MAX_DEPTH


def test_patch_far_too_deep_is_refused_without_a_key() -> None:
    """A result nested far beyond what the encoder can walk is refused as too deep."""
    with pytest.raises(InvalidValue) as caught:
        apply_patch(None, nested(20 * sys.getrecursionlimit()))
    assert str(caught.value) == (
        "invalid value: patching the key would nest its value deeper than 128 levels; "
        "send a shallower patch"
    )


def test_merge_patch_leaves_nested_objects_of_the_target_alone() -> None:
    """Merging into a nested object copies it: the target's own object is unchanged."""
    target = {"a": {"b": 1, "c": 2}}
    assert merge_patch(target, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}
    assert target == {"a": {"b": 1, "c": 2}}


def test_patch_into_a_value_nested_to_the_limit_is_kept() -> None:
    """A shallow patch of a value nested as deep as the limit is stored."""
    patched = apply_patch(jsonvalues.encode(nested(jsonvalues.MAX_DEPTH)), {"a": {"b": 1}})
    assert depth_of(json.loads(patched)) == jsonvalues.MAX_DEPTH


def depth(value: Any) -> int:
    """How many arrays and objects nest in *value*, at the deepest."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


@given(json_objects | json_values, json_objects | json_values)
def test_merge_is_as_deep_as_its_patch_and_no_deeper_than_both(target: Any, patch: Any) -> None:
    """The result nests at least as deep as the patch, and at most as the deeper input."""
    merged = depth(merge_patch(target, patch))
    assert depth(patch) <= merged <= max(depth(target), depth(patch))


def test_merge_patch_does_not_recurse() -> None:
    """Merging a patch nested far deeper than Python's recursion limit works."""
    depth = 20 * sys.getrecursionlimit()
    assert depth_of(merge_patch({"a": {"b": 1}}, nested(depth))) == depth


def test_patch_with_a_lone_surrogate_is_refused() -> None:
    """A patch whose result holds a lone surrogate cannot be stored as UTF-8."""
    with pytest.raises(InvalidValue) as caught:
        apply_patch(b"{}", {"a": "\ud800"})
    assert str(caught.value) == "invalid value: not valid Unicode (contains a lone surrogate)"


@given(json_values, json_values)
def test_merge_patch_is_idempotent(target: Any, patch: Any) -> None:
    """Applying a patch twice gives what applying it once gives."""
    once = merge_patch(target, patch)
    assert canonical(merge_patch(once, patch)) == canonical(once)


@given(null_free_objects)
def test_null_free_patch_on_an_empty_object_is_the_patch(patch: dict[str, Any]) -> None:
    """A patch without nulls, applied to {}, gives the patch itself."""
    assert canonical(merge_patch({}, patch)) == canonical(patch)


@given(null_free_objects, null_free_objects)
def test_merge_patch_of_a_diff_gives_the_second_object(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    """merge(a, diff(a, b)) is b for objects without nulls."""
    assert canonical(merge_patch(a, diff(a, b))) == canonical(b)


@given(json_objects | json_values, json_objects | json_values)
def test_merge_patch_never_changes_its_inputs(target: Any, patch: Any) -> None:
    """The target and the patch are as they were after a merge."""
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    merge_patch(target, patch)
    assert canonical(target) == canonical(target_before)
    assert canonical(patch) == canonical(patch_before)


@given(json_values, json_values)
def test_apply_patch_stores_what_merge_patch_gives(target: Any, patch: Any) -> None:
    """apply_patch on stored JSON is merge_patch on the decoded value, encoded."""
    stored = apply_patch(jsonvalues.encode(target), patch)
    assert stored == jsonvalues.encode(merge_patch(target, patch))


def test_increment_of_a_missing_key_starts_from_zero() -> None:
    """A missing key counts as 0."""
    assert increment(None, 5) == b"5"


def test_increment_of_a_missing_key_by_a_float_is_a_float() -> None:
    """A missing key plus a float is that float."""
    assert increment(None, 2.5) == b"2.5"


def test_increment_by_a_negative_number() -> None:
    """A negative increment subtracts."""
    assert increment(b"3", -5) == b"-2"


def test_increment_is_exact_beyond_2_53() -> None:
    """Integers past 2**53 (where doubles skip odd numbers) are added exactly."""
    assert increment(b"9007199254740993", 1) == b"9007199254740994"


def test_increment_keeps_integers_beyond_the_double_range() -> None:
    """Integers larger than any double stay exact integers."""
    big = 10**400
    assert increment(str(big).encode(), 1) == str(big + 1).encode()


def test_increment_of_an_integer_by_a_float_is_a_float() -> None:
    """An integer plus a float is a float."""
    assert increment(b"1", 0.5) == b"1.5"


def test_increment_of_a_float_by_an_integer_is_a_float() -> None:
    """A float plus an integer is a float."""
    assert increment(b"1.5", 1) == b"2.5"


def test_increment_by_a_whole_float_stays_a_float() -> None:
    """A whole float result is stored as a float (3.0, not 3)."""
    assert increment(b"2", 1.0) == b"3.0"


@given(
    st.integers(min_value=-(2**200), max_value=2**200),
    st.integers(min_value=-(2**200), max_value=2**200),
)
def test_increment_of_integers_is_their_exact_sum(current: int, by: int) -> None:
    """Any two integers add up exactly."""
    assert increment(jsonvalues.encode(current), by) == str(current + by).encode()


@pytest.mark.parametrize("by", [True, False])
def test_increment_by_a_boolean_is_refused(by: bool) -> None:
    """true and false are not numbers, though Python counts them as integers."""
    with pytest.raises(InvalidMessage) as caught:
        increment(b"1", by)
    assert str(caught.value) == (
        f'invalid message: "by" must be a number, got {json.dumps(by)}; '
        "send a number such as 1 or -2.5"
    )


@pytest.mark.parametrize(
    ("by", "shown"), [("2", '"2"'), (None, "null"), ([1], "[1]"), ({"n": 1}, '{"n": 1}')]
)
def test_increment_by_a_non_number_is_refused(by: Any, shown: str) -> None:
    """A "by" that is not a number is a field of the wrong type."""
    with pytest.raises(InvalidMessage) as caught:
        increment(b"1", by)
    assert str(caught.value) == (
        f'invalid message: "by" must be a number, got {shown}; send a number such as 1 or -2.5'
    )


@pytest.mark.parametrize(("by", "shown"), [(float("nan"), "NaN"), (float("inf"), "Infinity")])
def test_increment_by_a_non_finite_float_is_refused(by: float, shown: str) -> None:
    """NaN and infinity are not numbers JSON can carry."""
    with pytest.raises(InvalidMessage) as caught:
        increment(None, by)
    assert str(caught.value) == (
        f'invalid message: "by" must be a number, got {shown}; send a number such as 1 or -2.5'
    )


def test_increment_of_a_string_is_refused() -> None:
    """A key holding a string is not incremented, and the message names key and value."""
    with pytest.raises(InvalidValue) as caught:
        increment(b'"abc"', 1, key="score")
    assert str(caught.value) == (
        'invalid value: key "score" holds "abc", not a number; use set to replace it'
    )


@pytest.mark.parametrize(
    ("stored", "shown"), [(b"true", "true"), (b"null", "null"), (b"[1]", "[1]"), (b"{}", "{}")]
)
def test_increment_of_a_non_number_is_refused(stored: bytes, shown: str) -> None:
    """A key holding true, null, an array or an object is not incremented."""
    with pytest.raises(InvalidValue) as caught:
        increment(stored, 1)
    assert str(caught.value) == (
        f"invalid value: the key holds {shown}, not a number; use set to replace it"
    )


def test_increment_overflowing_to_infinity_is_refused() -> None:
    """A float sum beyond the largest double is refused."""
    with pytest.raises(InvalidValue) as caught:
        increment(b"1.7976931348623157e308", 1e308, key="score")
    assert str(caught.value) == (
        'invalid value: key "score" holds 1.7976931348623157e+308, and adding 1e+308 to it '
        "is out of range; numbers must be within ±1.7976931348623157e308"
    )


def test_increment_of_a_huge_integer_by_a_float_is_refused() -> None:
    """An integer too large for a double, plus a float, is out of range."""
    with pytest.raises(InvalidValue) as caught:
        increment(b"1" + b"0" * 400, 0.5)
    assert str(caught.value) == (
        "invalid value: the key holds 1000000000000000000000000000000000000000000000000000000"
        "00..., and adding 0.5 to it is out of range; numbers must be within "
        "±1.7976931348623157e308"
    )


def test_increment_past_the_limit_of_digits_is_refused() -> None:
    """An integer sum of more digits than a value may hold is refused."""
    digits = sys.get_int_max_str_digits()
    with pytest.raises(InvalidValue) as caught:
        increment(b"9" * digits, 1)
    assert str(caught.value) == (
        "invalid value: the key holds 9999999999999999999999999999999999999999999999999999999"
        f"99..., and adding 1 to it gives over {digits} digits; send larger numbers as strings"
    )


def test_increment_up_to_the_limit_of_digits_is_kept() -> None:
    """An integer sum of exactly the limit of digits is stored."""
    digits = sys.get_int_max_str_digits()
    assert increment(b"9" * (digits - 1) + b"8", 1) == b"9" * digits
